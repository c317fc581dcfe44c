//! Google's canonical status codes (`google.rpc.Code`), by name and by number.

use std::fmt;

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
    pub(super) const TABLE: [(Code, &'static str); 17] = [
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
