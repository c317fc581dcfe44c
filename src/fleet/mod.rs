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
    self, BindingInput, BindingKey, BindingPlan, Decision, Exceptions, Grants, Namespace,
    PassFailure, Permission, WriteFailure, WriteOutcome,
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
/// bindings of one project), each with what the grants say of it.
pub fn project_inputs<'b>(
    bindings: &'b [Arc<BinAuthzBinding>],
    project: &str,
    tenancy: &Tenancy,
) -> Vec<BindingInput<'b>> {
    bindings
        .iter()
        .filter(|b| b.spec.project == project)
        .map(|b| input(b, tenancy))
        .collect()
}

/// One binding as the planner takes it, with what the grants say of it.
pub fn input<'b>(binding: &'b BinAuthzBinding, tenancy: &Tenancy) -> BindingInput<'b> {
    let key = key_of(binding);
    let permission = tenancy.permission(&key.namespace, &binding.spec);
    BindingInput {
        key,
        spec: &binding.spec,
        permission,
    }
}

/// Namespace labels by namespace name (`None`: unknown namespace).
pub type NamespaceLabels = Arc<dyn Fn(&str) -> Option<BTreeMap<String, String>> + Send + Sync>;

/// The tenancy grants as they are now, and where namespace labels come from: the
/// controller's watch caches, or for `check` only the label Kubernetes gives every
/// namespace (`kubernetes.io/metadata.name`).
#[derive(Clone)]
pub struct Tenancy {
    /// Every grant.
    pub grants: Grants,
    /// The labels of a namespace.
    pub labels: NamespaceLabels,
}

/// The label Kubernetes sets on every namespace: its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl Tenancy {
    /// No grant: every binding is permitted.
    pub fn open() -> Self {
        Self::offline(Grants::default())
    }

    /// `grants`, with namespaces known only by name (`check` without a cluster).
    pub fn offline(grants: Grants) -> Self {
        Self {
            grants,
            labels: Arc::new(|_| None),
        }
    }

    /// What the grants say about a binding with `spec` in `namespace`. A namespace whose
    /// labels are unknown carries only `kubernetes.io/metadata.name`.
    pub fn permission(
        &self,
        namespace: &str,
        spec: &crate::api::BinAuthzBindingSpec,
    ) -> Permission {
        if self.grants.is_empty() {
            return Permission::Open;
        }
        let labels = (self.labels)(namespace).unwrap_or_else(|| {
            BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned())])
        });
        self.grants.permission(
            Namespace {
                name: namespace,
                labels: &labels,
            },
            spec,
        )
    }
}

impl std::fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenancy")
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

/// Whether `key` still asks for exactly `remediation` on `resource`, planned with
/// `bindings` and `exceptions` as they are now (every binding of the resource's project):
/// the guard every
/// write attempt asks with the resource as just read.
pub fn still_owned(
    bindings: &[BindingInput<'_>],
    exceptions: &Exceptions,
    key: &BindingKey,
    resource: &ObservedResource,
    remediation: &Remediation,
) -> bool {
    let Ok(plan) = plan::plan_with_exceptions(bindings, exceptions, std::iter::once(resource))
    else {
        return false;
    };
    plan.binding(key)
        .and_then(|b| b.target(&resource.id))
        .is_some_and(|t| matches!(&t.decision, Decision::Remediate(r) if r == remediation))
}
