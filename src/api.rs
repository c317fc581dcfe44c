//! The `BinAuthzBinding` custom resource (`binauthz.dev/v1alpha1`): spec, status, CRD rules.
//!
//! The Rust types here are the single source of the CRD: `binauthz-operator crd` prints
//! what they derive, and `crds/` holds a committed copy that a test keeps in step. Every
//! validation rule exists twice, on purpose and tested against each other: in the schema
//! (OpenAPI constraints and CEL `x-kubernetes-validations`, enforced by the API server) and
//! in [`validate`] (for `check`, which reads files without an API server).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::{DesiredPolicy, PolicyName};

/// Shortest accepted `spec.interval`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// `spec.interval` when the binding does not say.
pub const DEFAULT_INTERVAL: &str = "10m";
/// Most entries in `status.targets`.
pub const MAX_STATUS_TARGETS: usize = 100;
/// Most names or excludes in one target selector.
pub const MAX_SELECTOR_NAMES: usize = 200;
/// Most entries in `spec.locations`.
pub const MAX_LOCATIONS: usize = 50;
/// Bounds of `spec.priority`.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;

// The patterns are written once here and used by the schema and by `validate`.
const PROJECT_PATTERN: &str = r"^([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})$";
const LOCATION_PATTERN: &str = r"^([a-z]+-[a-z]+[0-9]+|\*)$";
const NAME_GLOB_PATTERN: &str = r"^[a-z0-9*?-]{1,63}$";
const POLICY_NAME_PATTERN: &str = r"^projects/[^/]+/platforms/cloudRun/policies/[^/]+$";
const INTERVAL_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";
const LABEL_KEY_PATTERN: &str = r"^[a-z][a-z0-9_-]{0,62}$";
const LABEL_VALUE_PATTERN: &str = r"^[a-z0-9_-]{0,63}$";

/// Declares which Cloud Run services, jobs and worker pools of one Google Cloud project must
/// carry which Binary Authorization policy. The operator compares this with the live Cloud
/// Run configuration and fixes drift (mode Enforce) or only reports it (mode Audit).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "binauthz.dev",
    version = "v1alpha1",
    kind = "BinAuthzBinding",
    doc = "A BinAuthzBinding keeps a set of Cloud Run services, jobs and worker pools of one Google Cloud project under a Binary Authorization policy.",
    plural = "binauthzbindings",
    singular = "binauthzbinding",
    shortname = "bab",
    category = "binauthz",
    namespaced,
    status = "BinAuthzBindingStatus",
    printcolumn = r#"{"name":"Project","type":"string","jsonPath":".spec.project","description":"Google Cloud project of the Cloud Run resources"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode","description":"Enforce fixes drift, Audit only reports it"}"#,
    printcolumn = r#"{"name":"Matched","type":"integer","jsonPath":".status.summary.matched","description":"Cloud Run resources this binding matches"}"#,
    printcolumn = r#"{"name":"Compliant","type":"integer","jsonPath":".status.summary.compliant","description":"Matched resources carrying the desired policy"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status","description":"True when every matched resource complies"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Policy","type":"string","priority":1,"jsonPath":".status.policy","description":"Desired policy: default or the policy name"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","description":"Why the binding is or is not Ready"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BinAuthzBindingSpec {
    /// Google Cloud project that holds the Cloud Run resources: a project id (6-30
    /// characters: lowercase letters, digits and hyphens, starting with a letter) or a
    /// project number.
    #[schemars(regex(pattern = PROJECT_PATTERN), length(max = 30))]
    pub project: String,

    /// Cloud Run regions to cover, e.g. `us-central1`, or `["*"]` for every region where
    /// Cloud Run is available to the project. At most 50 entries, no duplicates.
    #[schemars(length(min = 1, max = 50), inner(regex(pattern = LOCATION_PATTERN), length(max = 40)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = kube::core::Rule::new("!('*' in self) || size(self) == 1").message("'*' (every region) must be the only entry of locations"))]
    pub locations: Vec<String>,

    /// Which Cloud Run resources, per kind, the binding covers. At least one kind is needed.
    pub targets: Targets,

    /// The Binary Authorization policy the matched resources must carry: exactly one of
    /// `useDefault: true` (the project's default policy) or `name` (a Cloud Run platform
    /// policy).
    pub policy: PolicyRef,

    /// `Enforce` (default) fixes drift by setting the policy on each drifted resource;
    /// `Audit` only reports drift and never writes to Cloud Run.
    #[serde(default)]
    pub mode: Mode,

    /// What to do with a breakglass justification found on a matched resource: `Allow`
    /// (default) reports it and leaves it in place; `Clear` removes it with the remediation.
    #[serde(default)]
    pub breakglass: BreakglassMode,

    /// How often the binding is fully re-checked against Cloud Run, as a Kubernetes
    /// duration (`90s`, `10m`, `1h`). Default `10m`, at least `30s`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = INTERVAL_PATTERN), length(max = 20))]
    // The pattern guard: the API server evaluates this rule even when the pattern above
    // already refused the value, and `duration()` of a malformed string adds a confusing
    // "type conversion error" to the pattern's clear message.
    #[x_kube(validation = kube::core::Rule::new(r"!self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) >= duration('30s')").message("interval must be at least 30s"))]
    pub interval: String,

    /// Resolves overlaps: when several bindings match one resource, the highest priority
    /// owns it; lower ones report it Superseded. Equal priorities with different policies
    /// are a conflict and the resource is left untouched. -1000..1000, default 0.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i32,

    /// When true the operator makes no Cloud Run calls for this binding and reports
    /// Ready=Unknown with reason Suspended.
    #[serde(default)]
    pub suspend: bool,
}

fn default_interval() -> String {
    DEFAULT_INTERVAL.to_owned()
}

/// Selectors per Cloud Run resource kind. A kind without a selector is not covered.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.services) || has(self.jobs) || has(self.workerPools)").message("targets must name at least one of services, jobs or workerPools"))]
pub struct Targets {
    /// Cloud Run services to cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<TargetSelector>,
    /// Cloud Run jobs to cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<TargetSelector>,
    /// Cloud Run worker pools to cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_pools: Option<TargetSelector>,
}

impl Targets {
    /// The selector for one kind, if the binding covers it.
    pub fn for_kind(&self, kind: ResourceKind) -> Option<&TargetSelector> {
        match kind {
            ResourceKind::Service => self.services.as_ref(),
            ResourceKind::Job => self.jobs.as_ref(),
            ResourceKind::WorkerPool => self.worker_pools.as_ref(),
        }
    }
}

/// Which resources of one kind are covered: those whose name matches one of `names` (when
/// given) AND whose Cloud Run labels match `labelSelector` (when given), minus `exclude`.
/// Match-all must be explicit: `names: ["*"]`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.names) || has(self.labelSelector)").message("a target selector needs names or labelSelector; to match every resource say names: [\"*\"]"))]
pub struct TargetSelector {
    /// Resource names or globs (`*` any run of characters, `?` one character), e.g.
    /// `checkout` or `payments-*`. At most 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200), inner(regex(pattern = NAME_GLOB_PATTERN), length(max = 63)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub names: Option<Vec<String>>,

    /// A Kubernetes-style label selector evaluated against the Cloud Run resource's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,

    /// Names or globs never covered, even when `names` or `labelSelector` match. At most 200.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200), inner(regex(pattern = NAME_GLOB_PATTERN), length(max = 63)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub exclude: Vec<String>,
}

/// A label selector over Cloud Run labels, with Kubernetes semantics: every `matchLabels`
/// entry and every `matchExpressions` requirement must hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.matchLabels) || has(self.matchExpressions)").message("labelSelector needs matchLabels or matchExpressions; to match every resource say names: [\"*\"]"))]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values. At most 32.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("minProperties" = 1, "maxProperties" = 32))]
    #[schemars(inner(regex(pattern = LABEL_VALUE_PATTERN), length(max = 63)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, k.matches('^[a-z][a-z0-9_-]{0,62}$'))").message("matchLabels keys must be Cloud Run label keys: a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'"))]
    pub match_labels: BTreeMap<String, String>,

    /// Label requirements (In, NotIn, Exists, DoesNotExist). At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 16))]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One label requirement: `key` compared with `values` by `operator`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(self.operator == 'In' || self.operator == 'NotIn') == (has(self.values) && size(self.values) > 0)").message("values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist"))]
pub struct LabelSelectorRequirement {
    /// The Cloud Run label key the requirement applies to.
    #[schemars(regex(pattern = LABEL_KEY_PATTERN), length(max = 63))]
    pub key: String,
    /// How the label is compared with `values`.
    pub operator: LabelOperator,
    /// Values for In and NotIn (non-empty); empty for Exists and DoesNotExist. At most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(regex(pattern = LABEL_VALUE_PATTERN), length(max = 63)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub values: Vec<String>,
}

/// Operator of a label requirement.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOperator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label is present (any value).
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// The Binary Authorization policy to require: exactly one of `useDefault: true` or `name`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.useDefault) != has(self.name)").message("policy needs exactly one of useDefault: true or name"))]
pub struct PolicyRef {
    /// `true`: the project's default Binary Authorization policy. `false` is refused: a
    /// binding can never ask for Binary Authorization to be disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self == true").message("useDefault: false would disable Binary Authorization; set useDefault: true or name a policy"))]
    pub use_default: Option<bool>,

    /// A Cloud Run platform policy, `projects/{project}/platforms/cloudRun/policies/{id}`
    /// (the policy's project may differ from spec.project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = POLICY_NAME_PATTERN), length(max = 256))]
    pub name: Option<String>,
}

impl PolicyRef {
    /// The desired policy, when this reference is valid.
    pub fn desired(&self) -> Option<DesiredPolicy> {
        match (self.use_default, self.name.as_deref()) {
            (Some(true), None) => Some(DesiredPolicy::ProjectDefault),
            (None, Some(name)) => PolicyName::parse(name).map(DesiredPolicy::Named),
            _ => None,
        }
    }
}

/// Whether drift is fixed or only reported.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Fix drift: set the desired policy on every drifted resource.
    #[default]
    Enforce,
    /// Only report drift; never write to Cloud Run.
    Audit,
}

/// What to do with a breakglass justification on a matched resource.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BreakglassMode {
    /// Report it (Warning event, metric) and leave it in place.
    #[default]
    Allow,
    /// Remove it with the remediation write.
    Clear,
}

/// The kinds of Cloud Run resource a binding can cover.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum ResourceKind {
    /// A Cloud Run service.
    Service,
    /// A Cloud Run job.
    Job,
    /// A Cloud Run worker pool.
    WorkerPool,
}

impl ResourceKind {
    /// Every kind, in report order.
    pub const ALL: [ResourceKind; 3] = [Self::Service, Self::Job, Self::WorkerPool];

    /// The collection segment of the v2 resource name (`services`, `jobs`, `workerPools`).
    pub fn collection(self) -> &'static str {
        match self {
            Self::Service => "services",
            Self::Job => "jobs",
            Self::WorkerPool => "workerPools",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Service => "Service",
            Self::Job => "Job",
            Self::WorkerPool => "WorkerPool",
        })
    }
}

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

/// The CustomResourceDefinition, derived from the types above and finished by hand where
/// the derive cannot say it:
/// - no `nullable: true` (kube marks every `Option` so): an explicit `null` must not pass
///   `has()` in the CEL rules, so absent is the only way to leave a field out;
/// - the `matchLabels` value constraints (schemars has no attribute for map values).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = BinAuthzBinding::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            finish_schema(schema);
        }
    }
    crd
}

fn finish_schema(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    if let Some(properties) = schema.properties.as_mut() {
        for (name, property) in properties.iter_mut() {
            if name == "matchLabels" {
                if let Some(JSONSchemaPropsOrBool::Schema(values)) =
                    property.additional_properties.as_mut()
                {
                    values.pattern = Some(LABEL_VALUE_PATTERN.to_owned());
                    values.max_length = Some(63);
                }
            }
            finish_schema(property);
        }
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        finish_schema(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
        finish_schema(values);
    }
}

/// The CRD as YAML, exactly as `binauthz-operator crd` prints it and `crds/` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&crd())
}

/// A rule a binding breaks: the field (as the API server names it) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.locations[1]`.
    pub field: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every rule a binding breaks, in field order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<FieldError>);

impl BinAuthzBindingSpec {
    /// `spec.interval` as a duration (the default when it cannot be parsed; `validate`
    /// refuses such specs before they reach a pass).
    pub fn interval(&self) -> Duration {
        parse_interval(&self.interval).unwrap_or(Duration::from_secs(600))
    }

    /// The desired policy; `None` only for a spec that `validate` refuses.
    pub fn desired_policy(&self) -> Option<DesiredPolicy> {
        self.policy.desired()
    }

    /// Checks every rule of the CRD (the same rules the API server enforces).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut v = Validator::default();
        v.spec(self);
        if v.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(v.errors))
        }
    }
}

impl BinAuthzBinding {
    /// Checks the metadata the API server requires and every rule of the spec.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut v = Validator::default();
        if self.metadata.name.as_deref().unwrap_or("").is_empty() {
            v.push(
                "metadata.name",
                "Required value: every binding needs a name",
            );
        }
        v.spec(&self.spec);
        if v.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(v.errors))
        }
    }
}

/// The `apiVersion` of bindings.
pub const API_VERSION: &str = "binauthz.dev/v1alpha1";
/// The `kind` of bindings.
pub const KIND: &str = "BinAuthzBinding";

/// Reads one binding from a parsed manifest and checks every CRD rule, reporting problems
/// the way the API server names them (`spec.locations[1]: Duplicate value: ...`).
///
/// Type errors, unknown fields and missing required fields are found while reading (the
/// first one stops reading, as it does in the API server's decoder); rule violations are all
/// reported together.
pub fn binding_from_value(value: serde_json::Value) -> Result<BinAuthzBinding, ValidationErrors> {
    let api_version = value.get("apiVersion").and_then(|v| v.as_str());
    if api_version != Some(API_VERSION) {
        return Err(ValidationErrors(vec![FieldError {
            field: "apiVersion".into(),
            message: format!(
                "Unsupported value: {:?}: a {KIND} must have apiVersion {API_VERSION}",
                api_version.unwrap_or("")
            ),
        }]));
    }
    let binding: BinAuthzBinding = serde_path_to_error::deserialize(value)
        .map_err(|err| ValidationErrors(vec![serde_field_error(&err)]))?;
    binding.validate()?;
    Ok(binding)
}

/// Turns a serde error at a path into the API server's wording where one exists.
fn serde_field_error(err: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = err.path().to_string();
    let at = |leaf: &str| {
        if path == "." {
            leaf.to_owned()
        } else {
            format!("{path}.{leaf}")
        }
    };
    let inner = err.inner().to_string();
    // serde's messages are stable: "missing field `x`", "unknown field `x`, expected ...",
    // "unknown variant `x`, expected ...", "invalid type: ...".
    let quoted = |text: &str| text.split('`').nth(1).unwrap_or("").to_owned();
    if let Some(rest) = inner.strip_prefix("missing field ") {
        return FieldError {
            field: at(&quoted(rest)),
            message: "Required value".into(),
        };
    }
    if inner.starts_with("unknown field ") {
        return FieldError {
            field: path,
            message: "field not declared in schema; check the spelling against `kubectl explain binauthzbinding.spec`".into(),
        };
    }
    if let Some(rest) = inner.strip_prefix("unknown variant ") {
        let supported: Vec<String> = rest
            .split('`')
            .skip(3)
            .step_by(2)
            .map(|v| format!("{v:?}"))
            .collect();
        return FieldError {
            field: path,
            message: format!(
                "Unsupported value: {:?}: supported values: {}",
                quoted(rest),
                supported.join(", ")
            ),
        };
    }
    let message = inner.split(" at line ").next().unwrap_or(&inner);
    let message = match message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.split_once(", expected "))
    {
        Some((got, want)) => {
            let want = match want {
                "i32" | "i64" | "u32" | "u64" => "an integer",
                other => other,
            };
            format!("Invalid value: {got}: must be {want}")
        }
        None => format!("Invalid value: {message}"),
    };
    FieldError {
        field: path,
        message,
    }
}

fn parse_interval(text: &str) -> Option<Duration> {
    let parsed = kube::core::Duration::from_str(text).ok()?;
    if parsed.is_negative() {
        return None;
    }
    Some(parsed.into())
}

/// Collects field errors; each check mirrors one schema constraint or CEL rule.
#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn spec(&mut self, spec: &BinAuthzBindingSpec) {
        self.project(&spec.project);
        self.locations(&spec.locations);
        self.targets(&spec.targets);
        self.policy(&spec.policy);
        self.interval(&spec.interval);
        if !PRIORITY_RANGE.contains(&spec.priority) {
            self.push(
                "spec.priority",
                format!(
                    "Invalid value: {}: spec.priority should be between -1000 and 1000",
                    spec.priority
                ),
            );
        }
    }

    fn pattern(&mut self, field: &str, value: &str, max_len: usize, ok: bool, what: &str) {
        if value.chars().count() > max_len {
            self.push(
                field,
                format!("Too long: may not be more than {max_len} bytes ({what})"),
            );
        } else if !ok {
            self.push(
                field,
                format!("Invalid value: {value:?}: should match {what}"),
            );
        }
    }

    fn project(&mut self, project: &str) {
        let ok = is_project_id(project) || is_project_number(project);
        self.pattern(
            "spec.project",
            project,
            30,
            ok,
            "a project id (6-30 lowercase letters, digits or hyphens, starting with a letter, not ending with a hyphen) or a project number",
        );
    }

    fn locations(&mut self, locations: &[String]) {
        if locations.is_empty() {
            self.push(
                "spec.locations",
                "Invalid value: 0: spec.locations should have at least 1 items; name a region or \"*\"",
            );
        }
        if locations.len() > MAX_LOCATIONS {
            self.push(
                "spec.locations",
                format!(
                    "Too many: {}: must have at most {MAX_LOCATIONS} items",
                    locations.len()
                ),
            );
        }
        for (i, location) in locations.iter().enumerate() {
            let field = format!("spec.locations[{i}]");
            self.pattern(
                &field,
                location,
                40,
                location == "*" || is_region(location),
                "a Cloud Run region such as us-central1, or \"*\"",
            );
            if locations[..i].contains(location) {
                self.push(field, format!("Duplicate value: {location:?}"));
            }
        }
        if locations.iter().any(|l| l == "*") && locations.len() > 1 {
            self.push(
                "spec.locations",
                "'*' (every region) must be the only entry of locations",
            );
        }
    }

    fn targets(&mut self, targets: &Targets) {
        if targets.services.is_none() && targets.jobs.is_none() && targets.worker_pools.is_none() {
            self.push(
                "spec.targets",
                "targets must name at least one of services, jobs or workerPools",
            );
        }
        for (field, selector) in [
            ("spec.targets.services", &targets.services),
            ("spec.targets.jobs", &targets.jobs),
            ("spec.targets.workerPools", &targets.worker_pools),
        ] {
            if let Some(selector) = selector {
                self.selector(field, selector);
            }
        }
    }

    fn selector(&mut self, field: &str, selector: &TargetSelector) {
        if selector.names.is_none() && selector.label_selector.is_none() {
            self.push(
                field,
                "a target selector needs names or labelSelector; to match every resource say names: [\"*\"]",
            );
        }
        if let Some(names) = &selector.names {
            self.globs(&format!("{field}.names"), names, 1);
        }
        self.globs(&format!("{field}.exclude"), &selector.exclude, 0);
        if let Some(labels) = &selector.label_selector {
            self.label_selector(&format!("{field}.labelSelector"), labels);
        }
    }

    fn globs(&mut self, field: &str, globs: &[String], min: usize) {
        if globs.len() < min {
            self.push(
                field,
                format!("Invalid value: 0: {field} should have at least {min} items"),
            );
        }
        if globs.len() > MAX_SELECTOR_NAMES {
            self.push(
                field,
                format!(
                    "Too many: {}: must have at most {MAX_SELECTOR_NAMES} items",
                    globs.len()
                ),
            );
        }
        for (i, glob) in globs.iter().enumerate() {
            let item = format!("{field}[{i}]");
            self.pattern(
                &item,
                glob,
                63,
                is_name_glob(glob),
                "1-63 lowercase letters, digits, '-', '*' or '?'",
            );
            if globs[..i].contains(glob) {
                self.push(item, format!("Duplicate value: {glob:?}"));
            }
        }
    }

    fn label_selector(&mut self, field: &str, selector: &LabelSelector) {
        if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
            self.push(
                field,
                "labelSelector needs matchLabels or matchExpressions; to match every resource say names: [\"*\"]",
            );
        }
        if selector.match_labels.len() > 32 {
            self.push(
                format!("{field}.matchLabels"),
                format!(
                    "Too many: {}: must have at most 32 items",
                    selector.match_labels.len()
                ),
            );
        }
        if selector.match_labels.keys().any(|k| !is_label_key(k)) {
            self.push(
                format!("{field}.matchLabels"),
                "matchLabels keys must be Cloud Run label keys: a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'",
            );
        }
        for (key, value) in &selector.match_labels {
            self.label_value(&format!("{field}.matchLabels.{key}"), value);
        }
        if selector.match_expressions.len() > 16 {
            self.push(
                format!("{field}.matchExpressions"),
                format!(
                    "Too many: {}: must have at most 16 items",
                    selector.match_expressions.len()
                ),
            );
        }
        for (i, req) in selector.match_expressions.iter().enumerate() {
            let item = format!("{field}.matchExpressions[{i}]");
            self.pattern(
                &format!("{item}.key"),
                &req.key,
                63,
                is_label_key(&req.key),
                "a Cloud Run label key: a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'",
            );
            let wants_values = matches!(req.operator, LabelOperator::In | LabelOperator::NotIn);
            if wants_values == req.values.is_empty() {
                self.push(
                    item.clone(),
                    "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                );
            }
            if req.values.len() > 32 {
                self.push(
                    format!("{item}.values"),
                    format!("Too many: {}: must have at most 32 items", req.values.len()),
                );
            }
            for (j, value) in req.values.iter().enumerate() {
                let value_field = format!("{item}.values[{j}]");
                self.label_value(&value_field, value);
                if req.values[..j].contains(value) {
                    self.push(value_field, format!("Duplicate value: {value:?}"));
                }
            }
        }
    }

    fn label_value(&mut self, field: &str, value: &str) {
        self.pattern(
            field,
            value,
            63,
            value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
            "a Cloud Run label value: up to 63 lowercase letters, digits, '_' or '-'",
        );
    }

    fn policy(&mut self, policy: &PolicyRef) {
        if policy.use_default.is_some() == policy.name.is_some() {
            self.push(
                "spec.policy",
                "policy needs exactly one of useDefault: true or name",
            );
        }
        if policy.use_default == Some(false) {
            self.push(
                "spec.policy.useDefault",
                "useDefault: false would disable Binary Authorization; set useDefault: true or name a policy",
            );
        }
        if let Some(name) = &policy.name {
            self.pattern(
                "spec.policy.name",
                name,
                256,
                PolicyName::parse(name).is_some(),
                "projects/{project}/platforms/cloudRun/policies/{policy}",
            );
        }
    }

    fn interval(&mut self, interval: &str) {
        let shape_ok = is_interval_shape(interval);
        self.pattern(
            "spec.interval",
            interval,
            20,
            shape_ok,
            "a duration such as 90s, 10m or 1h",
        );
        if shape_ok && interval.len() <= 20 {
            match parse_interval(interval) {
                Some(d) if d >= MIN_INTERVAL => {}
                _ => self.push("spec.interval", "interval must be at least 30s"),
            }
        }
    }
}

fn is_project_id(s: &str) -> bool {
    let b = s.as_bytes();
    (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn is_project_number(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit())
}

fn is_region(s: &str) -> bool {
    // ^[a-z]+-[a-z]+[0-9]+$
    let Some((area, rest)) = s.split_once('-') else {
        return false;
    };
    let digits_at = rest
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (word, number) = rest.split_at(digits_at);
    !area.is_empty()
        && area.bytes().all(|c| c.is_ascii_lowercase())
        && !word.is_empty()
        && word.bytes().all(|c| c.is_ascii_lowercase())
        && !number.is_empty()
        && number.bytes().all(|c| c.is_ascii_digit())
}

fn is_name_glob(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'*' | b'?')
        })
}

fn is_label_key(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
}

fn is_interval_shape(s: &str) -> bool {
    // ^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            return false;
        }
        rest = &rest[int_len..];
        if let Some(frac) = rest.strip_prefix('.') {
            let frac_len = frac.bytes().take_while(u8::is_ascii_digit).count();
            if frac_len == 0 {
                return false;
            }
            rest = &frac[frac_len..];
        }
        let unit = ["ns", "us", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_checks_agree_with_the_schema_patterns() {
        // The schema's regexes and the Rust predicates must accept the same strings; the
        // end-to-end suite checks the schema side against a real API server.
        for (s, ok) in [
            ("acme-prod", true),
            ("a12345", true),
            ("acme", false),
            ("acme-", false),
            ("Acme-prod", false),
            ("123456789012", true),
            ("a23456789012345678901234567890", true),
            ("a234567890123456789012345678901", false),
        ] {
            assert_eq!(is_project_id(s) || is_project_number(s), ok, "{s}");
        }
        for (s, ok) in [
            ("us-central1", true),
            ("europe-west12", true),
            ("us-central", false),
            ("uscentral1", false),
            ("us-central1a", false),
            ("US-central1", false),
        ] {
            assert_eq!(is_region(s), ok, "{s}");
        }
        for (s, ok) in [
            ("10m", true),
            ("1h30m", true),
            ("1.5h", true),
            ("90s", true),
            ("10", false),
            ("m", false),
            ("1.h", false),
            ("10 m", false),
            ("-10m", false),
        ] {
            assert_eq!(is_interval_shape(s), ok, "{s}");
        }
    }

    #[test]
    fn interval_has_a_floor_and_a_default() {
        let spec: BinAuthzBindingSpec = serde_json::from_value(serde_json::json!({
            "project": "acme-prod", "locations": ["us-central1"],
            "targets": {"services": {"names": ["*"]}}, "policy": {"useDefault": true}
        }))
        .unwrap();
        assert_eq!(spec.interval(), Duration::from_secs(600));
        assert_eq!(spec.mode, Mode::Enforce);
        assert_eq!(spec.breakglass, BreakglassMode::Allow);
        assert!(spec.validate().is_ok());
        let mut short = spec.clone();
        short.interval = "29s".into();
        let err = short.validate().unwrap_err();
        assert_eq!(err.0[0].field, "spec.interval");
        assert!(err.to_string().contains("at least 30s"));
        short.interval = "1m30s".into();
        assert_eq!(short.interval(), Duration::from_secs(90));
    }

    #[test]
    fn desired_policy_never_means_disabled() {
        let disabled = PolicyRef {
            use_default: Some(false),
            name: None,
        };
        assert_eq!(disabled.desired(), None);
        let both = PolicyRef {
            use_default: Some(true),
            name: Some("projects/p/platforms/cloudRun/policies/x".into()),
        };
        assert_eq!(both.desired(), None);
    }
}
