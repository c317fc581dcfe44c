//! Google's real Pub/Sub emulator for tests, started with `scripts/pubsub-emulator.sh` on a
//! free 127.0.0.1 port, and a small client of its REST API (topics, subscriptions,
//! publish, pull, acknowledge). Part of the support tree (`support::pubsub`); the
//! benchmarks include this file alone.
//!
//! ```ignore
//! let pubsub = pubsub::shared();                       // one per test binary
//! // or: let pubsub = pubsub::PubSub::start();         // your own (to kill / restart it)
//! let topic = pubsub.create_topic("audit-proj", "run-audit").await;
//! let sub = pubsub.create_subscription("audit-proj", "run-audit-sub", &topic).await;
//! // ... something publishes to `topic` (PUBSUB_EMULATOR_HOST = pubsub.host()) ...
//! let messages = pubsub.pull_acked(&sub, 2, Duration::from_secs(10)).await;
//! let entry = messages[0].json();                      // the LogEntry in `data`
//! ```
//!
//! - The machine and CI have Java and the SDK's emulator jar: when either is missing the
//!   test FAILS with the script's message saying what to install (no silent skip).
//! - A watchdog started by the script stops the emulator when this test process exits,
//!   however it exits; dropping a [`PubSub`] stops it at once.
//! - Names (topics, subscriptions) must have 3+ characters: the emulator refuses `t`.
//! - Blocking start (std::process) and a fresh HTTP client per call: safe from any test's
//!   tokio runtime.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// A running Pub/Sub emulator.
pub struct PubSub {
    dir: PathBuf,
    port: u16,
    /// Serializes kill/restart.
    lifecycle: Mutex<()>,
}

/// One pulled message.
#[derive(Clone, Debug)]
pub struct Received {
    pub ack_id: String,
    pub message_id: String,
    /// `data`, base64-decoded.
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub publish_time: String,
}

impl Received {
    /// `data` as JSON (panics with the text when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.data).unwrap_or_else(|err| {
            panic!(
                "message {} data is not JSON ({err}): {}",
                self.message_id,
                String::from_utf8_lossy(&self.data)
            )
        })
    }
}

fn say(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join("pubsub-emulator.sh")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SHARED: OnceLock<PubSub> = OnceLock::new();

/// The test binary's shared emulator, started on first use. Use unique topic and
/// subscription names per test.
pub fn shared() -> &'static PubSub {
    SHARED.get_or_init(PubSub::start)
}

/// A client for calls to the emulator (no proxy: it is on loopback).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client builds")
}

impl PubSub {
    /// Starts an emulator of its own on a free port. Panics (fails the test) with the
    /// script's explanation when it cannot start.
    pub fn start() -> PubSub {
        let base = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "pubsub-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let host = run_start(&dir, None);
        let port = host
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("pubsub-emulator.sh printed '{host}', not HOST:PORT"));
        PubSub {
            dir,
            port,
            lifecycle: Mutex::new(()),
        }
    }

    /// `127.0.0.1:PORT`, the value of `PUBSUB_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Stops the emulator now (its topics, subscriptions and messages are lost).
    pub fn kill(&self) {
        let _guard = self.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        run_stop(&self.dir);
    }

    /// Starts it again on the same port, empty (create topics and subscriptions again).
    pub fn restart(&self) {
        let _guard = self.lifecycle.lock().unwrap_or_else(|e| e.into_inner());
        run_stop(&self.dir);
        run_start(&self.dir, Some(self.port));
    }

    /// `PUT v1/projects/P/topics/T`; returns `projects/P/topics/T`. Panics unless created.
    pub async fn create_topic(&self, project: &str, topic: &str) -> String {
        let name = format!("projects/{project}/topics/{topic}");
        let response = http()
            .put(format!("{}/v1/{name}", self.url()))
            .json(&json!({}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {name}: {e}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "PUT {name}: {status} {body}");
        name
    }

    /// `PUT v1/projects/P/subscriptions/S {"topic"}`; returns `projects/P/subscriptions/S`.
    pub async fn create_subscription(
        &self,
        project: &str,
        subscription: &str,
        topic: &str,
    ) -> String {
        let name = format!("projects/{project}/subscriptions/{subscription}");
        let response = http()
            .put(format!("{}/v1/{name}", self.url()))
            .json(&json!({"topic": topic, "ackDeadlineSeconds": 10}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {name}: {e}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "PUT {name}: {status} {body}");
        name
    }

    /// A topic and a subscription to it: `(topic name, subscription name)`.
    pub async fn topic_and_subscription(
        &self,
        project: &str,
        topic: &str,
        subscription: &str,
    ) -> (String, String) {
        let topic = self.create_topic(project, topic).await;
        let subscription = self
            .create_subscription(project, subscription, &topic)
            .await;
        (topic, subscription)
    }

    /// Publishes one message; returns its message id.
    pub async fn publish(&self, topic: &str, data: &[u8], attributes: &[(&str, &str)]) -> String {
        self.publish_all(topic, &[data.to_vec()], attributes)
            .await
            .swap_remove(0)
    }

    /// Publishes each payload as one message in one request (as a Logging sink batches
    /// them), each with `attributes`; returns their message ids in order.
    pub async fn publish_all(
        &self,
        topic: &str,
        payloads: &[Vec<u8>],
        attributes: &[(&str, &str)],
    ) -> Vec<String> {
        let attributes: BTreeMap<&str, &str> = attributes.iter().copied().collect();
        let engine = base64::engine::general_purpose::STANDARD;
        let messages: Vec<Value> = payloads
            .iter()
            .map(|data| json!({"data": engine.encode(data), "attributes": attributes}))
            .collect();
        let response = http()
            .post(format!("{}/v1/{topic}:publish", self.url()))
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("publish to {topic}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "publish to {topic}: {status} {body}");
        let ids: Vec<String> = body["messageIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        assert_eq!(ids.len(), payloads.len(), "publish to {topic}: {body}");
        ids
    }

    /// One `:pull` of at most `max` messages, returning at once when none is there.
    pub async fn pull(&self, subscription: &str, max: usize) -> Vec<Received> {
        let response = http()
            .post(format!("{}/v1/{subscription}:pull", self.url()))
            .json(&json!({"maxMessages": max, "returnImmediately": true}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("pull {subscription}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "pull {subscription}: {status} {body}");
        body["receivedMessages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let message = &m["message"];
                let data = message["data"].as_str().unwrap_or_default();
                Received {
                    ack_id: m["ackId"].as_str().unwrap_or_default().to_string(),
                    message_id: message["messageId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    data: base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .unwrap_or_else(|e| panic!("message data is not base64 ({e}): {data}")),
                    attributes: message["attributes"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect(),
                    publish_time: message["publishTime"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                }
            })
            .collect()
    }

    /// `:acknowledge` these ack ids.
    pub async fn acknowledge(&self, subscription: &str, ack_ids: &[String]) {
        if ack_ids.is_empty() {
            return;
        }
        let response = http()
            .post(format!("{}/v1/{subscription}:acknowledge", self.url()))
            .json(&json!({"ackIds": ack_ids}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledge on {subscription}: {e}"));
        let status = response.status();
        assert!(
            status.is_success(),
            "acknowledge on {subscription}: {status}"
        );
    }

    /// Pulls and acknowledges until `want` messages arrived or `timeout` passed; returns
    /// what arrived, in arrival order (possibly more than `want`, never waits for more).
    pub async fn pull_acked(
        &self,
        subscription: &str,
        want: usize,
        timeout: Duration,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut all = Vec::new();
        while all.len() < want && Instant::now() < deadline {
            let batch = self.pull(subscription, 100).await;
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let ids: Vec<String> = batch.iter().map(|m| m.ack_id.clone()).collect();
            self.acknowledge(subscription, &ids).await;
            all.extend(batch);
        }
        all
    }

    /// Pulls and acknowledges for `period`, returning everything that arrived.
    pub async fn drain(&self, subscription: &str, period: Duration) -> Vec<Received> {
        let deadline = Instant::now() + period;
        let mut all = Vec::new();
        while Instant::now() < deadline {
            let batch = self.pull(subscription, 100).await;
            let ids: Vec<String> = batch.iter().map(|m| m.ack_id.clone()).collect();
            self.acknowledge(subscription, &ids).await;
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            all.extend(batch);
        }
        all
    }
}

impl Drop for PubSub {
    fn drop(&mut self) {
        run_stop(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `pubsub-emulator.sh start`; returns the printed `127.0.0.1:PORT`.
fn run_start(dir: &std::path::Path, port: Option<u16>) -> String {
    let started = Instant::now();
    let mut command = Command::new(script());
    command
        .arg("start")
        .arg("--dir")
        .arg(dir)
        .arg("--owner-pid")
        .arg(std::process::id().to_string())
        .arg("--rm-dir");
    if let Some(port) = port {
        command.arg("--port").arg(port.to_string());
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Pub/Sub emulator did not start ({}): {stderr}",
        output.status
    );
    let host = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    say(&format!(
        "pubsub: emulator at {host} in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    host
}

fn run_stop(dir: &std::path::Path) {
    let status = Command::new(script())
        .arg("stop")
        .arg("--dir")
        .arg(dir)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        say(&format!(
            "pubsub: stopping the emulator in {} failed: {status:?}",
            dir.display()
        ));
    }
}
