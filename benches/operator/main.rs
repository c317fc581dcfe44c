//! The operator's benchmarks (BENCHMARKS.md): drives the release binary as separate
//! processes — the Cloud Run emulator, `check`, the controller against a real
//! kube-apiserver (scripts/envtest.sh) — and a per-resource baseline in-process, counts
//! with the emulator, and writes raw results, markdown tables and an SVG plot.
//!
//! Run through `make bench` / `scripts/bench.sh` (`cargo bench --bench operator -- [--quick]
//! [--only cost,convergence,reaction,planner,drift-events,scale] [--publish]`). Under `cargo test` (no
//! `--bench` argument) it does nothing: benchmarks are not tests.
#![forbid(unsafe_code)]

mod cluster;
mod convergence;
mod cost;
mod emulator;
mod estate;
mod events;
mod planner;
mod procfs;
/// Google's Pub/Sub emulator (scenario 6): the integration tests' support module.
#[path = "../../tests/support/pubsub.rs"]
#[allow(
    dead_code, // the bench uses a part of it
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support shared with tests/, where a failed unwrap, expect or panic is the report"
)]
mod pubsub;
mod reaction;
mod report;
mod scale;
mod stats;
mod svg;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::cluster::ControlPlane;

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Progress on stderr, with the time since the start.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!(
            "[bench {:>6.1} s] {}",
            $crate::elapsed().as_secs_f64(),
            format_args!($($arg)*)
        )
    };
}

/// Time since the driver started.
pub fn elapsed() -> Duration {
    STARTED.get_or_init(Instant::now).elapsed()
}

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// 1: API cost per full re-check.
    Cost,
    /// 2: convergence under quota.
    Convergence,
    /// 3 and 4: footprint and reaction time (one controller run).
    Reaction,
    /// 5: the planner (reads criterion's results).
    Planner,
    /// 6: drift events against the periodic re-check (two controllers side by side).
    DriftEvents,
    /// 7: fleet scale, a growth curve from 1,000 to 100,000 resources.
    Scale,
}

/// Who remediates in the convergence scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Subject {
    /// The controller, against a real kube-apiserver.
    Controller,
    /// `check --fix`.
    Check,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Controller => "controller",
            Self::Check => "check --fix",
        })
    }
}

/// Benchmarks of binauthz-operator (see BENCHMARKS.md).
#[derive(Parser, Debug)]
#[command(name = "operator-bench")]
struct Cli {
    /// Short smoke run (small sizes, one run each) for CI.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Convergence subject; default: the controller when the binary has it, else `check`.
    #[arg(long, value_enum)]
    subject: Option<Subject>,
    /// Where results go (default: <target>/bench).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Criterion's output directory (default: <target>/criterion).
    #[arg(long)]
    criterion_dir: Option<PathBuf>,
    /// The operator binary (default: the one cargo built for this benchmark).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Copy the tables and the plot into BENCHMARKS.md and docs/bench/ (full runs only).
    #[arg(long)]
    publish: bool,
    /// An extra flag for every controller started in scenarios 1, 3, 4 and 7 (repeatable),
    /// e.g. `--controller-arg=--write-rate=6000` to see what the write budget costs.
    #[arg(long, allow_hyphen_values = true)]
    controller_arg: Vec<String>,
    /// Scenario 7 at these sizes only (resources, comma-separated; 1,000 per project, 10
    /// bindings per 1,000), e.g. `--only scale --scale-sizes 100000` to measure one size.
    /// Such a run is never published: the published curve is the default sizes.
    #[arg(long, value_delimiter = ',')]
    scale_sizes: Vec<usize>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What every scenario needs.
pub struct Ctx {
    /// The operator binary.
    pub bin: PathBuf,
    /// Scratch files: seeds, manifests, logs.
    pub work: PathBuf,
    /// The control plane, when the controller is measured.
    pub plane: Option<ControlPlane>,
    /// /proc clock ticks per second.
    pub ticks: f64,
    /// Extra controller flags (scenarios 1, 3, 4 and 7).
    pub controller_args: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Machine {
    cores: usize,
    load_average: String,
    load_average_end: String,
}

/// Everything one run measured (target/bench/results.json).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Results {
    schema: &'static str,
    mode: &'static str,
    started: String,
    seconds: f64,
    commit: String,
    machine: Machine,
    controller_available: bool,
    notes: Vec<String>,
    cost: Option<cost::CostResult>,
    convergence: Option<convergence::ConvergenceResult>,
    reaction: Option<reaction::ReactionResult>,
    planner: Option<planner::PlannerResult>,
    drift_events: Option<events::DriftEventsResult>,
    scale: Option<scale::ScaleResult>,
}

fn main() -> ExitCode {
    STARTED.get_or_init(Instant::now);
    // `cargo test --all-targets` runs bench targets without `--bench`: nothing to do.
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator benchmarks: not run under `cargo test`; use `make bench` or `make bench-quick`");
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn commit(repo: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(repo)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rev = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if !s.is_empty() => format!("{rev}-dirty"),
        _ => rev,
    }
}

async fn run(cli: Cli) -> Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = cli
        .operator
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_binauthz-operator")));
    // <target>/release/binauthz-operator
    let target = bin
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| repo.join("target"), Path::to_path_buf);
    let out = cli.out.clone().unwrap_or_else(|| target.join("bench"));
    let work = out.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let wants = |s: Scenario| cli.only.is_empty() || cli.only.contains(&s);
    let quick = cli.quick;
    let started = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let load = load_average();
    let controller_available = cluster::has_controller(&bin).await;
    let subject = cli.subject.unwrap_or(if controller_available {
        Subject::Controller
    } else {
        Subject::Check
    });
    let mut notes = Vec::new();
    if !cli.controller_arg.is_empty() {
        notes.push(format!(
            "Controllers of scenarios 1, 3, 4 and 7 ran with the extra flags `{}`.",
            cli.controller_arg.join(" ")
        ));
    }
    if !controller_available {
        notes.push(format!(
            "This binary has no `controller` subcommand: scenario 1 measures `check --fix` only, scenario 2 uses `check --fix`, scenarios 3, 4 and 7 were not run ({}).",
            bin.display()
        ));
    }
    say!(
        "{} run with {}; controller {}",
        if quick { "quick" } else { "full" },
        bin.display(),
        if controller_available {
            "available"
        } else {
            "NOT available"
        }
    );

    let needs_plane = controller_available
        && (wants(Scenario::Cost)
            || wants(Scenario::Reaction)
            || wants(Scenario::DriftEvents)
            || wants(Scenario::Scale)
            || (wants(Scenario::Convergence) && subject == Subject::Controller));
    let plane = if needs_plane {
        say!("starting a control plane (scripts/envtest.sh)");
        Some(ControlPlane::start(&repo, &out.join("control-plane")).await?)
    } else {
        None
    };
    let ctx = Ctx {
        bin,
        work,
        plane,
        ticks: procfs::clock_ticks(),
        controller_args: cli.controller_arg.clone(),
    };
    let result = scenarios(&ctx, &cli, subject, controller_available, &target).await;
    if let Some(plane) = ctx.plane {
        plane.stop().await?;
    }
    let (cost, convergence, reaction, planner, drift_events, scale) = result?;

    let results = Results {
        schema: "binauthz.dev/bench-results/v1",
        mode: if quick { "quick" } else { "full" },
        started: started.to_string(),
        seconds: elapsed().as_secs_f64(),
        commit: commit(&repo),
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            load_average: load,
            load_average_end: load_average(),
        },
        controller_available,
        notes,
        cost,
        convergence,
        reaction,
        planner,
        drift_events,
        scale,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    // results.md lies beside convergence.svg, here and in docs/bench/.
    let markdown = report::markdown(&results, "convergence.svg");
    std::fs::write(out.join("results.md"), &markdown)?;
    let svg = results.convergence.as_ref().map(report::convergence_svg);
    if let Some(svg) = &svg {
        std::fs::write(out.join("convergence.svg"), svg)?;
    }
    let scale_svg = results.scale.as_ref().map(report::scale_svg);
    if let Some(svg) = &scale_svg {
        std::fs::write(out.join("scale.svg"), svg)?;
    }
    println!("{markdown}");
    say!("raw results in {}", out.join("results.json").display());
    if cli.publish {
        if quick {
            say!("--publish ignored for a quick run (its figures are smoke figures)");
        } else if !cli.scale_sizes.is_empty() {
            say!("--publish ignored with --scale-sizes (the published curve is the default sizes)");
        } else {
            // Scenarios 1–5 share one block: a run of some of them would drop the
            // others' figures, so the block is refreshed only when all five ran.
            let core = if [
                Scenario::Cost,
                Scenario::Convergence,
                Scenario::Reaction,
                Scenario::Planner,
            ]
            .into_iter()
            .all(wants)
                && controller_available
            {
                report::scenarios(&results, "docs/bench/convergence.svg")
            } else {
                if report::scenarios(&results, "").is_some() {
                    say!("scenarios 1–5 did not all run: their published block is left as it is");
                }
                None
            };
            let events = results
                .drift_events
                .as_ref()
                .map(|x| report::drift_events_section(&results, x));
            let scale = results
                .scale
                .as_ref()
                .map(|x| report::scale_section(&results, x, "docs/bench/scale.svg"));
            publish(
                &repo,
                &markdown,
                [
                    (BEGIN, END, core.as_deref()),
                    (BEGIN_EVENTS, END_EVENTS, events.as_deref()),
                    (BEGIN_SCALE, END_SCALE, scale.as_deref()),
                ],
                [
                    ("convergence.svg", svg.as_deref()),
                    ("scale.svg", scale_svg.as_deref()),
                ],
            )?;
        }
    }
    Ok(())
}

type Measured = (
    Option<cost::CostResult>,
    Option<convergence::ConvergenceResult>,
    Option<reaction::ReactionResult>,
    Option<planner::PlannerResult>,
    Option<events::DriftEventsResult>,
    Option<scale::ScaleResult>,
);

async fn scenarios(
    ctx: &Ctx,
    cli: &Cli,
    subject: Subject,
    controller_available: bool,
    target: &Path,
) -> Result<Measured> {
    let wants = |s: Scenario| cli.only.is_empty() || cli.only.contains(&s);
    let quick = cli.quick;
    let planner = if wants(Scenario::Planner) {
        let dir = cli
            .criterion_dir
            .clone()
            .unwrap_or_else(|| target.join("criterion"));
        let found = planner::read(&dir)?;
        if found.is_none() {
            say!(
                "planner: no criterion results in {} (run `cargo bench --bench plan` first)",
                dir.display()
            );
        }
        found
    } else {
        None
    };
    let cost = if wants(Scenario::Cost) {
        let plan = cost::Plan {
            sizes: if quick {
                vec![1000]
            } else {
                vec![1000, 5000, 10000]
            },
            regions: ["us-central1", "europe-west1", "asia-northeast1", "us-east1"]
                .map(String::from)
                .to_vec(),
            bindings: 50,
            drift_ratio: 0.01,
            runs: if quick { 1 } else { 5 },
            controllers: if quick {
                vec![cost::Variant {
                    label: "unthrottled budgets",
                    flags: cost::unthrottled_flags(),
                    windows: 0,
                }]
            } else {
                vec![
                    cost::Variant {
                        label: "unthrottled budgets",
                        flags: cost::unthrottled_flags(),
                        windows: 5,
                    },
                    // Windows take over a minute here (the write budget stretches them).
                    cost::Variant {
                        label: "default budgets",
                        flags: Vec::new(),
                        windows: 3,
                    },
                ]
            },
            interval: Duration::from_secs(30),
        };
        Some(cost::run(ctx, &plan).await?)
    } else {
        None
    };
    let convergence = if wants(Scenario::Convergence) {
        let (cases, runs) = if quick {
            (
                vec![
                    convergence::Case {
                        drifted: 20,
                        quota: 120,
                        budget: 120,
                    },
                    convergence::Case {
                        drifted: 30,
                        quota: 60,
                        budget: 120,
                    },
                ],
                1,
            )
        } else {
            (
                vec![
                    convergence::Case {
                        drifted: 100,
                        quota: 60,
                        budget: 60,
                    },
                    convergence::Case {
                        drifted: 1000,
                        quota: 600,
                        budget: 600,
                    },
                    // 2b: the real quota is half the configured budget. D = 4W: the
                    // emulator's bucket lets the first W through at once, so fewer drifted
                    // services would finish before the quota bites.
                    convergence::Case {
                        drifted: 240,
                        quota: 60,
                        budget: 120,
                    },
                ],
                3,
            )
        };
        Some(convergence::run(ctx, subject, &cases, runs).await?)
    } else {
        None
    };
    let reaction = if wants(Scenario::Reaction) && controller_available {
        let plan = if quick {
            reaction::Plan {
                resources: 1000,
                bindings: 20,
                interval: Duration::from_secs(30),
                drifts: 5,
                span: Duration::from_secs(20),
                tail: Duration::from_secs(8),
                idle: Duration::from_secs(5),
            }
        } else {
            reaction::Plan {
                resources: 10_000,
                bindings: 100,
                interval: Duration::from_secs(30),
                drifts: 50,
                span: Duration::from_secs(300),
                tail: Duration::from_secs(15),
                idle: Duration::from_secs(30),
            }
        };
        Some(reaction::run(ctx, &plan).await?)
    } else {
        None
    };
    let drift_events = if wants(Scenario::DriftEvents) && controller_available {
        // One interval of the default 10m: the polling side's fixes wait for its next tick.
        let plan = if quick {
            events::Plan {
                resources: 400,
                bindings_per_project: 3,
                interval: Duration::from_secs(30),
                drifts: 5,
                uncovered: 2,
            }
        } else {
            events::Plan {
                resources: 2_000,
                bindings_per_project: 10,
                interval: Duration::from_secs(600),
                drifts: 100,
                uncovered: 20,
            }
        };
        Some(events::run(ctx, &plan).await?)
    } else {
        None
    };
    let scale = if wants(Scenario::Scale) && controller_available {
        // 10 bindings per 1,000 resources; up to 1,000 resources per project.
        // A full re-check must fit in the interval with room to spare.
        let size = |resources: usize| scale::Size {
            resources,
            projects: resources.div_ceil(1000),
            bindings: resources / 100,
            interval: Duration::from_secs(if resources > 10_000 { 60 } else { 30 }),
        };
        let plan = if !cli.scale_sizes.is_empty() {
            scale::Plan {
                sizes: cli.scale_sizes.iter().map(|&n| size(n)).collect(),
                windows: if quick { 1 } else { 3 },
                planner_runs: if quick { 3 } else { 5 },
            }
        } else if quick {
            scale::Plan {
                sizes: vec![size(1000)],
                windows: 1,
                planner_runs: 3,
            }
        } else {
            scale::Plan {
                sizes: vec![size(1000), size(10_000), size(100_000)],
                windows: 3,
                planner_runs: 5,
            }
        };
        Some(scale::run(ctx, &plan).await?)
    } else {
        None
    };
    Ok((cost, convergence, reaction, planner, drift_events, scale))
}

const BEGIN: &str = "<!-- BEGIN GENERATED BY make bench -->";
const END: &str = "<!-- END GENERATED BY make bench -->";
const BEGIN_EVENTS: &str = "<!-- BEGIN GENERATED BY make bench: drift events -->";
const END_EVENTS: &str = "<!-- END GENERATED BY make bench: drift events -->";
const BEGIN_SCALE: &str = "<!-- BEGIN GENERATED BY make bench: fleet scale -->";
const END_SCALE: &str = "<!-- END GENERATED BY make bench: fleet scale -->";

/// Refreshes, in BENCHMARKS.md, the generated block of each scenario group that ran
/// (`blocks`: begin marker, end marker, the block's text when its group ran) — each with
/// its own provenance, so a run of one group leaves the others' figures in place — and in
/// docs/bench/ the plots that were drawn and, with scenarios 1–5, `markdown`.
fn publish(
    repo: &Path,
    markdown: &str,
    blocks: [(&str, &str, Option<&str>); 3],
    plots: [(&str, Option<&str>); 2],
) -> Result<()> {
    let docs = repo.join("docs/bench");
    std::fs::create_dir_all(&docs)?;
    // docs/bench/results.md is the last run of scenarios 1–5 and whatever ran with them.
    if blocks[0].2.is_some() {
        std::fs::write(docs.join("results.md"), markdown)?;
    }
    for (file, svg) in plots {
        if let Some(svg) = svg {
            std::fs::write(docs.join(file), svg)?;
        }
    }
    let path = repo.join("BENCHMARKS.md");
    let mut text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for (begin, end, part) in blocks {
        let Some(part) = part else { continue };
        let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else {
            anyhow::bail!("{} has no {begin} … {end} section", path.display());
        };
        text = format!("{}{begin}\n\n{part}\n{}", &text[..a], &text[b..]);
    }
    std::fs::write(&path, text)?;
    say!("published to BENCHMARKS.md and docs/bench/");
    Ok(())
}
