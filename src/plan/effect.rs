//! Enabled versus effective: whether a target's policy is in effect for what runs.
//!
//! Binary Authorization checks a deploy (services and worker pools: each new revision;
//! jobs: each execution) and is not retroactive. A resource that carries its policy is
//! *effective* when everything it runs was created after the policy was set:
//! - services and worker pools: every revision receiving traffic (instances);
//! - jobs: the latest execution (a job that never ran is effective: its first run is
//!   checked).
//!
//! When the policy was set:
//! - [`PolicySet::ByOperator`]: the operator's own remediation wrote it; the time is exact
//!   ([`EffectBasis::Remediation`]).
//! - [`PolicySet::NoLaterThan`]: someone else set it; Cloud Run keeps no record of when a
//!   field changed, so the resource's `updateTime` (its last change) is the latest moment it
//!   can have been set ([`EffectBasis::UpdateTime`]). What was created before that is not
//!   known to have been checked and counts as not effective: a security team wants proof.
//!
//! Pure: the caller reads the creation times of the revisions [`revisions_to_read`] names
//! (jobs need no read: the job carries its latest execution) and passes them in
//! [`RevisionTimes`].

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::api::{EffectBasis, EffectState, ResourceKind, TargetEffect};
use crate::resource::{ObservedResource, ResourceId, Workload};

/// When a target's policy was set, as far as the operator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicySet {
    /// The operator's remediation set it at this time.
    ByOperator(Timestamp),
    /// The operator's remediation set it at this time, after the resource was read:
    /// everything it runs was created before (no revision needs reading).
    JustWritten(Timestamp),
    /// Someone else set it, at the latest at this time (the resource's `updateTime`).
    NoLaterThan(Timestamp),
    /// Someone else set it and the resource says no `updateTime`.
    Unknown,
}

impl PolicySet {
    /// The basis and time of this knowledge.
    fn basis(self) -> (EffectBasis, Option<Timestamp>) {
        match self {
            Self::ByOperator(t) | Self::JustWritten(t) => (EffectBasis::Remediation, Some(t)),
            Self::NoLaterThan(t) => (EffectBasis::UpdateTime, Some(t)),
            Self::Unknown => (EffectBasis::UpdateTime, None),
        }
    }

    /// How the operator knows, for messages.
    fn words(self) -> String {
        match self {
            Self::ByOperator(t) | Self::JustWritten(t) => {
                format!("the operator set the policy at {}", time(t))
            }
            Self::NoLaterThan(t) => format!(
                "the policy was set at the latest at the resource's last change ({}; Cloud Run keeps no record of when it was set)",
                time(t)
            ),
            Self::Unknown => "Cloud Run says neither when the policy was set nor when the resource last changed".to_owned(),
        }
    }
}

/// What reading a revision said: its creation time, or why it is unknown.
pub type RevisionTime = Result<Timestamp, String>;

/// Creation times of revisions, by full revision name
/// (`projects/{p}/locations/{l}/{services|workerPools}/{id}/revisions/{r}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionTimes(pub BTreeMap<String, RevisionTime>);

impl RevisionTimes {
    /// The time of revision `revision` (short name) of resource `id`, if read.
    pub fn get(&self, id: &ResourceId, revision: &str) -> Option<&RevisionTime> {
        self.0.get(&revision_name(id, revision))
    }
}

/// `projects/{p}/locations/{l}/{services|workerPools}/{id}/revisions/{r}`.
pub fn revision_name(id: &ResourceId, revision: &str) -> String {
    format!("{}/revisions/{revision}", id.resource_name())
}

/// The revisions whose creation time [`effect`] needs for `resource` (full names): the
/// ones receiving traffic or instances, for services and worker pools. None for jobs.
pub fn revisions_to_read(resource: &ObservedResource) -> Vec<String> {
    match (&resource.id.kind, &resource.running.workload) {
        (ResourceKind::Service | ResourceKind::WorkerPool, Workload::Revisions(names)) => names
            .iter()
            .map(|r| revision_name(&resource.id, r))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether `resource`'s policy (set as `set` says) is in effect for what it runs.
pub fn effect(
    resource: &ObservedResource,
    set: PolicySet,
    revisions: &RevisionTimes,
) -> TargetEffect {
    let (basis, set_at) = set.basis();
    let done = |state, message: String| TargetEffect {
        state,
        basis,
        policy_set_time: set_at.map(time),
        // Within the CRD's maxLength, however many revisions share the traffic.
        message: super::messages::bounded(message),
    };
    let next = match resource.id.kind {
        ResourceKind::Job => "the job's next run (execution) is checked and makes it effective",
        ResourceKind::Service => {
            "the next deploy makes it effective (the operator never redeploys)"
        }
        ResourceKind::WorkerPool => {
            "the next deploy makes it effective (the operator never redeploys)"
        }
    };
    match &resource.running.workload {
        Workload::Unknown => done(
            EffectState::Unknown,
            format!(
                "Cloud Run does not say what {} runs",
                noun(resource.id.kind)
            ),
        ),
        Workload::Execution(None) => done(
            EffectState::Effective,
            "the job has not run yet: its first execution is checked".to_owned(),
        ),
        Workload::Execution(Some(created)) => match set_at {
            Some(at) if *created >= at => done(
                EffectState::Effective,
                format!(
                    "the latest execution was created at {}, after the policy was set",
                    time(*created)
                ),
            ),
            _ => done(
                EffectState::NotEffective,
                format!(
                    "the latest execution was created at {}, and {}: {next}",
                    time(*created),
                    set.words()
                ),
            ),
        },
        Workload::Revisions(names) if names.is_empty() => done(
            EffectState::Effective,
            "no revision receives traffic: the next one is checked".to_owned(),
        ),
        Workload::Revisions(names) => {
            let mut older = Vec::new();
            let mut unread = Vec::new();
            for name in names.iter() {
                match revisions.get(&resource.id, name) {
                    Some(Ok(created)) => {
                        if set_at.is_none_or(|at| *created < at) {
                            older.push(format!("{name} (created {})", time(*created)));
                        }
                    }
                    _ if matches!(set, PolicySet::JustWritten(_)) => {
                        older.push(format!("{name} (created before the write)"));
                    }
                    Some(Err(why)) => unread.push(format!("{name}: {why}")),
                    None => unread.push(format!("{name}: not read")),
                }
            }
            if !older.is_empty() {
                done(
                    EffectState::NotEffective,
                    format!(
                        "{} {} {}, and {}: {next}",
                        if older.len() == 1 {
                            "revision"
                        } else {
                            "revisions"
                        },
                        older.join(", "),
                        if older.len() == 1 {
                            "receives traffic"
                        } else {
                            "receive traffic"
                        },
                        set.words()
                    ),
                )
            } else if !unread.is_empty() {
                done(
                    EffectState::Unknown,
                    format!(
                        "cannot tell when revisions were created: {}",
                        unread.join("; ")
                    ),
                )
            } else {
                done(
                    EffectState::Effective,
                    format!(
                        "every revision receiving traffic ({}) was created after the policy was set",
                        names.join(", ")
                    ),
                )
            }
        }
    }
}

fn noun(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Service => "the service",
        ResourceKind::Job => "the job",
        ResourceKind::WorkerPool => "the worker pool",
    }
}

/// RFC 3339 with second precision.
fn time(t: Timestamp) -> String {
    super::status::format_time(t)
}
