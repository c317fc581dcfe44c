//! Drift events end to end: `binauthz-operator controller --drift-events` (a subprocess)
//! against a real kube-apiserver, Google's Pub/Sub emulator and the Cloud Run emulator
//! (a subprocess publishing its audit log to Pub/Sub), with the periodic interval at 10m:
//! a drift is fixed within seconds by the event, without a re-list; the reconcile-now
//! annotation starts a pass and is echoed in the status.

use crate::support::kube::{binding, operator_cluster};
use crate::support::metrics;
use crate::support::process::{Emulator, Operator, OperatorConfig};
use crate::support::pubsub;
use crate::support::wait::eventually;

use std::time::{Duration, Instant};

use binauthz_operator::api::BinAuthzBinding;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

const SEED: &str = "examples/cloudrun-seed.yaml";
const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";
const PATIENCE: Duration = Duration::from_secs(90);

/// A binding of every resource of one kind in acme-prod/us-central1 to the strict policy.
fn strict_binding(name: &str, kind: &str, interval: &str) -> BinAuthzBinding {
    binding(
        name,
        json!({
            "project": "acme-prod",
            "locations": ["us-central1"],
            "targets": {kind: {"names": ["*"]}},
            "policy": {"name": STRICT},
            "interval": interval,
        }),
    )
}

fn lists(counters: &Value) -> u64 {
    counters["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["method"].as_str().is_some_and(|m| m.ends_with(".list")))
        .filter_map(|c| c["count"].as_u64())
        .sum()
}

#[tokio::test]
async fn a_drift_is_fixed_by_its_audit_log_event_within_seconds_at_a_10m_interval() {
    let Some((cp, kubeconfig)) = operator_cluster().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let api: Api<BinAuthzBinding> = Api::namespaced(cp.client().await, &ns);

    let pubsub = pubsub::PubSub::start();
    let (topic, subscription) = pubsub
        .topic_and_subscription("acme-ops", "run-audit", "run-audit-sub")
        .await;
    let emulator = Emulator::start_with(
        SEED,
        &[
            &format!("--audit-log-topic={topic}"),
            &format!("--pubsub-emulator-host={}", pubsub.host()),
        ],
    );
    let operator = Operator::start(
        &OperatorConfig::new(kubeconfig, emulator.url())
            .namespace(&ns)
            .identity(&format!("operator-{ns}"))
            .args([format!("--drift-events={subscription}")])
            .env("PUBSUB_EMULATOR_HOST", &pubsub.host()),
    )
    .await;

    for (binding, kind) in [
        ("prod", "services"),
        ("prod-jobs", "jobs"),
        ("prod-pools", "workerPools"),
    ] {
        api.create(
            &PostParams::default(),
            &strict_binding(binding, kind, "10m"),
        )
        .await
        .unwrap();
    }
    let name = "projects/acme-prod/locations/us-central1/services/search-frontend";
    let job = "projects/acme-prod/locations/us-central1/jobs/db-migrate";
    let pool = "projects/acme-prod/locations/us-central1/workerPools/email-sender";
    for seeded in [name, job, pool] {
        eventually(
            "the first pass fixes the seeded drift",
            PATIENCE,
            || async {
                let ba = emulator.binary_authorization(seeded).await;
                (ba["policy"] == STRICT).then_some(()).ok_or(ba.to_string())
            },
        )
        .await;
    }
    // Let the first pass's status and the events of its own writes settle.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Someone clears Binary Authorization of a service, a job and a worker pool, through
    // gcloud's v1 API or an Update operation of v2: each is fixed by its event, long
    // before the 10m tick, without listing anything again (the status passes they queue
    // included).
    let lists_before = lists(&emulator.counters().await);
    for (drifted, api_version) in [(name, "v1"), (job, "v2"), (pool, "v1")] {
        let started = Instant::now();
        emulator
            .drift_through(drifted, Value::Null, api_version)
            .await;
        eventually("the drift event fixes the resource", PATIENCE, || async {
            let ba = emulator.binary_authorization(drifted).await;
            (ba["policy"] == STRICT).then_some(()).ok_or(ba.to_string())
        })
        .await;
        let fixed_after = started.elapsed();
        eprintln!(
            "{drifted} ({api_version}) drift → fixed through the audit log at a 10m interval: {fixed_after:?}"
        );
        assert!(
            fixed_after < Duration::from_secs(60),
            "{fixed_after:?}: that is the backstop, not the event"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        lists(&emulator.counters().await),
        lists_before,
        "the event or the pass it queued listed Cloud Run again"
    );
    let metrics = operator.metrics().await;
    assert!(
        metrics::sum(
            &metrics,
            "binauthz_drift_events_handled_total",
            &[("result", "fixed")]
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metrics::sum(
            &metrics,
            "binauthz_drift_events_ignored_total",
            &[("reason", "own_write")]
        ) >= 1.0,
        "the operator's own write was not recognised: {metrics}"
    );

    // Reconcile now: a new annotation value starts a pass that echoes it.
    let patch =
        json!({"metadata": {"annotations": {"binauthz.dev/reconcile-requested-at": "e2e-1"}}});
    api.patch("prod", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the reconcile request is echoed", PATIENCE, || async {
        let b = api.get("prod").await.map_err(|e| e.to_string())?;
        let handled = b
            .status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.clone());
        (handled.as_deref() == Some("e2e-1"))
            .then_some(())
            .ok_or(format!("{handled:?}"))
    })
    .await;

    pubsub_outage(&api, &operator, &emulator, &pubsub, &topic, &subscription).await;
    drop(operator);
}

/// Pub/Sub killed mid-run and started again (empty, on its port): the controller stays
/// ready, a drift whose audit entry was lost meanwhile is fixed by the periodic pass (a
/// binding at a 30 s interval over the project's jobs), and once Pub/Sub is back the
/// subscriber reconnects and fixes the next drift by its event.
async fn pubsub_outage(
    api: &Api<BinAuthzBinding>,
    operator: &Operator,
    emulator: &Emulator,
    pubsub: &pubsub::PubSub,
    topic: &str,
    subscription: &str,
) {
    api.create(
        &PostParams::default(),
        &strict_binding("jobs", "jobs", "30s"),
    )
    .await
    .unwrap();
    let job = "projects/acme-prod/locations/us-central1/jobs/nightly-billing";
    let is_strict = |name: &'static str| async move {
        let ba = emulator.binary_authorization(name).await;
        (ba["policy"] == STRICT).then_some(()).ok_or(ba.to_string())
    };
    eventually("the jobs binding's first pass", PATIENCE, || is_strict(job)).await;
    const FIXED: &str = "binauthz_drift_events_handled_total";
    const PULL_ERRORS: &str = "binauthz_drift_subscription_errors_total";
    let fixed_by_events = operator.metric(FIXED, &[("result", "fixed")]).await;

    pubsub.kill();
    eventually("a failed pull is counted", PATIENCE, || async {
        let errors = operator.metric(PULL_ERRORS, &[("call", "pull")]).await;
        (errors >= 1.0)
            .then_some(())
            .ok_or(format!("{errors} pull errors"))
    })
    .await;
    assert_eq!(
        operator.readyz().await,
        200,
        "/readyz does not depend on Pub/Sub (docs/drift-events.md)"
    );
    // Its audit entry cannot be published: only the periodic pass can see this drift.
    emulator.drift(job, Value::Null).await;
    eventually(
        "the periodic pass fixes the drift whose event was lost",
        PATIENCE,
        || is_strict(job),
    )
    .await;
    assert_eq!(
        operator.metric(FIXED, &[("result", "fixed")]).await,
        fixed_by_events,
        "a drift event was handled while Pub/Sub was down"
    );
    assert_eq!(operator.readyz().await, 200);

    pubsub.restart();
    let (topic_back, subscription_back) = pubsub
        .topic_and_subscription("acme-ops", "run-audit", "run-audit-sub")
        .await;
    assert_eq!(
        (topic_back.as_str(), subscription_back.as_str()),
        (topic, subscription)
    );
    let service = "projects/acme-prod/locations/us-central1/services/checkout";
    let back = Instant::now();
    emulator.drift(service, Value::Null).await;
    eventually(
        "the service is fixed by its event after Pub/Sub is back",
        PATIENCE,
        || is_strict(service),
    )
    .await;
    eprintln!(
        "Pub/Sub back → drift fixed by its event in {:?} (pull retries back off to 30 s)",
        back.elapsed()
    );
    assert_eq!(
        operator.metric(FIXED, &[("result", "fixed")]).await,
        fixed_by_events + 1.0,
        "the service (10m interval) was fixed, but not through its event"
    );
}
