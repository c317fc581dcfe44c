//! What was last reported about each target, to date transitions and tell them apart from
//! steady states.

use jiff::Timestamp;

use crate::api::{BinAuthzBindingStatus, EffectBasis, ResourceKind, TargetState};
use crate::resource::ResourceId;

/// Identifies a target within one binding (whose project is fixed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    /// Service, Job or WorkerPool.
    pub kind: ResourceKind,
    /// Cloud Run region.
    pub location: String,
    /// Resource name.
    pub name: String,
}

impl From<&ResourceId> for TargetKey {
    fn from(id: &ResourceId) -> Self {
        Self {
            kind: id.kind,
            location: id.location.clone(),
            name: id.name.clone(),
        }
    }
}

/// A [`TargetKey`] as a history keeps it: location and name in one allocation (a
/// controller keeps a record of every target of every binding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StoredKey {
    kind: ResourceKind,
    /// The location, then the name.
    text: Box<str>,
    /// Where the location ends in `text`.
    split: usize,
}

impl StoredKey {
    fn new(kind: ResourceKind, location: &str, name: &str) -> Self {
        let mut text = String::with_capacity(location.len() + name.len());
        text.push_str(location);
        text.push_str(name);
        Self {
            kind,
            text: text.into_boxed_str(),
            split: location.len(),
        }
    }

    fn location(&self) -> &str {
        self.text.get(..self.split).unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.text.get(self.split..).unwrap_or_default()
    }

    fn cmp_with(&self, kind: ResourceKind, location: &str, name: &str) -> std::cmp::Ordering {
        (self.kind, self.location(), self.name()).cmp(&(kind, location, name))
    }
}

impl From<&ResourceId> for StoredKey {
    fn from(id: &ResourceId) -> Self {
        Self::new(id.kind, &id.location, &id.name)
    }
}

impl Ord for StoredKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.cmp_with(other.kind, other.location(), other.name())
    }
}

impl PartialOrd for StoredKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What was last reported about one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetRecord {
    /// Its state.
    pub state: TargetState,
    /// Whether its latest deploy was blocked.
    pub deploy_blocked: bool,
    /// Since when it has been in `state`.
    pub since: Timestamp,
    /// When the operator's remediation set its policy (kept while it complies).
    pub policy_set: Option<Timestamp>,
}

/// The previous state of a binding's targets, for `lastTransitionTime` and for telling
/// transitions (events) apart from steady states.
///
/// Built from the previous status ([`TargetHistory::from_status`], which lists at most 100
/// targets) or kept in memory from the last [`StatusReport::history`] (complete).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetHistory(
    /// Sorted by key, unique keys.
    pub(super) Vec<(StoredKey, TargetRecord)>,
);

impl TargetHistory {
    /// The targets listed in a status (entries without a parsable `lastTransitionTime` are
    /// skipped).
    pub fn from_status(status: &BinAuthzBindingStatus) -> Self {
        let mut records: Vec<(StoredKey, TargetRecord)> = status
            .targets
            .iter()
            .filter_map(|t| {
                let since = t.last_transition_time.as_deref()?.parse().ok()?;
                let key = StoredKey::new(t.kind, &t.location, &t.name);
                let policy_set = t
                    .effect
                    .as_ref()
                    .filter(|e| e.basis == EffectBasis::Remediation)
                    .and_then(|e| e.policy_set_time.as_deref()?.parse().ok());
                let record = TargetRecord {
                    state: t.state,
                    deploy_blocked: t.deploy_blocked,
                    since,
                    policy_set,
                };
                Some((key, record))
            })
            .collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        records.dedup_by(|later, earlier| later.0 == earlier.0);
        Self(records)
    }

    /// The record of one target.
    pub fn get(&self, key: &TargetKey) -> Option<&TargetRecord> {
        self.lookup(key.kind, &key.location, &key.name)
    }

    fn lookup(&self, kind: ResourceKind, location: &str, name: &str) -> Option<&TargetRecord> {
        self.0
            .binary_search_by(|(k, _)| k.cmp_with(kind, location, name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// How many targets are recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Looks up records for keys asked in ascending order, in one linear walk.
pub(super) struct HistoryWalk<'h> {
    pub(super) rest: &'h [(StoredKey, TargetRecord)],
}

impl<'h> HistoryWalk<'h> {
    pub(super) fn seek(
        &mut self,
        kind: ResourceKind,
        location: &str,
        name: &str,
    ) -> Option<&'h TargetRecord> {
        use std::cmp::Ordering::{Equal, Less};
        while let Some(((key, record), tail)) = self.rest.split_first() {
            match key.cmp_with(kind, location, name) {
                Less => self.rest = tail,
                Equal => return Some(record),
                _ => return None,
            }
        }
        None
    }
}
