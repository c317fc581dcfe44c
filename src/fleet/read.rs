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
//! 4. The project's organization policy constraint
//!    `constraints/run.allowedBinaryAuthorizationPolicies` is read (cached by the client):
//!    when it does not allow the desired policy the binding is `OrgPolicyConflict` and
//!    nothing is written; when it cannot be read the pass proceeds and the write's answer
//!    decides.
//!
//! # Guarantees
//! - Partial progress: when some lists fail and others succeed, the successful ones are
//!   planned and reconciled; each failed region is reported once ([`UnreadLocation`]).
//! - Every failure is classified once, by [`super::classify`]: the controller and `check`
//!   report the same reason for the same answer.
//! - `listed` is false only when nothing could be read: callers then keep what they last
//!   knew instead of reporting an empty binding.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::classify::{read_failure, words, ReadScope};
use super::inventory::{Listed, Scope, SharedInventory};
use crate::api::{
    BinAuthzBindingSpec, FailureReason, OrgPolicyState, OrgPolicyStatus, PolicyCheck,
    PolicyCheckResult, ResourceKind, UnreadLocation,
};
use crate::cloudrun::client::PolicyCheck as ClientPolicyCheck;
use crate::cloudrun::error::clip;
use crate::cloudrun::{self, AllowedBinauthzValue, OrgPolicyConstraint, ORG_POLICY_CONSTRAINT};
use crate::plan::{PassFailure, PassFindings};
use crate::policy::{DesiredPolicy, PolicyName};

/// Longest message in a status field (the CRD's `maxLength`).
const MAX_MESSAGE: usize = 1020;

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
            .is_none_or(|f| failure.reason.rank() < f.reason.rank());
        if better {
            self.failure = Some(failure);
        }
    }
}

/// Reads everything `spec` covers on lists started at or after `not_before` (see the
/// module docs).
pub async fn read_binding(
    inventory: &SharedInventory,
    spec: &BinAuthzBindingSpec,
    not_before: Instant,
) -> BindingRead {
    read_binding_within(inventory, spec, not_before, None).await
}

/// Like [`read_binding`], accepting lists up to `max_age` old (instead of the inventory's
/// ttl) when given: see [`SharedInventory::list_within`].
#[tracing::instrument(skip_all, fields(project = %spec.project))]
pub async fn read_binding_within(
    inventory: &SharedInventory,
    spec: &BinAuthzBindingSpec,
    not_before: Instant,
    max_age: Option<Duration>,
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
    let results = futures::future::join_all(scopes.iter().map(|s| async move {
        match max_age {
            Some(max_age) => inventory.list_within(s, not_before, max_age).await,
            None => inventory.list(s, not_before).await,
        }
    }))
    .await;

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
            .min_by_key(|f| f.reason.rank());
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
        let Some((_, first)) = classified.iter().min_by_key(|(_, f)| f.reason.rank()) else {
            continue;
        };
        let kinds: Vec<&str> = classified.iter().map(|(k, _)| k.collection()).collect();
        read.retry |= classified.iter().any(|(_, f)| !f.reason.needs_a_person());
        read.findings.unread.push(UnreadLocation {
            location: location.to_owned(),
            reason: first.reason,
            message: clip(
                &format!("listing {}: {}", kinds.join(", "), first.message),
                MAX_MESSAGE,
            ),
        });
    }

    let Some(desired) = spec.desired_policy() else {
        return read;
    };
    if let DesiredPolicy::Named(name) = &desired {
        let (check, failure) = check_policy(client, name).await;
        read.findings.policy_check = Some(check);
        if let Some(failure) = failure {
            read.fail(failure);
        }
    }
    let (org, failure) = check_org_policy(client, project, &desired).await;
    read.findings.org_policy = Some(org);
    if let Some(failure) = failure {
        read.fail(failure);
    }
    read
}

/// Checks a named policy before it is written: the check for the status, and a failure
/// when nothing may be written.
pub async fn check_policy(
    client: &cloudrun::CloudRunClient,
    name: &PolicyName,
) -> (PolicyCheck, Option<PassFailure>) {
    let check = |result, message: String| PolicyCheck {
        result,
        message: clip(&message, MAX_MESSAGE),
    };
    match client.policy_check(name).await {
        Ok(ClientPolicyCheck::Exists) => (check(PolicyCheckResult::Verified, String::new()), None),
        Ok(ClientPolicyCheck::GoogleManaged) => (
            check(
                PolicyCheckResult::GoogleManaged,
                "Google's managed policy: not readable by customers, always accepted by Cloud Run; never read".to_owned(),
            ),
            None,
        ),
        Ok(ClientPolicyCheck::NotFound) => {
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
        Ok(ClientPolicyCheck::Unverifiable { error }) => (
            check(
                PolicyCheckResult::Unverifiable,
                format!(
                    "cannot read policy {name}: {}; the write goes ahead and Cloud Run decides (grant binaryauthorization.platformPolicies.get on project {} to verify it)",
                    words(&error),
                    name.project()
                ),
            ),
            None,
        ),
        Err(err) => {
            // Cloud Run would probably accept a policy that does not exist and fail every
            // later deploy: never write a policy whose check failed for a passing reason.
            let failure = read_failure(&err, ReadScope::Part(name.project()));
            (
                check(PolicyCheckResult::Unverifiable, failure.message.clone()),
                Some(failure),
            )
        }
    }
}

/// Reads the project's organization policy constraint before writing: the state for the
/// status, and a failure when it does not allow `desired` (nothing is then written).
/// When it cannot be read, the pass proceeds and the write's answer decides.
pub async fn check_org_policy(
    client: &cloudrun::CloudRunClient,
    project: &str,
    desired: &DesiredPolicy,
) -> (OrgPolicyStatus, Option<PassFailure>) {
    let status = |state, allowed: &[AllowedBinauthzValue], message: String| OrgPolicyStatus {
        state,
        allowed_values: allowed.iter().take(32).map(ToString::to_string).collect(),
        message: clip(&message, MAX_MESSAGE),
    };
    let constraint = match client.effective_org_policy(project).await {
        Ok(constraint) => constraint,
        Err(err) => {
            return (
                status(
                    OrgPolicyState::Unreadable,
                    &[],
                    format!(
                        "{}; the operator proceeds and the write's answer decides (grant orgpolicy.policy.get on project {project} to read it)",
                        words(&err)
                    ),
                ),
                None,
            )
        }
    };
    let found = match &constraint {
        OrgPolicyConstraint::NotSet | OrgPolicyConstraint::AllowAll => status(
            OrgPolicyState::NotSet,
            &[],
            format!("{ORG_POLICY_CONSTRAINT} does not restrict project {project}: nothing prevents a deploy without Binary Authorization"),
        ),
        OrgPolicyConstraint::DenyAll => {
            status(OrgPolicyState::Enforced, &[], "denies every value".to_owned())
        }
        OrgPolicyConstraint::Allowed { values } => status(OrgPolicyState::Enforced, values, String::new()),
        OrgPolicyConstraint::Denied { values } => status(
            OrgPolicyState::Enforced,
            &[],
            format!(
                "allows every value but {}",
                values.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        ),
    };
    if constraint.allows(desired) {
        return (found, None);
    }
    let allowed = match &constraint {
        OrgPolicyConstraint::Allowed { values } if !values.is_empty() => format!(
            "allows only {}",
            values
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ if !found.message.is_empty() => found.message.clone(),
        _ => "allows no value the operator can write".to_owned(),
    };
    let failure = PassFailure {
        reason: FailureReason::OrgPolicyConflict,
        message: format!(
            "the organization policy constraint {ORG_POLICY_CONSTRAINT} of project {project} {allowed}, not {desired}; nothing is written: set spec.policy to an allowed value, or ask the organization policy administrators to allow {desired}"
        ),
    };
    (found, Some(failure))
}
