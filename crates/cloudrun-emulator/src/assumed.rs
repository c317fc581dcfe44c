//! Every emulator behaviour that no source settles (marked **assumed** in docs/emulator.md), in one place.
//!
//! The real Cloud Run Admin API does not document these. They are implemented as written
//! here; change them here and nowhere else. Besides the items below:
//! - resource, operation and policy names in responses carry the project **id**, also when
//!   the request addressed the project by number;
//! - a write that changes nothing at all bumps nothing (no new generation or etag) and is
//!   not in the audit log;
//! - a write whose operation fails (the `operationFailureRate` fault) leaves the resource
//!   unchanged;
//! - an etag is `"<base64 version>/<base64 name>"`, the version being `updateTime` in
//!   microseconds; the ABORTED message quotes those versions.

use std::time::Duration;

use serde_json::{json, Value};

use super::google::{ApiError, Code};

/// Largest page a v2 list answers; larger `pageSize` values are capped to it **(assumed)**.
pub const MAX_PAGE_SIZE: usize = 100;

/// Page size used when `pageSize` is absent or `0` **(assumed)**.
pub const DEFAULT_PAGE_SIZE: usize = MAX_PAGE_SIZE;

/// Largest page of the v1 locations list **(assumed)**.
pub const MAX_LOCATIONS_PAGE_SIZE: usize = 100;

/// Longest time one `operations/{id}:wait` call blocks, and what it waits when the body
/// carries no `timeout` **(assumed)**.
pub const MAX_OPERATION_WAIT: Duration = Duration::from_secs(60);

/// A `breakglassJustification` is accepted with `useDefault: true` or with a named `policy`,
/// and refused when Binary Authorization is disabled **(assumed)**.
pub fn breakglass_allowed(binary_authorization_enabled: bool) -> bool {
    binary_authorization_enabled
}

/// The `etag` of a write is checked only when the request body carries one; a body without
/// an etag is applied unconditionally **(assumed)**.
pub fn etag_checked(body_etag: Option<&str>) -> bool {
    body_etag.is_some_and(|etag| !etag.is_empty())
}

/// A PATCH that changes only `binaryAuthorization` (no template change) bumps `generation`,
/// `etag` and `updateTime` but creates no revision **(assumed)**.
pub fn creates_revision(template_changed: bool, force_new_revision: bool) -> bool {
    template_changed || force_new_revision
}

/// A PATCH of a service or worker pool without an `updateMask` replaces the whole resource
/// (server-managed output fields are kept), like a job PATCH **(assumed)**.
pub const MISSING_UPDATE_MASK_REPLACES_WHOLE_RESOURCE: bool = true;

/// A call naming a location that is not a Cloud Run region **(assumed)**: a malformed
/// name (`us-central`, `US-CENTRAL1`) answers 400 INVALID_ARGUMENT; a well-formed one that
/// is not in the catalogue of `regions.rs` nor seeded (`asia-east9`) answers 404
/// NOT_FOUND. Any Cloud Run region is valid in every project: listing one with nothing in
/// it answers `{}` (documented).
pub fn unknown_location_error(project: &str, location: &str, well_formed: bool) -> ApiError {
    if well_formed {
        ApiError::not_found(format!(
            "Location '{location}' is not a Cloud Run region (project '{project}'): see \
             `gcloud run regions list`."
        ))
    } else {
        ApiError::invalid_field(
            "parent",
            format!(
                "Invalid location '{location}' (project '{project}'): a Cloud Run region is \
                 named like us-central1."
            ),
        )
    }
}

/// v1 `locations.list` answers the catalogue sorted by `locationId` **(assumed)**; Google's
/// tools sort it themselves.
pub const LOCATIONS_SORTED_BY_ID: bool = true;

/// The value of each location's `run.googleapis.com/supportsPzs` label (gcloud's `regions
/// list` shows that label; its value per region is not published) **(assumed)**.
pub const LOCATION_SUPPORTS_PZS: &str = "false";

/// The `spec` of `getEffectivePolicy` for `run.allowedBinaryAuthorizationPolicies` when
/// no policy in the hierarchy sets it: an empty spec (no rules) **(assumed)**.
pub fn unset_list_constraint_spec() -> Value {
    json!({})
}

/// With `denyAll`, even a resource without Binary Authorization is refused: nothing is
/// allowed **(assumed)**. With a list of values, a resource without Binary Authorization
/// is refused (documented for creates; assumed for updates).
pub const DENY_ALL_REFUSES_DISABLED: bool = true;

/// The error Cloud Run answers when `constraints/run.allowedBinaryAuthorizationPolicies`
/// refuses a write is not published: 400 FAILED_PRECONDITION with this message and a
/// `PreconditionFailure` violation of type `constraints/run.allowedBinaryAuthorizationPolicies`
/// **(assumed)**. The constraint is checked on every API write of a resource (whatever the
/// write changes), not on admin-API drift or deploys (those simulate the past).
pub fn org_policy_refusal_message(project_number: &str, resource: &str, value: &str) -> String {
    format!(
        "Constraint constraints/run.allowedBinaryAuthorizationPolicies violated for \
         projects/{project_number} attempting to update '{resource}' with Binary Authorization \
         policy '{value}'. Use a Binary Authorization policy the organization policy allows."
    )
}

/// Google's managed policy
/// `projects/bcid-cloud-run-policy/platforms/cloudRun/policies/bcidManagedPolicy` authorizes
/// every image (its real rules — build provenance from Google's build service — are not
/// modelled) **(assumed)**.
pub const BCID_POLICY_AUTHORIZES_EVERY_IMAGE: bool = true;

/// An API PATCH that deploys a new revision (template change) whose image the resource's
/// policy does not authorize is accepted, creates the revision, and its operation ends
/// with 400 FAILED_PRECONDITION (`google.rpc.Code` 9) carrying Cloud Run's "uses an
/// unauthorized container image" message; the previous revision keeps serving
/// **(assumed)**.
pub const UNAUTHORIZED_DEPLOY_CODE: Code = Code::FailedPrecondition;

/// A traffic change to a revision the policy does not authorize keeps the new `traffic`
/// (the spec is accepted, `generation` bumps) while `trafficStatuses` keep serving the
/// previous split and `RoutesReady`/`Ready` fail with `CONTAINER_IMAGE_UNAUTHORIZED`
/// **(assumed)**.
pub const REFUSED_TRAFFIC_KEEPS_SPEC: bool = true;

/// An image pattern of `authorizedImages`: `*` matches within one path segment, `**`
/// across segments, anything else literally — Binary Authorization's allowlist pattern
/// rules, applied to the whole image reference including its tag or digest **(assumed)**.
pub fn image_matches(pattern: &str, image: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p {
            [] => s.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| go(rest, &s[i..])),
            [b'*', rest @ ..] => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| go(rest, &s[i..])),
            [c, rest @ ..] => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), image.as_bytes())
}

/// The `quota_limit_value` of an injected 429 (`errorRates`) when no quota is configured:
/// the new-project preset's numbers **(assumed)**.
pub const INJECTED_QUOTA_LIMITS: (u32, u32) = (600, 30);

/// The message of a write naming a Binary Authorization policy that does not exist; the
/// call fails with 400 INVALID_ARGUMENT **(assumed)**.
pub fn unknown_policy_message(policy: &str) -> String {
    format!("Binary Authorization policy '{policy}' was not found.")
}

// --- Audit log entries (`--audit-log-topic`) -------------------------------------------
// Settled by a real v1 `ReplaceService` entry and Google's docs (see docs/emulator.md,
// "Audit log"): logName, resource type `cloud_run_revision` with empty
// `configuration_name`/`revision_name`, v1 `resourceName` `namespaces/P/services/S`,
// authorizationInfo, requestMetadata, severity NOTICE/ERROR, one entry per v1 call, two
// (first/last) per long-running v2 call. The items below are not settled.

/// The collection segment of a v1 `resourceName` (`namespaces/P/{collection}/ID`): the v1
/// REST paths' spelling; `workerpools` is **(assumed)** (no published v1 worker pool entry).
pub fn v1_collection(kind: super::state::Kind) -> &'static str {
    match kind {
        super::state::Kind::Service => "services",
        super::state::Kind::Job => "jobs",
        super::state::Kind::WorkerPool => "workerpools",
    }
}

/// How much later than its `timestamp` an entry's `receiveTimestamp` is (real entries show
/// a fraction of a second) **(assumed)**.
pub const AUDIT_LOG_RECEIVE_DELAY: Duration = Duration::from_millis(150);

// Also **(assumed)**, implemented in `auditlog.rs`:
// - worker pool entries use the monitored resource type `cloud_run_worker_pool` with the
//   label `worker_pool_name` (jobs: `cloud_run_job`, `job_name`, as Cloud Logging lists);
// - the v1 worker pool method is `google.cloud.run.v1.WorkerPools.ReplaceWorkerPool`;
// - v2 entries carry `status: {}` on success (v1 entries carry none, as the real one);
// - v2 `resourceName` is `projects/{project id}/locations/L/{collection}/ID` and
//   `operation.id` is the operation's full name;
// - the last entry of a long-running call repeats `authenticationInfo` and
//   `requestMetadata`, carries `response` (the resource) when the operation succeeded and
//   `status {code, message}` with severity ERROR when it failed;
// - refused calls (4xx) and `validateOnly` calls make no entry (Google logs some refused
//   calls with their status; the operator ignores failed calls either way);
// - a write that changes nothing still makes its entries (the call succeeded);
// - `callerIp` of an API write is the TCP peer's address; admin drift and deploys, which
//   stand for a user elsewhere, use `ADMIN_CALLER_IP`.

/// `requestMetadata.callerIp` of admin-API writes (a documentation address).
pub const ADMIN_CALLER_IP: &str = "198.51.100.23";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_patterns_match_within_and_across_segments() {
        let image = "us-docker.pkg.dev/acme-prod/shop/checkout:1.2";
        assert!(image_matches("us-docker.pkg.dev/acme-prod/**", image));
        assert!(image_matches("us-docker.pkg.dev/acme-prod/shop/*", image));
        assert!(!image_matches("us-docker.pkg.dev/acme-prod/*", image));
        assert!(!image_matches("us-docker.pkg.dev/other/**", image));
        assert!(image_matches(image, image));
    }
}
