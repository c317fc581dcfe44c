//! Google's error envelope (`google.rpc.Status` in JSON) parsed into an [`ApiError`] and its details, every server text bounded.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::Code;
use crate::cloudrun::retry::{parse_proto_duration, parse_retry_after};

/// Longest Google message kept in an [`ApiError`], in bytes (Google's are a few hundred).
pub const MAX_MESSAGE: usize = 1024;
/// Longest start of a non-JSON error body kept as the message.
const MAX_FALLBACK_MESSAGE: usize = 200;
/// Most quota or field violations kept from one error.
pub const MAX_VIOLATIONS: usize = 10;
/// Longest text of one violation's field, subject or description.
const MAX_VIOLATION_TEXT: usize = 256;

/// Text from a server made fit for one log line, an event note or a status message: every
/// control character (newlines included) becomes a space, and text longer than `max`
/// bytes is cut at a character boundary and ends with `…`.
///
/// Guarantee: the result has no control characters and is at most `max + 3` bytes.
pub fn clip(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 3));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// `google.rpc.ErrorInfo`: why an error happened, machine-readably.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorInfo {
    /// E.g. `RATE_LIMIT_EXCEEDED`.
    pub reason: String,
    /// E.g. `googleapis.com`.
    pub domain: String,
    /// E.g. `quota_metric`, `quota_limit`.
    pub metadata: BTreeMap<String, String>,
}

/// One `google.rpc.QuotaFailure` violation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaViolation {
    /// What the quota applies to, e.g. `project:123`.
    pub subject: String,
    /// Human description.
    pub description: String,
}

/// One `google.rpc.BadRequest` field violation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldViolation {
    /// The offending field path.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// One `google.rpc.PreconditionFailure` violation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreconditionViolation {
    /// The precondition type, e.g. an organization policy constraint.
    pub kind: String,
    /// What failed it, e.g. `projects/p`.
    pub subject: String,
    /// Human description.
    pub description: String,
}

/// The typed details of a Google error (`error.details[]`) this client understands; other
/// detail types are ignored. At most [`MAX_VIOLATIONS`] violations of each kind are kept,
/// their texts clipped like messages (see [`clip`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorDetails {
    /// `RetryInfo.retryDelay`.
    pub retry_delay: Option<Duration>,
    /// `ErrorInfo`, when present.
    pub error_info: Option<ErrorInfo>,
    /// `QuotaFailure.violations`.
    pub quota_violations: Vec<QuotaViolation>,
    /// `BadRequest.fieldViolations`.
    pub field_violations: Vec<FieldViolation>,
    /// `PreconditionFailure.violations`.
    pub precondition_violations: Vec<PreconditionViolation>,
}

impl ErrorDetails {
    /// Reads the details array of a `google.rpc.Status`; unknown or malformed entries are
    /// skipped (details are advisory).
    pub fn parse(details: &[Value]) -> Self {
        let mut out = Self::default();
        for detail in details {
            let type_url = detail.get("@type").and_then(Value::as_str).unwrap_or("");
            let kind = type_url.rsplit('/').next().unwrap_or("");
            match kind {
                "google.rpc.RetryInfo" => {
                    out.retry_delay = detail
                        .get("retryDelay")
                        .and_then(Value::as_str)
                        .and_then(parse_proto_duration);
                }
                "google.rpc.ErrorInfo" => {
                    if let Ok(info) = RawErrorInfo::deserialize(detail) {
                        out.error_info = Some(ErrorInfo {
                            reason: info.reason,
                            domain: info.domain,
                            metadata: info.metadata,
                        });
                    }
                }
                "google.rpc.QuotaFailure" => {
                    if let Ok(failure) = RawQuotaFailure::deserialize(detail) {
                        let room = MAX_VIOLATIONS.saturating_sub(out.quota_violations.len());
                        out.quota_violations
                            .extend(failure.violations.into_iter().take(room).map(|v| {
                                QuotaViolation {
                                    subject: clip(&v.subject, MAX_VIOLATION_TEXT),
                                    description: clip(&v.description, MAX_VIOLATION_TEXT),
                                }
                            }));
                    }
                }
                "google.rpc.PreconditionFailure" => {
                    if let Ok(failure) = RawPreconditionFailure::deserialize(detail) {
                        let room = MAX_VIOLATIONS.saturating_sub(out.precondition_violations.len());
                        out.precondition_violations.extend(
                            failure.violations.into_iter().take(room).map(|v| {
                                PreconditionViolation {
                                    kind: clip(&v.kind, MAX_VIOLATION_TEXT),
                                    subject: clip(&v.subject, MAX_VIOLATION_TEXT),
                                    description: clip(&v.description, MAX_VIOLATION_TEXT),
                                }
                            }),
                        );
                    }
                }
                "google.rpc.BadRequest" => {
                    if let Ok(bad) = RawBadRequest::deserialize(detail) {
                        let room = MAX_VIOLATIONS.saturating_sub(out.field_violations.len());
                        out.field_violations.extend(
                            bad.field_violations
                                .into_iter()
                                .take(room)
                                .map(|v| FieldViolation {
                                    field: clip(&v.field, MAX_VIOLATION_TEXT),
                                    description: clip(&v.description, MAX_VIOLATION_TEXT),
                                }),
                        );
                    }
                }
                _ => {}
            }
        }
        out
    }
}

#[derive(Deserialize)]
struct RawErrorInfo {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawQuotaFailure {
    #[serde(default)]
    violations: Vec<RawQuotaViolation>,
}

#[derive(Deserialize)]
struct RawQuotaViolation {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct RawPreconditionFailure {
    #[serde(default)]
    violations: Vec<RawPreconditionViolation>,
}

#[derive(Deserialize)]
struct RawPreconditionViolation {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBadRequest {
    #[serde(default)]
    field_violations: Vec<RawFieldViolation>,
}

#[derive(Deserialize)]
struct RawFieldViolation {
    #[serde(default)]
    field: String,
    #[serde(default)]
    description: String,
}

/// `{"error": {...}}`, the envelope of every failed Google API call.
#[derive(Deserialize)]
struct Envelope {
    error: RawStatus,
}

/// A `google.rpc.Status` as HTTP/JSON carries it (`status` is absent inside operations).
#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<Value>,
}

/// What Google answered to one failed call, kept for people and for classification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The call that failed, e.g. `UpdateService projects/p/locations/l/services/s`.
    pub target: String,
    /// The canonical status.
    pub code: Code,
    /// The HTTP status, when the error came from an HTTP response (not an operation).
    pub http_status: Option<u16>,
    /// Google's message, verbatim.
    pub message: String,
    /// The details this client understands.
    pub details: ErrorDetails,
    /// How long the server asked us to wait: `RetryInfo`, else the `Retry-After` header.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Parses a failed HTTP response: Google's envelope when the body is one, otherwise the
    /// HTTP status and the start of the body (proxies answer with HTML or plain text).
    pub fn from_http(
        target: impl Into<String>,
        http_status: u16,
        retry_after_header: Option<&str>,
        body: &[u8],
    ) -> Self {
        let header_delay = retry_after_header.and_then(parse_retry_after);
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => {
                let code = error
                    .status
                    .as_deref()
                    .and_then(Code::from_name)
                    .unwrap_or_else(|| Code::from_http_status(http_status));
                let details = ErrorDetails::parse(&error.details);
                let retry_after = details.retry_delay.or(header_delay);
                Self {
                    target: target.into(),
                    code,
                    http_status: Some(http_status),
                    message: clip(&error.message, MAX_MESSAGE),
                    details,
                    retry_after,
                }
            }
            Err(_) => {
                // Only the start matters; never copy a huge body.
                let start = &body[..body.len().min(4 * MAX_FALLBACK_MESSAGE)];
                let text = String::from_utf8_lossy(start);
                let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let mut message = clip(&text, MAX_FALLBACK_MESSAGE);
                if message.is_empty() {
                    message = format!("HTTP {http_status} with no error body");
                }
                Self {
                    target: target.into(),
                    code: Code::from_http_status(http_status),
                    http_status: Some(http_status),
                    message,
                    details: ErrorDetails::default(),
                    retry_after: header_delay,
                }
            }
        }
    }

    /// Reads the `error` of a finished long-running operation (`code` is a number there).
    pub fn from_operation_status(target: impl Into<String>, status: &Value) -> Self {
        let raw = RawStatus::deserialize(status).unwrap_or_else(|_| RawStatus {
            code: 2,
            message: status.to_string(),
            status: None,
            details: Vec::new(),
        });
        let details = ErrorDetails::parse(&raw.details);
        Self {
            target: target.into(),
            code: Code::from_number(raw.code),
            http_status: None,
            message: clip(&raw.message, MAX_MESSAGE),
            retry_after: details.retry_delay,
            details,
        }
    }

    /// An error this client concludes itself (no HTTP exchange), with Google's vocabulary.
    pub fn local(target: impl Into<String>, code: Code, message: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            code,
            http_status: None,
            message: message.into(),
            details: ErrorDetails::default(),
            retry_after: None,
        }
    }
}

impl fmt::Display for ApiError {
    /// `UpdateService projects/p/.../services/s: PERMISSION_DENIED (HTTP 403): <message>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.code)?;
        if let Some(status) = self.http_status {
            write!(f, " (HTTP {status})")?;
        }
        write!(f, ": {}", self.message)?;
        for violation in &self.details.field_violations {
            write!(f, "; field {}: {}", violation.field, violation.description)?;
        }
        Ok(())
    }
}
