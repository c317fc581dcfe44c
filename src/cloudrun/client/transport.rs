//! One HTTP exchange: throttling, retries, observation and error mapping; the checks of resource ids put in URLs.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use serde::de::DeserializeOwned;
use tracing::{debug, field, info_span, warn, Instrument};

use super::{Call, CloudRunClient, MAX_DETAIL};
use crate::cloudrun::error::{clip, ApiError, Code, Error, Result};
use crate::cloudrun::model::json_values_at_most;
use crate::cloudrun::observe::{ApiMethod, CallStatus};
use crate::cloudrun::ratelimit::{QuotaSignal, RateChange};
use crate::resource::ResourceId;

impl CloudRunClient {
    /// Performs `call` with throttling, retries (see [`super::retry`]), a tracing span and
    /// the observer's hooks.
    pub(super) async fn execute<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        let span = info_span!(
            "cloudrun_call",
            method = call.method.as_str(),
            project = call.project,
            location = call.location,
            resource = %call.resource,
            status = field::Empty,
            attempts = field::Empty,
        );
        let observer = &self.inner.observer;
        async {
            let mut policy = self.inner.config.retry;
            if let Some(deadline) = call.deadline {
                policy.deadline = policy.deadline.min(deadline);
            }
            let mut retrier = policy.start();
            let mut prepaid = call.prepaid;
            loop {
                let ticket = match (call.budget, prepaid.take()) {
                    (Some(_), Some(ticket)) => Some(ticket),
                    (Some(budget), None) => {
                        Some(self.take_budget(budget, call.project, call.location).await)
                    }
                    (None, _) => None,
                };
                let started = Instant::now();
                let result = self.send::<T>(&call).await;
                let status = CallStatus::of(&result);
                observer.call(call.method, status, started.elapsed());
                let span = tracing::Span::current();
                span.record("status", status.as_str());
                span.record("attempts", retrier.attempts());
                let err = match result {
                    Ok(value) => {
                        if let Some(ticket) = ticket {
                            let change =
                                self.inner
                                    .limits
                                    .succeeded(ticket, call.project, call.location);
                            self.report_rate(change, call.project, call.location);
                        }
                        return Ok(value);
                    }
                    Err(err) => err,
                };
                if let Some(signal) = QuotaSignal::of(&err, call.budget) {
                    let change =
                        self.inner
                            .limits
                            .exceeded(signal, ticket, call.project, call.location);
                    if let Some(RateChange { budget, per_minute }) = change {
                        warn!(
                            direction = budget.as_str(),
                            per_minute,
                            "Cloud Run quota exceeded; lowering this project and region's rate"
                        );
                    }
                    self.report_rate(change, call.project, call.location);
                }
                match retrier.next_delay(&err) {
                    Some(delay) => {
                        observer.retry(call.method, err.reason(), delay);
                        warn!(
                            attempt = retrier.attempts() - 1,
                            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            error = %err,
                            "Cloud Run call failed; retrying"
                        );
                        tokio::time::sleep(delay).await;
                    }
                    None => {
                        debug!(error = %err, "Cloud Run call failed");
                        return Err(err);
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// One HTTP attempt.
    pub(super) async fn send<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T> {
        let authorization = self.inner.auth.header().await?;
        let mut request = self
            .inner
            .http
            .request(call.verb.clone(), &call.url)
            .header(AUTHORIZATION, authorization)
            .timeout(call.timeout);
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = call.body {
            request = request.json(body);
        }
        let failed = |err: reqwest::Error| {
            if err.is_timeout() {
                Error::Timeout {
                    target: call.target(),
                    after: call.timeout,
                }
            } else {
                Error::transport(call.target(), &err)
            }
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limits = &self.inner.config;
        let too_large = |what: String| Error::Decode {
            target: call.target(),
            detail: what,
        };
        // Read at most `max_response_bytes`: a successful answer beyond is refused, an
        // error answer is classified from the part read (its status decides anyway).
        let max = limits.max_response_bytes;
        let mut bytes = Vec::new();
        let mut truncated = response
            .content_length()
            .is_some_and(|len| len > max as u64);
        while !truncated {
            let Some(chunk) = response.chunk().await.map_err(failed)? else {
                break;
            };
            if bytes.len() + chunk.len() > max {
                let room = max - bytes.len();
                bytes.extend_from_slice(&chunk[..room]);
                truncated = true;
            } else {
                bytes.extend_from_slice(&chunk);
            }
        }
        if status.is_success() {
            if truncated {
                return Err(too_large(format!(
                    "the answer is larger than {max} bytes; refusing it"
                )));
            }
            if !json_values_at_most(&bytes, limits.max_response_values) {
                return Err(too_large(format!(
                    "the answer holds more than {} JSON values; refusing it",
                    limits.max_response_values
                )));
            }
            serde_json::from_slice(&bytes).map_err(|err| Error::Decode {
                target: call.target(),
                detail: clip(&err.to_string(), MAX_DETAIL),
            })
        } else {
            // An envelope too big to decode safely is read as text: its start and the
            // HTTP status classify it.
            let body: &[u8] = if truncated && bytes.is_empty() {
                b"(the error body is larger than the client reads)"
            } else if truncated || !json_values_at_most(&bytes, limits.max_response_values) {
                &bytes[..bytes.len().min(1024)]
            } else {
                &bytes
            };
            Err(Error::from_api(ApiError::from_http(
                call.target(),
                status.as_u16(),
                retry_after.as_deref(),
                body,
            )))
        }
    }
}

/// Refuses a project, location or resource id that cannot be a path segment of a Google
/// resource name (project ids may be domain-scoped: `example.com:proj`).
pub(super) fn check_segments(target: impl Fn() -> String, segments: &[(&str, &str)]) -> Result<()> {
    for (what, value) in segments {
        let valid = !value.bytes().all(|b| b == b'.')
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !valid {
            return Err(Error::from_api(ApiError::local(
                target(),
                Code::InvalidArgument,
                format!("{what} {value:?} is not a valid Google resource id"),
            )));
        }
    }
    Ok(())
}

pub(super) fn check_id(method: ApiMethod, id: &ResourceId) -> Result<()> {
    check_segments(
        || format!("{method} {}", id.resource_name()),
        &[
            ("project", &id.project),
            ("location", &id.location),
            ("resource", &id.name),
        ],
    )
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
