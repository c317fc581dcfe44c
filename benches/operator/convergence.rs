//! Scenario 2 — convergence under quota: D drifted services in one region, 50 ms per call,
//! operations done after 500 ms, a write quota of W per minute at the emulator and the
//! client's write budget set to B (2: B = W; 2b: B = 2W, the real quota is half what the
//! operator was told, so it must find it from the 429s). Time to full compliance against
//! the bound D/W minutes, and the 429s received.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cluster::Controller;
use crate::emulator::{epoch_seconds, now_seconds, CallTally, Emulator};
use crate::estate;
use crate::stats::Spread;
use crate::{say, Ctx, Subject};

const PROJECT: &str = "quota-project";
const PROJECT_NUMBER: &str = "900000000777";
const REGION: &str = "us-central1";
/// Emulator latency per call.
pub const LATENCY_MS: u64 = 50;
/// Time until a write's operation is done.
pub const OPERATION_DELAY_MS: u64 = 500;

/// One case: D drifted services, quota W writes per minute, client budget B.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Drifted services.
    pub drifted: usize,
    /// Write quota per minute at the emulator (the real quota).
    pub quota: u32,
    /// The client's write budget per minute (`--write-rate`).
    pub budget: u32,
}

impl Case {
    /// D / W minutes, in seconds.
    pub fn bound_seconds(&self) -> f64 {
        self.drifted as f64 / f64::from(self.quota) * 60.0
    }
}

/// One run of one case.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// From the start (binding created, or `check` started) to the last fix applied.
    pub seconds_to_compliance: f64,
    /// That over the bound.
    pub ratio: f64,
    /// From the start to the subject saying it is done (Ready=True, or `check` exiting).
    pub seconds_to_done: f64,
    /// HTTP 429 answers.
    pub throttled: u64,
    /// 429s over write attempts (429s included).
    pub throttled_share: f64,
    /// Every call made.
    pub calls: CallTally,
    /// (seconds since start, fraction of the D services compliant), one point per fix.
    pub curve: Vec<(f64, f64)>,
}

/// One case's runs.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseResult {
    /// D.
    pub drifted: usize,
    /// W.
    pub quota_per_minute: u32,
    /// B.
    pub budget_per_minute: u32,
    /// D / W minutes, in seconds.
    pub bound_seconds: f64,
    /// Every run.
    pub runs: Vec<Run>,
    /// Seconds to full compliance.
    pub seconds_to_compliance: Spread,
    /// Over the bound.
    pub ratio: Spread,
    /// Seconds until the subject said so.
    pub seconds_to_done: Spread,
    /// 429s per run.
    pub throttled: Spread,
    /// 429s over write attempts, per run.
    pub throttled_share: Spread,
}

/// Scenario 2's results.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConvergenceResult {
    /// Who converges: `controller` or `check --fix`.
    pub subject: Subject,
    /// Emulator latency per call.
    pub latency_ms: u64,
    /// Operation delay.
    pub operation_delay_ms: u64,
    /// Per case.
    pub cases: Vec<CaseResult>,
}

/// Runs scenario 2.
pub async fn run(
    ctx: &Ctx,
    subject: Subject,
    cases: &[Case],
    runs: usize,
) -> Result<ConvergenceResult> {
    // The cases run side by side (each with its own emulator and controller): the
    // quota paces them, not the CPU, and it halves the time the scenario takes.
    let mut per_case: Vec<Vec<Run>> = cases.iter().map(|_| Vec::new()).collect();
    for run in 0..runs {
        let what: Vec<String> = cases
            .iter()
            .map(|c| {
                format!(
                    "D={} W={}/min B={}/min (bound {:.0} s)",
                    c.drifted,
                    c.quota,
                    c.budget,
                    c.bound_seconds()
                )
            })
            .collect();
        say!(
            "convergence: run {}/{runs} ({subject}): {}",
            run + 1,
            what.join(" and ")
        );
        let results =
            futures::future::try_join_all(cases.iter().map(|c| one_run(ctx, subject, *c, run)))
                .await?;
        for (runs_of_case, result) in per_case.iter_mut().zip(results) {
            runs_of_case.push(result);
        }
    }
    let mut out = Vec::new();
    for (case, results) in cases.iter().zip(per_case) {
        let spread = |f: &dyn Fn(&Run) -> f64| {
            Spread::of(&results.iter().map(f).collect::<Vec<_>>()).context("no run")
        };
        out.push(CaseResult {
            drifted: case.drifted,
            quota_per_minute: case.quota,
            budget_per_minute: case.budget,
            bound_seconds: case.bound_seconds(),
            seconds_to_compliance: spread(&|r| r.seconds_to_compliance)?,
            ratio: spread(&|r| r.ratio)?,
            seconds_to_done: spread(&|r| r.seconds_to_done)?,
            throttled: spread(&|r| r.throttled as f64)?,
            throttled_share: spread(&|r| r.throttled_share)?,
            runs: results,
        });
    }
    Ok(ConvergenceResult {
        subject,
        latency_ms: LATENCY_MS,
        operation_delay_ms: OPERATION_DELAY_MS,
        cases: out,
    })
}

async fn one_run(ctx: &Ctx, subject: Subject, case: Case, run: usize) -> Result<Run> {
    let tag = format!("conv-{}-{}-{}-{run}", case.drifted, case.quota, case.budget);
    let seed = estate::drifted_services_seed(PROJECT, PROJECT_NUMBER, REGION, case.drifted);
    let seed_file = ctx.work.join(format!("{tag}-seed.json"));
    std::fs::write(&seed_file, serde_json::to_vec(&seed)?)?;
    let quota = case.quota.to_string();
    let budget = case.budget.to_string();
    let emulator = Emulator::spawn(
        &ctx.bin,
        &[
            "--seed".into(),
            seed_file.display().to_string(),
            "--latency-ms".into(),
            LATENCY_MS.to_string(),
            "--operation-delay-ms".into(),
            OPERATION_DELAY_MS.to_string(),
            "--write-quota".into(),
            quota.clone(),
        ],
        &ctx.work.join(format!("{tag}-emulator.log")),
    )
    .await?;
    let binding = estate::one_region_binding(&tag, PROJECT, REGION);
    let limit = Duration::from_secs_f64(case.bound_seconds() * 3.0 + 60.0);
    let (start, done) = match subject {
        Subject::Controller => {
            let plane = ctx.plane.as_ref().context("no control plane")?;
            plane.namespace(&tag).await?;
            let controller = Controller::start(
                &ctx.bin,
                plane.kubeconfig(),
                emulator.url(),
                &tag,
                &["--write-rate".into(), budget.clone()],
                &ctx.work.join(format!("{tag}-controller.log")),
            )
            .await?;
            let start = now_seconds();
            plane.apply(std::slice::from_ref(&binding)).await?;
            let mut done = None;
            while done.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if plane.ready_count(&tag).await? == 1 {
                    done = Some(now_seconds());
                } else if now_seconds() - start > limit.as_secs_f64() {
                    bail!(
                        "{tag}: the binding was not Ready within {} s",
                        limit.as_secs()
                    );
                }
            }
            controller.stop().await?;
            (start, done.unwrap_or_default())
        }
        Subject::Check => {
            let manifest = ctx.work.join(format!("{tag}-binding.yaml"));
            estate::write_manifests(&manifest, std::slice::from_ref(&binding))?;
            let start = now_seconds();
            let out = tokio::time::timeout(
                limit,
                tokio::process::Command::new(&ctx.bin)
                    .arg("check")
                    .arg("-f")
                    .arg(&manifest)
                    .args([
                        "--fix",
                        "-o",
                        "json",
                        "--cloud-run-endpoint",
                        emulator.url(),
                    ])
                    .args(["--write-rate", &budget])
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .with_context(|| format!("{tag}: check --fix took more than {} s", limit.as_secs()))?
            .context("running check")?;
            let done = now_seconds();
            std::fs::write(
                ctx.work.join(format!("{tag}-check.log")),
                [&out.stdout[..], &out.stderr[..]].concat(),
            )?;
            if !out.status.success() {
                bail!("{tag}: check --fix exited with {}", out.status);
            }
            (start, done)
        }
    };
    let changes = emulator.api_changes_since(0).await?;
    let calls = CallTally::of_counters(&emulator.counters().await?);
    emulator.stop().await?;
    if changes.len() != case.drifted {
        bail!(
            "{tag}: {} of {} services were fixed",
            changes.len(),
            case.drifted
        );
    }
    let mut times = changes
        .iter()
        .map(|c| epoch_seconds(&c.time).map(|t| t - start))
        .collect::<Result<Vec<_>>>()?;
    times.sort_by(f64::total_cmp);
    let mut curve = vec![(0.0, 0.0)];
    let d = case.drifted as f64;
    curve.extend(
        times
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, (i + 1) as f64 / d)),
    );
    let last = times.last().copied().unwrap_or_default();
    Ok(Run {
        seconds_to_compliance: last,
        ratio: last / case.bound_seconds(),
        seconds_to_done: done - start,
        throttled: calls.throttled,
        throttled_share: calls.throttled as f64 / calls.writes.max(1) as f64,
        calls,
        curve,
    })
}
