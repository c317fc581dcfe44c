//! Scenario 7 — fleet scale: the controller over generated estates of growing size (up to
//! 100 projects × 4 regions × 3 kinds, 10 bindings per 1,000 resources), one controller
//! run per size: peak RSS, CPU and reads per full re-check, time to first Ready, and the
//! planner over the whole fleet in-process.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use binauthz_operator::plan;
use cloudrun_emulator::RequestRecord;
use serde::Serialize;

use crate::cluster::Controller;
use crate::emulator::{epoch_seconds, now_seconds, CallTally, Emulator};
use crate::reaction::{windows, WINDOW_GAP};
use crate::stats::Spread;
use crate::{cost, estate, procfs, say, Ctx};

/// The regions of every generated project.
pub const REGIONS: [&str; 4] = ["us-central1", "europe-west1", "asia-northeast1", "us-east1"];
/// Peak RSS target at [`TARGET_RESOURCES`], MiB.
pub const TARGET_RSS_MIB: f64 = 128.0;
/// Planner target at [`TARGET_RESOURCES`], milliseconds.
pub const TARGET_PLAN_MS: f64 = 100.0;
/// The size the targets are judged at.
pub const TARGET_RESOURCES: usize = 100_000;
/// The share of projects that hold half the bindings (the platform's big projects).
const HEAVY_SHARE: usize = 10;

/// One size of the curve.
pub struct Size {
    /// Generated resources.
    pub resources: usize,
    /// Projects they are spread over.
    pub projects: usize,
    /// Bindings over those projects.
    pub bindings: usize,
    /// The bindings' interval (a full re-check must fit in it with room to spare).
    pub interval: Duration,
}

/// How the scenario is sized.
pub struct Plan {
    /// The sizes, smallest first.
    pub sizes: Vec<Size>,
    /// Steady full re-checks measured per size, after the first one that follows the
    /// first pass.
    pub windows: usize,
    /// In-process planner runs per size.
    pub planner_runs: usize,
}

/// One size's figures.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SizeResult {
    /// Generated resources.
    pub resources: usize,
    /// Projects.
    pub projects: usize,
    /// Bindings.
    pub bindings: usize,
    /// Bindings per project, most first.
    pub bindings_per_project: Vec<usize>,
    /// Resources some binding matches.
    pub matched: usize,
    /// Σ ceil(n / page) over every collection: one full re-check's list pages.
    pub list_bound: u64,
    /// The bindings' interval, seconds.
    pub interval_seconds: f64,
    /// Load average when the size started.
    pub load_average: String,
    /// Controller start → every binding Ready, seconds.
    pub first_ready_seconds: f64,
    /// Peak RSS of the controller (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// RSS at the end, MiB.
    pub final_rss_mib: f64,
    /// CPU seconds per full re-check (every binding's pass).
    pub recheck_cpu_seconds: Spread,
    /// Wall time of a re-check window, seconds.
    pub recheck_seconds: Spread,
    /// Reads per re-check ÷ the list bound.
    pub read_ratio: Spread,
    /// The same in the first re-check after the first pass (it reads the revisions of the
    /// resources the first pass fixed, once).
    pub first_read_ratio: f64,
    /// Calls of each window, the first re-check first.
    pub windows: Vec<CallTally>,
    /// The planner over every binding and resource at once, milliseconds.
    pub planner_ms: Spread,
}

/// Scenario 7's results.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleResult {
    /// Regions per project.
    pub regions: usize,
    /// Controller flags of every size.
    pub flags: Vec<String>,
    /// Smallest size first.
    pub sizes: Vec<SizeResult>,
}

/// Bindings per project: with more than one project, a tenth of them (the platform's big
/// projects) hold half the bindings, the rest share the other half — every shape of
/// [`estate::bindings`] appears in the big ones, catch-all and team selectors everywhere.
fn bindings_per_project(projects: usize, bindings: usize) -> Vec<usize> {
    if projects <= 1 {
        return vec![bindings];
    }
    let heavy = projects.div_ceil(HEAVY_SHARE);
    let spread = |total: usize, over: usize| -> Vec<usize> {
        (0..over)
            .map(|i| total / over + usize::from(i < total % over))
            .collect()
    };
    let mut counts = spread(bindings / 2, heavy);
    counts.extend(spread(bindings - bindings / 2, projects - heavy));
    counts
}

fn tag(resources: usize) -> String {
    if resources.is_multiple_of(1000) {
        format!("{}k", resources / 1000)
    } else {
        resources.to_string()
    }
}

/// Runs scenario 7.
pub async fn run(ctx: &Ctx, plan: &Plan) -> Result<ScaleResult> {
    let flags: Vec<String> = cost::unthrottled_flags()
        .into_iter()
        .chain(ctx.controller_args.iter().cloned())
        .collect();
    let mut sizes = Vec::new();
    for size in &plan.sizes {
        sizes.push(run_size(ctx, plan, size, &flags).await?);
    }
    Ok(ScaleResult {
        regions: REGIONS.len(),
        flags,
        sizes,
    })
}

async fn run_size(ctx: &Ctx, plan: &Plan, size: &Size, flags: &[String]) -> Result<SizeResult> {
    let plane = ctx.plane.as_ref().context("no control plane")?;
    let load_average = crate::load_average();
    let tag = tag(size.resources);
    let projects: Vec<String> = (0..size.projects)
        .map(|p| format!("scale-{tag}-p{p:03}"))
        .collect();
    say!(
        "scale: {} resources over {} projects, {} bindings: generating",
        size.resources,
        size.projects,
        size.bindings
    );
    let emulator = Emulator::spawn(
        &ctx.bin,
        &[
            "--generate".into(),
            size.resources.to_string(),
            "--generate-projects".into(),
            projects.join(","),
            "--generate-regions".into(),
            REGIONS.join(","),
            "--generate-seed".into(),
            "23".into(),
            "--drift-ratio".into(),
            "0.01".into(),
        ],
        &ctx.work.join(format!("scale-{tag}-emulator.log")),
    )
    .await?;
    let state = emulator.state().await?;
    let namespace = format!("scale-{tag}");
    let interval = format!("{}s", size.interval.as_secs());
    let regions = REGIONS.map(String::from);
    let per_project = bindings_per_project(size.projects, size.bindings);
    let mut bindings = Vec::new();
    let mut observed = Vec::new();
    let mut list_bound = 0;
    for (project, &count) in projects.iter().zip(&per_project) {
        let prefix = format!("{}-", project.rsplit('-').next().unwrap_or(project));
        bindings.extend(estate::bindings(
            &namespace, &prefix, project, &regions, count, &interval,
        ));
        observed.extend(estate::observed(&state, project));
        list_bound += estate::list_bound(&state, project);
    }
    drop(state);

    // The planner first, alone on the machine: every binding over every resource at once.
    let inputs = estate::inputs(&bindings);
    let mut planner = Vec::new();
    for _ in 0..plan.planner_runs {
        let t = Instant::now();
        let planned = plan::plan(&inputs, &observed).context("planning the scale bindings")?;
        planner.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(planned);
    }
    let matched = estate::intent(&bindings, &observed)?.desired.len();
    drop(inputs);
    drop(observed);

    plane.namespace(&namespace).await?;
    let applied = Instant::now();
    plane.apply(&bindings).await?;
    say!(
        "scale: {} bindings applied in {:.0} s; controller, first pass",
        bindings.len(),
        applied.elapsed().as_secs_f64()
    );
    let started = now_seconds();
    let controller = Controller::start(
        &ctx.bin,
        plane.kubeconfig(),
        emulator.url(),
        &namespace,
        flags,
        &ctx.work.join(format!("scale-{tag}-controller.log")),
    )
    .await?;
    let pid = controller.pid();
    let sampler = procfs::Sampler::start(pid, ctx.ticks);
    let limit = size.interval * 6 + Duration::from_secs(300);
    plane.wait_ready(&namespace, bindings.len(), limit).await?;
    let first_ready_seconds = now_seconds() - started;
    say!(
        "scale: every binding Ready after {first_ready_seconds:.1} s; {} re-checks",
        plan.windows
    );
    let seq = emulator
        .requests_since(0)
        .await?
        .last()
        .map_or(0, |r| r.seq);
    let requests = await_rechecks(&emulator, seq, plan.windows + 1, size.interval).await?;
    let samples = sampler.stop().await?;
    let last = procfs::read(pid, ctx.ticks)?;
    controller.stop().await?;
    emulator.stop().await?;

    let found = windows(&requests)?;
    let mut cpu = Vec::new();
    let mut wall = Vec::new();
    let mut ratio = Vec::new();
    let mut tallies = Vec::new();
    let mut first_read_ratio = 0.0;
    for (k, &(from, to)) in found.iter().take(plan.windows + 1).enumerate() {
        let inside: Vec<&RequestRecord> = requests
            .iter()
            .filter(|r| epoch_seconds(&r.time).is_ok_and(|t| (from..=to).contains(&t)))
            .collect();
        let calls = CallTally::of_requests(inside.iter().copied());
        let reads = calls.reads() as f64 / cost::rechecks(&inside) as f64;
        tallies.push(calls);
        if k == 0 {
            first_read_ratio = reads / list_bound as f64;
            continue;
        }
        ratio.push(reads / list_bound as f64);
        wall.push(to - from);
        let at = |t: f64| procfs::cpu_at(&samples, t);
        if let (Some(a), Some(b)) = (at(from - 0.5), at(to + 1.0)) {
            cpu.push(b - a);
        }
    }
    let peak = samples
        .iter()
        .map(|s| s.1.peak_rss_kib)
        .chain([last.peak_rss_kib])
        .max()
        .unwrap_or_default();
    Ok(SizeResult {
        resources: size.resources,
        projects: size.projects,
        bindings: bindings.len(),
        bindings_per_project: per_project,
        matched,
        list_bound,
        interval_seconds: size.interval.as_secs_f64(),
        load_average,
        first_ready_seconds,
        peak_rss_mib: peak as f64 / 1024.0,
        final_rss_mib: last.rss_kib as f64 / 1024.0,
        recheck_cpu_seconds: Spread::of(&cpu).context("no CPU reading of a re-check")?,
        recheck_seconds: Spread::of(&wall).context("no re-check window")?,
        read_ratio: Spread::of(&ratio).context("no re-check window")?,
        first_read_ratio,
        windows: tallies,
        planner_ms: Spread::of(&planner).context("no planner run")?,
    })
}

/// The requests after `since` once `count` re-check windows (bursts of Cloud Run calls)
/// have ended: the last one followed by [`WINDOW_GAP`] of silence.
async fn await_rechecks(
    emulator: &Emulator,
    since: u64,
    count: usize,
    interval: Duration,
) -> Result<Vec<RequestRecord>> {
    let limit = interval * (count as u32 + 2) + Duration::from_secs(120);
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let requests = emulator.requests_since(since).await?;
        if let Some(last) = requests.last() {
            let quiet = now_seconds() - epoch_seconds(&last.time)? >= WINDOW_GAP;
            if quiet && windows(&requests)?.len() >= count {
                return Ok(requests);
            }
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "{count} full re-checks did not happen within {} s",
            limit.as_secs()
        );
    }
}
