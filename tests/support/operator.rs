//! The operator's processes for end-to-end tests: the Cloud Run emulator and the
//! controller, each a subprocess of the real binary, stopped when their guard drops (also
//! when a test fails). Include with `#[path = "support/operator.rs"] mod operator;`.
//!
//! Depends only on crates the test crate already has: reqwest, serde_json, tempfile.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The controller's RUST_LOG in tests (default `info`), e.g. `binauthz_operator=debug`.
pub const LOG_ENV: &str = "BINAUTHZ_E2E_RUST_LOG";

/// The operator binary Cargo built for this test run.
pub const BINARY: &str = env!("CARGO_BIN_EXE_binauthz-operator");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The last `lines` lines of a log file, for failure messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Stops a child: SIGKILL and reap (Child::kill is SIGKILL on Unix). Idempotent.
fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// `binauthz-operator emulator` on a free loopback port.
pub struct Emulator {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Emulator {
    /// Starts the emulator seeded with `seed` (relative to the repository) and waits for
    /// its `listening on` line.
    pub fn start(seed: &str) -> Emulator {
        Emulator::start_with(seed, &[])
    }

    /// Starts the emulator with further flags (faults: `--latency-ms=200`, ...).
    pub fn start_with(seed: &str, args: &[&str]) -> Emulator {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("emulator.log");
        let stderr = std::fs::File::create(&log).expect("emulator log file");
        let mut child = Command::new(BINARY)
            .args(["emulator", "--listen", "127.0.0.1:0", "--seed"])
            .arg(repo().join(seed))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BINARY} emulator: {e}"));
        let stdout = child.stdout.take().expect("emulator stdout");
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        let read = lines.read_line(&mut first);
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_owned);
        let Some(url) = url.filter(|_| read.is_ok()) else {
            stop(&mut child);
            panic!(
                "the emulator did not print `listening on URL` (got {first:?}); its log:\n{}",
                tail(&log, 30)
            );
        };
        // Keep draining stdout so the emulator never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = lines.read_to_end(&mut sink);
        });
        Emulator {
            child,
            url,
            log,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_emulator/{path}", self.url);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {url}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: not JSON: {e}"))
    }

    /// `GET /_emulator/counters`: `{calls, reads, writes, changes}`.
    pub async fn counters(&self) -> Value {
        self.admin(reqwest::Method::GET, "counters", None).await
    }

    /// `GET /_emulator/requests`: every API call so far, oldest first.
    pub async fn requests(&self) -> Vec<Value> {
        let answer = self.admin(reqwest::Method::GET, "requests", None).await;
        answer["requests"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /_emulator/audit`: every change made so far.
    pub async fn audit(&self) -> Vec<Value> {
        let answer = self.admin(reqwest::Method::GET, "audit", None).await;
        answer["changes"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /_emulator/state`: the estate in the seed format.
    pub async fn state(&self) -> Value {
        self.admin(reqwest::Method::GET, "state", None).await
    }

    /// `POST /_emulator/drift`: someone sets `name`'s Binary Authorization to `value`
    /// (`null` turns it off).
    pub async fn drift(&self, name: &str, value: Value) {
        self.drift_through(name, value, "v1").await;
    }

    /// The same change made through Cloud Run's API version `api` (`v1`: gcloud's Replace,
    /// one audit entry; `v2`: an Update operation, two entries).
    pub async fn drift_through(&self, name: &str, value: Value, api: &str) {
        let body = serde_json::json!({ "name": name, "binaryAuthorization": value, "by": "someone@example.com", "apiVersion": api });
        self.admin(reqwest::Method::POST, "drift", Some(body)).await;
    }

    /// The `binaryAuthorization` of the resource `projects/{p}/locations/{l}/{kind}/{id}`
    /// in the current state (`Value::Null` when it has none).
    pub async fn binary_authorization(&self, name: &str) -> Value {
        resource(&self.state().await, name)
            .unwrap_or_else(|| panic!("the emulator has no resource {name}"))
            .get("binaryAuthorization")
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// The emulator's log (stderr), for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 30)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        stop(&mut self.child);
        if std::thread::panicking() {
            eprintln!("--- emulator log ({}) ---\n{}", self.url, self.log_tail());
        }
    }
}

/// The resource `projects/{p}/locations/{l}/{collection}/{id}` in an emulator state.
pub fn resource<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    let parts: Vec<&str> = name.split('/').collect();
    let [_, project, _, location, collection, id] = parts.as_slice() else {
        return None;
    };
    state["projects"][*project]["regions"][*location][*collection]
        .as_array()?
        .iter()
        .find(|r| r["name"] == *id)
}

/// A free loopback port (bound, read, released: another process could take it before the
/// operator binds it, which the operator then reports as a start-up error).
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address")
}

/// How a controller is started.
pub struct OperatorConfig<'a> {
    /// The kubeconfig it reads (KUBECONFIG).
    pub kubeconfig: &'a Path,
    /// The emulator it talks to.
    pub emulator: &'a str,
    /// Watch only this namespace (`None`: every namespace).
    pub namespace: Option<&'a str>,
    /// Its identity (`POD_NAME`), also its leader-election identity.
    pub identity: &'a str,
    /// Further flags, e.g. `--leader-election`.
    pub args: Vec<String>,
}

/// `binauthz-operator controller`, with its own metrics port and log file.
pub struct Operator {
    child: Child,
    identity: String,
    metrics: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Operator {
    /// Starts the controller and waits until `/healthz` answers.
    pub async fn start(config: OperatorConfig<'_>) -> Operator {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = dir.path().join("controller.log");
        let output = std::fs::File::create(&log).expect("controller log file");
        let metrics = free_port();
        let mut command = Command::new(BINARY);
        command
            .arg("controller")
            .arg(format!("--metrics-addr={metrics}"))
            .arg(format!("--cloud-run-endpoint={}", config.emulator))
            .args(&config.args)
            .env("KUBECONFIG", config.kubeconfig)
            .env("POD_NAME", config.identity)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var(LOG_ENV).unwrap_or_else(|_| "info".to_owned()),
            )
            .env_remove("WATCH_NAMESPACE")
            .env_remove("CLOUD_RUN_EMULATOR_HOST")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log file handle"))
            .stderr(output);
        if let Some(ns) = config.namespace {
            command.arg(format!("--namespace={ns}"));
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BINARY} controller: {e}"));
        let mut operator = Operator {
            child,
            identity: config.identity.to_owned(),
            metrics,
            log,
            _dir: dir,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = operator.child.try_wait() {
                panic!(
                    "controller {} exited at start-up ({status}); its log:\n{}",
                    operator.identity,
                    operator.log_tail()
                );
            }
            let url = format!("http://{}/healthz", operator.metrics);
            if let Ok(response) = operator.http.get(&url).send().await {
                if response.status().is_success() {
                    return operator;
                }
            }
            assert!(
                Instant::now() < deadline,
                "controller {} did not answer /healthz within 60 s; its log:\n{}",
                operator.identity,
                operator.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// This replica's identity (POD_NAME).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", self.log_tail()));
        response.text().await.unwrap_or_default()
    }

    /// The HTTP status of `/readyz` (0 when it does not answer).
    pub async fn readyz(&self) -> u16 {
        let url = format!("http://{}/readyz", self.metrics);
        match self.http.get(&url).send().await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The sum of every sample of `metric` (e.g. a counter over all its labels) whose
    /// labels contain `label_filter` (`""` for all).
    pub async fn metric_sum(&self, metric: &str, label_filter: &str) -> f64 {
        sum_metric(&self.metrics().await, metric, label_filter)
    }

    /// Kills the process at once (SIGKILL: no lease release, no goodbye).
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of the controller's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        stop(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "--- controller {} log ---\n{}",
                self.identity,
                self.log_tail()
            );
        }
    }
}

/// The sum of the samples of `metric` in an OpenMetrics text whose labels contain `filter`.
pub fn sum_metric(text: &str, metric: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            (name == metric && series.contains(filter)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
