//! Unit tests of the Cloud Run client errors.

use std::time::Duration;

use serde_json::Value;

use super::{clip, ApiError, Code, Error, Failure, MAX_MESSAGE};
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
