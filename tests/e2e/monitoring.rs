//! The Grafana dashboard and the alert rules against what the operator really exports: a
//! controller reconciles bindings on a real kube-apiserver against an emulator that
//! answers some calls with 429; its /metrics is scraped twice, and Prometheus's own engine
//! (scripts/gotools/promql) evaluates every panel's query over the scrapes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use binauthz_operator::api::BinAuthzBinding;
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

use crate::support::gotool::gotool;
use crate::support::kube::{binding, operator_cluster, reconcile_now};
use crate::support::metrics::sum;
use crate::support::process::{Emulator, Operator, OperatorConfig};
use crate::support::repo;
use crate::support::wait::eventually;

const PATIENCE: Duration = Duration::from_secs(120);
const DASHBOARD: &str = "deploy/monitoring/dashboard.json";
const RULES: &str = "deploy/monitoring/alerts.rules.yaml";

/// One JSON value per line of the helper's output.
fn run_helper(args: &[&std::ffi::OsStr]) -> Vec<Value> {
    let out = Command::new(gotool("promql"))
        .args(args)
        .output()
        .expect("running the promql helper");
    assert!(
        out.status.success(),
        "promql {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON value per line"))
        .collect()
}

/// Metric names of the README's metrics table, with the series names a histogram adds.
fn documented_series() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let mut names = BTreeSet::new();
    for line in readme.lines().filter(|l| l.starts_with("| `binauthz_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`');
        names.insert(name.to_owned());
        if cells[2] == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// Series names present in a scrape.
fn scraped_series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split([' ', '{']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_returns_series_from_a_real_run_and_names_only_exported_metrics() {
    let Some((cp, kubeconfig)) = operator_cluster().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let api: Api<BinAuthzBinding> = Api::namespaced(cp.client().await, &ns);
    // A fifth of the calls get Google's 429: the 429 panel has data, the client retries.
    let emulator =
        Emulator::start_with("examples/cloudrun-seed.yaml", &["--error-rate", "429=0.2"]);
    let operator = Operator::start(
        &OperatorConfig::new(kubeconfig, emulator.url())
            .namespace(&ns)
            .identity(&format!("operator-{ns}"))
            .args(["--inventory-ttl=1s"]),
    )
    .await;
    let spec = |mode: &str, project: &str| {
        json!({
            "project": project,
            "locations": ["us-central1"],
            "targets": {"services": {"names": ["*"]}},
            "policy": {"useDefault": true},
            "mode": mode,
        })
    };
    for (name, mode, project) in [
        ("prod", "Enforce", "acme-prod"),
        ("staging", "Audit", "acme-staging"),
    ] {
        api.create(&PostParams::default(), &binding(name, spec(mode, project)))
            .await
            .expect("creating a binding");
    }
    // Both bindings have been passed over, and the fleet has seen 429s and remediations.
    // The 429s are random (a fifth of the calls): while none has come, ask for another pass
    // (each lists again), so that a run with few calls cannot miss them. Each request is
    // waited for until handled: the controller waits for a second without new requests
    // before a pass (its debounce), so a request every poll would hold it off.
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let first = eventually(
        "both bindings reported, remediations and 429s seen",
        PATIENCE,
        || async {
            let m = operator.metrics().await;
            let reported = ["prod", "staging"]
                .iter()
                .all(|b| m.contains(&format!("binauthz_binding_ready{{binding=\"{ns}/{b}\"}}")));
            let throttled = sum(
                &m,
                "binauthz_cloudrun_requests_total",
                &[("code", "RESOURCE_EXHAUSTED")],
            ) > 0.0;
            let fixed = sum(
                &m,
                "binauthz_remediations_total",
                &[("result", "succeeded")],
            ) > 0.0;
            if reported && throttled && fixed {
                Ok(m)
            } else {
                if reported && !throttled {
                    let n = asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    reconcile_now(&api, "staging", &format!("until-a-429-{n}")).await;
                }
                Err(m)
            }
        },
    )
    .await;
    for name in ["prod", "staging"] {
        reconcile_now(&api, name, "second-scrape").await;
    }
    let second = operator.metrics().await;

    let dir = tempfile::tempdir().expect("temporary directory");
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    std::fs::write(&a, &first).expect("writing a scrape");
    std::fs::write(&b, &second).expect("writing a scrape");
    let dashboard = repo().join(DASHBOARD);
    let lines = run_helper(&[
        "dashboard".as_ref(),
        dashboard.as_os_str(),
        a.as_os_str(),
        b.as_os_str(),
    ]);
    let (lint, queries) = lines.split_last().expect("the helper printed a lint line");
    let problems = lint["lint"].as_array().expect("lint list");
    assert!(
        problems.is_empty(),
        "{DASHBOARD} fails the dashboard lint: {problems:#?}"
    );
    assert!(queries.len() >= 10, "the dashboard's queries: {queries:#?}");

    let exported = scraped_series(&second);
    let mut failures = Vec::new();
    for q in queries {
        let panel = q["panel"].as_str().unwrap_or_default();
        if let Some(error) = q["error"].as_str() {
            failures.push(format!("{panel}: {} → {error}", q["expr"]));
            continue;
        }
        if q["series"].as_u64() == Some(0) {
            failures.push(format!("{panel}: {} returns no series", q["expr"]));
        }
        for metric in q["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !exported.contains(metric) {
                failures.push(format!("{panel}: {metric} is not in /metrics"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard queries against a real run:\n{}",
        failures.join("\n")
    );
    check_rules_name_documented_metrics(&repo().join(RULES));
}

/// Every metric an alert rule reads is one the operator documents (and so exports: the
/// metrics table test keeps the two equal).
fn check_rules_name_documented_metrics(rules: &Path) {
    let documented = documented_series();
    let rules = run_helper(&["rules".as_ref(), rules.as_os_str()]);
    assert!(rules.len() >= 10, "the alert rules: {rules:#?}");
    let unknown: Vec<String> = rules
        .iter()
        .flat_map(|r| {
            let rule = r["rule"].as_str().unwrap_or_default().to_owned();
            r["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .filter(|m| !documented.contains(m))
                .map(move |m| format!("{rule}: {m}"))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "alert rules read metrics the operator does not export: {unknown:?}"
    );
}
