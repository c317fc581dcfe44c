//! One lane (project, region, direction): a GCRA limiter whose rate adapts (AIMD) to the quota Cloud Run enforces.

use std::time::{Duration, Instant};

use super::{AdaptivePolicy, LEARNED_LIMIT_SHARE};

/// One (project, region, direction): its effective rate and GCRA state.
#[derive(Clone, Debug)]
pub(super) struct Lane {
    /// Effective requests per minute.
    pub(super) rate: f64,
    /// Theoretical arrival time of the next request at the steady rate.
    pub(super) tat: Instant,
    /// Decreases so far.
    pub(super) epoch: u64,
    /// The last per-minute limit Google reported, and when.
    pub(super) learned: Option<(f64, Instant)>,
    /// The whole part of the rate last reported.
    pub(super) reported: u64,
}

impl Lane {
    pub(super) fn new(rate: f64, now: Instant) -> Self {
        Self {
            rate,
            tat: now,
            epoch: 0,
            learned: None,
            reported: whole(rate),
        }
    }

    pub(super) fn interval(&self) -> Duration {
        Duration::from_secs_f64(60.0 / self.rate)
    }

    /// The burst tolerance: `burst - 1` intervals, the burst being a tenth of the rate.
    pub(super) fn tolerance(&self) -> Duration {
        let burst = (self.rate / 10.0).floor().max(1.0);
        self.interval().mul_f64(burst - 1.0)
    }

    /// Reserves the next request: returns when it may be sent.
    pub(super) fn reserve(&mut self, now: Instant) -> Instant {
        let earliest = self
            .tat
            .checked_sub(self.tolerance())
            .map_or(now, |t| t.max(now));
        self.tat = self.tat.max(now) + self.interval();
        earliest
    }

    /// The most this lane recovers to.
    pub(super) fn ceiling(&self, now: Instant, configured: f64, policy: &AdaptivePolicy) -> f64 {
        match self.learned {
            Some((limit, at)) if now.duration_since(at) < policy.learned_limit_ttl => configured
                .min(limit * LEARNED_LIMIT_SHARE)
                .max(policy_floor(policy)),
            _ => configured,
        }
    }

    /// After a success: additive increase toward the ceiling.
    pub(super) fn succeeded(&mut self, now: Instant, configured: f64, policy: &AdaptivePolicy) {
        let ceiling = self.ceiling(now, configured, policy);
        if self.rate < ceiling {
            let step = configured * f64::from(policy.recovery_percent.get()) / 100.0;
            self.rate = (self.rate + step / self.rate).min(ceiling);
        }
    }

    /// After a 429 to a request admitted at `epoch`: multiplicative decrease, once per
    /// epoch. Returns whether the rate was lowered.
    pub(super) fn exceeded(
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
        // The burst is spent: the next request waits one new interval. Requests already
        // waiting hold slots granted at the old rate; they take new ones (see `acquire`),
        // so the schedule restarts from now at the new rate.
        self.tat = now + self.tolerance() + self.interval();
        true
    }

    /// The rate to report when its whole part changed since the last report.
    pub(super) fn report(&mut self) -> Option<f64> {
        let now = whole(self.rate);
        (now != self.reported).then(|| {
            self.reported = now;
            self.rate
        })
    }
}

pub(super) fn policy_floor(policy: &AdaptivePolicy) -> f64 {
    f64::from(policy.floor_per_minute.get())
}

pub(super) fn whole(rate: f64) -> u64 {
    // Rates are at most u32::MAX per minute.
    rate.floor() as u64
}
