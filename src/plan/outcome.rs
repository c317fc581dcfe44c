//! What the caller reports back to the planner after a pass: pass-level failures and
//! findings, and what became of each write.

use crate::api::{FailureReason, OrgPolicyStatus, PolicyCheck, UnreadLocation};

/// A failure that spoiled the whole pass of a binding (reported by the caller): nothing
/// was read, or nothing may be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassFailure {
    /// What went wrong.
    pub reason: FailureReason,
    /// Google's answer and what to do (complete: the status shows it as it is).
    pub message: String,
}

/// What a pass learnt besides the resources: the regions it could not read (the others
/// were planned), and the checks made before writing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassFindings {
    /// Regions that could not be read, in location order.
    pub unread: Vec<UnreadLocation>,
    /// The named policy's check (absent for `useDefault`).
    pub policy_check: Option<PolicyCheck>,
    /// The project's organization policy constraint.
    pub org_policy: Option<OrgPolicyStatus>,
}

/// What became of one remediation write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written and confirmed.
    Succeeded,
    /// Not finished (operation still running, retry scheduled, not attempted yet, or
    /// withdrawn because another binding took the resource over).
    Pending,
    /// The resource disappeared before it could be written; it is dropped from the status.
    Gone,
    /// The write failed for good in this pass.
    Failed(WriteFailure),
}

/// A failed write: why, and Cloud Run's words with what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFailure {
    /// What went wrong.
    pub reason: FailureReason,
    /// Details for people.
    pub message: String,
}
