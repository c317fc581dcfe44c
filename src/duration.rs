//! The one duration grammar of the operator. Command-line flags (`--lease-duration 15s`) and
//! `spec.interval` (`10m`) take the same syntax, Go's, as Kubernetes' own duration fields
//! (`metav1.Duration`) do: one or more decimal numbers, each with a unit among `ns`, `us`,
//! `ms`, `s`, `m` and `h` — `30s`, `1m30s`, `1.5h`, `500ms`. Negative durations are refused.

use std::str::FromStr;
use std::time::Duration;

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not Go's duration syntax.
    #[error("{0:?} is not a duration such as 30s, 1m30s or 500ms")]
    Syntax(String),
    /// A negative duration.
    #[error("{0:?} must not be negative")]
    Negative(String),
}

/// Parses a duration of the grammar above.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Syntax(text.to_owned()));
    }
    let parsed = kube::core::Duration::from_str(trimmed)
        .map_err(|_| DurationError::Syntax(text.to_owned()))?;
    if parsed.is_negative() {
        return Err(DurationError::Negative(text.to_owned()));
    }
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_are_accepted_with_every_unit_and_combination() {
        for (text, expected) in [
            ("30s", Duration::from_secs(30)),
            ("1m30s", Duration::from_secs(90)),
            ("10m", Duration::from_secs(600)),
            ("1.5h", Duration::from_secs(5400)),
            ("500ms", Duration::from_millis(500)),
            ("250us", Duration::from_micros(250)),
            ("10ns", Duration::from_nanos(10)),
            ("2h45m", Duration::from_secs(9900)),
            (" 15s ", Duration::from_secs(15)),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn other_syntaxes_and_negatives_are_refused_with_the_text() {
        for text in ["", "soon", "PT30S", "1 minute", "30", "5d", "1m30", "s"] {
            assert_eq!(parse(text), Err(DurationError::Syntax(text.to_owned())));
        }
        assert_eq!(parse("-5s"), Err(DurationError::Negative("-5s".into())));
        assert_eq!(
            parse("PT30S").unwrap_err().to_string(),
            "\"PT30S\" is not a duration such as 30s, 1m30s or 500ms"
        );
    }
}
