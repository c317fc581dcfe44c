//! Turns a binding's plan and the pass's outcomes into its status: summary, bounded target
//! list, conditions and transitions.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::conditions::{conditions, Verdict};
use super::effect::{effect, PolicySet, RevisionTimes};
use super::history::{HistoryWalk, StoredKey};
use super::messages::{ready, target_message};
use super::{
    ActiveBinding, Activity, BindingPlan, BreakglassLedger, Decision, PassFailure, PassFindings,
    PlannedTarget, ReadyReason, TargetHistory, TargetRecord, WriteFailure, WriteOutcome,
};
use crate::api::{
    BinAuthzBindingStatus, EffectState, Summary, TargetEffect, TargetState, TargetStatus,
    MAX_STATUS_TARGETS,
};
use crate::resource::{BreakglassChange, ObservedResource, ResourceId};

/// Most unread regions a status lists (the CRD's `maxItems`).
const MAX_UNREAD_LOCATIONS: usize = 64;

/// Everything besides the plan that a binding's status depends on.
#[derive(Clone, Copy, Debug)]
pub struct StatusInput<'a> {
    /// `metadata.generation` of the binding planned.
    pub generation: Option<i64>,
    /// The time of this pass (for `lastSyncTime` and transitions).
    pub now: Timestamp,
    /// A failure that spoiled the pass, if any.
    pub pass_failure: Option<&'a PassFailure>,
    /// Unread regions and the policy checks of the pass (`None`: nothing to report).
    pub findings: Option<&'a PassFindings>,
    /// Outcome of each write, by resource; shared by every binding of a pass is fine. A
    /// remediated target without an entry counts as [`WriteOutcome::Pending`]; entries for
    /// targets the plan did not remediate are ignored.
    pub outcomes: &'a BTreeMap<ResourceId, WriteOutcome>,
    /// The binding's current status (conditions keep their `lastTransitionTime` while
    /// their status holds; a suspended or invalid binding keeps its last summary).
    pub previous: Option<&'a BinAuthzBindingStatus>,
    /// The previous target states; `None` uses those listed in `previous`.
    pub history: Option<&'a TargetHistory>,
    /// Who set each breakglass justification and since when (`None`: not reported).
    pub breakglass: Option<&'a BreakglassLedger>,
    /// Creation times of the revisions receiving traffic ([`super::revisions_to_read`]):
    /// `Some` says, for each target carrying the desired policy, whether the policy is in
    /// effect (`targets[].effect`, `summary.notEffective`); `None` says nothing of it.
    pub revisions: Option<&'a RevisionTimes>,
}

/// A binding's status after a pass, and what changed.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusReport<'r> {
    /// The status to write (compare it with the current one ignoring `lastSyncTime` to
    /// decide whether to write).
    pub status: BinAuthzBindingStatus,
    /// The Ready reason (also in `status.conditions`).
    pub ready: ReadyReason,
    /// Targets whose state changed, or whose deploy became blocked, since `history`;
    /// sorted by resource id. `from` is `None` for targets not in the history.
    pub transitions: Vec<TargetTransition<'r>>,
    /// Every target's state now (complete, unlike `status.targets`): keep it for the next
    /// pass's [`StatusInput::history`].
    pub history: TargetHistory,
}

/// One target whose state changed in this pass.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetTransition<'r> {
    /// The resource, as observed (justification, deploy-blocked message).
    pub resource: &'r ObservedResource,
    /// The previous state, if known.
    pub from: Option<TargetState>,
    /// The state now.
    pub to: TargetState,
    /// Its deploy is blocked now and was not before (or was not known).
    pub newly_deploy_blocked: bool,
    /// The target entry's message.
    pub message: String,
}

/// A target after outcomes are applied.
pub(super) struct Resolved<'p, 'r> {
    pub(super) target: &'p PlannedTarget<'r>,
    pub(super) state: TargetState,
    pub(super) failure: Option<&'p WriteFailure>,
    pub(super) pending: bool,
    pub(super) deploy_blocked: bool,
}

impl BindingPlan<'_> {
    /// The project of the binding's targets (they share it), or empty without targets.
    fn key_project(&self) -> String {
        self.targets
            .first()
            .map(|t| t.resource.id.project.clone())
            .unwrap_or_default()
    }
}

impl<'r> BindingPlan<'r> {
    /// The binding's status after the pass: summary, target list, conditions, and the
    /// transitions since the previous pass.
    ///
    /// # Guarantees
    /// - `targets` holds at most [`MAX_STATUS_TARGETS`] entries: first those needing
    ///   attention (Failed, Conflicted, Drifted), then Remediated, Breakglass and
    ///   deploy-blocked ones, then Superseded, then Compliant; within each group by kind,
    ///   location, name. `targetsTruncated` says whether some were left out.
    /// - `Ready` is True only when the pass succeeded and no owned target drifts, failed or
    ///   conflicts; Breakglass, Excepted, Superseded and deploy-blocked targets do not spoil
    ///   it.
    ///   Precedence of reasons: InvalidSpec, NotPermitted, Suspended, PermissionDenied (pass or write),
    ///   PolicyNotFound (pass or write), CloudRunUnavailable (pass), Conflict,
    ///   RemediationFailed, Drifted.
    /// - `Reconciling` is True while remediations are pending; `Stalled` is True when
    ///   nothing changes without a person: the access and policy failures
    ///   (PermissionDenied, ProjectNotFoundOrForbidden, ApiDisabled, VpcServiceControls,
    ///   PolicyNotFound, OrgPolicyConflict), Conflict, InvalidSpec, NotPermitted, and Drifted in Audit
    ///   mode. A suspended binding has no `Ready` condition (so kstatus reads it as
    ///   settled); its `Reconciling` condition carries the reason and message.
    /// - A condition keeps its `lastTransitionTime` while its status stays the same; a
    ///   target keeps its own while its state stays the same.
    /// - Suspended, invalid and not permitted bindings keep the previous summary, targets, policy and
    ///   `lastSyncTime` (they describe the last pass) and get no transitions.
    pub fn status(&self, input: &StatusInput<'_>) -> StatusReport<'r> {
        self.status_listing(input, MAX_STATUS_TARGETS)
    }

    /// Like [`BindingPlan::status`], but `status.targets` lists every target (same order,
    /// no cut): for reports such as `check`, never for the CRD status, whose list is bounded.
    pub fn full_report(&self, input: &StatusInput<'_>) -> StatusReport<'r> {
        self.status_listing(input, usize::MAX)
    }

    /// [`BindingPlan::status`] and every target's entry (for reports that list them all,
    /// such as PolicyReports), computed once: the status keeps the first
    /// [`MAX_STATUS_TARGETS`] of them, in the same order.
    pub fn status_and_every_target(
        &self,
        input: &StatusInput<'_>,
    ) -> (StatusReport<'r>, Vec<TargetStatus>) {
        let mut report = self.full_report(input);
        let all = report.status.targets.clone();
        if all.len() > MAX_STATUS_TARGETS {
            report.status.targets.truncate(MAX_STATUS_TARGETS);
            report.status.targets_truncated = true;
        }
        (report, all)
    }

    fn status_listing(&self, input: &StatusInput<'_>, limit: usize) -> StatusReport<'r> {
        let now = format_time(input.now);
        let derived;
        let history = match input.history {
            Some(h) => h,
            None => {
                derived = input
                    .previous
                    .map(TargetHistory::from_status)
                    .unwrap_or_default();
                &derived
            }
        };
        let me = match &self.activity {
            Activity::Active(me) => me,
            Activity::Suspended | Activity::Invalid(_) | Activity::NotPermitted(_) => {
                return self.inactive_status(input, &now, history);
            }
        };

        let resolved: Vec<Resolved<'_, 'r>> = self
            .targets
            .iter()
            .filter_map(|t| resolve(t, input.outcomes))
            .collect();
        let mut summary = summarize(&resolved);
        let (reason, message) = ready(me, &summary, &resolved, input.pass_failure, input.findings);
        let pending = resolved.iter().filter(|r| r.pending).count();
        let Walked {
            since,
            transitions,
            records,
            effects,
        } = walk_history(me, &resolved, history, input.now, input.revisions);
        summary.not_effective = u32::try_from(
            effects
                .iter()
                .flatten()
                .filter(|e| e.state == EffectState::NotEffective)
                .count(),
        )
        .unwrap_or(u32::MAX);
        let desired = me.desired.to_string();
        let mut targets = listed_targets(me, &resolved, &since, &effects, &desired, limit);
        if let Some(ledger) = input.breakglass {
            attribute_breakglass(&mut targets, ledger, &self.key_project());
        }

        StatusReport {
            status: BinAuthzBindingStatus {
                observed_generation: input.generation,
                last_sync_time: Some(now.clone()),
                policy: Some(desired),
                conditions: conditions(
                    input,
                    &now,
                    &Verdict {
                        reason,
                        message: &message,
                        pending,
                        stalled: reason.is_stalled_in(me.mode),
                    },
                ),
                summary: Some(summary),
                targets,
                targets_truncated: resolved.len() > limit,
                unread_locations: input
                    .findings
                    .map(|f| {
                        f.unread
                            .iter()
                            .take(MAX_UNREAD_LOCATIONS)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default(),
                policy_check: input.findings.and_then(|f| f.policy_check.clone()),
                org_policy: input.findings.and_then(|f| f.org_policy.clone()),
                last_handled_reconcile_at: input
                    .previous
                    .and_then(|p| p.last_handled_reconcile_at.clone()),
            },
            ready: reason,
            transitions,
            history: TargetHistory(records),
        }
    }

    /// A suspended, invalid or not permitted binding keeps its last summary, targets and
    /// policy; only the conditions say why.
    fn inactive_status(
        &self,
        input: &StatusInput<'_>,
        now: &str,
        history: &TargetHistory,
    ) -> StatusReport<'r> {
        let (reason, message) = match &self.activity {
            Activity::Invalid(errors) => (
                ReadyReason::InvalidSpec,
                format!("the spec is invalid: {errors}; fix the binding"),
            ),
            Activity::NotPermitted(refusal) => (
                ReadyReason::NotPermitted,
                format!("not permitted, nothing is done for this binding: {refusal}"),
            ),
            _ => (
                ReadyReason::Suspended,
                "spec.suspend is true: the operator makes no Cloud Run calls for this binding"
                    .to_owned(),
            ),
        };
        let mut status = input.previous.cloned().unwrap_or_default();
        status.observed_generation = input.generation;
        status.conditions = conditions(
            input,
            now,
            &Verdict {
                reason,
                message: &message,
                pending: 0,
                stalled: reason.is_stalled(),
            },
        );
        StatusReport {
            status,
            ready: reason,
            transitions: Vec::new(),
            history: history.clone(),
        }
    }
}

/// Every target's record against the history: since when it is in its state (by target),
/// the transitions, and the new history's records (sorted by key).
struct Walked<'r> {
    since: Vec<Timestamp>,
    transitions: Vec<TargetTransition<'r>>,
    records: Vec<(StoredKey, TargetRecord)>,
    /// By target: whether its policy is in effect (targets carrying it, when asked).
    effects: Vec<Option<TargetEffect>>,
}

/// One pass over every target for history and transitions.
fn walk_history<'r>(
    me: &ActiveBinding,
    resolved: &[Resolved<'_, 'r>],
    history: &TargetHistory,
    now: Timestamp,
    revisions: Option<&RevisionTimes>,
) -> Walked<'r> {
    let mut since = Vec::with_capacity(resolved.len());
    let mut effects = Vec::with_capacity(resolved.len());
    let mut transitions = Vec::new();
    let mut records = Vec::with_capacity(resolved.len());
    // Targets are sorted by id and share the binding's project: ascending by key.
    let mut walk = HistoryWalk { rest: &history.0 };
    for r in resolved {
        let id = &r.target.resource.id;
        let before = walk.seek(id.kind, &id.location, &id.name);
        let newly_blocked = r.deploy_blocked && !before.is_some_and(|b| b.deploy_blocked);
        let changed = before.map(|b| b.state) != Some(r.state);
        if changed || newly_blocked {
            transitions.push(TargetTransition {
                resource: r.target.resource,
                from: before.map(|b| b.state),
                to: r.state,
                newly_deploy_blocked: newly_blocked,
                message: target_message(me, r),
            });
        }
        // When the operator set the policy: in this pass, or in an earlier one while it
        // has complied since.
        let policy_set = match (r.state, before) {
            (TargetState::Remediated, _) => Some(now),
            (state, Some(b)) if state.complies() && b.state.complies() => b.policy_set,
            _ => None,
        };
        let record = TargetRecord {
            state: r.state,
            deploy_blocked: r.deploy_blocked,
            since: match before {
                Some(b) if !changed => b.since,
                _ => now,
            },
            policy_set,
        };
        effects.push(match revisions {
            Some(revisions) if r.state.complies() => {
                let resource = r.target.resource;
                let set = match policy_set {
                    Some(at) if r.state == TargetState::Remediated => PolicySet::JustWritten(at),
                    Some(at) => PolicySet::ByOperator(at),
                    None => resource
                        .running
                        .changed
                        .map_or(PolicySet::Unknown, PolicySet::NoLaterThan),
                };
                Some(effect(resource, set, revisions))
            }
            _ => None,
        });
        since.push(record.since);
        records.push((StoredKey::from(id), record));
    }
    // Targets arrive sorted by id (kind, project, location, name) and share the
    // binding's project, so they are in (kind, location, name) order already, and a
    // stable sort by rank keeps that order within each rank.
    if !records.is_sorted_by(|a, b| a.0 <= b.0) {
        records.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Walked {
        since,
        transitions,
        records,
        effects,
    }
}

/// The status's target entries: at most `limit`, those needing attention first (the
/// allocating entries are built only for the listed ones).
fn listed_targets(
    me: &ActiveBinding,
    resolved: &[Resolved<'_, '_>],
    since: &[Timestamp],
    effects: &[Option<TargetEffect>],
    desired: &str,
    limit: usize,
) -> Vec<TargetStatus> {
    let mut order: Vec<usize> = (0..resolved.len()).collect();
    order.sort_by_key(|&i| attention_rank(&resolved[i], effects[i].as_ref()));
    order
        .iter()
        .take(limit)
        .map(|&i| {
            let r = &resolved[i];
            let id = &r.target.resource.id;
            TargetStatus {
                kind: id.kind,
                location: id.location.clone(),
                name: id.name.clone(),
                state: r.state,
                // A remediated target carries the desired policy now; the message
                // says what it carried before ("set policy X (was Y)").
                observed: if r.state == TargetState::Remediated {
                    desired.to_owned()
                } else {
                    r.target.resource.policy.to_string()
                },
                desired: desired.to_owned(),
                message: target_message(me, r),
                deploy_blocked: r.deploy_blocked,
                last_transition_time: Some(format_time(since[i])),
                breakglass_by: None,
                breakglass_since: None,
                effect: effects[i].clone(),
            }
        })
        .collect()
}

/// Adds who set each breakglass target's justification and since when.
fn attribute_breakglass(targets: &mut [TargetStatus], ledger: &BreakglassLedger, project: &str) {
    for t in targets
        .iter_mut()
        .filter(|t| t.state == TargetState::Breakglass)
    {
        let id = ResourceId {
            kind: t.kind,
            project: project.to_owned(),
            location: t.location.clone(),
            name: t.name.clone(),
        };
        if let Some(owner) = ledger.get(&id) {
            t.breakglass_by = owner.by.clone();
            t.breakglass_since = Some(format_time(owner.since));
        }
    }
}

/// Applies the write outcome to a planned target; `None` when the resource is gone.
fn resolve<'p, 'r>(
    target: &'p PlannedTarget<'r>,
    outcomes: &'p BTreeMap<ResourceId, WriteOutcome>,
) -> Option<Resolved<'p, 'r>> {
    let mut failure = None;
    let mut pending = false;
    let state = match &target.decision {
        Decision::Compliant => TargetState::Compliant,
        Decision::Drifted => TargetState::Drifted,
        Decision::Breakglass => TargetState::Breakglass,
        Decision::Conflicted { .. } => TargetState::Conflicted,
        Decision::Superseded { .. } => TargetState::Superseded,
        Decision::Excepted { .. } => TargetState::Excepted,
        Decision::Remediate(_) => match outcomes.get(&target.resource.id) {
            Some(WriteOutcome::Succeeded) => TargetState::Remediated,
            Some(WriteOutcome::Gone) => return None,
            Some(WriteOutcome::Failed(f)) => {
                failure = Some(f);
                TargetState::Failed
            }
            Some(WriteOutcome::Pending) | None => {
                pending = true;
                TargetState::Drifted
            }
        },
    };
    // The owner reports a blocked deploy; a superseded binding leaves it to the owner.
    let deploy_blocked =
        target.resource.deploy_blocked.is_some() && state != TargetState::Superseded;
    Some(Resolved {
        target,
        state,
        failure,
        pending,
        deploy_blocked,
    })
}

fn summarize(resolved: &[Resolved<'_, '_>]) -> Summary {
    let mut s = Summary::default();
    let count = |n: &mut u32| *n = n.saturating_add(1);
    for r in resolved {
        count(&mut s.matched);
        if r.state.complies() {
            count(&mut s.compliant);
            if r.target.resource.breakglass.is_some() && !cleared(r) {
                count(&mut s.breakglass);
            }
        }
        match r.state {
            TargetState::Remediated => count(&mut s.remediated),
            TargetState::Drifted => count(&mut s.drifted),
            TargetState::Superseded => count(&mut s.superseded),
            TargetState::Conflicted => count(&mut s.conflicted),
            TargetState::Failed => count(&mut s.failed),
            TargetState::Excepted => count(&mut s.excepted),
            TargetState::Compliant | TargetState::Breakglass => {}
        }
        if r.deploy_blocked {
            count(&mut s.deploy_blocked);
        }
    }
    s
}

/// Whether a remediated target had its justification removed by the write.
fn cleared(r: &Resolved<'_, '_>) -> bool {
    r.state == TargetState::Remediated
        && matches!(&r.target.decision, Decision::Remediate(rem) if rem.breakglass == BreakglassChange::Clear)
}

/// Order of attention in the status target list (lower first).
fn attention_rank(r: &Resolved<'_, '_>, effect: Option<&TargetEffect>) -> u8 {
    match r.state {
        TargetState::Failed | TargetState::Conflicted | TargetState::Drifted => 0,
        TargetState::Remediated | TargetState::Breakglass | TargetState::Excepted => 1,
        _ if r.deploy_blocked => 1,
        _ if effect.is_some_and(|e| e.state == EffectState::NotEffective) => 1,
        TargetState::Superseded => 2,
        TargetState::Compliant => 3,
    }
}

/// RFC 3339 with second precision, as Kubernetes writes times.
pub(super) fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
