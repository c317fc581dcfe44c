//! Who set each breakglass justification and since when, remembered across passes, and
//! which ones have been in place too long.
//!
//! Pure: the caller passes the time and keeps the ledger between passes.
//!
//! # Rules
//! - A justification seen for the first time (or changed) is attributed to Cloud Run's
//!   `lastModifier` and dated by its `updateTime` — the change that set it, as far as the
//!   resource says; without them, to nobody, since now. A principal known better (a drift
//!   event's audit entry) is passed in `principals` and wins.
//! - While the same justification stays, its owner and date stay, whatever else changes on
//!   the resource (a later deploy bumps `updateTime` but did not set the justification).
//! - A justification is overdue once it is `max_age` old; it is reported overdue once, in
//!   the pass that first sees it so.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;

use crate::api::{BinAuthzBindingStatus, TargetState};
use crate::resource::{ObservedResource, ResourceId};

/// Who set one justification, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakglassOwner {
    /// The justification (`None` when restored from a status, which does not repeat it:
    /// the next pass takes the one it sees).
    pub justification: Option<String>,
    /// The principal that set it, when known.
    pub by: Option<String>,
    /// When it was set (or first seen).
    pub since: Timestamp,
    /// Whether it was reported overdue already.
    pub overdue_reported: bool,
}

impl BreakglassOwner {
    /// How long it has been in place at `now`.
    pub fn age(&self, now: Timestamp) -> Duration {
        Duration::try_from(now.duration_since(self.since)).unwrap_or(Duration::ZERO)
    }
}

/// The breakglass justifications of one binding's targets, by resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BreakglassLedger(BTreeMap<ResourceId, BreakglassOwner>);

/// What [`BreakglassLedger::update`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakglassUpdate {
    /// The ledger to keep for the next pass.
    pub ledger: BreakglassLedger,
    /// Resources whose justification became overdue in this pass.
    pub newly_overdue: Vec<ResourceId>,
}

impl BreakglassLedger {
    /// The ledger after a pass over `resources` (those reported under breakglass).
    pub fn update<'r>(
        &self,
        resources: impl IntoIterator<Item = &'r ObservedResource>,
        principals: &HashMap<ResourceId, String>,
        now: Timestamp,
        max_age: Option<Duration>,
    ) -> BreakglassUpdate {
        let mut ledger = BTreeMap::new();
        let mut newly_overdue = Vec::new();
        for resource in resources {
            let Some(justification) = resource.breakglass.as_deref() else {
                continue;
            };
            let mut owner = match self.0.get(&resource.id) {
                Some(known)
                    if known
                        .justification
                        .as_deref()
                        .is_none_or(|j| j == justification) =>
                {
                    BreakglassOwner {
                        justification: Some(justification.to_owned()),
                        ..known.clone()
                    }
                }
                _ => {
                    let change = resource.last_change.as_deref();
                    BreakglassOwner {
                        justification: Some(justification.to_owned()),
                        by: principals
                            .get(&resource.id)
                            .cloned()
                            .or_else(|| change.and_then(|c| c.by.clone())),
                        since: change
                            .and_then(|c| c.at)
                            .filter(|t| *t <= now)
                            .unwrap_or(now),
                        overdue_reported: false,
                    }
                }
            };
            if max_age.is_some_and(|max| owner.age(now) >= max) && !owner.overdue_reported {
                owner.overdue_reported = true;
                newly_overdue.push(resource.id.clone());
            }
            ledger.insert(resource.id.clone(), owner);
        }
        BreakglassUpdate {
            ledger: Self(ledger),
            newly_overdue,
        }
    }

    /// What a binding's status says of its breakglass targets (a new leader starts from it);
    /// `max_age` marks those already overdue as reported.
    pub fn from_status(
        status: &BinAuthzBindingStatus,
        project: &str,
        now: Timestamp,
        max_age: Option<Duration>,
    ) -> Self {
        let entries = status
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Breakglass)
            .filter_map(|t| {
                let since: Timestamp = t.breakglass_since.as_deref()?.parse().ok()?;
                let owner = BreakglassOwner {
                    justification: None,
                    by: t.breakglass_by.clone(),
                    since,
                    overdue_reported: false,
                };
                let overdue = max_age.is_some_and(|max| owner.age(now) >= max);
                let id = ResourceId {
                    kind: t.kind,
                    project: project.to_owned(),
                    location: t.location.clone(),
                    name: t.name.clone(),
                };
                Some((
                    id,
                    BreakglassOwner {
                        overdue_reported: overdue,
                        ..owner
                    },
                ))
            })
            .collect();
        Self(entries)
    }

    /// The owner of one resource's justification.
    pub fn get(&self, id: &ResourceId) -> Option<&BreakglassOwner> {
        self.0.get(id)
    }

    /// The oldest justification's age (zero when none).
    pub fn max_age(&self, now: Timestamp) -> Duration {
        self.0
            .values()
            .map(|o| o.age(now))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Whether no justification is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
