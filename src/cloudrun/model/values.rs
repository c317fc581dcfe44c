//! Wire scalars: int64 as JSON strings, and enum values kept raw (a name or a number).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An int64 field: Google's JSON encodes it as a string (`"generation": "3"`); a number is
/// accepted when reading. Always written as a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Int64(pub i64);

impl Serialize for Int64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(i64),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(n) => Ok(Self(n)),
            Repr::Text(text) => text
                .parse()
                .map(Self)
                .map_err(|_| serde::de::Error::custom(format!("invalid int64 {text:?}"))),
        }
    }
}

impl fmt::Display for Int64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The raw value of an enum field: its name, or its number (with
/// `enum-encoding=int`). Serialized back exactly as read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnumValue {
    /// E.g. `"CONDITION_FAILED"`.
    Name(String),
    /// E.g. `3`.
    Number(i64),
}

impl EnumValue {
    /// Whether this is the value `name`, whose number in the enum is `number`.
    pub fn is(&self, name: &str, number: i64) -> bool {
        match self {
            Self::Name(n) => n == name,
            Self::Number(n) => *n == number,
        }
    }
}

/// Looks an [`EnumValue`] up in a `(variant, name, number)` table of a proto enum.
pub(super) fn lookup<T: Copy>(table: &[(T, &'static str, i64)], value: &EnumValue) -> Option<T> {
    table
        .iter()
        .find(|(_, name, number)| value.is(name, *number))
        .map(|(variant, _, _)| *variant)
}
