//! The generated part of BENCHMARKS.md (markdown tables) and the convergence plot.

use std::fmt::Write as _;

use crate::convergence::ConvergenceResult;
use crate::cost::{CostResult, SubjectCost};
use crate::events::{DriftEventsResult, TARGET_P99_SECONDS};
use crate::planner::{PlannerResult, TARGET_MS};
use crate::reaction::ReactionResult;
use crate::scale::{ScaleResult, SizeResult, TARGET_PLAN_MS, TARGET_RESOURCES, TARGET_RSS_MIB};
use crate::stats::Spread;
use crate::svg::{trim, Chart, Series};
use crate::Results;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The markdown of every scenario that ran; `figure` is where the convergence plot lies
/// relative to the document the markdown goes into (`convergence.svg` beside
/// results.md, `docs/bench/convergence.svg` from BENCHMARKS.md).
pub fn markdown(r: &Results, figure: &str) -> String {
    let mut s = scenarios(r, figure).unwrap_or_default();
    if let Some(x) = &r.drift_events {
        s.push_str(&drift_events_section(r, x));
    }
    if let Some(x) = &r.scale {
        s.push_str(&scale_section(r, x, "scale.svg"));
    }
    s
}

/// "Measured … on … cores …": where and when a run measured.
fn provenance(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured {} ({} mode, {:.1} min in all) on {} cores, load average {} at the start, commit `{}`; raw results: `target/bench/results.json`.\n",
        r.started, r.mode, r.seconds / 60.0, r.machine.cores, r.machine.load_average, r.commit
    );
    for note in &r.notes {
        let _ = writeln!(s, "> {note}\n");
    }
    s
}

/// Scenarios 1–5 with the run's provenance; `None` when none of them ran.
pub fn scenarios(r: &Results, figure: &str) -> Option<String> {
    if r.cost.is_none() && r.convergence.is_none() && r.reaction.is_none() && r.planner.is_none() {
        return None;
    }
    let mut s = provenance(r);
    if let Some(c) = &r.cost {
        cost(&mut s, c);
    }
    if let Some(c) = &r.convergence {
        convergence(&mut s, c, figure);
    }
    if let Some(x) = &r.reaction {
        footprint(&mut s, x);
        reaction(&mut s, x);
    }
    if let Some(p) = &r.planner {
        planner(&mut s, p);
    }
    Some(s)
}

/// Scenario 6 with the run's provenance (it is published on its own: `--only drift-events`
/// refreshes it without the 19 minutes of the others).
pub fn drift_events_section(r: &Results, x: &DriftEventsResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### 6. Drift events\n");
    s.push_str(&provenance(r));
    let _ = writeln!(
        s,
        "Two controllers side by side, each over {} bindings ({} generated resources, interval {:.0} s), one with `--drift-events`: {} drifts each at random moments over {:.0} s (within one interval), half through Cloud Run's v1 API and half through v2; time from the drift to the fix, both from each side's emulator audit log.\n",
        x.bindings, thousands(x.resources), x.interval_seconds, x.events.injected, x.span_seconds
    );
    let _ = writeln!(
        s,
        "| Drift → fix, seconds | events on | events off (periodic re-check) | off ÷ on |"
    );
    let _ = writeln!(s, "|---|---|---|---|");
    for (name, on, off) in [
        ("p50", x.events.p50_seconds, x.polling.p50_seconds),
        ("p99", x.events.p99_seconds, x.polling.p99_seconds),
        ("max", x.events.max_seconds, x.polling.max_seconds),
    ] {
        let _ = writeln!(
            s,
            "| {name} | {on:.2} | {off:.1} | {:.0}× |",
            off / on.max(1e-3)
        );
    }
    let _ = writeln!(
        s,
        "\nTarget p99 with events under {TARGET_P99_SECONDS:.0} s: {}.\n",
        verdict(x.events.p99_seconds < TARGET_P99_SECONDS)
    );
    let _ = writeln!(
        s,
        "Cloud Run calls of the events side from the first drift to the end, by the kind of resource they name (its periodic re-check listed {} pages meanwhile; lists are not per event). Target: 1 GET and 1 write per drift.\n",
        x.lists
    );
    let _ = writeln!(
        s,
        "| Kind | Drifts | GETs per drift | Writes per drift | 429s |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for k in &x.calls_by_kind {
        let per = |n: u64| n as f64 / k.drifts.max(1) as f64;
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {:.2} | {} |",
            k.kind,
            k.drifts,
            per(k.calls.gets),
            per(k.calls.writes),
            k.calls.throttled
        );
    }
    let _ = writeln!(
        s,
        "\nOperation polls (v2 writes are long-running): {} for {} drifts. Drifts on a project no binding covers: {}, Cloud Run calls naming it: {} (target 0: {}).\n",
        x.operation_polls,
        x.events.injected,
        x.uncovered_injected,
        x.uncovered_calls,
        verdict(x.uncovered_calls == 0)
    );
    let _ = writeln!(s, "The events side's counters at the end:\n");
    let _ = writeln!(s, "| Sample | Value |");
    let _ = writeln!(s, "|---|---|");
    for (name, value) in &x.event_counts.samples {
        let _ = writeln!(s, "| `{name}` | {value} |");
    }
    let _ = writeln!(s);
    s
}

fn cost_row(s: &mut String, estate: &str, subject: &str, c: &SubjectCost, bound: u64) {
    let _ = writeln!(
        s,
        "| {estate} | {subject} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        c.windows.len(),
        c.rechecks.show(0),
        c.reads.show(0),
        c.lists.show(0),
        c.gets.show(0),
        c.polls.show(0),
        format_args!("{} ({})", c.writes.show(0), c.drifted.show(0)),
        c.read_ratio.show(2),
        bound
    );
}

fn cost(s: &mut String, c: &CostResult) {
    let _ = writeln!(s, "### 1. API cost per full re-check\n");
    let _ = writeln!(
        s,
        "{} bindings per project over {} regions × 3 kinds, {:.0}% of the resources drifted per window. \
         Calls per pass window as the emulator counted them; median (min–max) over the windows. \
         A window that outlasts the interval (fixes paced by the write budget) also holds the next interval's \
         full re-check: re-checks per window counts them (the most times one collection's first page was listed), \
         and the ratios are per re-check.\n",
        c.bindings,
        c.regions,
        c.drift_ratio * 100.0
    );
    let _ = writeln!(
        s,
        "| Estate | Subject | Windows | Re-checks per window | Reads | Lists | GETs | Op. polls | Writes (drifted) | Reads per re-check ÷ bound | List bound Σ⌈n/100⌉ |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for size in &c.sizes {
        let estate = thousands(size.resources);
        for ctl in &size.controllers {
            if let Some(steady) = &ctl.steady {
                let who = format!("controller, {}, steady state", ctl.label);
                cost_row(s, &estate, &who, steady, size.list_bound);
            }
            let who = format!("controller, {}, first pass", ctl.label);
            cost_row(s, &estate, &who, &ctl.first, size.list_bound);
        }
        cost_row(s, &estate, "`check --fix`", &size.check, size.list_bound);
        cost_row(
            s,
            &estate,
            "per-resource baseline",
            &size.baseline,
            size.list_bound,
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| Estate | Matched | Subject | Reads per re-check ÷ bound (target ≤ 1.05) | Baseline reads ÷ these reads per re-check (target ≥ 50 at 5,000) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for size in &c.sizes {
        let mut subjects: Vec<(String, &SubjectCost)> = size
            .controllers
            .iter()
            .map(|c| {
                let (what, cost) = match &c.steady {
                    Some(steady) => ("steady state", steady),
                    None => ("first pass", &c.first),
                };
                (format!("controller, {}, {what}", c.label), cost)
            })
            .collect();
        subjects.push(("`check --fix`".into(), &size.check));
        for (who, op) in subjects {
            let factors: Vec<f64> = size
                .baseline
                .windows
                .iter()
                .flat_map(|b| {
                    op.windows
                        .iter()
                        .map(move |w| b.calls.reads() as f64 / w.reads_per_recheck())
                })
                .collect();
            let factor = Spread::of(&factors).map_or_else(String::new, |f| {
                let target = if size.resources == 5000 {
                    format!(" — {}", verdict(f.min >= 50.0))
                } else {
                    String::new()
                };
                format!("{}×{target}", f.show(1))
            });
            let _ = writeln!(
                s,
                "| {} | {} | {who} | {} — {} | {factor} |",
                thousands(size.resources),
                thousands(size.matched),
                op.read_ratio.show(2),
                verdict(op.read_ratio.max <= 1.05),
            );
        }
    }
    let _ = writeln!(s);
}

fn convergence(s: &mut String, c: &ConvergenceResult, figure: &str) {
    let _ = writeln!(s, "### 2. Convergence under quota\n");
    let _ = writeln!(
        s,
        "Subject: **{}**. Emulator latency {} ms per call, operations done after {} ms, write quota W per minute per project and region at the emulator, client `--write-rate W`. \
         Time from the binding's creation (`check`: its start) to the last fix applied, per run; median (min–max).\n",
        c.subject, c.latency_ms, c.operation_delay_ms
    );
    let _ = writeln!(
        s,
        "| D drifted | W per minute | Bound D/W | Time to full compliance | ÷ bound (target ≤ 1.15) | Subject done | 429s (target 0) | Runs |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for case in c
        .cases
        .iter()
        .filter(|c| c.budget_per_minute == c.quota_per_minute)
    {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} s | {} s | {} — {} | {} s | {} — {} | {} |",
            thousands(case.drifted),
            case.quota_per_minute,
            case.bound_seconds,
            case.seconds_to_compliance.show(1),
            case.ratio.show(3),
            verdict(case.ratio.max <= 1.15),
            case.seconds_to_done.show(1),
            case.throttled.show(0),
            verdict(case.throttled.max == 0.0),
            case.runs.len()
        );
    }
    let over: Vec<_> = c
        .cases
        .iter()
        .filter(|c| c.budget_per_minute != c.quota_per_minute)
        .collect();
    if !over.is_empty() {
        let _ = writeln!(
            s,
            "\n#### 2b. The real write quota is half the configured budget\n\n\
             The same, but the client runs with `--write-rate B`, B = 2W: it must find the real quota from the 429s (adaptive rate, docs/cloudrun-client.md). \
             The emulator answers 429 as Google does (ErrorInfo with the quota metric and `quota_limit_value`, no RetryInfo). 429s are over every write attempt (429s included).\n"
        );
        let _ = writeln!(
            s,
            "| D drifted | real quota W | budget B | Bound D/W | Time to full compliance | ÷ bound (target ≤ 1.25) | 429s | 429s ÷ writes (target ≤ 2 %) | Runs |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for case in over {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} s | {} s | {} — {} | {} | {} % — {} | {} |",
                thousands(case.drifted),
                case.quota_per_minute,
                case.budget_per_minute,
                case.bound_seconds,
                case.seconds_to_compliance.show(1),
                case.ratio.show(3),
                verdict(case.ratio.max <= 1.25),
                case.throttled.show(0),
                Spread {
                    median: case.throttled_share.median * 100.0,
                    min: case.throttled_share.min * 100.0,
                    max: case.throttled_share.max * 100.0,
                    ..case.throttled_share
                }
                .show(1),
                verdict(case.throttled_share.max <= 0.02),
                case.runs.len()
            );
        }
    }
    let _ = writeln!(s, "\n![Compliance over time]({figure})\n");
}

fn footprint(s: &mut String, x: &ReactionResult) {
    let f = &x.footprint;
    let _ = writeln!(s, "### 3. Footprint\n");
    let _ = writeln!(
        s,
        "The controller watching {} bindings over {} resources (interval {:.0} s, one run of {:.1} min, {} pass windows; /proc of the controller process sampled every 250 ms).\n",
        x.bindings,
        thousands(x.resources),
        x.interval_seconds,
        (x.span_seconds + x.interval_seconds) / 60.0,
        x.windows
    );
    let _ = writeln!(s, "| Figure | Measured | Target |");
    let _ = writeln!(s, "|---|---|---|");
    let _ = writeln!(
        s,
        "| Peak RSS (VmHWM) | {:.1} MiB | ≤ 64 MiB — {} |",
        f.peak_rss_mib,
        verdict(f.peak_rss_mib <= 64.0)
    );
    let _ = writeln!(
        s,
        "| CPU per pass window (all {} bindings) | {} s, over a window of {} s | — |",
        x.bindings,
        f.cpu_seconds_per_window.show(2),
        x.window_seconds.show(1)
    );
    let _ = writeln!(
        s,
        "| CPU per binding pass (all CPU of the run ÷ {:.0} completed passes) | {:.1} ms | — |",
        f.binding_passes, f.cpu_ms_per_binding_pass
    );
    // /proc counts CPU time in clock ticks (10 ms): below one tick, say so.
    let resolution = 100.0 / f.idle_seconds / f.clock_ticks;
    let idle = if f.idle_cpu_percent < resolution {
        format!("< {resolution:.2} % of a core (not one clock tick)")
    } else {
        format!("{:.2} % of a core", f.idle_cpu_percent)
    };
    let _ = writeln!(
        s,
        "| Idle CPU: the same bindings at the default 10m interval, between their passes ({:.0} s) | {idle} | < 1 % — {} |",
        f.idle_seconds,
        verdict(f.idle_cpu_percent < 1.0)
    );
    if let Some(between) = &f.between_windows_cpu_percent {
        let _ = writeln!(
            s,
            "| CPU in the quiet stretches between pass windows at the 30 s interval | {} % of a core | — |",
            between.show(2)
        );
    }
    let _ = writeln!(
        s,
        "| Average CPU over the 30 s-interval part of the run | {:.2} % of a core | — |",
        f.average_cpu_percent
    );
    let _ = writeln!(
        s,
        "| List calls per 30 s interval ÷ one full re-check Σ⌈n/100⌉ = {} | {:.2} | — |\n",
        x.list_bound,
        x.lists_per_interval / x.list_bound as f64
    );
}

fn reaction(s: &mut String, x: &ReactionResult) {
    let _ = writeln!(s, "### 4. Reaction time\n");
    let _ = writeln!(
        s,
        "Same run: {} drifts injected at random moments over {:.0} s; time from the injection to the controller's fix, both from the emulator's audit log. \
         Bound = interval + one pass window (median window {} s, period between windows {} s).\n",
        x.injected,
        x.span_seconds,
        x.window_seconds.show(1),
        x.period_seconds.show(1)
    );
    let _ = writeln!(s, "| | Seconds | ÷ bound ({:.1} s) |", x.bound_seconds);
    let _ = writeln!(s, "|---|---|---|");
    for (name, v) in [
        ("p50", x.p50_seconds),
        ("p99", x.p99_seconds),
        ("max", x.max_seconds),
    ] {
        let _ = writeln!(s, "| {name} | {v:.1} | {:.2} |", v / x.bound_seconds);
    }
    let _ = writeln!(s);
}

fn planner(s: &mut String, p: &PlannerResult) {
    let _ = writeln!(s, "### 5. Planner\n");
    let _ = writeln!(
        s,
        "`cargo bench --bench plan` (criterion): milliseconds per iteration, median (min–max) over criterion's samples; target {TARGET_MS:.0} ms for 10,000 resources × 100 bindings.\n"
    );
    let _ = writeln!(s, "| Benchmark | ms | ÷ target |");
    let _ = writeln!(s, "|---|---|---|");
    for b in &p.benches {
        let _ = writeln!(s, "| `{}` | {} | {:.2} |", b.id, b.ms.show(2), b.ratio);
    }
    let _ = writeln!(s);
}

/// The convergence plot: every run's compliance over time, per case, with the bound.
pub fn convergence_svg(c: &ConvergenceResult) -> String {
    const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut series = Vec::new();
    let mut x_max: f64 = 0.0;
    for (i, case) in c.cases.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        x_max = x_max.max(case.bound_seconds * 1.2);
        for (k, run) in case.runs.iter().enumerate() {
            x_max = x_max.max(run.seconds_to_compliance * 1.05);
            series.push(Series {
                label: format!(
                    "D = {}, W = {}/min{} ({} run{})",
                    case.drifted,
                    case.quota_per_minute,
                    if case.budget_per_minute == case.quota_per_minute {
                        String::new()
                    } else {
                        format!(", budget {}/min", case.budget_per_minute)
                    },
                    case.runs.len(),
                    if case.runs.len() == 1 { "" } else { "s" }
                ),
                color,
                dashed: false,
                width: 1.5,
                legend: k == 0,
                points: thin(&run.curve, 400)
                    .into_iter()
                    .map(|(t, f)| (t, f * 100.0))
                    .collect(),
            });
        }
        series.push(Series {
            label: format!("bound D/W = {:.0} s", case.bound_seconds),
            color,
            dashed: true,
            width: 1.0,
            legend: i == 0 || c.cases[i - 1].bound_seconds != case.bound_seconds,
            points: vec![(0.0, 0.0), (case.bound_seconds, 100.0)],
        });
    }
    Chart {
        title: format!(
            "Convergence under quota ({}): compliant services over time",
            c.subject
        ),
        x_label: "seconds since the binding was created".into(),
        y_label: "compliant (% of D)".into(),
        x_min: 0.0,
        x_max: x_max.max(1.0),
        x_format: trim,
        y_max: 100.0,
        y_format: |v| format!("{v:.0}%"),
        series,
    }
    .render()
}

/// At most `n` points of a curve, keeping the first and the last.
fn thin(points: &[(f64, f64)], n: usize) -> Vec<(f64, f64)> {
    if points.len() <= n {
        return points.to_vec();
    }
    let step = points.len() as f64 / n as f64;
    let mut out: Vec<(f64, f64)> = (0..n).map(|i| points[(i as f64 * step) as usize]).collect();
    if let Some(last) = points.last() {
        out.push(*last);
    }
    out
}

/// Per 10,000 resources of a size.
fn per_10k(value: f64, x: &SizeResult) -> f64 {
    value * 10_000.0 / x.resources as f64
}

/// Scenario 7 with the run's provenance, its growth-curve table, the targets judged at
/// 100,000 resources, and the single-replica limits derived from the largest sizes;
/// `figure` is where the plot lies relative to the document.
pub fn scale_section(r: &Results, x: &ScaleResult, figure: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### 7. Fleet scale\n");
    s.push_str(&provenance(r));
    let _ = writeln!(
        s,
        "One controller run per size over generated resources in projects × {} regions × 3 kinds, 10 bindings per 1,000 resources (a tenth of the projects hold half of them), interval per size as shown, controller flags `{}`. \
         CPU and reads per full re-check: median (min–max) over the steady re-checks that follow the first re-check after every binding was Ready; \
         that first one (in brackets) also reads, once, the revisions of the resources the first pass fixed (`src/fleet/effect.rs`). Planner: median (min–max) over in-process runs of `plan` with every binding over every resource at once. \
         \"per 10k\" columns divide by the resources in tens of thousands: a flat or falling column is a straight or better growth curve.\n",
        x.regions,
        x.flags.join(" ")
    );
    let _ = writeln!(
        s,
        "| Resources | Projects | Bindings (most in one project) | Interval | Peak RSS, MiB | per 10k | CPU per re-check, s | per 10k | Re-check wall time, s | Planner, ms | per 10k | Reads per re-check ÷ bound Σ⌈n/100⌉ (first re-check) | First Ready, s | per 10k | Load average at start |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for z in &x.sizes {
        let _ = writeln!(
            s,
            "| {} | {} | {} ({}) | {:.0} s | {:.1} | {:.1} | {} | {:.3} | {} | {} | {:.2} | {} of {} ({:.2}) | {:.1} | {:.2} | {} |",
            thousands(z.resources),
            z.projects,
            thousands(z.bindings),
            z.bindings_per_project.iter().max().copied().unwrap_or_default(),
            z.interval_seconds,
            z.peak_rss_mib,
            per_10k(z.peak_rss_mib, z),
            z.recheck_cpu_seconds.show(2),
            per_10k(z.recheck_cpu_seconds.median, z),
            z.recheck_seconds.show(1),
            z.planner_ms.show(1),
            per_10k(z.planner_ms.median, z),
            z.read_ratio.show(2),
            thousands(z.list_bound as usize),
            z.first_read_ratio,
            z.first_ready_seconds,
            per_10k(z.first_ready_seconds, z),
            z.load_average
        );
    }
    let _ = writeln!(s);
    match x.sizes.iter().find(|z| z.resources == TARGET_RESOURCES) {
        Some(z) => {
            let _ = writeln!(
                s,
                "Targets at {} resources and {} bindings:\n",
                thousands(z.resources),
                thousands(z.bindings)
            );
            let _ = writeln!(s, "| Figure | Measured | Target |");
            let _ = writeln!(s, "|---|---|---|");
            let _ = writeln!(
                s,
                "| Peak RSS (VmHWM) | {:.1} MiB | ≤ {TARGET_RSS_MIB:.0} MiB — {} |",
                z.peak_rss_mib,
                verdict(z.peak_rss_mib <= TARGET_RSS_MIB)
            );
            let _ = writeln!(
                s,
                "| Planning (every binding over every resource) | {} ms | ≤ {TARGET_PLAN_MS:.0} ms — {} |",
                z.planner_ms.show(1),
                verdict(z.planner_ms.max <= TARGET_PLAN_MS)
            );
            let _ = writeln!(
                s,
                "| Reads per full re-check ÷ bound (steady re-checks) | {} | 1.00 — {} |\n",
                z.read_ratio.show(2),
                verdict(z.read_ratio.max < 1.005)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "The targets are judged at {} resources, which this run did not measure.\n",
                thousands(TARGET_RESOURCES)
            );
        }
    }
    let _ = writeln!(s, "![Cost per resource as the fleet grows]({figure})\n");
    limits(&mut s, x);
    s
}

/// "Single-replica limits": the largest size measured, and the growth between the two
/// largest sizes per 10,000 resources, to size one replica by.
fn limits(s: &mut String, x: &ScaleResult) {
    let Some(top) = x.sizes.last() else { return };
    let _ = writeln!(s, "### Single-replica limits\n");
    let _ = writeln!(
        s,
        "The largest fleet measured on one replica: {} resources in {} projects under {} bindings — peak RSS {:.1} MiB, {} s of CPU per full re-check ({} s wall), every binding Ready {:.1} s after the controller started, planning {} ms, reads per re-check {}× the list bound.\n",
        thousands(top.resources),
        top.projects,
        thousands(top.bindings),
        top.peak_rss_mib,
        top.recheck_cpu_seconds.show(2),
        top.recheck_seconds.show(1),
        top.first_ready_seconds,
        top.planner_ms.show(1),
        top.read_ratio.show(2)
    );
    let n = x.sizes.len();
    if n < 2 {
        return;
    }
    let low = &x.sizes[n - 2];
    let step = (top.resources - low.resources) as f64 / 10_000.0;
    let slope = |f: Figure| (f(top) - f(low)) / step;
    let rss = slope(|z| z.peak_rss_mib);
    let cpu = slope(|z| z.recheck_cpu_seconds.median);
    let ready = slope(|z| z.first_ready_seconds);
    let base = top.peak_rss_mib - rss * top.resources as f64 / 10_000.0;
    let _ = writeln!(
        s,
        "Growth from {} to {} resources (bindings grow with them, 10 per 1,000), per 10,000 resources more:\n",
        thousands(low.resources),
        thousands(top.resources)
    );
    let _ = writeln!(s, "| What | Grows by | Sizing |");
    let _ = writeln!(s, "|---|---|---|");
    let _ = writeln!(
        s,
        "| Peak RSS | {rss:.1} MiB | memory limit ≈ {base:.0} MiB + {rss:.1} MiB × resources ÷ 10,000, plus headroom |"
    );
    let _ = writeln!(
        s,
        "| CPU per full re-check | {cpu:.2} s | at the default 10m interval: {:.2} % of a core per 10,000 resources |",
        cpu / 600.0 * 100.0
    );
    let _ = writeln!(
        s,
        "| Time to first Ready after a start | {ready:.1} s | how long a restarted or newly elected replica needs before every binding reports again |"
    );
    let _ = writeln!(
        s,
        "| Reads per full re-check | Σ⌈n/100⌉ list pages | one page per 100 resources of each project, region and kind: against Cloud Run's read quota per project and region, not per replica |\n"
    );
}

/// One figure of a size.
type Figure = fn(&SizeResult) -> f64;

/// The growth curve: each figure per resource, relative to the smallest size (1 = as
/// cheap per resource as there; below 1, cheaper), over the resources on a log scale.
pub fn scale_svg(x: &ScaleResult) -> String {
    const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let figures: [(&str, Figure); 4] = [
        ("peak RSS", |z| z.peak_rss_mib),
        ("CPU per full re-check", |z| z.recheck_cpu_seconds.median),
        ("planner", |z| z.planner_ms.median),
        ("time to first Ready", |z| z.first_ready_seconds),
    ];
    let log = |z: &SizeResult| (z.resources as f64).log10();
    let (x_min, x_max) = match (x.sizes.first(), x.sizes.last()) {
        (Some(a), Some(b)) => (log(a), log(b).max(log(a) + 1.0)),
        _ => (3.0, 5.0),
    };
    let mut series = Vec::new();
    let mut y_max: f64 = 1.0;
    for ((label, f), color) in figures.into_iter().zip(COLORS) {
        let Some(first) = x.sizes.first() else { break };
        let base = f(first) / first.resources as f64;
        let points: Vec<(f64, f64)> = x
            .sizes
            .iter()
            .map(|z| {
                (
                    log(z),
                    f(z) / z.resources as f64 / base.max(f64::MIN_POSITIVE),
                )
            })
            .collect();
        y_max = points.iter().map(|p| p.1).fold(y_max, f64::max);
        series.push(Series {
            label: format!("{label} per resource"),
            color,
            dashed: false,
            width: 2.0,
            legend: true,
            points,
        });
    }
    series.push(Series {
        label: "flat: linear growth".into(),
        color: "#7f7f7f",
        dashed: true,
        width: 1.0,
        legend: true,
        points: vec![(x_min, 1.0), (x_max, 1.0)],
    });
    Chart {
        title: "Fleet scale: cost per resource, relative to the smallest fleet".into(),
        x_label: "resources (log scale; 10 bindings per 1,000)".into(),
        y_label: "per resource ÷ per resource at the smallest size".into(),
        x_min,
        x_max,
        x_format: |v| {
            if (v - v.round()).abs() > 1e-9 {
                String::new()
            } else {
                thousands(10f64.powf(v.round()) as usize)
            }
        },
        y_max: y_max * 1.15,
        y_format: |v| format!("{v:.2}"),
        series,
    }
    .render()
}
