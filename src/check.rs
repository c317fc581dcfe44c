//! `check`: a one-shot drift report (and fix) over binding files, without a cluster.
//!
//! # Expected flow
//! 1. Read and validate every binding manifest ([`crate::manifests`]). Any invalid input
//!    ends the run with exit code 1 **before any Cloud Run call**.
//! 2. Read Cloud Run: one list per (project, location, kind) any binding needs (`*`
//!    locations resolved through the project's regions), plus an existence check of every
//!    named policy.
//! 3. Plan with the same planner as the controller, across all bindings (priorities and
//!    conflicts included), and report.
//! 4. With `--fix`: one remediation write per drifted resource owned by an `Enforce`
//!    binding (Audit bindings are only reported), then read and plan again and report the
//!    result, so the exit code describes Cloud Run as it is after the fixes.
//!
//! # Exit codes
//! 0: every target complies (after fixes). 2: drift remains (Audit mode, conflicts, no
//! `--fix`). 1: an error (invalid input, permission denied, policy not found, Cloud Run
//! unavailable after retries, a failed fix).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::{
    Mode, OrgPolicyState, OrgPolicyStatus, PolicyCheck, PolicyCheckResult, ResourceKind, Summary,
    TargetState, UnreadLocation,
};
use crate::cloudrun::{self, CloudRunArgs, CloudRunClient, LiveResource};
use crate::fleet::read::{read_binding, BindingRead};
use crate::fleet::remediate::{remediate_all, WriteRequest, Written};
use crate::fleet::{self, inventory::SharedInventory};
use crate::manifests::{self, LoadedBinding};
use crate::plan::{
    self, BindingInput, BindingKey, PassFailure, ReadyReason, StatusInput, WriteOutcome,
};
use crate::policy::DesiredPolicy;
use crate::resource::{ObservedResource, Remediation, ResourceId};

/// How long a list serves the bindings of one check pass: every pass asks for lists
/// started at or after its own start, so this only bounds how long a list is kept.
const LIST_TTL: Duration = Duration::from_secs(3600);

/// Flags of `binauthz-operator check`.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// Binding manifests: files, directories (searched recursively for *.yaml and *.yml)
    /// or `-` for stdin. Documents of other kinds are skipped.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// Fix drift: set the policy on every drifted resource owned by an Enforce binding,
    /// then check again. Audit bindings are only reported.
    #[arg(long, env = "BINAUTHZ_CHECK_FIX")]
    pub fix: bool,

    /// Report format: `table` for people, `json` or `yaml` for machines (schema in README).
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table, env = "BINAUTHZ_CHECK_OUTPUT")]
    pub output: OutputFormat,

    /// In the table, list compliant targets too (by default only those that need
    /// attention or changed).
    #[arg(long)]
    pub wide: bool,

    /// Start an embedded Cloud Run emulator seeded from this file and check against it
    /// (no Google credentials, no network). See `binauthz-operator emulator --help`.
    #[arg(long, value_name = "SEED.yaml", conflicts_with = "cloud_run_endpoint")]
    pub emulator: Option<PathBuf>,

    #[command(flatten)]
    pub cloud_run: CloudRunArgs,
}

/// Report formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for people (colour on a terminal unless NO_COLOR is set).
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// Why `check` could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Some inputs are invalid (each problem has been printed).
    #[error("{count} problem(s) in the binding manifests; fix them and run again (no Cloud Run call was made)")]
    InvalidInput {
        /// How many problems.
        count: usize,
    },
    /// The Cloud Run client could not be set up.
    #[error(transparent)]
    Client(#[from] cloudrun::Error),
    /// The embedded emulator could not start.
    #[error("cannot start the embedded emulator from {seed}: {detail}")]
    Emulator {
        /// The seed file.
        seed: String,
        /// What went wrong.
        detail: String,
    },
    /// The report could not be written.
    #[error("cannot write the report: {0}")]
    Output(String),
}

/// The process exit code of a finished check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub enum Verdict {
    /// Every target complies. Exit 0.
    Compliant,
    /// Drift remains. Exit 2.
    DriftRemains,
    /// Something failed. Exit 1.
    Error,
}

impl Verdict {
    /// The exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Compliant => 0,
            Self::Error => 1,
            Self::DriftRemains => 2,
        }
    }
}

/// Runs `check` and prints its report on stdout (progress and problems on stderr).
pub async fn check(args: CheckArgs) -> Result<Verdict, CheckError> {
    let CheckArgs {
        files,
        fix,
        output,
        wide,
        emulator,
        cloud_run,
    } = args;

    let loaded = manifests::load(&files);
    if !loaded.errors.is_empty() {
        let mut err = std::io::stderr().lock();
        for problem in &loaded.errors {
            let _ = writeln!(err, "error: {problem}");
        }
        return Err(CheckError::InvalidInput {
            count: loaded.errors.len(),
        });
    }

    // The embedded emulator lives until the end of this function.
    let mut config = cloud_run.config()?;
    let _emulator = match &emulator {
        Some(seed) => {
            let handle = start_emulator(seed).await?;
            let rates = config.rate_limits;
            let timeout = config.request_timeout;
            config = cloudrun::CloudRunConfig::emulator(&handle.url());
            config.rate_limits = rates;
            config.request_timeout = timeout;
            Some(handle)
        }
        None => None,
    };
    let client = CloudRunClient::new(config).await?;
    let checker = Checker {
        inventory: SharedInventory::new(client, LIST_TTL),
        bindings: loaded.bindings,
        interactive: std::io::stderr().is_terminal(),
    };

    let no_outcomes = BTreeMap::new();
    let first = checker.pass().await;
    let mut report = Report::new(&checker, &first, false, &no_outcomes);
    if fix {
        let changes = checker.fix(&first).await;
        if changes.is_empty() {
            report.fix = true;
            report.changes = Some(Vec::new());
        } else {
            // Read again: the final report describes Cloud Run as it is now. Fixes that
            // failed or are still running keep their outcome, so a failure is an error
            // (exit 1), not mere drift.
            let unfinished: BTreeMap<ResourceId, WriteOutcome> = changes
                .iter()
                .filter(|c| !matches!(c.outcome, WriteOutcome::Succeeded | WriteOutcome::Gone))
                .map(|c| (c.id.clone(), c.outcome.clone()))
                .collect();
            let before = report;
            let after = checker.pass().await;
            report = Report::new(&checker, &after, true, &unfinished);
            report.count_remediated(&changes);
            report.before = Some(Box::new(before));
            report.changes = Some(changes);
        }
    }
    print_report(&report, output, wide).map_err(|e| CheckError::Output(e.to_string()))?;
    Ok(report.verdict)
}

async fn start_emulator(
    seed: &std::path::Path,
) -> Result<crate::emulator::EmulatorHandle, CheckError> {
    let error = |detail: String| CheckError::Emulator {
        seed: seed.display().to_string(),
        detail,
    };
    let seed_state = crate::emulator::Seed::from_file(seed).map_err(|e| error(e.to_string()))?;
    let config = crate::emulator::EmulatorConfig {
        seed: seed_state,
        ..Default::default()
    };
    crate::emulator::start(config)
        .await
        .map_err(|e| error(e.to_string()))
}

/// Shared state of one `check` run.
struct Checker {
    /// Every read goes through it, as in the controller: bindings that need the same list
    /// share it.
    inventory: SharedInventory,
    bindings: Vec<LoadedBinding>,
    interactive: bool,
}

/// What one read-and-plan pass saw.
struct Pass {
    /// Every resource listed, by id.
    live: BTreeMap<ResourceId, Arc<LiveResource>>,
    /// What each active binding's reads produced.
    reads: BTreeMap<BindingKey, BindingRead>,
}

impl Pass {
    fn failure(&self, key: &BindingKey) -> Option<&PassFailure> {
        self.reads.get(key).and_then(|r| r.failure.as_ref())
    }
}

impl Checker {
    fn key(binding: &LoadedBinding) -> BindingKey {
        BindingKey::new(
            binding
                .binding
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            binding.binding.metadata.name.clone().unwrap_or_default(),
        )
    }

    /// Reads everything the bindings need from Cloud Run, on lists started now, through
    /// the same reader as the controller's passes ([`read_binding`]).
    async fn pass(&self) -> Pass {
        let not_before = Instant::now();
        let reads: Vec<(BindingKey, BindingRead)> =
            futures::future::join_all(self.active().map(|b| async move {
                let read = read_binding(&self.inventory, &b.binding.spec, not_before).await;
                (Self::key(b), read)
            }))
            .await;
        let mut live = BTreeMap::new();
        for (_, read) in &reads {
            for list in &read.lists {
                for r in list.iter() {
                    live.insert(r.observed.id.clone(), Arc::clone(r));
                }
            }
        }
        Pass {
            live,
            reads: reads.into_iter().collect(),
        }
    }

    fn active(&self) -> impl Iterator<Item = &LoadedBinding> {
        self.bindings.iter().filter(|b| !b.binding.spec.suspend)
    }

    /// Every binding, as the planner takes them.
    fn inputs(&self) -> Vec<BindingInput<'_>> {
        self.bindings
            .iter()
            .map(|b| BindingInput {
                key: Self::key(b),
                spec: &b.binding.spec,
            })
            .collect()
    }

    /// Applies every remediation of the pass owned by an Enforce binding whose reads allow
    /// writing, through the controller's writer; returns what was done, in resource order.
    async fn fix(&self, pass: &Pass) -> Vec<Change> {
        let inputs = self.inputs();
        let Ok(plan) = plan::plan(&inputs, pass.live.values().map(|l| &l.observed)) else {
            return Vec::new();
        };
        let requests: Vec<WriteRequest<'_>> = plan
            .writes()
            .into_iter()
            .filter(|w| {
                w.bindings
                    .iter()
                    .any(|b| pass.reads.get(b).is_some_and(BindingRead::may_write))
            })
            .filter_map(|w| {
                let listed = pass.live.get(&w.resource.id)?;
                Some(WriteRequest {
                    resource: w.resource,
                    remediation: w.remediation,
                    listed: Some(listed.as_ref()),
                })
            })
            .collect();
        if requests.is_empty() {
            return Vec::new();
        }
        let wanted: BTreeMap<ResourceId, (Arc<LiveResource>, DesiredPolicy)> = requests
            .iter()
            .filter_map(|r| {
                let live = pass.live.get(&r.resource.id)?;
                Some((
                    r.resource.id.clone(),
                    (Arc::clone(live), r.remediation.desired.clone()),
                ))
            })
            .collect();
        let progress = self.interactive.then(|| Progress::new(requests.len()));
        // The bindings of a check never change while it runs: every planned write stays
        // wanted (the controller re-plans here, because its bindings can change).
        let still_wanted = |_: &ObservedResource, _: &Remediation| true;
        let may_write = || true;
        let done = |id: &ResourceId, _: &Written| {
            if let Some(p) = &progress {
                p.tick(id);
            }
        };
        let written =
            remediate_all(&self.inventory, requests, &still_wanted, &may_write, &done).await;
        if let Some(p) = progress {
            p.finish();
        }
        let mut changes: Vec<Change> = written
            .into_iter()
            .filter_map(|(id, w)| {
                let (live, desired) = wanted.get(&id)?;
                Some(Change::new(live, desired, w?))
            })
            .collect();
        changes.sort_by(|a, b| a.id.cmp(&b.id));
        changes
    }
}

/// A progress line on stderr for long fixes (terminals only).
struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("fixing {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self { bar }
    }

    fn tick(&self, id: &ResourceId) {
        self.bar.set_message(format!("{} {}", id.kind, id.name));
        self.bar.inc(1);
    }

    fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// One remediation `--fix` attempted.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    #[serde(skip)]
    id: ResourceId,
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
    outcome: WriteOutcome,
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
    fn new(live: &LiveResource, desired: &DesiredPolicy, written: Written) -> Self {
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
}

impl Report {
    fn new(
        checker: &Checker,
        pass: &Pass,
        fix: bool,
        outcomes: &BTreeMap<ResourceId, WriteOutcome>,
    ) -> Self {
        let inputs = checker.inputs();
        let sources: BTreeMap<BindingKey, String> = checker
            .bindings
            .iter()
            .map(|b| (Checker::key(b), b.source.to_string()))
            .collect();
        let now = jiff::Timestamp::now();
        let mut bindings = Vec::new();
        let mut verdict = Verdict::Compliant;
        // Keys are unique (the manifest reader refuses duplicates), so planning succeeds.
        if let Ok(plan) = plan::plan(&inputs, pass.live.values().map(|l| &l.observed)) {
            for BindingInput { key, spec } in &inputs {
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
                });
                let ready = status.ready;
                let mut message = status
                    .status
                    .conditions
                    .first()
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                if !fix && ready == ReadyReason::Drifted && spec.mode == Mode::Enforce {
                    message =
                        message.replace("(fixes in progress)", "(run with --fix to fix them)");
                }
                verdict = verdict.max_with(match ready {
                    ReadyReason::Compliant | ReadyReason::Suspended => Verdict::Compliant,
                    ReadyReason::Drifted | ReadyReason::Conflict => Verdict::DriftRemains,
                    _ => Verdict::Error,
                });
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
                    })
                    .collect();
                bindings.push(BindingReport {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    source: sources.get(key).cloned().unwrap_or_default(),
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
                });
            }
        }
        bindings.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let summary = bindings
            .iter()
            .fold(Summary::default(), |acc, b| add(acc, &b.summary));
        Self {
            api_version: "binauthz.dev/check-report/v1",
            fix,
            bindings,
            summary,
            changes: None,
            before: None,
            exit_code: verdict.exit_code(),
            verdict,
        }
    }
}

impl Report {
    /// The re-read after `--fix` finds the fixed resources complying; as in a binding's
    /// status after a pass that fixed them, they are `Remediated` (and still count as
    /// complying), so the report says what this run did.
    fn count_remediated(&mut self, changes: &[Change]) {
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
        self.summary = self
            .bindings
            .iter()
            .fold(Summary::default(), |acc, b| add(acc, &b.summary));
    }
}

impl Verdict {
    /// The worse of two verdicts (Error > DriftRemains > Compliant).
    fn max_with(self, other: Self) -> Self {
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

fn add(a: Summary, b: &Summary) -> Summary {
    Summary {
        matched: a.matched + b.matched,
        compliant: a.compliant + b.compliant,
        remediated: a.remediated + b.remediated,
        drifted: a.drifted + b.drifted,
        breakglass: a.breakglass + b.breakglass,
        superseded: a.superseded + b.superseded,
        conflicted: a.conflicted + b.conflicted,
        failed: a.failed + b.failed,
        deploy_blocked: a.deploy_blocked + b.deploy_blocked,
    }
}

fn print_report(report: &Report, format: OutputFormat, wide: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        }
        OutputFormat::Yaml => {
            let text = serde_yaml_ng::to_string(report).map_err(std::io::Error::other)?;
            out.write_all(text.as_bytes())?;
        }
        OutputFormat::Table => {
            let style = Style::detect();
            if let Some(before) = &report.before {
                writeln!(out, "{}", style.heading("Drift found"))?;
                table(&mut out, before, wide, style)?;
                writeln!(out)?;
            }
            if let Some(changes) = report.changes.as_deref().filter(|c| !c.is_empty()) {
                writeln!(out, "{}", style.heading("Fixed"))?;
                changes_table(&mut out, changes, style)?;
                writeln!(out)?;
                writeln!(out, "{}", style.heading("After fixing"))?;
            }
            table(&mut out, report, wide, style)?;
        }
    }
    out.flush()
}

/// Terminal styling: colour only on a terminal and when NO_COLOR is unset.
#[derive(Clone, Copy)]
struct Style {
    colour: bool,
}

impl Style {
    fn detect() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            colour: std::io::stdout().is_terminal() && !no_color,
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn heading(self, text: &str) -> String {
        self.paint("1", &format!("== {text}"))
    }

    fn state(self, state: TargetState, width: usize) -> String {
        let text = format!("{:<width$}", state.to_string());
        let code = match state {
            TargetState::Compliant | TargetState::Remediated => "32",
            TargetState::Drifted | TargetState::Breakglass | TargetState::Superseded => "33",
            TargetState::Conflicted | TargetState::Failed => "31",
        };
        self.paint(code, &text)
    }
}

fn table(
    out: &mut impl std::io::Write,
    report: &Report,
    wide: bool,
    style: Style,
) -> std::io::Result<()> {
    for b in &report.bindings {
        writeln!(
            out,
            "{}  project {}  {}  policy {}  Ready={} ({}): {}",
            style.paint("1", &format!("{}/{}", b.namespace, b.name)),
            b.project,
            match b.mode {
                Mode::Enforce => "Enforce",
                Mode::Audit => "Audit",
            },
            b.policy,
            b.ready,
            b.reason,
            b.message
        )?;
        for unread in &b.unread_locations {
            writeln!(
                out,
                "  {} region {} not read ({}): {}",
                style.paint("31", "!"),
                unread.location,
                unread.reason,
                unread.message
            )?;
        }
        if let Some(check) = b
            .policy_check
            .as_ref()
            .filter(|c| c.result != PolicyCheckResult::Verified)
        {
            writeln!(out, "  policy {:?}: {}", check.result, check.message)?;
        }
        if let Some(org) = &b.org_policy {
            writeln!(out, "  {}", org_policy_line(&b.project, org))?;
        }
        // By default the table lists what needs attention or changed: not the compliant
        // targets, nor those another binding owns.
        let listed = |t: &TargetRow| {
            wide || t.deploy_blocked
                || !matches!(t.state, TargetState::Compliant | TargetState::Superseded)
        };
        let rows: Vec<&TargetRow> = b.targets.iter().filter(|t| listed(t)).collect();
        if !rows.is_empty() {
            let cells: Vec<[String; 6]> = rows
                .iter()
                .map(|t| {
                    [
                        t.kind.to_string(),
                        t.location.clone(),
                        t.name.clone(),
                        t.state.to_string(),
                        format!("{} -> {}", t.observed, t.desired),
                        if t.deploy_blocked && t.message.is_empty() {
                            "deploy blocked".into()
                        } else {
                            t.message.clone()
                        },
                    ]
                })
                .collect();
            let header = [
                "KIND",
                "LOCATION",
                "NAME",
                "STATE",
                "OBSERVED -> DESIRED",
                "MESSAGE",
            ];
            let mut widths = header.map(str::len);
            for row in &cells {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            write!(out, "  ")?;
            for (w, h) in widths.iter().zip(header).take(5) {
                write!(out, "{h:<w$}  ")?;
            }
            writeln!(out, "{}", header[5])?;
            for (row, t) in cells.iter().zip(&rows) {
                write!(out, "  ")?;
                for (i, (w, cell)) in widths.iter().zip(row).take(5).enumerate() {
                    if i == 3 {
                        write!(out, "{}  ", style.state(t.state, *w))?;
                    } else {
                        write!(out, "{cell:<w$}  ")?;
                    }
                }
                writeln!(out, "{}", row[5])?;
            }
        }
        let hidden = b.targets.len() - rows.len();
        if hidden > 0 {
            let superseded = b
                .targets
                .iter()
                .filter(|t| !listed(t) && t.state == TargetState::Superseded)
                .count();
            let what = match (hidden - superseded, superseded) {
                (c, 0) => format!("{c} compliant"),
                (0, s) => format!("{s} superseded"),
                (c, s) => format!("{c} compliant and {s} superseded"),
            };
            writeln!(out, "  ({what} target(s) not listed; --wide lists them)")?;
        }
    }
    let s = &report.summary;
    let verdict = match report.verdict {
        Verdict::Compliant => style.paint("32", "all targets comply"),
        Verdict::DriftRemains => style.paint("33", "drift remains"),
        Verdict::Error => style.paint("31", "errors"),
    };
    writeln!(
        out,
        "{} binding(s), {} target(s): {} compliant, {} remediated, {} drifted, {} breakglass, {} superseded, {} conflicted, {} failed, {} deploy(s) blocked — {verdict} (exit {})",
        report.bindings.len(),
        s.matched,
        s.compliant,
        s.remediated,
        s.drifted,
        s.breakglass,
        s.superseded,
        s.conflicted,
        s.failed,
        s.deploy_blocked,
        report.exit_code
    )
}

/// One line on a project's organization policy constraint: a security team wants to see
/// the preventive control off as much as on.
fn org_policy_line(project: &str, org: &OrgPolicyStatus) -> String {
    match org.state {
        OrgPolicyState::Enforced if org.allowed_values.is_empty() => format!(
            "org policy {}: enforced in project {project}, every value denied",
            cloudrun::ORG_POLICY_CONSTRAINT
        ),
        OrgPolicyState::Enforced => format!(
            "org policy {}: enforced in project {project}, allows {}",
            cloudrun::ORG_POLICY_CONSTRAINT,
            org.allowed_values.join(", ")
        ),
        OrgPolicyState::NotSet => format!(
            "org policy {}: not set in project {project} (the preventive control is off)",
            cloudrun::ORG_POLICY_CONSTRAINT
        ),
        OrgPolicyState::Unreadable => format!(
            "org policy {}: unreadable in project {project}: {}",
            cloudrun::ORG_POLICY_CONSTRAINT,
            org.message
        ),
    }
}

fn changes_table(
    out: &mut impl std::io::Write,
    changes: &[Change],
    style: Style,
) -> std::io::Result<()> {
    for c in changes {
        let result = match c.result {
            ChangeResult::Applied => style.paint("32", "applied"),
            ChangeResult::AlreadySatisfied => "already satisfied".to_owned(),
            ChangeResult::Pending => style.paint("33", "pending"),
            ChangeResult::Gone => "gone".to_owned(),
            ChangeResult::Failed => style.paint("31", "FAILED"),
        };
        write!(
            out,
            "  {} {}/{} (project {}): {} -> {}: {result}",
            c.kind, c.location, c.name, c.project, c.from, c.to
        )?;
        if c.message.is_empty() {
            writeln!(out)?;
        } else {
            writeln!(out, ": {}", c.message)?;
        }
    }
    Ok(())
}
