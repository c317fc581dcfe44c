//! The binding's status as the operator writes it: conditions, summary, targets, and the
//! failure taxonomy its reasons come from.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ResourceKind;

/// Observed state of a binding, written by the operator (kstatus-compatible).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BinAuthzBindingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When a pass over Cloud Run last confirmed this status (RFC 3339). The status is
    /// written only when something changed, so this is refreshed at least hourly rather
    /// than on every pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// The desired policy as the operator understood it: `default` or the policy name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Ready, Reconciling and Stalled, with the reasons documented in the README.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Counts of matched resources by state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// Per-resource results, non-compliant first, then by kind, location and name. At most
    /// 100 entries; see targetsTruncated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub targets: Vec<TargetStatus>,
    /// True when more resources matched than `targets` lists.
    #[serde(default)]
    pub targets_truncated: bool,
    /// Regions the last pass could not read, and why. Every other region was reconciled;
    /// targets in these regions are not in `targets` or `summary` until they can be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub unread_locations: Vec<UnreadLocation>,
    /// Whether the named policy could be verified to exist (absent for `useDefault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_check: Option<PolicyCheck>,
    /// The project's organization policy constraint
    /// `constraints/run.allowedBinaryAuthorizationPolicies`, as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_policy: Option<OrgPolicyStatus>,
    /// The value of the annotation `binauthz.dev/reconcile-requested-at` the last pass
    /// handled: setting the annotation to a new value starts a pass at once, and this
    /// echoes it when that pass wrote the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub last_handled_reconcile_at: Option<String>,
}

/// The annotation that asks for a pass now (any value; a new value asks again), after
/// Flux's `reconcile.fluxcd.io/requestedAt`.
pub const RECONCILE_REQUESTED_AT: &str = "binauthz.dev/reconcile-requested-at";

/// Why something could not be read or written: the operator's failure taxonomy, as status
/// reasons and `check`'s report name it (troubleshooting in the README).
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum FailureReason {
    /// The operator's Google identity lacks an IAM permission (the message names it).
    PermissionDenied,
    /// The Cloud Run Admin API (or another API the operator calls) is not enabled in the
    /// project.
    ApiDisabled,
    /// A VPC Service Controls perimeter refuses the operator's calls.
    VpcServiceControls,
    /// The project does not exist, or the operator's identity cannot see it (Google
    /// answers both the same way).
    ProjectNotFoundOrForbidden,
    /// The named Binary Authorization policy does not exist.
    PolicyNotFound,
    /// The organization policy constraint does not allow the desired policy.
    OrgPolicyConflict,
    /// Cloud Run did not answer usefully after retries (5xx, timeouts, quota).
    CloudRunUnavailable,
    /// Concurrent changes kept invalidating the etag.
    ConcurrentUpdate,
    /// Cloud Run refused the write for another reason (its message says which).
    Rejected,
}

impl FailureReason {
    /// The CamelCase name status reasons and reports carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PermissionDenied => "PermissionDenied",
            Self::ApiDisabled => "ApiDisabled",
            Self::VpcServiceControls => "VpcServiceControls",
            Self::ProjectNotFoundOrForbidden => "ProjectNotFoundOrForbidden",
            Self::PolicyNotFound => "PolicyNotFound",
            Self::OrgPolicyConflict => "OrgPolicyConflict",
            Self::CloudRunUnavailable => "CloudRunUnavailable",
            Self::ConcurrentUpdate => "ConcurrentUpdate",
            Self::Rejected => "Rejected",
        }
    }

    /// Which of several failures a binding reports: what a person must fix first (the
    /// project, the API, the perimeter, a permission, then the policy), then an outage,
    /// then a failed write. Lower first.
    pub fn rank(self) -> u8 {
        match self {
            Self::ProjectNotFoundOrForbidden => 0,
            Self::ApiDisabled => 1,
            Self::VpcServiceControls => 2,
            Self::PermissionDenied => 3,
            Self::PolicyNotFound => 4,
            Self::OrgPolicyConflict => 5,
            Self::CloudRunUnavailable => 6,
            Self::ConcurrentUpdate | Self::Rejected => 7,
        }
    }

    /// Nothing changes until a person acts (grants, enables, corrects the spec).
    pub fn needs_a_person(self) -> bool {
        !matches!(self, Self::CloudRunUnavailable | Self::ConcurrentUpdate)
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A region a pass could not read.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UnreadLocation {
    /// Cloud Run region.
    #[schemars(length(max = 64))]
    pub location: String,
    /// Why it could not be read.
    pub reason: FailureReason,
    /// Google's answer and what to do.
    #[schemars(length(max = 1024))]
    pub message: String,
}

/// Whether a named policy could be verified before writing it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCheck {
    /// What the check found.
    pub result: PolicyCheckResult,
    /// Details for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
}

/// The result of reading a named Binary Authorization policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyCheckResult {
    /// The policy exists.
    Verified,
    /// Google's managed policy (BCID): never readable by customers, always valid.
    GoogleManaged,
    /// The policy's project does not let the operator read it (HTTP 403): writes go
    /// ahead and Cloud Run decides.
    Unverifiable,
    /// The policy does not exist: nothing is written.
    NotFound,
}

/// The organization policy constraint on Binary Authorization policies, for one project.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrgPolicyStatus {
    /// Enforced (with its allowed values), NotSet, or Unreadable.
    pub state: OrgPolicyState,
    /// With `Enforced`: the values allowed (`default` or policy names); empty when the
    /// constraint lists no allowed value (the message says what it denies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub allowed_values: Vec<String>,
    /// Details for people (why it could not be read).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
}

/// State of the organization policy constraint in a project.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrgPolicyState {
    /// The constraint limits the policies a resource may carry.
    Enforced,
    /// The constraint is not set (or allows every value): the preventive control is off.
    NotSet,
    /// The Org Policy API could not be read (the write's answer decides).
    Unreadable,
}

/// A status condition (the Kubernetes metav1.Condition shape).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Reconciling or Stalled.
    #[serde(rename = "type")]
    #[schemars(length(max = 32))]
    pub type_: String,
    /// True, False or Unknown.
    #[schemars(length(max = 8))]
    pub status: String,
    /// CamelCase reason, one of those documented in the README.
    #[schemars(length(max = 64))]
    pub reason: String,
    /// A sentence for people: what holds and what to do.
    #[schemars(length(max = 1024))]
    pub message: String,
    /// When status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Counts of matched resources by state.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Resources the binding matches.
    pub matched: u32,
    /// Matched resources carrying the desired policy (including Remediated and Breakglass).
    pub compliant: u32,
    /// Resources fixed in the last pass.
    pub remediated: u32,
    /// Resources that do not carry the desired policy and were not fixed (Audit mode, or a
    /// fix pending).
    pub drifted: u32,
    /// Compliant resources carrying a breakglass justification.
    pub breakglass: u32,
    /// Resources owned by a higher-priority binding.
    pub superseded: u32,
    /// Resources claimed by an equal-priority binding with a different policy.
    pub conflicted: u32,
    /// Resources whose remediation failed.
    pub failed: u32,
    /// Resources whose latest deploy was refused by Binary Authorization.
    pub deploy_blocked: u32,
    /// Resources that do not carry the desired policy and are left alone while an active
    /// BinAuthzException names them (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub excepted: u32,
    /// Resources carrying the desired policy whose running revisions (a job's latest
    /// execution) are not known to have been checked by it: the policy takes effect at
    /// the next deploy (a job's next run). See `targets[].effect`.
    #[serde(default)]
    pub not_effective: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl<'a> std::iter::Sum<&'a Summary> for Summary {
    /// The counts of several bindings together (a fleet's, a report's).
    fn sum<I: Iterator<Item = &'a Summary>>(summaries: I) -> Self {
        summaries.fold(Summary::default(), |total, s| Summary {
            matched: total.matched + s.matched,
            compliant: total.compliant + s.compliant,
            remediated: total.remediated + s.remediated,
            drifted: total.drifted + s.drifted,
            breakglass: total.breakglass + s.breakglass,
            superseded: total.superseded + s.superseded,
            conflicted: total.conflicted + s.conflicted,
            failed: total.failed + s.failed,
            deploy_blocked: total.deploy_blocked + s.deploy_blocked,
            excepted: total.excepted + s.excepted,
            not_effective: total.not_effective + s.not_effective,
        })
    }
}

/// The result for one matched Cloud Run resource.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// Service, Job or WorkerPool.
    pub kind: ResourceKind,
    /// Cloud Run region.
    #[schemars(length(max = 64))]
    pub location: String,
    /// Resource name (last segment).
    #[schemars(length(max = 63))]
    pub name: String,
    /// The resource's state for this binding.
    pub state: TargetState,
    /// The policy the resource carries: `none`, `default` or the policy name.
    #[schemars(length(max = 256))]
    pub observed: String,
    /// The policy it must carry: `default` or the policy name.
    #[schemars(length(max = 256))]
    pub desired: String,
    /// Details for people (the owning binding, the error, the breakglass justification).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
    /// True when the resource's latest deploy was refused by Binary Authorization; the
    /// resource keeps serving its previous revision.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deploy_blocked: bool,
    /// When state last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// Breakglass: who set the justification (Cloud Run's `lastModifier` when it first
    /// appeared, or the audit log entry's principal with drift events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub breakglass_by: Option<String>,
    /// Breakglass: since when the justification is in place (RFC 3339; Cloud Run's
    /// `updateTime` when it first appeared, else when the operator first saw it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub breakglass_since: Option<String>,
    /// Whether the policy is in effect for what runs (set for targets of this binding
    /// that carry the desired policy): Binary Authorization checks a deploy (a job's
    /// execution), not what already runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TargetEffect>,
}

/// Whether a target's policy is in effect for what runs, and how the operator knows.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetEffect {
    /// Effective, NotEffective or Unknown.
    pub state: EffectState,
    /// Where the time the policy was set comes from.
    pub basis: EffectBasis,
    /// The time the policy was set (`Remediation`), or the latest time it can have been
    /// set (`UpdateTime`: the resource's last change), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub policy_set_time: Option<String>,
    /// What runs, and what makes the policy effective (the next deploy; a job's next run).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
}

/// Whether the policy is in effect for what runs.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum EffectState {
    /// Every revision receiving traffic (a job's latest execution) was created after the
    /// policy was set, or nothing has run yet.
    Effective,
    /// Something runs that was created before the policy was set (or before the latest
    /// time it can have been set): the next deploy (a job's next run) makes it effective.
    NotEffective,
    /// Cloud Run did not say what runs, or a revision could not be read.
    Unknown,
}

impl fmt::Display for EffectState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Where the time the policy was set comes from.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum EffectBasis {
    /// The operator set the policy (its remediation write): the time is exact.
    Remediation,
    /// Cloud Run keeps no record of when a field changed: the resource's `updateTime`
    /// (its last change) is the latest moment the policy can have been set, and what was
    /// created before it is not known to have been checked.
    UpdateTime,
}

impl fmt::Display for EffectBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The state of one matched resource for one binding.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum TargetState {
    /// Carries the desired policy.
    Compliant,
    /// Fixed by the operator in this pass.
    Remediated,
    /// Does not carry the desired policy (Audit mode, or a fix pending or retrying).
    Drifted,
    /// Carries the desired policy and a breakglass justification.
    Breakglass,
    /// A higher-priority binding owns it.
    Superseded,
    /// An equal-priority binding wants a different policy; left untouched.
    Conflicted,
    /// The remediation failed.
    Failed,
    /// Does not carry the desired policy; an active BinAuthzException names it, so it is
    /// reported and not remediated until the exception expires.
    Excepted,
}

impl TargetState {
    /// Whether the resource carries the desired policy in this state.
    pub fn complies(self) -> bool {
        matches!(self, Self::Compliant | Self::Remediated | Self::Breakglass)
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
