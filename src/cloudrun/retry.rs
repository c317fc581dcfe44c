//! When to try a failed call again: jittered exponential backoff bounded by a deadline,
//! honouring the server's `RetryInfo` / `Retry-After`.
//!
//! Contract: only errors for which [`Error::is_retryable`] holds are retried
//! (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, transport failures,
//! timeouts); PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND and conflicts never are. A retry
//! never waits less than the server asked for, and no retry is scheduled that would start
//! after the overall deadline: the error is returned instead.

use std::time::{Duration, Instant};

use rand::Rng;

use super::error::Error;

/// How failed calls are retried. Every value is configurable so tests can use tiny ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Backoff before the first retry (before jitter).
    pub initial_backoff: Duration,
    /// Largest backoff between two attempts (before jitter), also the cap of the jitter
    /// added on top of a server-requested delay.
    pub max_backoff: Duration,
    /// Most attempts of one call, the first included.
    pub max_attempts: u32,
    /// Overall time budget of one call, all attempts and waits included.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// 500 ms doubling up to 30 s, at most 8 attempts within 2 minutes.
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: 8,
            deadline: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The exponential backoff cap before retry number `retry` (0-based):
    /// `initial_backoff * 2^retry`, at most `max_backoff`.
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// The wait before retry number `retry`: "equal jitter" over the exponential cap
    /// (uniform in `[cap/2, cap]`), or — when the server asked for a delay — that delay plus
    /// up to 10 % of it (at most `max_backoff`) so that clients told the same delay do not
    /// come back in lockstep.
    pub fn delay(&self, retry: u32, server_hint: Option<Duration>) -> Duration {
        let mut rng = rand::rng();
        match server_hint {
            Some(hint) => {
                let spread = (hint / 10).min(self.max_backoff);
                // The hint comes from the server: any value must not overflow.
                hint.saturating_add(random_up_to(&mut rng, spread))
            }
            None => {
                let cap = self.backoff_cap(retry);
                cap / 2 + random_up_to(&mut rng, cap - cap / 2)
            }
        }
    }

    /// Starts tracking the attempts of one call.
    pub fn start(&self) -> Retrier {
        Retrier {
            policy: *self,
            started: Instant::now(),
            attempts: 1,
        }
    }
}

fn random_up_to(rng: &mut impl Rng, max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

/// The retry state of one call: how many attempts so far and since when.
#[derive(Debug)]
pub struct Retrier {
    policy: RetryPolicy,
    started: Instant,
    attempts: u32,
}

impl Retrier {
    /// Attempts made so far (1 while the first is running).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time left of the overall deadline.
    pub fn remaining(&self) -> Duration {
        self.policy.deadline.saturating_sub(self.started.elapsed())
    }

    /// After a failed attempt: `Some(wait)` when the call should be tried again after
    /// `wait`, `None` when the error must be returned (not retryable, attempts exhausted, or
    /// the wait would end past the deadline).
    pub fn next_delay(&mut self, error: &Error) -> Option<Duration> {
        if !error.is_retryable() || self.attempts >= self.policy.max_attempts {
            return None;
        }
        let delay = self.policy.delay(self.attempts - 1, error.retry_after());
        if delay >= self.remaining() {
            return None;
        }
        self.attempts += 1;
        Some(delay)
    }
}

/// Parses a `google.protobuf.Duration` in its JSON form (`"30s"`, `"1.500s"`).
pub fn parse_proto_duration(text: &str) -> Option<Duration> {
    let number = text.trim().strip_suffix('s')?;
    let (secs, frac) = number.split_once('.').unwrap_or((number, ""));
    let secs: u64 = secs.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(Duration::new(secs, nanos))
}

/// Parses an HTTP `Retry-After` value: delay seconds, or an HTTP date (then the time until
/// it, zero if past).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, jiff::Timestamp::now())
}

fn parse_retry_after_at(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = now.duration_until(when);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudrun::error::{ApiError, Code};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_attempts: 5,
            deadline: Duration::from_secs(60),
        }
    }

    fn api(code: Code, retry_after: Option<Duration>) -> Error {
        let mut e = ApiError::local("GetService s", code, "x");
        e.retry_after = retry_after;
        Error::from_api(e)
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.backoff_cap(0), Duration::from_millis(100));
        assert_eq!(p.backoff_cap(1), Duration::from_millis(200));
        assert_eq!(p.backoff_cap(3), Duration::from_millis(800));
        assert_eq!(p.backoff_cap(5), Duration::from_secs(2));
        assert_eq!(p.backoff_cap(400), Duration::from_secs(2));
        for retry in 0..8 {
            let cap = p.backoff_cap(retry);
            for _ in 0..50 {
                let d = p.delay(retry, None);
                assert!(
                    d >= cap / 2 && d <= cap,
                    "retry {retry}: {d:?} outside [{:?}, {cap:?}]",
                    cap / 2
                );
            }
        }
    }

    #[test]
    fn a_server_delay_is_never_shortened() {
        let p = policy();
        for _ in 0..50 {
            let d = p.delay(0, Some(Duration::from_secs(30)));
            assert!(
                d >= Duration::from_secs(30) && d <= Duration::from_secs(32),
                "{d:?}"
            );
        }
    }

    #[test]
    fn an_absurd_server_delay_neither_overflows_nor_is_scheduled() {
        let p = RetryPolicy {
            max_backoff: Duration::from_secs(30),
            ..policy()
        };
        let absurd = Duration::new(u64::MAX, 999_999_999);
        assert_eq!(p.delay(0, Some(absurd)), absurd);
        let mut r = p.start();
        assert_eq!(
            r.next_delay(&api(Code::ResourceExhausted, Some(absurd))),
            None
        );
    }

    #[test]
    fn only_transient_errors_are_retried_and_attempts_are_bounded() {
        let mut r = policy().start();
        assert_eq!(r.next_delay(&api(Code::PermissionDenied, None)), None);
        assert_eq!(r.next_delay(&api(Code::InvalidArgument, None)), None);
        assert_eq!(r.next_delay(&api(Code::NotFound, None)), None);
        assert_eq!(r.next_delay(&api(Code::Aborted, None)), None);
        let unavailable = api(Code::Unavailable, None);
        for _ in 0..4 {
            assert!(r.next_delay(&unavailable).is_some());
        }
        assert_eq!(r.attempts(), 5);
        assert_eq!(r.next_delay(&unavailable), None, "max_attempts reached");
        for code in [
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Internal,
        ] {
            assert!(
                policy().start().next_delay(&api(code, None)).is_some(),
                "{code}"
            );
        }
        let timeout = Error::Timeout {
            target: "x".into(),
            after: Duration::from_secs(1),
        };
        assert!(policy().start().next_delay(&timeout).is_some());
    }

    #[test]
    fn no_retry_is_scheduled_past_the_deadline() {
        let mut r = policy().start();
        // The server asks for longer than the whole budget: give up at once.
        assert_eq!(
            r.next_delay(&api(Code::ResourceExhausted, Some(Duration::from_secs(90)))),
            None
        );
        let mut r = policy().start();
        let wait = r
            .next_delay(&api(Code::ResourceExhausted, Some(Duration::from_secs(5))))
            .expect("a 5s hint fits in a 60s deadline");
        assert!(wait >= Duration::from_secs(5), "{wait:?}");
        let mut tight = RetryPolicy {
            deadline: Duration::from_millis(150),
            ..policy()
        }
        .start();
        // Backoffs of 100ms, 200ms, ... quickly exceed a 150ms budget.
        let mut retries = 0;
        while tight.next_delay(&api(Code::Unavailable, None)).is_some() {
            retries += 1;
            assert!(retries < 5);
        }
        assert!(retries <= 2, "{retries} retries within 150ms");
    }

    #[test]
    fn proto_durations_parse() {
        assert_eq!(parse_proto_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_proto_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_proto_duration("0.000000001s"),
            Some(Duration::from_nanos(1))
        );
        assert_eq!(parse_proto_duration("30"), None);
        assert_eq!(parse_proto_duration("-1s"), None);
        assert_eq!(parse_proto_duration("1.x s"), None);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let now: jiff::Timestamp = "2026-11-28T10:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after_at("Sat, 28 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after_at("Sat, 28 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
