//! Drift events against Google's real Pub/Sub emulator (the Google Cloud SDK's jar, started
//! on a free loopback port and killed by pid) and the in-process Cloud Run emulator: the
//! REST subscriber reads and acknowledges, and a published audit log entry makes exactly
//! the Cloud Run calls the design promises.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use binauthz_operator::api::BinAuthzBinding;
use binauthz_operator::cloudrun::{CloudRunClient, CloudRunConfig};
use binauthz_operator::drift::pubsub::{Subscriber, SubscriptionName};
use binauthz_operator::drift::{DriftConfig, Environment, Handler};
use binauthz_operator::emulator::{self, EmulatorConfig, EmulatorHandle, Seed};
use binauthz_operator::fleet::inventory::SharedInventory;
use binauthz_operator::plan::BindingKey;
use binauthz_operator::telemetry::Metrics;
use serde_json::{json, Value};

const JAR_DIR: &str = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib";
const PROJECT: &str = "acme-ops";

/// Google's Pub/Sub emulator, killed (by its pid) when dropped.
struct PubSub {
    child: Child,
    host: String,
}

impl Drop for PubSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_pubsub() -> PubSub {
    start_pubsub_on(free_port()).await
}

async fn start_pubsub_on(port: u16) -> PubSub {
    let jar = std::fs::read_dir(JAR_DIR)
        .expect("the Google Cloud SDK's Pub/Sub emulator is installed")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cloud-pubsub-emulator-") && n.ends_with("-all.jar"))
        })
        .expect("cloud-pubsub-emulator-*-all.jar");
    let child = Command::new("java")
        .arg("-jar")
        .arg(&jar)
        .arg("--host=127.0.0.1")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("java runs");
    let emulator = PubSub {
        child,
        host: format!("127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("http://{}/", emulator.host))
        .send()
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the Pub/Sub emulator did not start in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    emulator
}

impl PubSub {
    fn url(&self, path: &str) -> String {
        format!("http://{}/v1/projects/{PROJECT}/{path}", self.host)
    }

    /// A topic and a subscription of it (names of 3+ characters); the subscription's name.
    async fn topic(&self, name: &str, ack_deadline: u32) -> SubscriptionName {
        let http = reqwest::Client::new();
        let topic = http
            .put(self.url(&format!("topics/{name}")))
            .send()
            .await
            .unwrap();
        assert!(topic.status().is_success(), "{:?}", topic.text().await);
        let sub = http
            .put(self.url(&format!("subscriptions/{name}-sub")))
            .json(&json!({"topic": format!("projects/{PROJECT}/topics/{name}"), "ackDeadlineSeconds": ack_deadline}))
            .send()
            .await
            .unwrap();
        assert!(sub.status().is_success(), "{:?}", sub.text().await);
        format!("projects/{PROJECT}/subscriptions/{name}-sub")
            .parse()
            .unwrap()
    }

    /// Publishes each payload as one message, as a Logging sink does; their ids.
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Vec<String> {
        let engine = base64::engine::general_purpose::STANDARD;
        let messages: Vec<Value> = payloads
            .iter()
            .map(|p| json!({"data": engine.encode(p), "attributes": {"logging.googleapis.com/timestamp": "2026-12-02T08:00:00Z"}}))
            .collect();
        let answer: Value = reqwest::Client::new()
            .post(self.url(&format!("topics/{topic}:publish")))
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["messageIds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test]
async fn the_rest_subscriber_reads_and_acknowledges_on_the_real_emulator() {
    let pubsub = start_pubsub().await;
    let subscription = pubsub.topic("reads", 10).await;
    let subscriber = Subscriber::emulator(&pubsub.host, subscription);

    let ids = pubsub
        .publish("reads", &[b"first".to_vec(), b"second".to_vec()])
        .await;
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
    tokio::time::sleep(Duration::from_secs(11)).await;
    let marker = pubsub.publish("reads", &[b"marker".to_vec()]).await;
    let mut again = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(again
        .iter()
        .any(|m: &binauthz_operator::drift::pubsub::Received| m.message_id == marker[0])
        && again.iter().any(|m| m.message_id == ids[1]))
    {
        assert!(
            Instant::now() < deadline,
            "redelivery and marker not seen: {again:?}"
        );
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
        let id = pubsub
            .publish("reads", &[format!("m{i}").into_bytes()])
            .await;
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
}

impl Environment for TestEnv {
    fn inventory(&self) -> &SharedInventory {
        &self.inventory
    }
    fn bindings(&self) -> Vec<Arc<BinAuthzBinding>> {
        self.bindings.clone()
    }
    fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
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
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "binauthz.dev/v1alpha1",
            "kind": "BinAuthzBinding",
            "metadata": {"name": "prod", "namespace": "team", "generation": 1},
            "spec": {
                "project": "acme-prod",
                "locations": ["us-central1"],
                "targets": targets,
                "policy": {"useDefault": true},
            },
        }))
        .unwrap(),
    )
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
    let answer: Value = reqwest::Client::new()
        .get(format!("{}/v2/{name}", emu.url()))
        .bearer_auth("test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["binaryAuthorization"].clone()
}

const FIXED: &str = "binauthz_drift_events_handled_total{result=\"fixed\"}";
const NO_WRITE: &str = "binauthz_drift_events_handled_total{result=\"no_write\"}";
const UNCOVERED: &str = "binauthz_drift_events_ignored_total{reason=\"uncovered\"}";
const DUPLICATE: &str = "binauthz_drift_events_ignored_total{reason=\"duplicate\"}";
const OWN: &str = "binauthz_drift_events_ignored_total{reason=\"own_write\"}";
const UNPARSABLE: &str = "binauthz_drift_events_ignored_total{reason=\"unparsable\"}";
const RECEIVED: &str = "binauthz_drift_events_received_total";

#[tokio::test]
async fn a_published_drift_is_fixed_with_one_read_and_one_write() {
    let pubsub = start_pubsub().await;
    let emu = emulator::start(EmulatorConfig {
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
    });
    let subscription = pubsub.topic("audit", 10).await;
    let handler = Handler::new(
        Arc::clone(&env),
        Subscriber::emulator(&pubsub.host, subscription),
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
    pubsub
        .publish(
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
    pubsub
        .publish(
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
    pubsub
        .publish(
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
    pubsub.publish("audit", &burst).await;
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
    pubsub
        .publish(
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
    pubsub
        .publish(
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
    let pubsub = start_pubsub().await;
    let subscription = pubsub.topic("loop", 10).await;
    let emu = emulator::start(EmulatorConfig {
        seed: Seed::from_yaml_str(SEED).unwrap(),
        audit_log: Some(
            emulator::AuditLogConfig::new(&format!("projects/{PROJECT}/topics/loop"), &pubsub.host)
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
    });
    let handler = Handler::new(
        Arc::clone(&env),
        Subscriber::emulator(&pubsub.host, subscription),
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
    let mut pubsub = start_pubsub().await;
    let subscription = pubsub.topic("flaky", 10).await;
    let emu = emulator::start(EmulatorConfig {
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
    });
    let handler = Handler::new(
        Arc::clone(&env),
        Subscriber::emulator(&pubsub.host, subscription),
        DriftConfig::default(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(Arc::clone(&handler).run(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Pub/Sub goes away mid-pull: errors are counted, the subscriber keeps trying.
    let port: u16 = pubsub.host.rsplit_once(':').unwrap().1.parse().unwrap();
    drop(pubsub);
    let errors = "binauthz_drift_subscription_errors_total{call=\"pull\"}";
    wait_for(&env, &handler, errors, 2).await;
    assert!(!running.is_finished(), "the subscriber stopped");

    // Back (empty, as the emulator restarts): the next pull succeeds and a drift is fixed.
    pubsub = start_pubsub_on(port).await;
    pubsub.topic("flaky", 10).await;
    drift(&emu, "acme-prod", Value::Null).await;
    let back = Instant::now();
    pubsub
        .publish(
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
    drop(pubsub);
}
