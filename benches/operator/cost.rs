//! Scenario 1 — API cost of a full re-check: Cloud Run calls per pass window against the
//! lower bound (Σ ceil(n / page) lists + one write per drifted resource) and against a
//! per-resource reconciler that GETs every matched resource once per pass, all counted by
//! the emulator in the same run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use binauthz_operator::api::BinAuthzBinding;
use binauthz_operator::cloudrun::{CloudRunArgs, CloudRunClient};
use binauthz_operator::resource::{Remediation, ResourceId};
use cloudrun_emulator::{RequestRecord, Seed};
use futures::{stream, StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use serde::Serialize;
use serde_json::json;

use crate::cluster::Controller;
use crate::emulator::{CallClass, CallTally, Emulator};
use crate::estate::{self, Intent};
use crate::stats::Spread;
use crate::{say, Ctx};

/// Namespace of the scenario's bindings in the control plane.
const NAMESPACE: &str = "cost";
/// Requests in flight at once for the per-resource baseline (a reconciler's workers).
const BASELINE_WORKERS: usize = 8;
/// Client budgets for `check` and the baseline: this scenario counts calls, so no budget
/// may stretch a run (the quota scenario uses real budgets).
const UNTHROTTLED_PER_MINUTE: &str = "1000000";

/// How the scenario is sized.
pub struct Plan {
    /// Estate sizes (resources per project).
    pub sizes: Vec<usize>,
    /// Regions of each project.
    pub regions: Vec<String>,
    /// Bindings per project.
    pub bindings: usize,
    /// Fraction of resources drifted per pass window.
    pub drift_ratio: f64,
    /// `check` runs and baseline passes per size.
    pub runs: usize,
    /// The controller configurations measured, one controller run each.
    pub controllers: Vec<Variant>,
    /// Binding interval for the controller.
    pub interval: Duration,
}

/// One controller configuration of scenario 1.
pub struct Variant {
    /// What it is, for the report.
    pub label: &'static str,
    /// Its client flags.
    pub flags: Vec<String>,
    /// Steady-state windows measured after the first one.
    pub windows: usize,
}

/// The controller under one configuration at one size.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerCost {
    /// The configuration.
    pub label: String,
    /// Its flags.
    pub flags: Vec<String>,
    /// The first pass window after the controller started over existing bindings.
    pub first: SubjectCost,
    /// The steady-state windows (drift injected before each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady: Option<SubjectCost>,
}

/// Calls of one pass window.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// Calls made.
    pub calls: CallTally,
    /// Σ ceil(n / page) over the project's collections.
    pub list_bound: u64,
    /// Resources that needed a write.
    pub drifted: u64,
    /// Full re-checks in the window: the most times one collection's first page was listed
    /// (a window longer than the interval — fixes paced by the write budget — holds the
    /// next interval's re-check too).
    pub rechecks: u64,
    /// `check --fix` only: the re-read it makes to report the result (not part of a pass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<CallTally>,
}

impl Window {
    /// Reads per full re-check.
    pub fn reads_per_recheck(&self) -> f64 {
        self.calls.reads() as f64 / self.rechecks.max(1) as f64
    }
    fn read_ratio(&self) -> f64 {
        self.reads_per_recheck() / self.list_bound as f64
    }
    fn total_ratio(&self) -> f64 {
        (self.calls.reads() + self.calls.writes) as f64 / (self.list_bound + self.drifted) as f64
    }
}

/// One subject's windows at one size.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectCost {
    /// Every window measured.
    pub windows: Vec<Window>,
    /// Reads per window.
    pub reads: Spread,
    /// List pages per window.
    pub lists: Spread,
    /// Single-resource GETs per window.
    pub gets: Spread,
    /// Operation polls per window.
    pub polls: Spread,
    /// Writes per window.
    pub writes: Spread,
    /// Drifted resources per window.
    pub drifted: Spread,
    /// Full re-checks per window.
    pub rechecks: Spread,
    /// Reads per re-check / list bound.
    pub read_ratio: Spread,
    /// (Reads + writes) / (list bound + drifted).
    pub total_ratio: Spread,
}

impl SubjectCost {
    fn of(windows: Vec<Window>) -> Result<Self> {
        let spread = |f: &dyn Fn(&Window) -> f64| {
            Spread::of(&windows.iter().map(f).collect::<Vec<_>>()).context("no window measured")
        };
        Ok(Self {
            reads: spread(&|w| w.calls.reads() as f64)?,
            lists: spread(&|w| w.calls.lists as f64)?,
            gets: spread(&|w| w.calls.gets as f64)?,
            polls: spread(&|w| w.calls.polls as f64)?,
            writes: spread(&|w| w.calls.writes as f64)?,
            drifted: spread(&|w| w.drifted as f64)?,
            rechecks: spread(&|w| w.rechecks as f64)?,
            read_ratio: spread(&Window::read_ratio)?,
            total_ratio: spread(&Window::total_ratio)?,
            windows,
        })
    }
}

/// Scenario 1 at one estate size.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SizeCost {
    /// Resources in the project.
    pub resources: usize,
    /// Its project id.
    pub project: String,
    /// Resources some binding matches.
    pub matched: usize,
    /// Σ ceil(n / page).
    pub list_bound: u64,
    /// `check --fix`: one run = one pass window (its final re-read reported apart).
    pub check: SubjectCost,
    /// The per-resource baseline.
    pub baseline: SubjectCost,
    /// The controller, per configuration.
    pub controllers: Vec<ControllerCost>,
    /// Baseline reads / the operator's reads (the first controller configuration's
    /// steady state if measured, else `check`).
    pub baseline_read_factor: Spread,
}

/// Scenario 1's results.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostResult {
    /// Regions per project.
    pub regions: usize,
    /// Bindings per project.
    pub bindings: usize,
    /// Fraction drifted per window.
    pub drift_ratio: f64,
    /// Binding interval of the controller (seconds).
    pub interval_seconds: f64,
    /// Per size.
    pub sizes: Vec<SizeCost>,
}

struct Size {
    resources: usize,
    project: String,
    bindings: Vec<BinAuthzBinding>,
    manifest: std::path::PathBuf,
    names: Vec<String>,
    list_bound: u64,
    intent: Intent,
}

fn project_of(n: usize) -> String {
    if n.is_multiple_of(1000) {
        format!("cost-{}k", n / 1000)
    } else {
        format!("cost-{n}")
    }
}

/// Runs scenario 1.
pub async fn run(ctx: &Ctx, plan: &Plan) -> Result<CostResult> {
    // A throwaway emulator generates the three estates; the measured one is seeded with
    // them from a file, so that `reset` returns to exactly this estate.
    let generator = Emulator::spawn(&ctx.bin, &[], &ctx.work.join("cost-generator.log")).await?;
    let interval = format!("{}s", plan.interval.as_secs());
    let mut sizes = Vec::new();
    for (i, &n) in plan.sizes.iter().enumerate() {
        let project = project_of(n);
        generator
            .generate(&json!({
                "count": n, "seed": 7 + i as u64, "driftRatio": plan.drift_ratio,
                "projects": [project], "regions": plan.regions,
            }))
            .await?;
        let prefix = format!("c{}-", project.trim_start_matches("cost-"));
        let bindings = estate::bindings(
            NAMESPACE,
            &prefix,
            &project,
            &plan.regions,
            plan.bindings,
            &interval,
        );
        let manifest = ctx.work.join(format!("{project}-bindings.yaml"));
        estate::write_manifests(&manifest, &bindings)?;
        sizes.push((n, project, bindings, manifest));
    }
    let initial: Seed = generator.state().await?;
    generator.stop().await?;
    let seed_file = ctx.work.join("cost-seed.json");
    std::fs::write(&seed_file, serde_json::to_vec(&initial)?)?;
    let emulator = Emulator::spawn(
        &ctx.bin,
        &["--seed".into(), seed_file.display().to_string()],
        &ctx.work.join("cost-emulator.log"),
    )
    .await?;
    let sizes: Vec<Size> = sizes
        .into_iter()
        .map(|(resources, project, bindings, manifest)| {
            let observed = estate::observed(&initial, &project);
            Ok(Size {
                resources,
                list_bound: estate::list_bound(&initial, &project),
                names: estate::resource_names(&initial, &project),
                intent: estate::intent(&bindings, &observed)?,
                project,
                bindings,
                manifest,
            })
        })
        .collect::<Result<_>>()?;

    let mut checks = Vec::new();
    let mut baselines = Vec::new();
    for size in &sizes {
        say!(
            "cost: {} resources ({}): {} check runs, {} baseline passes",
            size.resources,
            size.project,
            plan.runs,
            plan.runs
        );
        let mut windows = Vec::new();
        for run in 0..plan.runs {
            emulator.reset(None).await?;
            windows.push(check_window(ctx, &emulator, size, run).await?);
        }
        checks.push(SubjectCost::of(windows)?);
        let client = unthrottled_client(emulator.url()).await?;
        let mut windows = Vec::new();
        for _ in 0..plan.runs {
            emulator.reset(None).await?;
            let fixed = baseline_pass(&client, &size.intent.desired).await?;
            let calls = CallTally::of_counters(&emulator.counters().await?);
            if fixed != size.intent.writes.len() {
                bail!(
                    "the baseline fixed {fixed} resources of {}, the plan says {}",
                    size.project,
                    size.intent.writes.len()
                );
            }
            windows.push(Window {
                calls,
                list_bound: size.list_bound,
                drifted: fixed as u64,
                rechecks: 1,
                verification: None,
            });
        }
        baselines.push(SubjectCost::of(windows)?);
    }

    let mut measured: Vec<(&Variant, ControllerWindows)> = Vec::new();
    if ctx.plane.is_some() {
        for (i, variant) in plan.controllers.iter().enumerate() {
            let windows = controller_windows(ctx, &emulator, &sizes, plan, variant, i).await?;
            measured.push((variant, windows));
        }
    }

    let mut out = Vec::new();
    for (i, ((size, check), baseline)) in sizes.iter().zip(checks).zip(baselines).enumerate() {
        let mut controllers = Vec::new();
        for (variant, (first, steady)) in &mut measured {
            controllers.push(ControllerCost {
                label: variant.label.to_string(),
                flags: variant.flags.clone(),
                first: SubjectCost::of(std::mem::take(&mut first[i]))?,
                steady: match std::mem::take(&mut steady[i]) {
                    windows if windows.is_empty() => None,
                    windows => Some(SubjectCost::of(windows)?),
                },
            });
        }
        let subject_reads = controllers
            .first()
            .map(|c| c.steady.as_ref().unwrap_or(&c.first))
            .unwrap_or(&check)
            .windows
            .iter()
            .map(Window::reads_per_recheck)
            .collect::<Vec<_>>();
        let factors: Vec<f64> = baseline
            .windows
            .iter()
            .flat_map(|b| {
                subject_reads
                    .iter()
                    .map(move |s| b.calls.reads() as f64 / s)
            })
            .collect();
        out.push(SizeCost {
            resources: size.resources,
            project: size.project.clone(),
            matched: size.intent.desired.len(),
            list_bound: size.list_bound,
            check,
            baseline,
            controllers,
            baseline_read_factor: Spread::of(&factors).context("no factor")?,
        });
    }
    emulator.stop().await?;
    Ok(CostResult {
        regions: plan.regions.len(),
        bindings: plan.bindings,
        drift_ratio: plan.drift_ratio,
        interval_seconds: plan.interval.as_secs_f64(),
        sizes: out,
    })
}

/// One `check --fix` run against the freshly reset estate: the pass window is everything
/// up to its last write or operation poll; the lists after it are its verification re-read.
async fn check_window(ctx: &Ctx, emulator: &Emulator, size: &Size, run: usize) -> Result<Window> {
    let log = ctx
        .work
        .join(format!("cost-check-{}-{run}.log", size.project));
    let out = tokio::process::Command::new(&ctx.bin)
        .arg("check")
        .arg("-f")
        .arg(&size.manifest)
        .args([
            "--fix",
            "-o",
            "json",
            "--cloud-run-endpoint",
            emulator.url(),
        ])
        .args(["--read-rate", UNTHROTTLED_PER_MINUTE])
        .args(["--write-rate", UNTHROTTLED_PER_MINUTE])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running check")?;
    std::fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat())?;
    if !out.status.success() {
        bail!(
            "check --fix over {} exited with {} (see {})",
            size.project,
            out.status,
            log.display()
        );
    }
    let requests = emulator.requests_since(0).await?;
    let cut = requests
        .iter()
        .rposition(|r| matches!(CallClass::of(&r.method), CallClass::Write | CallClass::Poll))
        .map_or(requests.len(), |i| i + 1);
    let writes = CallTally::of_requests(&requests[..cut]);
    let pass: Vec<&RequestRecord> = requests[..cut].iter().collect();
    Ok(Window {
        calls: writes,
        list_bound: size.list_bound,
        drifted: size.intent.writes.len() as u64,
        rechecks: rechecks(&pass),
        verification: (cut < requests.len()).then(|| CallTally::of_requests(&requests[cut..])),
    })
}

async fn unthrottled_client(url: &str) -> Result<CloudRunClient> {
    let rate = UNTHROTTLED_PER_MINUTE.parse().context("rate")?;
    let args = CloudRunArgs {
        cloud_run_endpoint: Some(url.to_string()),
        read_rate: rate,
        write_rate: rate,
        ..CloudRunArgs::default()
    };
    Ok(CloudRunClient::new(args.config()?).await?)
}

/// The per-resource baseline: like a reconciler holding one object per Cloud Run resource,
/// GET every matched resource once and write the drifted ones (with the operator's own
/// client, so reads, writes and retries cost the same). Returns how many it fixed.
async fn baseline_pass(
    client: &CloudRunClient,
    desired: &BTreeMap<ResourceId, Remediation>,
) -> Result<usize> {
    stream::iter(desired)
        .map(|(id, remediation)| async move {
            let live = client.get(id).await?;
            if remediation.is_satisfied_by(&live.observed) {
                return Ok::<usize, anyhow::Error>(0);
            }
            client.remediate_listed(&live, remediation).await?;
            Ok(1)
        })
        .buffer_unordered(BASELINE_WORKERS)
        .try_fold(0, |acc, n| async move { Ok(acc + n) })
        .await
}

/// Per size: the controller's first window and its steady-state windows.
type ControllerWindows = (Vec<Vec<Window>>, Vec<Vec<Window>>);

/// Every size's bindings under one controller: its first pass window (the generated drift),
/// then `plan.windows` windows, each opened by drifting `drift_ratio` of every project and
/// closed once the controller fixed them all and went quiet.
async fn controller_windows(
    ctx: &Ctx,
    emulator: &Emulator,
    sizes: &[Size],
    plan: &Plan,
    variant: &Variant,
    index: usize,
) -> Result<ControllerWindows> {
    let plane = ctx.plane.as_ref().context("no control plane")?;
    emulator.reset(None).await?;
    // A namespace per configuration: each controller sees only its own bindings.
    let namespace = format!("{NAMESPACE}-{index}");
    plane.namespace(&namespace).await?;
    let all: Vec<BinAuthzBinding> = sizes
        .iter()
        .flat_map(|s| s.bindings.clone())
        .map(|mut b| {
            b.metadata.namespace = Some(namespace.clone());
            b
        })
        .collect();
    let flags: Vec<String> = variant
        .flags
        .iter()
        .chain(&ctx.controller_args)
        .cloned()
        .collect();
    // Bindings first, then the controller: its first window is a (re)start over bindings
    // that exist, not a race with their creation one by one.
    plane.apply(&all).await?;
    say!(
        "cost: controller ({}) over {} bindings, first pass window",
        variant.label,
        all.len()
    );
    let controller = Controller::start(
        &ctx.bin,
        plane.kubeconfig(),
        emulator.url(),
        &namespace,
        &flags,
        &ctx.work.join(format!("cost-controller-{index}.log")),
    )
    .await?;
    let initial_writes: usize = sizes.iter().map(|s| s.intent.writes.len()).sum();
    let timeout = plan.interval * 3 + Duration::from_secs(120);
    let (first_requests, _) =
        settle(emulator, 0, 0, initial_writes, &BTreeSet::new(), timeout).await?;
    let mut first = Vec::new();
    for size in sizes {
        first.push(vec![window_of(
            &first_requests,
            size,
            size.intent.writes.len(),
        )]);
    }
    let mut seq = first_requests.last().map_or(0, |r| r.seq);
    let mut audit = emulator.audit_since(0).await?.last().map_or(0, |c| c.seq);
    let mut steady: Vec<Vec<Window>> = sizes.iter().map(|_| Vec::new()).collect();
    let mut rng = StdRng::seed_from_u64(42);
    for k in 0..variant.windows {
        say!(
            "cost: controller ({}) window {}/{}",
            variant.label,
            k + 1,
            variant.windows
        );
        let mut drifted = BTreeSet::new();
        let mut per_size = Vec::new();
        for size in sizes {
            let count = ((size.resources as f64) * plan.drift_ratio).round() as usize;
            for name in size.names.choose_multiple(&mut rng, count) {
                emulator.clear_binary_authorization(name).await?;
                drifted.insert(name.clone());
            }
            per_size.push(count);
        }
        let (requests, last_audit) =
            settle(emulator, seq, audit, drifted.len(), &drifted, timeout).await?;
        for ((size, count), windows) in sizes.iter().zip(&per_size).zip(&mut steady) {
            windows.push(window_of(&requests, size, *count));
        }
        seq = requests.last().map_or(seq, |r| r.seq);
        audit = last_audit;
    }
    controller.stop().await?;
    Ok((first, steady))
}

/// Waits until `fixes` API changes happened after audit seq `audit` (to `only` resources,
/// when not empty) and no Cloud Run call came for 3 s; returns the requests after `since`
/// and the last audit seq.
async fn settle(
    emulator: &Emulator,
    since: u64,
    audit: u64,
    fixes: usize,
    only: &BTreeSet<String>,
    timeout: Duration,
) -> Result<(Vec<RequestRecord>, u64)> {
    const QUIET: Duration = Duration::from_secs(3);
    let started = Instant::now();
    let mut seen = 0usize;
    let mut last_activity = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let requests = emulator.requests_since(since).await?;
        if requests.len() != seen {
            seen = requests.len();
            last_activity = Instant::now();
        }
        let changes = emulator.api_changes_since(audit).await?;
        let done = changes
            .iter()
            .filter(|c| only.is_empty() || only.contains(&c.resource))
            .map(|c| c.resource.as_str())
            .collect::<BTreeSet<_>>()
            .len();
        if done >= fixes && seen > 0 && last_activity.elapsed() >= QUIET {
            let last = emulator
                .audit_since(audit)
                .await?
                .last()
                .map_or(audit, |c| c.seq);
            return Ok((requests, last));
        }
        if started.elapsed() > timeout {
            bail!(
                "the controller fixed {done} of {fixes} drifted resources within {} s",
                timeout.as_secs()
            );
        }
    }
}

fn window_of(requests: &[RequestRecord], size: &Size, drifted: usize) -> Window {
    let marker = format!("/projects/{}/", size.project);
    let mine: Vec<&RequestRecord> = requests
        .iter()
        .filter(|r| r.path.contains(&marker))
        .collect();
    Window {
        calls: CallTally::of_requests(mine.iter().copied()),
        list_bound: size.list_bound,
        drifted: drifted as u64,
        rechecks: rechecks(&mine),
        verification: None,
    }
}

/// How many full re-checks `requests` hold: the most times one collection's first page
/// (a list without `pageToken`) was asked for; at least 1.
pub fn rechecks(requests: &[&RequestRecord]) -> u64 {
    let mut first_pages: BTreeMap<&str, u64> = BTreeMap::new();
    for r in requests {
        if CallClass::of(&r.method) == CallClass::List && !r.path.contains("pageToken=") {
            let collection = r.path.split('?').next().unwrap_or(&r.path);
            *first_pages.entry(collection).or_default() += 1;
        }
    }
    first_pages.values().copied().max().unwrap_or(1).max(1)
}

/// Client flags that keep the read and write budgets out of the way (calls are counted
/// here, not timed).
pub fn unthrottled_flags() -> Vec<String> {
    [
        "--read-rate",
        UNTHROTTLED_PER_MINUTE,
        "--write-rate",
        UNTHROTTLED_PER_MINUTE,
    ]
    .map(String::from)
    .to_vec()
}
