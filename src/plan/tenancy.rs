//! Whether the tenancy grants (`BinAuthzTenancy`) let a binding act: its namespace, project,
//! priority and policy in, a [`Permission`] out.
//!
//! # Rules
//! - No grant at all: every binding is [`Permission::Open`] (the behaviour before grants).
//! - Otherwise a binding is permitted when **one** grant selects its namespace (by name or
//!   by the namespace's labels), lists its project (id, number or glob), caps the priority
//!   at or above the binding's, and allows its policy (`useDefault: true` always; a named
//!   policy when the grant restricts none or lists it). Grants add up: the namespace may do
//!   what any one of its grants allows.
//! - A refused binding is told the first thing no grant gives it, in this order: the
//!   namespace, the project, the priority, the policy ([`Refusal`]).
//!
//! The controller, `check` and the drift re-check decide with this one function; the
//! admission policy in deploy/tenancy/ decides the same in CEL (tests/e2e/tenancy.rs).

use std::collections::BTreeMap;
use std::fmt;

use crate::api::{BinAuthzBindingSpec, BinAuthzTenancySpec};
use crate::matching::Glob;

/// The grants of a cluster (or of the files `check` reads), as plain data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grants {
    grants: Vec<Grant>,
}

/// One grant: its name and spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// `metadata.name`.
    pub name: String,
    /// What it grants.
    pub spec: BinAuthzTenancySpec,
}

/// A namespace as the grants see it: its name and labels.
#[derive(Clone, Copy, Debug)]
pub struct Namespace<'n> {
    /// The namespace's name.
    pub name: &'n str,
    /// Its labels (Kubernetes sets `kubernetes.io/metadata.name` on every namespace).
    pub labels: &'n BTreeMap<String, String>,
}

/// What the grants say about one binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    /// No grant exists: tenancy is off.
    Open,
    /// These grants (sorted) each allow the binding.
    Granted(Vec<String>),
    /// No grant allows it.
    NotPermitted(Refusal),
}

/// Why no grant allows a binding: the first thing missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No grant selects the namespace.
    Namespace {
        /// The binding's namespace.
        namespace: String,
    },
    /// The namespace's grants do not list the project.
    Project {
        /// The binding's namespace.
        namespace: String,
        /// `spec.project`.
        project: String,
        /// The grants selecting the namespace.
        grants: Vec<String>,
    },
    /// The grants listing the project cap the priority below the binding's.
    Priority {
        /// The binding's namespace.
        namespace: String,
        /// `spec.project`.
        project: String,
        /// `spec.priority`.
        priority: i32,
        /// The highest cap among those grants.
        max: i32,
        /// The grants listing the project for the namespace.
        grants: Vec<String>,
    },
    /// The grants that allow project and priority do not allow the named policy.
    Policy {
        /// The binding's namespace.
        namespace: String,
        /// `spec.project`.
        project: String,
        /// `spec.policy.name`.
        policy: String,
        /// The grants allowing project and priority.
        grants: Vec<String>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Namespace { namespace } => write!(
                f,
                "no BinAuthzTenancy grant selects namespace {namespace}; ask whoever manages grants for one naming it"
            ),
            Self::Project {
                namespace,
                project,
                grants,
            } => write!(
                f,
                "no BinAuthzTenancy grant lets namespace {namespace} bind project {project} (its grants: {}); ask for a grant listing the project",
                grants.join(", ")
            ),
            Self::Priority {
                namespace,
                project,
                priority,
                max,
                grants,
            } => write!(
                f,
                "priority {priority} is above what the BinAuthzTenancy grants allow namespace {namespace} for project {project} (at most {max}, by {}); lower spec.priority or ask for a higher maxPriority",
                grants.join(", ")
            ),
            Self::Policy {
                namespace,
                project,
                policy,
                grants,
            } => write!(
                f,
                "no BinAuthzTenancy grant lets namespace {namespace} ask for policy {policy} in project {project} (grants allowing the project: {}); use useDefault: true or ask for a grant listing the policy",
                grants.join(", ")
            ),
        }
    }
}

impl Permission {
    /// Whether the binding may act.
    pub fn is_permitted(&self) -> bool {
        !matches!(self, Self::NotPermitted(_))
    }
}

impl Grants {
    /// The grants, in any order (sorted by name inside).
    pub fn new(grants: impl IntoIterator<Item = Grant>) -> Self {
        let mut grants: Vec<Grant> = grants.into_iter().collect();
        grants.sort_by(|a, b| a.name.cmp(&b.name));
        Self { grants }
    }

    /// No grant: tenancy is off.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Every grant, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter()
    }

    /// What the grants say about a binding with `spec` in `namespace` (see the module's rules).
    pub fn permission(&self, namespace: Namespace<'_>, spec: &BinAuthzBindingSpec) -> Permission {
        if self.grants.is_empty() {
            return Permission::Open;
        }
        let names = |grants: &[&Grant]| grants.iter().map(|g| g.name.clone()).collect();
        let selecting: Vec<&Grant> = self
            .grants
            .iter()
            .filter(|g| g.selects(namespace))
            .collect();
        if selecting.is_empty() {
            return Permission::NotPermitted(Refusal::Namespace {
                namespace: namespace.name.to_owned(),
            });
        }
        let for_project: Vec<&Grant> = selecting
            .iter()
            .copied()
            .filter(|g| g.lists_project(&spec.project))
            .collect();
        if for_project.is_empty() {
            return Permission::NotPermitted(Refusal::Project {
                namespace: namespace.name.to_owned(),
                project: spec.project.clone(),
                grants: names(&selecting),
            });
        }
        let for_priority: Vec<&Grant> = for_project
            .iter()
            .copied()
            .filter(|g| spec.priority <= g.spec.max_priority)
            .collect();
        if for_priority.is_empty() {
            return Permission::NotPermitted(Refusal::Priority {
                namespace: namespace.name.to_owned(),
                project: spec.project.clone(),
                priority: spec.priority,
                max: for_project
                    .iter()
                    .map(|g| g.spec.max_priority)
                    .max()
                    .unwrap_or(i32::MIN),
                grants: names(&for_project),
            });
        }
        let allowing: Vec<&Grant> = for_priority
            .iter()
            .copied()
            .filter(|g| g.allows_policy(spec))
            .collect();
        if allowing.is_empty() {
            return Permission::NotPermitted(Refusal::Policy {
                namespace: namespace.name.to_owned(),
                project: spec.project.clone(),
                policy: spec.policy.name.clone().unwrap_or_default(),
                grants: names(&for_priority),
            });
        }
        Permission::Granted(names(&allowing))
    }
}

impl Grant {
    fn selects(&self, namespace: Namespace<'_>) -> bool {
        self.spec.namespaces.iter().any(|n| n == namespace.name)
            || self
                .spec
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.matches(namespace.labels))
    }

    fn lists_project(&self, project: &str) -> bool {
        self.spec
            .projects
            .iter()
            .any(|p| Glob::new(p).matches(project))
    }

    fn allows_policy(&self, spec: &BinAuthzBindingSpec) -> bool {
        let Some(policies) = &self.spec.policies else {
            return true;
        };
        match (spec.policy.use_default, spec.policy.name.as_deref()) {
            (Some(true), _) => true,
            (_, Some(name)) => policies.names.iter().any(|p| Glob::new(p).matches(name)),
            _ => false,
        }
    }
}
