//! Health: liveness (`/healthz`) and readiness (`/readyz`) state, set by the controller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A pass in flight that made no progress (no Cloud Run call finished, no step done) for
/// this long counts as stuck, and `/healthz` fails.
pub const STUCK_AFTER: Duration = Duration::from_secs(300);

/// `/readyz` stays failing this long after the bindings watch last reported an error: the
/// watch retries at least every 5 s (reporting each failure), and a resumed watch is silent
/// until something changes, so three retry periods without an error mean it is back.
pub const WATCH_ERROR_GRACE: Duration = Duration::from_secs(15);

/// Leader-election state as `/readyz` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LeaseState {
    /// Leader election is off: this replica always writes.
    Disabled = 0,
    /// This replica holds the lease.
    Leader = 1,
    /// Another replica holds the lease; this one watches and waits.
    Standby = 2,
    /// The lease cannot be read or renewed (API errors); neither leader nor standby.
    Failing = 3,
}

impl LeaseState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Leader,
            2 => Self::Standby,
            3 => Self::Failing,
            _ => Self::Disabled,
        }
    }
}

/// Shared liveness and readiness state, updated by the controller and read by the server.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    epoch: Instant,
    controller_running: AtomicBool,
    crd_served: AtomicBool,
    api_reachable: AtomicBool,
    synced: AtomicBool,
    /// Milliseconds since `epoch` of the last watch error, plus one (0: never).
    last_watch_error: AtomicU64,
    lease: AtomicU8,
    /// Milliseconds since `epoch` of the last progress of any pass.
    last_progress: AtomicU64,
    passes_in_flight: Mutex<HashMap<u64, ()>>,
    next_pass_id: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

/// Marks a pass in flight for `/healthz`; dropping it ends the pass.
#[derive(Debug)]
pub struct PassGuard {
    health: Health,
    id: u64,
}

impl Drop for PassGuard {
    fn drop(&mut self) {
        self.health.progress();
        if let Ok(mut passes) = self.health.inner.passes_in_flight.lock() {
            passes.remove(&self.id);
        }
    }
}

impl Health {
    /// Nothing ready yet, controller not running.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(HealthInner {
                epoch: Instant::now(),
                controller_running: AtomicBool::new(false),
                crd_served: AtomicBool::new(false),
                api_reachable: AtomicBool::new(true),
                synced: AtomicBool::new(false),
                last_watch_error: AtomicU64::new(0),
                lease: AtomicU8::new(LeaseState::Disabled as u8),
                last_progress: AtomicU64::new(0),
                passes_in_flight: Mutex::new(HashMap::new()),
                next_pass_id: AtomicU64::new(0),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The controller loop started (true) or ended (false).
    pub fn set_controller_running(&self, running: bool) {
        self.inner
            .controller_running
            .store(running, Ordering::Release);
    }

    /// Whether the API server serves the BinAuthzBinding CRD, as last checked.
    pub fn set_crd_served(&self, served: bool) {
        self.inner.crd_served.store(served, Ordering::Release);
    }

    /// Whether the API server answered the last periodic check in time.
    pub fn set_api_reachable(&self, reachable: bool) {
        self.inner.api_reachable.store(reachable, Ordering::Release);
    }

    /// The bindings watch finished its initial list.
    pub fn set_synced(&self) {
        self.inner.synced.store(true, Ordering::Release);
    }

    /// The bindings watch reported an error (it retries with backoff).
    pub fn watch_failed(&self) {
        let now = self.now_ms().saturating_add(1);
        self.inner.last_watch_error.store(now, Ordering::Release);
    }

    /// The bindings watch delivered an event: any earlier error is over.
    pub fn watch_recovered(&self) {
        self.inner.last_watch_error.store(0, Ordering::Release);
    }

    /// Sets the leader-election state.
    pub fn set_lease(&self, state: LeaseState) {
        self.inner.lease.store(state as u8, Ordering::Release);
    }

    /// The current leader-election state.
    pub fn lease(&self) -> LeaseState {
        LeaseState::from_u8(self.inner.lease.load(Ordering::Acquire))
    }

    /// A pass starts; keep the guard until it ends.
    pub fn pass_started(&self) -> PassGuard {
        self.progress();
        let id = self.inner.next_pass_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut passes) = self.inner.passes_in_flight.lock() {
            passes.insert(id, ());
        }
        PassGuard {
            health: self.clone(),
            id,
        }
    }

    /// A pass made progress (a Cloud Run call finished, a step completed).
    pub fn progress(&self) {
        let now = self.now_ms();
        self.inner.last_progress.store(now, Ordering::Release);
    }

    /// Why the process is not live, if it is not.
    pub fn liveness_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.inner.controller_running.load(Ordering::Acquire) {
            problems.push("the controller loop is not running".to_owned());
        }
        let in_flight = self
            .inner
            .passes_in_flight
            .lock()
            .map(|p| p.len())
            .unwrap_or(0);
        let idle_ms = self
            .now_ms()
            .saturating_sub(self.inner.last_progress.load(Ordering::Acquire));
        if in_flight > 0 && Duration::from_millis(idle_ms) > STUCK_AFTER {
            problems.push(format!(
                "{in_flight} pass(es) in flight made no progress for {}s",
                idle_ms / 1000
            ));
        }
        problems
    }

    /// Why the replica is not ready, if it is not.
    pub fn readiness_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.inner.api_reachable.load(Ordering::Acquire) {
            problems.push("the Kubernetes API server did not answer the last check".to_owned());
        } else if !self.inner.crd_served.load(Ordering::Acquire) {
            problems.push("the BinAuthzBinding CRD is not served by the API server".to_owned());
        }
        if !self.inner.synced.load(Ordering::Acquire) {
            problems.push("the bindings watch has not synced yet".to_owned());
        }
        let error_at = self.inner.last_watch_error.load(Ordering::Acquire);
        if error_at > 0 {
            let since = Duration::from_millis(self.now_ms().saturating_sub(error_at - 1));
            if since < WATCH_ERROR_GRACE {
                problems.push(format!(
                    "the bindings watch failed {}s ago and is reconnecting",
                    since.as_secs()
                ));
            }
        }
        if self.lease() == LeaseState::Failing {
            problems.push("the leader-election lease cannot be read or renewed".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_crd_sync_and_a_healthy_watch_and_lease() {
        let h = Health::new();
        assert_eq!(h.readiness_problems().len(), 2);
        h.set_crd_served(true);
        h.set_synced();
        assert!(h.readiness_problems().is_empty());
        h.watch_failed();
        assert!(h.readiness_problems()[0].contains("watch failed"));
        h.watch_recovered();
        assert!(h.readiness_problems().is_empty());
        h.set_lease(LeaseState::Standby);
        assert!(h.readiness_problems().is_empty(), "a standby is ready");
        h.set_lease(LeaseState::Failing);
        assert_eq!(h.readiness_problems().len(), 1);
        h.set_lease(LeaseState::Leader);
        h.set_api_reachable(false);
        assert_eq!(
            h.readiness_problems(),
            ["the Kubernetes API server did not answer the last check"]
        );
    }

    #[test]
    fn liveness_needs_the_controller_loop() {
        let h = Health::new();
        assert_eq!(h.liveness_problems().len(), 1);
        h.set_controller_running(true);
        let guard = h.pass_started();
        assert!(h.liveness_problems().is_empty());
        drop(guard);
        h.set_controller_running(false);
        assert!(!h.liveness_problems().is_empty());
    }
}
