//! Outcomes the metrics count by: each enum is the bounded set of values of one label.

/// How a pass ended, as the `result` label of `binauthz_passes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PassResult {
    /// Cloud Run was read (and written) and the status computed; the binding may still
    /// be non-compliant (see its conditions).
    Completed,
    /// The pass failed (Cloud Run unavailable or refused, or the Kubernetes API failed);
    /// it is retried with backoff.
    Failed,
    /// Suspended or invalid binding: no Cloud Run calls.
    Skipped,
    /// This replica is a standby: nothing read, nothing written.
    Standby,
}

impl PassResult {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Standby => "standby",
        }
    }
}

/// What became of one remediation, as the `result` label of
/// `binauthz_remediations_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemediationResult {
    /// Written and confirmed.
    Succeeded,
    /// Written, the operation still running (verified next pass).
    Pending,
    /// Refused or failed after retries.
    Failed,
    /// Not needed any more after a re-read (someone else fixed it), or the resource is gone.
    Skipped,
}

impl RemediationResult {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// Why a drift event (an audit log message) led to no re-check, as the `reason` label of
/// `binauthz_drift_events_ignored_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriftIgnored {
    /// Not base64, not JSON, or a LogEntry lacking a field the handler needs.
    Unparsable,
    /// A method that is not a watched Cloud Run write (a delete, a read, another service).
    NotAWrite,
    /// The call failed (`protoPayload.status.code` is not 0): nothing changed.
    FailedCall,
    /// The operator's own write (its user agent, or an ignored principal).
    OwnWrite,
    /// No binding covers the resource's project, region and kind (no Cloud Run call).
    Uncovered,
    /// A redelivery of a message already handled, or the second entry of one operation.
    Duplicate,
    /// Arrived while a re-check of the resource was in flight and another was already
    /// queued: that one covers it.
    Coalesced,
    /// With `--shards`: another replica holds the shard of the resource's project; the
    /// message goes back to Pub/Sub unacknowledged, which delivers it again (to the
    /// holder, in the end).
    OtherShard,
}

impl DriftIgnored {
    /// Every reason, for docs and tests.
    pub const ALL: [Self; 8] = [
        Self::Unparsable,
        Self::NotAWrite,
        Self::FailedCall,
        Self::OwnWrite,
        Self::Uncovered,
        Self::Duplicate,
        Self::Coalesced,
        Self::OtherShard,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unparsable => "unparsable",
            Self::NotAWrite => "not_a_write",
            Self::FailedCall => "failed_call",
            Self::OwnWrite => "own_write",
            Self::Uncovered => "uncovered",
            Self::Duplicate => "duplicate",
            Self::Coalesced => "coalesced",
            Self::OtherShard => "other_shard",
        }
    }
}

/// What a drift re-check of one resource ended with, as the `result` label of
/// `binauthz_drift_events_handled_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriftHandled {
    /// The resource drifted and was written (operation finished or still running).
    Fixed,
    /// Read and planned: nothing to write (it complies, is not owned, Audit mode,
    /// breakglass, or the user changed it back).
    NoWrite,
    /// The resource is gone.
    Gone,
    /// The read or the write failed, or the write is refused (policy missing, organization
    /// policy); the periodic pass retries and reports it.
    Failed,
}

impl DriftHandled {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::NoWrite => "no_write",
            Self::Gone => "gone",
            Self::Failed => "failed",
        }
    }
}

/// Which Pub/Sub call failed, as the `call` label of
/// `binauthz_drift_subscription_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionCall {
    /// `:pull`.
    Pull,
    /// `:acknowledge`.
    Acknowledge,
    /// `:modifyAckDeadline` to 0 (handing a message back for redelivery).
    Nack,
}

impl SubscriptionCall {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Acknowledge => "acknowledge",
            Self::Nack => "nack",
        }
    }
}

/// What happened to one PolicyReport (`binauthz_policy_report_writes_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyReportWrite {
    /// Created or replaced because its content changed.
    Written,
    /// Deleted: its binding is gone, or it has fewer pages now.
    Deleted,
    /// The Kubernetes API refused or failed the write.
    Failed,
}

impl PolicyReportWrite {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Written => "written",
            Self::Deleted => "deleted",
            Self::Failed => "failed",
        }
    }
}
