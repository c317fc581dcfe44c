//! Who owns each Cloud Run resource across every binding: [`plan`] builds a [`Plan`], and
//! [`affected_bindings`] says which bindings to re-check when one changes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::decide::decide;
use super::exceptions::Exceptions;
use super::{
    ActiveBinding, Activity, BindingInput, BindingKey, Decision, PlanError, PlannedTarget,
};
use crate::api::BinAuthzBindingSpec;
use crate::matching::{BindingMatcher, Inventory};
use crate::policy::DesiredPolicy;
use crate::resource::{BreakglassChange, ObservedResource, Remediation, ResourceId};

/// The plan for one binding.
#[derive(Clone, Debug, PartialEq)]
pub struct BindingPlan<'r> {
    pub(super) key: BindingKey,
    pub(super) activity: Activity,
    pub(super) targets: Vec<PlannedTarget<'r>>,
}

/// The plan for every binding given to [`plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct Plan<'r> {
    bindings: BTreeMap<BindingKey, BindingPlan<'r>>,
}

/// One merged write across co-owning bindings (see [`Plan::writes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write<'r> {
    /// The resource to write, as observed.
    pub resource: &'r ObservedResource,
    /// What to write.
    pub remediation: Remediation,
    /// The bindings asking for it, sorted.
    pub bindings: Vec<BindingKey>,
}

/// Who owns one resource, computed once per resource.
struct Ownership {
    /// The highest priority among the claimants.
    priority: i32,
    /// How many claimants have it (they come first in the resource's claim list).
    top_len: usize,
    /// Whether those disagree on the policy.
    conflicted: bool,
    /// Their keys, when some lower-priority claimant needs them for `Superseded`.
    top_keys: Option<Arc<[BindingKey]>>,
}

/// Plans every binding over the observed resources.
///
/// `resources` must hold everything the bindings' projects and locations contain that the
/// caller could list (deleted ones are ignored; the same id twice is resolved by content).
/// A resource the caller could not list is simply not planned.
///
/// # Errors
/// [`PlanError::DuplicateBinding`] when two bindings share a namespace/name.
pub fn plan<'r, I>(bindings: &[BindingInput<'_>], resources: I) -> Result<Plan<'r>, PlanError>
where
    I: IntoIterator<Item = &'r ObservedResource>,
{
    plan_with_exceptions(bindings, &Exceptions::none(), resources)
}

/// Like [`plan`], honouring the active `exceptions`: a target an exception of the
/// binding's namespace covers, that its owner would write or report drifted, is
/// [`Decision::Excepted`] instead (see [`super::exceptions`]).
///
/// # Errors
/// [`PlanError::DuplicateBinding`] when two bindings share a namespace/name.
pub fn plan_with_exceptions<'r, I>(
    bindings: &[BindingInput<'_>],
    exceptions: &Exceptions,
    resources: I,
) -> Result<Plan<'r>, PlanError>
where
    I: IntoIterator<Item = &'r ObservedResource>,
{
    let mut sorted: Vec<&BindingInput<'_>> = bindings.iter().collect();
    sorted.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    if let Some(pair) = sorted.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(PlanError::DuplicateBinding {
            key: pair[0].key.clone(),
        });
    }
    let inventory = Inventory::new(resources);
    let activities: Vec<Activity> = sorted.iter().map(|b| b.activity()).collect();
    let claimants = Claimants {
        sorted: &sorted,
        active: activities
            .iter()
            .map(|a| match a {
                Activity::Active(a) => Some(a),
                _ => None,
            })
            .collect(),
    };

    // Which participating bindings claim each resource (indices into `sorted`).
    let mut matched: Vec<Vec<usize>> = vec![Vec::new(); sorted.len()];
    let mut claims: Vec<Vec<usize>> = vec![Vec::new(); inventory.resources().len()];
    for (b, input) in sorted.iter().enumerate() {
        if claimants.active[b].is_some() {
            let found = inventory.matching(&BindingMatcher::new(input.spec));
            for &r in &found {
                claims[r].push(b);
            }
            matched[b] = found;
        }
    }
    let ownership = claimants.ownership(&mut claims);

    let mut plans = BTreeMap::new();
    for (b, (input, activity)) in sorted.iter().zip(&activities).enumerate() {
        let mut targets = Vec::new();
        if let Some(me) = claimants.active[b] {
            targets.reserve_exact(matched[b].len());
            for &r in &matched[b] {
                let Some(owner) = &ownership[r] else {
                    continue;
                };
                let resource = inventory.resources()[r];
                let decision = claimants.decision(me, owner, &claims[r], resource);
                let decision = except(decision, &input.key.namespace, resource, exceptions);
                targets.push(PlannedTarget { resource, decision });
            }
        }
        plans.insert(
            input.key.clone(),
            BindingPlan {
                key: input.key.clone(),
                activity: activity.clone(),
                targets,
            },
        );
    }
    Ok(Plan { bindings: plans })
}

/// The bindings of a plan, sorted by key, and the active ones among them (same index).
struct Claimants<'a, 's> {
    sorted: &'a [&'a BindingInput<'s>],
    active: Vec<Option<&'a ActiveBinding>>,
}

impl Claimants<'_, '_> {
    fn priority(&self, b: usize) -> i32 {
        self.active[b].map_or(i32::MIN, |a| a.priority)
    }

    fn desired(&self, b: usize) -> Option<&DesiredPolicy> {
        self.active[b].map(|a| &a.desired)
    }

    /// Who owns each resource, from the bindings claiming it (each claim list is sorted
    /// highest priority first on the way; a stable sort keeps key order among equals).
    fn ownership(&self, claims: &mut [Vec<usize>]) -> Vec<Option<Ownership>> {
        // Owner sets repeat across resources; share one list of keys per set.
        let mut key_sets: HashMap<Vec<usize>, Arc<[BindingKey]>> = HashMap::new();
        claims
            .iter_mut()
            .map(|claimants| {
                let &first = claimants.first()?;
                if claimants.len() == 1 {
                    return Some(Ownership {
                        priority: self.priority(first),
                        top_len: 1,
                        conflicted: false,
                        top_keys: None,
                    });
                }
                claimants.sort_by_key(|&b| Reverse(self.priority(b)));
                let top_priority = self.priority(claimants[0]);
                let top_len = claimants
                    .iter()
                    .take_while(|&&b| self.priority(b) == top_priority)
                    .count();
                let top = &claimants[..top_len];
                let conflicted = top.iter().any(|&b| self.desired(b) != self.desired(top[0]));
                let top_keys = (top_len < claimants.len()).then(|| {
                    Arc::clone(key_sets.entry(top.to_vec()).or_insert_with(|| {
                        top.iter().map(|&b| self.sorted[b].key.clone()).collect()
                    }))
                });
                Some(Ownership {
                    priority: top_priority,
                    top_len,
                    conflicted,
                    top_keys,
                })
            })
            .collect()
    }

    /// The decision of `me` about a resource `owner` describes and `claims` claim.
    fn decision(
        &self,
        me: &ActiveBinding,
        owner: &Ownership,
        claims: &[usize],
        resource: &ObservedResource,
    ) -> Decision {
        match &owner.top_keys {
            Some(by) if me.priority < owner.priority => Decision::Superseded {
                by: Arc::clone(by),
                priority: owner.priority,
            },
            _ if owner.conflicted => Decision::Conflicted {
                with: claims[..owner.top_len]
                    .iter()
                    .filter(|&&o| self.desired(o) != Some(&me.desired))
                    .map(|&o| self.sorted[o].key.clone())
                    .collect(),
            },
            _ => decide(me, resource),
        }
    }
}

/// An owner's write or drift turned into [`Decision::Excepted`] when an active exception
/// of the binding's namespace covers the resource.
fn except(
    decision: Decision,
    namespace: &str,
    resource: &ObservedResource,
    exceptions: &Exceptions,
) -> Decision {
    match decision {
        Decision::Remediate(_) | Decision::Drifted if !exceptions.is_empty() => {
            match exceptions.covering(namespace, &resource.id) {
                Some(by) => Decision::Excepted { by: Arc::clone(by) },
                None => decision,
            }
        }
        other => other,
    }
}

impl<'r> Plan<'r> {
    /// The plan of one binding.
    pub fn binding(&self, key: &BindingKey) -> Option<&BindingPlan<'r>> {
        self.bindings.get(key)
    }

    /// One binding's plan, dropping every other binding's (a controller pass keeps only
    /// its own binding's targets while it writes and reports).
    pub fn into_binding(mut self, key: &BindingKey) -> Option<BindingPlan<'r>> {
        self.bindings.remove(key)
    }

    /// Every binding's plan, in key order.
    pub fn bindings(&self) -> impl Iterator<Item = &BindingPlan<'r>> {
        self.bindings.values()
    }

    /// Every write of the plan, one per resource, sorted by resource id. Co-owners agree on
    /// the policy (otherwise the resource is Conflicted and not written); when one of them
    /// says `breakglass: Clear`, the merged write clears the justification.
    pub fn writes(&self) -> Vec<Write<'r>> {
        let mut merged: BTreeMap<&'r ResourceId, Write<'r>> = BTreeMap::new();
        for binding in self.bindings.values() {
            for (resource, remediation) in binding.remediations() {
                let write = merged.entry(&resource.id).or_insert_with(|| Write {
                    resource,
                    remediation: remediation.clone(),
                    bindings: Vec::new(),
                });
                if remediation.breakglass == BreakglassChange::Clear {
                    write.remediation.breakglass = BreakglassChange::Clear;
                }
                write.bindings.push(binding.key.clone());
            }
        }
        merged.into_values().collect()
    }
}

impl<'r> BindingPlan<'r> {
    /// The binding's namespace/name.
    pub fn key(&self) -> &BindingKey {
        &self.key
    }

    /// Whether the binding is active, suspended or invalid.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Every matched resource with its decision, sorted by resource id. Empty unless active.
    pub fn targets(&self) -> &[PlannedTarget<'r>] {
        &self.targets
    }

    /// The decision about one resource, if the binding matches it.
    pub fn target(&self, id: &ResourceId) -> Option<&PlannedTarget<'r>> {
        self.targets
            .binary_search_by(|t| t.resource.id.cmp(id))
            .ok()
            .map(|i| &self.targets[i])
    }

    /// The writes this binding asks for, sorted by resource id.
    pub fn remediations(&self) -> impl Iterator<Item = (&'r ObservedResource, &Remediation)> {
        self.targets.iter().filter_map(|t| match &t.decision {
            Decision::Remediate(r) => Some((t.resource, r)),
            _ => None,
        })
    }
}

/// Which other bindings must be re-checked when `changed` changes: the valid, permitted,
/// unsuspended bindings that match a resource `changed` matches under its old spec (`old`, `None` if
/// it is new) or its new one (its entry in `bindings`, absent if it was deleted) —
/// whether `changed` itself is suspended or valid does not matter, since that too moves
/// ownership. Never contains `changed`.
pub fn affected_bindings<'r, I>(
    changed: &BindingKey,
    old: Option<&BinAuthzBindingSpec>,
    bindings: &[BindingInput<'_>],
    resources: I,
) -> BTreeSet<BindingKey>
where
    I: IntoIterator<Item = &'r ObservedResource>,
{
    let inventory = Inventory::new(resources);
    let new = bindings.iter().find(|b| &b.key == changed).map(|b| b.spec);
    let mut touched = vec![false; inventory.resources().len()];
    for spec in old.into_iter().chain(new) {
        for r in inventory.matching(&BindingMatcher::new(spec)) {
            touched[r] = true;
        }
    }
    bindings
        .iter()
        .filter(|b| &b.key != changed)
        .filter(|b| matches!(b.activity(), Activity::Active(_)))
        .filter(|b| {
            inventory
                .matching(&BindingMatcher::new(b.spec))
                .into_iter()
                .any(|r| touched[r])
        })
        .map(|b| b.key.clone())
        .collect()
}
