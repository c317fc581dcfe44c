//! The operator end to end: `binauthz-operator controller` (a subprocess) against a real
//! kube-apiserver and the Cloud Run emulator (a subprocess), acting as its service account
//! with exactly the RBAC of deploy/. Each test has its own namespace, emulator and
//! controller(s); waits poll with generous deadlines and never assert on speed.

use crate::support::envtest;
use crate::support::kube::{binding, condition, operator_cluster};
use crate::support::net::free_port;
use crate::support::process;
use crate::support::process::{Emulator, Operator, OperatorConfig};
use crate::support::repo;
use crate::support::wait::eventually;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use binauthz_operator::api::BinAuthzBinding;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

const SEED: &str = "examples/cloudrun-seed.yaml";
const LEASE_NAMESPACE: &str = "binauthz-system";
const LEASE_NAME: &str = "binauthz-operator";
const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";
/// Generous: a pass takes well under a second here, but the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(90);

/// A one-line picture of a binding's status, for failure messages.
fn describe(b: &BinAuthzBinding) -> String {
    match &b.status {
        None => "no status".to_owned(),
        Some(s) => format!(
            "generation {:?}, observedGeneration {:?}, conditions {:?}, summary {:?}",
            b.metadata.generation,
            s.observed_generation,
            s.conditions
                .iter()
                .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                .collect::<Vec<_>>(),
            s.summary
        ),
    }
}

/// Waits until the binding's status describes its current generation with Ready's
/// `reason`, and returns it.
async fn wait_reason(api: &Api<BinAuthzBinding>, name: &str, reason: &str) -> BinAuthzBinding {
    eventually(
        &format!("binding {name} reports {reason}"),
        PATIENCE,
        || async {
            let b = api.get(name).await.map_err(|e| e.to_string())?;
            let current =
                b.status.as_ref().and_then(|s| s.observed_generation) == b.metadata.generation;
            match condition(&b, "Ready") {
                Some(c) if current && c.reason == reason => Ok(b),
                _ => Err(describe(&b)),
            }
        },
    )
    .await
}

/// The estate's services of one project and region that are not being deleted.
fn live_services(state: &Value, project: &str, region: &str) -> Vec<Value> {
    state["projects"][project]["regions"][region]["services"]
        .as_array()
        .expect("services in the emulator state")
        .iter()
        .filter(|s| s["deleted"] != true && s.get("deleteTime").is_none())
        .cloned()
        .collect()
}

/// One namespace, one emulator and one controller watching only that namespace.
struct Scenario {
    cp: &'static envtest::ControlPlane,
    ns: String,
    api: Api<BinAuthzBinding>,
    emulator: Emulator,
    operator: Operator,
}

async fn scenario() -> Option<Scenario> {
    scenario_with(&[]).await
}

/// A scenario whose emulator runs with these flags.
async fn scenario_with(emulator_args: &[&str]) -> Option<Scenario> {
    let (cp, kubeconfig) = operator_cluster().await?;
    let ns = cp.fresh_namespace().await;
    let api = Api::namespaced(cp.client().await, &ns);
    let emulator = Emulator::start_with(SEED, emulator_args);
    let operator = Operator::start(
        &OperatorConfig::new(kubeconfig, emulator.url())
            .namespace(&ns)
            .identity(&format!("operator-{ns}")),
    )
    .await;
    Some(Scenario {
        cp,
        ns,
        api,
        emulator,
        operator,
    })
}

fn prod_services(policy: Value, extra: Value) -> Value {
    let mut spec = json!({
        "project": "acme-prod",
        "locations": ["us-central1"],
        "targets": { "services": { "names": ["*"] } },
        "policy": policy,
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

#[tokio::test]
async fn binding_becomes_ready_fixes_the_seeded_drift_and_records_events() {
    let Some(s) = scenario().await else {
        return;
    };
    let before = s.emulator.state().await;
    let services = live_services(&before, "acme-prod", "us-central1");
    let drifted: Vec<String> = services
        .iter()
        .filter(|svc| svc["binaryAuthorization"]["policy"] != STRICT)
        .map(|svc| svc["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        drifted.len() >= 3,
        "the seed should carry drift in acme-prod/us-central1: {drifted:?}"
    );
    s.api
        .create(
            &PostParams::default(),
            &binding(
                "prod-services",
                prod_services(json!({ "name": STRICT }), json!({})),
            ),
        )
        .await
        .expect("creating the binding");

    // `kubectl wait` works on the Ready condition the operator writes.
    let out = s.cp.kubectl([
        "wait",
        "--for=condition=Ready",
        "--timeout=90s",
        "-n",
        &s.ns,
        "binauthzbinding/prod-services",
    ]);
    assert!(
        out.status.success(),
        "kubectl wait --for=condition=Ready failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        describe(&s.api.get("prod-services").await.expect("binding"))
    );

    let b = wait_reason(&s.api, "prod-services", "Compliant").await;
    let status = b.status.as_ref().expect("status");
    let summary = status.summary.expect("summary");
    assert_eq!(summary.matched as usize, services.len(), "{}", describe(&b));
    assert_eq!(summary.compliant, summary.matched, "{}", describe(&b));
    assert_eq!(status.policy.as_deref(), Some(STRICT));

    // Cloud Run now carries the policy everywhere the binding covers ...
    let after = s.emulator.state().await;
    for svc in live_services(&after, "acme-prod", "us-central1") {
        assert_eq!(
            svc["binaryAuthorization"],
            json!({ "policy": STRICT }),
            "service {} after the pass",
            svc["name"]
        );
    }
    // ... through one write per drifted service, touching nothing but binaryAuthorization,
    // and nothing outside the binding (other regions, other projects, deleted services).
    let audit = s.emulator.audit().await;
    let mut written: Vec<String> = audit
        .iter()
        .map(|c| c["resource"].as_str().unwrap_or_default().to_owned())
        .collect();
    written.sort();
    let mut expected: Vec<String> = drifted
        .iter()
        .map(|n| format!("projects/acme-prod/locations/us-central1/services/{n}"))
        .collect();
    expected.sort();
    assert_eq!(written, expected, "the operator's changes: {audit:#?}");
    for change in &audit {
        let fields = change["fields"].as_array().expect("audit fields");
        assert!(
            fields.iter().all(|f| f
                .as_str()
                .is_some_and(|f| f.starts_with("binaryAuthorization"))),
            "a change touched more than binaryAuthorization: {change}"
        );
    }

    // Events on the binding say what was done.
    let events: Api<Event> = Api::namespaced(s.cp.client().await, &s.ns);
    let remediated = eventually("a Remediated event on the binding", PATIENCE, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("Remediated")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("prod-services")
            })
            .ok_or_else(|| "no Remediated event yet".to_owned())
    })
    .await;
    assert_eq!(remediated.type_.as_deref(), Some("Normal"));
    let note = remediated.note.unwrap_or_default();
    for name in &drifted {
        assert!(
            note.contains(name.as_str()),
            "the event does not name {name}: {note}"
        );
    }
    assert_eq!(
        remediated.reporting_controller.as_deref(),
        Some("binauthz-operator")
    );
    drop(s.operator);
}

#[tokio::test]
async fn audit_mode_reports_drift_without_writing() {
    let Some(s) = scenario().await else {
        return;
    };
    s.api
        .create(
            &PostParams::default(),
            &binding(
                "audit",
                prod_services(json!({ "name": STRICT }), json!({ "mode": "Audit" })),
            ),
        )
        .await
        .expect("creating the binding");
    let b = wait_reason(&s.api, "audit", "Drifted").await;
    let summary = b
        .status
        .as_ref()
        .and_then(|st| st.summary)
        .expect("summary");
    assert!(summary.drifted >= 3, "{}", describe(&b));
    assert_eq!(summary.remediated, 0, "{}", describe(&b));
    let ready = condition(&b, "Ready").expect("Ready");
    assert_eq!(ready.status, "False");
    let counters = s.emulator.counters().await;
    assert!(counters["reads"].as_u64() > Some(0), "{counters}");
    assert_eq!(
        counters["writes"], 0,
        "Audit mode wrote to Cloud Run: {counters}"
    );
    assert_eq!(counters["changes"], 0, "{counters}");
    drop(s.operator);
}

#[tokio::test]
async fn a_conflict_between_two_bindings_shows_on_both() {
    // Slow Cloud Run answers (1.5 s a call): the second binding arrives while the first
    // one's pass is still listing — the order `kubectl apply -f bindings/` can produce.
    let Some(s) = scenario_with(&["--latency-ms=1500"]).await else {
        return;
    };
    let checkout = "projects/acme-prod/locations/us-central1/services/checkout";
    let before = s.emulator.binary_authorization(checkout).await;
    let narrow = json!({
        "project": "acme-prod",
        "locations": ["us-central1"],
        "targets": { "services": { "names": ["checkout"] } },
    });
    let mut strict = narrow.clone();
    strict["policy"] = json!({ "name": STRICT });
    let mut default = narrow;
    default["policy"] = json!({ "useDefault": true });
    s.api
        .create(&PostParams::default(), &binding("team-a", strict))
        .await
        .expect("creating team-a");
    // Not an assertion on speed: only the order of events changes if the machine is slow.
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.api
        .create(&PostParams::default(), &binding("team-b", default))
        .await
        .expect("creating team-b");
    for (name, other) in [("team-a", "team-b"), ("team-b", "team-a")] {
        let b = wait_reason(&s.api, name, "Conflict").await;
        let status = b.status.as_ref().expect("status");
        assert_eq!(
            status.summary.map(|s| s.conflicted),
            Some(1),
            "{}",
            describe(&b)
        );
        let target = status
            .targets
            .iter()
            .find(|t| t.name == "checkout")
            .unwrap_or_else(|| panic!("{name} lists no checkout target: {}", describe(&b)));
        assert_eq!(target.state.to_string(), "Conflicted");
        assert!(
            target.message.contains(other),
            "{name}'s checkout entry does not name {other}: {:?}",
            target.message
        );
        assert_eq!(
            condition(&b, "Stalled").map(|c| c.status.as_str()),
            Some("True")
        );
    }
    // The contested service is left as it was.
    assert_eq!(s.emulator.binary_authorization(checkout).await, before);
    assert_eq!(s.emulator.counters().await["writes"], 0);
    drop(s.operator);
}

#[tokio::test]
async fn a_spec_change_triggers_a_pass_at_once() {
    let Some(s) = scenario().await else {
        return;
    };
    // An interval of an hour: any pass within the test's patience is triggered by the edit.
    s.api
        .create(
            &PostParams::default(),
            &binding(
                "hourly",
                prod_services(
                    json!({ "name": STRICT }),
                    json!({ "mode": "Audit", "interval": "1h" }),
                ),
            ),
        )
        .await
        .expect("creating the binding");
    wait_reason(&s.api, "hourly", "Drifted").await;
    assert_eq!(s.emulator.counters().await["writes"], 0);

    s.api
        .patch(
            "hourly",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "mode": "Enforce" } })),
        )
        .await
        .expect("switching to Enforce");
    let b = wait_reason(&s.api, "hourly", "Compliant").await;
    assert_eq!(
        b.status.as_ref().and_then(|st| st.observed_generation),
        Some(2)
    );
    let counters = s.emulator.counters().await;
    assert!(counters["changes"].as_u64() >= Some(3), "{counters}");
    drop(s.operator);
}

#[tokio::test]
async fn suspend_stops_cloud_run_calls() {
    let Some(s) = scenario().await else {
        return;
    };
    s.api
        .create(
            &PostParams::default(),
            &binding(
                "paused",
                prod_services(json!({ "name": STRICT }), json!({ "interval": "30s" })),
            ),
        )
        .await
        .expect("creating the binding");
    wait_reason(&s.api, "paused", "Compliant").await;
    s.api
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "suspend": true } })),
        )
        .await
        .expect("suspending");
    // Suspended, the binding has no Ready condition (so kstatus reads it as settled: see
    // src/plan/conditions.rs); Reconciling says why.
    let b = eventually("binding paused reports Suspended", PATIENCE, || async {
        let b = s.api.get("paused").await.map_err(|e| e.to_string())?;
        let current =
            b.status.as_ref().and_then(|st| st.observed_generation) == b.metadata.generation;
        match condition(&b, "Reconciling") {
            Some(c) if current && c.reason == "Suspended" => Ok(b),
            _ => Err(describe(&b)),
        }
    })
    .await;
    assert!(condition(&b, "Ready").is_none(), "{}", describe(&b));

    // Someone turns Binary Authorization off; a running binding would fix it at its next
    // pass. Suspended, a pass must not call Cloud Run at all: ask for a pass now
    // (reconcile-now) and, once the status echoes the request, the pass has run.
    let cart = "projects/acme-prod/locations/us-central1/services/cart";
    s.emulator.drift(cart, Value::Null).await;
    let calls = s.emulator.requests().await.len();
    s.api
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"annotations": {"binauthz.dev/reconcile-requested-at": "while-suspended"}}
            })),
        )
        .await
        .expect("requesting a pass");
    eventually(
        "the suspended binding's pass echoes the request",
        PATIENCE,
        || async {
            let b = s.api.get("paused").await.map_err(|e| e.to_string())?;
            let handled = b
                .status
                .as_ref()
                .and_then(|st| st.last_handled_reconcile_at.clone());
            (handled.as_deref() == Some("while-suspended"))
                .then_some(())
                .ok_or_else(|| format!("handled {handled:?}; {}", describe(&b)))
        },
    )
    .await;
    let after = s.emulator.requests().await;
    assert_eq!(
        after.len(),
        calls,
        "a suspended binding called Cloud Run: {:#?}",
        &after[calls.min(after.len())..]
    );
    assert_eq!(s.emulator.binary_authorization(cart).await, Value::Null);

    // Resumed, it fixes what drifted meanwhile.
    s.api
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "suspend": false } })),
        )
        .await
        .expect("resuming");
    // Its first pass may plan on the list of the current tick, taken before the drift;
    // the drift is fixed by the next tick at the latest.
    eventually("the resumed binding fixes the drift", PATIENCE, || async {
        let ba = s.emulator.binary_authorization(cart).await;
        (ba == json!({ "policy": STRICT }))
            .then_some(())
            .ok_or(ba.to_string())
    })
    .await;
    wait_reason(&s.api, "paused", "Compliant").await;
    drop(s.operator);
}

#[tokio::test]
async fn deleting_a_binding_leaves_cloud_run_untouched() {
    let Some(s) = scenario().await else {
        return;
    };
    s.api
        .create(
            &PostParams::default(),
            &binding(
                "short-lived",
                prod_services(json!({ "name": STRICT }), json!({})),
            ),
        )
        .await
        .expect("creating the binding");
    wait_reason(&s.api, "short-lived", "Compliant").await;
    let state = s.emulator.state().await;
    let changes = s.emulator.audit().await.len();

    s.api
        .delete("short-lived", &DeleteParams::default())
        .await
        .expect("deleting the binding");
    // The binding goes at once (no finalizer), and the controller forgets it: its metric
    // series disappear.
    let series = format!("binding=\"{}/short-lived\"", s.ns);
    eventually(
        "the controller forgets the deleted binding",
        PATIENCE,
        || async {
            let gone = s
                .api
                .get_opt("short-lived")
                .await
                .map_err(|e| e.to_string())?
                .is_none();
            let metrics = s.operator.metrics().await;
            if gone && !metrics.contains(&series) {
                Ok(())
            } else {
                Err(format!(
                    "binding gone: {gone}; metrics still carry {series}"
                ))
            }
        },
    )
    .await;
    assert_eq!(
        s.emulator.audit().await.len(),
        changes,
        "deletion changed Cloud Run"
    );
    assert_eq!(
        s.emulator.state().await,
        state,
        "deletion changed Cloud Run"
    );
    drop(s.operator);
}

/// Who holds the operator's Lease (admin's view).
async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE_NAME)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn leader_election_one_replica_writes_and_the_other_takes_over() {
    let Some((cp, kubeconfig)) = operator_cluster().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let client = cp.client().await;
    let api: Api<BinAuthzBinding> = Api::namespaced(client.clone(), &ns);
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let emulator = Emulator::start(SEED);
    let config = OperatorConfig::new(kubeconfig, emulator.url())
        .namespace(&ns)
        .args([
            "--leader-election".to_owned(),
            format!("--lease-namespace={LEASE_NAMESPACE}"),
            "--lease-duration=6s".to_owned(),
        ]);
    let start = |identity: &'static str| {
        let config = config.clone().identity(identity);
        async move { Operator::start(&config).await }
    };
    let mut replicas = vec![start("replica-a").await, start("replica-b").await];

    let leader = eventually("one replica holds the Lease", PATIENCE, || async {
        match holder(&leases).await {
            Some(h) if h == "replica-a" || h == "replica-b" => Ok(h),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
    for replica in replicas.iter_mut() {
        assert!(
            replica.running(),
            "{} exited:\n{}",
            replica.identity(),
            replica.log_tail()
        );
    }
    api.create(
        &PostParams::default(),
        &binding("ha", prod_services(json!({ "name": STRICT }), json!({}))),
    )
    .await
    .expect("creating the binding");
    wait_reason(&api, "ha", "Compliant").await;

    let (leading, standing_by): (Vec<&Operator>, Vec<&Operator>) =
        replicas.iter().partition(|r| r.identity() == leader);
    let (leading, standing_by) = (leading[0], standing_by[0]);
    assert_eq!(leading.metric("binauthz_leader", &[]).await, 1.0);
    assert_eq!(standing_by.metric("binauthz_leader", &[]).await, 0.0);
    // Only the leader calls Cloud Run; the emulator saw exactly the leader's calls.
    let leader_calls = leading
        .metric("binauthz_cloudrun_requests_total", &[])
        .await;
    assert!(leader_calls > 0.0, "the leader made no Cloud Run call");
    assert_eq!(
        standing_by
            .metric("binauthz_cloudrun_requests_total", &[])
            .await,
        0.0,
        "the standby called Cloud Run:\n{}",
        standing_by.metrics().await
    );
    assert_eq!(emulator.requests().await.len() as f64, leader_calls);

    // Kill the leader outright (no lease release): the standby takes over once the lease
    // expires, and does the work from then on.
    // Someone turns Binary Authorization off on cart just before: only a leader's pass
    // fixes it (the old leader's next pass is its interval away).
    let cart = "projects/acme-prod/locations/us-central1/services/cart";
    let audited = emulator.audit().await.len();
    emulator.drift(cart, Value::Null).await;
    let index = replicas
        .iter()
        .position(|r| r.identity() == leader)
        .expect("leader among the replicas");
    let mut dead = replicas.remove(index);
    dead.kill();
    let survivor = &replicas[0];
    eventually("the standby takes the Lease over", PATIENCE, || async {
        match holder(&leases).await {
            Some(h) if h == survivor.identity() => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
    eventually("the new leader reports itself leader", PATIENCE, || async {
        match survivor.metric("binauthz_leader", &[]).await {
            1.0 => Ok(()),
            v => Err(format!("binauthz_leader {v}")),
        }
    })
    .await;
    // The new leader's first pass sees the drift and fixes it.
    eventually("the new leader fixes the drift", PATIENCE, || async {
        match emulator.binary_authorization(cart).await {
            v if v == json!({ "policy": STRICT }) => Ok(()),
            v => Err(format!("cart's binaryAuthorization is {v}")),
        }
    })
    .await;
    assert!(
        survivor
            .metric("binauthz_cloudrun_requests_total", &[])
            .await
            > 0.0,
        "the new leader made no Cloud Run call"
    );
    let since_drift: Vec<Value> = emulator.audit().await.split_off(audited);
    assert_eq!(
        since_drift.len(),
        2,
        "since the drift: turned off once, fixed once: {since_drift:#?}"
    );
    wait_reason(&api, "ha", "Compliant").await;
    drop(dead);
}

#[tokio::test]
async fn remediations_in_flight_show_as_reconciling() {
    // Cloud Run takes ten minutes to finish each write: the fixes stay in flight.
    let Some(s) = scenario_with(&["--operation-delay-ms=600000"]).await else {
        return;
    };
    s.api
        .create(
            &PostParams::default(),
            &binding(
                "in-flight",
                prod_services(json!({ "name": STRICT }), json!({})),
            ),
        )
        .await
        .expect("creating the binding");
    let b = eventually("the binding reports Reconciling=True", PATIENCE, || async {
        let b = s.api.get("in-flight").await.map_err(|e| e.to_string())?;
        match condition(&b, "Reconciling") {
            Some(c) if c.status == "True" => Ok(b),
            _ => Err(describe(&b)),
        }
    })
    .await;
    let ready = condition(&b, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Drifted"),
        "{}",
        describe(&b)
    );
    drop(s.operator);
}

#[tokio::test]
async fn breakglass_and_blocked_deploys_are_reported_without_writing() {
    let Some(s) = scenario().await else {
        return;
    };
    s.api
        .create(
            &PostParams::default(),
            &binding(
                "eu-web",
                json!({
                    "project": "acme-prod",
                    "locations": ["europe-west1"],
                    "targets": { "services": { "names": ["frontend-eu", "recommendations"] } },
                    "policy": { "useDefault": true },
                    "breakglass": "Allow",
                }),
            ),
        )
        .await
        .expect("creating the binding");
    let b = wait_reason(&s.api, "eu-web", "Compliant").await;
    let status = b.status.as_ref().expect("status");
    let summary = status.summary.expect("summary");
    assert_eq!(
        (summary.matched, summary.compliant),
        (2, 2),
        "{}",
        describe(&b)
    );
    assert_eq!(
        (summary.breakglass, summary.deploy_blocked),
        (1, 1),
        "{}",
        describe(&b)
    );
    let target = |name: &str| {
        status
            .targets
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no target {name}: {}", describe(&b)))
    };
    assert_eq!(target("frontend-eu").state.to_string(), "Breakglass");
    assert!(target("frontend-eu").message.contains("INC-4711"));
    assert!(target("recommendations").deploy_blocked);
    // Breakglass Allow: the justification stays; nothing is written.
    assert_eq!(s.emulator.counters().await["writes"], 0);
    drop(s.operator);
}

/// One row of the fault matrix: a binding, the Cloud Run it meets, and what both the
/// controller and `check` must report.
struct FaultRow {
    name: &'static str,
    spec: Value,
    /// The Ready reason (status) and the binding's `reason` (check's report).
    reason: &'static str,
    /// A region reported in `unreadLocations`, if any.
    unread: Option<&'static str>,
    /// `policyCheck.result`, if any.
    policy_check: Option<&'static str>,
}

/// Rows sharing one set of emulator flags: one emulator and controller for the
/// controller's side, another emulator (same flags, fresh state) for `check --fix`.
struct FaultGroup {
    emulator_args: &'static [&'static str],
    rows: Vec<FaultRow>,
}

fn row(name: &'static str, spec: Value, reason: &'static str) -> FaultRow {
    FaultRow {
        name,
        spec,
        reason,
        unread: None,
        policy_check: None,
    }
}

fn fault_matrix() -> Vec<FaultGroup> {
    let services = |project: &str, locations: Value, policy: Value| {
        json!({
            "project": project,
            "locations": locations,
            "targets": { "services": { "names": ["*"] } },
            "policy": policy,
        })
    };
    let us = || json!(["us-central1"]);
    let default = || json!({ "useDefault": true });
    let bcid = "projects/bcid-cloud-run-policy/platforms/cloudRun/policies/bcidManagedPolicy";
    vec![
        FaultGroup {
            emulator_args: &[],
            rows: vec![
                // Google answers 403, never 404, for a project that does not exist.
                row(
                    "missing-project",
                    services("acme-nowhere", us(), default()),
                    "ProjectNotFoundOrForbidden",
                ),
                FaultRow {
                    policy_check: Some("NotFound"),
                    ..row(
                        "policy-not-found",
                        services(
                            "acme-prod",
                            us(),
                            json!({"name": "projects/acme-sec/platforms/cloudRun/policies/missing"}),
                        ),
                        "PolicyNotFound",
                    )
                },
                row(
                    "org-policy-conflict",
                    services("acme-legacy", us(), default()),
                    "OrgPolicyConflict",
                ),
                // A policy the operator may not read is written anyway.
                FaultRow {
                    policy_check: Some("Unverifiable"),
                    ..row(
                        "unverifiable-policy",
                        services(
                            "acme-staging",
                            us(),
                            json!({"name": "projects/acme-shared/platforms/cloudRun/policies/baseline"}),
                        ),
                        "Compliant",
                    )
                },
                FaultRow {
                    policy_check: Some("GoogleManaged"),
                    ..row(
                        "google-managed-policy",
                        services("acme-data", json!(["us-east1"]), json!({ "name": bcid })),
                        "Compliant",
                    )
                },
            ],
        },
        FaultGroup {
            emulator_args: &["--forbid=acme-prod"],
            rows: vec![row(
                "project-refused",
                services("acme-prod", us(), json!({ "name": STRICT })),
                "ProjectNotFoundOrForbidden",
            )],
        },
        FaultGroup {
            emulator_args: &["--project-access=acme-prod=apiDisabled"],
            rows: vec![row(
                "api-disabled",
                services("acme-prod", us(), default()),
                "ApiDisabled",
            )],
        },
        FaultGroup {
            emulator_args: &["--project-access=acme-prod=vpcServiceControls"],
            rows: vec![row(
                "vpc-service-controls",
                services("acme-prod", us(), default()),
                "VpcServiceControls",
            )],
        },
        FaultGroup {
            emulator_args: &["--forbid=write:acme-prod"],
            rows: vec![row(
                "write-denied",
                services("acme-prod", us(), default()),
                "PermissionDenied",
            )],
        },
        // One region refused: the other is still reconciled (partial progress).
        FaultGroup {
            emulator_args: &["--forbid=projects/acme-prod/locations/europe-west1"],
            rows: vec![FaultRow {
                unread: Some("europe-west1"),
                ..row(
                    "region-refused",
                    services(
                        "acme-prod",
                        json!(["us-central1", "europe-west1"]),
                        default(),
                    ),
                    "PermissionDenied",
                )
            }],
        },
        FaultGroup {
            emulator_args: &["--operation-failure-rate=1"],
            rows: vec![row(
                "operations-fail",
                services("acme-prod", us(), default()),
                "RemediationFailed",
            )],
        },
        FaultGroup {
            emulator_args: &["--stale-etag-rate=1"],
            rows: vec![row(
                "always-stale",
                services("acme-prod", us(), default()),
                "RemediationFailed",
            )],
        },
    ]
}

/// What `check --fix -o json` reports for each binding of `group`, against its own
/// emulator started with the group's flags: name → (reason, unread regions, policyCheck).
fn check_reports(
    group: &FaultGroup,
    ns: &str,
) -> Vec<(String, String, Vec<String>, Option<String>)> {
    let emulator = Emulator::start_with(SEED, group.emulator_args);
    let dir = tempfile::tempdir().expect("temporary directory");
    for r in &group.rows {
        let mut b = binding(r.name, r.spec.clone());
        b.metadata.namespace = Some(ns.to_owned());
        std::fs::write(
            dir.path().join(format!("{}.yaml", r.name)),
            serde_yaml_ng::to_string(&b).expect("YAML"),
        )
        .expect("writing a binding");
    }
    let out = std::process::Command::new(process::BINARY)
        .args(["check", "--fix", "-o", "json", "-f"])
        .arg(dir.path())
        .args(["--cloud-run-endpoint", emulator.url()])
        .env("NO_COLOR", "1")
        .env_remove("CLOUD_RUN_EMULATOR_HOST")
        .output()
        .expect("running check");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check's report is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .map(|b| {
            let unread = b["unreadLocations"]
                .as_array()
                .map(|u| {
                    u.iter()
                        .filter_map(|l| l["location"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (
                b["name"].as_str().unwrap_or_default().to_owned(),
                b["reason"].as_str().unwrap_or_default().to_owned(),
                unread,
                b["policyCheck"]["result"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// The same Cloud Run answers mean the same to both surfaces: for every row of the fault
/// matrix, the controller's Ready reason (over the real API server) and `check --fix`'s
/// reason agree, and so do the unread regions and the policy check.
#[tokio::test]
async fn the_controller_and_check_report_the_same_reason_for_every_fault() {
    let Some((cp, kubeconfig)) = operator_cluster().await else {
        return;
    };
    let groups = fault_matrix();
    let runs = groups.iter().map(|group| async move {
        let ns = cp.fresh_namespace().await;
        let api: Api<BinAuthzBinding> = Api::namespaced(cp.client().await, &ns);
        let emulator = Emulator::start_with(SEED, group.emulator_args);
        let operator = Operator::start(
            &OperatorConfig::new(kubeconfig, emulator.url())
                .namespace(&ns)
                .identity(&format!("operator-{ns}")),
        )
        .await;
        for r in &group.rows {
            api.create(&PostParams::default(), &binding(r.name, r.spec.clone()))
                .await
                .unwrap_or_else(|e| panic!("creating {}: {e}", r.name));
        }
        let mut controller = Vec::new();
        for r in &group.rows {
            let b = wait_reason(&api, r.name, r.reason).await;
            let status = b.status.clone().unwrap_or_default();
            if r.reason != "Compliant" && r.reason != "RemediationFailed" {
                assert_eq!(
                    condition(&b, "Stalled").map(|c| c.status.as_str()),
                    Some("True"),
                    "{}: {}",
                    r.name,
                    describe(&b)
                );
            }
            controller.push((
                r.name.to_owned(),
                r.reason.to_owned(),
                status
                    .unread_locations
                    .iter()
                    .map(|u| u.location.clone())
                    .collect::<Vec<_>>(),
                status.policy_check.map(|c| format!("{:?}", c.result)),
            ));
        }
        drop(operator);
        let check = tokio::task::spawn_blocking({
            let ns = ns.clone();
            let group_rows: Vec<&'static str> = group.rows.iter().map(|r| r.name).collect();
            let args = group.emulator_args;
            move || {
                let group = FaultGroup {
                    emulator_args: args,
                    rows: fault_matrix()
                        .into_iter()
                        .flat_map(|g| g.rows)
                        .filter(|r| group_rows.contains(&r.name))
                        .collect(),
                };
                check_reports(&group, &ns)
            }
        })
        .await
        .expect("check ran");
        (group, controller, check)
    });
    for (group, controller, check) in futures::future::join_all(runs).await {
        for (r, (name, reason, unread, policy_check)) in group.rows.iter().zip(&controller) {
            let (_, check_reason, check_unread, check_policy) = check
                .iter()
                .find(|(n, ..)| n == name)
                .unwrap_or_else(|| panic!("{name} is missing from check's report: {check:?}"));
            assert_eq!(
                check_reason, reason,
                "{name}: check says {check_reason}, the controller {reason}"
            );
            assert_eq!(check_unread, unread, "{name}: unread regions differ");
            assert_eq!(
                check_policy.as_deref(),
                policy_check.as_deref(),
                "{name}: policy checks differ"
            );
            assert_eq!(unread.first().map(String::as_str), r.unread, "{name}");
            assert_eq!(policy_check.as_deref(), r.policy_check, "{name}");
        }
    }
}

#[tokio::test]
async fn failed_remediations_are_reported_and_retried() {
    // Every write's long-running operation fails; the resources stay as they were.
    let Some(s) = scenario_with(&["--operation-failure-rate=1"]).await else {
        return;
    };
    s.api
        .create(
            &PostParams::default(),
            &binding(
                "failing",
                prod_services(json!({ "name": STRICT }), json!({ "interval": "30s" })),
            ),
        )
        .await
        .expect("creating the binding");
    let b = wait_reason(&s.api, "failing", "RemediationFailed").await;
    let summary = b
        .status
        .as_ref()
        .and_then(|st| st.summary)
        .expect("summary");
    assert_eq!(summary.failed, 4, "{}", describe(&b));
    assert_eq!(
        condition(&b, "Stalled").map(|c| c.status.as_str()),
        Some("False"),
        "a failed remediation is retried, not stalled: {}",
        describe(&b)
    );
    // The next pass (at the 30 s interval) retries: more writes follow without anyone
    // touching the binding.
    let writes = s.emulator.counters().await["writes"].as_u64().unwrap_or(0);
    eventually("the failed remediations are retried", PATIENCE, || async {
        let now = s.emulator.counters().await["writes"].as_u64().unwrap_or(0);
        if now > writes {
            Ok(())
        } else {
            Err(format!("{now} writes"))
        }
    })
    .await;
    assert_eq!(s.emulator.counters().await["changes"], 0);
    drop(s.operator);
}

/// `scripts/dev.sh` (`make dev`) running in its own process group; stopped when dropped.
struct Playground {
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
    /// BINAUTHZ_DEV_DIR: the logs.
    dir: PathBuf,
}

impl Playground {
    fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// The value printed after `prefix` on some output line.
    fn printed(&self, prefix: &str) -> Option<String> {
        self.output()
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
    }

    /// SIGTERM to the script (what Ctrl-C's trap does too); waits up to `within`.
    fn stop(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) && self.stop(Duration::from_secs(30)).is_none()
        {
            // Everything the script started shares its process group (the control plane has
            // its own session, and a watchdog that stops it when the script is gone).
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("controller.log")).unwrap_or_default();
            eprintln!(
                "--- make dev output ---\n{}\n--- its controller.log ---\n{log}",
                self.output()
            );
        }
    }
}

#[tokio::test]
async fn make_dev_starts_a_usable_playground_and_stops_cleanly() {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    if envtest::e2e_skipped() {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let emulator_addr = free_port();
    let metrics_addr = free_port();
    let mut child = std::process::Command::new(repo().join("scripts/dev.sh"))
        .env("BINAUTHZ_BIN", process::BINARY)
        .env("BINAUTHZ_DEV_DIR", dir.path())
        .env("BINAUTHZ_DEV_EMULATOR_ADDR", emulator_addr.to_string())
        .env("BINAUTHZ_DEV_METRICS_ADDR", metrics_addr.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("starting scripts/dev.sh");
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let output = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stream);
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) > 0 {
                if let Ok(mut all) = output.lock() {
                    all.push_str(&line);
                }
                line.clear();
            }
        });
    }
    let mut playground = Playground {
        child,
        output,
        dir: dir.path().to_owned(),
    };

    // Ready: on a fresh machine the first start builds kube-apiserver (minutes).
    let deadline = Instant::now() + Duration::from_secs(900);
    // Both streams: "ready" goes to stderr, the instructions before it to stdout.
    while !(playground.output().contains("dev: ready")
        && playground.output().contains("Ctrl-C stops everything."))
    {
        if let Ok(Some(status)) = playground.child.try_wait() {
            panic!("make dev exited ({status}) before it was ready");
        }
        assert!(
            Instant::now() < deadline,
            "make dev not ready in 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let output = playground.output();
    for binding in ["prod-baseline", "prod-critical", "staging"] {
        assert!(
            output
                .lines()
                .any(|l| l.contains(binding) && l.contains("True")),
            "{binding} is not shown Ready:\n{output}"
        );
    }
    let kubeconfig = playground
        .printed("export KUBECONFIG=")
        .expect("the kubeconfig path is printed");
    let emulator = format!("http://{emulator_addr}");
    assert!(
        output.contains(&format!("Cloud Run emulator: {emulator}")),
        "{output}"
    );

    // The printed recipe works: drift checkout, edit its binding, watch it come back.
    let checkout = "projects/acme-prod/locations/us-central1/services/checkout";
    let http = reqwest::Client::new();
    let drift = http
        .post(format!("{emulator}/_emulator/drift"))
        .json(&json!({ "name": checkout, "binaryAuthorization": null }))
        .send()
        .await
        .expect("drift through the admin API");
    assert!(drift.status().is_success());
    // The playground's controller reuses a Cloud Run list for 2 s (--inventory-ttl): let
    // the lists of the start-up passes age, so the pass the edit triggers lists afresh.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kubectl = playground
        .printed("alias kubectl=")
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .expect("the kubectl path is printed");
    let patched = std::process::Command::new(&kubectl)
        .args([
            "--kubeconfig",
            &kubeconfig,
            "patch",
            "bab",
            "prod-critical",
            "-n",
            "platform",
        ])
        .args(["--type", "merge", "-p", r#"{"spec":{"interval":"1m"}}"#])
        .output()
        .expect("kubectl patch");
    assert!(
        patched.status.success(),
        "{}",
        String::from_utf8_lossy(&patched.stderr)
    );
    eventually(
        "the playground's operator fixes checkout",
        PATIENCE,
        || async {
            let state: Value = http
                .get(format!("{emulator}/_emulator/state"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            match process::resource(&state, checkout).map(|r| r["binaryAuthorization"].clone()) {
                Some(v) if v == json!({ "policy": STRICT }) => Ok(()),
                other => Err(format!("checkout's binaryAuthorization: {other:?}")),
            }
        },
    )
    .await;

    // Stopping: the script exits 0 and leaves nothing listening or running.
    let status = playground
        .stop(Duration::from_secs(60))
        .expect("make dev did not stop within 60 s of SIGTERM");
    assert!(status.success(), "make dev exited with {status}");
    for addr in [emulator_addr, metrics_addr] {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still answers after make dev stopped"
        );
    }
    let control_plane = dir.path().join("control-plane");
    for pidfile in ["etcd.pid", "kube-apiserver.pid"] {
        assert!(
            !control_plane.join(pidfile).exists(),
            "{pidfile} left behind: the control plane was not stopped"
        );
    }
}
