//! Scenario 6: drift events against the periodic re-check, side by side in one run. Two
//! controllers over the same control plane, each with its own Cloud Run emulator and its
//! own projects, their bindings at the default 10m interval: one consumes the Cloud Run
//! audit log through Google's Pub/Sub emulator (`--drift-events`), the other only polls.
//! Each side gets the same number of drifts at uniformly random moments within one
//! interval; the events side also gets drifts on a project no binding covers. Reaction
//! times come from each emulator's audit log, Cloud Run calls from its request log.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cluster::Controller;
use crate::emulator::{epoch_seconds, now_seconds, CallTally, Emulator};
use crate::estate;
use crate::reaction::{reactions, Injection};
use crate::stats::percentile;
use crate::{pubsub, say, Ctx};

/// The events side's projects (bindings in namespace `events`).
const EVENT_PROJECTS: [&str; 3] = ["events-a", "events-b", "events-c"];
/// A project on the events side that no binding names.
const UNCOVERED: &str = "events-free";
/// The polling side's projects (bindings in namespace `polling`).
const POLL_PROJECTS: [&str; 3] = ["poll-a", "poll-b", "poll-c"];
/// The p99 target of the events side.
pub const TARGET_P99_SECONDS: f64 = 5.0;

/// How the scenario is sized.
pub struct Plan {
    /// Generated resources per side (the events side's uncovered project included).
    pub resources: usize,
    /// Bindings per covered project.
    pub bindings_per_project: usize,
    /// The bindings' interval.
    pub interval: Duration,
    /// Drifts injected on each side.
    pub drifts: usize,
    /// Drifts injected on the uncovered project (events side).
    pub uncovered: usize,
}

/// One side's reaction times.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    /// Its projects.
    pub projects: Vec<String>,
    /// Drifts injected.
    pub injected: usize,
    /// Injection → fix, seconds, in injection order.
    pub reaction_seconds: Vec<f64>,
    /// Median.
    pub p50_seconds: f64,
    /// 99th percentile (nearest rank).
    pub p99_seconds: f64,
    /// Longest.
    pub max_seconds: f64,
}

/// Cloud Run calls the events side made for one kind of resource, from the first drift on.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindCalls {
    /// `services`, `jobs` or `workerPools`.
    pub kind: String,
    /// Drifts injected on resources of this kind.
    pub drifts: usize,
    /// Calls naming a resource of this kind.
    pub calls: CallTally,
}

/// What the events side's controller counted (`binauthz_drift_events_*`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventCounts {
    /// Samples by their full name with labels.
    pub samples: BTreeMap<String, f64>,
}

/// Scenario 6's results.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftEventsResult {
    /// Generated resources per side.
    pub resources: usize,
    /// Bindings per side.
    pub bindings: usize,
    /// Their interval, seconds.
    pub interval_seconds: f64,
    /// The drifts were injected over this long, seconds (within one interval).
    pub span_seconds: f64,
    /// The controller with `--drift-events`.
    pub events: Side,
    /// The controller without.
    pub polling: Side,
    /// The events side's calls per kind of drifted resource.
    pub calls_by_kind: Vec<KindCalls>,
    /// Operation polls of the events side (they name an operation, not a resource).
    pub operation_polls: u64,
    /// List pages of the events side (its periodic re-check).
    pub lists: u64,
    /// Drifts on the uncovered project.
    pub uncovered_injected: usize,
    /// Cloud Run calls naming the uncovered project (target 0).
    pub uncovered_calls: u64,
    /// The events side's event metrics at the end.
    pub event_counts: EventCounts,
}

/// Both sides' emulators and controllers.
struct Sides {
    events: Emulator,
    polling: Emulator,
    events_controller: Controller,
    polling_controller: Controller,
}

/// Runs scenario 6.
pub async fn run(ctx: &Ctx, plan: &Plan) -> Result<DriftEventsResult> {
    let plane = ctx.plane.as_ref().context("no control plane")?;
    say!("drift events: starting Google's Pub/Sub emulator");
    let bus = tokio::task::spawn_blocking(pubsub::PubSub::start)
        .await
        .context("starting the Pub/Sub emulator")?;
    let (topic, subscription) = bus
        .topic_and_subscription("bench-ops", "run-audit", "run-audit-sub")
        .await;
    let mut events_projects: Vec<&str> = EVENT_PROJECTS.to_vec();
    events_projects.push(UNCOVERED);
    let events = spawn_emulator(
        ctx,
        plan,
        &events_projects,
        &[
            format!("--audit-log-topic={topic}"),
            format!("--pubsub-emulator-host={}", bus.host()),
        ],
        "events",
    )
    .await?;
    let polling = spawn_emulator(ctx, plan, &POLL_PROJECTS, &[], "polling").await?;

    let interval = format!("{}s", plan.interval.as_secs());
    let mut bindings = side_bindings(&events, "events", &EVENT_PROJECTS, plan, &interval).await?;
    let polling_bindings =
        side_bindings(&polling, "polling", &POLL_PROJECTS, plan, &interval).await?;
    let per_side = bindings.len();
    bindings.extend(polling_bindings);
    for ns in ["events", "polling"] {
        plane.namespace(ns).await?;
    }
    plane.apply(&bindings).await?;

    say!(
        "drift events: two controllers over {per_side} bindings each (interval {interval}), one with --drift-events"
    );
    let host = bus.host();
    let events_controller = Controller::start_with_env(
        &ctx.bin,
        plane.kubeconfig(),
        events.url(),
        "events",
        &[format!("--drift-events={subscription}")],
        &[("PUBSUB_EMULATOR_HOST", host.as_str())],
        &ctx.work.join("events-controller.log"),
    )
    .await?;
    let polling_controller = Controller::start(
        &ctx.bin,
        plane.kubeconfig(),
        polling.url(),
        "polling",
        &[],
        &ctx.work.join("polling-controller.log"),
    )
    .await?;
    // The polling controller's first tick after its start is where its drifts are fixed.
    let tick = now_seconds() + plan.interval.as_secs_f64();
    let sides = Sides {
        events,
        polling,
        events_controller,
        polling_controller,
    };
    let result = measure(ctx, plan, &sides, per_side, tick).await;
    sides.events_controller.stop().await?;
    sides.polling_controller.stop().await?;
    sides.events.stop().await?;
    sides.polling.stop().await?;
    drop(bus);
    result
}

async fn spawn_emulator(
    ctx: &Ctx,
    plan: &Plan,
    projects: &[&str],
    extra: &[String],
    side: &str,
) -> Result<Emulator> {
    let mut args: Vec<String> = [
        "--generate",
        &plan.resources.to_string(),
        "--generate-projects",
        &projects.join(","),
        "--generate-seed",
        "23",
        "--drift-ratio",
        "0",
    ]
    .map(String::from)
    .to_vec();
    args.extend_from_slice(extra);
    Emulator::spawn(
        &ctx.bin,
        &args,
        &ctx.work.join(format!("{side}-emulator.log")),
    )
    .await
}

async fn side_bindings(
    emulator: &Emulator,
    namespace: &str,
    projects: &[&str],
    plan: &Plan,
    interval: &str,
) -> Result<Vec<binauthz_operator::api::BinAuthzBinding>> {
    let state = emulator.state().await?;
    let mut out = Vec::new();
    for (i, project) in projects.iter().enumerate() {
        let regions = estate::regions(&state, project);
        let prefix = format!("{}{}-", &namespace[..1], i);
        out.extend(estate::bindings(
            namespace,
            &prefix,
            project,
            &regions,
            plan.bindings_per_project,
            interval,
        ));
    }
    Ok(out)
}

/// Which side a drift goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Events,
    Polling,
    Uncovered,
}

async fn measure(
    ctx: &Ctx,
    plan: &Plan,
    sides: &Sides,
    per_side: usize,
    tick: f64,
) -> Result<DriftEventsResult> {
    let plane = ctx.plane.as_ref().context("no control plane")?;
    let limit = now_seconds() + plan.interval.as_secs_f64() + 120.0;
    while plane.ready_count("events").await? < per_side
        || plane.ready_count("polling").await? < per_side
    {
        if now_seconds() > limit {
            bail!("not every binding was Ready within the interval");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The events of the first pass's own writes (none: no drift was generated) and the
    // status writes settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seq0 = last_request(&sides.events).await?;
    let audit0 = [
        last_change(&sides.events).await?,
        last_change(&sides.polling).await?,
    ];

    // Drifts at random moments from now until shortly before the polling side's next
    // tick, so each is fixed on that tick: its waits spread over the whole interval.
    let start = now_seconds();
    let margin = (plan.interval.as_secs_f64() / 30.0).max(5.0);
    let span = tick - margin - start;
    if span < 5.0 {
        bail!(
            "the first pass took until {:.0} s before the next tick",
            tick - start
        );
    }
    let mut rng = StdRng::seed_from_u64(4242);
    let state_events = sides.events.state().await?;
    let state_polling = sides.polling.state().await?;
    let mut schedule: Vec<(f64, Target, String)> = Vec::new();
    for (target, state, projects) in [
        (Target::Events, &state_events, &EVENT_PROJECTS[..]),
        (Target::Polling, &state_polling, &POLL_PROJECTS[..]),
        (Target::Uncovered, &state_events, &[UNCOVERED][..]),
    ] {
        let names: Vec<String> = projects
            .iter()
            .flat_map(|p| estate::resource_names(state, p))
            .collect();
        let count = if target == Target::Uncovered {
            plan.uncovered
        } else {
            plan.drifts
        };
        if names.len() < count {
            bail!(
                "{} resources cannot take {count} distinct drifts",
                names.len()
            );
        }
        for name in names.choose_multiple(&mut rng, count) {
            schedule.push((rng.random_range(0.0..span), target, name.clone()));
        }
    }
    schedule.sort_by(|a, b| a.0.total_cmp(&b.0));
    say!(
        "drift events: {} + {} drifts (+ {} uncovered) at random moments over {:.0} s",
        plan.drifts,
        plan.drifts,
        plan.uncovered,
        span
    );
    let mut events_injected: Vec<Injection> = Vec::new();
    let mut polling_injected: Vec<Injection> = Vec::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (offset, target, name) in schedule {
        let wait = start + offset - now_seconds();
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
        // gcloud's v1 Replace and the v2 Update operation, half each.
        let api = if rng.random_bool(0.5) { "v1" } else { "v2" };
        let emulator = match target {
            Target::Polling => &sides.polling,
            Target::Events | Target::Uncovered => &sides.events,
        };
        let change = emulator
            .clear_binary_authorization_through(&name, Some(api))
            .await?;
        if target == Target::Events {
            *kinds.entry(kind_of(&name).to_string()).or_default() += 1;
        }
        let injection = Injection {
            name,
            time: epoch_seconds(&change.time)?,
            seq: change.seq,
        };
        match target {
            Target::Events => events_injected.push(injection),
            Target::Polling => polling_injected.push(injection),
            Target::Uncovered => {}
        }
    }

    say!("drift events: waiting for the polling side's next tick");
    let deadline = now_seconds() + plan.interval.as_secs_f64() * 2.0 + 60.0;
    let (events_fixed, polling_fixed) = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let e = reactions(
            &sides.events.api_changes_since(audit0[0]).await?,
            &events_injected,
        )?;
        let p = reactions(
            &sides.polling.api_changes_since(audit0[1]).await?,
            &polling_injected,
        )?;
        if e.iter().chain(&p).all(Option::is_some) {
            break (flat(e), flat(p));
        }
        if now_seconds() > deadline {
            bail!(
                "fixed in time: {} of {} with events, {} of {} without",
                e.iter().flatten().count(),
                e.len(),
                p.iter().flatten().count(),
                p.len()
            );
        }
    };
    // Anything the last fixes set off (their own audit entries) arrives and is ignored.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let requests = sides.events.requests_since(seq0).await?;
    let metrics = sides.events_controller.metrics().await?;

    let uncovered_prefix = format!("projects/{UNCOVERED}/");
    let names = |r: &cloudrun_emulator::RequestRecord, prefix: &str| {
        r.resource.as_deref().is_some_and(|n| n.starts_with(prefix))
            || r.path.contains(&format!("/{prefix}"))
    };
    let uncovered_calls = requests
        .iter()
        .filter(|r| names(r, &uncovered_prefix))
        .count() as u64;
    let covered: Vec<_> = requests
        .iter()
        .filter(|r| !names(r, &uncovered_prefix))
        .collect();
    let calls_by_kind = ["services", "jobs", "workerPools"]
        .into_iter()
        .map(|kind| KindCalls {
            kind: kind.to_string(),
            drifts: kinds.get(kind).copied().unwrap_or_default(),
            calls: CallTally::of_requests(
                covered
                    .iter()
                    .copied()
                    .filter(|r| r.resource.as_deref().is_some_and(|n| kind_of(n) == kind)),
            ),
        })
        .collect();
    let all = CallTally::of_requests(covered.iter().copied());
    Ok(DriftEventsResult {
        resources: plan.resources,
        bindings: per_side,
        interval_seconds: plan.interval.as_secs_f64(),
        span_seconds: span,
        events: side(&EVENT_PROJECTS, events_fixed),
        polling: side(&POLL_PROJECTS, polling_fixed),
        calls_by_kind,
        operation_polls: all.polls,
        lists: all.lists,
        uncovered_injected: plan.uncovered,
        uncovered_calls,
        event_counts: EventCounts {
            samples: metrics
                .lines()
                .filter(|l| l.starts_with("binauthz_drift_events_"))
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.to_string(), value.parse().ok()?))
                })
                .collect(),
        },
    })
}

fn flat(found: Vec<Option<f64>>) -> Vec<f64> {
    found.into_iter().flatten().collect()
}

fn side(projects: &[&str], reaction_seconds: Vec<f64>) -> Side {
    Side {
        projects: projects.iter().map(|p| p.to_string()).collect(),
        injected: reaction_seconds.len(),
        p50_seconds: percentile(&reaction_seconds, 50.0).unwrap_or_default(),
        p99_seconds: percentile(&reaction_seconds, 99.0).unwrap_or_default(),
        max_seconds: percentile(&reaction_seconds, 100.0).unwrap_or_default(),
        reaction_seconds,
    }
}

/// `services`, `jobs` or `workerPools`: the collection in a resource name.
fn kind_of(name: &str) -> &str {
    name.split('/').nth(4).unwrap_or_default()
}

async fn last_request(emulator: &Emulator) -> Result<u64> {
    Ok(emulator
        .requests_since(0)
        .await?
        .last()
        .map_or(0, |r| r.seq))
}

async fn last_change(emulator: &Emulator) -> Result<u64> {
    Ok(emulator.audit_since(0).await?.last().map_or(0, |c| c.seq))
}
