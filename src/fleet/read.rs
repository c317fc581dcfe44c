//! Reads what one binding covers — its regions, every list, the checks on its policy — with partial progress: one unreadable region never stops the others.
//!
//! # Expected flow
//! 1. `locations: ["*"]`: the project's regions (v1 locations, cached by the client; the
//!    real API answers the whole catalogue of Cloud Run regions). A refusal there stops
//!    the pass: nothing else of the project can be addressed.
//! 2. One list per (region, kind) the binding selects, through the shared inventory
//!    (single flight, shared by every binding and by `check`'s bindings alike). An empty
//!    region costs one list and is not a failure.
//! 3. A named policy is checked: Google's managed policy is known and never read; a
//!    readable one must exist (else `PolicyNotFound`, nothing is written); one the
//!    operator may not read (403) is *unverifiable*, and the write goes ahead.
//!
//! # Guarantees
//! - Partial progress: when some lists fail and others succeed, the successful ones are
//!   planned and reconciled; each failed region is reported once ([`UnreadLocation`]).
//! - Every failure is classified once, by [`super::classify`]: the controller and `check`
//!   report the same reason for the same answer.
//! - `listed` is false only when nothing could be read: callers then keep what they last
//!   knew instead of reporting an empty binding.

use std::collections::BTreeMap;
use std::time::Instant;

use super::classify::{read_failure, ReadScope};
use super::inventory::{Listed, Scope, SharedInventory};
use crate::api::{
    BinAuthzBindingSpec, FailureReason, PolicyCheck, PolicyCheckResult, ResourceKind,
    UnreadLocation,
};
use crate::cloudrun::{self, Failure};
use crate::plan::{PassFailure, PassFindings};
use crate::policy::{DesiredPolicy, PolicyName};

/// Google's managed Binary Authorization policy for Cloud Run (built on BCID): customers
/// can never read it, and Cloud Run always accepts it.
pub const GOOGLE_MANAGED_POLICY: &str =
    "projects/bcid-cloud-run-policy/platforms/cloudRun/policies/bcidManagedPolicy";

/// What the reads of one binding produced.
#[derive(Debug, Default)]
pub struct BindingRead {
    /// The lists that succeeded.
    pub lists: Vec<Listed>,
    /// Unread regions and the policy checks, for the status.
    pub findings: PassFindings,
    /// A failure of the whole pass: nothing was read, or nothing may be written.
    pub failure: Option<PassFailure>,
    /// Whether anything was listed (false: keep the last known targets).
    pub listed: bool,
    /// Some failure is transient: worth another pass soon.
    pub retry: bool,
}

impl BindingRead {
    /// Whether the pass may write: no whole-pass failure.
    pub fn may_write(&self) -> bool {
        self.failure.is_none()
    }

    fn fail(&mut self, failure: PassFailure) {
        self.retry |= !failure.reason.needs_a_person();
        let better = self
            .failure
            .as_ref()
            .is_none_or(|f| rank(failure.reason) < rank(f.reason));
        if better {
            self.failure = Some(failure);
        }
    }
}

/// Which failure of a pass is reported when several happen: access first.
fn rank(reason: FailureReason) -> u8 {
    match reason {
        FailureReason::ProjectNotFoundOrForbidden => 0,
        FailureReason::ApiDisabled => 1,
        FailureReason::VpcServiceControls => 2,
        FailureReason::PermissionDenied => 3,
        FailureReason::PolicyNotFound => 4,
        FailureReason::OrgPolicyConflict => 5,
        _ => 6,
    }
}

/// Reads everything `spec` covers on lists started at or after `not_before` (see the
/// module docs).
#[tracing::instrument(skip_all, fields(project = %spec.project))]
pub async fn read_binding(
    inventory: &SharedInventory,
    spec: &BinAuthzBindingSpec,
    not_before: Instant,
) -> BindingRead {
    let mut read = BindingRead::default();
    let project = spec.project.as_str();
    let client = inventory.client();

    let locations = if spec.locations.iter().any(|l| l == "*") {
        match client.regions(project).await {
            Ok(regions) => regions,
            Err(err) => {
                read.fail(read_failure(&err, ReadScope::Project(project)));
                return read;
            }
        }
    } else {
        spec.locations.clone()
    };
    let scopes: Vec<Scope> = locations
        .iter()
        .flat_map(|location| {
            ResourceKind::ALL
                .into_iter()
                .filter(|kind| spec.targets.for_kind(*kind).is_some())
                .map(|kind| Scope {
                    project: project.to_owned(),
                    location: location.clone(),
                    kind,
                })
        })
        .collect();
    let results =
        futures::future::join_all(scopes.iter().map(|s| inventory.list(s, not_before))).await;

    let mut failed: BTreeMap<&str, Vec<(ResourceKind, std::sync::Arc<cloudrun::Error>)>> =
        BTreeMap::new();
    for (scope, result) in scopes.iter().zip(results) {
        match result {
            Ok(list) => read.lists.push(list),
            Err(err) => failed
                .entry(scope.location.as_str())
                .or_default()
                .push((scope.kind, err)),
        }
    }
    read.listed = !read.lists.is_empty() || scopes.is_empty();
    if !read.listed {
        // Nothing of the project could be read: one failure for the pass, the most
        // telling one (a refusal says more than an outage).
        let worst = failed
            .values()
            .flatten()
            .map(|(_, err)| read_failure(err, ReadScope::Project(project)))
            .min_by_key(|f| rank(f.reason));
        if let Some(failure) = worst {
            read.fail(failure);
        }
        return read;
    }
    for (location, errors) in failed {
        let classified: Vec<(ResourceKind, PassFailure)> = errors
            .iter()
            .map(|(kind, err)| (*kind, read_failure(err, ReadScope::Part(project))))
            .collect();
        let Some((_, first)) = classified.iter().min_by_key(|(_, f)| rank(f.reason)) else {
            continue;
        };
        let kinds: Vec<&str> = classified.iter().map(|(k, _)| k.collection()).collect();
        read.retry |= classified.iter().any(|(_, f)| !f.reason.needs_a_person());
        read.findings.unread.push(UnreadLocation {
            location: location.to_owned(),
            reason: first.reason,
            message: crate::cloudrun::error::clip(
                &format!("listing {}: {}", kinds.join(", "), first.message),
                1024,
            ),
        });
    }

    if let Some(DesiredPolicy::Named(name)) = spec.desired_policy() {
        let check = check_policy(client, &name).await;
        if let Some(failure) = check.1 {
            read.fail(failure);
        }
        read.findings.policy_check = Some(check.0);
    }
    read
}

/// Checks a named policy before it is written: the check for the status, and a failure
/// when nothing may be written.
pub async fn check_policy(
    client: &cloudrun::CloudRunClient,
    name: &PolicyName,
) -> (PolicyCheck, Option<PassFailure>) {
    let check = |result, message: String| PolicyCheck { result, message };
    if name.as_str() == GOOGLE_MANAGED_POLICY {
        return (
            check(
                PolicyCheckResult::GoogleManaged,
                "Google's managed policy: not readable by customers, always accepted by Cloud Run"
                    .to_owned(),
            ),
            None,
        );
    }
    match client.policy_exists(name).await {
        Ok(true) => (check(PolicyCheckResult::Verified, String::new()), None),
        Ok(false) => {
            let message = format!(
                "Binary Authorization platform policy {name} does not exist; create it, or correct spec.policy.name"
            );
            (
                check(PolicyCheckResult::NotFound, message.clone()),
                Some(PassFailure {
                    reason: FailureReason::PolicyNotFound,
                    message,
                }),
            )
        }
        Err(err) => match err.failure() {
            Failure::PermissionDenied
            | Failure::ApiDisabled
            | Failure::VpcServiceControls
            | Failure::Unauthenticated => (
                check(
                    PolicyCheckResult::Unverifiable,
                    crate::cloudrun::error::clip(
                        &format!(
                            "cannot read policy {name}: {}; the write goes ahead and Cloud Run decides (grant binaryauthorization.platformPolicies.get on project {} to verify it)",
                            err.google_message(),
                            name.project()
                        ),
                        1024,
                    ),
                ),
                None,
            ),
            _ => {
                // Cloud Run would probably accept a policy that does not exist and fail
                // every later deploy: never write a policy that could not be checked for
                // a passing reason.
                let failure = read_failure(&err, ReadScope::Part(name.project()));
                (
                    check(PolicyCheckResult::Unverifiable, failure.message.clone()),
                    Some(failure),
                )
            }
        },
    }
}
