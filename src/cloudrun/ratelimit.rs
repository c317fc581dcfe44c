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
//!   The lane's burst is spent, so its next request waits one new interval. Only a 429 to a
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

use std::collections::{HashMap, VecDeque};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{Code, Error};
use crate::resource::ResourceId;

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

/// One (project, region, direction): its effective rate and GCRA state.
#[derive(Clone, Debug)]
struct Lane {
    /// Effective requests per minute.
    rate: f64,
    /// Theoretical arrival time of the next request at the steady rate.
    tat: Instant,
    /// Decreases so far.
    epoch: u64,
    /// The last per-minute limit Google reported, and when.
    learned: Option<(f64, Instant)>,
    /// The whole part of the rate last reported.
    reported: u64,
}

impl Lane {
    fn new(rate: f64, now: Instant) -> Self {
        Self {
            rate,
            tat: now,
            epoch: 0,
            learned: None,
            reported: whole(rate),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs_f64(60.0 / self.rate)
    }

    /// The burst tolerance: `burst - 1` intervals, the burst being a tenth of the rate.
    fn tolerance(&self) -> Duration {
        let burst = (self.rate / 10.0).floor().max(1.0);
        self.interval().mul_f64(burst - 1.0)
    }

    /// Reserves the next request: returns when it may be sent.
    fn reserve(&mut self, now: Instant) -> Instant {
        let earliest = self
            .tat
            .checked_sub(self.tolerance())
            .map_or(now, |t| t.max(now));
        self.tat = self.tat.max(now) + self.interval();
        earliest
    }

    /// The most this lane recovers to.
    fn ceiling(&self, now: Instant, configured: f64, policy: &AdaptivePolicy) -> f64 {
        match self.learned {
            Some((limit, at)) if now.duration_since(at) < policy.learned_limit_ttl => configured
                .min(limit * LEARNED_LIMIT_SHARE)
                .max(policy_floor(policy)),
            _ => configured,
        }
    }

    /// After a success: additive increase toward the ceiling.
    fn succeeded(&mut self, now: Instant, configured: f64, policy: &AdaptivePolicy) {
        let ceiling = self.ceiling(now, configured, policy);
        if self.rate < ceiling {
            let step = configured * f64::from(policy.recovery_percent.get()) / 100.0;
            self.rate = (self.rate + step / self.rate).min(ceiling);
        }
    }

    /// After a 429 to a request admitted at `epoch`: multiplicative decrease, once per
    /// epoch. Returns whether the rate was lowered.
    fn exceeded(
        &mut self,
        now: Instant,
        epoch: Option<u64>,
        limit: Option<f64>,
        policy: &AdaptivePolicy,
    ) -> bool {
        if let Some(limit) = limit {
            self.learned = Some((limit, now));
        }
        if epoch.is_some_and(|e| e != self.epoch) {
            return false;
        }
        let halved = self.rate * f64::from(policy.decrease_percent.clamp(1, 99)) / 100.0;
        let target = match limit {
            Some(limit) if self.rate > limit * LEARNED_LIMIT_SHARE => limit * LEARNED_LIMIT_SHARE,
            _ => halved,
        };
        self.rate = target.max(policy_floor(policy));
        self.epoch += 1;
        // The burst is spent: the next request waits at least one new interval.
        self.tat = self.tat.max(now + self.tolerance()) + self.interval();
        true
    }

    /// The rate to report when its whole part changed since the last report.
    fn report(&mut self) -> Option<f64> {
        let now = whole(self.rate);
        (now != self.reported).then(|| {
            self.reported = now;
            self.rate
        })
    }
}

fn policy_floor(policy: &AdaptivePolicy) -> f64 {
    f64::from(policy.floor_per_minute.get())
}

fn whole(rate: f64) -> u64 {
    // Rates are at most u32::MAX per minute.
    rate.floor() as u64
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
    pub async fn acquire(
        &self,
        budget: Budget,
        project: &str,
        location: &str,
    ) -> (Ticket, Duration) {
        let (at, epoch) = self.with_lane(budget, project, location, |lane, now| {
            (lane.reserve(now), lane.epoch)
        });
        let ticket = Ticket { budget, epoch };
        let now = Instant::now();
        if at <= now {
            return (ticket, Duration::ZERO);
        }
        tokio::time::sleep_until(at.into()).await;
        (ticket, at - now)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudrun::error::ApiError;

    fn config(reads: u32, writes: u32, slots: usize) -> RateLimitConfig {
        RateLimitConfig {
            reads_per_minute: NonZeroU32::new(reads).unwrap(),
            writes_per_minute: NonZeroU32::new(writes).unwrap(),
            max_concurrent_writes: NonZeroUsize::new(slots).unwrap(),
        }
    }

    /// How many of `n` requests reserved at `now` may go at once.
    fn admitted_at_once(lane: &mut Lane, now: Instant, n: usize) -> usize {
        (0..n).filter(|_| lane.reserve(now) <= now).count()
    }

    fn quota_error(metadata: serde_json::Value, retry: bool) -> Error {
        let mut details = vec![serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com", "metadata": metadata
        })];
        if retry {
            details.push(serde_json::json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"}));
        }
        let body = serde_json::json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": "Quota exceeded for quota metric 'Write requests'", "details": details}});
        Error::from_api(ApiError::from_http(
            "UpdateService s",
            429,
            None,
            body.to_string().as_bytes(),
        ))
    }

    #[test]
    fn the_defaults_are_the_quotas_of_a_new_project() {
        let defaults = RateLimitConfig::default();
        assert_eq!(defaults.reads_per_minute.get(), 600);
        assert_eq!(defaults.writes_per_minute.get(), 30);
    }

    #[test]
    fn the_burst_is_a_tenth_of_the_rate_then_one_per_interval() {
        let now = Instant::now();
        // 30/min: a burst of 3, then one every 2 s.
        let mut writes = Lane::new(30.0, now);
        assert_eq!(admitted_at_once(&mut writes, now, 10), 3);
        let mut writes = Lane::new(30.0, now);
        for _ in 0..3 {
            writes.reserve(now);
        }
        assert_eq!(writes.reserve(now), now + Duration::from_secs(2));
        assert_eq!(writes.reserve(now), now + Duration::from_secs(4));
        // 600/min: a burst of 60.
        let mut reads = Lane::new(600.0, now);
        assert_eq!(admitted_at_once(&mut reads, now, 100), 60);
        // 5/min: a burst of 1.
        let mut slow = Lane::new(5.0, now);
        assert_eq!(admitted_at_once(&mut slow, now, 5), 1);
    }

    #[test]
    fn no_minute_sees_more_than_the_rate_and_its_burst() {
        let start = Instant::now();
        let mut lane = Lane::new(30.0, start);
        // A client asking for 1,000 requests at once: reservations spread them out.
        let times: Vec<Instant> = (0..1000).map(|_| lane.reserve(start)).collect();
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(60))
                .count();
            assert!(in_window <= 33, "{in_window} requests within a minute");
        }
    }

    #[test]
    fn a_429_halves_the_rate_once_per_window_and_successes_recover_it() {
        let policy = AdaptivePolicy::default();
        let now = Instant::now();
        let mut lane = Lane::new(30.0, now);
        let epoch = lane.epoch;
        assert!(lane.exceeded(now, Some(epoch), None, &policy));
        assert_eq!(lane.rate, 15.0);
        // Requests admitted before the decrease answer from the same exhausted window.
        assert!(!lane.exceeded(now, Some(epoch), None, &policy));
        assert_eq!(lane.rate, 15.0);
        // A request admitted after it lowers the rate again, never below the floor.
        for _ in 0..10 {
            let e = lane.epoch;
            lane.exceeded(now, Some(e), None, &policy);
        }
        assert_eq!(lane.rate, 1.0);
        // Recovery: +5 % of the configured rate per minute of successful traffic.
        let mut lane = Lane::new(30.0, now);
        let e = lane.epoch;
        lane.exceeded(now, Some(e), None, &policy);
        let mut minutes = 0.0;
        let mut successes = 0;
        while lane.rate < 30.0 {
            minutes += 1.0 / lane.rate;
            lane.succeeded(now, 30.0, &policy);
            successes += 1;
            assert!(successes < 10_000);
        }
        assert_eq!(lane.rate, 30.0, "never beyond the configured rate");
        assert!(
            (9.0..=11.0).contains(&minutes),
            "{minutes} minutes to recover"
        );
    }

    #[test]
    fn a_429_spends_the_burst() {
        let policy = AdaptivePolicy::default();
        let now = Instant::now();
        let mut lane = Lane::new(600.0, now);
        lane.exceeded(now, Some(0), None, &policy);
        // 300/min: one every 200 ms, none at once.
        assert_eq!(lane.reserve(now), now + Duration::from_millis(200));
    }

    #[test]
    fn a_reported_limit_is_the_target_and_caps_recovery_until_it_expires() {
        let policy = AdaptivePolicy::default();
        let now = Instant::now();
        let mut lane = Lane::new(30.0, now);
        lane.exceeded(now, Some(0), Some(20.0), &policy);
        assert_eq!(lane.rate, 18.0, "90 % of the reported limit, not half");
        for _ in 0..1000 {
            lane.succeeded(now, 30.0, &policy);
        }
        assert_eq!(lane.rate, 18.0);
        // Below the limit already (another client shares the quota): halve.
        let e = lane.epoch;
        lane.exceeded(now, Some(e), Some(20.0), &policy);
        assert_eq!(lane.rate, 9.0);
        let later = now + policy.learned_limit_ttl;
        for _ in 0..10_000 {
            lane.succeeded(later, 30.0, &policy);
        }
        assert_eq!(lane.rate, 30.0);
    }

    #[test]
    fn quota_answers_name_their_direction_by_metric_else_by_the_budget_spent() {
        let write = quota_error(
            serde_json::json!({"quota_metric": "run.googleapis.com/write_regional",
                "quota_limit": "WritePerMinutePerProjectRegion", "quota_limit_value": "15"}),
            false,
        );
        assert_eq!(
            QuotaSignal::of(&write, Some(Budget::Read)),
            Some(QuotaSignal {
                budget: Budget::Write,
                limit_per_minute: Some(15.0)
            })
        );
        let read = quota_error(
            serde_json::json!({"quota_metric": "run.googleapis.com/read_regional"}),
            true,
        );
        assert_eq!(
            QuotaSignal::of(&read, Some(Budget::Write)).map(|s| s.budget),
            Some(Budget::Read)
        );
        let unnamed = quota_error(serde_json::json!({}), false);
        assert_eq!(
            QuotaSignal::of(&unnamed, Some(Budget::Write)).map(|s| s.budget),
            Some(Budget::Write)
        );
        assert_eq!(QuotaSignal::of(&unnamed, None), None);
        // Not a per-minute limit: its value is not a per-minute rate.
        let daily = quota_error(
            serde_json::json!({"quota_metric": "run.googleapis.com/write_regional",
                "quota_limit": "WritePerDay", "quota_limit_value": "1000"}),
            false,
        );
        assert_eq!(
            QuotaSignal::of(&daily, None).and_then(|s| s.limit_per_minute),
            None
        );
        let other = Error::from_api(ApiError::local("GetService s", Code::Unavailable, "x"));
        assert_eq!(QuotaSignal::of(&other, Some(Budget::Read)), None);
    }

    #[test]
    fn writes_are_interleaved_by_region_keeping_each_regions_order() {
        let id = |project: &str, location: &str, name: &str| ResourceId {
            kind: crate::resource::ResourceKind::Service,
            project: project.into(),
            location: location.into(),
            name: name.into(),
        };
        let items = vec![
            id("p", "a", "1"),
            id("p", "a", "2"),
            id("p", "a", "3"),
            id("q", "a", "1"),
            id("p", "b", "1"),
            id("p", "b", "2"),
        ];
        let names: Vec<String> = interleave_by_region(items, |i| i)
            .iter()
            .map(|i| format!("{}/{}/{}", i.project, i.location, i.name))
            .collect();
        assert_eq!(
            names,
            ["p/a/1", "q/a/1", "p/b/1", "p/a/2", "p/b/2", "p/a/3"]
        );
        assert!(interleave_by_region(Vec::new(), |i: &ResourceId| i).is_empty());
    }

    #[tokio::test]
    async fn lanes_are_per_project_region_and_direction() {
        let limits = RateLimits::new(&config(1, 1, 1), AdaptivePolicy::default());
        let (_, waited) = limits.acquire(Budget::Write, "p", "us-central1").await;
        assert_eq!(waited, Duration::ZERO);
        // Another region, another project, and reads are unaffected.
        for (budget, project, location) in [
            (Budget::Write, "p", "europe-west1"),
            (Budget::Write, "q", "us-central1"),
            (Budget::Read, "p", "us-central1"),
        ] {
            let (_, waited) = limits.acquire(budget, project, location).await;
            assert_eq!(waited, Duration::ZERO, "{budget:?} {project} {location}");
        }
        let next = tokio::time::timeout(
            Duration::from_millis(50),
            limits.acquire(Budget::Write, "p", "us-central1"),
        );
        assert!(
            next.await.is_err(),
            "1/min: the second write waits a minute"
        );
        let signal = QuotaSignal {
            budget: Budget::Read,
            limit_per_minute: None,
        };
        let limits = RateLimits::new(&config(600, 30, 1), AdaptivePolicy::default());
        let (ticket, _) = limits.acquire(Budget::Read, "p", "l").await;
        let change = limits.exceeded(signal, Some(ticket), "p", "l").unwrap();
        assert_eq!(change.per_minute, 300.0);
        assert_eq!(limits.effective_rate(Budget::Read, "p", "l"), 300.0);
        assert_eq!(limits.effective_rate(Budget::Write, "p", "l"), 30.0);
        assert_eq!(limits.effective_rate(Budget::Read, "p", "m"), 600.0);
    }

    #[tokio::test]
    async fn write_slots_bound_concurrent_writes() {
        let limits = RateLimits::new(&config(1, 1, 2), AdaptivePolicy::default());
        let (first, waited) = limits.write_slot().await.unwrap();
        assert_eq!(waited, Duration::ZERO);
        let (second, _) = limits.write_slot().await.unwrap();
        assert_eq!(limits.write_slots.available_permits(), 0);
        let third = tokio::spawn({
            let slots = Arc::clone(&limits.write_slots);
            async move { slots.acquire_owned().await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished(), "a third write must wait for a slot");
        drop(first);
        assert!(third.await.unwrap());
        drop(second);
    }
}
