//! Errors of the Cloud Run client: Google's error envelope parsed and classified into one enum.
//!
//! Every failure of a call to the Cloud Run Admin API (or the Binary Authorization API)
//! becomes one [`Error`] variant. The variant — never the text — is what callers branch on
//! ([`Error::is_retryable`], [`Error::is_conflict`], ...) and what metrics and status
//! conditions use as a label ([`Error::reason`], [`Error::code`]). Google's message is kept
//! verbatim for people, together with the call it answered. No error ever carries a token.
//!
//! # Parts
//! - this file: the taxonomy — [`Error`], its [`Failure`] classes, and the classifiers.
//! - `code`: Google's canonical status [`Code`].
//! - `envelope`: Google's error envelope parsed into an [`ApiError`] and its details.

mod code;
mod envelope;
#[cfg(test)]
mod tests;

pub use code::Code;
pub use envelope::{
    clip, ApiError, ErrorDetails, ErrorInfo, FieldViolation, PreconditionViolation, QuotaViolation,
    MAX_MESSAGE, MAX_VIOLATIONS,
};

use std::time::Duration;

/// `Result` of the Cloud Run client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
