//! The many faces of 403: a missing permission, a project the caller cannot see, the Cloud
//! Run Admin API not enabled, and VPC Service Controls — each as Google words it.
//!
//! Sources: Google's error model (cloud.google.com/apis/design/errors, `google.rpc.ErrorInfo`
//! reasons `SERVICE_DISABLED`, `SECURITY_POLICY_VIOLATED`, `IAM_PERMISSION_DENIED`) and
//! 403 bodies quoted in public bug reports (the Cloud Run Admin API's "has not been used in
//! project N before or it is disabled" message with its activation URL; the VPC Service
//! Controls "Request is prohibited by organization's policy" body with its unique id).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::google::{self, ApiError, Code};

/// How the caller sees a project.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProjectAccess {
    /// Normal access (permissions still apply).
    #[default]
    Granted,
    /// The Cloud Run Admin API is not enabled in the project: every Cloud Run call answers
    /// 403 with `ErrorInfo{reason: SERVICE_DISABLED}` and the activation URL.
    ApiDisabled,
    /// A VPC Service Controls perimeter keeps the caller out: every Cloud Run call answers
    /// 403 with `ErrorInfo{reason: SECURITY_POLICY_VIOLATED}`.
    VpcServiceControls,
    /// The project does not exist for this caller (deleted, or no permission at all): every
    /// call answers 403 "Permission '...' denied on resource '...' (or resource may not
    /// exist)." — the answer for a project that does not exist at all.
    NotVisible,
}

impl ProjectAccess {
    /// True for the default.
    pub fn is_granted(&self) -> bool {
        *self == ProjectAccess::Granted
    }

    /// Parses one `--project-access` value (`apiDisabled`, `api-disabled`, ...).
    pub fn parse(text: &str) -> Result<ProjectAccess, String> {
        Ok(match text {
            "granted" => ProjectAccess::Granted,
            "apiDisabled" | "api-disabled" => ProjectAccess::ApiDisabled,
            "vpcServiceControls" | "vpc-service-controls" => ProjectAccess::VpcServiceControls,
            "notVisible" | "not-visible" => ProjectAccess::NotVisible,
            other => {
                return Err(format!(
                    "unknown project access '{other}': use apiDisabled, vpcServiceControls, \
                     notVisible or granted"
                ))
            }
        })
    }
}

/// 403 PERMISSION_DENIED for a missing permission, or a resource (or project) the caller
/// cannot see — Google does not tell the two apart.
pub fn permission_denied(permission: &str, resource: &str) -> ApiError {
    ApiError::new(
        Code::PermissionDenied,
        format!(
            "Permission '{permission}' denied on resource '{resource}' (or resource may not exist)."
        ),
    )
    .with_detail(google::error_info(
        "IAM_PERMISSION_DENIED",
        "iam.googleapis.com",
        json!({"permission": permission, "resource": resource}),
    ))
}

/// 403 for a project whose Cloud Run Admin API is not enabled.
pub fn api_disabled(project_number: &str) -> ApiError {
    let url = format!(
        "https://console.developers.google.com/apis/api/run.googleapis.com/overview?project={project_number}"
    );
    ApiError::new(
        Code::PermissionDenied,
        format!(
            "Cloud Run Admin API has not been used in project {project_number} before or it is \
             disabled. Enable it by visiting {url} then retry. If you enabled this API recently, \
             wait a few minutes for the action to propagate to our systems and retry."
        ),
    )
    .with_detail(google::error_info(
        "SERVICE_DISABLED",
        "googleapis.com",
        json!({
            "consumer": format!("projects/{project_number}"),
            "service": "run.googleapis.com",
            "activationUrl": url,
            "serviceTitle": "Cloud Run Admin API",
            "containerInfo": project_number,
        }),
    ))
    .with_detail(google::help(
        "Google developers console API activation",
        &url,
    ))
}

/// 403 for a call a VPC Service Controls perimeter refuses. The unique identifier is
/// derived from the project and the call, so one call always gets the same one.
pub fn vpc_service_controls(project_number: &str, call: &str) -> ApiError {
    let uid = unique_identifier(&(project_number, call));
    ApiError::new(
        Code::PermissionDenied,
        format!(
            "Request is prohibited by organization's policy. vpcServiceControlsUniqueIdentifier: {uid}"
        ),
    )
    .with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
        "violations": [{"type": "VPC_SERVICE_CONTROLS", "description": uid}],
    }))
    .with_detail(google::error_info(
        "SECURITY_POLICY_VIOLATED",
        "googleapis.com",
        json!({
            "service": "run.googleapis.com",
            "uid": uid,
            "consumer": format!("projects/{project_number}"),
        }),
    ))
}

/// A 54-character URL-safe identifier like the ones VPC Service Controls hands out.
fn unique_identifier(seed: &impl Hash) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(54);
    let mut round = 0u64;
    while out.len() < 54 {
        let mut hasher = DefaultHasher::new();
        (seed, round).hash(&mut hasher);
        let mut bits = hasher.finish();
        for _ in 0..10 {
            if out.len() == 54 {
                break;
            }
            out.push(ALPHABET[(bits % 64) as usize] as char);
            bits /= 64;
        }
        round += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_access_parses_flag_and_json_spellings() {
        assert_eq!(
            ProjectAccess::parse("api-disabled"),
            Ok(ProjectAccess::ApiDisabled)
        );
        assert_eq!(
            ProjectAccess::parse("vpcServiceControls"),
            Ok(ProjectAccess::VpcServiceControls)
        );
        assert!(ProjectAccess::parse("nope").is_err());
        let uid = unique_identifier(&"x");
        assert_eq!(uid.len(), 54);
        assert_eq!(uid, unique_identifier(&"x"));
    }
}
