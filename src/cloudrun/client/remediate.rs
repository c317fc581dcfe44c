//! The remediation write: decide again, take the write budget and a write slot, `PATCH` once, finish.

use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info, info_span, Instrument};

use super::transport::check_id;
use super::{Call, CloudRunClient, LiveResource, RemediationOutcome};
use crate::cloudrun::error::{ApiError, Code, Error, Result};
use crate::cloudrun::model::{Operation, Resource};
use crate::cloudrun::observe::ApiMethod;
use crate::cloudrun::ratelimit::{Budget, RateChange, Throttle, Ticket};
use crate::resource::{ObservedResource, Remediation, ResourceId, ResourceKind};

impl CloudRunClient {
    /// Reads the resource and, unless it already complies, applies `remediation` with one
    /// write (see the module docs for the guarantees).
    pub async fn remediate(
        &self,
        id: &ResourceId,
        remediation: &Remediation,
    ) -> Result<RemediationOutcome> {
        self.remediate_from(id, None, remediation, false, &|_: &ObservedResource| true)
            .await
    }

    /// Like [`CloudRunClient::remediate`], starting from the resource just listed (its etag
    /// is sent; a stale one costs a re-read).
    pub async fn remediate_listed(
        &self,
        current: &LiveResource,
        remediation: &Remediation,
    ) -> Result<RemediationOutcome> {
        self.remediate_listed_while(current, remediation, &|_: &ObservedResource| true)
            .await
    }

    /// Like [`CloudRunClient::remediate_listed`], asking `still_wanted` before every write
    /// attempt, with the resource as just read (after a stale etag too): when it answers
    /// false nothing is written and the outcome is [`RemediationOutcome::Withdrawn`]. A
    /// concurrent writer always changes the etag, so a decision made before its write is
    /// re-checked against the world after it.
    pub async fn remediate_listed_while(
        &self,
        current: &LiveResource,
        remediation: &Remediation,
        still_wanted: &(dyn Fn(&ObservedResource) -> bool + Send + Sync),
    ) -> Result<RemediationOutcome> {
        self.remediate_from(
            &current.observed.id,
            Some(current.clone()),
            remediation,
            false,
            still_wanted,
        )
        .await
    }

    /// Asks Cloud Run to validate the write `remediate` would make (`validateOnly=true`),
    /// without applying it: [`RemediationOutcome::Validated`] or the error Cloud Run
    /// reports (e.g. a policy that does not exist).
    pub async fn validate_remediation(
        &self,
        id: &ResourceId,
        remediation: &Remediation,
    ) -> Result<RemediationOutcome> {
        self.remediate_from(id, None, remediation, true, &|_: &ObservedResource| true)
            .await
    }

    pub(super) async fn remediate_from(
        &self,
        id: &ResourceId,
        current: Option<LiveResource>,
        remediation: &Remediation,
        validate_only: bool,
        still_wanted: &(dyn Fn(&ObservedResource) -> bool + Send + Sync),
    ) -> Result<RemediationOutcome> {
        let span = info_span!(
            "cloudrun_remediate",
            kind = %id.kind,
            project = %id.project,
            location = %id.location,
            resource = %id.name,
            desired = %remediation.desired,
            breakglass = ?remediation.breakglass,
            validate_only,
        );
        async move {
            check_id(ApiMethod::update(id.kind), id)?;
            let mut conflicts = 0;
            let mut slot: Option<OwnedSemaphorePermit> = None;
            let mut prepaid: Option<Ticket> = None;
            // The copy in hand, and whether it was read while this call held its write
            // slot: a job is only ever written back from such a copy.
            let mut current = current.map(|listed| (listed, false));
            loop {
                let (live, fresh) = match current.take() {
                    Some(read) => read,
                    None => (self.get(id).await?, slot.is_some()),
                };
                if live.observed.deleted {
                    return Err(Error::from_api(ApiError::local(
                        format!("{} {}", ApiMethod::update(id.kind), id.resource_name()),
                        Code::NotFound,
                        "the resource is being deleted",
                    )));
                }
                if remediation.is_satisfied_by(&live.observed) {
                    debug!(observed = %live.observed.policy, "already compliant; no write");
                    return Ok(RemediationOutcome::AlreadySatisfied);
                }
                if !still_wanted(&live.observed) {
                    debug!("the caller no longer wants this write; nothing written");
                    return Ok(RemediationOutcome::Withdrawn);
                }
                // The region's write budget first, then a global write slot: a write
                // waiting for one region's budget must not hold a slot that writes to
                // other regions could use.
                if slot.is_none() {
                    prepaid = Some(
                        self.take_budget(Budget::Write, &id.project, &id.location)
                            .await,
                    );
                    slot = Some(self.write_slot(id).await?);
                }
                if id.kind == ResourceKind::Job && !fresh {
                    // A job is written back whole: read it right before the write, so a
                    // deploy that landed since the list (or since the wait for budget) is
                    // what is written back, whether or not Cloud Run enforces the etag.
                    debug!("reading the job right before writing it whole");
                    continue;
                }
                let body = live
                    .remediation_body(remediation)
                    .map_err(|detail| Error::Decode {
                        target: format!("{} {}", ApiMethod::update(id.kind), id.resource_name()),
                        detail,
                    })?;
                match self.patch(id, &body, validate_only, prepaid.take()).await {
                    Ok(operation) => return self.finish(id, operation, validate_only).await,
                    Err(err) if err.is_conflict() && conflicts < self.inner.config.max_conflict_retries => {
                        conflicts += 1;
                        self.inner.observer.conflict(id.kind);
                        info!(conflicts, error = %err, "resource changed since it was read; re-reading");
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Waits for one call's worth of `budget` in (project, location), reporting the wait.
    pub(super) async fn take_budget(
        &self,
        budget: Budget,
        project: &str,
        location: &str,
    ) -> Ticket {
        let (ticket, waited) = self.inner.limits.acquire(budget, project, location).await;
        if !waited.is_zero() {
            let throttle = match budget {
                Budget::Read => Throttle::ReadRate,
                Budget::Write => Throttle::WriteRate,
            };
            self.inner.observer.throttled(throttle, waited);
        }
        ticket
    }

    pub(super) fn report_rate(&self, change: Option<RateChange>, project: &str, location: &str) {
        if let Some(RateChange { budget, per_minute }) = change {
            self.inner
                .observer
                .rate_changed(budget, project, location, per_minute);
        }
    }

    /// The effective rate, per minute, at which this client sends `budget` requests to
    /// (project, location) right now: the configured rate, lowered by 429s and recovering
    /// (see [`super::ratelimit`]).
    pub fn effective_rate(&self, budget: Budget, project: &str, location: &str) -> f64 {
        self.inner.limits.effective_rate(budget, project, location)
    }

    pub(super) async fn write_slot(&self, id: &ResourceId) -> Result<OwnedSemaphorePermit> {
        let (permit, waited) = self.inner.limits.write_slot().await.ok_or_else(|| {
            Error::from_api(ApiError::local(
                format!("{} {}", ApiMethod::update(id.kind), id.resource_name()),
                Code::Internal,
                "the client's write slots are closed",
            ))
        })?;
        if !waited.is_zero() {
            self.inner
                .observer
                .throttled(Throttle::WriteConcurrency, waited);
        }
        Ok(permit)
    }

    /// Sends the write; `prepaid` when the caller already took its write budget.
    pub(super) async fn patch(
        &self,
        id: &ResourceId,
        body: &Value,
        validate_only: bool,
        prepaid: Option<Ticket>,
    ) -> Result<Operation> {
        let name = id.resource_name();
        let mut query = Vec::new();
        if id.kind != ResourceKind::Job {
            query.push(("updateMask", "binaryAuthorization".to_owned()));
        }
        if validate_only {
            query.push(("validateOnly", "true".to_owned()));
        }
        self.execute(Call {
            method: ApiMethod::update(id.kind),
            verb: reqwest::Method::PATCH,
            url: format!("{}/v2/{name}", self.inner.config.cloud_run_base_url),
            query,
            body: Some(body),
            budget: Some(Budget::Write),
            prepaid,
            project: &id.project,
            location: &id.location,
            resource: name,
            timeout: self.inner.config.request_timeout,
            deadline: None,
        })
        .await
    }

    pub(super) async fn finish(
        &self,
        id: &ResourceId,
        operation: Operation,
        validate_only: bool,
    ) -> Result<RemediationOutcome> {
        let operation = if validate_only {
            operation
        } else {
            self.follow(id, operation).await?
        };
        if let Some(error) = &operation.error {
            let target = format!("{} {}", ApiMethod::update(id.kind), id.resource_name());
            return Err(Error::OperationFailed {
                operation: operation.name.clone(),
                error: Box::new(ApiError::from_operation_status(target, error)),
            });
        }
        if validate_only {
            return Ok(RemediationOutcome::Validated);
        }
        if !operation.done {
            info!(operation = %operation.name, "operation not finished by the deadline; verifying next pass");
            return Ok(RemediationOutcome::Pending {
                operation: operation.name,
            });
        }
        let resource = operation
            .response
            .and_then(|response| serde_json::from_value::<Resource>(response).ok())
            .map(|resource| Box::new(resource.observe(id.clone())));
        info!("remediated");
        Ok(RemediationOutcome::Applied { resource })
    }
}
