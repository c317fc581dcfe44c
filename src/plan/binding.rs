//! Who a binding is to the planner (namespace/name) and how it takes part in a plan:
//! active, suspended or invalid.

use std::fmt;

use super::tenancy::{Permission, Refusal};
use crate::api::{BinAuthzBindingSpec, BreakglassMode, FieldError, Mode, ValidationErrors};
use crate::policy::DesiredPolicy;

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
    /// What the tenancy grants say about it ([`Permission::Open`] without grants).
    pub permission: Permission,
}

impl<'s> BindingInput<'s> {
    /// How the binding takes part in a plan.
    pub fn activity(&self) -> Activity {
        Activity::of(self.spec, &self.permission)
    }
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
    /// No tenancy grant allows it: no targets, no Cloud Run calls, no part in ownership.
    NotPermitted(Refusal),
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
    /// Reads a spec and what the grants say of it: invalid first (validation errors win
    /// over everything), then not permitted (a refused binding says so even when
    /// suspended), then suspended.
    pub fn of(spec: &BinAuthzBindingSpec, permission: &Permission) -> Self {
        if let Err(errors) = spec.validate() {
            return Self::Invalid(errors);
        }
        if let Permission::NotPermitted(refusal) = permission {
            return Self::NotPermitted(refusal.clone());
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
            None => Self::Invalid(ValidationErrors(vec![FieldError {
                field: "spec.policy".into(),
                message: "policy needs exactly one of useDefault: true or name".into(),
            }])),
        }
    }
}
