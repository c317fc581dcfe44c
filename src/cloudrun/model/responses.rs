//! Responses other than a resource: list pages, locations, long-running operations, and the bound on a response's JSON values.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One page of a list call: `{"services"|"jobs"|"workerPools": [...], "nextPageToken"}`.
/// Items stay JSON text until each is decoded — one at a time, so a page never exists as
/// a hundred decoded trees at once, and a bad item can be named.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPage {
    /// The resources, whichever the collection.
    #[serde(default, alias = "services", alias = "jobs", alias = "workerPools")]
    pub items: Vec<Box<serde_json::value::RawValue>>,
    /// Absent or empty on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// One page of the v1 locations list.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationsPage {
    /// The locations.
    #[serde(default)]
    pub locations: Vec<Location>,
    /// Absent or empty on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A location (`{"name", "locationId", "displayName", "labels", "metadata"}`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// The region, e.g. `us-central1`.
    #[serde(default)]
    pub location_id: String,
    /// `projects/{p}/locations/{region}`.
    #[serde(default)]
    pub name: String,
}

impl Location {
    /// The region: `locationId`, else the last segment of `name`.
    pub fn region(&self) -> Option<&str> {
        Some(self.location_id.as_str())
            .filter(|id| !id.is_empty())
            .or_else(|| self.name.rsplit('/').next().filter(|id| !id.is_empty()))
    }
}

/// `google.longrunning.Operation`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Operation {
    /// `projects/{p}/locations/{l}/operations/{id}`.
    #[serde(default)]
    pub name: String,
    /// True when finished (then `error` or `response` is set).
    #[serde(default)]
    pub done: bool,
    /// The `google.rpc.Status` of a failed operation (`code` is a number).
    #[serde(default)]
    pub error: Option<Value>,
    /// The resource after the change, with an `@type`.
    #[serde(default)]
    pub response: Option<Value>,
}

/// Whether the JSON text `bytes` holds at most `max` values (every object, array, key-less
/// scalar and array element counts one; object keys do not), counted without building
/// them. Text that is not JSON counts as within budget: the decoder reports it.
///
/// Decoded JSON takes up to ~40 times its text in memory (`[0,0,0,...]`: 2 bytes of text,
/// 72 of `Value` each), so the client checks this before decoding a response.
pub fn json_values_at_most(bytes: &[u8], max: usize) -> bool {
    use std::cell::Cell;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    struct Count<'a> {
        seen: &'a Cell<usize>,
        max: usize,
    }

    impl Count<'_> {
        fn one<E: de::Error>(&self) -> Result<(), E> {
            let seen = self.seen.get() + 1;
            self.seen.set(seen);
            if seen > self.max {
                Err(E::custom("too many JSON values"))
            } else {
                Ok(())
            }
        }

        fn nested(&self) -> Count<'_> {
            Count {
                seen: self.seen,
                max: self.max,
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Count<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Count<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            self.one()
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            self.one()
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            self.one()
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            self.one()
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            self.one()
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.one()
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.one()?;
            while seq.next_element_seed(self.nested())?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.one()?;
            while map.next_key::<IgnoredAny>()?.is_some() {
                map.next_value_seed(self.nested())?;
            }
            Ok(())
        }
    }

    let seen = Cell::new(0);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let counted = Count { seen: &seen, max }.deserialize(&mut deserializer);
    counted.is_ok() || seen.get() <= max
}
