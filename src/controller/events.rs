//! Turns one pass's transitions into Kubernetes Events: one event per reason per pass, listing the resources, with what to do.
//!
//! # Contract
//! - Only transitions make events: a target entering a state (or a deploy newly blocked),
//!   or the binding's Ready reason changing to a failure that needs attention. A steady
//!   state makes none, however many passes run.
//! - Aggregated: at most one event per reason per pass, naming the resources (as many as
//!   fit in the 1 kB note, then "and N more").
//! - The note says what happened and what a person can do about it.

use std::fmt::Write as _;

use kube::runtime::events::EventType;

use crate::api::{BreakglassMode, Mode, PolicyCheck, PolicyCheckResult, ResourceKind, TargetState};
use std::time::Duration;

use jiff::Timestamp;

use crate::plan::{BreakglassUpdate, ReadyReason, TargetTransition};
use crate::policy::DesiredPolicy;

/// Longest note Kubernetes keeps (events.k8s.io `note` is at most 1 kB).
const MAX_NOTE_BYTES: usize = 1024;

/// Event reasons the controller publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventReason {
    /// Targets fixed in this pass (Normal).
    Remediated,
    /// Targets newly drifting: Audit mode, or a fix not confirmed yet.
    DriftDetected,
    /// Remediations that failed.
    RemediationFailed,
    /// Targets newly claimed by an equal-priority binding with another policy.
    Conflict,
    /// Targets newly carrying a breakglass justification.
    Breakglass,
    /// Breakglass justifications newly older than `--breakglass-max-age`.
    BreakglassOverdue,
    /// Targets whose latest deploy was newly refused by Binary Authorization.
    DeployBlocked,
    /// Drifted targets newly excepted by an active BinAuthzException (Normal).
    Excepted,
    /// Targets no longer excepted (their exception expired or went): the operator enforces
    /// (Normal).
    ExceptionExpired,
    /// The pass failed: Cloud Run refused the operator.
    PermissionDenied,
    /// The Cloud Run Admin API is disabled in the project.
    ApiDisabled,
    /// A VPC Service Controls perimeter refuses the operator.
    VpcServiceControls,
    /// The project does not exist or the operator cannot see it.
    ProjectNotFoundOrForbidden,
    /// The named policy does not exist.
    PolicyNotFound,
    /// The organization policy constraint does not allow the desired policy.
    OrgPolicyConflict,
    /// The named policy cannot be read; writes go ahead unverified.
    PolicyUnverifiable,
    /// Cloud Run did not answer.
    CloudRunUnavailable,
    /// The spec breaks a rule.
    InvalidSpec,
    /// No tenancy grant allows the binding.
    NotPermitted,
}

impl EventReason {
    /// The CamelCase reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Remediated => "Remediated",
            Self::DriftDetected => "DriftDetected",
            Self::RemediationFailed => "RemediationFailed",
            Self::Conflict => "Conflict",
            Self::Breakglass => "Breakglass",
            Self::BreakglassOverdue => "BreakglassOverdue",
            Self::DeployBlocked => "DeployBlocked",
            Self::Excepted => "Excepted",
            Self::ExceptionExpired => "ExceptionExpired",
            Self::PermissionDenied => "PermissionDenied",
            Self::ApiDisabled => "ApiDisabled",
            Self::VpcServiceControls => "VpcServiceControls",
            Self::ProjectNotFoundOrForbidden => "ProjectNotFoundOrForbidden",
            Self::PolicyNotFound => "PolicyNotFound",
            Self::OrgPolicyConflict => "OrgPolicyConflict",
            Self::PolicyUnverifiable => "PolicyUnverifiable",
            Self::CloudRunUnavailable => "CloudRunUnavailable",
            Self::InvalidSpec => "InvalidSpec",
            Self::NotPermitted => "NotPermitted",
        }
    }
}

/// One event to publish on the binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassEvent {
    /// Normal or Warning.
    pub type_: EventType,
    /// Why.
    pub reason: EventReason,
    /// What the controller was doing: `Remediate` (writing Cloud Run) or `Check` (reading
    /// and comparing).
    pub action: &'static str,
    /// For people: what happened, to which resources, what to do.
    pub note: String,
}

impl PassEvent {
    /// As kube's event type.
    pub fn to_kube(&self) -> kube::runtime::events::Event {
        kube::runtime::events::Event {
            type_: self.type_,
            reason: self.reason.as_str().to_owned(),
            note: Some(self.note.clone()),
            action: self.action.to_owned(),
            secondary: None,
        }
    }
}

/// What the events of one pass are computed from.
#[derive(Clone, Copy, Debug)]
pub struct PassSummary<'a, 'r> {
    /// Targets whose state changed (or whose deploy became blocked) in this pass.
    pub transitions: &'a [TargetTransition<'r>],
    /// The Ready reason now, and its message.
    pub ready: (ReadyReason, &'a str),
    /// The Ready reason before the pass (`None` when the binding had no status).
    pub previous_ready: Option<&'a str>,
    /// Enforce or Audit (`None` for suspended or invalid bindings).
    pub mode: Option<Mode>,
    /// What the binding does with breakglass justifications (`None` for suspended or
    /// invalid bindings).
    pub breakglass: Option<BreakglassMode>,
    /// The desired policy (`None` for invalid bindings).
    pub desired: Option<&'a DesiredPolicy>,
    /// The named policy's check in this pass, and the result the previous status had.
    pub policy_check: Option<(&'a PolicyCheck, Option<PolicyCheckResult>)>,
}

/// The events of one pass, in a fixed order (by reason).
pub fn pass_events(pass: &PassSummary<'_, '_>) -> Vec<PassEvent> {
    let desired = pass
        .desired
        .map_or_else(|| "the desired policy".to_owned(), ToString::to_string);
    let remediated = entering(pass, TargetState::Remediated);
    [
        remediated_event(&remediated, &desired),
        drift_event(pass, &desired),
        failure_event(pass, &desired),
        conflict_event(pass),
        breakglass_event(pass, &remediated),
        deploy_blocked_event(pass),
        excepted_event(pass),
        exception_expired_event(pass, &desired),
        policy_unverifiable_event(pass),
        binding_event(pass),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The transitions of the pass into `state` (from another state, or new).
fn entering<'a, 'r>(
    pass: &PassSummary<'a, 'r>,
    state: TargetState,
) -> Vec<&'a TargetTransition<'r>> {
    pass.transitions
        .iter()
        .filter(|t| t.to == state && t.from != Some(state))
        .collect()
}

/// Remediated: the targets fixed in this pass.
fn remediated_event(remediated: &[&TargetTransition<'_>], desired: &str) -> Option<PassEvent> {
    if remediated.is_empty() {
        return None;
    }
    let head = format!(
        "Set Binary Authorization policy {desired} on {} resource(s): ",
        remediated.len()
    );
    let tail = ". Cloud Run enforces it from each resource's next deploy.";
    let items = remediated
        .iter()
        .map(|t| format!("{} (was {})", short(t), t.resource.policy));
    Some(event(
        EventType::Normal,
        EventReason::Remediated,
        "Remediate",
        &head,
        items,
        tail,
    ))
}

/// DriftDetected: the targets newly drifting (Audit mode, or a fix in progress).
fn drift_event(pass: &PassSummary<'_, '_>, desired: &str) -> Option<PassEvent> {
    let drifted = entering(pass, TargetState::Drifted);
    if drifted.is_empty() {
        return None;
    }
    let (head, tail) = match pass.mode {
        Some(Mode::Audit) => (
            format!("{} resource(s) do not carry Binary Authorization policy {desired} (Audit mode: reported, not fixed): ", drifted.len()),
            format!(". Fix them (e.g. {}) or set spec.mode: Enforce to let the operator fix them.", gcloud_fix(&drifted, pass.desired)),
        ),
        _ => (
            format!("{} resource(s) do not carry Binary Authorization policy {desired}; a fix is in progress: ", drifted.len()),
            ". The next pass verifies the fix; nothing to do unless this repeats.".to_owned(),
        ),
    };
    let items = drifted
        .iter()
        .map(|t| format!("{} (carries {})", short(t), t.resource.policy));
    Some(event(
        EventType::Warning,
        EventReason::DriftDetected,
        "Check",
        &head,
        items,
        &tail,
    ))
}

/// RemediationFailed: the targets whose fix failed in this pass.
fn failure_event(pass: &PassSummary<'_, '_>, desired: &str) -> Option<PassEvent> {
    // With the policy missing or forbidden nothing was attempted: the binding's own event
    // says it all.
    let failed = match pass.ready.0 {
        ReadyReason::PolicyNotFound | ReadyReason::OrgPolicyConflict => Vec::new(),
        _ => entering(pass, TargetState::Failed),
    };
    if failed.is_empty() {
        return None;
    }
    let head = format!(
        "Could not set Binary Authorization policy {desired} on {} resource(s): ",
        failed.len()
    );
    let tail = ". The operator retries with backoff; see each target's message in the status (permissions, quota, or a policy Cloud Run refuses).";
    let items = failed
        .iter()
        .map(|t| format!("{}: {}", short(t), t.message));
    Some(event(
        EventType::Warning,
        EventReason::RemediationFailed,
        "Remediate",
        &head,
        items,
        tail,
    ))
}

/// Conflict: the targets newly claimed with a different policy by an equal-priority binding.
fn conflict_event(pass: &PassSummary<'_, '_>) -> Option<PassEvent> {
    let conflicted = entering(pass, TargetState::Conflicted);
    if conflicted.is_empty() {
        return None;
    }
    let head = format!("{} resource(s) are claimed with a different policy by an equal-priority binding and are left untouched: ", conflicted.len());
    let tail = ". Align the policies of the bindings or give one of them a higher spec.priority.";
    let items = conflicted
        .iter()
        .map(|t| format!("{} ({})", short(t), t.message));
    Some(event(
        EventType::Warning,
        EventReason::Conflict,
        "Check",
        &head,
        items,
        tail,
    ))
}

/// Breakglass: the targets newly reported under breakglass.
fn breakglass_event(
    pass: &PassSummary<'_, '_>,
    remediated: &[&TargetTransition<'_>],
) -> Option<PassEvent> {
    // Entering Breakglass (except right after a remediation, which reported it already), or
    // remediated with the justification left in place (`breakglass: Allow`).
    let mut breakglass: Vec<&TargetTransition<'_>> = entering(pass, TargetState::Breakglass)
        .into_iter()
        .filter(|t| t.from != Some(TargetState::Remediated))
        .collect();
    if pass.breakglass == Some(BreakglassMode::Allow) {
        breakglass.extend(
            remediated
                .iter()
                .filter(|t| t.resource.breakglass.is_some()),
        );
        breakglass.sort_by(|a, b| a.resource.id.cmp(&b.resource.id));
    }
    if breakglass.is_empty() {
        return None;
    }
    let head = format!(
        "{} resource(s) carry a breakglass justification (their policy is still enforced): ",
        breakglass.len()
    );
    let tail = ". Review the justification; once the emergency is over, redeploy normally or set spec.breakglass: Clear to have the operator remove it.";
    let items = breakglass.iter().map(|t| {
        format!(
            "{}: {:?}",
            short(t),
            t.resource.breakglass.as_deref().unwrap_or_default()
        )
    });
    Some(event(
        EventType::Warning,
        EventReason::Breakglass,
        "Check",
        &head,
        items,
        tail,
    ))
}

/// Excepted: drifted targets an active BinAuthzException newly covers.
fn excepted_event(pass: &PassSummary<'_, '_>) -> Option<PassEvent> {
    let excepted = entering(pass, TargetState::Excepted);
    if excepted.is_empty() {
        return None;
    }
    let head = format!(
        "{} resource(s) drift and are excepted by a BinAuthzException; they are reported, not fixed, until it expires: ",
        excepted.len()
    );
    let tail = ". The operator enforces at the exception's expiresAt; `kubectl get binauthzexceptions` lists them.";
    let items = excepted
        .iter()
        .map(|t| format!("{} ({})", short(t), t.message));
    Some(event(
        EventType::Normal,
        EventReason::Excepted,
        "Check",
        &head,
        items,
        tail,
    ))
}

/// ExceptionExpired: targets that were excepted and no longer are.
fn exception_expired_event(pass: &PassSummary<'_, '_>, desired: &str) -> Option<PassEvent> {
    let ended: Vec<&TargetTransition<'_>> = pass
        .transitions
        .iter()
        .filter(|t| t.from == Some(TargetState::Excepted) && t.to != TargetState::Excepted)
        .collect();
    if ended.is_empty() {
        return None;
    }
    let head = format!(
        "The BinAuthzException covering {} resource(s) expired or was removed; the binding enforces policy {desired} on them now: ",
        ended.len()
    );
    let tail =
        ". To except them again, create a new BinAuthzException with a reason and an expiresAt.";
    let items = ended.iter().map(|t| format!("{} ({})", short(t), t.to));
    Some(event(
        EventType::Normal,
        EventReason::ExceptionExpired,
        "Remediate",
        &head,
        items,
        tail,
    ))
}

/// BreakglassOverdue: justifications that became older than `max_age` in this pass, with
/// who set them and when.
pub fn breakglass_overdue_event(
    update: &BreakglassUpdate,
    max_age: Duration,
    now: Timestamp,
) -> Option<PassEvent> {
    if update.newly_overdue.is_empty() {
        return None;
    }
    let head = format!(
        "{} breakglass justification(s) have been in place longer than {} (--breakglass-max-age): ",
        update.newly_overdue.len(),
        crate::plan::human_duration(max_age)
    );
    let tail = ". Ask their owners to deploy an attested image (the next deploy clears the justification), or set spec.breakglass: Clear.";
    let items = update.newly_overdue.iter().map(|id| {
        let owner = update.ledger.get(id);
        format!(
            "{} {}/{}: set by {} at {} ({} ago): {:?}",
            id.kind,
            id.location,
            id.name,
            owner
                .and_then(|o| o.by.as_deref())
                .unwrap_or("an unknown principal"),
            owner.map(|o| o.since.to_string()).unwrap_or_default(),
            crate::plan::human_duration(owner.map_or(Duration::ZERO, |o| o.age(now))),
            owner
                .and_then(|o| o.justification.as_deref())
                .unwrap_or_default()
        )
    });
    Some(event(
        EventType::Warning,
        EventReason::BreakglassOverdue,
        "Check",
        &head,
        items,
        tail,
    ))
}

/// DeployBlocked: the targets whose latest deploy Binary Authorization newly refused.
fn deploy_blocked_event(pass: &PassSummary<'_, '_>) -> Option<PassEvent> {
    let blocked: Vec<&TargetTransition<'_>> = pass
        .transitions
        .iter()
        .filter(|t| t.newly_deploy_blocked)
        .collect();
    if blocked.is_empty() {
        return None;
    }
    let head = format!("The latest deploy of {} resource(s) was refused by Binary Authorization; they keep serving their previous revision: ", blocked.len());
    let tail = ". Attest or sign the image so the policy admits it (or correct the policy), then deploy again.";
    let items = blocked.iter().map(|t| {
        format!(
            "{}: {}",
            short(t),
            t.resource.deploy_blocked.as_deref().unwrap_or_default()
        )
    });
    Some(event(
        EventType::Warning,
        EventReason::DeployBlocked,
        "Check",
        &head,
        items,
        tail,
    ))
}

/// PolicyUnverifiable: said once, when the check starts failing (the writes go ahead
/// regardless).
fn policy_unverifiable_event(pass: &PassSummary<'_, '_>) -> Option<PassEvent> {
    let (check, before) = pass.policy_check?;
    let starts_failing = check.result == PolicyCheckResult::Unverifiable
        && before != Some(PolicyCheckResult::Unverifiable);
    starts_failing.then(|| PassEvent {
        type_: EventType::Warning,
        reason: EventReason::PolicyUnverifiable,
        action: "Check",
        note: bounded(check.message.clone()),
    })
}

/// The binding's own event when its Ready reason changes to a failure that needs
/// attention.
fn binding_event(pass: &PassSummary<'_, '_>) -> Option<PassEvent> {
    let (reason, message) = pass.ready;
    let event_reason = match reason {
        ReadyReason::PermissionDenied => EventReason::PermissionDenied,
        ReadyReason::ApiDisabled => EventReason::ApiDisabled,
        ReadyReason::VpcServiceControls => EventReason::VpcServiceControls,
        ReadyReason::ProjectNotFoundOrForbidden => EventReason::ProjectNotFoundOrForbidden,
        ReadyReason::PolicyNotFound => EventReason::PolicyNotFound,
        ReadyReason::OrgPolicyConflict => EventReason::OrgPolicyConflict,
        ReadyReason::CloudRunUnavailable => EventReason::CloudRunUnavailable,
        ReadyReason::InvalidSpec => EventReason::InvalidSpec,
        ReadyReason::NotPermitted => EventReason::NotPermitted,
        _ => return None,
    };
    (pass.previous_ready != Some(reason.as_str())).then(|| PassEvent {
        type_: EventType::Warning,
        reason: event_reason,
        action: "Check",
        note: bounded(message.to_owned()),
    })
}

/// `Service us-central1/checkout`: the resource's project is the binding's.
fn short(t: &TargetTransition<'_>) -> String {
    let id = &t.resource.id;
    format!("{} {}/{}", id.kind, id.location, id.name)
}

/// The gcloud command that fixes one of `targets` by hand.
fn gcloud_fix(targets: &[&TargetTransition<'_>], desired: Option<&DesiredPolicy>) -> String {
    let flag = match desired {
        Some(DesiredPolicy::Named(name)) => format!("--binary-authorization={name}"),
        _ => "--binary-authorization=default".to_owned(),
    };
    let Some(first) = targets.first() else {
        return String::new();
    };
    let id = &first.resource.id;
    let group = match id.kind {
        ResourceKind::Service => "run services",
        ResourceKind::Job => "run jobs",
        ResourceKind::WorkerPool => "beta run worker-pools",
    };
    format!(
        "gcloud {group} update {} --region {} --project {} {flag}",
        id.name, id.location, id.project
    )
}

/// An event whose note is `head`, the items joined by "; " (as many as fit), and `tail`.
fn event(
    type_: EventType,
    reason: EventReason,
    action: &'static str,
    head: &str,
    items: impl ExactSizeIterator<Item = String>,
    tail: &str,
) -> PassEvent {
    let total = items.len();
    let mut note = head.to_owned();
    let mut listed = 0;
    for item in items {
        let remaining = total - listed;
        // Room for this item, the "and N more" marker and the tail.
        let reserve = format!("; and {remaining} more").len() + tail.len();
        let sep = if listed == 0 { "" } else { "; " };
        if note.len() + sep.len() + item.len() + reserve > MAX_NOTE_BYTES {
            break;
        }
        note.push_str(sep);
        note.push_str(&item);
        listed += 1;
    }
    if listed < total {
        let sep = if listed == 0 { "" } else { "; " };
        let _ = write!(note, "{sep}and {} more", total - listed);
    }
    note.push_str(tail);
    PassEvent {
        type_,
        reason,
        action,
        note: bounded(note),
    }
}

/// Cuts a note to the byte limit on a character boundary.
fn bounded(mut note: String) -> String {
    if note.len() > MAX_NOTE_BYTES {
        let mut cut = MAX_NOTE_BYTES - '…'.len_utf8();
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push('…');
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ObservedPolicy;
    use crate::resource::{ObservedResource, ResourceId};

    fn resource(name: &str) -> ObservedResource {
        ObservedResource {
            id: ResourceId {
                kind: ResourceKind::Service,
                project: "acme-prod".into(),
                location: "us-central1".into(),
                name: name.into(),
            },
            labels: Default::default(),
            deleted: false,
            policy: ObservedPolicy::None,
            breakglass: None,
            deploy_blocked: None,
            last_change: None,
            running: Default::default(),
        }
    }

    fn transition<'r>(
        r: &'r ObservedResource,
        from: Option<TargetState>,
        to: TargetState,
    ) -> TargetTransition<'r> {
        TargetTransition {
            resource: r,
            from,
            to,
            newly_deploy_blocked: false,
            message: String::new(),
        }
    }

    fn summary<'a, 'r>(transitions: &'a [TargetTransition<'r>], mode: Mode) -> PassSummary<'a, 'r> {
        PassSummary {
            transitions,
            ready: (ReadyReason::Compliant, "ok"),
            previous_ready: Some("Compliant"),
            mode: Some(mode),
            breakglass: Some(BreakglassMode::Allow),
            desired: Some(&DesiredPolicy::ProjectDefault),
            policy_check: None,
        }
    }

    #[test]
    fn many_remediations_make_one_event_that_lists_them_within_a_kilobyte() {
        let resources: Vec<ObservedResource> = (0..200)
            .map(|i| resource(&format!("service-{i:03}")))
            .collect();
        let transitions: Vec<_> = resources
            .iter()
            .map(|r| transition(r, Some(TargetState::Compliant), TargetState::Remediated))
            .collect();
        let events = pass_events(&summary(&transitions, Mode::Enforce));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (e.type_, e.reason, e.action),
            (EventType::Normal, EventReason::Remediated, "Remediate")
        );
        assert!(e.note.len() <= MAX_NOTE_BYTES, "{}", e.note.len());
        assert!(e.note.starts_with("Set Binary Authorization policy default on 200 resource(s): Service us-central1/service-000 (was none); "), "{}", e.note);
        assert!(
            e.note.contains(" more. Cloud Run enforces it"),
            "{}",
            e.note
        );
    }

    #[test]
    fn steady_states_make_no_events() {
        let r = resource("a");
        let transitions = [transition(
            &r,
            Some(TargetState::Drifted),
            TargetState::Drifted,
        )];
        assert!(pass_events(&summary(&transitions, Mode::Audit)).is_empty());
        let mut s = summary(&[], Mode::Enforce);
        s.ready = (ReadyReason::PermissionDenied, "denied; grant it");
        s.previous_ready = Some("PermissionDenied");
        assert!(
            pass_events(&s).is_empty(),
            "the same failure twice is not a transition"
        );
        s.previous_ready = Some("Compliant");
        let events = pass_events(&s);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, EventReason::PermissionDenied);
        assert_eq!(events[0].note, "denied; grant it");
    }

    #[test]
    fn audit_drift_says_how_to_fix_it() {
        let r = resource("checkout");
        let transitions = [transition(&r, None, TargetState::Drifted)];
        let events = pass_events(&summary(&transitions, Mode::Audit));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, EventReason::DriftDetected);
        assert_eq!(
            events[0].note,
            "1 resource(s) do not carry Binary Authorization policy default (Audit mode: reported, not fixed): Service us-central1/checkout (carries none). Fix them (e.g. gcloud run services update checkout --region us-central1 --project acme-prod --binary-authorization=default) or set spec.mode: Enforce to let the operator fix them."
        );
    }

    #[test]
    fn a_remediated_resource_that_keeps_its_justification_is_reported_under_breakglass() {
        let mut r = resource("hotfix");
        r.breakglass = Some("INC-1".into());
        let transitions = [transition(
            &r,
            Some(TargetState::Compliant),
            TargetState::Remediated,
        )];
        let mut s = summary(&transitions, Mode::Enforce);
        let reasons = |s: &PassSummary<'_, '_>| -> Vec<EventReason> {
            pass_events(s).into_iter().map(|e| e.reason).collect()
        };
        assert_eq!(
            reasons(&s),
            [EventReason::Remediated, EventReason::Breakglass]
        );
        s.breakglass = Some(BreakglassMode::Clear);
        assert_eq!(
            reasons(&s),
            [EventReason::Remediated],
            "cleared by the write"
        );
    }

    #[test]
    fn an_unverifiable_policy_is_said_once() {
        let check = PolicyCheck {
            result: PolicyCheckResult::Unverifiable,
            message: "cannot read policy x; the write goes ahead".into(),
        };
        let reasons = |before: Option<PolicyCheckResult>| -> Vec<EventReason> {
            let mut pass = summary(&[], Mode::Enforce);
            pass.policy_check = Some((&check, before));
            pass_events(&pass).into_iter().map(|e| e.reason).collect()
        };
        assert_eq!(reasons(None), [EventReason::PolicyUnverifiable]);
        assert_eq!(
            reasons(Some(PolicyCheckResult::Verified)),
            [EventReason::PolicyUnverifiable]
        );
        // Still unverifiable on the next pass: nothing new to say.
        assert!(reasons(Some(PolicyCheckResult::Unverifiable)).is_empty());
    }
}
