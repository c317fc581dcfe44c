//! Client-side throttling: read and write budgets per (project, region), and a bound on
//! concurrent writes, so the operator spends its Cloud Run quota evenly instead of
//! collecting 429s.
//!
//! Cloud Run's Admin API quotas are per project **and** region, separately for reads and
//! writes. Each budget here is a GCRA limiter (the `governor` crate) keyed by
//! (project, location) with a steady rate of `per_minute` and a burst of a tenth of it
//! (at least 1). With that burst, no 60-second window ever sees more than
//! `per_minute + burst` = 1.1 × `per_minute` requests, so the defaults (900 reads, 50
//! writes per minute) stay under the documented defaults (1,000 reads and 60 writes per
//! minute per region). Every HTTP attempt — retries included — takes one token.

use std::collections::{HashMap, VecDeque};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::resource::ResourceId;

/// Which budget a request spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Budget {
    /// Reads (list, get, operations, locations).
    Read,
    /// Writes (patch).
    Write,
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
    /// Read requests per minute per (project, region).
    pub reads_per_minute: NonZeroU32,
    /// Write requests per minute per (project, region).
    pub writes_per_minute: NonZeroU32,
    /// Remediations in flight at once across all projects and regions.
    pub max_concurrent_writes: NonZeroUsize,
}

impl Default for RateLimitConfig {
    /// 900 reads and 50 writes per minute per region, 8 concurrent writes.
    fn default() -> Self {
        Self {
            reads_per_minute: NonZeroU32::new(900).unwrap_or(NonZeroU32::MIN),
            writes_per_minute: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
            max_concurrent_writes: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

type Key = (String, String);

/// The throttle shared by every call of one client.
pub struct RateLimits {
    read: DefaultKeyedRateLimiter<Key>,
    write: DefaultKeyedRateLimiter<Key>,
    write_slots: Arc<Semaphore>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("scopes", &self.read.len())
            .field("free_write_slots", &self.write_slots.available_permits())
            .finish()
    }
}

fn quota(per_minute: NonZeroU32) -> Quota {
    let burst = NonZeroU32::new(per_minute.get() / 10).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

impl RateLimits {
    /// Builds the limiters for `config`.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            read: RateLimiter::dashmap(quota(config.reads_per_minute)),
            write: RateLimiter::dashmap(quota(config.writes_per_minute)),
            write_slots: Arc::new(Semaphore::new(config.max_concurrent_writes.get())),
        }
    }

    /// Waits until `budget` of (project, location) allows one more request; returns how long
    /// that took (zero when there was room).
    pub async fn acquire(&self, budget: Budget, project: &str, location: &str) -> Duration {
        let key = (project.to_owned(), location.to_owned());
        let limiter = match budget {
            Budget::Read => &self.read,
            Budget::Write => &self.write,
        };
        if limiter.check_key(&key).is_ok() {
            return Duration::ZERO;
        }
        let started = Instant::now();
        limiter.until_key_ready(&key).await;
        started.elapsed()
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

    /// Whether a request of `budget` for (project, location) could go right now, spending
    /// a token if so.
    #[cfg(test)]
    fn try_acquire(&self, budget: Budget, project: &str, location: &str) -> bool {
        let key = (project.to_owned(), location.to_owned());
        match budget {
            Budget::Read => self.read.check_key(&key).is_ok(),
            Budget::Write => self.write.check_key(&key).is_ok(),
        }
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

    fn config(reads: u32, writes: u32, slots: usize) -> RateLimitConfig {
        RateLimitConfig {
            reads_per_minute: NonZeroU32::new(reads).unwrap(),
            writes_per_minute: NonZeroU32::new(writes).unwrap(),
            max_concurrent_writes: NonZeroUsize::new(slots).unwrap(),
        }
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

    #[test]
    fn the_burst_is_a_tenth_of_the_rate_so_a_minute_stays_under_the_quota() {
        // 50/min: a burst of 5, then one every 1.2 s.
        let limits = RateLimits::new(&config(900, 50, 1));
        for i in 0..5 {
            assert!(
                limits.try_acquire(Budget::Write, "p", "us-central1"),
                "write {i}"
            );
        }
        assert!(!limits.try_acquire(Budget::Write, "p", "us-central1"));
        // 900/min: a burst of 90.
        for i in 0..90 {
            assert!(
                limits.try_acquire(Budget::Read, "p", "us-central1"),
                "read {i}"
            );
        }
        assert!(!limits.try_acquire(Budget::Read, "p", "us-central1"));
    }

    #[test]
    fn budgets_are_per_project_region_and_separate_for_reads_and_writes() {
        let limits = RateLimits::new(&config(1, 1, 1));
        assert!(limits.try_acquire(Budget::Write, "p", "us-central1"));
        assert!(!limits.try_acquire(Budget::Write, "p", "us-central1"));
        // Another region, another project, and reads are unaffected.
        assert!(limits.try_acquire(Budget::Write, "p", "europe-west1"));
        assert!(limits.try_acquire(Budget::Write, "q", "us-central1"));
        assert!(limits.try_acquire(Budget::Read, "p", "us-central1"));
        assert!(!limits.try_acquire(Budget::Read, "p", "us-central1"));
    }

    #[tokio::test]
    async fn acquire_reports_no_wait_when_there_is_room() {
        let limits = RateLimits::new(&config(600, 60, 1));
        assert_eq!(limits.acquire(Budget::Read, "p", "l").await, Duration::ZERO);
    }

    #[tokio::test]
    async fn write_slots_bound_concurrent_writes() {
        let limits = RateLimits::new(&config(1, 1, 2));
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
