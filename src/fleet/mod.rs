//! The one path from Cloud Run to a binding's report, shared by the controller and `check`: read ([`read`]), classify ([`classify`]), remediate ([`remediate`]).
//!
//! Both surfaces read through one [`inventory::SharedInventory`], plan with
//! [`crate::plan`], and write through [`remediate::remediate_all`]; only what surrounds
//! them differs (the controller writes status and events under a lease, `check` prints a
//! report). So a Cloud Run answer means the same in both: the same reason, the same
//! message, the same outcome.

pub mod classify;
pub mod effect;
pub mod inventory;
pub mod read;
pub mod remediate;

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;

use crate::api::{BinAuthzBinding, FailureReason};
use crate::plan::{
    self, BindingInput, BindingKey, BindingPlan, Decision, PassFailure, WriteFailure, WriteOutcome,
};
use crate::resource::{ObservedResource, Remediation, ResourceId};

/// The outcome of every write `plan` asks for when the pass's reads forbid writing for good
/// — the policy does not exist, or the organization policy does not allow it: each is
/// failed with that reason, so every target says why nothing was written. Empty otherwise
/// (an outage leaves the writes pending for the next pass).
pub fn refused_writes(
    plan: &BindingPlan<'_>,
    failure: Option<&PassFailure>,
) -> BTreeMap<ResourceId, WriteOutcome> {
    let Some(f) = failure.filter(|f| {
        matches!(
            f.reason,
            FailureReason::PolicyNotFound | FailureReason::OrgPolicyConflict
        )
    }) else {
        return BTreeMap::new();
    };
    plan.remediations()
        .map(|(resource, _)| {
            let failure = WriteFailure {
                reason: f.reason,
                message: f.message.clone(),
            };
            (resource.id.clone(), WriteOutcome::Failed(failure))
        })
        .collect()
}

/// `namespace/name` of a binding.
pub fn key_of(binding: &BinAuthzBinding) -> BindingKey {
    BindingKey::new(binding.namespace().unwrap_or_default(), binding.name_any())
}

/// Every binding of `project`, as the planner takes them (ownership is decided among the
/// bindings of one project).
pub fn project_inputs<'b>(
    bindings: &'b [Arc<BinAuthzBinding>],
    project: &str,
) -> Vec<BindingInput<'b>> {
    bindings
        .iter()
        .filter(|b| b.spec.project == project)
        .map(|b| BindingInput {
            key: key_of(b),
            spec: &b.spec,
        })
        .collect()
}

/// Whether `key` still asks for exactly `remediation` on `resource`, planned with
/// `bindings` as they are now (every binding of the resource's project): the guard every
/// write attempt asks with the resource as just read.
pub fn still_owned(
    bindings: &[BindingInput<'_>],
    key: &BindingKey,
    resource: &ObservedResource,
    remediation: &Remediation,
) -> bool {
    let Ok(plan) = plan::plan(bindings, std::iter::once(resource)) else {
        return false;
    };
    plan.binding(key)
        .and_then(|b| b.target(&resource.id))
        .is_some_and(|t| matches!(&t.decision, Decision::Remediate(r) if r == remediation))
}
