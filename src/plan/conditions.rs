//! The conditions a binding's status carries (Ready, Reconciling, Stalled), their reasons,
//! and how they are built from a pass.
//!
//! # What kstatus (Flux) and Argo CD read from them
//! Flux's health checks compute a binding's health with kstatus
//! (`sigs.k8s.io/cli-utils/pkg/kstatus/status`): `observedGeneration` behind
//! `metadata.generation` is InProgress; otherwise the first of `Reconciling=True`
//! (InProgress) and `Stalled=True` (Failed) decides; otherwise `Ready` does (True: Current,
//! False or Unknown: InProgress); with none of them the object is Current. So:
//! - a binding that needs a person (see [`ReadyReason::is_stalled_in`]) carries
//!   `Stalled=True` and reads Failed, never InProgress for ever;
//! - a suspended binding carries **no `Ready` condition** and reads Current: kstatus reads
//!   `Ready=Unknown` as InProgress, which held Flux's `wait` until its timeout, and
//!   `Ready=True` would tell people and dashboards that the binding's targets comply when
//!   nobody checks them. (A deviation from the product design's "Ready Unknown/Suspended",
//!   for this reason; `Reconciling` and `Stalled` carry the reason `Suspended`, and
//!   `Reconciling` the message.)
//! - `Reconciling` comes before `Stalled` in the list, so a pass with remediations in
//!   flight reads InProgress even when some target needs a person;
//! - a binding the operator has not written yet reads InProgress thanks to the CRD's
//!   default status (`crate::api::UNOBSERVED_GENERATION`).
//!
//! Argo CD's health check (deploy/argocd/) answers the same for every state; the README's
//! "Flux health checks" table lists them, tests/e2e/flux_health.rs checks both over
//! bindings the controller wrote.

use std::fmt;

use super::messages::bounded;
use super::status::StatusInput;
use crate::api::{Condition, FailureReason, Mode};

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
    /// No tenancy grant (`BinAuthzTenancy`) allows the binding: nothing is done for it.
    NotPermitted,
    /// `spec.suspend` is true (no Ready condition: see the module's documentation).
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
            Self::NotPermitted => "NotPermitted",
            Self::Suspended => "Suspended",
        }
    }

    /// The Ready condition's status with this reason (Unknown for Suspended, which writes
    /// no Ready condition: see the module's documentation).
    pub fn ready_status(self) -> ConditionStatus {
        match self {
            Self::Compliant => ConditionStatus::True,
            Self::Suspended => ConditionStatus::Unknown,
            _ => ConditionStatus::False,
        }
    }

    /// Whether a binding with this reason is written with a Ready condition: every reason
    /// but Suspended.
    pub fn writes_ready(self) -> bool {
        self != Self::Suspended
    }

    /// Whether nothing will change without a human, whatever the mode.
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
                | Self::NotPermitted
        )
    }

    /// Whether nothing will change without a human for a binding in `mode` (Stalled True):
    /// [`ReadyReason::is_stalled`], and drift in Audit mode, which the operator reports and
    /// never fixes (a person fixes the resources or switches to Enforce).
    pub fn is_stalled_in(self, mode: Mode) -> bool {
        self.is_stalled() || (self == Self::Drifted && mode == Mode::Audit)
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

/// The condition of `conditions` with type `type_`.
pub fn condition(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// The condition that says where a binding stands: Ready, or — a suspended binding has no
/// Ready (kstatus would read one it cannot trust as in progress for ever) — Reconciling,
/// whose reason and message say why.
pub fn standing(conditions: &[Condition]) -> Option<&Condition> {
    condition(conditions, ConditionType::Ready)
        .or_else(|| condition(conditions, ConditionType::Reconciling))
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

/// What a pass concluded, as the conditions say it.
pub(super) struct Verdict<'m> {
    /// The Ready reason.
    pub(super) reason: ReadyReason,
    /// Its message for people.
    pub(super) message: &'m str,
    /// Remediations in flight.
    pub(super) pending: usize,
    /// Nothing changes without a person ([`ReadyReason::is_stalled_in`]).
    pub(super) stalled: bool,
}

/// Ready (unless suspended), Reconciling and Stalled, in that order.
pub(super) fn conditions(
    input: &StatusInput<'_>,
    now: &str,
    verdict: &Verdict<'_>,
) -> Vec<Condition> {
    let &Verdict {
        reason,
        message,
        pending,
        stalled,
    } = verdict;
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
    } else if !reason.writes_ready() {
        // Without Ready, Reconciling is the first condition and says why.
        condition(
            ConditionType::Reconciling,
            ConditionStatus::False,
            reason.as_str(),
            message,
        )
    } else {
        condition(
            ConditionType::Reconciling,
            ConditionStatus::False,
            reason.as_str(),
            "no remediation in flight",
        )
    };
    let stalled = if stalled {
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
    let ready = reason.writes_ready().then(|| {
        condition(
            ConditionType::Ready,
            reason.ready_status(),
            reason.as_str(),
            message,
        )
    });
    ready.into_iter().chain([reconciling, stalled]).collect()
}
