//! Long-running operations: following the operation a write returns until it ends or its deadline.

use std::time::{Duration, Instant};

use serde_json::json;
use tracing::{debug, warn};

use super::{Call, CloudRunClient, MAX_POLL_INTERVAL};
use crate::cloudrun::error::Result;
use crate::cloudrun::model::Operation;
use crate::cloudrun::observe::ApiMethod;
use crate::cloudrun::ratelimit::Budget;
use crate::resource::ResourceId;

impl CloudRunClient {
    /// Follows `operation` until it is done or the operation deadline passes: one `:wait`,
    /// then `GET` at growing intervals. Returns the last state seen.
    pub(super) async fn follow(
        &self,
        id: &ResourceId,
        mut operation: Operation,
    ) -> Result<Operation> {
        let followable = operation.name.starts_with("projects/")
            && !operation.name.contains(['?', '#'])
            && !operation.name.split('/').any(|s| s == "..");
        if operation.done || !followable {
            return Ok(operation);
        }
        let policy = self.inner.config.operation;
        let started = Instant::now();
        let remaining = || policy.deadline.saturating_sub(started.elapsed());

        let wait = policy.wait_timeout.min(remaining());
        if !wait.is_zero() {
            match self
                .wait_operation(id, &operation.name, wait, remaining())
                .await
            {
                Ok(waited) if waited.done => return Ok(waited),
                Ok(waited) => operation = waited,
                // `:wait` is best effort; polling decides.
                Err(err) => debug!(error = %err, "operation wait failed; polling instead"),
            }
        }
        let mut interval = policy.poll_interval;
        loop {
            let left = remaining();
            if left.is_zero() {
                return Ok(operation);
            }
            tokio::time::sleep(interval.min(left)).await;
            match self.get_operation(id, &operation.name, remaining()).await {
                Ok(polled) if polled.done => return Ok(polled),
                Ok(polled) => operation = polled,
                // The write was accepted; losing track of it is not a failure of the write.
                Err(err) if err.is_retryable() => {
                    warn!(error = %err, "cannot read the operation; verifying next pass");
                    return Ok(operation);
                }
                Err(err) => return Err(err),
            }
            interval = (interval * 2).min(MAX_POLL_INTERVAL);
        }
    }

    pub(super) async fn wait_operation(
        &self,
        id: &ResourceId,
        name: &str,
        wait: Duration,
        deadline: Duration,
    ) -> Result<Operation> {
        let body = json!({ "timeout": proto_duration(wait) });
        self.execute(Call {
            method: ApiMethod::WaitOperation,
            verb: reqwest::Method::POST,
            url: format!("{}/v2/{name}:wait", self.inner.config.cloud_run_base_url),
            query: Vec::new(),
            body: Some(&body),
            budget: Some(Budget::Read),
            prepaid: None,
            project: &id.project,
            location: &id.location,
            resource: name.to_owned(),
            timeout: self.inner.config.request_timeout + wait,
            deadline: Some(deadline),
        })
        .await
    }

    pub(super) async fn get_operation(
        &self,
        id: &ResourceId,
        name: &str,
        deadline: Duration,
    ) -> Result<Operation> {
        self.execute(Call {
            method: ApiMethod::GetOperation,
            verb: reqwest::Method::GET,
            url: format!("{}/v2/{name}", self.inner.config.cloud_run_base_url),
            query: Vec::new(),
            body: None,
            budget: Some(Budget::Read),
            prepaid: None,
            project: &id.project,
            location: &id.location,
            resource: name.to_owned(),
            timeout: self.inner.config.request_timeout,
            deadline: Some(deadline),
        })
        .await
    }
}

/// A `google.protobuf.Duration` JSON value: `10s`, `2.500000000s`.
pub(super) fn proto_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
    }
}
