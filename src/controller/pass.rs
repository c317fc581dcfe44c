//! One pass over one binding: read Cloud Run, plan with every binding of the project, remediate, write status, publish events.
//!
//! # Expected flow
//! 1. Standby replicas stop here (no read, no write).
//! 2. Suspended, invalid or not permitted bindings (no tenancy grant allows them): no
//!    Cloud Run call; status only.
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::events::{breakglass_overdue_event, pass_events, PassEvent, PassSummary};
use super::{exceptions, status, BindingMemory, Context, Error, RetryCause};
use crate::api::{
    BinAuthzBinding, BinAuthzBindingStatus, FailureReason, Mode, ResourceKind, TargetStatus,
    RECONCILE_REQUESTED_AT,
};
use crate::cloudrun::LiveResource;
use crate::fleet::{
    self,
    read::{read_binding_within, BindingRead},
    remediate::remediate_all,
    remediate::WriteRequest,
    remediate::Written,
};
use crate::plan::{
    self, Activity, BindingInput, BindingKey, BindingPlan, BreakglassLedger, BreakglassUpdate,
    ConditionStatus, Decision, ReadyReason, RevisionTimes, StatusInput, StatusReport,
    TargetHistory, WriteOutcome,
};
use crate::policy::DesiredPolicy;
use crate::policyreport::{self, BindingRef, NotEvaluated};
use crate::resource::{ObservedResource, Remediation, ResourceId};
use crate::telemetry::PassResult;

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
    if !ctx.gates.may_write(&binding.spec.project) {
        debug!("standby: not holding the lease or the project's shard, nothing to do");
        // Its gauges are another replica's to export now (or nobody's while on standby),
        // and what this replica remembers of it may be stale when it writes again: it
        // starts from the status then, like a new leader.
        ctx.forget(&fleet::key_of(binding));
        ctx.telemetry.metrics.forget_project(&binding.spec.project);
        return Ok(PassEnd {
            result: PassResult::Standby,
            action: Action::await_change(),
        });
    }
    let key = BindingKey::new(binding.namespace().unwrap_or_default(), binding.name_any());
    let input = fleet::input(binding, &ctx.tenancy());
    let activity = input.activity();
    match &activity {
        Activity::Active(_) => active_pass(binding, &key, ctx).await,
        Activity::Suspended | Activity::Invalid(_) | Activity::NotPermitted(_) => {
            let plan = plan::plan(&[input], std::iter::empty())?;
            let bp = plan
                .binding(&key)
                .ok_or_else(|| Error::NotPlanned(key.clone()))?;
            let now = Timestamp::now();
            let input = StatusInput {
                generation: binding.meta().generation,
                now,
                pass_failure: None,
                findings: None,
                outcomes: &BTreeMap::new(),
                previous: binding.status.as_ref(),
                history: None,
                breakglass: None,
                revisions: None,
            };
            let mut report = bp.status(&input);
            echo_reconcile_request(binding, &mut report.status);
            write_status(binding, &key, ctx, binding.status.as_ref(), &report.status).await?;
            let summary = PassSummary {
                transitions: &report.transitions,
                ready: (report.ready, ready_message(&report.status)),
                previous_ready: previous_ready(binding),
                mode: None,
                breakglass: None,
                desired: None,
                policy_check: None,
            };
            publish(binding, ctx, &summary).await;
            record_binding(&key, ctx, binding.spec.mode, report.ready);
            let why = match &activity {
                Activity::Invalid(errors) => errors.to_string(),
                Activity::NotPermitted(refusal) => refusal.to_string(),
                _ => String::new(),
            };
            sync_reports(binding, ctx, |b| {
                policyreport::not_evaluated(
                    b,
                    match &activity {
                        Activity::Invalid(_) => NotEvaluated::Invalid(&why),
                        Activity::NotPermitted(_) => NotEvaluated::NotPermitted(&why),
                        _ => NotEvaluated::Suspended,
                    },
                )
            })
            .await;
            Ok(PassEnd {
                result: PassResult::Skipped,
                action: Action::await_change(),
            })
        }
    }
}

/// Echoes the reconcile request this pass handles (`binauthz.dev/reconcile-requested-at`)
/// in the status; without the annotation the status keeps the last value echoed.
fn echo_reconcile_request(binding: &BinAuthzBinding, status: &mut BinAuthzBindingStatus) {
    if let Some(value) = reconcile_request(binding) {
        status.last_handled_reconcile_at = Some(value);
    }
}

/// The binding's reconcile request as the status echoes it (clipped).
fn reconcile_request(binding: &BinAuthzBinding) -> Option<String> {
    binding
        .annotations()
        .get(RECONCILE_REQUESTED_AT)
        .map(|value| crate::cloudrun::error::clip(value, MAX_RECONCILE_VALUE))
}

/// Whether the binding carries a reconcile request its status has not echoed yet.
fn new_reconcile_request(binding: &BinAuthzBinding) -> bool {
    let handled = binding
        .status
        .as_ref()
        .and_then(|s| s.last_handled_reconcile_at.clone());
    reconcile_request(binding).is_some_and(|asked| Some(asked) != handled)
}

/// Longest reconcile request value echoed, in bytes (under the CRD's `maxLength` of 256).
const MAX_RECONCILE_VALUE: usize = 250;

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

/// The pass of an active binding (see the module docs): read, plan, fix, report, requeue.
async fn active_pass(
    binding: &BinAuthzBinding,
    key: &BindingKey,
    ctx: &Context,
) -> Result<PassEnd, Error> {
    let spec = &binding.spec;
    let desired = spec
        .desired_policy()
        .ok_or_else(|| Error::NoDesiredPolicy(key.clone()))?;
    exceptions::wait_for_imminent_expiry(ctx, &key.namespace, &spec.project).await;
    let read = read_cloud_run(binding, key, ctx).await;
    // Every binding of the project takes part in ownership; the watch cache has them all.
    // Taken after the reads: a binding that appears while they run is then either in this
    // snapshot, or arrives after them, when the inventory knows the project's resources and
    // the watch's re-check of overlapping bindings queues another pass of this one.
    let all = ctx.bindings.state();
    let tenancy = ctx.tenancy();
    let inputs = planning_inputs(&all, binding, key, &tenancy);
    let exceptions = exceptions::assess(ctx, Timestamp::now());
    let plan =
        plan::plan_with_exceptions(&inputs, &exceptions, listed(&read).map(|r| &r.observed))?;
    let bp = plan
        .into_binding(key)
        .ok_or_else(|| Error::NotPlanned(key.clone()))?;

    let mut memory = ctx.take_memory(key);
    // Transitions (events, lastTransitionTime) are relative to the state before this
    // pass, also after the interim Reconciling status written while fixing.
    let history = memory.history.clone().unwrap_or_else(|| {
        binding
            .status
            .as_ref()
            .map(TargetHistory::from_status)
            .unwrap_or_default()
    });
    let fixed = fix_drift(binding, key, ctx, &bp, &read, &history, &mut memory).await?;
    observe_drift_correction(&bp, &fixed.outcomes, &mut memory, ctx);
    let breakglass = breakglass_ledger(binding, &bp, &memory, ctx);
    let revisions = if read.listed {
        fleet::effect::read_revisions(ctx.inventory.client(), [&bp]).await
    } else {
        RevisionTimes::default()
    };
    let (report, every_target) = final_report(
        binding,
        &bp,
        &read,
        &fixed,
        &history,
        &Reporting {
            breakglass: &breakglass.ledger,
            revisions: &revisions,
            every_target: ctx.policy_reports.is_some(),
        },
    );

    if fixed.lost_lease || !ctx.gates.may_write(&binding.spec.project) {
        ctx.put_memory(key, memory);
        info!("lost the lease during the pass: leaving status and events to the new leader");
        return Ok(PassEnd {
            result: PassResult::Standby,
            action: Action::await_change(),
        });
    }
    let written = write_status(binding, key, ctx, fixed.current.as_ref(), &report.status).await;
    if written.is_ok() && read.listed {
        // The next pass's transitions are relative to what this one reported.
        memory.history = Some(report.history.clone());
        memory.breakglass = Some(breakglass.ledger.clone());
    }
    ctx.put_memory(key, memory);
    written?;
    let mut events = pass_events(&active_summary(binding, &report, &desired));
    if read.listed {
        let now = Timestamp::now();
        events.extend(breakglass_overdue_event(
            &breakglass,
            ctx.breakglass_max_age,
            now,
        ));
        ctx.telemetry
            .metrics
            .set_breakglass_age(&key.to_string(), breakglass.ledger.max_age(now));
    }
    publish_events(binding, ctx, events).await;
    record_targets(key, ctx, &bp, &report);
    record_binding(key, ctx, spec.mode, report.ready);
    if let Some(targets) = every_target {
        sync_reports(binding, ctx, |b| policyreport::pages(b, &targets)).await;
    }
    record_coverage(ctx, &spec.project);
    if let Some(org) = &read.findings.org_policy {
        ctx.telemetry
            .metrics
            .set_org_policy(&spec.project, org.state);
    }
    let expiry = exceptions::until_next_expiry(
        &exceptions::assess(ctx, Timestamp::now()),
        &key.namespace,
        &spec.project,
        Timestamp::now(),
    );
    end_pass(key, ctx, spec.interval(), expiry, read, &fixed.outcomes)
}

/// Reads the binding's regions through the shared inventory, no older than the current
/// tick (or, for a pass queued by a drift event's re-check, the lists of the current tick
/// as they stand: the re-check recorded what it read and wrote into them). A pass that
/// handles a new reconcile request reads afresh: whoever asked has usually just seen
/// Cloud Run change, and a list of this tick may predate it.
async fn read_cloud_run(binding: &BinAuthzBinding, key: &BindingKey, ctx: &Context) -> BindingRead {
    let spec = &binding.spec;
    let now = Instant::now();
    let not_before = if new_reconcile_request(binding) {
        now
    } else {
        ctx.inventory.ticks().last(spec.interval(), now)
    };
    let max_age = ctx.take_refresh(key).then(|| spec.interval());
    let read = read_binding_within(&ctx.inventory, spec, not_before, max_age).await;
    ctx.telemetry.health.progress();
    read
}

/// Every resource the read listed.
fn listed(read: &BindingRead) -> impl Iterator<Item = &LiveResource> {
    read.lists.iter().flat_map(|l| l.iter()).map(|r| &**r)
}

/// The planner's input: every binding of the project from the watch cache, with this
/// binding as the pass sees it.
fn planning_inputs<'s>(
    all: &'s [Arc<BinAuthzBinding>],
    binding: &'s BinAuthzBinding,
    key: &BindingKey,
    tenancy: &fleet::Tenancy,
) -> Vec<BindingInput<'s>> {
    let mut inputs = fleet::project_inputs(all, &binding.spec.project, tenancy);
    inputs.retain(|input| input.key != *key);
    inputs.push(fleet::input(binding, tenancy));
    inputs
}

/// What fixing the drift left behind.
struct Fixed {
    /// The outcome of every write asked for (refused ones included).
    outcomes: BTreeMap<ResourceId, WriteOutcome>,
    /// The binding's status as last written (the interim one, if it was).
    current: Option<BinAuthzBindingStatus>,
    /// Some write was not attempted because the lease was lost.
    lost_lease: bool,
}

/// Enforce: says a fix is in flight (interim status), then makes the writes. Audit, or a
/// pass that may not write: records what would be fixed, writes nothing. Writes the
/// policy is missing or forbidden for are reported failed for that reason.
async fn fix_drift(
    binding: &BinAuthzBinding,
    key: &BindingKey,
    ctx: &Context,
    bp: &BindingPlan<'_>,
    read: &BindingRead,
    history: &TargetHistory,
    memory: &mut BindingMemory,
) -> Result<Fixed, Error> {
    let mut fixed = Fixed {
        outcomes: fleet::refused_writes(bp, read.failure.as_ref()),
        current: binding.status.clone(),
        lost_lease: false,
    };
    if read.failure.is_some() {
        return Ok(fixed);
    }
    let seen_at = Instant::now();
    for (resource, _) in bp.remediations() {
        memory
            .first_seen
            .entry(resource.id.clone())
            .or_insert(seen_at);
    }
    let writes: Vec<(&ObservedResource, Remediation)> =
        bp.remediations().map(|(r, rem)| (r, rem.clone())).collect();
    if writes.is_empty() || binding.spec.mode != Mode::Enforce {
        return Ok(fixed);
    }
    // Say a fix is in flight before making it.
    let mut interim = bp.status(&StatusInput {
        generation: binding.meta().generation,
        now: Timestamp::now(),
        pass_failure: None,
        findings: Some(&read.findings),
        outcomes: &fixed.outcomes,
        previous: fixed.current.as_ref(),
        history: Some(history),
        breakglass: None,
        revisions: None,
    });
    echo_reconcile_request(binding, &mut interim.status);
    if write_status(binding, key, ctx, fixed.current.as_ref(), &interim.status).await? {
        fixed.current = Some(interim.status);
    }
    let live = listed_state(bp, read);
    for (id, outcome) in remediate(key, &binding.spec.project, &writes, &live, ctx).await {
        match outcome {
            Some(outcome) => {
                fixed.outcomes.insert(id, outcome);
            }
            None => fixed.lost_lease = true,
        }
    }
    Ok(fixed)
}

/// The listed state of what this binding writes (a write starts from it when the
/// inventory knows nothing newer).
fn listed_state<'l>(
    bp: &BindingPlan<'_>,
    read: &'l BindingRead,
) -> HashMap<&'l ResourceId, &'l LiveResource> {
    let writing: HashSet<&ResourceId> = bp.remediations().map(|(r, _)| &r.id).collect();
    if writing.is_empty() {
        return HashMap::new();
    }
    listed(read)
        .filter(|r| writing.contains(&r.observed.id))
        .map(|r| (&r.observed.id, r))
        .collect()
}

/// What the final report says beyond the pass's reads and writes.
struct Reporting<'a> {
    /// Who set each breakglass justification and since when.
    breakglass: &'a BreakglassLedger,
    /// Creation times of the revisions complying targets serve (effect).
    revisions: &'a RevisionTimes,
    /// Also every target's entry, for the PolicyReports.
    every_target: bool,
}

/// The status after the pass. A pass whose lists failed keeps what the last good pass
/// found and updates only the conditions. With `every_target`, also every target's entry
/// (the status lists at most 100), for the PolicyReports; `None` when the lists failed.
fn final_report<'r>(
    binding: &BinAuthzBinding,
    bp: &BindingPlan<'r>,
    read: &BindingRead,
    fixed: &Fixed,
    history: &TargetHistory,
    reporting: &Reporting<'_>,
) -> (StatusReport<'r>, Option<Vec<TargetStatus>>) {
    let Reporting {
        breakglass,
        revisions,
        every_target,
    } = *reporting;
    let input = StatusInput {
        generation: binding.meta().generation,
        now: Timestamp::now(),
        pass_failure: read.failure.as_ref(),
        findings: Some(&read.findings),
        outcomes: &fixed.outcomes,
        previous: fixed.current.as_ref(),
        history: Some(history),
        breakglass: Some(breakglass),
        revisions: Some(revisions),
    };
    let (mut report, all) = if every_target && read.listed {
        let (report, all) = bp.status_and_every_target(&input);
        (report, Some(all))
    } else {
        (bp.status(&input), None)
    };
    if !read.listed {
        // No data: keep what the last good pass found, update only the conditions.
        let mut kept = binding.status.clone().unwrap_or_default();
        kept.observed_generation = report.status.observed_generation;
        kept.policy = report.status.policy.clone();
        kept.conditions = report.status.conditions.clone();
        report.status = kept;
        report.transitions.clear();
    }
    echo_reconcile_request(binding, &mut report.status);
    (report, all)
}

/// What the events of an active binding's pass are computed from.
fn active_summary<'a, 'r>(
    binding: &'a BinAuthzBinding,
    report: &'a StatusReport<'r>,
    desired: &'a DesiredPolicy,
) -> PassSummary<'a, 'r> {
    PassSummary {
        transitions: &report.transitions,
        ready: (report.ready, ready_message(&report.status)),
        previous_ready: previous_ready(binding),
        mode: Some(binding.spec.mode),
        breakglass: Some(binding.spec.breakglass),
        desired: Some(desired),
        policy_check: report.status.policy_check.as_ref().map(|check| {
            let before = binding
                .status
                .as_ref()
                .and_then(|s| s.policy_check.as_ref())
                .map(|c| c.result);
            (check, before)
        }),
    }
}

/// The binding's target gauges.
fn record_targets(
    key: &BindingKey,
    ctx: &Context,
    bp: &BindingPlan<'_>,
    report: &StatusReport<'_>,
) {
    let Some(summary) = &report.status.summary else {
        return;
    };
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

/// Writes the binding's PolicyReports (with `--policy-reports`, while holding the lease).
async fn sync_reports(
    binding: &BinAuthzBinding,
    ctx: &Context,
    pages: impl FnOnce(&BindingRef<'_>) -> Vec<policyreport::Page>,
) {
    let Some(reports) = &ctx.policy_reports else {
        return;
    };
    if !ctx.gates.may_write(&binding.spec.project) {
        return;
    }
    let (Some(namespace), Some(uid)) = (
        binding.meta().namespace.as_deref(),
        binding.meta().uid.as_deref(),
    ) else {
        return;
    };
    let name = binding.name_any();
    let target = BindingRef {
        namespace,
        name: &name,
        uid,
        project: &binding.spec.project,
    };
    let pages = pages(&target);
    reports
        .sync(&ctx.kube, &ctx.telemetry.metrics, &target, &pages)
        .await;
}

/// The binding's mode and readiness gauges (no readiness series without a Ready
/// condition: a suspended binding).
fn record_binding(key: &BindingKey, ctx: &Context, mode: Mode, ready: ReadyReason) {
    let ready = ready
        .writes_ready()
        .then(|| ready.ready_status() == ConditionStatus::True);
    ctx.telemetry
        .metrics
        .set_binding(&key.to_string(), mode, ready);
}

/// The project's coverage gauges: the resources no binding of the project (suspended
/// ones included: they still declare what they name) matches, among those the last lists
/// of the project hold — no read of its own. At most once per 30 s per project.
fn record_coverage(ctx: &Context, project: &str) {
    use std::hash::{Hash, Hasher};
    let all = ctx.bindings.state();
    let inputs = fleet::project_inputs(&all, project, &ctx.tenancy());
    let mut versions: Vec<(Option<&str>, Option<i64>)> = all
        .iter()
        .filter(|b| b.spec.project == project)
        .map(|b| (b.metadata.uid.as_deref(), b.metadata.generation))
        .collect();
    versions.sort_unstable();
    let mut fingerprint = std::collections::hash_map::DefaultHasher::new();
    versions.hash(&mut fingerprint);
    if !ctx.coverage_due(project, fingerprint.finish()) {
        return;
    }
    let listed = ctx.inventory.last_known(project);
    let coverage = plan::coverage(project, &inputs, listed.iter().map(|l| &l.observed));
    for kind in ResourceKind::ALL {
        if coverage.kinds.contains(&kind) {
            ctx.telemetry
                .metrics
                .set_uncovered(project, kind, coverage.of(kind).count);
        }
    }
}

/// How the pass ends: a retry with backoff when Cloud Run failed in a way worth retrying
/// soon, else the next tick (sooner while remediations are pending, or when an exception
/// of the binding expires before: `expiry`).
fn end_pass(
    key: &BindingKey,
    ctx: &Context,
    interval: Duration,
    expiry: Option<Duration>,
    read: BindingRead,
    outcomes: &BTreeMap<ResourceId, WriteOutcome>,
) -> Result<PassEnd, Error> {
    let retry = |cause| {
        Err(Error::CloudRunRetry {
            binding: key.clone(),
            cause: Box::new(cause),
        })
    };
    if let Some(f) = read.failure {
        if read.retry {
            return retry(RetryCause::Pass(f));
        }
        let next_tick = ctx.inventory.ticks().until_next(interval, Instant::now());
        return Ok(PassEnd {
            result: PassResult::Failed,
            action: Action::requeue(expiry.map_or(next_tick, |e| next_tick.min(e))),
        });
    }
    if let Some(unread) = read.findings.unread.first() {
        if read.retry {
            return retry(RetryCause::Region(unread.clone()));
        }
    }
    let retryable = outcomes.iter().find_map(|(id, o)| match o {
        WriteOutcome::Failed(f)
            if matches!(
                f.reason,
                FailureReason::CloudRunUnavailable | FailureReason::ConcurrentUpdate
            ) =>
        {
            Some(RetryCause::Write {
                resource: id.clone(),
                failure: f.clone(),
            })
        }
        _ => None,
    });
    if let Some(cause) = retryable {
        return retry(cause);
    }
    let pending = outcomes.values().any(|o| *o == WriteOutcome::Pending);
    let next_tick = ctx.inventory.ticks().until_next(interval, Instant::now());
    let next_tick = expiry.map_or(next_tick, |e| next_tick.min(e));
    let action = if pending {
        Action::requeue(next_tick.min(VERIFY_PENDING_AFTER))
    } else {
        Action::requeue(next_tick)
    };
    let failed = !read.findings.unread.is_empty()
        || outcomes
            .values()
            .any(|o| matches!(o, WriteOutcome::Failed(_)));
    let result = if failed {
        PassResult::Failed
    } else {
        PassResult::Completed
    };
    Ok(PassEnd { result, action })
}

/// Remediates `writes` through the shared writer; `None` for a write not attempted
/// because the lease was lost.
async fn remediate(
    key: &BindingKey,
    project: &str,
    writes: &[(&ObservedResource, Remediation)],
    live: &HashMap<&ResourceId, &LiveResource>,
    ctx: &Context,
) -> Vec<(ResourceId, Option<WriteOutcome>)> {
    let requests = writes
        .iter()
        .map(|(resource, remediation)| WriteRequest {
            resource,
            remediation: remediation.clone(),
            listed: live.get(&resource.id).copied(),
        })
        .collect();
    // The plan may be older than the bindings: a higher-priority binding created during
    // this pass may own the resource by now (and may already have written it, which
    // changes the etag). Before every write attempt, with the resource as just read, plan
    // that one resource again with the bindings as they are now.
    let still_wanted = |now: &ObservedResource, remediation: &Remediation| {
        let all = ctx.bindings.state();
        fleet::still_owned(
            &fleet::project_inputs(&all, &now.id.project, &ctx.tenancy()),
            &exceptions::assess(ctx, Timestamp::now()),
            key,
            now,
            remediation,
        )
    };
    let may_write = || ctx.gates.may_write(project);
    let done = |id: &ResourceId, written: &Written| {
        ctx.telemetry.health.progress();
        ctx.telemetry.metrics.remediation(id.kind, written.metric());
    };
    remediate_all(&ctx.inventory, requests, &still_wanted, &may_write, &done)
        .await
        .into_iter()
        .map(|(id, written)| (id, written.map(|w| w.outcome())))
        .collect()
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
    if !status::needs_write(current, new, Timestamp::now())
        || !ctx.gates.may_write(&binding.spec.project)
    {
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

/// Who set each breakglass justification of the binding's targets and since when: the
/// ledger kept in memory (or read back from the status), updated with this pass.
fn breakglass_ledger(
    binding: &BinAuthzBinding,
    bp: &BindingPlan<'_>,
    memory: &BindingMemory,
    ctx: &Context,
) -> BreakglassUpdate {
    let now = Timestamp::now();
    let max_age = Some(ctx.breakglass_max_age);
    let previous = memory.breakglass.clone().unwrap_or_else(|| {
        binding
            .status
            .as_ref()
            .map(|s| BreakglassLedger::from_status(s, &binding.spec.project, now, max_age))
            .unwrap_or_default()
    });
    let under_breakglass: Vec<&ObservedResource> = bp
        .targets()
        .iter()
        .filter(|t| t.decision == Decision::Breakglass)
        .map(|t| t.resource)
        .collect();
    // With drift events, the audit entry's principal of the change is known better than
    // Cloud Run's lastModifier (which a later change may have replaced).
    // Every target's entry is consumed, so the map only holds the changes since the last
    // pass.
    let principals = ctx.take_principals(bp.targets().iter().map(|t| &t.resource.id));
    previous.update(under_breakglass, &principals, now, max_age)
}

/// Publishes the pass's events (only while holding the lease). Failures are logged and
/// counted, never fail the pass.
async fn publish(binding: &BinAuthzBinding, ctx: &Context, summary: &PassSummary<'_, '_>) {
    publish_events(binding, ctx, pass_events(summary)).await;
}

/// Publishes `events` on the binding (only while holding the lease).
async fn publish_events(binding: &BinAuthzBinding, ctx: &Context, events: Vec<PassEvent>) {
    if events.is_empty() || !ctx.gates.may_write(&binding.spec.project) {
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
