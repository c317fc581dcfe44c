//! Decides, across every binding, who owns each Cloud Run resource and what to do with it, and turns the results into binding status.
//!
//! Pure functions over plain data — no Kubernetes, no HTTP, no clock. The controller and
//! the `check` command both call them unchanged:
//!
//! 1. [`plan`] takes every binding of the cluster (or of the checked files) and the
//!    observed resources of their projects, and returns a [`Plan`]: per binding, one
//!    [`Decision`] per matched resource.
//! 2. The caller performs the [`Remediation`]s ([`BindingPlan::remediations`], or
//!    [`Plan::writes`] merged across bindings) and records a [`WriteOutcome`] per resource.
//! 3. [`BindingPlan::status`] turns decisions + outcomes (+ a pass-level failure, if any)
//!    into the binding's status: summary, bounded target list, Ready/Reconciling/Stalled.
//! 4. [`affected_bindings`] says which other bindings to re-check when one changes.
//!
//! # Rules (docs/planner.md)
//! - **Matching** is [`crate::matching`]. Deleted resources never match.
//! - **Who takes part in ownership**: bindings whose spec is valid and not suspended.
//!   A suspended binding steps aside completely (it neither owns, supersedes nor
//!   conflicts), so suspending a binding never blocks enforcement by others; an invalid
//!   spec has no trustworthy policy and steps aside too. Both get no targets.
//! - **Ownership**, per resource, among the participating bindings that match it: the
//!   highest `priority` owns; equal-priority bindings with the same desired policy co-own;
//!   if the highest-priority bindings disagree on the policy, the resource is
//!   [`Decision::Conflicted`] for each of them and nobody writes it. Every lower-priority
//!   match is [`Decision::Superseded`] — also when the winners conflict.
//!   Mode does not take part: an `Audit` owner supersedes a lower `Enforce` binding.
//! - **Per owner**: the resource needs a write when its policy differs from the desired
//!   one, or when it carries a breakglass justification and the binding says
//!   `breakglass: Clear`. Enforce → [`Decision::Remediate`] (the justification is kept
//!   under `Allow`, removed under `Clear`); Audit → [`Decision::Drifted`] (Audit reports
//!   exactly what Enforce would fix). Otherwise [`Decision::Breakglass`] when it carries a
//!   justification (`Allow`), else [`Decision::Compliant`].
//!
//! # Guarantees
//! - Results never depend on the order of bindings or resources (everything is sorted by
//!   [`BindingKey`] / [`ResourceId`]; duplicate resource ids are resolved by content).
//! - No decision touches a resource no participating binding matches.
//! - No write weakens: a [`Remediation`] can only set the project default or a named
//!   policy (the type cannot express "disabled").
//! - No write cycle: writers of one resource agree on its policy, and nothing ever adds a
//!   breakglass justification, so once the writes of a plan are applied, planning again
//!   asks for no write.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;

pub use crate::api::FailureReason;
use crate::api::{
    BinAuthzBindingSpec, BinAuthzBindingStatus, BreakglassMode, Condition, Mode, OrgPolicyStatus,
    PolicyCheck, ResourceKind, Summary, TargetState, TargetStatus, UnreadLocation,
    ValidationErrors, MAX_STATUS_TARGETS,
};
use crate::matching::{BindingMatcher, Inventory};
use crate::policy::DesiredPolicy;
use crate::resource::{BreakglassChange, ObservedResource, Remediation, ResourceId};

/// Most unread regions a status lists (the CRD's `maxItems`).
const MAX_UNREAD_LOCATIONS: usize = 64;

/// Longest message in a condition or target entry (the CRD's `maxLength`).
const MAX_MESSAGE_CHARS: usize = 1024;

/// Identifies a binding: namespace and name. Orders by namespace, then name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BindingKey {
    /// Kubernetes namespace.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl BindingKey {
    /// A key from namespace and name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for BindingKey {
    /// `namespace/name`, as `kubectl` spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One binding handed to the planner.
#[derive(Clone, Debug)]
pub struct BindingInput<'s> {
    /// Its namespace/name; must be unique among the bindings of one [`plan`] call.
    pub key: BindingKey,
    /// Its spec, valid or not (an invalid spec is reported, not planned).
    pub spec: &'s BinAuthzBindingSpec,
}

/// Why [`plan`] refused its input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Two bindings with the same namespace/name.
    #[error("binding {key} is given more than once; each binding needs a unique namespace/name")]
    DuplicateBinding {
        /// The repeated key.
        key: BindingKey,
    },
}

impl PlanError {
    /// The binding the error is about.
    pub fn binding(&self) -> &BindingKey {
        match self {
            Self::DuplicateBinding { key } => key,
        }
    }
}

/// How a binding takes part in a plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Activity {
    /// Valid and not suspended: matches, owns, writes.
    Active(ActiveBinding),
    /// `spec.suspend: true` (and valid): no targets, no Cloud Run calls.
    Suspended,
    /// The spec breaks a CRD rule: no targets until it is fixed.
    Invalid(ValidationErrors),
}

/// What the planner uses of an active binding's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveBinding {
    /// The policy its targets must carry.
    pub desired: DesiredPolicy,
    /// Enforce or Audit.
    pub mode: Mode,
    /// Allow or Clear breakglass justifications.
    pub breakglass: BreakglassMode,
    /// Ownership priority.
    pub priority: i32,
}

impl Activity {
    /// Reads a spec: invalid first (validation errors win over `suspend`), then suspended.
    pub fn of(spec: &BinAuthzBindingSpec) -> Self {
        if let Err(errors) = spec.validate() {
            return Self::Invalid(errors);
        }
        if spec.suspend {
            return Self::Suspended;
        }
        match spec.desired_policy() {
            Some(desired) => Self::Active(ActiveBinding {
                desired,
                mode: spec.mode,
                breakglass: spec.breakglass,
                priority: spec.priority,
            }),
            // `validate` refuses every spec without a desired policy; kept total anyway.
            None => Self::Invalid(ValidationErrors(vec![crate::api::FieldError {
                field: "spec.policy".into(),
                message: "policy needs exactly one of useDefault: true or name".into(),
            }])),
        }
    }
}

/// What to do with one matched resource, for one binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Carries the desired policy and no breakglass justification to act on.
    Compliant,
    /// Enforce mode: write this (the only kind of write the operator makes).
    Remediate(Remediation),
    /// Audit mode: would be remediated in Enforce mode; reported only.
    Drifted,
    /// Carries the desired policy and a breakglass justification the binding allows.
    Breakglass,
    /// Equal-priority bindings want a different policy; nobody writes the resource.
    Conflicted {
        /// The highest-priority bindings that want a different policy, sorted.
        with: Arc<[BindingKey]>,
    },
    /// Owned by higher-priority binding(s).
    Superseded {
        /// The owning (or conflicting) highest-priority bindings, sorted.
        by: Arc<[BindingKey]>,
        /// Their priority.
        priority: i32,
    },
}

/// One matched resource and the decision about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTarget<'r> {
    /// The resource as observed.
    pub resource: &'r ObservedResource,
    /// What to do with it.
    pub decision: Decision,
}

/// The plan for one binding.
#[derive(Clone, Debug, PartialEq)]
pub struct BindingPlan<'r> {
    key: BindingKey,
    activity: Activity,
    targets: Vec<PlannedTarget<'r>>,
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
    let mut sorted: Vec<&BindingInput<'_>> = bindings.iter().collect();
    sorted.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    if let Some(pair) = sorted.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(PlanError::DuplicateBinding {
            key: pair[0].key.clone(),
        });
    }
    let inventory = Inventory::new(resources);
    let activities: Vec<Activity> = sorted.iter().map(|b| Activity::of(b.spec)).collect();

    let active: Vec<Option<&ActiveBinding>> = activities
        .iter()
        .map(|a| match a {
            Activity::Active(a) => Some(a),
            _ => None,
        })
        .collect();

    // Which participating bindings claim each resource (indices into `sorted`).
    let mut matched: Vec<Vec<usize>> = vec![Vec::new(); sorted.len()];
    let mut claims: Vec<Vec<usize>> = vec![Vec::new(); inventory.resources().len()];
    for (b, input) in sorted.iter().enumerate() {
        if active[b].is_some() {
            let found = inventory.matching(&BindingMatcher::new(input.spec));
            for &r in &found {
                claims[r].push(b);
            }
            matched[b] = found;
        }
    }

    let priority = |b: usize| active[b].map_or(i32::MIN, |a| a.priority);
    let desired = |b: usize| active[b].map(|a| &a.desired);
    // Owner sets repeat across resources; share one list of keys per set.
    let mut key_sets: HashMap<Vec<usize>, Arc<[BindingKey]>> = HashMap::new();
    let ownership: Vec<Option<Ownership>> = claims
        .iter_mut()
        .map(|claimants| {
            let &first = claimants.first()?;
            if claimants.len() == 1 {
                return Some(Ownership {
                    priority: priority(first),
                    top_len: 1,
                    conflicted: false,
                    top_keys: None,
                });
            }
            // Highest priority first; a stable sort keeps key order among equals.
            claimants.sort_by_key(|&b| Reverse(priority(b)));
            let top_priority = priority(claimants[0]);
            let top_len = claimants
                .iter()
                .take_while(|&&b| priority(b) == top_priority)
                .count();
            let top = &claimants[..top_len];
            let conflicted = top.iter().any(|&b| desired(b) != desired(top[0]));
            let top_keys = (top_len < claimants.len()).then(|| {
                Arc::clone(
                    key_sets
                        .entry(top.to_vec())
                        .or_insert_with(|| top.iter().map(|&b| sorted[b].key.clone()).collect()),
                )
            });
            Some(Ownership {
                priority: top_priority,
                top_len,
                conflicted,
                top_keys,
            })
        })
        .collect();

    let mut plans = BTreeMap::new();
    for (b, (input, activity)) in sorted.iter().zip(&activities).enumerate() {
        let mut targets = Vec::new();
        if let Some(me) = active[b] {
            targets.reserve_exact(matched[b].len());
            for &r in &matched[b] {
                let Some(owner) = &ownership[r] else {
                    continue;
                };
                let resource = inventory.resources()[r];
                let decision = match &owner.top_keys {
                    Some(by) if me.priority < owner.priority => Decision::Superseded {
                        by: Arc::clone(by),
                        priority: owner.priority,
                    },
                    _ if owner.conflicted => Decision::Conflicted {
                        with: claims[r][..owner.top_len]
                            .iter()
                            .filter(|&&o| desired(o) != Some(&me.desired))
                            .map(|&o| sorted[o].key.clone())
                            .collect(),
                    },
                    _ => decide(me, resource),
                };
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

/// The decision of an owner (sole or co-owner without conflict).
fn decide(me: &ActiveBinding, resource: &ObservedResource) -> Decision {
    let complies = me.desired.is_satisfied_by(&resource.policy);
    let clear = me.breakglass == BreakglassMode::Clear;
    let has_justification = resource.breakglass.is_some();
    if !complies || (clear && has_justification) {
        match me.mode {
            Mode::Audit => Decision::Drifted,
            Mode::Enforce => Decision::Remediate(Remediation {
                desired: me.desired.clone(),
                breakglass: if clear {
                    BreakglassChange::Clear
                } else {
                    BreakglassChange::Keep
                },
            }),
        }
    } else if has_justification {
        Decision::Breakglass
    } else {
        Decision::Compliant
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

/// A failure that spoiled the whole pass of a binding (reported by the caller): nothing
/// was read, or nothing may be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassFailure {
    /// What went wrong.
    pub reason: FailureReason,
    /// Google's answer and what to do (complete: the status shows it as it is).
    pub message: String,
}

/// What a pass learnt besides the resources: the regions it could not read (the others
/// were planned), and the checks made before writing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassFindings {
    /// Regions that could not be read, in location order.
    pub unread: Vec<UnreadLocation>,
    /// The named policy's check (absent for `useDefault`).
    pub policy_check: Option<PolicyCheck>,
    /// The project's organization policy constraint.
    pub org_policy: Option<OrgPolicyStatus>,
}

/// What became of one remediation write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written and confirmed.
    Succeeded,
    /// Not finished (operation still running, retry scheduled, not attempted yet, or
    /// withdrawn because another binding took the resource over).
    Pending,
    /// The resource disappeared before it could be written; it is dropped from the status.
    Gone,
    /// The write failed for good in this pass.
    Failed(WriteFailure),
}

/// A failed write: why, and Cloud Run's words with what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFailure {
    /// What went wrong.
    pub reason: FailureReason,
    /// Details for people.
    pub message: String,
}

/// Short words for a failed write in a target's message.
fn describe(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::PermissionDenied => "permission denied",
        FailureReason::ApiDisabled => "API disabled",
        FailureReason::VpcServiceControls => "refused by VPC Service Controls",
        FailureReason::ProjectNotFoundOrForbidden => "project not found or forbidden",
        FailureReason::PolicyNotFound => "policy not found",
        FailureReason::OrgPolicyConflict => "not allowed",
        FailureReason::CloudRunUnavailable => "Cloud Run unavailable",
        FailureReason::ConcurrentUpdate => "kept changing concurrently",
        FailureReason::Rejected => "rejected",
    }
}

/// The Ready condition's reason. `as_str` is what the status and events carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReadyReason {
    /// Every owned target complies (Ready True).
    Compliant,
    /// Some owned target drifts: Audit mode, or a fix in progress.
    Drifted,
    /// Some remediation failed.
    RemediationFailed,
    /// Cloud Run refused the operator (listing or writing): a permission is missing.
    PermissionDenied,
    /// The Cloud Run Admin API is not enabled in the project.
    ApiDisabled,
    /// A VPC Service Controls perimeter refuses the operator.
    VpcServiceControls,
    /// The project does not exist or the operator cannot see it.
    ProjectNotFoundOrForbidden,
    /// The named policy does not exist.
    PolicyNotFound,
    /// The organization policy constraint does not allow the desired policy.
    OrgPolicyConflict,
    /// Cloud Run did not answer.
    CloudRunUnavailable,
    /// An equal-priority binding wants a different policy for some target.
    Conflict,
    /// The spec breaks a rule.
    InvalidSpec,
    /// `spec.suspend` is true (Ready Unknown).
    Suspended,
}

impl ReadyReason {
    /// The CamelCase reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compliant => "Compliant",
            Self::Drifted => "Drifted",
            Self::RemediationFailed => "RemediationFailed",
            Self::PermissionDenied => "PermissionDenied",
            Self::ApiDisabled => "ApiDisabled",
            Self::VpcServiceControls => "VpcServiceControls",
            Self::ProjectNotFoundOrForbidden => "ProjectNotFoundOrForbidden",
            Self::PolicyNotFound => "PolicyNotFound",
            Self::OrgPolicyConflict => "OrgPolicyConflict",
            Self::CloudRunUnavailable => "CloudRunUnavailable",
            Self::Conflict => "Conflict",
            Self::InvalidSpec => "InvalidSpec",
            Self::Suspended => "Suspended",
        }
    }

    /// The Ready condition's status with this reason.
    pub fn ready_status(self) -> ConditionStatus {
        match self {
            Self::Compliant => ConditionStatus::True,
            Self::Suspended => ConditionStatus::Unknown,
            _ => ConditionStatus::False,
        }
    }

    /// Whether nothing will change without a human (Stalled True).
    pub fn is_stalled(self) -> bool {
        matches!(
            self,
            Self::PermissionDenied
                | Self::ApiDisabled
                | Self::VpcServiceControls
                | Self::ProjectNotFoundOrForbidden
                | Self::PolicyNotFound
                | Self::OrgPolicyConflict
                | Self::Conflict
                | Self::InvalidSpec
        )
    }

    /// The Ready reason a failure gives a binding.
    pub fn of_failure(reason: FailureReason) -> Self {
        match reason {
            FailureReason::PermissionDenied => Self::PermissionDenied,
            FailureReason::ApiDisabled => Self::ApiDisabled,
            FailureReason::VpcServiceControls => Self::VpcServiceControls,
            FailureReason::ProjectNotFoundOrForbidden => Self::ProjectNotFoundOrForbidden,
            FailureReason::PolicyNotFound => Self::PolicyNotFound,
            FailureReason::OrgPolicyConflict => Self::OrgPolicyConflict,
            FailureReason::CloudRunUnavailable => Self::CloudRunUnavailable,
            FailureReason::ConcurrentUpdate | FailureReason::Rejected => Self::RemediationFailed,
        }
    }
}

impl fmt::Display for ReadyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The condition types a binding's status carries, in the order written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConditionType {
    /// Last pass succeeded and every owned target complies.
    Ready,
    /// Remediations are in flight.
    Reconciling,
    /// Nothing will change without a human.
    Stalled,
}

impl ConditionType {
    /// The condition's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
        }
    }
}

/// A condition's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// "True".
    True,
    /// "False".
    False,
    /// "Unknown".
    Unknown,
}

impl ConditionStatus {
    /// "True", "False" or "Unknown".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// Reason of `Reconciling=True`; `Reconciling=False` and `Stalled` carry the Ready reason.
pub const REMEDIATION_IN_PROGRESS: &str = "RemediationInProgress";

/// Identifies a target within one binding (whose project is fixed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    /// Service, Job or WorkerPool.
    pub kind: ResourceKind,
    /// Cloud Run region.
    pub location: String,
    /// Resource name.
    pub name: String,
}

impl From<&ResourceId> for TargetKey {
    fn from(id: &ResourceId) -> Self {
        Self {
            kind: id.kind,
            location: id.location.clone(),
            name: id.name.clone(),
        }
    }
}

/// What was last reported about one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetRecord {
    /// Its state.
    pub state: TargetState,
    /// Whether its latest deploy was blocked.
    pub deploy_blocked: bool,
    /// Since when it has been in `state`.
    pub since: Timestamp,
}

/// The previous state of a binding's targets, for `lastTransitionTime` and for telling
/// transitions (events) apart from steady states.
///
/// Built from the previous status ([`TargetHistory::from_status`], which lists at most 100
/// targets) or kept in memory from the last [`StatusReport::history`] (complete).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetHistory(
    /// Sorted by key, unique keys.
    Vec<(TargetKey, TargetRecord)>,
);

impl TargetHistory {
    /// The targets listed in a status (entries without a parsable `lastTransitionTime` are
    /// skipped).
    pub fn from_status(status: &BinAuthzBindingStatus) -> Self {
        let mut records: Vec<(TargetKey, TargetRecord)> = status
            .targets
            .iter()
            .filter_map(|t| {
                let since = t.last_transition_time.as_deref()?.parse().ok()?;
                let key = TargetKey {
                    kind: t.kind,
                    location: t.location.clone(),
                    name: t.name.clone(),
                };
                let record = TargetRecord {
                    state: t.state,
                    deploy_blocked: t.deploy_blocked,
                    since,
                };
                Some((key, record))
            })
            .collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        records.dedup_by(|later, earlier| later.0 == earlier.0);
        Self(records)
    }

    /// The record of one target.
    pub fn get(&self, key: &TargetKey) -> Option<&TargetRecord> {
        self.lookup(key.kind, &key.location, &key.name)
    }

    fn lookup(&self, kind: ResourceKind, location: &str, name: &str) -> Option<&TargetRecord> {
        self.0
            .binary_search_by(|(k, _)| key_cmp(k, kind, location, name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// How many targets are recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn key_cmp(key: &TargetKey, kind: ResourceKind, location: &str, name: &str) -> std::cmp::Ordering {
    (key.kind, key.location.as_str(), key.name.as_str()).cmp(&(kind, location, name))
}

/// Looks up records for keys asked in ascending order, in one linear walk.
struct HistoryWalk<'h> {
    rest: &'h [(TargetKey, TargetRecord)],
}

impl<'h> HistoryWalk<'h> {
    fn seek(&mut self, kind: ResourceKind, location: &str, name: &str) -> Option<&'h TargetRecord> {
        use std::cmp::Ordering::{Equal, Less};
        while let Some(((key, record), tail)) = self.rest.split_first() {
            match key_cmp(key, kind, location, name) {
                Less => self.rest = tail,
                Equal => return Some(record),
                _ => return None,
            }
        }
        None
    }
}

/// Everything besides the plan that a binding's status depends on.
#[derive(Clone, Copy, Debug)]
pub struct StatusInput<'a> {
    /// `metadata.generation` of the binding planned.
    pub generation: Option<i64>,
    /// The time of this pass (for `lastSyncTime` and transitions).
    pub now: Timestamp,
    /// A failure that spoiled the pass, if any.
    pub pass_failure: Option<&'a PassFailure>,
    /// Unread regions and the policy checks of the pass (`None`: nothing to report).
    pub findings: Option<&'a PassFindings>,
    /// Outcome of each write, by resource; shared by every binding of a pass is fine. A
    /// remediated target without an entry counts as [`WriteOutcome::Pending`]; entries for
    /// targets the plan did not remediate are ignored.
    pub outcomes: &'a BTreeMap<ResourceId, WriteOutcome>,
    /// The binding's current status (conditions keep their `lastTransitionTime` while
    /// their status holds; a suspended or invalid binding keeps its last summary).
    pub previous: Option<&'a BinAuthzBindingStatus>,
    /// The previous target states; `None` uses those listed in `previous`.
    pub history: Option<&'a TargetHistory>,
}

/// A binding's status after a pass, and what changed.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusReport<'r> {
    /// The status to write (compare it with the current one ignoring `lastSyncTime` to
    /// decide whether to write).
    pub status: BinAuthzBindingStatus,
    /// The Ready reason (also in `status.conditions`).
    pub ready: ReadyReason,
    /// Targets whose state changed, or whose deploy became blocked, since `history`;
    /// sorted by resource id. `from` is `None` for targets not in the history.
    pub transitions: Vec<TargetTransition<'r>>,
    /// Every target's state now (complete, unlike `status.targets`): keep it for the next
    /// pass's [`StatusInput::history`].
    pub history: TargetHistory,
}

/// One target whose state changed in this pass.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetTransition<'r> {
    /// The resource, as observed (justification, deploy-blocked message).
    pub resource: &'r ObservedResource,
    /// The previous state, if known.
    pub from: Option<TargetState>,
    /// The state now.
    pub to: TargetState,
    /// Its deploy is blocked now and was not before (or was not known).
    pub newly_deploy_blocked: bool,
    /// The target entry's message.
    pub message: String,
}

/// A target after outcomes are applied.
struct Resolved<'p, 'r> {
    target: &'p PlannedTarget<'r>,
    state: TargetState,
    failure: Option<&'p WriteFailure>,
    pending: bool,
    deploy_blocked: bool,
}

impl<'r> BindingPlan<'r> {
    /// The binding's status after the pass: summary, target list, conditions, and the
    /// transitions since the previous pass.
    ///
    /// # Guarantees
    /// - `targets` holds at most [`MAX_STATUS_TARGETS`] entries: first those needing
    ///   attention (Failed, Conflicted, Drifted), then Remediated, Breakglass and
    ///   deploy-blocked ones, then Superseded, then Compliant; within each group by kind,
    ///   location, name. `targetsTruncated` says whether some were left out.
    /// - `Ready` is True only when the pass succeeded and no owned target drifts, failed or
    ///   conflicts; Breakglass, Superseded and deploy-blocked targets do not spoil it.
    ///   Precedence of reasons: Suspended, InvalidSpec, PermissionDenied (pass or write),
    ///   PolicyNotFound (pass or write), CloudRunUnavailable (pass), Conflict,
    ///   RemediationFailed, Drifted.
    /// - `Reconciling` is True while remediations are pending; `Stalled` is True for
    ///   PermissionDenied, PolicyNotFound, Conflict and InvalidSpec.
    /// - A condition keeps its `lastTransitionTime` while its status stays the same; a
    ///   target keeps its own while its state stays the same.
    /// - Suspended and invalid bindings keep the previous summary, targets, policy and
    ///   `lastSyncTime` (they describe the last pass) and get no transitions.
    pub fn status(&self, input: &StatusInput<'_>) -> StatusReport<'r> {
        self.status_listing(input, MAX_STATUS_TARGETS)
    }

    /// Like [`BindingPlan::status`], but `status.targets` lists every target (same order,
    /// no cut): for reports such as `check`, never for the CRD status, whose list is bounded.
    pub fn full_report(&self, input: &StatusInput<'_>) -> StatusReport<'r> {
        self.status_listing(input, usize::MAX)
    }

    fn status_listing(&self, input: &StatusInput<'_>, limit: usize) -> StatusReport<'r> {
        let now = format_time(input.now);
        let derived;
        let history = match input.history {
            Some(h) => h,
            None => {
                derived = input
                    .previous
                    .map(TargetHistory::from_status)
                    .unwrap_or_default();
                &derived
            }
        };
        let me = match &self.activity {
            Activity::Active(me) => me,
            Activity::Suspended | Activity::Invalid(_) => {
                let (reason, message) = match &self.activity {
                    Activity::Invalid(errors) => (
                        ReadyReason::InvalidSpec,
                        format!("the spec is invalid: {errors}; fix the binding"),
                    ),
                    _ => (
                        ReadyReason::Suspended,
                        "spec.suspend is true: the operator makes no Cloud Run calls for this binding".to_owned(),
                    ),
                };
                let mut status = input.previous.cloned().unwrap_or_default();
                status.observed_generation = input.generation;
                status.conditions = conditions(input, &now, reason, &message, 0);
                return StatusReport {
                    status,
                    ready: reason,
                    transitions: Vec::new(),
                    history: history.clone(),
                };
            }
        };

        let resolved: Vec<Resolved<'_, 'r>> = self
            .targets
            .iter()
            .filter_map(|t| resolve(t, input.outcomes))
            .collect();
        let summary = summarize(&resolved);
        let (reason, message) = ready(me, &summary, &resolved, input.pass_failure, input.findings);
        let pending = resolved.iter().filter(|r| r.pending).count();

        // One pass over every target for history and transitions; the (allocating) status
        // entries are built only for the listed ones.
        let mut since = Vec::with_capacity(resolved.len());
        let mut transitions = Vec::new();
        let mut records = Vec::with_capacity(resolved.len());
        // Targets are sorted by id and share the binding's project: ascending by key.
        let mut walk = HistoryWalk { rest: &history.0 };
        for r in &resolved {
            let id = &r.target.resource.id;
            let before = walk.seek(id.kind, &id.location, &id.name);
            let newly_blocked = r.deploy_blocked && !before.is_some_and(|b| b.deploy_blocked);
            let changed = before.map(|b| b.state) != Some(r.state);
            if changed || newly_blocked {
                transitions.push(TargetTransition {
                    resource: r.target.resource,
                    from: before.map(|b| b.state),
                    to: r.state,
                    newly_deploy_blocked: newly_blocked,
                    message: target_message(me, r),
                });
            }
            let record = TargetRecord {
                state: r.state,
                deploy_blocked: r.deploy_blocked,
                since: match before {
                    Some(b) if !changed => b.since,
                    _ => input.now,
                },
            };
            since.push(record.since);
            records.push((TargetKey::from(id), record));
        }
        // Targets arrive sorted by id (kind, project, location, name) and share the
        // binding's project, so they are in (kind, location, name) order already, and a
        // stable sort by rank keeps that order within each rank.
        if !records.is_sorted_by(|a, b| a.0 <= b.0) {
            records.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut order: Vec<usize> = (0..resolved.len()).collect();
        order.sort_by_key(|&i| attention_rank(&resolved[i]));
        let desired = me.desired.to_string();
        let targets = order
            .iter()
            .take(limit)
            .map(|&i| {
                let r = &resolved[i];
                let id = &r.target.resource.id;
                TargetStatus {
                    kind: id.kind,
                    location: id.location.clone(),
                    name: id.name.clone(),
                    state: r.state,
                    // A remediated target carries the desired policy now; the message
                    // says what it carried before ("set policy X (was Y)").
                    observed: if r.state == TargetState::Remediated {
                        desired.clone()
                    } else {
                        r.target.resource.policy.to_string()
                    },
                    desired: desired.clone(),
                    message: target_message(me, r),
                    deploy_blocked: r.deploy_blocked,
                    last_transition_time: Some(format_time(since[i])),
                }
            })
            .collect();

        StatusReport {
            status: BinAuthzBindingStatus {
                observed_generation: input.generation,
                last_sync_time: Some(now.clone()),
                policy: Some(desired),
                conditions: conditions(input, &now, reason, &message, pending),
                summary: Some(summary),
                targets,
                targets_truncated: resolved.len() > limit,
                unread_locations: input
                    .findings
                    .map(|f| {
                        f.unread
                            .iter()
                            .take(MAX_UNREAD_LOCATIONS)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default(),
                policy_check: input.findings.and_then(|f| f.policy_check.clone()),
                org_policy: input.findings.and_then(|f| f.org_policy.clone()),
                last_handled_reconcile_at: input
                    .previous
                    .and_then(|p| p.last_handled_reconcile_at.clone()),
            },
            ready: reason,
            transitions,
            history: TargetHistory(records),
        }
    }
}

/// Applies the write outcome to a planned target; `None` when the resource is gone.
fn resolve<'p, 'r>(
    target: &'p PlannedTarget<'r>,
    outcomes: &'p BTreeMap<ResourceId, WriteOutcome>,
) -> Option<Resolved<'p, 'r>> {
    let mut failure = None;
    let mut pending = false;
    let state = match &target.decision {
        Decision::Compliant => TargetState::Compliant,
        Decision::Drifted => TargetState::Drifted,
        Decision::Breakglass => TargetState::Breakglass,
        Decision::Conflicted { .. } => TargetState::Conflicted,
        Decision::Superseded { .. } => TargetState::Superseded,
        Decision::Remediate(_) => match outcomes.get(&target.resource.id) {
            Some(WriteOutcome::Succeeded) => TargetState::Remediated,
            Some(WriteOutcome::Gone) => return None,
            Some(WriteOutcome::Failed(f)) => {
                failure = Some(f);
                TargetState::Failed
            }
            Some(WriteOutcome::Pending) | None => {
                pending = true;
                TargetState::Drifted
            }
        },
    };
    // The owner reports a blocked deploy; a superseded binding leaves it to the owner.
    let deploy_blocked =
        target.resource.deploy_blocked.is_some() && state != TargetState::Superseded;
    Some(Resolved {
        target,
        state,
        failure,
        pending,
        deploy_blocked,
    })
}

fn summarize(resolved: &[Resolved<'_, '_>]) -> Summary {
    let mut s = Summary::default();
    let count = |n: &mut u32| *n = n.saturating_add(1);
    for r in resolved {
        count(&mut s.matched);
        if r.state.complies() {
            count(&mut s.compliant);
            if r.target.resource.breakglass.is_some() && !cleared(r) {
                count(&mut s.breakglass);
            }
        }
        match r.state {
            TargetState::Remediated => count(&mut s.remediated),
            TargetState::Drifted => count(&mut s.drifted),
            TargetState::Superseded => count(&mut s.superseded),
            TargetState::Conflicted => count(&mut s.conflicted),
            TargetState::Failed => count(&mut s.failed),
            TargetState::Compliant | TargetState::Breakglass => {}
        }
        if r.deploy_blocked {
            count(&mut s.deploy_blocked);
        }
    }
    s
}

/// Whether a remediated target had its justification removed by the write.
fn cleared(r: &Resolved<'_, '_>) -> bool {
    r.state == TargetState::Remediated
        && matches!(&r.target.decision, Decision::Remediate(rem) if rem.breakglass == BreakglassChange::Clear)
}

/// Order of attention in the status target list (lower first).
fn attention_rank(r: &Resolved<'_, '_>) -> u8 {
    match r.state {
        TargetState::Failed | TargetState::Conflicted | TargetState::Drifted => 0,
        TargetState::Remediated | TargetState::Breakglass => 1,
        _ if r.deploy_blocked => 1,
        TargetState::Superseded => 2,
        TargetState::Compliant => 3,
    }
}

/// How soon a cause of failure is reported: what a person must fix first (access, then
/// the policy), then an outage. Writes failing for other reasons are RemediationFailed.
fn precedence(reason: FailureReason) -> Option<u8> {
    match reason {
        FailureReason::ConcurrentUpdate | FailureReason::Rejected => None,
        other => Some(other.rank()),
    }
}

/// The binding-level cause of failure, if any: from the pass, the unread regions and the
/// writes, the one of highest precedence (the pass's first among equals).
fn failure_cause(
    resolved: &[Resolved<'_, '_>],
    pass_failure: Option<&PassFailure>,
    findings: Option<&PassFindings>,
) -> Option<(FailureReason, String)> {
    let mut best: Option<(u8, FailureReason, String)> = None;
    let mut offer = |reason: FailureReason, what: &dyn Fn() -> String| {
        let Some(rank) = precedence(reason) else {
            return;
        };
        if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
            best = Some((rank, reason, what()));
        }
    };
    if let Some(f) = pass_failure {
        offer(f.reason, &|| f.message.clone());
    }
    let unread = findings.map_or(&[][..], |f| f.unread.as_slice());
    if let Some(first) = unread
        .iter()
        .min_by_key(|u| precedence(u.reason).unwrap_or(u8::MAX))
    {
        offer(first.reason, &|| {
            let mut what = format!(
                "{} region(s) could not be read, every other region is reconciled: {}: {}",
                unread.len(),
                first.location,
                first.message
            );
            if unread.len() > 1 {
                let others: Vec<&str> = unread
                    .iter()
                    .filter(|u| u.location != first.location)
                    .map(|u| u.location.as_str())
                    .collect();
                what.push_str(&format!(" (also {})", others.join(", ")));
            }
            what
        });
    }
    // Writes run in the binding's project: the write of highest precedence, once per
    // reason (messages are formatted only for a new best). A write that failed for an
    // outage is a failed remediation, retried: not the binding's cause.
    for r in resolved {
        if let Some(f) = r
            .failure
            .filter(|f| f.reason != FailureReason::CloudRunUnavailable)
        {
            offer(f.reason, &|| {
                format!("{}: {}", r.target.resource.id, f.message)
            });
        }
    }
    best.map(|(_, reason, what)| (reason, what))
}

fn ready(
    me: &ActiveBinding,
    s: &Summary,
    resolved: &[Resolved<'_, '_>],
    pass_failure: Option<&PassFailure>,
    findings: Option<&PassFindings>,
) -> (ReadyReason, String) {
    let owned = s.matched - s.superseded;
    // The message of a failure is complete (Google's words and what to do): shown as is.
    if let Some((reason, what)) = failure_cause(resolved, pass_failure, findings) {
        return (ReadyReason::of_failure(reason), what);
    }
    if s.conflicted > 0 {
        let others: BTreeSet<&BindingKey> = resolved
            .iter()
            .filter_map(|r| match &r.target.decision {
                Decision::Conflicted { with } => Some(with.iter()),
                _ => None,
            })
            .flatten()
            .collect();
        return (
            ReadyReason::Conflict,
            format!(
                "{} of {owned} targets are also claimed with a different policy by equal-priority binding(s) {} and are left untouched; align the policies or give one binding a higher spec.priority",
                s.conflicted,
                join(others)
            ),
        );
    }
    if s.failed > 0 {
        let first = resolved
            .iter()
            .find_map(|r| {
                let f = r.failure?;
                Some(format!("{}: {}", r.target.resource.id, f.message))
            })
            .unwrap_or_default();
        return (
            ReadyReason::RemediationFailed,
            format!(
                "{} of {owned} targets could not be fixed; first: {first}; the next pass retries",
                s.failed
            ),
        );
    }
    if s.drifted > 0 {
        let how = match me.mode {
            Mode::Audit => "Audit mode: reported, not fixed",
            Mode::Enforce => "fixes in progress",
        };
        return (
            ReadyReason::Drifted,
            format!(
                "{} of {owned} targets drift from policy {} ({how})",
                s.drifted, me.desired
            ),
        );
    }
    let mut message = format!("{}/{owned} targets comply", s.compliant);
    if s.matched == 0 {
        message.push_str("; no Cloud Run resource matches the selectors");
    }
    for (n, what) in [
        (s.remediated, "remediated in this pass"),
        (s.breakglass, "under breakglass"),
        (
            s.deploy_blocked,
            "with a deploy blocked by Binary Authorization",
        ),
        (s.superseded, "superseded by higher-priority bindings"),
    ] {
        if n > 0 {
            message.push_str(&format!("; {n} {what}"));
        }
    }
    (ReadyReason::Compliant, message)
}

fn conditions(
    input: &StatusInput<'_>,
    now: &str,
    reason: ReadyReason,
    message: &str,
    pending: usize,
) -> Vec<Condition> {
    let previous = |type_: ConditionType| {
        input
            .previous?
            .conditions
            .iter()
            .find(|c| c.type_ == type_.as_str())
    };
    let condition = |type_: ConditionType, status: ConditionStatus, reason: &str, message: &str| {
        let last_transition_time = match previous(type_) {
            Some(p) if p.status == status.as_str() => p.last_transition_time.clone(),
            _ => now.to_owned(),
        };
        Condition {
            type_: type_.as_str().to_owned(),
            status: status.as_str().to_owned(),
            reason: reason.to_owned(),
            message: bounded(message.to_owned()),
            last_transition_time,
            observed_generation: input.generation,
        }
    };
    let reconciling = if pending > 0 {
        condition(
            ConditionType::Reconciling,
            ConditionStatus::True,
            REMEDIATION_IN_PROGRESS,
            &format!("{pending} remediation(s) in flight; the next pass verifies them"),
        )
    } else {
        condition(
            ConditionType::Reconciling,
            ConditionStatus::False,
            reason.as_str(),
            "no remediation in flight",
        )
    };
    let stalled = if reason.is_stalled() {
        condition(
            ConditionType::Stalled,
            ConditionStatus::True,
            reason.as_str(),
            message,
        )
    } else {
        condition(
            ConditionType::Stalled,
            ConditionStatus::False,
            reason.as_str(),
            "nothing needs a human to make progress",
        )
    };
    vec![
        condition(
            ConditionType::Ready,
            reason.ready_status(),
            reason.as_str(),
            message,
        ),
        reconciling,
        stalled,
    ]
}

fn target_message(me: &ActiveBinding, r: &Resolved<'_, '_>) -> String {
    let resource = r.target.resource;
    let justification = resource.breakglass.as_deref();
    let mut message = match (&r.target.decision, r.state) {
        (Decision::Compliant, _) => String::new(),
        (Decision::Breakglass, _) => {
            format!(
                "breakglass justification: {}",
                justification.unwrap_or_default()
            )
        }
        (Decision::Drifted, _) if me.desired.is_satisfied_by(&resource.policy) => format!(
            "Audit mode: breakglass justification {:?} would be cleared",
            justification.unwrap_or_default()
        ),
        (Decision::Drifted, _) => format!(
            "Audit mode: carries {}, should carry {}; not fixed",
            resource.policy, me.desired
        ),
        (Decision::Conflicted { with }, _) => format!(
            "equal-priority binding(s) {} want a different policy; left untouched",
            join(with.iter())
        ),
        (Decision::Superseded { by, priority }, _) => {
            format!("owned by {} (priority {priority})", join(by.iter()))
        }
        (Decision::Remediate(rem), state) => {
            let mut m = match state {
                TargetState::Remediated => {
                    format!("set policy {} (was {})", rem.desired, resource.policy)
                }
                TargetState::Failed => {
                    let f = r.failure.map_or(("rejected", ""), |f| {
                        (describe(f.reason), f.message.as_str())
                    });
                    format!("setting policy {} failed: {}: {}", rem.desired, f.0, f.1)
                }
                _ => format!(
                    "fix in progress: setting policy {} (was {})",
                    rem.desired, resource.policy
                ),
            };
            if rem.breakglass == BreakglassChange::Clear && justification.is_some() {
                m.push_str(if state == TargetState::Remediated {
                    "; breakglass justification cleared"
                } else {
                    "; clearing the breakglass justification"
                });
            }
            m
        }
    };
    if r.deploy_blocked {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str("latest deploy refused by Binary Authorization: ");
        message.push_str(resource.deploy_blocked.as_deref().unwrap_or_default());
    }
    bounded(message)
}

/// `ns/a, ns/b`: binding keys for people.
fn join<'k>(keys: impl IntoIterator<Item = &'k BindingKey>) -> String {
    let mut out = String::new();
    for key in keys {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&key.namespace);
        out.push('/');
        out.push_str(&key.name);
    }
    out
}

/// Cuts a message to the CRD's limit (in characters), marking the cut with `…`.
fn bounded(mut message: String) -> String {
    if message.chars().count() > MAX_MESSAGE_CHARS {
        if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS - 1) {
            message.truncate(cut);
            message.push('…');
        }
    }
    message
}

/// RFC 3339 with second precision, as Kubernetes writes times.
fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Which other bindings must be re-checked when `changed` changes: the valid, unsuspended
/// bindings that match a resource `changed` matches under its old spec (`old`, `None` if
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
        .filter(|b| matches!(Activity::of(b.spec), Activity::Active(_)))
        .filter(|b| {
            inventory
                .matching(&BindingMatcher::new(b.spec))
                .into_iter()
                .any(|r| touched[r])
        })
        .map(|b| b.key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LabelSelector, PolicyRef, TargetSelector, Targets};
    use crate::policy::{ObservedPolicy, PolicyName};

    pub(super) const PROJECT: &str = "acme-prod";

    /// A binding under construction: `binding("a").priority(5).audit().names(["pay-*"])`.
    #[derive(Clone, Debug)]
    pub(super) struct TestBinding {
        pub key: BindingKey,
        pub spec: BinAuthzBindingSpec,
    }

    /// Covers every service in us-central1 of acme-prod with the project default policy.
    pub(super) fn binding(name: &str) -> TestBinding {
        TestBinding {
            key: BindingKey::new("platform", name),
            spec: BinAuthzBindingSpec {
                project: PROJECT.into(),
                locations: vec!["us-central1".into()],
                targets: Targets {
                    services: Some(TargetSelector {
                        names: Some(vec!["*".into()]),
                        ..TargetSelector::default()
                    }),
                    ..Targets::default()
                },
                policy: PolicyRef {
                    use_default: Some(true),
                    name: None,
                },
                mode: Mode::Enforce,
                breakglass: BreakglassMode::Allow,
                interval: "10m".into(),
                priority: 0,
                suspend: false,
            },
        }
    }

    pub(super) fn policy_name(id: &str) -> String {
        format!("projects/acme-sec/platforms/cloudRun/policies/{id}")
    }

    fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    impl TestBinding {
        pub fn priority(mut self, p: i32) -> Self {
            self.spec.priority = p;
            self
        }
        pub fn audit(mut self) -> Self {
            self.spec.mode = Mode::Audit;
            self
        }
        pub fn clear_breakglass(mut self) -> Self {
            self.spec.breakglass = BreakglassMode::Clear;
            self
        }
        pub fn suspended(mut self) -> Self {
            self.spec.suspend = true;
            self
        }
        /// Requires the named policy `projects/acme-sec/platforms/cloudRun/policies/{id}`.
        pub fn policy(mut self, id: &str) -> Self {
            self.spec.policy = PolicyRef {
                use_default: None,
                name: Some(policy_name(id)),
            };
            self
        }
        pub fn locations<const N: usize>(mut self, locations: [&str; N]) -> Self {
            self.spec.locations = strings(locations);
            self
        }
        fn services(&mut self) -> &mut TargetSelector {
            self.spec
                .targets
                .services
                .get_or_insert_with(TargetSelector::default)
        }
        /// Service names/globs.
        pub fn names<const N: usize>(mut self, names: [&str; N]) -> Self {
            self.services().names = Some(strings(names));
            self
        }
        /// Services by labels only (drops `names`).
        pub fn labels<const N: usize>(mut self, labels: [(&str, &str); N]) -> Self {
            let s = self.services();
            s.names = None;
            s.label_selector = Some(LabelSelector {
                match_labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                match_expressions: Vec::new(),
            });
            self
        }
        pub fn exclude<const N: usize>(mut self, names: [&str; N]) -> Self {
            self.services().exclude = strings(names);
            self
        }
        pub fn jobs<const N: usize>(mut self, names: [&str; N]) -> Self {
            self.spec.targets.jobs = Some(TargetSelector {
                names: Some(strings(names)),
                ..TargetSelector::default()
            });
            self
        }
        pub fn no_services(mut self) -> Self {
            self.spec.targets.services = None;
            self
        }
        /// Breaks a CRD rule (no locations).
        pub fn invalid(mut self) -> Self {
            self.spec.locations.clear();
            self
        }
        pub fn input(&self) -> BindingInput<'_> {
            BindingInput {
                key: self.key.clone(),
                spec: &self.spec,
            }
        }
    }

    fn resource(kind: ResourceKind, location: &str, name: &str) -> ObservedResource {
        ObservedResource {
            id: ResourceId {
                kind,
                project: PROJECT.into(),
                location: location.into(),
                name: name.into(),
            },
            labels: Default::default(),
            deleted: false,
            policy: ObservedPolicy::None,
            breakglass: None,
            deploy_blocked: None,
        }
    }

    /// A service without Binary Authorization: `service("us-central1", "pay-1")`.
    pub(super) fn service(location: &str, name: &str) -> ObservedResource {
        resource(ResourceKind::Service, location, name)
    }

    pub(super) fn job(location: &str, name: &str) -> ObservedResource {
        resource(ResourceKind::Job, location, name)
    }

    /// Builder methods on observed resources.
    pub(super) trait Observed: Sized {
        fn edit(self, f: impl FnOnce(&mut ObservedResource)) -> Self;
        fn labels<const N: usize>(self, labels: [(&str, &str); N]) -> Self;
        fn policy_none(self) -> Self {
            self.edit(|r| r.policy = ObservedPolicy::None)
        }
        fn policy_default(self) -> Self {
            self.edit(|r| r.policy = ObservedPolicy::ProjectDefault)
        }
        fn policy_named(self, id: &str) -> Self {
            self.edit(|r| r.policy = ObservedPolicy::Named(policy_name(id)))
        }
        fn breakglass(self, why: &str) -> Self {
            self.edit(|r| r.breakglass = Some(why.into()))
        }
        fn deploy_blocked(self, message: &str) -> Self {
            self.edit(|r| r.deploy_blocked = Some(message.into()))
        }
        fn deleted(self) -> Self {
            self.edit(|r| r.deleted = true)
        }
        fn project(self, project: &str) -> Self {
            self.edit(|r| r.id.project = project.into())
        }
    }

    impl Observed for ObservedResource {
        fn edit(mut self, f: impl FnOnce(&mut ObservedResource)) -> Self {
            f(&mut self);
            self
        }
        fn labels<const N: usize>(self, labels: [(&str, &str); N]) -> Self {
            self.edit(|r| {
                r.labels = labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
            })
        }
    }

    pub(super) fn run<'r>(bindings: &[TestBinding], resources: &'r [ObservedResource]) -> Plan<'r> {
        let inputs: Vec<BindingInput<'_>> = bindings.iter().map(TestBinding::input).collect();
        plan(&inputs, resources).unwrap()
    }

    fn key(name: &str) -> BindingKey {
        BindingKey::new("platform", name)
    }

    /// The decisions of one binding, by resource name.
    fn decisions(plan: &Plan<'_>, binding: &str) -> Vec<(String, Decision)> {
        plan.binding(&key(binding))
            .unwrap()
            .targets()
            .iter()
            .map(|t| (t.resource.id.name.clone(), t.decision.clone()))
            .collect()
    }

    fn decision(plan: &Plan<'_>, binding: &str, name: &str) -> Option<Decision> {
        decisions(plan, binding)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
    }

    fn set_default(clear: bool) -> Decision {
        Decision::Remediate(Remediation {
            desired: DesiredPolicy::ProjectDefault,
            breakglass: if clear {
                BreakglassChange::Clear
            } else {
                BreakglassChange::Keep
            },
        })
    }

    fn set_named(id: &str) -> Decision {
        Decision::Remediate(Remediation {
            desired: DesiredPolicy::Named(PolicyName::parse(&policy_name(id)).unwrap()),
            breakglass: BreakglassChange::Keep,
        })
    }

    fn keys(names: &[&str]) -> Arc<[BindingKey]> {
        names.iter().map(|n| key(n)).collect()
    }

    #[test]
    fn only_matched_resources_are_planned_and_deleted_ones_never() {
        let estate = [
            service("us-central1", "pay-1"),
            service("us-central1", "pay-2").deleted(),
            service("us-central1", "web"),
            service("europe-west1", "pay-3"),
            service("us-central1", "pay-4").project("acme-dev"),
            job("us-central1", "pay-5"),
        ];
        let plan = run(&[binding("a").names(["pay-*"])], &estate);
        let names: Vec<String> = decisions(&plan, "a").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["pay-1"]);
    }

    #[test]
    fn labels_and_excludes_narrow_the_match() {
        let estate = [
            service("us-central1", "pay-1").labels([("env", "prod")]),
            service("us-central1", "pay-2").labels([("env", "dev")]),
            service("us-central1", "pay-sandbox").labels([("env", "prod")]),
        ];
        let plan = run(
            &[binding("a")
                .labels([("env", "prod")])
                .exclude(["*-sandbox"])],
            &estate,
        );
        let names: Vec<String> = decisions(&plan, "a").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["pay-1"]);
    }

    #[test]
    fn compliance_needs_exactly_the_desired_policy() {
        let estate = [
            service("us-central1", "default").policy_default(),
            service("us-central1", "none").policy_none(),
            service("us-central1", "strict").policy_named("strict"),
            service("us-central1", "lax").policy_named("lax"),
        ];
        let plan = run(
            &[binding("d"), binding("s").policy("strict").priority(-1)],
            &estate,
        );
        assert_eq!(decision(&plan, "d", "default"), Some(Decision::Compliant));
        assert_eq!(decision(&plan, "d", "none"), Some(set_default(false)));
        assert_eq!(decision(&plan, "d", "strict"), Some(set_default(false)));
        assert_eq!(decision(&plan, "d", "lax"), Some(set_default(false)));

        let plan = run(&[binding("s").policy("strict")], &estate);
        assert_eq!(decision(&plan, "s", "strict"), Some(Decision::Compliant));
        assert_eq!(decision(&plan, "s", "default"), Some(set_named("strict")));
        assert_eq!(decision(&plan, "s", "lax"), Some(set_named("strict")));
        assert_eq!(decision(&plan, "s", "none"), Some(set_named("strict")));
    }

    #[test]
    fn audit_mode_reports_what_enforce_would_fix_and_writes_nothing() {
        let estate = [
            service("us-central1", "ok").policy_default(),
            service("us-central1", "off").policy_none(),
            service("us-central1", "bg")
                .policy_default()
                .breakglass("incident 42"),
        ];
        let plan = run(&[binding("a").audit().clear_breakglass()], &estate);
        assert_eq!(
            decisions(&plan, "a"),
            [
                ("bg".to_owned(), Decision::Drifted),
                ("off".to_owned(), Decision::Drifted),
                ("ok".to_owned(), Decision::Compliant),
            ]
        );
        assert!(plan.writes().is_empty());
        let plan = run(&[binding("a").audit()], &estate);
        assert_eq!(decision(&plan, "a", "bg"), Some(Decision::Breakglass));
    }

    #[test]
    fn breakglass_is_reported_under_allow_and_cleared_under_clear() {
        let estate = [
            service("us-central1", "bg-ok")
                .policy_default()
                .breakglass("incident 42"),
            service("us-central1", "bg-off")
                .policy_none()
                .breakglass("incident 43"),
        ];
        let allow = run(&[binding("a")], &estate);
        assert_eq!(decision(&allow, "a", "bg-ok"), Some(Decision::Breakglass));
        assert_eq!(
            decision(&allow, "a", "bg-off"),
            Some(set_default(false)),
            "the policy is still enforced and the justification kept"
        );
        let clear = run(&[binding("a").clear_breakglass()], &estate);
        assert_eq!(decision(&clear, "a", "bg-ok"), Some(set_default(true)));
        assert_eq!(decision(&clear, "a", "bg-off"), Some(set_default(true)));
    }

    #[test]
    fn the_highest_priority_owns_and_lower_ones_are_superseded() {
        let estate = [service("us-central1", "pay-1")];
        let plan = run(
            &[
                binding("low").policy("lax"),
                binding("high").policy("strict").priority(10),
            ],
            &estate,
        );
        assert_eq!(decision(&plan, "high", "pay-1"), Some(set_named("strict")));
        assert_eq!(
            decision(&plan, "low", "pay-1"),
            Some(Decision::Superseded {
                by: keys(&["high"]),
                priority: 10
            })
        );
        assert_eq!(plan.writes().len(), 1);
    }

    #[test]
    fn equal_priorities_with_the_same_policy_co_own() {
        let estate = [service("us-central1", "pay-1").breakglass("incident")];
        let plan = run(&[binding("a"), binding("b").clear_breakglass()], &estate);
        assert_eq!(decision(&plan, "a", "pay-1"), Some(set_default(false)));
        assert_eq!(decision(&plan, "b", "pay-1"), Some(set_default(true)));
        let writes = plan.writes();
        assert_eq!(writes.len(), 1, "one write per resource");
        assert_eq!(
            writes[0].remediation,
            Remediation {
                desired: DesiredPolicy::ProjectDefault,
                breakglass: BreakglassChange::Clear,
            }
        );
        assert_eq!(writes[0].bindings, [key("a"), key("b")]);
    }

    #[test]
    fn equal_priorities_with_different_policies_conflict_and_nobody_writes() {
        let estate = [
            service("us-central1", "pay-1"),
            service("us-central1", "web").policy_default(),
        ];
        let plan = run(
            &[
                binding("a").names(["pay-*"]),
                binding("b").policy("strict").names(["pay-1"]),
                binding("c").policy("strict").names(["pay-1"]),
                binding("low").priority(-5),
            ],
            &estate,
        );
        assert_eq!(
            decision(&plan, "a", "pay-1"),
            Some(Decision::Conflicted {
                with: keys(&["b", "c"])
            })
        );
        assert_eq!(
            decision(&plan, "b", "pay-1"),
            Some(Decision::Conflicted { with: keys(&["a"]) })
        );
        assert_eq!(
            decision(&plan, "low", "pay-1"),
            Some(Decision::Superseded {
                by: keys(&["a", "b", "c"]),
                priority: 0
            }),
            "a lower binding does not step in while the owners conflict"
        );
        assert_eq!(decision(&plan, "low", "web"), Some(Decision::Compliant));
        assert!(plan.writes().is_empty());
    }

    #[test]
    fn suspended_and_invalid_bindings_step_aside() {
        let estate = [service("us-central1", "pay-1")];
        let plan = run(
            &[
                binding("a"),
                binding("paused").policy("strict").suspended(),
                binding("broken").policy("strict").priority(100).invalid(),
            ],
            &estate,
        );
        assert_eq!(decision(&plan, "a", "pay-1"), Some(set_default(false)));
        let paused = plan.binding(&key("paused")).unwrap();
        assert_eq!(paused.activity(), &Activity::Suspended);
        assert!(paused.targets().is_empty());
        let broken = plan.binding(&key("broken")).unwrap();
        assert!(matches!(broken.activity(), Activity::Invalid(_)));
        assert!(broken.targets().is_empty());
    }

    #[test]
    fn a_binding_given_twice_is_refused() {
        let a = binding("a");
        let err = plan(&[a.input(), a.input()], &[]).unwrap_err();
        assert_eq!(err.binding(), &key("a"));
        assert_eq!(
            err.to_string(),
            "binding platform/a is given more than once; each binding needs a unique namespace/name"
        );
    }

    #[test]
    fn other_kinds_are_planned_with_their_own_selectors() {
        let estate = [
            service("us-central1", "nightly"),
            job("us-central1", "nightly"),
        ];
        let plan = run(&[binding("a").no_services().jobs(["night*"])], &estate);
        let ids: Vec<ResourceKind> = plan
            .binding(&key("a"))
            .unwrap()
            .targets()
            .iter()
            .map(|t| t.resource.id.kind)
            .collect();
        assert_eq!(ids, [ResourceKind::Job]);
    }

    // ---- status ----

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn status_of<'r>(
        plan: &Plan<'r>,
        binding: &str,
        outcomes: &BTreeMap<ResourceId, WriteOutcome>,
        previous: Option<&BinAuthzBindingStatus>,
        now: Timestamp,
    ) -> StatusReport<'r> {
        plan.binding(&key(binding)).unwrap().status(&StatusInput {
            generation: Some(3),
            now,
            pass_failure: None,
            findings: None,
            outcomes,
            previous,
            history: None,
        })
    }

    fn condition<'s>(status: &'s BinAuthzBindingStatus, type_: &str) -> &'s Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn outcome(resource: &ObservedResource, outcome: WriteOutcome) -> (ResourceId, WriteOutcome) {
        (resource.id.clone(), outcome)
    }

    fn failed(reason: FailureReason, message: &str) -> WriteOutcome {
        WriteOutcome::Failed(WriteFailure {
            reason,
            message: message.into(),
        })
    }

    #[test]
    fn a_fully_compliant_binding_is_ready() {
        let estate = [
            service("us-central1", "a").policy_default(),
            service("us-central1", "b").policy_none(),
        ];
        let plan = run(&[binding("x")], &estate);
        let outcomes = BTreeMap::from([outcome(&estate[1], WriteOutcome::Succeeded)]);
        let report = status_of(&plan, "x", &outcomes, None, at(0));
        let s = &report.status;
        assert_eq!(report.ready, ReadyReason::Compliant);
        let ready = condition(s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Compliant")
        );
        assert_eq!(
            ready.message,
            "2/2 targets comply; 1 remediated in this pass"
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(condition(s, "Reconciling").status, "False");
        assert_eq!(condition(s, "Stalled").status, "False");
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.policy.as_deref(), Some("default"));
        assert_eq!(s.last_sync_time.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!(
            s.summary,
            Some(Summary {
                matched: 2,
                compliant: 2,
                remediated: 1,
                ..Summary::default()
            })
        );
        let b = &s.targets[0];
        assert_eq!((b.name.as_str(), b.state), ("b", TargetState::Remediated));
        // Fixed: it carries the desired policy now; the message keeps what it had.
        assert_eq!(
            (b.observed.as_str(), b.desired.as_str()),
            ("default", "default")
        );
        assert!(b.message.contains("(was none)"), "{}", b.message);
        assert_eq!(b.message, "set policy default (was none)");
        assert_eq!(s.targets[1].state, TargetState::Compliant);
    }

    #[test]
    fn audit_drift_makes_ready_false_with_reason_drifted() {
        let estate = [service("us-central1", "a").policy_none()];
        let plan = run(&[binding("x").audit()], &estate);
        let report = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
        assert_eq!(report.ready, ReadyReason::Drifted);
        let ready = condition(&report.status, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Drifted")
        );
        assert_eq!(
            ready.message,
            "1 of 1 targets drift from policy default (Audit mode: reported, not fixed)"
        );
        assert_eq!(
            condition(&report.status, "Reconciling").status,
            "False",
            "Audit writes nothing"
        );
        assert_eq!(report.status.targets[0].state, TargetState::Drifted);
        assert_eq!(report.status.summary.unwrap().drifted, 1);
    }

    #[test]
    fn pending_remediations_are_drifted_and_reconciling() {
        let estate = [
            service("us-central1", "a").policy_none(),
            service("us-central1", "b").policy_none(),
        ];
        let plan = run(&[binding("x")], &estate);
        let outcomes = BTreeMap::from([outcome(&estate[0], WriteOutcome::Pending)]);
        let report = status_of(&plan, "x", &outcomes, None, at(0));
        assert_eq!(report.ready, ReadyReason::Drifted);
        let reconciling = condition(&report.status, "Reconciling");
        assert_eq!(
            (reconciling.status.as_str(), reconciling.reason.as_str()),
            ("True", REMEDIATION_IN_PROGRESS)
        );
        assert_eq!(
            reconciling.message, "2 remediation(s) in flight; the next pass verifies them",
            "no outcome = pending"
        );
        assert_eq!(report.status.summary.unwrap().drifted, 2);
        assert!(report.status.targets[0]
            .message
            .starts_with("fix in progress"));
    }

    #[test]
    fn failures_pick_the_most_actionable_reason() {
        let estate = [
            service("us-central1", "a").policy_none(),
            service("us-central1", "b").policy_none(),
        ];
        let plan = run(&[binding("x")], &estate);
        let reason = |outcomes: Vec<(ResourceId, WriteOutcome)>| {
            let outcomes = outcomes.into_iter().collect();
            let report = status_of(&plan, "x", &outcomes, None, at(0));
            let stalled = condition(&report.status, "Stalled").status.clone();
            (report.ready, stalled)
        };
        assert_eq!(
            reason(vec![
                outcome(&estate[0], failed(FailureReason::Rejected, "bad")),
                outcome(&estate[1], WriteOutcome::Succeeded),
            ]),
            (ReadyReason::RemediationFailed, "False".to_owned())
        );
        assert_eq!(
            reason(vec![
                outcome(&estate[0], failed(FailureReason::Rejected, "bad")),
                outcome(
                    &estate[1],
                    failed(FailureReason::PermissionDenied, "denied")
                ),
            ]),
            (ReadyReason::PermissionDenied, "True".to_owned())
        );
        assert_eq!(
            reason(vec![outcome(
                &estate[1],
                failed(FailureReason::PolicyNotFound, "no such policy")
            )]),
            (ReadyReason::PolicyNotFound, "True".to_owned())
        );
        let outcomes = BTreeMap::from([outcome(
            &estate[1],
            failed(FailureReason::Rejected, "quota"),
        )]);
        let report = status_of(&plan, "x", &outcomes, None, at(0));
        assert_eq!(
            condition(&report.status, "Ready").message,
            "1 of 2 targets could not be fixed; first: Service us-central1/b (project acme-prod): quota; the next pass retries"
        );
        let failed_target = report
            .status
            .targets
            .iter()
            .find(|t| t.name == "b")
            .unwrap();
        assert_eq!(failed_target.state, TargetState::Failed);
        assert_eq!(
            failed_target.message,
            "setting policy default failed: rejected: quota"
        );
        assert_eq!(report.status.summary.unwrap().failed, 1);
    }

    #[test]
    fn pass_failures_come_first() {
        let estate = [service("us-central1", "a").policy_default()];
        let plan = run(&[binding("x")], &estate);
        for (reason, want, stalled) in [
            (
                FailureReason::PermissionDenied,
                ReadyReason::PermissionDenied,
                "True",
            ),
            (FailureReason::ApiDisabled, ReadyReason::ApiDisabled, "True"),
            (
                FailureReason::VpcServiceControls,
                ReadyReason::VpcServiceControls,
                "True",
            ),
            (
                FailureReason::ProjectNotFoundOrForbidden,
                ReadyReason::ProjectNotFoundOrForbidden,
                "True",
            ),
            (
                FailureReason::PolicyNotFound,
                ReadyReason::PolicyNotFound,
                "True",
            ),
            (
                FailureReason::OrgPolicyConflict,
                ReadyReason::OrgPolicyConflict,
                "True",
            ),
            (
                FailureReason::CloudRunUnavailable,
                ReadyReason::CloudRunUnavailable,
                "False",
            ),
        ] {
            let failure = PassFailure {
                reason,
                message: "listing services in us-central1 failed; do this".into(),
            };
            let report = plan.binding(&key("x")).unwrap().status(&StatusInput {
                generation: Some(1),
                now: at(0),
                pass_failure: Some(&failure),
                findings: None,
                outcomes: &BTreeMap::new(),
                previous: None,
                history: None,
            });
            assert_eq!(report.ready, want);
            let ready = condition(&report.status, "Ready");
            assert_eq!(ready.status, "False");
            // The failure's message is complete: shown as it is.
            assert_eq!(
                ready.message,
                "listing services in us-central1 failed; do this"
            );
            assert_eq!(
                condition(&report.status, "Stalled").status,
                stalled,
                "{reason}"
            );
        }
    }

    #[test]
    fn access_problems_outrank_an_outage() {
        let estate = [service("us-central1", "a").policy_none()];
        let plan = run(&[binding("x")], &estate);
        let outage = PassFailure {
            reason: FailureReason::CloudRunUnavailable,
            message: "listing jobs in us-central1 timed out".into(),
        };
        let outcomes = BTreeMap::from([outcome(
            &estate[0],
            failed(
                FailureReason::PermissionDenied,
                "run.services.update denied; grant it",
            ),
        )]);
        let report = plan.binding(&key("x")).unwrap().status(&StatusInput {
            generation: Some(1),
            now: at(0),
            pass_failure: Some(&outage),
            findings: None,
            outcomes: &outcomes,
            previous: None,
            history: None,
        });
        assert_eq!(report.ready, ReadyReason::PermissionDenied);
        assert_eq!(
            condition(&report.status, "Ready").message,
            "Service us-central1/a (project acme-prod): run.services.update denied; grant it"
        );
    }

    #[test]
    fn unread_regions_fail_ready_but_the_others_are_reported() {
        let estate = [
            service("us-central1", "a").policy_default(),
            service("us-central1", "b").policy_none(),
        ];
        let plan = run(&[binding("x")], &estate);
        let unread = |location: &str, reason| UnreadLocation {
            location: location.into(),
            reason,
            message: format!("{location} refused"),
        };
        let findings = PassFindings {
            unread: vec![
                unread("asia-east1", FailureReason::CloudRunUnavailable),
                unread("me-west1", FailureReason::VpcServiceControls),
            ],
            ..PassFindings::default()
        };
        let report = plan.binding(&key("x")).unwrap().status(&StatusInput {
            generation: Some(1),
            now: at(0),
            pass_failure: None,
            findings: Some(&findings),
            outcomes: &BTreeMap::new(),
            previous: None,
            history: None,
        });
        // The most actionable unread region names the reason; both are listed.
        assert_eq!(report.ready, ReadyReason::VpcServiceControls);
        let message = &condition(&report.status, "Ready").message;
        assert!(
            message.starts_with("2 region(s) could not be read, every other region is reconciled: me-west1: me-west1 refused (also asia-east1)"),
            "{message}"
        );
        assert_eq!(report.status.unread_locations, findings.unread);
        // The regions that were read are planned and reported as usual.
        let summary = report.status.summary.unwrap();
        assert_eq!((summary.matched, summary.drifted), (2, 1));
    }

    #[test]
    fn conflicts_make_ready_false_and_stalled() {
        let estate = [service("us-central1", "a")];
        let plan = run(&[binding("x"), binding("y").policy("strict")], &estate);
        let report = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
        assert_eq!(report.ready, ReadyReason::Conflict);
        assert_eq!(condition(&report.status, "Stalled").status, "True");
        assert_eq!(
            condition(&report.status, "Ready").message,
            "1 of 1 targets are also claimed with a different policy by equal-priority binding(s) platform/y and are left untouched; align the policies or give one binding a higher spec.priority"
        );
        assert_eq!(report.status.targets[0].state, TargetState::Conflicted);
        assert_eq!(report.status.summary.unwrap().conflicted, 1);
    }

    #[test]
    fn superseded_breakglass_and_blocked_deploys_keep_ready_true() {
        let estate = [
            service("us-central1", "bg")
                .policy_default()
                .breakglass("incident 42"),
            service("us-central1", "blocked")
                .policy_default()
                .deploy_blocked("Revision blocked-00002 uses image x not authorized"),
            service("us-central1", "theirs")
                .policy_named("strict")
                .deploy_blocked("nope"),
        ];
        let plan = run(
            &[
                binding("x").names(["bg", "blocked", "theirs"]),
                binding("y").policy("strict").priority(1).names(["theirs"]),
            ],
            &estate,
        );
        let report = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
        assert_eq!(report.ready, ReadyReason::Compliant);
        assert_eq!(
            condition(&report.status, "Ready").message,
            "2/2 targets comply; 1 under breakglass; 1 with a deploy blocked by Binary Authorization; 1 superseded by higher-priority bindings"
        );
        assert_eq!(
            report.status.summary,
            Some(Summary {
                matched: 3,
                compliant: 2,
                breakglass: 1,
                superseded: 1,
                deploy_blocked: 1,
                ..Summary::default()
            }),
            "the owner, not the superseded binding, reports a blocked deploy"
        );
        let blocked = report
            .status
            .targets
            .iter()
            .find(|t| t.name == "blocked")
            .unwrap();
        assert!(blocked.deploy_blocked);
        assert_eq!(blocked.state, TargetState::Compliant);
        assert_eq!(
            blocked.message,
            "latest deploy refused by Binary Authorization: Revision blocked-00002 uses image x not authorized"
        );
        let bg = report
            .status
            .targets
            .iter()
            .find(|t| t.name == "bg")
            .unwrap();
        assert_eq!(
            (bg.state, bg.message.as_str()),
            (
                TargetState::Breakglass,
                "breakglass justification: incident 42"
            )
        );
        let theirs = report
            .status
            .targets
            .iter()
            .find(|t| t.name == "theirs")
            .unwrap();
        assert_eq!(
            (theirs.state, theirs.deploy_blocked),
            (TargetState::Superseded, false)
        );
        assert_eq!(theirs.message, "owned by platform/y (priority 1)");
        let owner = status_of(&plan, "y", &BTreeMap::new(), None, at(0));
        assert_eq!(owner.status.summary.unwrap().deploy_blocked, 1);
        assert!(owner.transitions[0].newly_deploy_blocked);
    }

    #[test]
    fn suspended_and_invalid_bindings_report_why_and_keep_the_last_summary() {
        let estate = [service("us-central1", "a")];
        let plan = run(&[binding("x")], &estate);
        let previous = status_of(&plan, "x", &BTreeMap::new(), None, at(0)).status;

        let plan = run(&[binding("x").suspended()], &estate);
        let report = status_of(&plan, "x", &BTreeMap::new(), Some(&previous), at(60));
        assert_eq!(report.ready, ReadyReason::Suspended);
        let ready = condition(&report.status, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("Unknown", "Suspended")
        );
        assert_eq!(condition(&report.status, "Stalled").status, "False");
        assert_eq!(report.status.summary, previous.summary);
        assert_eq!(report.status.last_sync_time, previous.last_sync_time);
        assert!(report.transitions.is_empty());

        let plan = run(&[binding("x").invalid()], &estate);
        let report = status_of(&plan, "x", &BTreeMap::new(), Some(&previous), at(60));
        assert_eq!(report.ready, ReadyReason::InvalidSpec);
        let ready = condition(&report.status, "Ready");
        assert_eq!(ready.status, "False");
        assert!(
            ready.message.contains("spec.locations"),
            "{}",
            ready.message
        );
        assert_eq!(condition(&report.status, "Stalled").status, "True");
    }

    #[test]
    fn transition_times_move_only_when_status_or_state_changes() {
        let estate = [
            service("us-central1", "a").policy_none(),
            service("us-central1", "b").policy_default(),
        ];
        let plan = run(&[binding("x").audit()], &estate);
        let first = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
        assert_eq!(
            first.transitions.len(),
            2,
            "everything is new on the first pass"
        );
        assert_eq!(first.transitions[0].from, None);

        // Same picture later: nothing moves.
        let second = status_of(&plan, "x", &BTreeMap::new(), Some(&first.status), at(600));
        assert!(second.transitions.is_empty());
        assert_eq!(second.status.conditions, first.status.conditions);
        assert_eq!(second.status.targets, first.status.targets);
        assert_ne!(second.status.last_sync_time, first.status.last_sync_time);

        // The drifted resource is fixed by someone: Ready flips, its time moves, b's does not.
        let fixed = [estate[0].clone().policy_default(), estate[1].clone()];
        let plan = run(&[binding("x").audit()], &fixed);
        let third = status_of(&plan, "x", &BTreeMap::new(), Some(&second.status), at(1200));
        let ready = condition(&third.status, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.last_transition_time.as_str()),
            ("True", "2027-01-15T08:20:00Z")
        );
        let reconciling = condition(&third.status, "Reconciling");
        assert_eq!(
            reconciling.last_transition_time, "2027-01-15T08:00:00Z",
            "status unchanged"
        );
        assert_eq!(third.transitions.len(), 1);
        assert_eq!(
            (third.transitions[0].from, third.transitions[0].to),
            (Some(TargetState::Drifted), TargetState::Compliant)
        );
        let b = third.status.targets.iter().find(|t| t.name == "b").unwrap();
        assert_eq!(
            b.last_transition_time.as_deref(),
            Some("2027-01-15T08:00:00Z")
        );

        // The complete in-memory history gives the same answer as the status.
        let again = plan.binding(&key("x")).unwrap().status(&StatusInput {
            generation: Some(3),
            now: at(1200),
            pass_failure: None,
            findings: None,
            outcomes: &BTreeMap::new(),
            previous: Some(&second.status),
            history: Some(&second.history),
        });
        assert_eq!(again, third);
    }

    #[test]
    fn the_target_list_is_bounded_and_puts_what_needs_attention_first() {
        let mut estate: Vec<ObservedResource> = (0..150)
            .map(|i| service("us-central1", &format!("svc-{i:03}")).policy_default())
            .collect();
        estate.push(service("europe-west1", "zz-drifted").policy_none());
        estate.push(service("us-central1", "aa-drifted").policy_none());
        estate.push(job("us-central1", "nightly").policy_none());
        estate.push(
            service("us-central1", "bg")
                .policy_default()
                .breakglass("incident"),
        );
        let plan = run(
            &[binding("x")
                .audit()
                .locations(["us-central1", "europe-west1"])
                .jobs(["*"])],
            &estate,
        );
        let report = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
        let s = &report.status;
        assert_eq!(s.targets.len(), MAX_STATUS_TARGETS);
        assert!(s.targets_truncated);
        assert_eq!(s.summary.unwrap().matched, 154);
        let head: Vec<(ResourceKind, &str, &str)> = s.targets[..5]
            .iter()
            .map(|t| (t.kind, t.location.as_str(), t.name.as_str()))
            .collect();
        assert_eq!(
            head,
            [
                (ResourceKind::Service, "europe-west1", "zz-drifted"),
                (ResourceKind::Service, "us-central1", "aa-drifted"),
                (ResourceKind::Job, "us-central1", "nightly"),
                (ResourceKind::Service, "us-central1", "bg"),
                (ResourceKind::Service, "us-central1", "svc-000"),
            ]
        );
        assert_eq!(report.history.len(), 154, "the history is complete");
        let full = plan.binding(&key("x")).unwrap().full_report(&StatusInput {
            generation: Some(3),
            now: at(0),
            pass_failure: None,
            findings: None,
            outcomes: &BTreeMap::new(),
            previous: None,
            history: None,
        });
        assert_eq!(full.status.targets.len(), 154);
        assert!(!full.status.targets_truncated);
        assert_eq!(full.status.targets[..MAX_STATUS_TARGETS], s.targets[..]);
    }

    #[test]
    fn gone_resources_drop_out_of_the_status() {
        let estate = [service("us-central1", "a").policy_none()];
        let plan = run(&[binding("x")], &estate);
        let outcomes = BTreeMap::from([outcome(&estate[0], WriteOutcome::Gone)]);
        let report = status_of(&plan, "x", &outcomes, None, at(0));
        assert!(report.status.targets.is_empty());
        assert_eq!(report.status.summary.unwrap().matched, 0);
        assert_eq!(report.ready, ReadyReason::Compliant);
    }

    #[test]
    fn long_messages_are_cut_to_the_crd_limit() {
        let estate = [service("us-central1", "a")
            .policy_default()
            .breakglass(&"é".repeat(2000))];
        let plan = run(&[binding("x")], &estate);
        let report = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
        let message = &report.status.targets[0].message;
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
        assert!(message.ends_with('…'));
    }

    #[test]
    fn changing_a_binding_rechecks_the_bindings_sharing_its_targets() {
        let estate = [
            service("us-central1", "pay-1"),
            service("us-central1", "web-1"),
            service("europe-west1", "web-2"),
        ];
        let pay = binding("pay").names(["pay-*"]);
        let web = binding("web").names(["web-*"]);
        let eu = binding("eu").locations(["europe-west1"]);
        let paused = binding("paused").suspended();
        let all = [pay.clone(), web.clone(), eu.clone(), paused.clone()];
        let inputs: Vec<BindingInput<'_>> = all.iter().map(TestBinding::input).collect();
        let affected = |changed: &str, old: Option<&BinAuthzBindingSpec>| {
            affected_bindings(&key(changed), old, &inputs, &estate)
                .into_iter()
                .map(|k| k.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(affected("pay", None), Vec::<String>::new());
        assert_eq!(
            affected("paused", None),
            ["pay", "web"],
            "a suspended binding still changes ownership"
        );
        // `pay` used to cover web-* everywhere: web and eu shared targets with it.
        let old = binding("pay").locations(["*"]).names(["web-*"]).spec;
        assert_eq!(affected("pay", Some(&old)), ["eu", "web"]);
        // A deleted binding: only its old spec counts.
        let gone = binding("gone").names(["web-1"]).spec;
        assert_eq!(affected("gone", Some(&gone)), ["web"]);
    }
}

#[cfg(test)]
mod properties {
    use super::tests::{binding, policy_name, TestBinding, PROJECT};
    use super::*;
    use crate::api::{
        LabelOperator, LabelSelector, LabelSelectorRequirement, PolicyRef, TargetSelector,
    };
    use crate::policy::ObservedPolicy;
    use proptest::prelude::*;
    use proptest::sample::{select, subsequence};

    const NAMES: [&str; 7] = ["pay-1", "pay-2", "pay-eu", "web", "web-1", "api", "batch-9"];
    const GLOBS: [&str; 8] = [
        "*", "pay-*", "pay-?", "web", "web-*", "api", "*-1", "b?tch-*",
    ];
    const LOCATIONS: [&str; 3] = ["us-central1", "europe-west1", "asia-east1"];
    const PROJECTS: [&str; 2] = [PROJECT, "acme-dev"];

    fn observed_policy() -> impl Strategy<Value = ObservedPolicy> {
        prop_oneof![
            Just(ObservedPolicy::None),
            Just(ObservedPolicy::ProjectDefault),
            Just(ObservedPolicy::Named(policy_name("strict"))),
            Just(ObservedPolicy::Named(policy_name("lax"))),
        ]
    }

    fn label_pairs() -> impl Strategy<Value = BTreeMap<String, String>> {
        (
            proptest::option::of(select(vec!["prod", "dev"])),
            proptest::option::of(select(vec!["critical", "web"])),
        )
            .prop_map(|(env, tier)| {
                let mut labels = BTreeMap::new();
                if let Some(env) = env {
                    labels.insert("env".to_owned(), env.to_owned());
                }
                if let Some(tier) = tier {
                    labels.insert("tier".to_owned(), tier.to_owned());
                }
                labels
            })
    }

    fn resource() -> impl Strategy<Value = ObservedResource> {
        (
            select(ResourceKind::ALL.to_vec()),
            select(PROJECTS.to_vec()),
            select(LOCATIONS.to_vec()),
            select(NAMES.to_vec()),
            label_pairs(),
            prop::bool::weighted(0.1),
            observed_policy(),
            proptest::option::weighted(0.3, Just("incident 42".to_owned())),
            proptest::option::weighted(0.2, Just("image not authorized".to_owned())),
        )
            .prop_map(
                |(kind, project, location, name, labels, deleted, policy, breakglass, blocked)| {
                    ObservedResource {
                        id: ResourceId {
                            kind,
                            project: project.into(),
                            location: location.into(),
                            name: name.into(),
                        },
                        labels: labels.into(),
                        deleted,
                        policy,
                        breakglass,
                        deploy_blocked: blocked,
                    }
                },
            )
    }

    fn label_selector() -> impl Strategy<Value = LabelSelector> {
        prop_oneof![
            Just(LabelSelector {
                match_labels: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
                match_expressions: Vec::new(),
            }),
            (
                select(vec![
                    LabelOperator::In,
                    LabelOperator::NotIn,
                    LabelOperator::Exists,
                    LabelOperator::DoesNotExist
                ]),
                select(vec!["env", "tier"]),
            )
                .prop_map(|(operator, key)| LabelSelector {
                    match_labels: BTreeMap::new(),
                    match_expressions: vec![LabelSelectorRequirement {
                        key: key.to_owned(),
                        operator,
                        values: match operator {
                            LabelOperator::In | LabelOperator::NotIn => {
                                vec!["prod".to_owned(), "critical".to_owned()]
                            }
                            _ => Vec::new(),
                        },
                    }],
                }),
        ]
    }

    fn selector() -> impl Strategy<Value = TargetSelector> {
        (
            proptest::option::of(subsequence(GLOBS.to_vec(), 1..=3)),
            proptest::option::weighted(0.3, label_selector()),
            subsequence(GLOBS[1..].to_vec(), 0..=1),
        )
            .prop_map(|(names, labels, exclude)| {
                let to_strings = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect();
                let names: Option<Vec<String>> = names.map(to_strings);
                TargetSelector {
                    names: if names.is_none() && labels.is_none() {
                        Some(vec!["*".to_owned()])
                    } else {
                        names
                    },
                    label_selector: labels,
                    exclude: to_strings(exclude),
                }
            })
    }

    fn spec() -> impl Strategy<Value = BinAuthzBindingSpec> {
        (
            select(PROJECTS.to_vec()),
            prop_oneof![
                1 => Just(vec!["*"]),
                3 => subsequence(LOCATIONS.to_vec(), 1..=2),
            ],
            (
                proptest::option::of(selector()),
                proptest::option::of(selector()),
                proptest::option::weighted(0.3, selector()),
            ),
            select(vec![None, Some("strict"), Some("lax")]),
            (
                prop::bool::weighted(0.3),
                prop::bool::weighted(0.3),
                -1i32..=1,
                prop::bool::weighted(0.1),
                prop::bool::weighted(0.05),
            ),
        )
            .prop_map(
                |(
                    project,
                    locations,
                    (services, jobs, pools),
                    policy,
                    (audit, clear, priority, suspend, invalid),
                )| {
                    let mut spec = binding("x").spec;
                    spec.project = project.into();
                    spec.locations = locations.into_iter().map(str::to_owned).collect();
                    spec.targets.services = services;
                    spec.targets.jobs = jobs;
                    spec.targets.worker_pools = pools;
                    if spec.targets.services.is_none()
                        && spec.targets.jobs.is_none()
                        && spec.targets.worker_pools.is_none()
                    {
                        spec.targets.jobs = Some(TargetSelector {
                            names: Some(vec!["*".into()]),
                            ..TargetSelector::default()
                        });
                    }
                    if let Some(id) = policy {
                        spec.policy = PolicyRef {
                            use_default: None,
                            name: Some(policy_name(id)),
                        };
                    }
                    spec.mode = if audit { Mode::Audit } else { Mode::Enforce };
                    spec.breakglass = if clear {
                        BreakglassMode::Clear
                    } else {
                        BreakglassMode::Allow
                    };
                    spec.priority = priority;
                    spec.suspend = suspend;
                    if invalid {
                        spec.locations.clear();
                    }
                    spec
                },
            )
    }

    fn bindings() -> impl Strategy<Value = Vec<TestBinding>> {
        prop::collection::vec(spec(), 0..6).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, spec)| TestBinding {
                    key: BindingKey::new(
                        if i % 2 == 0 { "team-a" } else { "team-b" },
                        format!("b{i}"),
                    ),
                    spec,
                })
                .collect()
        })
    }

    fn estate() -> impl Strategy<Value = Vec<ObservedResource>> {
        prop::collection::vec(resource(), 0..40)
    }

    /// The estate as the planner sees it: live resources, and of two listings of one id
    /// the one that sorts first by (policy, justification, blocked deploy, labels).
    fn canonical(estate: &[ObservedResource]) -> BTreeMap<&ResourceId, &ObservedResource> {
        let mut seen: BTreeMap<&ResourceId, &ObservedResource> = BTreeMap::new();
        for r in estate.iter().filter(|r| !r.deleted) {
            let key = |r: &ObservedResource| {
                (
                    r.policy.clone(),
                    r.breakglass.clone(),
                    r.deploy_blocked.clone(),
                    r.labels.clone(),
                )
            };
            let kept = seen.entry(&r.id).or_insert(r);
            if key(r) < key(kept) {
                *kept = r;
            }
        }
        seen
    }

    /// The estate as Cloud Run lists it: each resource once (the copy the planner keeps).
    /// Properties about applying writes use it: with two differing copies of one id, a
    /// write changes which copy is canonical, which no real listing can produce.
    fn listed_once(estate: &[ObservedResource]) -> Vec<ObservedResource> {
        canonical(estate).into_values().cloned().collect()
    }

    fn inputs(bindings: &[TestBinding]) -> Vec<BindingInput<'_>> {
        bindings.iter().map(TestBinding::input).collect()
    }

    /// What Cloud Run holds after a write (every listed copy of the resource).
    fn apply(resources: &mut [ObservedResource], id: &ResourceId, remediation: &Remediation) {
        for r in resources.iter_mut().filter(|r| &r.id == id) {
            r.policy = ObservedPolicy::from(&remediation.desired);
            if remediation.breakglass == BreakglassChange::Clear {
                r.breakglass = None;
            }
        }
    }

    fn owned_writes(plan: &Plan<'_>) -> Vec<(ResourceId, Remediation)> {
        plan.writes()
            .into_iter()
            .map(|w| (w.resource.id.clone(), w.remediation))
            .collect()
    }

    fn any_remediation(plan: &Plan<'_>) -> bool {
        plan.bindings().any(|b| b.remediations().next().is_some())
    }

    proptest! {
        #[test]
        fn targets_are_exactly_what_the_bindings_match(bindings in bindings(), estate in estate()) {
            let plan = plan(&inputs(&bindings), &estate).unwrap();
            for b in &bindings {
                let planned: Vec<&ResourceId> = plan.binding(&b.key).unwrap().targets().iter().map(|t| &t.resource.id).collect();
                let want: Vec<&ResourceId> = if matches!(Activity::of(&b.spec), Activity::Active(_)) {
                    let m = BindingMatcher::new(&b.spec);
                    canonical(&estate).into_values().filter(|r| m.matches(r)).map(|r| &r.id).collect()
                } else {
                    Vec::new()
                };
                prop_assert_eq!(planned, want, "binding {}", b.key);
            }
        }

        #[test]
        fn no_write_touches_a_resource_no_binding_matches(bindings in bindings(), estate in estate()) {
            let plan = plan(&inputs(&bindings), &estate).unwrap();
            for write in plan.writes() {
                prop_assert!(!write.resource.deleted);
                prop_assert!(!write.bindings.is_empty());
                for key in &write.bindings {
                    let b = bindings.iter().find(|b| &b.key == key).unwrap();
                    prop_assert!(!b.spec.suspend && b.spec.mode == Mode::Enforce);
                    prop_assert!(BindingMatcher::new(&b.spec).matches(write.resource));
                    prop_assert_eq!(Some(write.remediation.desired.clone()), b.spec.desired_policy());
                }
            }
        }

        #[test]
        fn writes_never_weaken(bindings in bindings(), mut estate in estate()) {
            let before = estate.clone();
            let plan = plan(&inputs(&bindings), &before).unwrap();
            for (id, remediation) in owned_writes(&plan) {
                prop_assert_ne!(ObservedPolicy::from(&remediation.desired), ObservedPolicy::None);
                apply(&mut estate, &id, &remediation);
            }
            for (old, new) in before.iter().zip(&estate) {
                if old.policy != ObservedPolicy::None {
                    prop_assert_ne!(&new.policy, &ObservedPolicy::None, "{} lost its policy", old.id);
                }
                if old.breakglass.is_none() {
                    prop_assert!(new.breakglass.is_none(), "a justification appeared on {}", old.id);
                }
            }
        }

        #[test]
        fn planning_again_after_the_writes_asks_for_nothing(bindings in bindings(), estate in estate()) {
            let mut estate = listed_once(&estate);
            let first = plan(&inputs(&bindings), &estate).unwrap();
            let writes = owned_writes(&first);
            drop(first);
            for (id, remediation) in &writes {
                apply(&mut estate, id, remediation);
            }
            let second = plan(&inputs(&bindings), &estate).unwrap();
            prop_assert!(!any_remediation(&second), "{:?}", owned_writes(&second));
        }

        #[test]
        fn bindings_passing_one_by_one_never_write_in_a_cycle(
            bindings in bindings(),
            estate in estate(),
            order in Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
        ) {
            // As the controller runs it: each binding's pass re-plans everything and applies
            // only its own remediations, in some order; after one full round nothing is left.
            let mut estate = listed_once(&estate);
            let order: Vec<&TestBinding> = order.iter().filter_map(|&i| bindings.get(i)).collect();
            for round in 0..2 {
                for b in &order {
                    let plan = plan(&inputs(&bindings), &estate).unwrap();
                    let mine: Vec<(ResourceId, Remediation)> = plan
                        .binding(&b.key)
                        .unwrap()
                        .remediations()
                        .map(|(r, rem)| (r.id.clone(), rem.clone()))
                        .collect();
                    drop(plan);
                    prop_assert!(round == 0 || mine.is_empty(), "round {round}: {} still writes {mine:?}", b.key);
                    for (id, remediation) in &mine {
                        apply(&mut estate, id, remediation);
                    }
                }
            }
        }

        #[test]
        fn the_outcome_does_not_depend_on_input_order(
            (bindings, shuffled_bindings) in bindings().prop_flat_map(|b| (Just(b.clone()), Just(b).prop_shuffle())),
            (estate, shuffled_estate) in estate().prop_flat_map(|e| (Just(e.clone()), Just(e).prop_shuffle())),
        ) {
            let one = plan(&inputs(&bindings), &estate).unwrap();
            let two = plan(&inputs(&shuffled_bindings), &shuffled_estate).unwrap();
            prop_assert_eq!(&one, &two);
            let input = StatusInput {
                generation: Some(1),
                now: Timestamp::UNIX_EPOCH,
                pass_failure: None,
                findings: None,
                outcomes: &BTreeMap::new(),
                previous: None,
                history: None,
            };
            for (a, b) in one.bindings().zip(two.bindings()) {
                prop_assert_eq!(a.status(&input), b.status(&input));
            }
            let affected_one: Vec<_> = bindings.iter().map(|b| affected_bindings(&b.key, None, &inputs(&bindings), &estate)).collect();
            let affected_two: Vec<_> = bindings.iter().map(|b| affected_bindings(&b.key, None, &inputs(&shuffled_bindings), &shuffled_estate)).collect();
            prop_assert_eq!(affected_one, affected_two);
        }

        #[test]
        fn summaries_add_up_whatever_the_outcomes(
            bindings in bindings(),
            estate in estate(),
            outcomes in prop::collection::vec(0u8..4, 40),
        ) {
            let plan = plan(&inputs(&bindings), &estate).unwrap();
            let outcomes: BTreeMap<ResourceId, WriteOutcome> = estate
                .iter()
                .zip(outcomes)
                .map(|(r, o)| {
                    let outcome = match o {
                        0 => WriteOutcome::Succeeded,
                        1 => WriteOutcome::Pending,
                        2 => WriteOutcome::Gone,
                        _ => WriteOutcome::Failed(WriteFailure {
                            reason: FailureReason::Rejected,
                            message: "no".into(),
                        }),
                    };
                    (r.id.clone(), outcome)
                })
                .collect();
            for b in plan.bindings() {
                let report = b.status(&StatusInput {
                    generation: Some(1),
                    now: Timestamp::UNIX_EPOCH,
                    pass_failure: None,
                    findings: None,
                    outcomes: &outcomes,
                    previous: None,
                    history: None,
                });
                let Some(s) = report.status.summary else {
                    prop_assert!(!matches!(b.activity(), Activity::Active(_)));
                    continue;
                };
                prop_assert_eq!(s.matched, s.compliant + s.drifted + s.superseded + s.conflicted + s.failed);
                // A remediated resource may keep its justification: both, not disjoint.
                prop_assert!(s.remediated <= s.compliant && s.breakglass <= s.compliant);
                prop_assert_eq!(s.matched as usize, report.status.targets.len());
                prop_assert_eq!(report.ready == ReadyReason::Compliant, s.drifted + s.conflicted + s.failed == 0);
            }
        }
    }
}
