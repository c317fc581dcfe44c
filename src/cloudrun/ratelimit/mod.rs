//! Client-side throttling: read and write budgets per (project, region) that adapt to the
//! quota Cloud Run actually enforces, and a bound on concurrent writes, so the operator
//! spends its Cloud Run quota evenly instead of collecting 429s.
//!
//! Cloud Run's Admin API quotas are per project **and** region, separately for reads and
//! writes. Each (project, region, direction) is a *lane*: a GCRA limiter (a token bucket
//! without a timer) with a steady rate and a burst of a tenth of it (at least 1), so no
//! 60-second window ever sees more than 1.1 × the lane's rate. Every HTTP attempt —
//! retries included — takes one token.
//!
//! # Adaptive rate (AIMD)
//!
//! A lane starts at the configured rate (`--read-rate 600`, `--write-rate 30`: the quotas
//! of a new project) and adapts when Cloud Run says the real quota is lower:
//! - **Multiplicative decrease.** A 429 RESOURCE_EXHAUSTED (with or without `RetryInfo`)
//!   lowers its lane's rate to `decrease_percent` of what it was (default half), at least
//!   `floor_per_minute`. When Google's `ErrorInfo` names the per-minute limit
//!   (`quota_limit_value`), a lane above it drops straight to 90 % of that limit instead.
//!   The lane's burst is spent, so its next request waits one new interval, and requests
//!   already waiting give up the slots they got at the old rate. Only a 429 to a
//!   request sent *after* the last decrease lowers the rate again: the requests already in
//!   flight when the first 429 came answer from the same exhausted window, and halving for
//!   each would collapse the rate for one overload.
//! - **Additive increase.** Each success raises the lane's rate by `recovery_percent` of
//!   the configured rate divided by the current rate: at full use of the lane that is
//!   `recovery_percent` % of the configured rate per minute (default 5 %: from half back
//!   to the configured rate in 10 minutes), and an idle lane does not creep back to a rate
//!   nobody has proven. Recovery stops at the configured rate, and at 90 % of a limit
//!   Google reported within the last `learned_limit_ttl` (quotas can be raised).
//!
//! Which lane a 429 lowers: the direction named by the quota metric of its `ErrorInfo`
//! (`run.googleapis.com/read_regional` or `.../write_regional`), else the budget the call
//! was charged to (reads for GET, lists and operations; writes for PATCH). Calls outside
//! Cloud Run's quotas (Binary Authorization, Org Policy) have no lane.

mod lane;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cloudrun::error::{Code, Error};
use crate::resource::ResourceId;

use lane::{whole, Lane};

/// Which budget a request spends: the direction of Cloud Run's per-region quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Budget {
    /// Reads (list, get, operations, locations).
    Read,
    /// Writes (patch).
    Write,
}

impl Budget {
    /// Both directions.
    pub const ALL: [Budget; 2] = [Budget::Read, Budget::Write];

    /// Stable label for metrics: `read`, `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// What a call waited for, as reported to [`super::CallObserver::throttled`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Throttle {
    /// The per-(project, region) read rate.
    ReadRate,
    /// The per-(project, region) write rate.
    WriteRate,
    /// A free slot under `max_concurrent_writes`.
    WriteConcurrency,
}

impl Throttle {
    /// Stable label for metrics: `read_rate`, `write_rate`, `write_concurrency`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadRate => "read_rate",
            Self::WriteRate => "write_rate",
            Self::WriteConcurrency => "write_concurrency",
        }
    }
}

/// Rates and bounds of the client-side throttle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Read requests per minute per (project, region): where each lane starts and the most
    /// it recovers to.
    pub reads_per_minute: NonZeroU32,
    /// Write requests per minute per (project, region), likewise.
    pub writes_per_minute: NonZeroU32,
    /// Remediations in flight at once across all projects and regions.
    pub max_concurrent_writes: NonZeroUsize,
}

impl Default for RateLimitConfig {
    /// 600 reads and 30 writes per minute per region (the quotas of a new project), 8
    /// concurrent writes.
    fn default() -> Self {
        Self {
            reads_per_minute: NonZeroU32::new(600).unwrap_or(NonZeroU32::MIN),
            writes_per_minute: NonZeroU32::new(30).unwrap_or(NonZeroU32::MIN),
            max_concurrent_writes: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// How a lane's rate adapts to 429s (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptivePolicy {
    /// The rate after a 429, in percent of the rate before it (1..=99).
    pub decrease_percent: u8,
    /// The lowest rate a lane is lowered to, per minute.
    pub floor_per_minute: NonZeroU32,
    /// Rate regained per minute of requests succeeding at the lane's rate, in percent of
    /// the configured rate.
    pub recovery_percent: NonZeroU32,
    /// How long a per-minute limit reported by Google caps the recovery.
    pub learned_limit_ttl: Duration,
}

impl Default for AdaptivePolicy {
    /// Halve on a 429, never below 1 per minute; regain 5 % of the configured rate per
    /// minute of successful traffic; trust a reported limit for an hour.
    fn default() -> Self {
        Self {
            decrease_percent: 50,
            floor_per_minute: NonZeroU32::MIN,
            recovery_percent: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            learned_limit_ttl: Duration::from_secs(3600),
        }
    }
}

/// The share of a limit Google reported that a lane aims at: with the 10 % burst, a
/// minute then sees at most 99 % of the limit.
const LEARNED_LIMIT_SHARE: f64 = 0.9;

/// A rate-limit answer, read from a failed call: which lane it lowers and the per-minute
/// limit Google named, if it did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuotaSignal {
    /// The direction whose quota was exceeded.
    pub budget: Budget,
    /// `quota_limit_value` of a per-minute limit, when the answer carries one.
    pub limit_per_minute: Option<f64>,
}

impl QuotaSignal {
    /// Reads `err` as a rate-limit answer of Cloud Run: an HTTP 429 RESOURCE_EXHAUSTED
    /// whose `ErrorInfo` (if any) says `RATE_LIMIT_EXCEEDED` or names a quota metric. The
    /// direction comes from a `run.googleapis.com/...read...|...write...` quota metric,
    /// else from `charged`, the budget the call spent. `None` for any other error, and for
    /// calls outside Cloud Run's quotas whose answer names no Cloud Run metric.
    pub fn of(err: &Error, charged: Option<Budget>) -> Option<Self> {
        let api = err.api_error()?;
        if api.code != Code::ResourceExhausted || api.http_status.is_none() {
            return None;
        }
        let info = api.details.error_info.as_ref();
        let metric = info.and_then(|i| i.metadata.get("quota_metric"));
        if let Some(info) = info {
            if info.reason != "RATE_LIMIT_EXCEEDED" && metric.is_none() {
                return None;
            }
        }
        let named = metric
            .and_then(|m| m.strip_prefix("run.googleapis.com/"))
            .and_then(|m| {
                if m.contains("write") {
                    Some(Budget::Write)
                } else if m.contains("read") {
                    Some(Budget::Read)
                } else {
                    None
                }
            });
        let budget = named.or(charged)?;
        let per_minute = info
            .and_then(|i| i.metadata.get("quota_limit"))
            .is_some_and(|limit| limit.to_ascii_lowercase().contains("perminute"));
        let limit_per_minute = info
            .and_then(|i| i.metadata.get("quota_limit_value"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| per_minute && v.is_finite() && *v >= 1.0);
        Some(Self {
            budget,
            limit_per_minute,
        })
    }
}

/// What one request took from its lane; handed back with the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    budget: Budget,
    /// The lane's decrease count when the request was admitted.
    epoch: u64,
}

impl Ticket {
    /// The budget it was charged to.
    pub fn budget(self) -> Budget {
        self.budget
    }
}

/// A change of a lane's effective rate worth reporting (its whole part moved).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateChange {
    /// The lane's direction.
    pub budget: Budget,
    /// Its effective rate now, per minute.
    pub per_minute: f64,
}

type Key = (String, String, Budget);

/// The throttle shared by every call of one client.
pub struct RateLimits {
    reads_per_minute: f64,
    writes_per_minute: f64,
    policy: AdaptivePolicy,
    lanes: Mutex<HashMap<Key, Lane>>,
    write_slots: Arc<Semaphore>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("lanes", &lock(&self.lanes).len())
            .field("free_write_slots", &self.write_slots.available_permits())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RateLimits {
    /// Builds the lanes' settings for `config`, adapting as `policy` says.
    pub fn new(config: &RateLimitConfig, policy: AdaptivePolicy) -> Self {
        Self {
            reads_per_minute: f64::from(config.reads_per_minute.get()),
            writes_per_minute: f64::from(config.writes_per_minute.get()),
            policy,
            lanes: Mutex::new(HashMap::new()),
            write_slots: Arc::new(Semaphore::new(config.max_concurrent_writes.get())),
        }
    }

    fn configured(&self, budget: Budget) -> f64 {
        match budget {
            Budget::Read => self.reads_per_minute,
            Budget::Write => self.writes_per_minute,
        }
    }

    fn with_lane<R>(
        &self,
        budget: Budget,
        project: &str,
        location: &str,
        f: impl FnOnce(&mut Lane, Instant) -> R,
    ) -> R {
        let now = Instant::now();
        let configured = self.configured(budget);
        let mut lanes = lock(&self.lanes);
        let lane = lanes
            .entry((project.to_owned(), location.to_owned(), budget))
            .or_insert_with(|| Lane::new(configured, now));
        f(lane, now)
    }

    /// Waits until the lane of `budget` in (project, location) admits one more request;
    /// returns the request's ticket and how long the wait took (zero when there was room).
    ///
    /// A request reserves its slot in the lane's schedule and sleeps until then; when the
    /// lane's rate was lowered meanwhile, the slot (granted at the old rate) is given up
    /// and a new one taken at the new rate — otherwise every write already queued would
    /// still go at the rate Cloud Run just refused.
    pub async fn acquire(
        &self,
        budget: Budget,
        project: &str,
        location: &str,
    ) -> (Ticket, Duration) {
        let started = Instant::now();
        let mut waited = false;
        loop {
            let (at, epoch) = self.with_lane(budget, project, location, |lane, now| {
                (lane.reserve(now), lane.epoch)
            });
            if at > Instant::now() {
                waited = true;
                tokio::time::sleep_until(at.into()).await;
            }
            let current = self.with_lane(budget, project, location, |lane, _| lane.epoch);
            if current == epoch {
                let wait = if waited {
                    started.elapsed()
                } else {
                    Duration::ZERO
                };
                return (Ticket { budget, epoch }, wait);
            }
        }
    }

    /// A request admitted with `ticket` succeeded: additive increase. Returns the new rate
    /// when worth reporting.
    pub fn succeeded(&self, ticket: Ticket, project: &str, location: &str) -> Option<RateChange> {
        let configured = self.configured(ticket.budget);
        self.with_lane(ticket.budget, project, location, |lane, now| {
            lane.succeeded(now, configured, &self.policy);
            lane.report()
        })
        .map(|per_minute| RateChange {
            budget: ticket.budget,
            per_minute,
        })
    }

    /// A request (admitted with `ticket`, if it spent a budget) met the rate limit
    /// `signal`: multiplicative decrease of the signal's lane. Returns the new rate when
    /// it was lowered.
    pub fn exceeded(
        &self,
        signal: QuotaSignal,
        ticket: Option<Ticket>,
        project: &str,
        location: &str,
    ) -> Option<RateChange> {
        // Only a ticket of the same lane tells when the request was admitted.
        let epoch = ticket
            .filter(|t| t.budget == signal.budget)
            .map(|t| t.epoch);
        self.with_lane(signal.budget, project, location, |lane, now| {
            lane.exceeded(now, epoch, signal.limit_per_minute, &self.policy)
                .then(|| {
                    lane.reported = whole(lane.rate);
                    lane.rate
                })
        })
        .map(|per_minute| RateChange {
            budget: signal.budget,
            per_minute,
        })
    }

    /// The effective rate per minute of `budget` in (project, location) right now.
    pub fn effective_rate(&self, budget: Budget, project: &str, location: &str) -> f64 {
        lock(&self.lanes)
            .get(&(project.to_owned(), location.to_owned(), budget))
            .map_or_else(|| self.configured(budget), |lane| lane.rate)
    }

    /// Waits for a write slot; the write may proceed while the permit lives. Returns the
    /// permit and how long the wait took, or `None` if the slots were closed (they never are
    /// while the client lives; callers refuse to write without a permit).
    pub async fn write_slot(&self) -> Option<(OwnedSemaphorePermit, Duration)> {
        if let Ok(permit) = Arc::clone(&self.write_slots).try_acquire_owned() {
            return Some((permit, Duration::ZERO));
        }
        let started = Instant::now();
        let permit = Arc::clone(&self.write_slots).acquire_owned().await.ok()?;
        Some((permit, started.elapsed()))
    }
}

/// How many writes a caller hands the client at once. The client bounds what is actually
/// sent (`max_concurrent_writes` slots, each taken only once the write's region has budget
/// for it); this only bounds how many wait for their turn.
pub const WRITE_QUEUE: usize = 256;

/// Orders `items` so that consecutive ones go to different (project, region) budgets:
/// round robin over the regions in order of first appearance, each region's items in their
/// original order. Handed to the client [`WRITE_QUEUE`] at a time, a region out of write
/// budget then delays only its own writes.
pub fn interleave_by_region<T>(items: Vec<T>, id: impl Fn(&T) -> &ResourceId) -> Vec<T> {
    let total = items.len();
    let mut order: Vec<(String, String)> = Vec::new();
    let mut queues: HashMap<(String, String), VecDeque<T>> = HashMap::new();
    for item in items {
        let key = {
            let id = id(&item);
            (id.project.clone(), id.location.clone())
        };
        let queue = queues.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            VecDeque::new()
        });
        queue.push_back(item);
    }
    let mut interleaved = Vec::with_capacity(total);
    while interleaved.len() < total {
        for key in &order {
            if let Some(item) = queues.get_mut(key).and_then(VecDeque::pop_front) {
                interleaved.push(item);
            }
        }
    }
    interleaved
}
