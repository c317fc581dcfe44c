//! What to do with one matched resource, for one binding: the decision of an owner.

use std::sync::Arc;

use super::{ActiveBinding, BindingKey, Excepting};
use crate::api::{BreakglassMode, Mode};
use crate::resource::{BreakglassChange, ObservedResource, Remediation};

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
    /// Would be written (Enforce) or reported drifted (Audit), but an active exception of
    /// the binding's namespace covers it: reported, never written.
    Excepted {
        /// The exception (the one lasting longest when several cover it).
        by: Arc<Excepting>,
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

/// The decision of an owner (sole or co-owner without conflict).
pub(super) fn decide(me: &ActiveBinding, resource: &ObservedResource) -> Decision {
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
