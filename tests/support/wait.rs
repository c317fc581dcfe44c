//! Waiting for an observed condition instead of sleeping.

use std::future::Future;
use std::time::{Duration, Instant};

/// What a probe answers: `true`/`Ok(value)` when the condition holds; `false`/`Err(what
/// was seen)` when not yet (the last one is shown when the wait fails).
pub trait Outcome {
    type Value;
    fn into_result(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();
    fn into_result(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    }
}

impl<T> Outcome for Result<T, String> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self
    }
}

/// Polls `probe` every 200 ms until it holds and returns its value; fails the test with
/// `what` and the last answer after `within`.
pub async fn eventually<F, Fut>(
    what: &str,
    within: Duration,
    mut probe: F,
) -> <Fut::Output as Outcome>::Value
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Outcome,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await.into_result() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
