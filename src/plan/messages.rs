//! What a binding's status says to people: the Ready reason and message, and each
//! target's message.

use std::collections::BTreeSet;

use super::status::Resolved;
use super::{ActiveBinding, BindingKey, Decision, PassFailure, PassFindings, ReadyReason};
use crate::api::{FailureReason, Mode, Summary, TargetState};
use crate::resource::BreakglassChange;

/// Longest message in a condition or target entry (the CRD's `maxLength`).
pub(super) const MAX_MESSAGE_CHARS: usize = 1024;

/// Short words for a failed write in a target's message.
fn describe(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::PermissionDenied => "permission denied",
        FailureReason::ApiDisabled => "API disabled",
        FailureReason::VpcServiceControls => "refused by VPC Service Controls",
        FailureReason::ProjectNotFoundOrForbidden => "project not found or forbidden",
        FailureReason::PolicyNotFound => "policy not found",
        FailureReason::OrgPolicyConflict => "not allowed",
        FailureReason::CloudRunUnavailable => "Cloud Run unavailable",
        FailureReason::ConcurrentUpdate => "kept changing concurrently",
        FailureReason::Rejected => "rejected",
    }
}

/// How soon a cause of failure is reported: what a person must fix first (access, then
/// the policy), then an outage. Writes failing for other reasons are RemediationFailed.
fn precedence(reason: FailureReason) -> Option<u8> {
    match reason {
        FailureReason::ConcurrentUpdate | FailureReason::Rejected => None,
        other => Some(other.rank()),
    }
}

/// The binding-level cause of failure, if any: from the pass, the unread regions and the
/// writes, the one of highest precedence (the pass's first among equals).
fn failure_cause(
    resolved: &[Resolved<'_, '_>],
    pass_failure: Option<&PassFailure>,
    findings: Option<&PassFindings>,
) -> Option<(FailureReason, String)> {
    let mut best: Option<(u8, FailureReason, String)> = None;
    let mut offer = |reason: FailureReason, what: &dyn Fn() -> String| {
        let Some(rank) = precedence(reason) else {
            return;
        };
        if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
            best = Some((rank, reason, what()));
        }
    };
    if let Some(f) = pass_failure {
        offer(f.reason, &|| f.message.clone());
    }
    let unread = findings.map_or(&[][..], |f| f.unread.as_slice());
    if let Some(first) = unread
        .iter()
        .min_by_key(|u| precedence(u.reason).unwrap_or(u8::MAX))
    {
        offer(first.reason, &|| {
            let mut what = format!(
                "{} region(s) could not be read, every other region is reconciled: {}: {}",
                unread.len(),
                first.location,
                first.message
            );
            if unread.len() > 1 {
                let others: Vec<&str> = unread
                    .iter()
                    .filter(|u| u.location != first.location)
                    .map(|u| u.location.as_str())
                    .collect();
                what.push_str(&format!(" (also {})", others.join(", ")));
            }
            what
        });
    }
    // Writes run in the binding's project: the write of highest precedence, once per
    // reason (messages are formatted only for a new best). A write that failed for an
    // outage is a failed remediation, retried: not the binding's cause.
    for r in resolved {
        if let Some(f) = r
            .failure
            .filter(|f| f.reason != FailureReason::CloudRunUnavailable)
        {
            offer(f.reason, &|| {
                format!("{}: {}", r.target.resource.id, f.message)
            });
        }
    }
    best.map(|(_, reason, what)| (reason, what))
}

pub(super) fn ready(
    me: &ActiveBinding,
    s: &Summary,
    resolved: &[Resolved<'_, '_>],
    pass_failure: Option<&PassFailure>,
    findings: Option<&PassFindings>,
) -> (ReadyReason, String) {
    let owned = s.matched - s.superseded;
    // The message of a failure is complete (Google's words and what to do): shown as is.
    if let Some((reason, what)) = failure_cause(resolved, pass_failure, findings) {
        return (ReadyReason::of_failure(reason), what);
    }
    if s.conflicted > 0 {
        let others: BTreeSet<&BindingKey> = resolved
            .iter()
            .filter_map(|r| match &r.target.decision {
                Decision::Conflicted { with } => Some(with.iter()),
                _ => None,
            })
            .flatten()
            .collect();
        return (
            ReadyReason::Conflict,
            format!(
                "{} of {owned} targets are also claimed with a different policy by equal-priority binding(s) {} and are left untouched; align the policies or give one binding a higher spec.priority",
                s.conflicted,
                join(others)
            ),
        );
    }
    if s.failed > 0 {
        let first = resolved
            .iter()
            .find_map(|r| {
                let f = r.failure?;
                Some(format!("{}: {}", r.target.resource.id, f.message))
            })
            .unwrap_or_default();
        return (
            ReadyReason::RemediationFailed,
            format!(
                "{} of {owned} targets could not be fixed; first: {first}; the next pass retries",
                s.failed
            ),
        );
    }
    if s.drifted > 0 {
        let how = match me.mode {
            Mode::Audit => "Audit mode: reported, not fixed",
            Mode::Enforce => "fixes in progress",
        };
        return (
            ReadyReason::Drifted,
            format!(
                "{} of {owned} targets drift from policy {} ({how})",
                s.drifted, me.desired
            ),
        );
    }
    let mut message = format!("{}/{owned} targets comply", s.compliant);
    if s.matched == 0 {
        message.push_str("; no Cloud Run resource matches the selectors");
    }
    for (n, what) in [
        (s.remediated, "remediated in this pass"),
        (s.breakglass, "under breakglass"),
        (s.excepted, "excepted by a BinAuthzException"),
        (
            s.deploy_blocked,
            "with a deploy blocked by Binary Authorization",
        ),
        (s.superseded, "superseded by higher-priority bindings"),
    ] {
        if n > 0 {
            message.push_str(&format!("; {n} {what}"));
        }
    }
    (ReadyReason::Compliant, message)
}

pub(super) fn target_message(me: &ActiveBinding, r: &Resolved<'_, '_>) -> String {
    let resource = r.target.resource;
    let justification = resource.breakglass.as_deref();
    let mut message = match (&r.target.decision, r.state) {
        (Decision::Compliant, _) => String::new(),
        (Decision::Breakglass, _) => {
            format!(
                "breakglass justification: {}",
                justification.unwrap_or_default()
            )
        }
        (Decision::Drifted, _) if me.desired.is_satisfied_by(&resource.policy) => format!(
            "Audit mode: breakglass justification {:?} would be cleared",
            justification.unwrap_or_default()
        ),
        (Decision::Drifted, _) => format!(
            "Audit mode: carries {}, should carry {}; not fixed",
            resource.policy, me.desired
        ),
        (Decision::Conflicted { with }, _) => format!(
            "equal-priority binding(s) {} want a different policy; left untouched",
            join(with.iter())
        ),
        (Decision::Excepted { by }, _) => format!(
            "excepted by BinAuthzException {} until {}: carries {}, the policy {} is enforced when it expires; reason: {}",
            by.key, by.until, resource.policy, me.desired, by.reason
        ),
        (Decision::Superseded { by, priority }, _) => {
            format!("owned by {} (priority {priority})", join(by.iter()))
        }
        (Decision::Remediate(rem), state) => {
            let mut m = match state {
                TargetState::Remediated => {
                    format!("set policy {} (was {})", rem.desired, resource.policy)
                }
                TargetState::Failed => {
                    let f = r.failure.map_or(("rejected", ""), |f| {
                        (describe(f.reason), f.message.as_str())
                    });
                    format!("setting policy {} failed: {}: {}", rem.desired, f.0, f.1)
                }
                _ => format!(
                    "fix in progress: setting policy {} (was {})",
                    rem.desired, resource.policy
                ),
            };
            if rem.breakglass == BreakglassChange::Clear && justification.is_some() {
                m.push_str(if state == TargetState::Remediated {
                    "; breakglass justification cleared"
                } else {
                    "; clearing the breakglass justification"
                });
            }
            m
        }
    };
    if r.deploy_blocked {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str("latest deploy refused by Binary Authorization: ");
        message.push_str(resource.deploy_blocked.as_deref().unwrap_or_default());
    }
    bounded(message)
}

/// `ns/a, ns/b`: binding keys for people.
fn join<'k>(keys: impl IntoIterator<Item = &'k BindingKey>) -> String {
    let mut out = String::new();
    for key in keys {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&key.namespace);
        out.push('/');
        out.push_str(&key.name);
    }
    out
}

/// Cuts a message to the CRD's limit (in characters), marking the cut with `…`.
pub(super) fn bounded(mut message: String) -> String {
    if message.chars().count() > MAX_MESSAGE_CHARS {
        if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS - 1) {
            message.truncate(cut);
            message.push('…');
        }
    }
    message
}
