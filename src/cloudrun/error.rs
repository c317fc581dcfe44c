//! Errors of the Cloud Run client: Google's error envelope parsed and classified into one enum.
//!
//! Every failure of a call to the Cloud Run Admin API (or the Binary Authorization API)
//! becomes one [`Error`] variant. The variant — never the text — is what callers branch on
//! ([`Error::is_retryable`], [`Error::is_conflict`], ...) and what metrics and status
//! conditions use as a label ([`Error::reason`], [`Error::code`]). Google's message is kept
//! verbatim for people, together with the call it answered. No error ever carries a token.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::retry::{parse_proto_duration, parse_retry_after};

/// `Result` of the Cloud Run client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

/// The canonical Google status codes (`google.rpc.Code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// 0: not an error.
    Ok,
    /// 1: the operation was cancelled.
    Cancelled,
    /// 2: unknown error (also any code this client does not know).
    Unknown,
    /// 3: the request is invalid whatever the state of the system.
    InvalidArgument,
    /// 4: the deadline expired before the operation could complete.
    DeadlineExceeded,
    /// 5: the resource does not exist.
    NotFound,
    /// 6: the resource already exists.
    AlreadyExists,
    /// 7: the caller lacks a permission.
    PermissionDenied,
    /// 8: a quota or rate limit is exhausted.
    ResourceExhausted,
    /// 9: the system is not in a state required for the operation.
    FailedPrecondition,
    /// 10: a concurrency conflict, e.g. a stale etag.
    Aborted,
    /// 11: out of range.
    OutOfRange,
    /// 12: not implemented by the server.
    Unimplemented,
    /// 13: internal server error.
    Internal,
    /// 14: the service is unavailable (transient).
    Unavailable,
    /// 15: unrecoverable data loss.
    DataLoss,
    /// 16: no valid credentials.
    Unauthenticated,
}

impl Code {
    const TABLE: [(Code, &'static str); 17] = [
        (Code::Ok, "OK"),
        (Code::Cancelled, "CANCELLED"),
        (Code::Unknown, "UNKNOWN"),
        (Code::InvalidArgument, "INVALID_ARGUMENT"),
        (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
        (Code::NotFound, "NOT_FOUND"),
        (Code::AlreadyExists, "ALREADY_EXISTS"),
        (Code::PermissionDenied, "PERMISSION_DENIED"),
        (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
        (Code::FailedPrecondition, "FAILED_PRECONDITION"),
        (Code::Aborted, "ABORTED"),
        (Code::OutOfRange, "OUT_OF_RANGE"),
        (Code::Unimplemented, "UNIMPLEMENTED"),
        (Code::Internal, "INTERNAL"),
        (Code::Unavailable, "UNAVAILABLE"),
        (Code::DataLoss, "DATA_LOSS"),
        (Code::Unauthenticated, "UNAUTHENTICATED"),
    ];

    /// The status name Google uses (`PERMISSION_DENIED`); stable, usable as a metric label.
    pub fn as_str(self) -> &'static str {
        Self::TABLE[self as usize].1
    }

    /// The code for a status name; `None` for a name this client does not know.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::TABLE
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(code, _)| *code)
    }

    /// The code for its `google.rpc.Code` number (as operations report it); unknown numbers
    /// are `Unknown`.
    pub fn from_number(number: i64) -> Self {
        usize::try_from(number)
            .ok()
            .and_then(|i| Self::TABLE.get(i))
            .map_or(Self::Unknown, |(code, _)| *code)
    }

    /// The code an HTTP status maps to when the body does not say (Google's HTTP mapping).
    pub fn from_http_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Ok,
            400 => Self::InvalidArgument,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::NotFound,
            409 => Self::Aborted,
            412 => Self::FailedPrecondition,
            429 => Self::ResourceExhausted,
            499 => Self::Cancelled,
            501 => Self::Unimplemented,
            502 | 503 => Self::Unavailable,
            504 => Self::DeadlineExceeded,
            500..=599 => Self::Internal,
            _ => Self::Unknown,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

/// The organization policy constraint that limits which Binary Authorization policies
/// Cloud Run resources may carry.
pub const ORG_POLICY_CONSTRAINT: &str = "constraints/run.allowedBinaryAuthorizationPolicies";

/// What a failed call means, whatever API answered: the failure taxonomy of the operator
/// ([`Error::failure`]). Status reasons, `check`'s report, events and metrics all derive
/// from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// The operator's identity lacks an IAM permission (HTTP 403). Google answers the same
    /// for a resource or project that does not exist.
    PermissionDenied,
    /// The API is not enabled in the project (403, `ErrorInfo.reason` SERVICE_DISABLED).
    ApiDisabled,
    /// A VPC Service Controls perimeter refused the call (403, SECURITY_POLICY_VIOLATED).
    VpcServiceControls,
    /// The credentials were refused or none could be found (HTTP 401, token errors).
    Unauthenticated,
    /// The resource does not exist (HTTP 404).
    NotFound,
    /// The organization policy constraint refused the policy written.
    OrgPolicyDenied,
    /// A concurrent change won (stale etag, HTTP 409) after the client's re-reads.
    Conflict,
    /// A quota stayed exhausted after the client's retries (HTTP 429).
    QuotaExceeded,
    /// No usable answer after retries: 5xx, timeouts, transport, undecodable answers.
    Unavailable,
    /// Any other refusal (invalid argument, failed precondition, unimplemented, ...).
    Rejected,
}

impl Failure {
    /// Worth trying again soon without a person doing anything.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Unavailable | Self::QuotaExceeded | Self::Conflict
        )
    }
}

/// A disabled Google API, as `ErrorInfo` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisabledApi {
    /// E.g. `run.googleapis.com`.
    pub service: String,
    /// E.g. `projects/123456789012`.
    pub consumer: String,
    /// The console page that enables it.
    pub activation_url: String,
}

/// Everything that can go wrong talking to Cloud Run. Display is one line for a person:
/// which call, what Google said, and what to do where there is something to do.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The resource (or project, or location) does not exist.
    #[error("{0}")]
    NotFound(Box<ApiError>),
    /// The operator's Google identity lacks a permission. Never retried.
    #[error("{0} (grant the operator's Google service account the IAM permissions listed in docs/cloudrun-client.md)")]
    PermissionDenied(Box<ApiError>),
    /// The request was refused as invalid (e.g. a policy that does not exist). Never retried.
    #[error("{0}")]
    InvalidArgument(Box<ApiError>),
    /// The resource is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(Box<ApiError>),
    /// A concurrent change won (stale etag, HTTP 409 ABORTED or ALREADY_EXISTS).
    #[error("{0}")]
    Conflict(Box<ApiError>),
    /// Quota or rate limit exhausted (HTTP 429); `retry_after` is the server's hint.
    #[error("{error} (lower --write-rate/--read-rate or raise the Cloud Run quota)")]
    QuotaExceeded {
        /// What Google answered.
        error: Box<ApiError>,
        /// How long the server asked us to wait, from `RetryInfo` or `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Cloud Run is temporarily unavailable (HTTP 503).
    #[error("{0}")]
    Unavailable(Box<ApiError>),
    /// The server's deadline expired (HTTP 504).
    #[error("{0}")]
    DeadlineExceeded(Box<ApiError>),
    /// A server-side internal or unknown error (HTTP 500).
    #[error("{0}")]
    Internal(Box<ApiError>),
    /// The credentials were refused (HTTP 401).
    #[error("{0} (check the operator's Google credentials)")]
    Unauthenticated(Box<ApiError>),
    /// Any other Google status (UNIMPLEMENTED, CANCELLED, ...).
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The request did not reach Cloud Run or no complete answer came back.
    #[error("{target}: cannot reach the API: {detail}")]
    Transport {
        /// The call.
        target: String,
        /// The cause chain, one line.
        detail: String,
    },
    /// No answer within the per-call timeout.
    #[error("{target}: no answer within {} (see --request-timeout)", humanize(*after))]
    Timeout {
        /// The call.
        target: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The answer was not the JSON this client expects.
    #[error("{target}: unexpected answer: {detail}")]
    Decode {
        /// The call.
        target: String,
        /// What could not be read.
        detail: String,
    },
    /// The long-running operation of a write finished with an error.
    #[error("operation {operation} failed: {error}")]
    OperationFailed {
        /// The operation's name.
        operation: String,
        /// Its error, as Google reported it.
        error: Box<ApiError>,
    },
    /// No Google credentials could be found.
    #[error("no Google credentials found: set GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, or point --cloud-run-endpoint at an emulator ({detail})")]
    NoCredentials {
        /// What the credential lookup reported.
        detail: String,
    },
    /// Credentials were found but no access token could be obtained.
    #[error("cannot obtain a Google access token: {detail}")]
    Auth {
        /// What the token source reported.
        detail: String,
    },
    /// The client's configuration is unusable.
    #[error("invalid Cloud Run client configuration: {field}: {detail}")]
    InvalidConfig {
        /// The flag or field.
        field: &'static str,
        /// What is wrong and what to do.
        detail: String,
    },
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl Error {
    /// Classifies an [`ApiError`] into its variant.
    pub fn from_api(error: ApiError) -> Self {
        let error = Box::new(error);
        match error.code {
            Code::NotFound => Self::NotFound(error),
            Code::PermissionDenied => Self::PermissionDenied(error),
            Code::InvalidArgument | Code::OutOfRange => Self::InvalidArgument(error),
            Code::FailedPrecondition => Self::FailedPrecondition(error),
            Code::Aborted | Code::AlreadyExists => Self::Conflict(error),
            Code::ResourceExhausted => Self::QuotaExceeded {
                retry_after: error.retry_after,
                error,
            },
            Code::Unavailable => Self::Unavailable(error),
            Code::DeadlineExceeded => Self::DeadlineExceeded(error),
            Code::Internal | Code::Unknown | Code::DataLoss => Self::Internal(error),
            Code::Unauthenticated => Self::Unauthenticated(error),
            Code::Ok | Code::Cancelled | Code::Unimplemented => Self::Api(error),
        }
    }

    /// Worth trying again after a backoff: UNAVAILABLE, DEADLINE_EXCEEDED,
    /// RESOURCE_EXHAUSTED, INTERNAL, transport failures and timeouts. Never
    /// PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND or a conflict (conflicts are resolved
    /// by re-reading, see [`Error::is_conflict`]).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::QuotaExceeded { .. }
                | Self::Unavailable(_)
                | Self::DeadlineExceeded(_)
                | Self::Internal(_)
                | Self::Transport { .. }
                | Self::Timeout { .. }
        )
    }

    /// A concurrent change won (stale etag): re-read the resource and decide again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }

    /// The resource (or its project or location) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }

    /// The operator lacks a permission; nothing changes until a person grants it.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Self::PermissionDenied(_))
    }

    /// A credentials problem (none found, token refused or not obtainable).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Self::NoCredentials { .. } | Self::Auth { .. } | Self::Unauthenticated(_)
        )
    }

    /// How long the server asked us to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::QuotaExceeded { retry_after, .. } => *retry_after,
            other => other.api_error().and_then(|e| e.retry_after),
        }
    }

    /// Google's answer, for the variants that have one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Self::NotFound(e)
            | Self::PermissionDenied(e)
            | Self::InvalidArgument(e)
            | Self::FailedPrecondition(e)
            | Self::Conflict(e)
            | Self::Unavailable(e)
            | Self::DeadlineExceeded(e)
            | Self::Internal(e)
            | Self::Unauthenticated(e)
            | Self::Api(e)
            | Self::QuotaExceeded { error: e, .. }
            | Self::OperationFailed { error: e, .. } => Some(e.as_ref()),
            Self::Transport { .. }
            | Self::Timeout { .. }
            | Self::Decode { .. }
            | Self::NoCredentials { .. }
            | Self::Auth { .. }
            | Self::InvalidConfig { .. } => None,
        }
    }

    /// Google's status code, for errors Google reported (including a failed operation's).
    pub fn code(&self) -> Option<Code> {
        self.api_error().map(|e| e.code)
    }

    /// A stable CamelCase name of the variant, for metric labels, condition reasons and
    /// logs. Never derived from the error's text.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NotFound",
            Self::PermissionDenied(_) => "PermissionDenied",
            Self::InvalidArgument(_) => "InvalidArgument",
            Self::FailedPrecondition(_) => "FailedPrecondition",
            Self::Conflict(_) => "Conflict",
            Self::QuotaExceeded { .. } => "QuotaExceeded",
            Self::Unavailable(_) => "Unavailable",
            Self::DeadlineExceeded(_) => "DeadlineExceeded",
            Self::Internal(_) => "Internal",
            Self::Unauthenticated(_) => "Unauthenticated",
            Self::Api(_) => "ApiError",
            Self::Transport { .. } => "Transport",
            Self::Timeout { .. } => "Timeout",
            Self::Decode { .. } => "Decode",
            Self::OperationFailed { .. } => "OperationFailed",
            Self::NoCredentials { .. } => "NoCredentials",
            Self::Auth { .. } => "Auth",
            Self::InvalidConfig { .. } => "InvalidConfig",
        }
    }

    /// What this failure means for the operator: the one taxonomy every caller (the
    /// controller's passes, `check`, metrics) classifies by. Decided on the variant and on
    /// Google's machine-readable `ErrorInfo.reason`, never on the message; a failed
    /// operation is classified by its error.
    pub fn failure(&self) -> Failure {
        if let Some(info) = self.api_error().and_then(|e| e.details.error_info.as_ref()) {
            match info.reason.as_str() {
                "SERVICE_DISABLED"
                | "API_DISABLED"
                | "SERVICE_CONFIG_NOT_FOUND_OR_PERMISSION_DENIED"
                    if self.code() == Some(Code::PermissionDenied) =>
                {
                    return Failure::ApiDisabled
                }
                "SECURITY_POLICY_VIOLATED" => return Failure::VpcServiceControls,
                _ => {}
            }
        }
        if self.is_org_policy_refusal() {
            return Failure::OrgPolicyDenied;
        }
        match self {
            Self::NotFound(_) => Failure::NotFound,
            Self::PermissionDenied(_) => Failure::PermissionDenied,
            Self::Unauthenticated(_) | Self::NoCredentials { .. } | Self::Auth { .. } => {
                Failure::Unauthenticated
            }
            Self::Conflict(_) => Failure::Conflict,
            Self::QuotaExceeded { .. } => Failure::QuotaExceeded,
            Self::Unavailable(_)
            | Self::DeadlineExceeded(_)
            | Self::Internal(_)
            | Self::Transport { .. }
            | Self::Timeout { .. }
            | Self::Decode { .. } => Failure::Unavailable,
            Self::OperationFailed { error, .. } => Self::from_api(error.as_ref().clone()).failure(),
            Self::InvalidArgument(_)
            | Self::FailedPrecondition(_)
            | Self::Api(_)
            | Self::InvalidConfig { .. } => Failure::Rejected,
        }
    }

    /// Whether the organization policy constraint on Binary Authorization policies
    /// refused this write. Google has not published that error: the emulator's shape
    /// (docs/emulator.md) is assumed — a FAILED_PRECONDITION or INVALID_ARGUMENT naming the
    /// constraint in a `PreconditionFailure` violation, an `ErrorInfo` or, failing both, its
    /// message.
    fn is_org_policy_refusal(&self) -> bool {
        let Some(api) = self.api_error() else {
            return false;
        };
        if !matches!(api.code, Code::FailedPrecondition | Code::InvalidArgument) {
            return false;
        }
        let named = |text: &str| text.contains(ORG_POLICY_CONSTRAINT);
        api.details
            .precondition_violations
            .iter()
            .any(|v| named(&v.kind))
            || api
                .details
                .error_info
                .as_ref()
                .is_some_and(|i| i.metadata.values().any(|v| named(v)))
            || named(&api.message)
    }

    /// The IAM permission Google says was denied (`ErrorInfo.metadata.permission`, else the
    /// `Permission 'x' denied` of its message), for a person to grant.
    pub fn denied_permission(&self) -> Option<String> {
        let api = self.api_error()?;
        if api.code != Code::PermissionDenied {
            return None;
        }
        if let Some(p) = api
            .details
            .error_info
            .as_ref()
            .and_then(|i| i.metadata.get("permission"))
        {
            return Some(p.clone());
        }
        let rest = api.message.split_once("Permission '")?.1;
        let (permission, _) = rest.split_once('\'')?;
        (!permission.is_empty() && !permission.contains(char::is_whitespace))
            .then(|| permission.to_owned())
    }

    /// For a disabled API: the service to enable (`ErrorInfo.metadata.service`), the
    /// consumer project (`consumer`, `projects/N`) and the console's activation link.
    pub fn disabled_api(&self) -> Option<DisabledApi> {
        if self.failure() != Failure::ApiDisabled {
            return None;
        }
        let info = self.api_error()?.details.error_info.as_ref()?;
        let get = |k: &str| info.metadata.get(k).cloned().unwrap_or_default();
        Some(DisabledApi {
            service: get("service"),
            consumer: get("consumer"),
            activation_url: get("activationUrl"),
        })
    }

    /// Google's answer alone (call, status, message), without the hint this error's
    /// Display adds: for callers that add their own.
    pub fn google_message(&self) -> String {
        match self {
            Self::OperationFailed { operation, error } => {
                format!("operation {operation} failed: {error}")
            }
            other => other
                .api_error()
                .map_or_else(|| other.to_string(), ToString::to_string),
        }
    }

    /// Builds a transport error from a `reqwest` error, flattening its cause chain into one
    /// line (reqwest's own text only says "error sending request").
    pub(crate) fn transport(target: impl Into<String>, err: &reqwest::Error) -> Self {
        let mut detail = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !detail.contains(&text) {
                detail.push_str(": ");
                detail.push_str(&text);
            }
            source = cause.source();
        }
        Self::Transport {
            target: target.into(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn http_error(status: u16, header: Option<&str>, body: Value) -> Error {
        Error::from_api(ApiError::from_http(
            "UpdateService projects/p/locations/us-central1/services/s",
            status,
            header,
            body.to_string().as_bytes(),
        ))
    }

    #[test]
    fn quota_errors_carry_retry_info_and_error_info() {
        let err = http_error(
            429,
            Some("7"),
            json!({"error": {
            "code": 429,
            "message": "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per region' of service 'run.googleapis.com' for consumer 'project_number:123'.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                 "domain": "googleapis.com",
                 "metadata": {"quota_metric": "run.googleapis.com/write_requests", "quota_limit": "WriteRequestsPerMinutePerProjectPerRegion"}},
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"subject": "project:123", "description": "write requests"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": []}
            ]}}),
        );
        assert_eq!(err.reason(), "QuotaExceeded");
        assert_eq!(err.code(), Some(Code::ResourceExhausted));
        assert!(err.is_retryable());
        // RetryInfo wins over the Retry-After header.
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
        let api = err.api_error().unwrap();
        let info = api.details.error_info.as_ref().unwrap();
        assert_eq!(info.reason, "RATE_LIMIT_EXCEEDED");
        assert_eq!(
            info.metadata.get("quota_metric").map(String::as_str),
            Some("run.googleapis.com/write_requests")
        );
        assert_eq!(api.details.quota_violations.len(), 1);
        assert!(err
            .to_string()
            .contains("Write requests per minute per region"));
    }

    #[test]
    fn retry_after_header_is_used_without_retry_info() {
        let err = http_error(
            503,
            Some("3"),
            json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}),
        );
        assert_eq!(err.reason(), "Unavailable");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        assert!(err.is_retryable());
    }

    #[test]
    fn permission_and_argument_errors_are_never_retryable() {
        let denied = http_error(
            403,
            None,
            json!({"error": {"code": 403, "message": "Permission 'run.services.update' denied on resource 'projects/p/locations/us-central1/services/s' (or it may not exist).", "status": "PERMISSION_DENIED"}}),
        );
        assert!(denied.is_permission_denied());
        assert!(!denied.is_retryable());
        let text = denied.to_string();
        assert!(text.contains("run.services.update"), "{text}");
        assert!(text.contains("HTTP 403"), "{text}");

        let invalid = http_error(
            400,
            None,
            json!({"error": {"code": 400, "message": "Invalid policy", "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "binary_authorization.policy", "description": "policy not found"}]}]}}),
        );
        assert_eq!(invalid.reason(), "InvalidArgument");
        assert!(!invalid.is_retryable());
        assert!(invalid
            .to_string()
            .contains("field binary_authorization.policy: policy not found"));
    }

    #[test]
    fn stale_etag_is_a_conflict() {
        let err = http_error(
            409,
            None,
            json!({"error": {"code": 409, "message": "Conflict for resource 's': version '3' was specified but current version is '4'.", "status": "ABORTED"}}),
        );
        assert!(err.is_conflict());
        assert!(!err.is_retryable());
        assert_eq!(err.code(), Some(Code::Aborted));
    }

    #[test]
    fn non_json_bodies_fall_back_to_the_http_status() {
        let err = Error::from_api(ApiError::from_http(
            "ListServices projects/p/locations/l",
            502,
            None,
            b"<html><body>Bad Gateway</body></html>",
        ));
        assert_eq!(err.reason(), "Unavailable");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("Bad Gateway"));
        let empty = Error::from_api(ApiError::from_http("GetJob x", 404, None, b""));
        assert!(empty.is_not_found());
        assert!(empty.to_string().contains("HTTP 404"));
    }

    #[test]
    fn operation_errors_use_numeric_codes() {
        let err = ApiError::from_operation_status(
            "UpdateService s",
            &json!({"code": 3, "message": "policy projects/p/platforms/cloudRun/policies/x not found", "details": []}),
        );
        assert_eq!(err.code, Code::InvalidArgument);
        assert_eq!(err.http_status, None);
        assert_eq!(Code::from_number(99), Code::Unknown);
        assert_eq!(Code::from_number(16), Code::Unauthenticated);
        for (code, name) in Code::TABLE {
            assert_eq!(Code::from_name(name), Some(code));
            assert_eq!(code.as_str(), name);
        }
    }

    #[test]
    fn server_text_is_clipped_to_one_bounded_line() {
        assert_eq!(clip("a\nb\r\tc", 100), "a b  c");
        assert_eq!(clip("ünïcode", 3), "ün…");
        assert_eq!(clip("ünïcode", 2), "ü…");
        assert_eq!(clip("abcdef", 6), "abcdef");
        assert_eq!(clip("abcdefg", 6), "abcdef…");
        let long = "x".repeat(10_000);
        let err = http_error(
            503,
            None,
            json!({"error": {"code": 503, "status": "UNAVAILABLE", "message": format!("{long}\ninjected")}}),
        );
        let text = err.to_string();
        assert!(!text.contains('\n'));
        assert!(text.len() < MAX_MESSAGE + 200, "{}", text.len());
    }

    /// Each row: what Google answers, and what it means for the operator.
    #[test]
    fn every_failure_is_classified_by_variant_and_error_info() {
        let info = |reason: &str, metadata: Value| {
            json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                   "domain": "googleapis.com", "metadata": metadata})
        };
        let cases: Vec<(u16, &str, &str, Vec<Value>, Failure)> = vec![
            (403, "PERMISSION_DENIED", "Permission 'run.services.update' denied on resource 'x' (or resource may not exist).", vec![], Failure::PermissionDenied),
            (403, "PERMISSION_DENIED", "Cloud Run Admin API has not been used in project 123 before or it is disabled.",
                vec![info("SERVICE_DISABLED", json!({"service": "run.googleapis.com", "consumer": "projects/123",
                    "activationUrl": "https://console.developers.google.com/apis/api/run.googleapis.com/overview?project=123"}))],
                Failure::ApiDisabled),
            (403, "PERMISSION_DENIED", "Request is prohibited by organization's policy. vpcServiceControlsUniqueIdentifier: abc",
                vec![info("SECURITY_POLICY_VIOLATED", json!({}))], Failure::VpcServiceControls),
            (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", vec![], Failure::Unauthenticated),
            (404, "NOT_FOUND", "Resource 'x' was not found", vec![], Failure::NotFound),
            (400, "FAILED_PRECONDITION", "Constraint constraints/run.allowedBinaryAuthorizationPolicies violated for projects/p.",
                vec![], Failure::OrgPolicyDenied),
            (400, "FAILED_PRECONDITION", "violated",
                vec![json!({"@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                    "violations": [{"type": "constraints/run.allowedBinaryAuthorizationPolicies", "subject": "projects/p", "description": "x"}]})],
                Failure::OrgPolicyDenied),
            (400, "INVALID_ARGUMENT", "bad field", vec![], Failure::Rejected),
            (409, "ABORTED", "Conflict for resource 'x'", vec![], Failure::Conflict),
            (429, "RESOURCE_EXHAUSTED", "Quota exceeded", vec![info("RATE_LIMIT_EXCEEDED", json!({}))], Failure::QuotaExceeded),
            (503, "UNAVAILABLE", "try later", vec![], Failure::Unavailable),
            (500, "INTERNAL", "oops", vec![], Failure::Unavailable),
        ];
        for (status, name, message, details, want) in cases {
            let err = http_error(
                status,
                None,
                json!({"error": {"code": status, "status": name, "message": message, "details": details}}),
            );
            assert_eq!(err.failure(), want, "{status} {name} {message}");
        }
        let op = Error::OperationFailed {
            operation: "op".into(),
            error: Box::new(ApiError::from_operation_status(
                "UpdateService s",
                &json!({"code": 9, "message": "Constraint constraints/run.allowedBinaryAuthorizationPolicies violated"}),
            )),
        };
        assert_eq!(op.failure(), Failure::OrgPolicyDenied);
        let none = Error::NoCredentials { detail: "x".into() };
        assert_eq!(none.failure(), Failure::Unauthenticated);
        let timeout = Error::Timeout {
            target: "x".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.failure(), Failure::Unavailable);
    }

    #[test]
    fn denied_permissions_and_disabled_apis_are_named() {
        let denied = http_error(
            403,
            None,
            json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
                "message": "Permission 'run.services.list' denied on resource 'namespaces/p/services' (or resource may not exist)."}}),
        );
        assert_eq!(
            denied.denied_permission().as_deref(),
            Some("run.services.list")
        );
        let with_info = http_error(
            403,
            None,
            json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "denied",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
                    "domain": "iam.googleapis.com", "metadata": {"permission": "run.jobs.update"}}]}}),
        );
        assert_eq!(
            with_info.denied_permission().as_deref(),
            Some("run.jobs.update")
        );
        assert_eq!(with_info.failure(), Failure::PermissionDenied);
        let disabled = http_error(
            403,
            None,
            json!({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "disabled",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                    "domain": "googleapis.com", "metadata": {"service": "run.googleapis.com", "consumer": "projects/42",
                    "activationUrl": "https://console.developers.google.com/apis/api/run.googleapis.com/overview?project=42"}}]}}),
        );
        let api = disabled.disabled_api().unwrap();
        assert_eq!(api.service, "run.googleapis.com");
        assert_eq!(api.consumer, "projects/42");
        assert!(api.activation_url.ends_with("project=42"));
        assert_eq!(denied.disabled_api(), None);
        // Google's words without the hint the Display adds.
        assert!(!denied.google_message().contains("grant the operator"));
        assert!(denied.to_string().contains("grant the operator"));
    }

    #[test]
    fn unknown_status_names_map_by_http_status() {
        let err = http_error(
            500,
            None,
            json!({"error": {"code": 500, "message": "boom", "status": "SOMETHING_NEW"}}),
        );
        assert_eq!(err.reason(), "Internal");
        assert!(err.is_retryable());
    }
}
