//! The operator's processes: the Cloud Run emulator (`binauthz-operator emulator`) and the
//! controller (`binauthz-operator controller`), each a subprocess of the real binary,
//! stopped when its guard drops (also when a test fails, which then prints its log).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::metrics;
use crate::support::net::free_port;

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

/// `binauthz-operator ARGS...` as a user runs it, to its end: in `dir` (`None`: here), with
/// `stdin` fed and closed, no colour, and no Cloud Run endpoint or `validate` defaults
/// taken from the environment.
pub fn run(dir: Option<&Path>, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("CLOUD_RUN_EMULATOR_HOST")
        .env_remove("BINAUTHZ_VALIDATE_PROJECT")
        .env_remove("BINAUTHZ_VALIDATE_REGION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    if let Some(stdin) = stdin {
        std::io::Write::write_all(&mut input, stdin.as_bytes()).expect("write stdin");
    }
    drop(input);
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{args:?} finishes: {e}"))
}

/// Output bytes as text (lossy), for assertions and messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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

    /// `GET /_emulator/{path}` from a synchronous test (`counters`, `state`, `audit`, ...).
    pub fn admin_blocking(&self, path: &str) -> Value {
        let url = format!("{}/_emulator/{path}", self.url);
        reqwest::blocking::get(&url)
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
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

    /// `POST /_emulator/deploy`: someone deploys `name` again (a new tag of its image, a
    /// new revision taking the traffic); answers the emulator's reply.
    pub async fn deploy(&self, name: &str) -> Value {
        let body = serde_json::json!({ "name": name, "by": "someone@example.com" });
        self.admin(reqwest::Method::POST, "deploy", Some(body))
            .await
    }

    /// `POST /_emulator/execute`: the job `name` runs once (a new execution, dated now).
    pub async fn execute(&self, name: &str) -> Value {
        let body = serde_json::json!({ "name": name });
        self.admin(reqwest::Method::POST, "execute", Some(body))
            .await
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

/// How a controller is started: `OperatorConfig::new(kubeconfig, cloud_run)` and the
/// settings a test needs.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// The kubeconfig it reads (KUBECONFIG).
    pub kubeconfig: PathBuf,
    /// The Cloud Run endpoint it talks to (an emulator, or a proxy in front of one).
    pub cloud_run: String,
    /// Watch only this namespace (`None`: every namespace); also `POD_NAMESPACE` and the
    /// Lease's namespace.
    pub namespace: Option<String>,
    /// Its identity (`POD_NAME`), also its leader-election identity.
    pub identity: String,
    /// `(lease name, lease duration)` to run with leader election.
    pub leader_election: Option<(String, String)>,
    /// Further flags, e.g. `--write-rate=12`.
    pub args: Vec<String>,
    /// Further environment variables.
    pub env: Vec<(String, String)>,
    /// Where its log (`IDENTITY.log`, stdout and stderr) goes; `None`: a temporary
    /// directory removed with the process.
    pub log_dir: Option<PathBuf>,
}

impl OperatorConfig {
    pub fn new(kubeconfig: &Path, cloud_run: &str) -> Self {
        Self {
            kubeconfig: kubeconfig.to_owned(),
            cloud_run: cloud_run.to_owned(),
            namespace: None,
            identity: "operator".to_owned(),
            leader_election: None,
            args: Vec::new(),
            env: Vec::new(),
            log_dir: None,
        }
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    pub fn identity(mut self, identity: &str) -> Self {
        self.identity = identity.to_owned();
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn leader_election(mut self, lease: &str, duration: &str) -> Self {
        self.leader_election = Some((lease.to_owned(), duration.to_owned()));
        self
    }

    pub fn log_dir(mut self, dir: &Path) -> Self {
        self.log_dir = Some(dir.to_owned());
        self
    }
}

/// A running `binauthz-operator controller` with its own metrics port and log file;
/// killed when dropped (its log tail printed when a test fails).
pub struct Operator {
    child: Option<Child>,
    identity: String,
    /// Its metrics, health and readiness address.
    pub metrics: SocketAddr,
    log: PathBuf,
    /// When it was spawned.
    pub started: Instant,
    _dir: Option<tempfile::TempDir>,
    http: reqwest::Client,
}

impl Operator {
    /// Spawns the controller and returns at once (see [`Operator::start`] to wait for it).
    pub fn spawn(config: &OperatorConfig) -> Operator {
        let (dir, log_dir) = match &config.log_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let path = dir.path().to_owned();
                (Some(dir), path)
            }
        };
        let log = log_dir.join(format!("{}.log", config.identity));
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("controller log file");
        let metrics = free_port();
        let mut command = Command::new(BINARY);
        command
            .arg("controller")
            .arg(format!("--metrics-addr={metrics}"))
            .arg(format!("--cloud-run-endpoint={}", config.cloud_run))
            .arg("--shutdown-grace=5s")
            .args(&config.args)
            .env("KUBECONFIG", &config.kubeconfig)
            .env("POD_NAME", &config.identity)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var(LOG_ENV).unwrap_or_else(|_| "info".to_owned()),
            )
            .env_remove("WATCH_NAMESPACE")
            .env_remove("POD_NAMESPACE")
            .env_remove("CLOUD_RUN_EMULATOR_HOST")
            .env_remove("PUBSUB_EMULATOR_HOST")
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log file handle"))
            .stderr(output);
        if let Some(ns) = &config.namespace {
            command
                .arg(format!("--namespace={ns}"))
                .env("POD_NAMESPACE", ns);
        }
        if let Some((lease, duration)) = &config.leader_election {
            command
                .arg("--leader-election")
                .arg(format!("--lease-name={lease}"))
                .arg(format!("--lease-duration={duration}"));
            if let Some(ns) = &config.namespace {
                command.arg(format!("--lease-namespace={ns}"));
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BINARY} controller: {e}"));
        Operator {
            child: Some(child),
            identity: config.identity.clone(),
            metrics,
            log,
            started: Instant::now(),
            _dir: dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Starts the controller and waits until `/healthz` answers (at most 60 s); fails the
    /// test with its log when it exits first.
    pub async fn start(config: &OperatorConfig) -> Operator {
        let mut operator = Operator::spawn(config);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if !operator.running() {
                panic!(
                    "controller {} exited at start-up; its log:\n{}",
                    operator.identity,
                    operator.log_tail()
                );
            }
            if let Some((200, _)) = operator.get("/healthz").await {
                return operator;
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

    /// Its process id (0 once killed).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `(status, body)` of `GET path` on the metrics address; `None` when nothing answers.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = self
            .http
            .get(format!("http://{}{path}", self.metrics))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// The text of `/metrics` (empty when it does not answer).
    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The sum of a metric's samples whose labels include every `labels` pair.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metrics::sum(&self.metrics().await, name, labels)
    }

    /// The HTTP status of `/readyz` (0 when it does not answer).
    pub async fn readyz(&self) -> u16 {
        self.get("/readyz").await.map_or(0, |(status, _)| status)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.readyz().await != 200 {
            assert!(
                Instant::now() < deadline,
                "controller {} was not ready within {within:?}; its log:\n{}",
                self.identity,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the process at once (SIGKILL: no lease release, no goodbye).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }

    /// SIGTERM, and its exit code once it exits (killed after 30 s: `None`).
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                stop(&mut child);
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Its whole log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- controller {} log ---\n{}",
                self.identity,
                self.log_tail()
            );
        }
    }
}
