//! The one path from Cloud Run to a binding's report, shared by the controller and `check`: read ([`read`]), classify ([`classify`]), remediate ([`remediate`]).
//!
//! Both surfaces read through one [`inventory::SharedInventory`], plan with
//! [`crate::plan`], and write through [`remediate::remediate_all`]; only what surrounds
//! them differs (the controller writes status and events under a lease, `check` prints a
//! report). So a Cloud Run answer means the same in both: the same reason, the same
//! message, the same outcome.

pub mod classify;
pub mod inventory;
pub mod read;
pub mod remediate;

use crate::plan::{self, BindingInput, BindingKey, Decision};
use crate::resource::{ObservedResource, Remediation};

/// Whether `key` still asks for exactly `remediation` on `resource`, planned with
/// `bindings` as they are now (every binding of the resource's project): the guard every
/// write attempt asks with the resource as just read.
pub fn still_owned(
    bindings: &[BindingInput<'_>],
    key: &BindingKey,
    resource: &ObservedResource,
    remediation: &Remediation,
) -> bool {
    let Ok(plan) = plan::plan(bindings, std::iter::once(resource)) else {
        return false;
    };
    plan.binding(key)
        .and_then(|b| b.target(&resource.id))
        .is_some_and(|t| matches!(&t.decision, Decision::Remediate(r) if r == remediation))
}
