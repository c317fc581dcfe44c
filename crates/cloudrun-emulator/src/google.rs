//! Google's error envelope: canonical codes, `google.rpc` details and the HTTP/JSON error body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A `google.rpc.Code` the emulator answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// 400, malformed request.
    InvalidArgument,
    /// 400, the resource is in the wrong state for the call.
    FailedPrecondition,
    /// 401, no credentials.
    Unauthenticated,
    /// 403, the caller may not do this.
    PermissionDenied,
    /// 404, no such project, location, resource or operation.
    NotFound,
    /// 409, a concurrency conflict (stale etag).
    Aborted,
    /// 429, a quota was exceeded.
    ResourceExhausted,
    /// 500, internal error.
    Internal,
    /// 501, the emulator does not implement this.
    Unimplemented,
    /// 503, try again later.
    Unavailable,
    /// 504, the deadline passed.
    DeadlineExceeded,
}

impl Code {
    /// The HTTP status Google's front end maps this code to.
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Aborted => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `status` string of the HTTP/JSON envelope.
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::Aborted => "ABORTED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::Internal => "INTERNAL",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Unavailable => "UNAVAILABLE",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        }
    }

    /// The `google.rpc.Code` number, used inside a failed long-running operation.
    pub fn number(self) -> i32 {
        match self {
            Code::InvalidArgument => 3,
            Code::DeadlineExceeded => 4,
            Code::NotFound => 5,
            Code::PermissionDenied => 7,
            Code::ResourceExhausted => 8,
            Code::FailedPrecondition => 9,
            Code::Aborted => 10,
            Code::Unimplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::Unauthenticated => 16,
        }
    }

    /// The code an injected error with this HTTP status carries (`--error-rate 503=0.1`).
    pub fn from_http(status: u16) -> Option<Code> {
        Some(match status {
            400 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            409 => Code::Aborted,
            429 => Code::ResourceExhausted,
            500 => Code::Internal,
            501 => Code::Unimplemented,
            503 => Code::Unavailable,
            504 => Code::DeadlineExceeded,
            _ => return None,
        })
    }
}

/// A failed call, rendered as Google's HTTP/JSON error envelope
/// `{"error":{"code","message","status","details"}}`.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// Canonical code; decides the HTTP status and the `status` string.
    pub code: Code,
    /// Human-readable message.
    pub message: String,
    /// `google.rpc` detail messages, each with its `@type`.
    pub details: Vec<Value>,
}

impl ApiError {
    /// An error without details.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds one detail message.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.details.push(detail);
        self
    }

    /// 400 INVALID_ARGUMENT with a `BadRequest` naming the offending field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(Code::InvalidArgument, message.clone())
            .with_detail(bad_request(&[(field, &message)]))
    }

    /// 400 INVALID_ARGUMENT for a request Google's front end cannot bind (unknown query
    /// parameter, malformed JSON): a `BadRequest` whose violation carries only a description.
    pub fn invalid_payload(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(Code::InvalidArgument, message.clone()).with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"description": message}],
        }))
    }

    /// 404 NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(Code::NotFound, message)
    }

    /// The HTTP/JSON envelope.
    pub fn envelope(&self) -> Value {
        json!({"error": {
            "code": self.code.http_status().as_u16(),
            "message": self.message,
            "status": self.code.name(),
            "details": self.details,
        }})
    }

    /// The `error` of a failed long-running operation: `{code: <rpc number>, message,
    /// details}` without a `status` string.
    pub fn operation_error(&self) -> Value {
        json!({"code": self.code.number(), "message": self.message, "details": self.details})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.code.http_status(), &self.envelope(), true);
        if self.code == Code::Unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            );
        }
        response
    }
}

/// A `google.rpc.BadRequest` detail with one violation per `(field, description)`.
pub fn bad_request(violations: &[(&str, &str)]) -> Value {
    let violations: Vec<Value> = violations
        .iter()
        .map(|(field, description)| json!({"field": field, "description": description}))
        .collect();
    json!({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations})
}

/// A `google.rpc.ErrorInfo` detail.
pub fn error_info(reason: &str, domain: &str, metadata: Value) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": metadata,
    })
}

/// A `google.rpc.Help` detail with one link.
pub fn help(description: &str, url: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.Help",
        "links": [{"description": description, "url": url}],
    })
}

/// A `google.rpc.RetryInfo` detail; the delay is a protobuf Duration in whole seconds.
pub fn retry_info(delay_secs: u64) -> Value {
    json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{delay_secs}s")})
}

/// A JSON response; pretty-printed unless the caller asked `prettyPrint=false`, like Google's
/// front end.
pub fn json_response(status: StatusCode, body: &Value, pretty: bool) -> Response {
    let bytes = if pretty {
        serde_json::to_vec_pretty(body)
    } else {
        serde_json::to_vec(body)
    };
    match bytes {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=UTF-8"),
            )],
            bytes,
        )
            .into_response(),
        // A serde_json::Value always serializes; answer something well-formed regardless.
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "serialization failed").into_response(),
    }
}
