//! Which `BinAuthzException`s are honoured at a given moment, and which targets they except.
//!
//! Pure: the caller passes the time ([`Exceptions::assess`]) and the operator-wide maximum.
//!
//! # Rules
//! - An exception is **Active** from its creation until `spec.expiresAt` (exclusive), when
//!   its spec is valid and `expiresAt` is at most the maximum after its creation (after
//!   `now` for an exception not created yet, as `check` reads files). Otherwise it is
//!   **Refused** (invalid, or longer than allowed: never honoured, not even in part) or
//!   **Expired**.
//! - An active exception covers a resource when project, kind and location (or `*`) are its
//!   own and a name or glob matches. It applies to the bindings of **its namespace** only.
//! - A covered target that an owner would write (Enforce) or report drifted (Audit) is
//!   [`Decision::Excepted`](super::Decision::Excepted) instead: reported, counted, never
//!   written. A compliant or breakglass target stays what it is; ownership (Superseded,
//!   Conflicted) is decided first and is unchanged.
//! - Several active exceptions covering one target: the one lasting longest is reported
//!   (the target is excepted until then), ties by name.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::{BinAuthzExceptionSpec, ExceptionState, ValidationErrors};
use crate::matching::NameSet;
use crate::resource::{ResourceId, ResourceKind};

/// The longest exception the operator honours when not configured
/// (`--exception-max-duration`): 30 days.
pub const DEFAULT_EXCEPTION_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// Identifies an exception: namespace and name. Orders by namespace, then name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExceptionKey {
    /// Kubernetes namespace (the bindings it applies to live there).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for ExceptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One exception handed to [`Exceptions::assess`].
#[derive(Clone, Debug)]
pub struct ExceptionInput<'s> {
    /// Its namespace/name.
    pub key: ExceptionKey,
    /// Its spec, valid or not.
    pub spec: &'s BinAuthzExceptionSpec,
    /// `metadata.creationTimestamp`; `None` for an exception not created yet (a file).
    pub created: Option<Timestamp>,
}

/// Whether an exception is honoured at a moment, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Honoured until this time.
    Active {
        /// `spec.expiresAt`.
        until: Timestamp,
    },
    /// Its time is over.
    Expired {
        /// `spec.expiresAt`.
        at: Timestamp,
    },
    /// Never honoured.
    Refused(ExceptionRefusal),
}

/// Why an exception is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExceptionRefusal {
    /// The spec breaks a CRD rule.
    Invalid(ValidationErrors),
    /// `expiresAt` lies further after the creation than the operator allows.
    TooLong {
        /// How long it asks for, from its creation.
        asked: Duration,
        /// The operator's maximum.
        max: Duration,
    },
}

impl Standing {
    /// How the status names it.
    pub fn state(&self) -> ExceptionState {
        match self {
            Self::Active { .. } => ExceptionState::Active,
            Self::Expired { .. } => ExceptionState::Expired,
            Self::Refused(_) => ExceptionState::Refused,
        }
    }

    /// For people: until when it is honoured, or why not and what to do.
    pub fn message(&self) -> String {
        match self {
            Self::Active { until } => format!(
                "honoured until {until}: the named resources are reported Excepted and not remediated"
            ),
            Self::Expired { at } => format!(
                "expired at {at}: the bindings of this namespace enforce their policy on the named resources; delete this exception"
            ),
            Self::Refused(ExceptionRefusal::Invalid(errors)) => {
                format!("refused, never honoured: {errors}; fix the spec")
            }
            Self::Refused(ExceptionRefusal::TooLong { asked, max }) => format!(
                "refused, never honoured: expiresAt is {} after the exception's creation, more than the {} the operator allows (--exception-max-duration); create an exception with an earlier expiresAt",
                human(*asked),
                human(*max)
            ),
        }
    }
}

/// `30d`, `36h`, `3h17m`, `45s`: a duration for people, to the second, largest unit first
/// (days only for whole days).
pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 86_400 && secs.is_multiple_of(86_400) {
        return format!("{}d", secs / 86_400);
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600), ("m", 60), ("s", 1)] {
        let n = (secs / size) % if size == 3_600 { u64::MAX } else { 60 };
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Assesses one exception at `now` with the operator's maximum `max`.
pub fn exception_standing(
    spec: &BinAuthzExceptionSpec,
    created: Option<Timestamp>,
    now: Timestamp,
    max: Duration,
) -> Standing {
    if let Err(errors) = spec.validate() {
        return Standing::Refused(ExceptionRefusal::Invalid(errors));
    }
    let Some(until) = spec.expiry() else {
        // `validate` refuses an unparsable expiresAt; kept total anyway.
        return Standing::Refused(ExceptionRefusal::Invalid(ValidationErrors(Vec::new())));
    };
    let from = created.unwrap_or(now);
    let asked = until.duration_since(from);
    if asked > SignedDuration::try_from(max).unwrap_or(SignedDuration::MAX) {
        return Standing::Refused(ExceptionRefusal::TooLong {
            asked: Duration::try_from(asked).unwrap_or(Duration::MAX),
            max,
        });
    }
    if now >= until {
        Standing::Expired { at: until }
    } else {
        Standing::Active { until }
    }
}

/// What an excepted target reports: which exception, why, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excepting {
    /// The exception.
    pub key: ExceptionKey,
    /// Its `spec.reason`.
    pub reason: String,
    /// Its `spec.expiresAt`.
    pub until: Timestamp,
}

/// An active exception, compiled for matching.
#[derive(Clone, Debug)]
struct ActiveException {
    project: String,
    location: String,
    kind: ResourceKind,
    names: NameSet,
    excepting: Arc<Excepting>,
}

impl ActiveException {
    fn covers(&self, id: &ResourceId) -> bool {
        self.project == id.project
            && self.kind == id.kind
            && (self.location == "*" || self.location == id.location)
            && self.names.matches(&id.name)
    }
}

/// Every exception assessed at one moment: the standings, and the active ones for the
/// planner.
#[derive(Clone, Debug, Default)]
pub struct Exceptions {
    /// Sorted by key.
    standings: Vec<(ExceptionKey, Standing)>,
    /// Sorted by key.
    active: Vec<ActiveException>,
}

impl Exceptions {
    /// No exception at all (what planning without exceptions means).
    pub fn none() -> Self {
        Self::default()
    }

    /// Assesses every exception at `now` (see the module docs).
    pub fn assess(inputs: &[ExceptionInput<'_>], now: Timestamp, max: Duration) -> Self {
        let mut standings = Vec::with_capacity(inputs.len());
        let mut active = Vec::new();
        for input in inputs {
            let standing = exception_standing(input.spec, input.created, now, max);
            if let Standing::Active { until } = standing {
                active.push(ActiveException {
                    project: input.spec.project.clone(),
                    location: input.spec.location.clone(),
                    kind: input.spec.kind,
                    names: NameSet::new(&input.spec.names),
                    excepting: Arc::new(Excepting {
                        key: input.key.clone(),
                        reason: input.spec.reason.clone(),
                        until,
                    }),
                });
            }
            standings.push((input.key.clone(), standing));
        }
        standings.sort_by(|a, b| a.0.cmp(&b.0));
        active.sort_by(|a, b| a.excepting.key.cmp(&b.excepting.key));
        Self { standings, active }
    }

    /// The active exception of `namespace` covering `id` that lasts longest (ties by name).
    pub fn covering(&self, namespace: &str, id: &ResourceId) -> Option<&Arc<Excepting>> {
        self.active
            .iter()
            .filter(|a| a.excepting.key.namespace == namespace && a.covers(id))
            .max_by(|a, b| {
                a.excepting
                    .until
                    .cmp(&b.excepting.until)
                    .then_with(|| b.excepting.key.cmp(&a.excepting.key))
            })
            .map(|a| &a.excepting)
    }

    /// The earliest expiry among the active exceptions of `namespace` for `project`: when a
    /// binding of that namespace must be planned again.
    pub fn next_expiry(&self, namespace: &str, project: &str) -> Option<Timestamp> {
        self.active
            .iter()
            .filter(|a| a.excepting.key.namespace == namespace && a.project == project)
            .map(|a| a.excepting.until)
            .min()
    }

    /// Every exception's standing, by key.
    pub fn standings(&self) -> &[(ExceptionKey, Standing)] {
        &self.standings
    }

    /// The standing of one exception.
    pub fn standing(&self, key: &ExceptionKey) -> Option<&Standing> {
        self.standings
            .binary_search_by(|(k, _)| k.cmp(key))
            .ok()
            .map(|i| &self.standings[i].1)
    }

    /// Whether no exception is active.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }
}
