//! The `BinAuthzTenancy` grant (cluster-scoped): which namespaces may bind which Google
//! Cloud projects, up to which priority, with which policies. Grants add up; see
//! `crate::plan::tenancy` for the decision and docs/deploy.md ("Tenancy") for the model.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::patterns::{
    cel_string, K8S_LABEL_KEY, K8S_LABEL_VALUE, NAMESPACE_NAME, POLICY_NAME, PROJECT_GLOB,
};
use super::LabelOperator;

/// Grants the namespaces it selects the right to bind the Google Cloud projects it lists,
/// at priorities up to `maxPriority`, with the policies it allows. Every grant that selects
/// a namespace adds to what the namespace may do. Without any grant in the cluster every
/// namespace may bind anything; once one exists, a namespace no grant selects may bind
/// nothing.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "binauthz.dev",
    version = "v1alpha1",
    kind = "BinAuthzTenancy",
    doc = "A BinAuthzTenancy grants namespaces the right to bind some Google Cloud projects with BinAuthzBindings, up to a priority, with some policies. Grants add up.",
    plural = "binauthztenancies",
    singular = "binauthztenancy",
    shortname = "batn",
    category = "binauthz",
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".spec.namespaces","description":"Namespaces granted by name"}"#,
    printcolumn = r#"{"name":"Projects","type":"string","jsonPath":".spec.projects","description":"Projects (ids, numbers or globs) the namespaces may bind"}"#,
    printcolumn = r#"{"name":"MaxPriority","type":"integer","jsonPath":".spec.maxPriority","description":"Highest spec.priority their bindings may use"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(has(self.namespaces) && size(self.namespaces) > 0) || has(self.namespaceSelector)").message("a grant needs namespaces or namespaceSelector"))]
pub struct BinAuthzTenancySpec {
    /// Namespaces granted by name. At most 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(regex(pattern = NAMESPACE_NAME.regex), length(max = NAMESPACE_NAME.max_len)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub namespaces: Vec<String>,

    /// Namespaces granted by their Kubernetes labels (every `matchLabels` entry and every
    /// `matchExpressions` requirement must hold). Adds to `namespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,

    /// Google Cloud projects the namespaces may bind: project ids, project numbers, or
    /// globs over them (`*` any run of characters, `?` one character), e.g. `acme-shop-*`.
    /// A project bound by number must be granted by number. 1 to 100 entries.
    #[schemars(length(min = 1, max = 100), inner(regex(pattern = PROJECT_GLOB.regex), length(max = PROJECT_GLOB.max_len)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub projects: Vec<String>,

    /// The highest `spec.priority` a binding may use under this grant, -1000..1000,
    /// default 0.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub max_priority: i32,

    /// Which policies bindings may ask for. Absent: any (`useDefault: true` or any named
    /// policy). Present: `useDefault: true`, and the named policies `names` lists; `{}`
    /// allows only `useDefault: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<PolicyGrant>,
}

/// A label selector over namespace labels, with Kubernetes semantics.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)").message("namespaceSelector needs matchLabels or matchExpressions"))]
pub struct NamespaceSelector {
    /// Labels the namespace must carry with exactly these values. At most 16.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    #[schemars(inner(regex(pattern = K8S_LABEL_VALUE.regex), length(max = K8S_LABEL_VALUE.max_len)))]
    #[x_kube(validation = kube::core::Rule::new(format!("self.all(k, k.matches({}))", cel_string(K8S_LABEL_KEY.regex))).message("matchLabels keys must be Kubernetes label keys, e.g. team or example.com/team"))]
    pub match_labels: BTreeMap<String, String>,

    /// Label requirements (In, NotIn, Exists, DoesNotExist). At most 8.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub match_expressions: Vec<NamespaceRequirement>,
}

/// One requirement on a namespace label: `key` compared with `values` by `operator`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(self.operator == 'In' || self.operator == 'NotIn') == (has(self.values) && size(self.values) > 0)").message("values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist"))]
pub struct NamespaceRequirement {
    /// The namespace label key.
    #[schemars(regex(pattern = K8S_LABEL_KEY.regex), length(max = K8S_LABEL_KEY.max_len))]
    pub key: String,
    /// How the label is compared with `values`.
    pub operator: LabelOperator,
    /// Values for In and NotIn (non-empty); empty for Exists and DoesNotExist. At most 32.
    #[serde(default)]
    #[schemars(length(max = 32), inner(regex(pattern = K8S_LABEL_VALUE.regex), length(max = K8S_LABEL_VALUE.max_len)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub values: Vec<String>,
}

/// The named policies a grant allows besides `useDefault: true`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyGrant {
    /// Cloud Run platform policies (`projects/P/platforms/cloudRun/policies/ID`, `*` and
    /// `?` allowed as globs) bindings may name. Empty: only `useDefault: true`. At most 50.
    #[serde(default)]
    #[schemars(length(max = 50), inner(regex(pattern = POLICY_NAME.regex), length(max = POLICY_NAME.max_len)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub names: Vec<String>,
}

impl NamespaceSelector {
    /// Whether namespace `labels` satisfy the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator {
                    LabelOperator::In => value.is_some_and(|v| req.values.contains(v)),
                    LabelOperator::NotIn => value.is_none_or(|v| !req.values.contains(v)),
                    LabelOperator::Exists => value.is_some(),
                    LabelOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// The `kind` of grants.
pub const TENANCY_KIND: &str = "BinAuthzTenancy";

/// The name of the one [`BinAuthzTenancyIndex`] the operator writes and the admission
/// policy (deploy/tenancy/admission-policy.yaml) reads.
pub const TENANCY_INDEX_NAME: &str = "binauthz-tenancy";

/// Every grant of the cluster in one object, written by the operator for the admission
/// policy: a `ValidatingAdmissionPolicy` evaluates each parameter object on its own and
/// requires all of them to pass, so grants that add up must be read as one. Never edit it:
/// the operator rewrites it from the `BinAuthzTenancy` grants.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "binauthz.dev",
    version = "v1alpha1",
    kind = "BinAuthzTenancyIndex",
    doc = "Every BinAuthzTenancy grant in one object, written by the operator for the admission policy (deploy/tenancy/). Do not edit.",
    plural = "binauthztenancyindexes",
    singular = "binauthztenancyindex",
    category = "binauthz",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BinAuthzTenancyIndexSpec {
    /// Every grant, sorted by name, with its globs as regular expressions. Empty: no grant
    /// exists, and every namespace may bind anything.
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub grants: Vec<IndexedGrant>,
}

/// One grant as the admission policy reads it: every field present, globs compiled.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexedGrant {
    /// The grant's `metadata.name`.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Namespaces granted by name.
    #[schemars(length(max = 100), inner(length(max = 63)))]
    pub namespaces: Vec<String>,
    /// Whether the grant also selects namespaces by label (`matchLabels`, `matchExpressions`).
    pub by_labels: bool,
    /// The namespace selector's `matchLabels` (empty without a selector).
    #[schemars(extend("maxProperties" = 16))]
    #[schemars(inner(length(max = 63)))]
    pub match_labels: BTreeMap<String, String>,
    /// The namespace selector's `matchExpressions` (empty without a selector).
    #[schemars(length(max = 8))]
    pub match_expressions: Vec<NamespaceRequirement>,
    /// The granted projects as anchored regular expressions.
    #[schemars(length(max = 100), inner(length(max = 128)))]
    pub projects: Vec<String>,
    /// The highest priority granted.
    pub max_priority: i32,
    /// True when the grant does not restrict policies.
    pub any_policy: bool,
    /// The named policies granted, as anchored regular expressions.
    #[schemars(length(max = 50), inner(length(max = 1024)))]
    pub policies: Vec<String>,
}

impl BinAuthzTenancyIndexSpec {
    /// The index of `grants` (`(name, spec)` pairs, in any order).
    pub fn of<'g>(grants: impl IntoIterator<Item = (&'g str, &'g BinAuthzTenancySpec)>) -> Self {
        let mut grants: Vec<IndexedGrant> = grants
            .into_iter()
            .map(|(name, spec)| {
                let selector = spec.namespace_selector.clone().unwrap_or_default();
                IndexedGrant {
                    name: name.to_owned(),
                    namespaces: spec.namespaces.clone(),
                    by_labels: spec.namespace_selector.is_some(),
                    match_labels: selector.match_labels,
                    match_expressions: selector.match_expressions,
                    projects: spec.projects.iter().map(|p| glob_regex(p)).collect(),
                    max_priority: spec.max_priority,
                    any_policy: spec.policies.is_none(),
                    policies: spec
                        .policies
                        .iter()
                        .flat_map(|p| &p.names)
                        .map(|n| glob_regex(n))
                        .collect(),
                }
            })
            .collect();
        grants.sort_by(|a, b| a.name.cmp(&b.name));
        Self { grants }
    }
}

/// A glob (`*` any run of characters, `?` one) as an anchored RE2 expression, every other
/// character literal.
pub fn glob_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 8);
    out.push('^');
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c if c.is_ascii_punctuation() && !matches!(c, '-' | '_' | '/') => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('$');
    out
}
