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
//! 5. [`effect`] says whether a complying target's policy is in effect for what it runs
//!    (the caller reads the revision times [`revisions_to_read`] names; see `effect.rs`).
//! 6. [`coverage`] lists the resources of a project no binding matches.
//!
//! # Rules (docs/planner.md)
//! - **Matching** is [`crate::matching`]. Deleted resources never match.
//! - **Who takes part in ownership**: bindings whose spec is valid, that the tenancy
//!   grants permit ([`tenancy`]; a refused binding is [`Activity::NotPermitted`]: it
//!   neither owns, supersedes nor conflicts, and makes no Cloud Run call), and that are not
//!   suspended.
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
//! - **Exceptions** ([`plan_with_exceptions`], rules in `exceptions.rs`): an owner's
//!   `Remediate` or `Drifted` on a resource an active `BinAuthzException` of the binding's
//!   namespace covers becomes [`Decision::Excepted`]: reported and counted, never written.
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

mod binding;
mod breakglass;
mod conditions;
mod coverage;
mod decide;
mod effect;
mod exceptions;
mod history;
mod messages;
mod outcome;
mod ownership;
mod status;
pub mod tenancy;

pub use crate::api::FailureReason;
pub use binding::{ActiveBinding, Activity, BindingInput, BindingKey, PlanError};
pub use breakglass::{BreakglassLedger, BreakglassOwner, BreakglassUpdate};
pub use conditions::{
    condition, standing, ConditionStatus, ConditionType, ReadyReason, REMEDIATION_IN_PROGRESS,
};
pub use coverage::{coverage, ProjectCoverage, Uncovered, UNCOVERED_NAMES};
pub use decide::{Decision, PlannedTarget};
pub use effect::{
    effect, revision_name, revisions_to_read, PolicySet, RevisionTime, RevisionTimes,
};
pub(crate) use exceptions::human as human_duration;
pub use exceptions::{
    exception_standing, Excepting, ExceptionInput, ExceptionKey, ExceptionRefusal, Exceptions,
    Standing, DEFAULT_EXCEPTION_MAX,
};
pub use history::{TargetHistory, TargetKey, TargetRecord};
pub use outcome::{PassFailure, PassFindings, WriteFailure, WriteOutcome};
pub use ownership::{affected_bindings, plan, plan_with_exceptions, BindingPlan, Plan, Write};
pub use status::{StatusInput, StatusReport, TargetTransition};
pub use tenancy::{Grant, Grants, Namespace, Permission, Refusal};

#[cfg(test)]
mod tests;
