//! The report model — what `-o json` and `-o yaml` print — and the verdict it comes to.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::{
    Mode, OrgPolicyStatus, PolicyCheck, ResourceKind, Summary, TargetEffect, TargetState,
    UnreadLocation,
};
use crate::cloudrun::LiveResource;
use crate::fleet::remediate::Written;
use crate::fleet::{self};
use crate::manifests::LoadedBinding;
use crate::plan::{self, BindingInput, BindingKey, ReadyReason, StatusInput, WriteOutcome};
use crate::policy::DesiredPolicy;
use crate::resource::ResourceId;

use super::output::FileLine;
use super::run::{Checker, Pass};
use super::Verdict;

/// One remediation `--fix` attempted.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    #[serde(skip)]
    pub(super) id: ResourceId,
    /// Service, Job or WorkerPool.
    pub kind: ResourceKind,
    /// Project of the resource.
    pub project: String,
    /// Region.
    pub location: String,
    /// Resource name.
    pub name: String,
    /// The policy it carried.
    pub from: String,
    /// The policy set.
    pub to: String,
    /// What happened.
    pub result: ChangeResult,
    /// Cloud Run's message when it failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip)]
    pub(super) outcome: WriteOutcome,
}

/// What became of one fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ChangeResult {
    /// Written and confirmed.
    Applied,
    /// Somebody else fixed it meanwhile; nothing written.
    AlreadySatisfied,
    /// Written; Cloud Run's operation had not finished when the check ended.
    Pending,
    /// The resource was deleted meanwhile.
    Gone,
    /// Failed.
    Failed,
}

impl Change {
    pub(super) fn new(live: &LiveResource, desired: &DesiredPolicy, written: Written) -> Self {
        let id = live.observed.id.clone();
        let outcome = written.outcome();
        let (result, message) = match written {
            Written::Applied => (ChangeResult::Applied, String::new()),
            Written::AlreadySatisfied => (ChangeResult::AlreadySatisfied, String::new()),
            Written::Pending { operation } => (
                ChangeResult::Pending,
                format!("operation {operation} still running"),
            ),
            Written::Withdrawn => (
                ChangeResult::Pending,
                "another binding owns it now; not written".to_owned(),
            ),
            Written::Gone => (
                ChangeResult::Gone,
                "the resource was deleted meanwhile".to_owned(),
            ),
            Written::Failed(f) => (ChangeResult::Failed, f.message),
        };
        Self {
            kind: id.kind,
            project: id.project.clone(),
            location: id.location.clone(),
            name: id.name.clone(),
            from: live.observed.policy.to_string(),
            to: desired.to_string(),
            id,
            result,
            message,
            outcome,
        }
    }
}

/// The machine-readable report (`--output json|yaml`). Its schema is documented in the
/// README and only grows.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Schema identifier.
    pub api_version: &'static str,
    /// Whether `--fix` was given.
    pub fix: bool,
    /// Per binding, in namespace/name order.
    pub bindings: Vec<BindingReport>,
    /// Totals over every binding's targets.
    pub summary: Summary,
    /// Per project a binding names: the resources no binding matches.
    pub coverage: Vec<CoverageReport>,
    /// The fixes made (only with `--fix`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<Change>>,
    /// The report before the fixes (only with `--fix` when something was fixed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Box<Report>>,
    /// The overall result.
    pub verdict: Verdict,
    /// The process exit code.
    pub exit_code: u8,
}

/// One binding in the report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingReport {
    /// Kubernetes namespace (`default` when the manifest names none).
    pub namespace: String,
    /// Binding name.
    pub name: String,
    /// Where it was read.
    pub source: String,
    /// GCP project.
    pub project: String,
    /// Enforce or Audit.
    pub mode: Mode,
    /// The desired policy: `default` or the policy name.
    pub policy: String,
    /// The Ready condition: True, False or Unknown (suspended).
    pub ready: String,
    /// The Ready reason (Compliant, Drifted, Conflict, PermissionDenied, ...).
    pub reason: String,
    /// What holds and what to do.
    pub message: String,
    /// Counts of targets by state.
    pub summary: Summary,
    /// Every matched target, those needing attention first.
    pub targets: Vec<TargetRow>,
    /// Regions that could not be read (every other region was checked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unread_locations: Vec<UnreadLocation>,
    /// Whether the named policy could be verified (absent for `useDefault`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_check: Option<PolicyCheck>,
    /// The project's organization policy constraint on Binary Authorization policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_policy: Option<OrgPolicyStatus>,
    /// Where it was read, for the CI formats (`source` says it for people).
    #[serde(skip)]
    pub(super) declared_at: Option<FileLine>,
    /// What this binding alone comes to.
    #[serde(skip)]
    pub(super) verdict: Verdict,
}

/// One matched resource of one binding.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRow {
    /// Service, Job or WorkerPool.
    pub kind: ResourceKind,
    /// Region.
    pub location: String,
    /// Resource name.
    pub name: String,
    /// Compliant, Remediated, Drifted, Breakglass, Superseded, Conflicted or Failed.
    pub state: TargetState,
    /// The policy it carries: `none`, `default` or the policy name.
    pub observed: String,
    /// The policy it must carry.
    pub desired: String,
    /// Details.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Its latest deploy was refused by Binary Authorization.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deploy_blocked: bool,
    /// Whether the policy is in effect for what it runs (targets carrying it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<TargetEffect>,
}

/// The Cloud Run resources of one project that no binding matches (not an error: the
/// list a security team works through).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageReport {
    /// GCP project, as the bindings name it.
    pub project: String,
    /// The kinds listed (those some binding of the project selects).
    pub kinds: Vec<ResourceKind>,
    /// The regions whose resources were listed.
    pub locations: Vec<String>,
    /// Resources listed, every kind together.
    pub listed: usize,
    /// Resources no binding matches, every kind together.
    pub uncovered: usize,
    /// Per kind listed: how many no binding matches, and the first names.
    pub by_kind: Vec<UncoveredKind>,
    /// The project's organization policy constraint on Binary Authorization policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_policy: Option<OrgPolicyStatus>,
}

/// The uncovered resources of one kind.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UncoveredKind {
    /// Service, Job or WorkerPool.
    pub kind: ResourceKind,
    /// Resources of this kind listed.
    pub listed: usize,
    /// How many no binding matches.
    pub uncovered: usize,
    /// The first of them (at most 20), `location/name`, sorted.
    pub first: Vec<String>,
}

impl Report {
    pub(super) fn new(
        checker: &Checker,
        pass: &Pass,
        fix: bool,
        outcomes: &BTreeMap<ResourceId, WriteOutcome>,
    ) -> Self {
        let inputs = checker.inputs();
        let sources: BTreeMap<BindingKey, &LoadedBinding> = checker
            .bindings
            .iter()
            .map(|b| (Checker::key(b), b))
            .collect();
        let now = jiff::Timestamp::now();
        let mut bindings = Vec::new();
        let mut verdict = Verdict::Compliant;
        // Keys are unique (the manifest reader refuses duplicates), so planning succeeds.
        let exceptions = checker.exceptions(now);
        if let Ok(plan) = plan::plan_with_exceptions(
            &inputs,
            &exceptions,
            pass.live.values().map(|l| &l.observed),
        ) {
            for BindingInput { key, spec, .. } in &inputs {
                let Some(bp) = plan.binding(key) else {
                    continue;
                };
                // Writes the reads refused for good are failed, as in the controller.
                let mut outcomes = outcomes.clone();
                outcomes.extend(fleet::refused_writes(bp, pass.failure(key)));
                let status = bp.full_report(&StatusInput {
                    generation: None,
                    now,
                    pass_failure: pass.failure(key),
                    findings: pass.reads.get(key).map(|r| &r.findings),
                    outcomes: &outcomes,
                    previous: None,
                    history: None,
                    breakglass: None,
                    revisions: Some(&pass.revisions),
                });
                let ready = status.ready;
                let mut message = plan::standing(&status.status.conditions)
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                if !fix && ready == ReadyReason::Drifted && spec.mode == Mode::Enforce {
                    message =
                        message.replace("(fixes in progress)", "(run with --fix to fix them)");
                }
                let binding_verdict = match ready {
                    ReadyReason::Compliant | ReadyReason::Suspended => Verdict::Compliant,
                    ReadyReason::Drifted | ReadyReason::Conflict => Verdict::DriftRemains,
                    _ => Verdict::Error,
                };
                verdict = verdict.max_with(binding_verdict);
                let desired = spec
                    .desired_policy()
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                let targets = status
                    .status
                    .targets
                    .iter()
                    .map(|t| TargetRow {
                        kind: t.kind,
                        location: t.location.clone(),
                        name: t.name.clone(),
                        state: t.state,
                        observed: t.observed.clone(),
                        desired: t.desired.clone(),
                        message: if !fix
                            && t.state == TargetState::Drifted
                            && spec.mode == Mode::Enforce
                        {
                            "--fix sets it".to_owned()
                        } else {
                            t.message.clone()
                        },
                        deploy_blocked: t.deploy_blocked,
                        effect: t.effect.clone(),
                    })
                    .collect();
                bindings.push(BindingReport {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    source: sources
                        .get(key)
                        .map(|b| b.source.to_string())
                        .unwrap_or_default(),
                    project: spec.project.clone(),
                    mode: spec.mode,
                    policy: desired,
                    ready: ready.ready_status().as_str().to_owned(),
                    reason: ready.as_str().to_owned(),
                    message,
                    summary: status.status.summary.unwrap_or_default(),
                    targets,
                    unread_locations: status.status.unread_locations,
                    policy_check: status.status.policy_check,
                    org_policy: status.status.org_policy,
                    // CI annotations point at the policy the targets must carry.
                    declared_at: sources.get(key).and_then(|b| {
                        FileLine::of(&b.source).map(|at| FileLine {
                            line: b.policy_line.or(at.line),
                            ..at
                        })
                    }),
                    verdict: binding_verdict,
                });
            }
        }
        bindings.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let summary = bindings.iter().map(|b| &b.summary).sum();
        let coverage = coverage_of(&inputs, pass, &bindings);
        Self {
            api_version: "binauthz.dev/check-report/v1",
            fix,
            bindings,
            summary,
            coverage,
            changes: None,
            before: None,
            exit_code: verdict.exit_code(),
            verdict,
        }
    }
}

/// Coverage of every project the bindings name, from the resources the pass listed (no
/// read of its own), with the organization policy state a binding's read found.
fn coverage_of(
    inputs: &[BindingInput<'_>],
    pass: &Pass,
    bindings: &[BindingReport],
) -> Vec<CoverageReport> {
    let projects: std::collections::BTreeSet<&str> =
        inputs.iter().map(|i| i.spec.project.as_str()).collect();
    projects
        .into_iter()
        .map(|project| {
            let c = plan::coverage(project, inputs, pass.live.values().map(|l| &l.observed));
            let by_kind: Vec<UncoveredKind> = ResourceKind::ALL
                .into_iter()
                .zip(c.listed)
                .filter(|(kind, _)| c.kinds.contains(kind))
                .map(|(kind, listed)| UncoveredKind {
                    kind,
                    listed,
                    uncovered: c.of(kind).count,
                    first: c.of(kind).first.clone(),
                })
                .collect();
            CoverageReport {
                project: project.to_owned(),
                kinds: c.kinds.clone(),
                locations: c.locations.iter().cloned().collect(),
                listed: c.listed.iter().sum(),
                uncovered: c.total_uncovered(),
                by_kind,
                org_policy: bindings
                    .iter()
                    .filter(|b| b.project == project)
                    .find_map(|b| b.org_policy.clone()),
            }
        })
        .collect()
}

impl Report {
    /// The re-read after `--fix` finds the fixed resources complying; as in a binding's
    /// status after a pass that fixed them, they are `Remediated` (and still count as
    /// complying), so the report says what this run did.
    pub(super) fn count_remediated(&mut self, changes: &[Change]) {
        let applied: BTreeMap<&ResourceId, &Change> = changes
            .iter()
            .filter(|c| c.result == ChangeResult::Applied)
            .map(|c| (&c.id, c))
            .collect();
        for binding in &mut self.bindings {
            for target in &mut binding.targets {
                let id = ResourceId {
                    kind: target.kind,
                    project: binding.project.clone(),
                    location: target.location.clone(),
                    name: target.name.clone(),
                };
                let Some(change) = applied.get(&id) else {
                    continue;
                };
                if matches!(
                    target.state,
                    TargetState::Compliant | TargetState::Breakglass
                ) {
                    target.state = TargetState::Remediated;
                    // As a binding's status says it after the pass that fixed it.
                    target.message = format!("set policy {} (was {})", change.to, change.from);
                    binding.summary.remediated += 1;
                }
            }
        }
        self.summary = self.bindings.iter().map(|b| &b.summary).sum();
    }
}

impl Verdict {
    /// The worse of two verdicts (Error > DriftRemains > Compliant).
    pub(super) fn max_with(self, other: Self) -> Self {
        let rank = |v: Self| match v {
            Self::Compliant => 0,
            Self::DriftRemains => 1,
            Self::Error => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}
