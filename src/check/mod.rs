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
//!
//! # Parts
//! - `cli`: the flags.
//! - `run`: the passes — reads through the shared inventory, planning, and the fixes.
//! - `report`: the report model (what `-o json`/`-o yaml` print) and the verdict.
//! - `table`: the report as tables on a terminal.
//! - `output`: the report for CI tools — SARIF, JUnit XML, GitHub annotations (`validate`
//!   uses it too).
//! - `embedded` (feature `emulator`): `--emulator`, an emulator in this process.

mod cli;
#[cfg(feature = "emulator")]
mod embedded;
pub mod output;
mod report;
mod run;
mod table;

pub use cli::{CheckArgs, OutputFormat};
pub use report::{BindingReport, Change, ChangeResult, Report, TargetRow};

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use serde::Serialize;

use crate::cloudrun::{self, CloudRunClient};
use crate::fleet::inventory::SharedInventory;
use crate::manifests::{self};
use crate::plan::WriteOutcome;
use crate::resource::ResourceId;

use run::Checker;
use table::{print_entries, print_report};

/// How long a list serves the bindings of one check pass: every pass asks for lists
/// started at or after its own start, so this only bounds how long a list is kept.
const LIST_TTL: Duration = Duration::from_secs(3600);

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
    #[cfg(feature = "emulator")]
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

/// Says on stderr which exceptions of the files are not honoured (refused or expired), so
/// none is silently ignored.
fn warn_unhonoured_exceptions(checker: &Checker) {
    let exceptions = checker.exceptions(jiff::Timestamp::now());
    for (key, standing) in exceptions.standings() {
        if !matches!(standing, crate::plan::Standing::Active { .. }) {
            let source = checker
                .exceptions
                .iter()
                .find(|e| {
                    e.exception.metadata.name.as_deref() == Some(key.name.as_str())
                        && e.exception
                            .metadata
                            .namespace
                            .as_deref()
                            .unwrap_or("default")
                            == key.namespace
                })
                .map(|e| e.source.to_string())
                .unwrap_or_default();
            eprintln!(
                "warning: {source}: exception {key} is {}: {}",
                standing.state(),
                standing.message()
            );
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
        exception_max_duration,
        #[cfg(feature = "emulator")]
        emulator,
        cloud_run,
    } = args;

    let loaded = manifests::load(&files);
    if !loaded.errors.is_empty() {
        let _ = loaded.write_errors(&mut std::io::stderr().lock());
        let entries: Vec<output::Entry> = loaded
            .errors
            .iter()
            .map(output::Entry::manifest_error)
            .collect();
        output::closed_pipe_is_fine(print_entries(&entries, output, false))
            .map_err(|e| CheckError::Output(e.to_string()))?;
        return Err(CheckError::InvalidInput {
            count: loaded.errors.len(),
        });
    }

    let config = cloud_run.config()?;
    // The embedded emulator lives until the end of this function.
    #[cfg(feature = "emulator")]
    let (config, _emulator) = embedded::with_emulator(config, emulator.as_deref()).await?;
    let client = CloudRunClient::new(config).await?;
    let grants = crate::plan::Grants::new(loaded.grants.iter().map(|g| crate::plan::Grant {
        name: kube::ResourceExt::name_any(g),
        spec: g.spec.clone(),
    }));
    let checker = Checker {
        inventory: SharedInventory::new(client, LIST_TTL),
        bindings: loaded.bindings,
        exceptions: loaded.exceptions,
        exception_max: exception_max_duration,
        tenancy: crate::fleet::Tenancy::offline(grants),
        interactive: std::io::stderr().is_terminal(),
    };
    warn_unhonoured_exceptions(&checker);

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
    output::closed_pipe_is_fine(print_report(&report, output, wide))
        .map_err(|e| CheckError::Output(e.to_string()))?;
    Ok(report.verdict)
}
