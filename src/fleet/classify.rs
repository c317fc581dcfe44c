//! Turns a Cloud Run failure into the operator's reason and a message that says what to do: the one place an error becomes a status reason.
//!
//! The taxonomy itself is [`Failure`], decided on the Cloud Run error's variant and
//! Google's `ErrorInfo` ([`cloudrun::Error::failure`]). What a failure *means* also depends
//! on where it happened, which only the caller knows:
//! - a read refused for the whole project ([`ReadScope::Project`]: its regions, or every
//!   list) says the project does not exist or cannot be seen — Google answers 403 for
//!   both, never 404;
//! - a read refused in one region or for one kind while others work ([`ReadScope::Part`])
//!   is a missing permission (the project is visible);
//! - a refused write is a missing permission, the API, the perimeter or the organization
//!   policy.
//!
//! Every message is complete for a person: Google's words (the call, the status, the
//! message), then what to do. Status conditions, `check`'s report and events show it as
//! it is.

use crate::api::FailureReason;
use crate::cloudrun::{self, Failure, ORG_POLICY_CONSTRAINT};
use crate::plan::{PassFailure, WriteFailure};

/// Where a read failed, for [`read_failure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadScope<'a> {
    /// Nothing of this project could be read (its regions, or every list).
    Project(&'a str),
    /// One list of this project, whose other reads worked.
    Part(&'a str),
}

/// Where to find the permissions the operator needs.
const ROLE_HINT: &str = "the binauthz-operator role in deploy/gcp/ holds every permission it needs";

/// Classifies a failed read of Cloud Run (a list or the regions).
pub fn read_failure(err: &cloudrun::Error, scope: ReadScope<'_>) -> PassFailure {
    let google = words(err);
    let (ReadScope::Project(project) | ReadScope::Part(project)) = scope;
    let (reason, message) = match (err.failure(), scope) {
        (Failure::PermissionDenied | Failure::NotFound, ReadScope::Project(_)) => (
            FailureReason::ProjectNotFoundOrForbidden,
            format!(
                "{google}; project {project} does not exist or the operator's Google identity cannot see it: check spec.project, and grant the identity {} on the project ({ROLE_HINT})",
                permission_or(err, "run.services.list")
            ),
        ),
        (Failure::NotFound, ReadScope::Part(_)) => (
            FailureReason::CloudRunUnavailable,
            format!("{google}; the operator reads it again at the next pass"),
        ),
        (failure, _) => common(err, failure, project, &google)
            .unwrap_or_else(|| unavailable(&google)),
    };
    PassFailure { reason, message }
}

/// Classifies a failed write of one resource of `project`; `desired` is the policy it
/// tried to set (`default` or the policy name).
pub fn write_failure(err: &cloudrun::Error, project: &str, desired: &str) -> WriteFailure {
    let google = words(err);
    let failure = err.failure();
    let (reason, message) = match failure {
        Failure::OrgPolicyDenied => (
            FailureReason::OrgPolicyConflict,
            format!(
                "{google}; the organization policy constraint {ORG_POLICY_CONSTRAINT} of project {project} does not allow {desired}: change spec.policy to an allowed value, or ask the organization policy administrators to allow it"
            ),
        ),
        Failure::Conflict => (
            FailureReason::ConcurrentUpdate,
            format!("{google}; the resource kept changing while the operator wrote it: the next pass tries again"),
        ),
        Failure::Rejected => (FailureReason::Rejected, google.clone()),
        Failure::NotFound => (
            FailureReason::Rejected,
            format!("{google}; the resource was deleted while the operator wrote it"),
        ),
        other => common(err, other, project, &google).unwrap_or_else(|| unavailable(&google)),
    };
    WriteFailure { reason, message }
}

/// The failures that read the same wherever they happen; `None` for an outage.
fn common(
    err: &cloudrun::Error,
    failure: Failure,
    project: &str,
    google: &str,
) -> Option<(FailureReason, String)> {
    Some(match failure {
        Failure::PermissionDenied => (
            FailureReason::PermissionDenied,
            format!(
                "{google}; grant the operator's Google identity {} on project {project} ({ROLE_HINT})",
                permission_or(err, "the permission named")
            ),
        ),
        Failure::Unauthenticated => (
            FailureReason::PermissionDenied,
            format!("{google}; the operator's Google credentials were refused: check Workload Identity or GOOGLE_APPLICATION_CREDENTIALS (docs/controller.md)"),
        ),
        Failure::ApiDisabled => {
            let service = err
                .disabled_api()
                .map(|api| api.service)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "run.googleapis.com".to_owned());
            (
                FailureReason::ApiDisabled,
                format!(
                    "{google}; enable it: gcloud services enable {service} --project {project}"
                ),
            )
        }
        Failure::VpcServiceControls => (
            FailureReason::VpcServiceControls,
            format!("{google}; a VPC Service Controls perimeter around project {project} refuses the operator: add an ingress rule for its identity and run.googleapis.com (README, Troubleshooting)"),
        ),
        Failure::Unavailable | Failure::QuotaExceeded | Failure::Conflict => return None,
        Failure::NotFound | Failure::OrgPolicyDenied | Failure::Rejected => (
            FailureReason::CloudRunUnavailable,
            format!("{google}; Cloud Run refused the call: the operator tries again at the next pass"),
        ),
    })
}

/// Google's words, without the final full stop (what to do follows after a semicolon).
pub fn words(err: &cloudrun::Error) -> String {
    let mut google = err.google_message();
    while google.ends_with('.') {
        google.pop();
    }
    google
}

fn unavailable(google: &str) -> (FailureReason, String) {
    (
        FailureReason::CloudRunUnavailable,
        format!("{google}; the operator retries with backoff"),
    )
}

fn permission_or(err: &cloudrun::Error, fallback: &str) -> String {
    err.denied_permission()
        .unwrap_or_else(|| fallback.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudrun::ApiError;
    use serde_json::{json, Value};

    fn error(status: u16, name: &str, message: &str, details: Value) -> cloudrun::Error {
        cloudrun::Error::from_api(ApiError::from_http(
            "ListServices projects/p/locations/us-central1",
            status,
            None,
            json!({"error": {"code": status, "status": name, "message": message, "details": details}})
                .to_string()
                .as_bytes(),
        ))
    }

    fn denied() -> cloudrun::Error {
        error(
            403,
            "PERMISSION_DENIED",
            "Permission 'run.jobs.list' denied on resource 'x' (or resource may not exist).",
            json!([]),
        )
    }

    #[test]
    fn a_project_refused_everywhere_is_not_found_or_forbidden() {
        let f = read_failure(&denied(), ReadScope::Project("acme"));
        assert_eq!(f.reason, FailureReason::ProjectNotFoundOrForbidden);
        assert!(f.message.contains("check spec.project"), "{}", f.message);
        assert!(f.message.contains("run.jobs.list"), "{}", f.message);
        // A part of a visible project: the permission is missing.
        let f = read_failure(&denied(), ReadScope::Part("acme"));
        assert_eq!(f.reason, FailureReason::PermissionDenied);
        assert!(
            f.message
                .contains("grant the operator's Google identity run.jobs.list on project acme"),
            "{}",
            f.message
        );
        // No hint is said twice.
        assert!(
            !f.message.contains("docs/cloudrun-client.md"),
            "{}",
            f.message
        );
    }

    #[test]
    fn disabled_apis_print_the_command_that_enables_them() {
        let err = error(
            403,
            "PERMISSION_DENIED",
            "Cloud Run Admin API has not been used in project 42 before or it is disabled.",
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
                "domain": "googleapis.com", "metadata": {"service": "run.googleapis.com", "consumer": "projects/42"}}]),
        );
        for f in [
            read_failure(&err, ReadScope::Project("acme")),
            read_failure(&err, ReadScope::Part("acme")),
        ] {
            assert_eq!(f.reason, FailureReason::ApiDisabled);
            assert!(
                f.message.ends_with(
                    "enable it: gcloud services enable run.googleapis.com --project acme"
                ),
                "{}",
                f.message
            );
        }
        let w = write_failure(&err, "acme", "default");
        assert_eq!(w.reason, FailureReason::ApiDisabled);
    }

    #[test]
    fn writes_name_their_reason() {
        let cases = [
            (
                error(
                    403,
                    "PERMISSION_DENIED",
                    "Permission 'run.services.update' denied",
                    json!([]),
                ),
                FailureReason::PermissionDenied,
            ),
            (
                error(401, "UNAUTHENTICATED", "bad token", json!([])),
                FailureReason::PermissionDenied,
            ),
            (
                error(
                    403,
                    "PERMISSION_DENIED",
                    "Request is prohibited by organization's policy.",
                    json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SECURITY_POLICY_VIOLATED", "domain": "googleapis.com"}]),
                ),
                FailureReason::VpcServiceControls,
            ),
            (
                error(
                    400,
                    "FAILED_PRECONDITION",
                    "Constraint constraints/run.allowedBinaryAuthorizationPolicies violated",
                    json!([]),
                ),
                FailureReason::OrgPolicyConflict,
            ),
            (
                error(409, "ABORTED", "stale", json!([])),
                FailureReason::ConcurrentUpdate,
            ),
            (
                error(400, "INVALID_ARGUMENT", "bad", json!([])),
                FailureReason::Rejected,
            ),
            (
                error(503, "UNAVAILABLE", "later", json!([])),
                FailureReason::CloudRunUnavailable,
            ),
            (
                error(429, "RESOURCE_EXHAUSTED", "quota", json!([])),
                FailureReason::CloudRunUnavailable,
            ),
        ];
        for (err, want) in cases {
            let w = write_failure(&err, "acme", "default");
            assert_eq!(w.reason, want, "{err}");
            assert!(!w.message.contains('\n'));
        }
    }
}
