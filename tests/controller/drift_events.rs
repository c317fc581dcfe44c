//! Drift events against Google's real Pub/Sub emulator (the Google Cloud SDK's jar, started
//! on a free loopback port and killed by pid) and the in-process Cloud Run emulator: the
//! REST subscriber reads and acknowledges, and a published audit log entry makes exactly
//! the Cloud Run calls the design promises.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use binauthz_operator::api::BinAuthzBinding;
use binauthz_operator::cloudrun::{CloudRunClient, CloudRunConfig};
use binauthz_operator::drift::pubsub::{Subscriber, SubscriptionName};
use binauthz_operator::drift::{DriftConfig, Environment, Handler};
use binauthz_operator::fleet::inventory::SharedInventory;
use binauthz_operator::plan::BindingKey;
use binauthz_operator::telemetry::Metrics;
use cloudrun_emulator::{EmulatorConfig, EmulatorHandle, Seed};
use serde_json::{json, Value};

use crate::support::pubsub::PubSub;

const PROJECT: &str = "acme-ops";
/// The attribute a Logging sink sets on each message it publishes.
const SINK_ATTRIBUTES: &[(&str, &str)] =
    &[("logging.googleapis.com/timestamp", "2026-12-02T08:00:00Z")];

/// A topic `name` and its subscription `{name}-sub` (10 s ack deadline).
async fn topic(pubsub: &PubSub, name: &str) -> SubscriptionName {
    let (_, subscription) = pubsub
        .topic_and_subscription(PROJECT, name, &format!("{name}-sub"))
        .await;
    subscription.parse().unwrap()
}

/// Publishes each payload as one message to topic `name`, as a Logging sink does; their ids.
async fn publish(pubsub: &PubSub, name: &str, payloads: &[Vec<u8>]) -> Vec<String> {
    pubsub
        .publish_all(
            &format!("projects/{PROJECT}/topics/{name}"),
            payloads,
            SINK_ATTRIBUTES,
        )
        .await
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test]
async fn the_rest_subscriber_reads_and_acknowledges_on_the_real_emulator() {
    let pubsub = PubSub::start();
    let subscription = topic(&pubsub, "reads").await;
    let subscriber = Subscriber::emulator(&pubsub.host(), subscription);

    let ids = publish(&pubsub, "reads", &[b"first".to_vec(), b"second".to_vec()]).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(subscriber.pull(10).await.unwrap());
    }
    got.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    assert_eq!(
        got.iter().map(|m| m.message_id.clone()).collect::<Vec<_>>(),
        ids
    );
    assert_eq!(got[0].data.as_deref().unwrap(), b"first");
    assert_eq!(got[1].data.as_deref().unwrap(), b"second");
    // Acknowledge the first only: the second comes back after its ack deadline, the
    // first never does.
    subscriber
        .acknowledge(std::slice::from_ref(&got[0].ack_id))
        .await
        .unwrap();
    // The second comes back once the ack deadline both shared has passed; a marker
    // published after that and pulled means the first, had it come back, would be here.
    let mut again: Vec<binauthz_operator::drift::pubsub::Received> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !again.iter().any(|m| m.message_id == ids[1]) {
        assert!(Instant::now() < deadline, "no redelivery: {again:?}");
        again.extend(subscriber.pull(10).await.unwrap());
    }
    let marker = publish(&pubsub, "reads", &[b"marker".to_vec()]).await;
    while !again.iter().any(|m| m.message_id == marker[0]) {
        assert!(Instant::now() < deadline, "marker not seen: {again:?}");
        again.extend(subscriber.pull(10).await.unwrap());
    }
    assert!(
        again.iter().all(|m| m.message_id != ids[0]),
        "an acknowledged message came back"
    );
    let acks: Vec<String> = again.iter().map(|m| m.ack_id.clone()).collect();
    subscriber.acknowledge(&acks).await.unwrap();

    // Publish → pulled latency of the long-polling REST pull, one message at a time.
    let mut latencies = Vec::new();
    let pulling = {
        let subscriber = subscriber.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < 40 {
                for m in subscriber.pull(10).await.unwrap() {
                    seen.push((m.message_id, Instant::now()));
                    subscriber.acknowledge(&[m.ack_id]).await.unwrap();
                }
            }
            seen
        })
    };
    let mut published = Vec::new();
    for i in 0..40 {
        let at = Instant::now();
        let id = publish(&pubsub, "reads", &[format!("m{i}").into_bytes()]).await;
        published.push((id[0].clone(), at));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), pulling)
        .await
        .unwrap()
        .unwrap();
    for (id, at) in &published {
        let (_, got) = seen.iter().find(|(m, _)| m == id).unwrap();
        latencies.push(got.duration_since(*at));
    }
    latencies.sort();
    eprintln!(
        "REST pull, publish → pulled over {} messages: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    assert!(percentile(&latencies, 0.5) < Duration::from_secs(1));
}

/// The controller's side, without Kubernetes: the bindings, the inventory, the lease.
struct TestEnv {
    inventory: SharedInventory,
    bindings: Vec<Arc<BinAuthzBinding>>,
    leader: AtomicBool,
    metrics: Metrics,
    rechecked: Mutex<Vec<BindingKey>>,
    /// With shards: the projects whose shard this replica holds (`None`: every project).
    holds: Option<Vec<String>>,
}

impl Environment for TestEnv {
    fn inventory(&self) -> &SharedInventory {
        &self.inventory
    }
    fn bindings(&self) -> Vec<Arc<BinAuthzBinding>> {
        self.bindings.clone()
    }
    fn tenancy(&self) -> binauthz_operator::fleet::Tenancy {
        binauthz_operator::fleet::Tenancy::open()
    }
    fn is_active(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }
    fn may_write(&self, project: &str) -> bool {
        self.is_active()
            && self
                .holds
                .as_ref()
                .is_none_or(|projects| projects.iter().any(|p| p == project))
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    fn rechecked(&self, bindings: &[BindingKey]) {
        self.rechecked.lock().unwrap().extend_from_slice(bindings);
    }
}

const SEED: &str = r#"
projects:
  acme-prod:
    projectNumber: 123456789012
    regions:
      us-central1:
        services:
          - name: checkout
            image: us-docker.pkg.dev/acme-prod/shop/checkout:1.0.0
            binaryAuthorization: {useDefault: true}
        jobs:
          - name: nightly
            image: us-docker.pkg.dev/acme-prod/shop/nightly:1.0.0
            binaryAuthorization: {useDefault: true}
        workerPools:
          - name: queue
            image: us-docker.pkg.dev/acme-prod/shop/queue:1.0.0
            binaryAuthorization: {useDefault: true}
  acme-dev:
    projectNumber: 223456789012
    regions:
      us-central1:
        services:
          - name: checkout
            image: us-docker.pkg.dev/acme-dev/shop/checkout:1.0.0
"#;

fn binding() -> Arc<BinAuthzBinding> {
    binding_over(json!({"services": {"names": ["*"]}}))
}

fn binding_over(targets: Value) -> Arc<BinAuthzBinding> {
    Arc::new(binauthz_operator::testing::binding(
        "prod",
        json!({"targets": targets}),
    ))
}

/// A v2 UpdateService entry for `project`'s `checkout`, timestamped now.
fn entry(project: &str, operation: &str, first: bool, user_agent: &str) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/auditlog/v2-update-service-first.json"
    );
    let mut e: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    e["timestamp"] = json!(jiff::Timestamp::now().to_string());
    e["resource"]["labels"]["project_id"] = json!(project);
    e["protoPayload"]["resourceName"] = json!(format!(
        "projects/{project}/locations/us-central1/services/checkout"
    ));
    e["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"] = json!(user_agent);
    e["operation"] =
        json!({"id": operation, "producer": "run.googleapis.com", "first": first, "last": !first});
    serde_json::to_vec(&e).unwrap()
}

fn count(emu: &EmulatorHandle, method: &str) -> u64 {
    emu.counters(None)
        .calls
        .iter()
        .filter(|c| c.method == method)
        .map(|c| c.count)
        .sum()
}

fn metric(env: &TestEnv, series: &str) -> u64 {
    env.metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn wait_for(env: &TestEnv, handler: &Handler<TestEnv>, series: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(env, series) < n || !handler.idle() {
        assert!(
            Instant::now() < deadline,
            "{series} stayed below {n}:\n{}",
            env.metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn drift(emu: &EmulatorHandle, project: &str, binary_authorization: Value) {
    let name = format!("projects/{project}/locations/us-central1/services/checkout");
    drift_of(emu, &name, binary_authorization).await;
}

async fn drift_of(emu: &EmulatorHandle, name: &str, binary_authorization: Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/_emulator/drift", emu.url()))
        .json(&json!({
            "name": name,
            "binaryAuthorization": binary_authorization,
            "by": "mallory@acme.example",
        }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
}

async fn binary_authorization(emu: &EmulatorHandle) -> Value {
    let name = "projects/acme-prod/locations/us-central1/services/checkout";
    binary_authorization_of(emu, name).await
}

async fn binary_authorization_of(emu: &EmulatorHandle, name: &str) -> Value {
    crate::support::emulator::get_resource(&emu.url(), name).await["binaryAuthorization"].clone()
}

const FIXED: &str = "binauthz_drift_events_handled_total{result=\"fixed\"}";
const NO_WRITE: &str = "binauthz_drift_events_handled_total{result=\"no_write\"}";
const UNCOVERED: &str = "binauthz_drift_events_ignored_total{reason=\"uncovered\"}";
const DUPLICATE: &str = "binauthz_drift_events_ignored_total{reason=\"duplicate\"}";
const OWN: &str = "binauthz_drift_events_ignored_total{reason=\"own_write\"}";
const UNPARSABLE: &str = "binauthz_drift_events_ignored_total{reason=\"unparsable\"}";
const RECEIVED: &str = "binauthz_drift_events_received_total";
const OTHER_SHARD: &str = "binauthz_drift_events_ignored_total{reason=\"other_shard\"}";

#[tokio::test]
async fn a_published_drift_is_fixed_with_one_read_and_one_write() {
    let pubsub = PubSub::start();
    let emu = cloudrun_emulator::start(EmulatorConfig {
        seed: Seed::from_yaml_str(SEED).unwrap(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let client = CloudRunClient::new(CloudRunConfig::emulator(&emu.url()))
        .await
        .unwrap();
    let env = Arc::new(TestEnv {
        inventory: SharedInventory::new(client, Duration::from_secs(20)),
        bindings: vec![binding()],
        leader: AtomicBool::new(true),
        metrics: Metrics::new(),
        rechecked: Mutex::new(Vec::new()),
        holds: None,
    });
    let subscription = topic(&pubsub, "audit").await;
    let handler = Handler::new(
        Arc::clone(&env),
        Subscriber::emulator(&pubsub.host(), subscription),
        DriftConfig::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(Arc::clone(&handler).run(async {
        let _ = stopped.await;
    }));
    let (gets, patches) = ("services.get", "services.patch");

    // A drift on a covered service: one GET, one PATCH, the binding's pass queued.
    drift(&emu, "acme-prod", Value::Null).await;
    assert_eq!(binary_authorization(&emu).await, Value::Null);
    let published = Instant::now();
    publish(
        &pubsub,
        "audit",
        &[entry("acme-prod", "op-1", true, "gcloud/502.0.0")],
    )
    .await;
    wait_for(&env, &handler, FIXED, 1).await;
    eprintln!(
        "publish → fixed (Pub/Sub emulator, Cloud Run emulator): {:?}",
        published.elapsed()
    );
    // (The test's own read above is one GET.)
    assert_eq!((count(&emu, gets), count(&emu, patches)), (1 + 1, 1));
    assert_eq!(
        binary_authorization(&emu).await,
        json!({"useDefault": true})
    );
    assert_eq!(
        env.rechecked.lock().unwrap().as_slice(),
        [BindingKey::new("team", "prod")]
    );
    let calls = emu
        .counters(None)
        .calls
        .iter()
        .map(|c| c.count)
        .sum::<u64>();

    // The same operation's last entry, and the operator's own write: nothing.
    publish(
        &pubsub,
        "audit",
        &[
            entry("acme-prod", "op-1", false, "gcloud/502.0.0"),
            entry(
                "acme-prod",
                "op-own",
                true,
                binauthz_operator::cloudrun::client::USER_AGENT,
            ),
        ],
    )
    .await;
    wait_for(&env, &handler, OWN, 1).await;
    wait_for(&env, &handler, DUPLICATE, 1).await;
    // An uncovered resource (no binding over acme-dev) and garbage: no Cloud Run call.
    publish(
        &pubsub,
        "audit",
        &[
            entry("acme-dev", "op-2", true, "gcloud/502.0.0"),
            b"{not json".to_vec(),
        ],
    )
    .await;
    wait_for(&env, &handler, UNCOVERED, 1).await;
    wait_for(&env, &handler, UNPARSABLE, 1).await;
    assert_eq!(
        emu.counters(None)
            .calls
            .iter()
            .map(|c| c.count)
            .sum::<u64>(),
        calls,
        "ignored events made Cloud Run calls"
    );

    // Reordered deliveries of one operation (last before first) and a burst of 30 events
    // on the resource: one more write in all.
    drift(&emu, "acme-prod", Value::Null).await;
    let mut burst = vec![
        entry("acme-prod", "op-3", false, "gcloud/502.0.0"),
        entry("acme-prod", "op-3", true, "gcloud/502.0.0"),
    ];
    burst.extend((0..30).map(|i| entry("acme-prod", &format!("op-b{i}"), true, "gcloud/502.0.0")));
    let gets_before = count(&emu, gets);
    publish(&pubsub, "audit", &burst).await;
    wait_for(&env, &handler, RECEIVED, 36).await;
    wait_for(&env, &handler, FIXED, 2).await;
    assert_eq!(count(&emu, patches), 2, "one write for the whole burst");
    let burst_gets = count(&emu, gets) - gets_before;
    eprintln!("a burst of 32 entries on one resource: {burst_gets} GETs, 1 PATCH");
    assert!(
        burst_gets <= 3,
        "at most one re-check in flight and one queued: {burst_gets} GETs"
    );
    assert_eq!(
        binary_authorization(&emu).await,
        json!({"useDefault": true})
    );

    // Changed back before the operator acts: read, no write.
    drift(&emu, "acme-prod", Value::Null).await;
    drift(&emu, "acme-prod", json!({"useDefault": true})).await;
    let before = (count(&emu, gets), count(&emu, patches));
    let no_write = metric(&env, NO_WRITE);
    publish(
        &pubsub,
        "audit",
        &[entry("acme-prod", "op-4", true, "gcloud/502.0.0")],
    )
    .await;
    wait_for(&env, &handler, NO_WRITE, no_write + 1).await;
    assert_eq!(
        (count(&emu, gets), count(&emu, patches)),
        (before.0 + 1, before.1)
    );

    // A standby neither pulls nor writes.
    env.leader.store(false, Ordering::SeqCst);
    drift(&emu, "acme-prod", Value::Null).await;
    let received = metric(&env, RECEIVED);
    let patched = count(&emu, patches);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish(
        &pubsub,
        "audit",
        &[entry("acme-prod", "op-5", true, "gcloud/502.0.0")],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The pull in flight when leadership ended may take the message; a standby never
    // writes and leaves it unacknowledged for the next leader.
    assert_eq!(count(&emu, patches), patched);
    // Leader again: the message is handled (redelivered after its ack deadline if the
    // standby's last pull took it).
    env.leader.store(true, Ordering::SeqCst);
    wait_for(&env, &handler, FIXED, 3).await;
    assert!(metric(&env, RECEIVED) > received);
    assert_eq!(count(&emu, patches), patched + 1);

    let _ = stop.send(());
    running.await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn the_cloud_run_emulators_own_audit_log_closes_the_loop() {
    let pubsub = PubSub::start();
    let subscription = topic(&pubsub, "loop").await;
    let emu = cloudrun_emulator::start(EmulatorConfig {
        seed: Seed::from_yaml_str(SEED).unwrap(),
        audit_log: Some(
            cloudrun_emulator::AuditLogConfig::new(
                &format!("projects/{PROJECT}/topics/loop"),
                &pubsub.host(),
            )
            .unwrap(),
        ),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let client = CloudRunClient::new(CloudRunConfig::emulator(&emu.url()))
        .await
        .unwrap();
    let env = Arc::new(TestEnv {
        inventory: SharedInventory::new(client, Duration::from_secs(20)),
        bindings: vec![binding_over(json!({
            "services": {"names": ["*"]},
            "jobs": {"names": ["*"]},
            "workerPools": {"names": ["*"]},
        }))],
        leader: AtomicBool::new(true),
        metrics: Metrics::new(),
        rechecked: Mutex::new(Vec::new()),
        holds: None,
    });
    let handler = Handler::new(
        Arc::clone(&env),
        Subscriber::emulator(&pubsub.host(), subscription),
        DriftConfig::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(Arc::clone(&handler).run(async {
        let _ = stopped.await;
    }));

    // Someone clears Binary Authorization on a service, a job and a worker pool; the
    // emulator logs each as Cloud Run would, the handler fixes each, and the entries of
    // the operator's own writes are ignored.
    let base = "projects/acme-prod/locations/us-central1";
    for (n, (kind, patch)) in [
        ("services/checkout", "services.patch"),
        ("jobs/nightly", "jobs.patch"),
        ("workerPools/queue", "workerPools.patch"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("{base}/{kind}");
        let started = Instant::now();
        drift_of(&emu, &name, Value::Null).await;
        wait_for(&env, &handler, FIXED, n as u64 + 1).await;
        eprintln!(
            "{kind}: drift → fixed through the emulator's audit log: {:?}",
            started.elapsed()
        );
        wait_for(&env, &handler, OWN, n as u64 + 1).await;
        assert_eq!(count(&emu, patch), 1, "{kind}");
        assert_eq!(
            binary_authorization_of(&emu, &name).await,
            json!({"useDefault": true}),
            "{kind}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric(&env, FIXED),
        3,
        "the operator's own writes started no re-check"
    );

    let _ = stop.send(());
    running.await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn the_subscriber_reconnects_when_pubsub_comes_back() {
    let pubsub = PubSub::start();
    let subscription = topic(&pubsub, "flaky").await;
    let emu = cloudrun_emulator::start(EmulatorConfig {
        seed: Seed::from_yaml_str(SEED).unwrap(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let client = CloudRunClient::new(CloudRunConfig::emulator(&emu.url()))
        .await
        .unwrap();
    let env = Arc::new(TestEnv {
        inventory: SharedInventory::new(client, Duration::from_secs(20)),
        bindings: vec![binding()],
        leader: AtomicBool::new(true),
        metrics: Metrics::new(),
        rechecked: Mutex::new(Vec::new()),
        holds: None,
    });
    let handler = Handler::new(
        Arc::clone(&env),
        Subscriber::emulator(&pubsub.host(), subscription),
        DriftConfig::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(Arc::clone(&handler).run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Pub/Sub goes away mid-pull: errors are counted, the subscriber keeps trying.
    pubsub.kill();
    let errors = "binauthz_drift_subscription_errors_total{call=\"pull\"}";
    wait_for(&env, &handler, errors, 2).await;
    assert!(!running.is_finished(), "the subscriber stopped");

    // Back (empty, as the emulator restarts): the next pull succeeds and a drift is fixed.
    pubsub.restart();
    topic(&pubsub, "flaky").await;
    drift(&emu, "acme-prod", Value::Null).await;
    let back = Instant::now();
    publish(
        &pubsub,
        "flaky",
        &[entry("acme-prod", "op-r", true, "gcloud/502.0.0")],
    )
    .await;
    wait_for(&env, &handler, FIXED, 1).await;
    eprintln!(
        "published after Pub/Sub came back → fixed: {:?} (retry backoff at most 30 s)",
        back.elapsed()
    );
    assert_eq!(count(&emu, "services.patch"), 1);

    let _ = stop.send(());
    running.await.unwrap();
    emu.shutdown().await;
}

/// An audit entry of `method` for service `service` in `project`/`region`: one entry of
/// operation `operation` (`first` or last), by a user, timestamped now.
fn service_entry(
    project: &str,
    region: &str,
    service: &str,
    operation: &str,
    first: bool,
) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/auditlog/v2-update-service-first.json"
    );
    let mut e: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    e["timestamp"] = json!(jiff::Timestamp::now().to_string());
    e["resource"]["labels"]["project_id"] = json!(project);
    e["resource"]["labels"]["location"] = json!(region);
    e["resource"]["labels"]["service_name"] = json!(service);
    e["protoPayload"]["resourceName"] = json!(format!(
        "projects/{project}/locations/{region}/services/{service}"
    ));
    e["operation"] =
        json!({"id": operation, "producer": "run.googleapis.com", "first": first, "last": !first});
    serde_json::to_vec(&e).unwrap()
}

/// A binding over every service of `project` in us-central1.
fn binding_for(project: &str) -> Arc<BinAuthzBinding> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "binauthz.dev/v1alpha1",
            "kind": "BinAuthzBinding",
            "metadata": {"name": project, "namespace": "team", "generation": 1},
            "spec": {
                "project": project,
                "locations": ["us-central1"],
                "targets": {"services": {"names": ["*"]}},
                "policy": {"useDefault": true},
            },
        }))
        .unwrap(),
    )
}

#[tokio::test]
async fn a_burst_of_a_thousand_entries_fixes_every_drift_once_within_the_write_budget() {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};
    use std::fmt::Write as _;

    // Four covered projects, each with 12 services in us-central1 (4 drifted: no Binary
    // Authorization; 8 compliant) and 5 drifted services in europe-west1, which their
    // binding does not cover; one project no binding covers, 10 drifted services.
    const COVERED: [&str; 4] = ["burst-p0", "burst-p1", "burst-p2", "burst-p3"];
    const UNCOVERED_PROJECT: &str = "burst-u0";
    let mut seed = String::from("projects:\n");
    let mut covered_drifted = BTreeSet::new();
    let mut covered_compliant = BTreeSet::new();
    let mut uncovered = BTreeSet::new();
    let service = |seed: &mut String, project: &str, name: &str, compliant: bool| {
        writeln!(seed, "          - name: {name}").unwrap();
        writeln!(
            seed,
            "            image: us-docker.pkg.dev/{project}/shop/{name}:1.0.0"
        )
        .unwrap();
        if compliant {
            writeln!(
                seed,
                "            binaryAuthorization: {{useDefault: true}}"
            )
            .unwrap();
        }
    };
    for (n, project) in COVERED.iter().chain([&UNCOVERED_PROJECT]).enumerate() {
        writeln!(
            seed,
            "  {project}:\n    projectNumber: {}\n    regions:",
            900_000_000_000u64 + n as u64
        )
        .unwrap();
        if *project == UNCOVERED_PROJECT {
            writeln!(seed, "      us-central1:\n        services:").unwrap();
            for i in 0..10 {
                let name = format!("svc-{i:02}");
                service(&mut seed, project, &name, false);
                uncovered.insert((project.to_string(), "us-central1", name));
            }
            continue;
        }
        writeln!(seed, "      us-central1:\n        services:").unwrap();
        for i in 0..12 {
            let name = format!("svc-{i:02}");
            let compliant = i >= 4;
            service(&mut seed, project, &name, compliant);
            let key = (project.to_string(), "us-central1", name);
            if compliant {
                covered_compliant.insert(key);
            } else {
                covered_drifted.insert(key);
            }
        }
        writeln!(seed, "      europe-west1:\n        services:").unwrap();
        for i in 0..5 {
            let name = format!("eu-{i:02}");
            service(&mut seed, project, &name, false);
            uncovered.insert((project.to_string(), "europe-west1", name));
        }
    }

    // The emulator enforces exactly the client's budgets: a write beyond them is a 429.
    let client_config = CloudRunConfig::default();
    let budgets = client_config.rate_limits;
    let pubsub = PubSub::start();
    let subscription = topic(&pubsub, "burst").await;
    let emu = cloudrun_emulator::start(EmulatorConfig {
        seed: Seed::from_yaml_str(&seed).unwrap(),
        faults: cloudrun_emulator::Faults {
            read_quota_per_minute: Some(budgets.reads_per_minute.get()),
            write_quota_per_minute: Some(budgets.writes_per_minute.get()),
            ..cloudrun_emulator::Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let client = CloudRunClient::new(CloudRunConfig::emulator(&emu.url()))
        .await
        .unwrap();
    let env = Arc::new(TestEnv {
        inventory: SharedInventory::new(client, Duration::from_secs(20)),
        bindings: COVERED.iter().map(|p| binding_for(p)).collect(),
        leader: AtomicBool::new(true),
        metrics: Metrics::new(),
        rechecked: Mutex::new(Vec::new()),
        holds: None,
    });
    let handler = Handler::new(
        Arc::clone(&env),
        Subscriber::emulator(&pubsub.host(), subscription.clone()),
        DriftConfig::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(Arc::clone(&handler).run(async {
        let _ = stopped.await;
    }));

    // 1,000 entries: every resource's operation as two entries (a third of them last
    // before first), further operations on random resources, and exact re-deliveries.
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let resources: Vec<_> = covered_drifted
        .iter()
        .chain(&covered_compliant)
        .chain(&uncovered)
        .cloned()
        .collect();
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for (i, (project, region, name)) in resources.iter().enumerate() {
        let op = format!("op-{i}");
        let (a, b) = (
            service_entry(project, region, name, &op, true),
            service_entry(project, region, name, &op, false),
        );
        if i % 3 == 0 {
            entries.extend([b, a]);
        } else {
            entries.extend([a, b]);
        }
    }
    let mut extra = 0;
    while entries.len() < 1000 {
        if rng.random_bool(0.3) {
            let again = entries[rng.random_range(0..entries.len())].clone();
            entries.push(again);
        } else {
            let (project, region, name) = &resources[rng.random_range(0..resources.len())];
            extra += 1;
            entries.push(service_entry(
                project,
                region,
                name,
                &format!("op-x{extra}"),
                rng.random_bool(0.5),
            ));
        }
    }
    entries.shuffle(&mut rng);
    assert_eq!(entries.len(), 1000);

    let started = Instant::now();
    for batch in entries.chunks(50) {
        assert_eq!(publish(&pubsub, "burst", batch).await.len(), batch.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let published = started.elapsed();
    assert!(
        published < Duration::from_secs(10),
        "publishing 1,000 entries took {published:?}: the burst must fit in 10 s"
    );

    // Done when every message was received and judged, the drifted covered services read
    // compliant, and nothing is in flight. Bounded: the budgets allow it in seconds.
    let state_of = |emu: &EmulatorHandle| {
        let state = serde_json::to_value(emu.state()).unwrap();
        let mut out = BTreeMap::new();
        for (project, p) in state["projects"].as_object().unwrap() {
            for (region, r) in p["regions"].as_object().unwrap() {
                for s in r["services"].as_array().into_iter().flatten() {
                    let name = s["name"].as_str().unwrap().to_owned();
                    out.insert(
                        (project.clone(), region.clone(), name),
                        s["binaryAuthorization"].clone(),
                    );
                }
            }
        }
        out
    };
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let state = state_of(&emu);
        let fixed = covered_drifted
            .iter()
            .filter(|(p, r, n)| {
                state[&(p.clone(), r.to_string(), n.clone())] == json!({"useDefault": true})
            })
            .count();
        if fixed == covered_drifted.len() && metric(&env, RECEIVED) >= 1000 && handler.idle() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 45 s, {fixed} of {} drifted services fixed, {} messages received:\n{}",
            covered_drifted.len(),
            metric(&env, RECEIVED),
            env.metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "1,000 entries published in {published:?}; every drift fixed {:?} after the first publish",
        started.elapsed()
    );

    // Nothing that mattered dropped; each drifted service written once, nothing else
    // written; uncovered resources never called; no call over the quotas.
    let requests = emu.requests();
    let mut writes: BTreeMap<String, u64> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.method.ends_with(".patch")) {
        *writes
            .entry(r.resource.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let expected: BTreeMap<String, u64> = covered_drifted
        .iter()
        .map(|(p, r, n)| (format!("projects/{p}/locations/{r}/services/{n}"), 1))
        .collect();
    assert_eq!(
        writes, expected,
        "one write per drifted covered service, none elsewhere"
    );
    let touched_uncovered: Vec<_> = requests
        .iter()
        .filter(|r| {
            let on = format!("{} {}", r.path, r.resource.as_deref().unwrap_or_default());
            on.contains(UNCOVERED_PROJECT) || on.contains("europe-west1")
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        touched_uncovered.is_empty(),
        "uncovered resources cost calls: {touched_uncovered:?}"
    );
    let refused: Vec<_> = emu
        .counters(None)
        .calls
        .into_iter()
        .filter(|c| c.code >= 400)
        .collect();
    assert!(
        refused.is_empty(),
        "calls refused (429 is over the budget): {refused:?}"
    );
    let state = state_of(&emu);
    for (p, r, n) in covered_compliant.iter().chain(&covered_drifted) {
        assert_eq!(
            state[&(p.clone(), r.to_string(), n.clone())],
            json!({"useDefault": true}),
            "{p}/{r}/{n}"
        );
    }
    for (p, r, n) in &uncovered {
        assert_eq!(
            state[&(p.clone(), r.to_string(), n.clone())],
            Value::Null,
            "{p}/{r}/{n}"
        );
    }
    assert_eq!(metric(&env, FIXED), covered_drifted.len() as u64);
    assert!(metric(&env, UNCOVERED) >= 1, "{}", env.metrics.encode());
    assert!(metric(&env, DUPLICATE) >= 1, "{}", env.metrics.encode());
    let gets = count(&emu, "services.get");
    eprintln!(
        "burst: {} writes, {gets} GETs for {} covered services (coalesced per resource)",
        writes.values().sum::<u64>(),
        covered_drifted.len() + covered_compliant.len()
    );

    // Acknowledged everything: stop the handler. A control message pulled now and left
    // unacknowledged comes back once its ack deadline passes; every message the handler
    // pulled earlier had an earlier deadline, so had one been left unacknowledged it would
    // have come back by then. Only the control message may.
    let _ = stop.send(());
    running.await.unwrap();
    let control = publish(&pubsub, "burst", &[b"control".to_vec()])
        .await
        .swap_remove(0);
    let http = reqwest::Client::new();
    let mut deliveries = 0;
    let mut control_ack = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while deliveries < 2 {
        assert!(
            Instant::now() < deadline,
            "the control message did not come back within 60 s"
        );
        let answer: Value = http
            .post(format!("http://{}/v1/{}:pull", pubsub.host(), subscription))
            .json(&json!({"maxMessages": 100, "returnImmediately": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for received in answer["receivedMessages"].as_array().into_iter().flatten() {
            let id = received["message"]["messageId"]
                .as_str()
                .unwrap_or_default();
            assert_eq!(id, control, "a message was not acknowledged: {received}");
            deliveries += 1;
            control_ack = received["ackId"].as_str().unwrap_or_default().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    http.post(format!(
        "http://{}/v1/{}:acknowledge",
        pubsub.host(),
        subscription
    ))
    .json(&json!({"ackIds": [control_ack]}))
    .send()
    .await
    .unwrap();
    emu.shutdown().await;
}

/// Two replicas with shards consume one subscription: each event reaches the holder of
/// its project's shard (the other hands it back to Pub/Sub), none is lost, and no
/// resource is re-checked or written by the replica that does not hold it.
#[tokio::test]
async fn with_shards_each_drift_event_reaches_the_holder_of_its_projects_shard() {
    use std::collections::{BTreeMap, BTreeSet};
    use std::fmt::Write as _;

    const PROJECTS: [&str; 4] = ["shard-p0", "shard-p1", "shard-p2", "shard-p3"];
    let mut seed = String::from("projects:\n");
    let mut names = Vec::new();
    for (n, project) in PROJECTS.iter().enumerate() {
        writeln!(
            seed,
            "  {project}:\n    projectNumber: {}\n    regions:\n      us-central1:\n        services:",
            910_000_000_000u64 + n as u64
        )
        .unwrap();
        for i in 0..5 {
            // Drifted: no Binary Authorization.
            writeln!(
                seed,
                "          - name: svc-{i}\n            image: us-docker.pkg.dev/{project}/app/svc:1.0.0"
            )
            .unwrap();
            names.push((project.to_string(), format!("svc-{i}")));
        }
    }
    let pubsub = PubSub::start();
    let subscription = topic(&pubsub, "sharded").await;
    let emu = cloudrun_emulator::start(EmulatorConfig {
        seed: Seed::from_yaml_str(&seed).unwrap(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    // Replica A holds the shards of p0 and p1, B those of p2 and p3.
    let mut envs = Vec::new();
    let mut proxies = Vec::new();
    for (tag, holds) in [("replica-a", &PROJECTS[..2]), ("replica-b", &PROJECTS[2..])] {
        let proxy = crate::support::proxy::TagProxy::start(&emu.url(), tag).await;
        let client = CloudRunClient::new(CloudRunConfig::emulator(&proxy.url()))
            .await
            .unwrap();
        proxies.push(proxy);
        envs.push(Arc::new(TestEnv {
            inventory: SharedInventory::new(client, Duration::from_secs(20)),
            bindings: PROJECTS.iter().map(|p| binding_for(p)).collect(),
            leader: AtomicBool::new(true),
            metrics: Metrics::new(),
            rechecked: Mutex::new(Vec::new()),
            holds: Some(holds.iter().map(|p| p.to_string()).collect()),
        }));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut running = Vec::new();
    for env in &envs {
        let handler = Handler::new(
            Arc::clone(env),
            Subscriber::emulator(&pubsub.host(), subscription.clone()),
            DriftConfig::default(),
        );
        let mut stopped = stopped.clone();
        running.push(tokio::spawn(handler.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    let entries: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, (project, name))| {
            service_entry(project, "us-central1", name, &format!("op-{i}"), true)
        })
        .collect();
    publish(&pubsub, "sharded", &entries).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut fixed = 0;
        for (project, name) in &names {
            let full = format!("projects/{project}/locations/us-central1/services/{name}");
            if binary_authorization_of(&emu, &full).await["useDefault"] == json!(true) {
                fixed += 1;
            }
        }
        if fixed == names.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {fixed} of {} drifts fixed",
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    for task in running {
        task.await.unwrap();
    }
    // Each project written by its holder only, once per resource.
    let mut writers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut writes = 0;
    for change in emu.changes() {
        if change.source == cloudrun_emulator::ChangeSource::Api {
            writes += 1;
            let project = change.resource.split('/').nth(1).unwrap().to_owned();
            writers.entry(project).or_default().insert(change.client);
        }
    }
    assert_eq!(writes, names.len(), "one write per drift: {writers:?}");
    for (i, project) in PROJECTS.iter().enumerate() {
        let holder = if i < 2 { "replica-a" } else { "replica-b" };
        assert_eq!(
            writers[*project].iter().collect::<Vec<_>>(),
            [holder],
            "{project}"
        );
    }
    // Nobody read a resource of a project it does not hold (the test's own reads carry
    // no tag).
    for request in emu.requests() {
        let Some(resource) = request.resource.as_deref() else {
            continue;
        };
        if request.client.is_empty() {
            continue;
        }
        let project = resource.split('/').nth(1).unwrap_or_default();
        let holder = if PROJECTS[..2].contains(&project) {
            "replica-a"
        } else {
            "replica-b"
        };
        assert_eq!(request.client, holder, "{} {resource}", request.method);
    }
    let fixed: u64 = envs.iter().map(|e| metric(e, FIXED)).sum();
    assert_eq!(fixed, names.len() as u64);
    let handed_back: Vec<u64> = envs.iter().map(|e| metric(e, OTHER_SHARD)).collect();
    eprintln!(
        "sharded drift events: {} entries, handed back to Pub/Sub {handed_back:?} times",
        names.len()
    );
    emu.shutdown().await;
}
