//! One pass over one binding: read Cloud Run, plan with every binding of the project, remediate, write status, publish events.
//!
//! # Expected flow
//! 1. Standby replicas stop here (no read, no write).
//! 2. Suspended or invalid bindings: no Cloud Run call; status only.
//! 3. Resolve `*` locations (the client's cached regions), list every (location, kind)
//!    through the shared inventory, check a named policy exists.
//! 4. Plan with every binding of the same project from the watch cache, so ownership,
//!    superseding and conflicts are decided exactly as for the whole cluster.
//! 5. Enforce: write the status with `Reconciling=True` first, then remediate the
//!    binding's drifted targets, interleaved by region, each through
//!    [`CloudRunClient::remediate_listed_while`](crate::cloudrun::CloudRunClient::remediate_listed_while)
//!    (at most `--max-concurrent-writes` in flight over all passes, each sent once its
//!    region has write budget).
//!    Audit: never a write.
//! 6. Compute the status, write it if it changed, publish one event per reason for the
//!    transitions, update metrics.
//!
//! # Guarantees
//! - Every write (Cloud Run PATCH, status, event) is made only while this replica holds
//!   the lease, checked right before it.
//! - A resource this binding does not own is never written (superseded, conflicted,
//!   unmatched); a write never weakens (see [`crate::cloudrun::client`]).
//! - A pass whose lists failed keeps the previous summary and targets and only updates
//!   the conditions: a Cloud Run outage never makes a binding look empty.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::events::{pass_events, PassSummary};
use super::inventory::{Listed, Scope};
use super::{key_of, status, BindingMemory, Context, Error};
use crate::api::{BinAuthzBinding, BinAuthzBindingStatus, Mode, ResourceKind};
use crate::cloudrun::ratelimit::{interleave_by_region, WRITE_QUEUE};
use crate::cloudrun::{Error as CloudRunError, LiveResource, RemediationOutcome};
use crate::plan::{
    self, Activity, BindingInput, BindingKey, BindingPlan, Decision, PassFailure,
    PassFailureReason, StatusInput, TargetHistory, WriteFailure, WriteFailureReason, WriteOutcome,
};
use crate::policy::DesiredPolicy;
use crate::resource::{BreakglassChange, ObservedResource, Remediation, ResourceId};
use crate::telemetry::{PassResult, RemediationResult};

/// Passes with remediations still running come back this soon to verify them.
const VERIFY_PENDING_AFTER: Duration = Duration::from_secs(30);

/// How a pass ended, for the metrics and the requeue.
pub(crate) struct PassEnd {
    pub(crate) result: PassResult,
    pub(crate) action: Action,
}

/// Runs one pass over `binding` (see the module docs).
///
/// # Errors
/// [`Error::StatusWrite`] when the status cannot be written, [`Error::CloudRunRetry`]
/// when Cloud Run failed in a way worth retrying soon (the status says so already).
pub(crate) async fn pass(binding: &BinAuthzBinding, ctx: &Context) -> Result<PassEnd, Error> {
    if !ctx.leader.is_leader() {
        debug!("standby: not holding the lease, nothing to do");
        return Ok(PassEnd {
            result: PassResult::Standby,
            action: Action::await_change(),
        });
    }
    let key = BindingKey::new(binding.namespace().unwrap_or_default(), binding.name_any());
    let spec = &binding.spec;
    match Activity::of(spec) {
        Activity::Active(_) => active_pass(binding, &key, ctx).await,
        Activity::Suspended | Activity::Invalid(_) => {
            let input = BindingInput {
                key: key.clone(),
                spec,
            };
            let plan =
                plan::plan(&[input], std::iter::empty()).map_err(|e| Error::Plan(e.to_string()))?;
            let bp = plan
                .binding(&key)
                .ok_or_else(|| Error::Plan(format!("binding {key} is missing from its plan")))?;
            let now = Timestamp::now();
            let input = StatusInput {
                generation: binding.meta().generation,
                now,
                pass_failure: None,
                outcomes: &BTreeMap::new(),
                previous: binding.status.as_ref(),
                history: None,
            };
            let report = bp.status(&input);
            write_status(binding, &key, ctx, binding.status.as_ref(), &report.status).await?;
            let summary = PassSummary {
                transitions: &report.transitions,
                ready: (report.ready, ready_message(&report.status)),
                previous_ready: previous_ready(binding),
                mode: None,
                breakglass: None,
                desired: None,
            };
            publish(binding, ctx, &summary).await;
            Ok(PassEnd {
                result: PassResult::Skipped,
                action: Action::await_change(),
            })
        }
    }
}

fn previous_ready(binding: &BinAuthzBinding) -> Option<&str> {
    binding
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.as_str())
}

fn ready_message(status: &BinAuthzBindingStatus) -> &str {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map_or("", |c| c.message.as_str())
}

/// What the reads of a pass produced.
enum Reads {
    /// Every list succeeded.
    Listed(Vec<Listed>),
    /// Some read failed; `retry` when worth retrying soon.
    Failed { failure: PassFailure, retry: bool },
}

fn read_failure(err: &CloudRunError) -> (PassFailure, bool) {
    let reason = if err.is_permission_denied() || err.is_auth() || err.is_not_found() {
        PassFailureReason::PermissionDenied
    } else {
        PassFailureReason::CloudRunUnavailable
    };
    let retry = reason == PassFailureReason::CloudRunUnavailable;
    (
        PassFailure {
            reason,
            message: err.to_string(),
        },
        retry,
    )
}

/// Lists what `binding` covers, on lists started at or after the last tick of its interval
/// (see [`super::inventory`]).
async fn read(binding: &BinAuthzBinding, ctx: &Context) -> Reads {
    let spec = &binding.spec;
    let not_before = ctx.inventory.ticks().last(spec.interval(), Instant::now());
    let locations = if spec.locations.iter().any(|l| l == "*") {
        match ctx.inventory.client().regions(&spec.project).await {
            Ok(regions) => regions,
            Err(err) => {
                let (failure, retry) = read_failure(&err);
                return Reads::Failed { failure, retry };
            }
        }
    } else {
        spec.locations.clone()
    };
    let scopes: Vec<Scope> = locations
        .iter()
        .flat_map(|location| {
            ResourceKind::ALL
                .into_iter()
                .filter(|kind| spec.targets.for_kind(*kind).is_some())
                .map(|kind| Scope {
                    project: spec.project.clone(),
                    location: location.clone(),
                    kind,
                })
        })
        .collect();
    let results =
        futures::future::join_all(scopes.iter().map(|s| ctx.inventory.list(s, not_before))).await;
    ctx.telemetry.health.progress();
    let mut lists = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(list) => lists.push(list),
            Err(err) => {
                let (failure, retry) = read_failure(&err);
                return Reads::Failed { failure, retry };
            }
        }
    }
    Reads::Listed(lists)
}

/// Checks a named policy exists: `Ok(None)` when it does (or the project default is
/// wanted), `Ok(Some(failure))` when it does not or cannot be checked.
async fn check_policy(desired: &DesiredPolicy, ctx: &Context) -> Option<(PassFailure, bool)> {
    let DesiredPolicy::Named(name) = desired else {
        return None;
    };
    match ctx.inventory.client().policy_exists(name).await {
        Ok(true) => None,
        Ok(false) => Some((
            PassFailure {
                reason: PassFailureReason::PolicyNotFound,
                message: format!("Binary Authorization platform policy {name} does not exist"),
            },
            false,
        )),
        Err(err) => Some(read_failure(&err)),
    }
}

async fn active_pass(
    binding: &BinAuthzBinding,
    key: &BindingKey,
    ctx: &Context,
) -> Result<PassEnd, Error> {
    let spec = &binding.spec;
    let generation = binding.meta().generation;
    let desired = spec
        .desired_policy()
        .ok_or_else(|| Error::Plan(format!("binding {key} has no desired policy")))?;

    let (lists, mut failure) = match read(binding, ctx).await {
        Reads::Listed(lists) => (lists, None),
        Reads::Failed { failure, retry } => (Vec::new(), Some((failure, retry, true))),
    };
    if failure.is_none() {
        failure = check_policy(&desired, ctx)
            .await
            .map(|(failure, retry)| (failure, retry, retry));
    }

    // Every binding of the project takes part in ownership; the watch cache has them all.
    // Taken after the reads: a binding that appears while they run is then either in this
    // snapshot, or arrives after them, when the inventory knows the project's resources and
    // the watch's re-check of overlapping bindings queues another pass of this one.
    let all = ctx.bindings.state();
    let mut inputs: Vec<BindingInput<'_>> = all
        .iter()
        .filter(|b| b.spec.project == spec.project)
        .map(|b| BindingInput {
            key: key_of(b),
            spec: &b.spec,
        })
        .filter(|input| input.key != *key)
        .collect();
    inputs.push(BindingInput {
        key: key.clone(),
        spec,
    });

    let plan = plan::plan(
        &inputs,
        lists.iter().flat_map(|l| l.iter()).map(|r| &r.observed),
    )
    .map_err(|e| Error::Plan(e.to_string()))?;
    let bp = plan
        .into_binding(key)
        .ok_or_else(|| Error::Plan(format!("binding {key} is missing from its plan")))?;
    // The listed state of what this binding writes (a write starts from it when the
    // inventory knows nothing newer).
    let writing: HashSet<&ResourceId> = bp.remediations().map(|(r, _)| &r.id).collect();
    let live: HashMap<&ResourceId, &LiveResource> = if writing.is_empty() {
        HashMap::new()
    } else {
        lists
            .iter()
            .flat_map(|l| l.iter())
            .filter(|r| writing.contains(&r.observed.id))
            .map(|r| (&r.observed.id, &**r))
            .collect()
    };

    let mut memory = ctx.take_memory(key);
    // Transitions (events, lastTransitionTime) are relative to the state before this
    // pass, also after the interim Reconciling status below has been written.
    let history = memory.history.clone().unwrap_or_else(|| {
        binding
            .status
            .as_ref()
            .map(TargetHistory::from_status)
            .unwrap_or_default()
    });
    let seen_at = Instant::now();
    let mut outcomes: BTreeMap<ResourceId, WriteOutcome> = BTreeMap::new();
    let mut current = binding.status.clone();
    let mut lost_lease = false;
    let pass_failure = failure.as_ref().map(|(f, _, _)| f.clone());

    match &failure {
        Some((f, _, _)) if f.reason == PassFailureReason::PolicyNotFound => {
            // Nothing can be fixed until the policy exists: report every needed write as
            // failed for that reason.
            for (resource, _) in bp.remediations() {
                outcomes.insert(
                    resource.id.clone(),
                    WriteOutcome::Failed(WriteFailure {
                        reason: WriteFailureReason::PolicyNotFound,
                        message: f.message.clone(),
                    }),
                );
            }
        }
        Some(_) => {}
        None => {
            for (resource, _) in bp.remediations() {
                memory
                    .first_seen
                    .entry(resource.id.clone())
                    .or_insert(seen_at);
            }
            let writes: Vec<(&ObservedResource, Remediation)> =
                bp.remediations().map(|(r, rem)| (r, rem.clone())).collect();
            if !writes.is_empty() && spec.mode == Mode::Enforce {
                // Say a fix is in flight before making it.
                let interim = bp.status(&StatusInput {
                    generation,
                    now: Timestamp::now(),
                    pass_failure: None,
                    outcomes: &outcomes,
                    previous: current.as_ref(),
                    history: Some(&history),
                });
                if write_status(binding, key, ctx, current.as_ref(), &interim.status).await? {
                    current = Some(interim.status);
                }
                let results = remediate(key, &writes, &live, ctx).await;
                for (id, outcome) in results {
                    match outcome {
                        Some(outcome) => {
                            outcomes.insert(id, outcome);
                        }
                        None => lost_lease = true,
                    }
                }
            }
        }
    }
    observe_drift_correction(&bp, &outcomes, &mut memory, ctx);

    let now = Timestamp::now();
    let mut report = bp.status(&StatusInput {
        generation,
        now,
        pass_failure: pass_failure.as_ref(),
        outcomes: &outcomes,
        previous: current.as_ref(),
        history: Some(&history),
    });
    let listing_failed = failure.as_ref().is_some_and(|(_, _, no_data)| *no_data);
    if listing_failed {
        // No data: keep what the last good pass found, update only the conditions.
        let mut kept = binding.status.clone().unwrap_or_default();
        kept.observed_generation = report.status.observed_generation;
        kept.policy = report.status.policy.clone();
        kept.conditions = report.status.conditions.clone();
        report.status = kept;
        report.transitions.clear();
    }

    if lost_lease || !ctx.leader.is_leader() {
        ctx.put_memory(key, memory);
        info!("lost the lease during the pass: leaving status and events to the new leader");
        return Ok(PassEnd {
            result: PassResult::Standby,
            action: Action::await_change(),
        });
    }
    let written = write_status(binding, key, ctx, current.as_ref(), &report.status).await;
    if written.is_ok() && !listing_failed {
        // The next pass's transitions are relative to what this one reported.
        memory.history = Some(report.history.clone());
    }
    ctx.put_memory(key, memory);
    written?;
    let summary = PassSummary {
        transitions: &report.transitions,
        ready: (report.ready, ready_message(&report.status)),
        previous_ready: previous_ready(binding),
        mode: Some(spec.mode),
        breakglass: Some(spec.breakglass),
        desired: Some(&desired),
    };
    publish(binding, ctx, &summary).await;
    if let Some(summary) = &report.status.summary {
        let breakglass_state = bp
            .targets()
            .iter()
            .filter(|t| t.decision == Decision::Breakglass)
            .count();
        ctx.telemetry.metrics.set_targets(
            &key.to_string(),
            summary,
            u32::try_from(breakglass_state).unwrap_or(u32::MAX),
        );
    }

    let interval = spec.interval();
    match failure {
        Some((f, true, _)) => {
            return Err(Error::CloudRunRetry {
                binding: key.clone(),
                message: f.message,
            })
        }
        Some(_) => {
            return Ok(PassEnd {
                result: PassResult::Failed,
                action: Action::requeue(ctx.inventory.ticks().until_next(interval, Instant::now())),
            })
        }
        None => {}
    }
    let retryable = outcomes.iter().find_map(|(id, o)| match o {
        WriteOutcome::Failed(f)
            if matches!(
                f.reason,
                WriteFailureReason::CloudRunUnavailable | WriteFailureReason::ConcurrentUpdate
            ) =>
        {
            Some(format!("{id}: {}", f.message))
        }
        _ => None,
    });
    if let Some(message) = retryable {
        return Err(Error::CloudRunRetry {
            binding: key.clone(),
            message,
        });
    }
    let pending = outcomes.values().any(|o| *o == WriteOutcome::Pending);
    let next_tick = ctx.inventory.ticks().until_next(interval, Instant::now());
    let action = if pending {
        Action::requeue(next_tick.min(VERIFY_PENDING_AFTER))
    } else {
        Action::requeue(next_tick)
    };
    let failed = outcomes
        .values()
        .any(|o| matches!(o, WriteOutcome::Failed(_)));
    let result = if failed {
        PassResult::Failed
    } else {
        PassResult::Completed
    };
    Ok(PassEnd { result, action })
}

/// Remediates `writes` (bounded concurrency). `None` for a write not attempted because
/// the lease was lost.
async fn remediate(
    key: &BindingKey,
    writes: &[(&ObservedResource, Remediation)],
    live: &HashMap<&ResourceId, &LiveResource>,
    ctx: &Context,
) -> Vec<(ResourceId, Option<WriteOutcome>)> {
    // The futures are made up front (a closure inside the stream would need to be
    // general over lifetimes, which the compiler cannot prove for a Send future).
    let futures: Vec<_> = interleave_by_region(writes.iter().collect(), |(r, _)| &r.id)
        .into_iter()
        .map(|(resource, remediation)| remediate_one(key, resource, remediation, live, ctx))
        .collect();
    stream::iter(futures)
        .buffer_unordered(WRITE_QUEUE)
        .collect()
        .await
}

async fn remediate_one(
    key: &BindingKey,
    resource: &ObservedResource,
    remediation: &Remediation,
    live: &HashMap<&ResourceId, &LiveResource>,
    ctx: &Context,
) -> (ResourceId, Option<WriteOutcome>) {
    let id = resource.id.clone();
    if !ctx.leader.is_leader() {
        return (id, None);
    }
    let client = ctx.inventory.client();
    // The plan may be older than the bindings: a higher-priority binding created during
    // this pass may own the resource by now (and may already have written it, which
    // changes the etag). Before every write attempt, with the resource as just read, plan
    // that one resource again with the bindings as they are now.
    let still_wanted = |now: &ObservedResource| still_owned(key, now, remediation, ctx);
    // One write to a resource at a time; the next starts from what the last one recorded
    // (and makes no call when that complies).
    let _turn = ctx.inventory.write_turn(&id).await;
    if !ctx.leader.is_leader() {
        return (id, None);
    }
    let latest = ctx.inventory.latest(&id);
    let current = latest.as_deref().or_else(|| live.get(&id).copied());
    let result = match current {
        Some(current) => {
            client
                .remediate_listed_while(current, remediation, &still_wanted)
                .await
        }
        None => client.remediate(&id, remediation).await,
    };
    ctx.telemetry.health.progress();
    let outcome = outcome_of(resource, remediation, result, ctx);
    (id, Some(outcome))
}

/// Whether `key` still asks for exactly `remediation` on `resource`, planned with every
/// binding of its project as the watch cache holds them now.
fn still_owned(
    key: &BindingKey,
    resource: &ObservedResource,
    remediation: &Remediation,
    ctx: &Context,
) -> bool {
    let all = ctx.bindings.state();
    let inputs: Vec<BindingInput<'_>> = all
        .iter()
        .filter(|b| b.spec.project == resource.id.project)
        .map(|b| BindingInput {
            key: key_of(b),
            spec: &b.spec,
        })
        .collect();
    let Ok(plan) = plan::plan(&inputs, std::iter::once(resource)) else {
        return false;
    };
    plan.binding(key)
        .and_then(|b| b.target(&resource.id))
        .is_some_and(|t| matches!(&t.decision, Decision::Remediate(r) if r == remediation))
}

/// Maps the client's answer to the planner's outcome, records metrics and writes the new
/// state through to the inventory.
fn outcome_of(
    resource: &ObservedResource,
    remediation: &Remediation,
    result: Result<RemediationOutcome, CloudRunError>,
    ctx: &Context,
) -> WriteOutcome {
    let kind = resource.id.kind;
    let metrics = &ctx.telemetry.metrics;
    match result {
        Ok(RemediationOutcome::Applied { resource: after }) => {
            metrics.remediation(kind, RemediationResult::Succeeded);
            match after {
                Some(after) => ctx.inventory.record(&after),
                None => ctx.inventory.record(&satisfied(resource, remediation)),
            }
            WriteOutcome::Succeeded
        }
        Ok(RemediationOutcome::AlreadySatisfied | RemediationOutcome::Validated) => {
            metrics.remediation(kind, RemediationResult::Skipped);
            ctx.inventory.record(&satisfied(resource, remediation));
            WriteOutcome::Succeeded
        }
        Ok(RemediationOutcome::Withdrawn) => {
            // Another binding took the resource over since this pass planned it; the
            // re-check of overlapping bindings already queued reports the new owner.
            metrics.remediation(kind, RemediationResult::Skipped);
            info!(resource = %resource.id, "ownership changed since the plan; write withdrawn");
            ctx.inventory.invalidate(&resource.id);
            WriteOutcome::Pending
        }
        Ok(RemediationOutcome::Pending { operation }) => {
            metrics.remediation(kind, RemediationResult::Pending);
            info!(resource = %resource.id, %operation, "remediation still running; the next pass verifies it");
            ctx.inventory.invalidate(&resource.id);
            WriteOutcome::Pending
        }
        Err(err) if err.is_not_found() => {
            metrics.remediation(kind, RemediationResult::Skipped);
            ctx.inventory.invalidate(&resource.id);
            WriteOutcome::Gone
        }
        Err(err) => {
            metrics.remediation(kind, RemediationResult::Failed);
            warn!(resource = %resource.id, error = %err, "remediation failed");
            let reason = write_failure_reason(&err);
            WriteOutcome::Failed(WriteFailure {
                reason,
                message: err.to_string(),
            })
        }
    }
}

fn write_failure_reason(err: &CloudRunError) -> WriteFailureReason {
    let code = err.code();
    if err.is_permission_denied()
        || err.is_auth()
        || code == Some(crate::cloudrun::Code::PermissionDenied)
    {
        WriteFailureReason::PermissionDenied
    } else if err.is_conflict() {
        WriteFailureReason::ConcurrentUpdate
    } else if err.is_retryable() {
        WriteFailureReason::CloudRunUnavailable
    } else {
        WriteFailureReason::Rejected
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

/// Observes drift-seen → corrected times and forgets resources that no longer drift.
fn observe_drift_correction(
    bp: &BindingPlan<'_>,
    outcomes: &BTreeMap<ResourceId, WriteOutcome>,
    memory: &mut BindingMemory,
    ctx: &Context,
) {
    let mut still = HashMap::new();
    for target in bp.targets() {
        let id = &target.resource.id;
        let Some(first) = memory.first_seen.get(id).copied() else {
            continue;
        };
        let corrected = match &target.decision {
            Decision::Remediate(_) => match outcomes.get(id) {
                Some(WriteOutcome::Succeeded) => true,
                Some(WriteOutcome::Gone) => continue,
                _ => {
                    still.insert(id.clone(), first);
                    continue;
                }
            },
            Decision::Compliant | Decision::Breakglass => true,
            _ => continue,
        };
        if corrected {
            ctx.telemetry.metrics.drift_corrected(first.elapsed());
        }
    }
    memory.first_seen = still;
}

/// Writes the status when it changed and this replica holds the lease; `Ok(true)` when
/// written.
async fn write_status(
    binding: &BinAuthzBinding,
    key: &BindingKey,
    ctx: &Context,
    current: Option<&BinAuthzBindingStatus>,
    new: &BinAuthzBindingStatus,
) -> Result<bool, Error> {
    if !status::needs_write(current, new, Timestamp::now()) || !ctx.leader.is_leader() {
        return Ok(false);
    }
    let api: Api<BinAuthzBinding> = Api::namespaced(ctx.kube.clone(), &key.namespace);
    status::write(&api, &binding.name_any(), new)
        .await
        .map_err(|error| Error::StatusWrite {
            binding: key.clone(),
            error: Box::new(error),
        })?;
    ctx.telemetry.metrics.status_written();
    ctx.telemetry.health.progress();
    Ok(true)
}

/// Publishes the pass's events (only while holding the lease). Failures are logged and
/// counted, never fail the pass.
async fn publish(binding: &BinAuthzBinding, ctx: &Context, summary: &PassSummary<'_, '_>) {
    let events = pass_events(summary);
    if events.is_empty() || !ctx.leader.is_leader() {
        return;
    }
    // A recorder per pass: each event here is a distinct transition with its own note,
    // never a repeat to fold into a series.
    let recorder = Recorder::new(ctx.kube.clone(), ctx.reporter.clone());
    let reference = binding.object_ref(&());
    for event in events {
        let result = recorder.publish(&event.to_kube(), &reference).await;
        ctx.telemetry.metrics.event(result.is_ok());
        if let Err(err) = result {
            warn!(reason = event.reason.as_str(), error = %err, "could not publish an event");
        }
    }
}
