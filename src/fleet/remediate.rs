//! Remediates drifted resources — one write each, in turn per resource, interleaved by region — and says what became of each, in one vocabulary for the controller and `check`.
//!
//! # Expected flow
//! For every write a plan asks for, in region-interleaved order, at most
//! [`WRITE_QUEUE`] queued at once:
//! 1. `may_write()` (the controller: holds the lease; `check`: always) — else not attempted;
//! 2. wait for the resource's write turn ([`SharedInventory::write_turn`]) and ask again;
//! 3. start from the freshest state known (the last write recorded, else the listed copy,
//!    else a fresh read) and write through the client, which re-asks `still_wanted` with
//!    the resource as just read before every attempt;
//! 4. classify the answer ([`Written`]) and record the result in the inventory.
//!
//! # Guarantees
//! - The only write is the client's remediation: `binaryAuthorization` and nothing else,
//!   never weakened (see [`crate::cloudrun::client`]).
//! - A withdrawn write (another binding owns the resource now) is reported as pending for
//!   this binding: its next pass reports the new owner. Never "succeeded".
//! - Every failure is classified by [`super::classify::write_failure`].

use futures::{stream, StreamExt};

use super::classify::write_failure;
use super::inventory::SharedInventory;
use crate::cloudrun::ratelimit::{interleave_by_region, WRITE_QUEUE};
use crate::cloudrun::{self, LiveResource, RemediationOutcome};
use crate::plan::{WriteFailure, WriteOutcome};
use crate::resource::{BreakglassChange, ObservedResource, Remediation, ResourceId};
use crate::telemetry::RemediationResult;

/// What became of one remediation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// Written, and Cloud Run's operation finished.
    Applied,
    /// It complied already (a concurrent writer fixed it, or validate-only): no write.
    AlreadySatisfied,
    /// Written; the operation had not finished (the next pass verifies).
    Pending {
        /// The operation's name.
        operation: String,
    },
    /// Not written: the binding no longer owns the resource with this policy.
    Withdrawn,
    /// The resource was deleted meanwhile.
    Gone,
    /// Refused or failed.
    Failed(WriteFailure),
}

impl Written {
    /// The `binauthz_remediations_total` result it counts as.
    pub fn metric(&self) -> RemediationResult {
        match self {
            Self::Applied => RemediationResult::Succeeded,
            Self::AlreadySatisfied | Self::Withdrawn | Self::Gone => RemediationResult::Skipped,
            Self::Pending { .. } => RemediationResult::Pending,
            Self::Failed(_) => RemediationResult::Failed,
        }
    }

    /// The planner's outcome for the binding's status.
    pub fn outcome(&self) -> WriteOutcome {
        match self {
            Self::Applied | Self::AlreadySatisfied => WriteOutcome::Succeeded,
            Self::Pending { .. } | Self::Withdrawn => WriteOutcome::Pending,
            Self::Gone => WriteOutcome::Gone,
            Self::Failed(f) => WriteOutcome::Failed(f.clone()),
        }
    }
}

/// One write a plan asks for: the resource as planned, the change, and the listed copy
/// to start from (when the caller has one).
pub struct WriteRequest<'a> {
    /// The resource as the plan saw it.
    pub resource: &'a ObservedResource,
    /// The change to make.
    pub remediation: Remediation,
    /// The wire object listed with it.
    pub listed: Option<&'a LiveResource>,
}

/// Makes every write of `requests` (see the module docs); `None` for a write not
/// attempted because `may_write` said no. `done` is told of each finished write.
pub async fn remediate_all<'a>(
    inventory: &'a SharedInventory,
    requests: Vec<WriteRequest<'a>>,
    still_wanted: &'a (dyn Fn(&ObservedResource, &Remediation) -> bool + Send + Sync),
    may_write: &'a (dyn Fn() -> bool + Send + Sync),
    done: &'a (dyn Fn(&ResourceId, &Written) + Send + Sync),
) -> Vec<(ResourceId, Option<Written>)> {
    // The futures are made up front (a closure inside the stream would need to be
    // general over lifetimes, which the compiler cannot prove for a Send future).
    let futures: Vec<_> = interleave_by_region(requests, |r| &r.resource.id)
        .into_iter()
        .map(|request| async move {
            let id = request.resource.id.clone();
            let written = remediate_one(inventory, &request, still_wanted, may_write).await;
            if let Some(w) = &written {
                done(&id, w);
            }
            (id, written)
        })
        .collect();
    stream::iter(futures)
        .buffer_unordered(WRITE_QUEUE)
        .collect()
        .await
}

#[tracing::instrument(skip_all, fields(resource = %request.resource.id))]
async fn remediate_one(
    inventory: &SharedInventory,
    request: &WriteRequest<'_>,
    still_wanted: &(dyn Fn(&ObservedResource, &Remediation) -> bool + Send + Sync),
    may_write: &(dyn Fn() -> bool + Send + Sync),
) -> Option<Written> {
    let WriteRequest {
        resource,
        remediation,
        listed,
    } = request;
    let id = &resource.id;
    if !may_write() {
        return None;
    }
    // One write to a resource at a time; the next starts from what the last one recorded
    // (and makes no call when that complies).
    let _turn = inventory.write_turn(id).await;
    if !may_write() {
        return None;
    }
    let client = inventory.client();
    let guard = |now: &ObservedResource| still_wanted(now, remediation);
    let latest = inventory.latest(id);
    let result = match latest.as_deref().or(*listed) {
        Some(current) => {
            client
                .remediate_listed_while(current, remediation, &guard)
                .await
        }
        None => client.remediate(id, remediation).await,
    };
    let written = classify(resource, remediation, result, inventory);
    Some(written)
}

/// Classifies the client's answer and writes the new state through to the inventory.
fn classify(
    resource: &ObservedResource,
    remediation: &Remediation,
    result: Result<RemediationOutcome, cloudrun::Error>,
    inventory: &SharedInventory,
) -> Written {
    match result {
        Ok(RemediationOutcome::Applied { resource: after }) => {
            match after {
                Some(after) => inventory.record(&after),
                None => inventory.record(&satisfied(resource, remediation)),
            }
            Written::Applied
        }
        Ok(RemediationOutcome::AlreadySatisfied | RemediationOutcome::Validated) => {
            inventory.record(&satisfied(resource, remediation));
            Written::AlreadySatisfied
        }
        Ok(RemediationOutcome::Withdrawn) => {
            tracing::info!(resource = %resource.id, "ownership changed since the plan; write withdrawn");
            inventory.invalidate(&resource.id);
            Written::Withdrawn
        }
        Ok(RemediationOutcome::Pending { operation }) => {
            tracing::info!(resource = %resource.id, %operation, "remediation still running; the next pass verifies it");
            inventory.invalidate(&resource.id);
            Written::Pending { operation }
        }
        Err(err) if err.is_not_found() => {
            inventory.invalidate(&resource.id);
            Written::Gone
        }
        Err(err) => {
            tracing::warn!(resource = %resource.id, error = %err, "remediation failed");
            Written::Failed(write_failure(
                &err,
                &resource.id.project,
                &remediation.desired.to_string(),
            ))
        }
    }
}

/// The resource as it is once `remediation` holds.
fn satisfied(resource: &ObservedResource, remediation: &Remediation) -> ObservedResource {
    let mut after = resource.clone();
    after.policy = (&remediation.desired).into();
    if remediation.breakglass == BreakglassChange::Clear {
        after.breakglass = None;
    }
    after
}
