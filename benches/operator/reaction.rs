//! Scenarios 3 and 4, measured in one controller run: the controller watches many bindings
//! over a large estate with a 30 s interval while drifts are injected at random moments.
//! Footprint (peak RSS, CPU per pass window, idle CPU between windows) comes from /proc;
//! reaction times (injection → correction) from the emulator's audit log.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cloudrun_emulator::{ChangeRecord, RequestRecord};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cluster::Controller;
use crate::emulator::{epoch_seconds, now_seconds, CallClass, Emulator};
use crate::estate;
use crate::procfs::{self, Reading};
use crate::stats::{percentile, Spread};
use crate::{say, Ctx};

const NAMESPACE: &str = "react";
const PROJECTS: [&str; 2] = ["react-a", "react-b"];
/// Silence between two pass windows (no Cloud Run call) of at least this long.
pub const WINDOW_GAP: f64 = 5.0;
/// The bindings' interval while the idle CPU is measured (the CRD's default).
const IDLE_INTERVAL: &str = "10m";

/// How the scenario is sized.
pub struct Plan {
    /// Resources in the estate (over both projects).
    pub resources: usize,
    /// Bindings (over both projects).
    pub bindings: usize,
    /// Binding interval.
    pub interval: Duration,
    /// Drifts injected.
    pub drifts: usize,
    /// Over how long.
    pub span: Duration,
    /// Measured after the last correction (an idle stretch).
    pub tail: Duration,
    /// Idle CPU measured over this long.
    pub idle: Duration,
}

/// What the controller costs.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Footprint {
    /// Peak resident set size (VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Resident set size at the end, MiB.
    pub final_rss_mib: f64,
    /// CPU seconds per pass window (every binding's pass).
    pub cpu_seconds_per_window: Spread,
    /// Binding passes completed while measuring (`binauthz_passes_total`).
    pub binding_passes: f64,
    /// CPU time while measuring over those passes, in milliseconds (idle time included).
    pub cpu_ms_per_binding_pass: f64,
    /// CPU of the idle controller (bindings at the default 10m interval, between their
    /// passes), percent of one core.
    pub idle_cpu_percent: f64,
    /// Over how long that was measured.
    pub idle_seconds: f64,
    /// Clock ticks per second of the CPU times.
    pub clock_ticks: f64,
    /// CPU in the quiet stretches between pass windows at the 30 s interval, percent of
    /// one core.
    pub between_windows_cpu_percent: Option<Spread>,
    /// CPU over the whole measured span, percent of one core.
    pub average_cpu_percent: f64,
    /// (seconds since the bindings were applied, RSS MiB) every 5 s.
    pub rss_mib_timeline: Vec<(f64, f64)>,
}

/// Scenarios 3 and 4's results.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionResult {
    /// Resources in the estate.
    pub resources: usize,
    /// Bindings.
    pub bindings: usize,
    /// Their interval, seconds.
    pub interval_seconds: f64,
    /// Drifts injected.
    pub injected: usize,
    /// Over how many seconds.
    pub span_seconds: f64,
    /// Injection → correction, seconds, in injection order.
    pub reaction_seconds: Vec<f64>,
    /// Median.
    pub p50_seconds: f64,
    /// 99th percentile (nearest rank).
    pub p99_seconds: f64,
    /// Longest.
    pub max_seconds: f64,
    /// Interval + one pass window (median).
    pub bound_seconds: f64,
    /// Pass windows seen (bursts of Cloud Run calls).
    pub windows: usize,
    /// List calls per interval over the measured span.
    pub lists_per_interval: f64,
    /// Σ ceil(n / page) over the estate: one full re-check.
    pub list_bound: u64,
    /// Their wall time, seconds.
    pub window_seconds: Spread,
    /// From one window's start to the next one's, seconds.
    pub period_seconds: Spread,
    /// /proc figures.
    pub footprint: Footprint,
}

/// One drift injected: the resource, when (seconds since the epoch) and the audit log
/// sequence number of the injection.
pub struct Injection {
    pub name: String,
    pub time: f64,
    pub seq: u64,
}

/// Seconds from each injection to the first fix of its resource after it, from the
/// subject's changes in the emulator's audit log (`None`: not fixed yet).
pub fn reactions(changes: &[ChangeRecord], injections: &[Injection]) -> Result<Vec<Option<f64>>> {
    injections
        .iter()
        .map(|inj| {
            changes
                .iter()
                .find(|c| c.resource == inj.name && c.seq > inj.seq)
                .map(|c| Ok(epoch_seconds(&c.time)? - inj.time))
                .transpose()
        })
        .collect()
}

/// Runs scenarios 3 and 4.
pub async fn run(ctx: &Ctx, plan: &Plan) -> Result<ReactionResult> {
    let plane = ctx.plane.as_ref().context("no control plane")?;
    let emulator = Emulator::spawn(
        &ctx.bin,
        &[
            "--generate".into(),
            plan.resources.to_string(),
            "--generate-projects".into(),
            PROJECTS.join(","),
            "--generate-seed".into(),
            "11".into(),
            "--drift-ratio".into(),
            "0.01".into(),
        ],
        &ctx.work.join("react-emulator.log"),
    )
    .await?;
    let state = emulator.state().await?;
    let interval = format!("{}s", plan.interval.as_secs());
    let mut bindings = Vec::new();
    let mut names = Vec::new();
    for (i, project) in PROJECTS.iter().enumerate() {
        let regions = estate::regions(&state, project);
        let count =
            plan.bindings / PROJECTS.len() + usize::from(i < plan.bindings % PROJECTS.len());
        let prefix = format!("r{}-", (b'a' + i as u8) as char);
        bindings.extend(estate::bindings(
            NAMESPACE, &prefix, project, &regions, count, &interval,
        ));
        names.extend(estate::resource_names(&state, project));
    }
    plane.namespace(NAMESPACE).await?;
    plane.apply(&bindings).await?;
    say!(
        "reaction: controller over {} bindings and {} resources, first pass",
        bindings.len(),
        plan.resources
    );
    let controller = Controller::start(
        &ctx.bin,
        plane.kubeconfig(),
        emulator.url(),
        NAMESPACE,
        &ctx.controller_args,
        &ctx.work.join("react-controller.log"),
    )
    .await?;
    let pid = controller.pid();
    let sampler = procfs::Sampler::start(pid, ctx.ticks);

    let limit = plan.interval * 4 + Duration::from_secs(120);
    let started = now_seconds();
    plane.wait_ready(NAMESPACE, bindings.len(), limit).await?;
    const PASSES: &str = "binauthz_passes_total{result=\"completed\"}";
    let passes0 = controller.metric(PASSES).await?;
    let cpu0 = procfs::read(pid, ctx.ticks)?.cpu_seconds;
    let seq0 = emulator
        .requests_since(0)
        .await?
        .last()
        .map_or(0, |r| r.seq);
    let audit0 = emulator.audit_since(0).await?.last().map_or(0, |c| c.seq);

    say!(
        "reaction: {} drifts at random moments over {} s",
        plan.drifts,
        plan.span.as_secs()
    );
    let mut rng = StdRng::seed_from_u64(4711);
    let mut offsets: Vec<f64> = (0..plan.drifts)
        .map(|_| rng.random_range(0.0..plan.span.as_secs_f64()))
        .collect();
    offsets.sort_by(f64::total_cmp);
    let t0 = now_seconds();
    let mut injections = Vec::new();
    let mut pending = BTreeSet::new();
    for offset in offsets {
        let wait = t0 + offset - now_seconds();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
        // A resource not drifted already (else the drift would change nothing).
        let name = loop {
            let pick = names.choose(&mut rng).context("no resources")?;
            if !pending.contains(pick) {
                break pick.clone();
            }
        };
        let change = emulator.clear_binary_authorization(&name).await?;
        pending.insert(name.clone());
        injections.push(Injection {
            name,
            time: epoch_seconds(&change.time)?,
            seq: change.seq,
        });
        let fixed: BTreeSet<String> = emulator
            .api_changes_since(audit0)
            .await?
            .into_iter()
            .map(|c| c.resource)
            .collect();
        pending.retain(|n| !fixed.contains(n));
    }
    let deadline = now_seconds() + plan.interval.as_secs_f64() * 2.0 + 60.0;
    let corrections = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let changes = emulator.api_changes_since(audit0).await?;
        let found = reactions(&changes, &injections)?;
        if found.iter().all(Option::is_some) {
            break found.into_iter().flatten().collect::<Vec<f64>>();
        }
        if now_seconds() > deadline {
            bail!(
                "{} of {} drifts were corrected in time",
                found.iter().flatten().count(),
                injections.len()
            );
        }
    };
    // One more quiet stretch after the last correction.
    tokio::time::sleep(plan.tail).await;
    let measured_to = now_seconds();
    let final_reading = procfs::read(pid, ctx.ticks)?;
    let passes = controller.metric(PASSES).await? - passes0;
    let requests = emulator.requests_since(seq0).await?;

    // Idle: the same bindings at the default interval (10m). The spec change costs one
    // pass each; then nothing is due for ten minutes.
    say!(
        "reaction: idle CPU, bindings at the default interval ({})",
        IDLE_INTERVAL
    );
    let slow: Vec<_> = bindings
        .iter()
        .cloned()
        .map(|mut b| {
            b.spec.interval = IDLE_INTERVAL.to_string();
            b.metadata.managed_fields = None;
            b.status = None;
            b
        })
        .collect();
    plane.apply(&slow).await?;
    let idle_from = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let last_call = emulator
            .requests_since(seq0)
            .await?
            .last()
            .map(|r| epoch_seconds(&r.time))
            .transpose()?
            .unwrap_or(0.0);
        let settled = now_seconds() - last_call >= 5.0;
        if settled && plane.ready_count(NAMESPACE).await? == bindings.len() {
            break now_seconds();
        }
        if now_seconds() > deadline + 120.0 {
            bail!("the bindings did not settle at the {IDLE_INTERVAL} interval");
        }
    };
    let idle_cpu0 = procfs::read(pid, ctx.ticks)?.cpu_seconds;
    tokio::time::sleep(plan.idle).await;
    let idle_cpu = (procfs::read(pid, ctx.ticks)?.cpu_seconds - idle_cpu0)
        / (now_seconds() - idle_from)
        * 100.0;
    let samples = sampler.stop().await?;
    let idle_peak = procfs::read(pid, ctx.ticks)?.peak_rss_kib;
    controller.stop().await?;
    emulator.stop().await?;

    let windows = windows(&requests)?;
    let durations: Vec<f64> = windows.iter().map(|(a, b)| b - a).collect();
    let periods: Vec<f64> = windows.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let window_seconds = Spread::of(&durations).context("no pass window seen")?;
    let cpu = |t: f64| procfs::cpu_at(&samples, t);
    let per_window: Vec<f64> = windows
        .iter()
        .filter_map(|(a, b)| Some(cpu(b + 1.0)? - cpu(a - 0.5)?))
        .collect();
    // Quiet stretches: before the first window, between windows, after the last one
    // (2 s after a window's last call, up to 1 s before the next window's first).
    let measured_from = samples_from(&samples, t0);
    let mut stretches = Vec::new();
    let mut cursor = measured_from;
    for (start, end) in &windows {
        stretches.push((cursor, start - 1.0));
        cursor = cursor.max(end + 2.0);
    }
    stretches.push((cursor, measured_to));
    let idle: Vec<f64> = stretches
        .into_iter()
        .filter(|(from, to)| to - from >= 5.0)
        .filter_map(|(from, to)| Some((cpu(to)? - cpu(from)?) / (to - from) * 100.0))
        .collect();
    let average = match (cpu(t0), cpu(measured_to)) {
        (Some(a), Some(b)) if measured_to > t0 => (b - a) / (measured_to - t0) * 100.0,
        _ => 0.0,
    };
    let lists = requests
        .iter()
        .filter(|r| CallClass::of(&r.method) == CallClass::List)
        .count() as f64;
    let intervals = (measured_to - t0) / plan.interval.as_secs_f64();
    let list_bound: u64 = PROJECTS.iter().map(|p| estate::list_bound(&state, p)).sum();
    let rss_timeline: Vec<(f64, f64)> = samples
        .iter()
        .step_by(20)
        .map(|(t, r)| (t - started, r.rss_kib as f64 / 1024.0))
        .collect();
    let peak = samples
        .iter()
        .map(|s| s.1.peak_rss_kib)
        .chain([final_reading.peak_rss_kib, idle_peak])
        .max()
        .unwrap_or_default();
    let bound = plan.interval.as_secs_f64() + window_seconds.median;
    Ok(ReactionResult {
        resources: plan.resources,
        bindings: bindings.len(),
        interval_seconds: plan.interval.as_secs_f64(),
        injected: injections.len(),
        span_seconds: plan.span.as_secs_f64(),
        p50_seconds: percentile(&corrections, 50.0).unwrap_or_default(),
        p99_seconds: percentile(&corrections, 99.0).unwrap_or_default(),
        max_seconds: percentile(&corrections, 100.0).unwrap_or_default(),
        reaction_seconds: corrections,
        bound_seconds: bound,
        windows: windows.len(),
        lists_per_interval: lists / intervals,
        list_bound,
        window_seconds,
        period_seconds: Spread::of(&periods).unwrap_or(window_seconds),
        footprint: Footprint {
            peak_rss_mib: peak as f64 / 1024.0,
            final_rss_mib: final_reading.rss_kib as f64 / 1024.0,
            cpu_seconds_per_window: Spread::of(&per_window).context("no CPU reading")?,
            binding_passes: passes,
            cpu_ms_per_binding_pass: (final_reading.cpu_seconds - cpu0) / passes.max(1.0) * 1000.0,
            idle_cpu_percent: idle_cpu,
            idle_seconds: plan.idle.as_secs_f64(),
            clock_ticks: ctx.ticks,
            between_windows_cpu_percent: Spread::of(&idle),
            average_cpu_percent: average,
            rss_mib_timeline: rss_timeline,
        },
    })
}

/// Bursts of Cloud Run calls separated by at least [`WINDOW_GAP`] of silence: (start, end).
pub fn windows(requests: &[RequestRecord]) -> Result<Vec<(f64, f64)>> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for r in requests {
        let t = epoch_seconds(&r.time)?;
        match out.last_mut() {
            Some(w) if t - w.1 < WINDOW_GAP => w.1 = w.1.max(t),
            _ => out.push((t, t)),
        }
    }
    if out.is_empty() {
        bail!("no Cloud Run call after the first pass");
    }
    Ok(out)
}

/// The first sample time at or after `t`.
fn samples_from(samples: &[(f64, Reading)], t: f64) -> f64 {
    samples.iter().map(|s| s.0).find(|s| *s >= t).unwrap_or(t)
}
