//! Plain-data view of a Cloud Run resource: what the planner reads and the client fills in.
//!
//! This module is the meeting point of the Cloud Run client (which produces
//! [`ObservedResource`]s from the Admin API) and the planner (which decides over them); it
//! knows neither HTTP nor Kubernetes.

use std::collections::BTreeMap;
use std::fmt;

pub use crate::api::ResourceKind;
use crate::policy::{DesiredPolicy, ObservedPolicy};

/// Identifies one Cloud Run resource. Orders by kind, project, location, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    /// Service, Job or WorkerPool.
    pub kind: ResourceKind,
    /// Project id or number, as the binding names it.
    pub project: String,
    /// Cloud Run region.
    pub location: String,
    /// Resource id (the last segment of its name).
    pub name: String,
}

impl ResourceId {
    /// The v2 resource name, `projects/{p}/locations/{l}/{services|jobs|workerPools}/{id}`.
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/{}/{}",
            self.project,
            self.location,
            self.kind.collection(),
            self.name
        )
    }
}

impl fmt::Display for ResourceId {
    /// `Service us-central1/checkout (project acme-prod)`: how people see a resource.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{} (project {})",
            self.kind, self.location, self.name, self.project
        )
    }
}

/// A resource's Cloud Run labels: a sorted, read-only list of key/value pairs kept in two
/// allocations — every key and value back to back in one string, and where each ends — a
/// third of the memory of one allocation per key and value, and a tenth of a `BTreeMap`'s
/// (a controller keeps one per listed resource).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels {
    /// Key, value, key, value, ... by key, unique keys.
    text: Box<str>,
    /// The end of each key and each value in `text`.
    ends: Box<[u32]>,
}

impl Labels {
    /// The value of `key`, if the resource carries it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Every (key, value) pair, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.ends.chunks_exact(2).scan(0usize, |start, ends| {
            let (k, v) = (ends[0] as usize, ends[1] as usize);
            let pair = (self.text.get(*start..k)?, self.text.get(k..v)?);
            *start = v;
            Some(pair)
        })
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// No labels at all.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// From pairs sorted by key with unique keys.
    fn from_sorted<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for (k, v) in pairs {
            for part in [k, v] {
                text.push_str(part);
                // Labels of a Cloud Run resource are a few hundred bytes; a text beyond
                // u32 is not a label set anyone can write, and is cut at the last label
                // that fits.
                let Ok(end) = u32::try_from(text.len()) else {
                    ends.truncate(ends.len() & !1);
                    return Self::of(text, ends);
                };
                ends.push(end);
            }
        }
        Self::of(text, ends)
    }

    fn of(mut text: String, ends: Vec<u32>) -> Self {
        text.truncate(ends.last().map_or(0, |&e| e as usize));
        Self {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for Labels {
    /// Later pairs win over earlier ones with the same key.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let map: BTreeMap<Box<str>, Box<str>> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::from_sorted(map.iter().map(|(k, v)| (&**k, &**v)))
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self::from_sorted(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// What the operator knows about one live Cloud Run resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedResource {
    /// Which resource.
    pub id: ResourceId,
    /// Its Cloud Run labels.
    pub labels: Labels,
    /// True for a resource listed with `showDeleted` that is being deleted; never matched.
    pub deleted: bool,
    /// The Binary Authorization setting it carries.
    pub policy: ObservedPolicy,
    /// The breakglass justification it carries, if any.
    pub breakglass: Option<String>,
    /// Cloud Run's message when its latest deploy was refused by Binary Authorization
    /// (condition reason `CONTAINER_IMAGE_UNAUTHORIZED` or
    /// `CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED`); it keeps serving the previous revision.
    pub deploy_blocked: Option<String>,
    /// Cloud Run's `lastModifier` and `updateTime`, kept only for a resource carrying a
    /// breakglass justification (who set it, and when, the first time it is seen).
    pub last_change: Option<Box<LastChange>>,
    /// What runs, and when the resource last changed: whether its policy is in effect.
    pub running: Running,
}

/// Who last changed a resource and when, as Cloud Run reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastChange {
    /// `lastModifier`: the principal of the last change, when Cloud Run says.
    pub by: Option<String>,
    /// `updateTime`, when Cloud Run says.
    pub at: Option<jiff::Timestamp>,
}

/// What a resource runs, as its own fields say (no extra read): the input of
/// [`crate::plan::effect`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Running {
    /// `updateTime`: the resource's last change, the latest moment its policy can have
    /// been set.
    pub changed: Option<jiff::Timestamp>,
    /// What runs.
    pub workload: Workload,
}

/// What runs of a resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Workload {
    /// Services and worker pools: the revisions receiving traffic (instances), by short
    /// name, sorted (`trafficStatuses` / `instanceSplitStatuses` with a percent above 0;
    /// an entry that follows the latest revision names `latestReadyRevision`).
    Revisions(Box<[Box<str>]>),
    /// Jobs: the creation time of the latest execution (`latestCreatedExecution`);
    /// `None` when the job never ran.
    Execution(Option<jiff::Timestamp>),
    /// Cloud Run did not say (no traffic statuses, or an unreadable time).
    #[default]
    Unknown,
}

/// What to do with a breakglass justification when writing the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakglassChange {
    /// Leave the justification exactly as it is.
    Keep,
    /// Remove it.
    Clear,
}

/// The one write the operator ever makes to a Cloud Run resource: set its Binary
/// Authorization policy (and possibly clear a breakglass justification). Nothing here can
/// disable Binary Authorization.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Remediation {
    /// The policy to set.
    pub desired: DesiredPolicy,
    /// What to do with a breakglass justification.
    pub breakglass: BreakglassChange,
}

impl Remediation {
    /// Whether a resource in this observed state already needs nothing from this write
    /// (used to re-decide after a concurrent change).
    pub fn is_satisfied_by(&self, resource: &ObservedResource) -> bool {
        self.desired.is_satisfied_by(&resource.policy)
            && (self.breakglass == BreakglassChange::Keep || resource.breakglass.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_looked_up_by_key_and_the_last_duplicate_wins() {
        let labels: Labels = [("tier", "critical"), ("env", "dev"), ("env", "prod")]
            .into_iter()
            .collect();
        assert_eq!(labels.get("env"), Some("prod"));
        assert_eq!(labels.get("tier"), Some("critical"));
        assert_eq!(labels.get("team"), None);
        assert_eq!(labels.len(), 2);
        assert_eq!(
            labels.iter().collect::<Vec<_>>(),
            [("env", "prod"), ("tier", "critical")]
        );
        let map: BTreeMap<String, String> = [
            ("tier".to_owned(), "critical".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]
        .into();
        assert_eq!(Labels::from(map), labels);
        assert!(Labels::default().is_empty());
        assert_eq!(
            format!("{labels:?}"),
            r#"{"env": "prod", "tier": "critical"}"#
        );
        let odd: Labels = [("a\0b", ""), ("", "x")].into_iter().collect();
        assert_eq!(odd.iter().collect::<Vec<_>>(), [("", "x"), ("a\0b", "")]);
        assert_eq!(odd.get("a\0b"), Some(""));
        assert_eq!(odd.get(""), Some("x"));
    }
}
