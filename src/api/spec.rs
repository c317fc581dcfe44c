//! The binding's spec: which Cloud Run resources of one project must carry which policy,
//! with the schema constraints the API server enforces.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::patterns::{
    cel_string, INTERVAL, LABEL_KEY, LABEL_VALUE, LOCATION, NAME_GLOB, POLICY_NAME, PROJECT,
};
use super::{BinAuthzBindingStatus, DEFAULT_INTERVAL};
use crate::policy::{DesiredPolicy, PolicyName};

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
    #[schemars(regex(pattern = PROJECT.regex), length(max = PROJECT.max_len))]
    pub project: String,

    /// Cloud Run regions to cover, e.g. `us-central1`, or `["*"]` for every region where
    /// Cloud Run is available to the project. At most 50 entries, no duplicates.
    #[schemars(length(min = 1, max = 50), inner(regex(pattern = LOCATION.regex), length(max = LOCATION.max_len)))]
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
    #[schemars(regex(pattern = INTERVAL.regex), length(max = INTERVAL.max_len))]
    // The pattern guard: the API server evaluates this rule even when the pattern above
    // already refused the value, and `duration()` of a malformed string adds a confusing
    // "type conversion error" to the pattern's clear message.
    #[x_kube(validation = kube::core::Rule::new(format!("!self.matches({}) || duration(self) >= duration('30s')", cel_string(INTERVAL.regex))).message("interval must be at least 30s"))]
    pub interval: String,

    /// Resolves overlaps: when several bindings match one resource, the highest priority
    /// owns it; lower ones report it Superseded. Equal priorities with different policies
    /// are a conflict and the resource is left untouched. -1000..1000, default 0.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i32,

    /// When true the operator makes no Cloud Run calls for this binding; its status then
    /// has no Ready condition and says Suspended (Flux and Argo CD read it as settled).
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
    #[schemars(length(min = 1, max = 200), inner(regex(pattern = NAME_GLOB.regex), length(max = NAME_GLOB.max_len)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub names: Option<Vec<String>>,

    /// A Kubernetes-style label selector evaluated against the Cloud Run resource's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,

    /// Names or globs never covered, even when `names` or `labelSelector` match. At most 200.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200), inner(regex(pattern = NAME_GLOB.regex), length(max = NAME_GLOB.max_len)))]
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
    #[schemars(inner(regex(pattern = LABEL_VALUE.regex), length(max = LABEL_VALUE.max_len)))]
    #[x_kube(validation = kube::core::Rule::new(format!("self.all(k, k.matches({}))", cel_string(LABEL_KEY.regex))).message("matchLabels keys must be Cloud Run label keys: a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'"))]
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
    #[schemars(regex(pattern = LABEL_KEY.regex), length(max = LABEL_KEY.max_len))]
    pub key: String,
    /// How the label is compared with `values`.
    pub operator: LabelOperator,
    /// Values for In and NotIn (non-empty); empty for Exists and DoesNotExist. At most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(regex(pattern = LABEL_VALUE.regex), length(max = LABEL_VALUE.max_len)))]
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
    #[schemars(regex(pattern = POLICY_NAME.regex), length(max = POLICY_NAME.max_len))]
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

impl BinAuthzBindingSpec {
    /// `spec.interval` as a duration (the default when it cannot be parsed; `validate`
    /// refuses such specs before they reach a pass).
    pub fn interval(&self) -> Duration {
        crate::duration::parse(&self.interval).unwrap_or(Duration::from_secs(600))
    }

    /// The desired policy; `None` only for a spec that `validate` refuses.
    pub fn desired_policy(&self) -> Option<DesiredPolicy> {
        self.policy.desired()
    }
}
