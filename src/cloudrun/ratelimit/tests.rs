//! Unit tests of the throttle.

use super::*;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cloudrun::error::ApiError;
use crate::cloudrun::error::{Code, Error};
use crate::resource::ResourceId;

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
async fn requests_waiting_when_the_rate_drops_wait_for_the_new_rate() {
    // 600/min: a burst of 60, then one every 100 ms.
    let limits = Arc::new(RateLimits::new(
        &config(600, 30, 1),
        AdaptivePolicy::default(),
    ));
    for _ in 0..60 {
        limits.acquire(Budget::Read, "p", "l").await;
    }
    let started = Instant::now();
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let limits = Arc::clone(&limits);
            tokio::spawn(async move { limits.acquire(Budget::Read, "p", "l").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // They hold slots at +100, +200 and +300 ms. Cloud Run refuses: 300/min.
    let signal = QuotaSignal {
        budget: Budget::Read,
        limit_per_minute: None,
    };
    limits.exceeded(signal, None, "p", "l").unwrap();
    let mut done = Vec::new();
    for task in waiting {
        let (ticket, _) = task.await.unwrap();
        assert_eq!(ticket.epoch, 1, "admitted under the new rate");
        done.push(started.elapsed());
    }
    done.sort();
    // At 300/min one every 200 ms from the decrease: the last at least ~600 ms after.
    assert!(done[2] >= Duration::from_millis(550), "{done:?}");
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
