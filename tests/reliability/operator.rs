//! The operator binary as a subprocess (`controller`), and two proxies the reliability
//! suites put in front of it: one that tags its Cloud Run calls for the emulator's request
//! log, one that can cut it off from the kube-apiserver.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_binauthz-operator");

/// A free loopback port (a race with other binders is possible but rare).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// How to start one replica.
#[derive(Clone, Debug)]
pub struct OperatorOpts {
    pub kubeconfig: PathBuf,
    pub namespace: String,
    pub cloud_run: String,
    /// `POD_NAME`: the replica's identity in the Lease and in events.
    pub identity: String,
    /// `(lease name, lease duration)`; the Lease lives in `namespace`.
    pub leader_election: Option<(String, String)>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr go (`NAME.stdout`, `NAME.stderr`).
    pub log_dir: PathBuf,
}

impl OperatorOpts {
    pub fn new(kubeconfig: &Path, namespace: &str, cloud_run: &str, log_dir: &Path) -> Self {
        Self {
            kubeconfig: kubeconfig.to_owned(),
            namespace: namespace.to_owned(),
            cloud_run: cloud_run.to_owned(),
            identity: "op-a".into(),
            leader_election: None,
            args: Vec::new(),
            env: Vec::new(),
            log_dir: log_dir.to_owned(),
        }
    }
}

/// A running `binauthz-operator controller`; killed when dropped.
pub struct Operator {
    child: Option<Child>,
    pub metrics: SocketAddr,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub started: Instant,
    http: reqwest::Client,
}

impl Operator {
    pub fn start(opts: &OperatorOpts) -> Self {
        let metrics = free_addr();
        let n = opts.identity.clone();
        let stdout = opts.log_dir.join(format!("{n}.stdout"));
        let stderr = opts.log_dir.join(format!("{n}.stderr"));
        let append = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .expect("a log file")
        };
        let mut cmd = Command::new(BIN);
        cmd.arg("controller")
            .args(["--namespace", &opts.namespace])
            .args(["--cloud-run-endpoint", &opts.cloud_run])
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--shutdown-grace", "5s"])
            .args(&opts.args)
            .env("KUBECONFIG", &opts.kubeconfig)
            .env("POD_NAME", &opts.identity)
            .env("POD_NAMESPACE", &opts.namespace)
            .env_remove("CLOUD_RUN_EMULATOR_HOST")
            .env("RUST_LOG", "info")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(append(&stdout))
            .stderr(append(&stderr));
        if let Some((lease, duration)) = &opts.leader_election {
            cmd.arg("--leader-election")
                .args(["--lease-name", lease])
                .args(["--lease-namespace", &opts.namespace])
                .args(["--lease-duration", duration]);
        }
        let child = cmd.spawn().expect("the operator starts");
        Self {
            child: Some(child),
            metrics,
            stdout,
            stderr,
            started: Instant::now(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Still running (not exited, not killed)?
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no chance to release anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit code.
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
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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

    pub async fn metrics_text(&self) -> String {
        self.get("/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The sum of a metric's samples whose labels contain every `labels` pair.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics_text().await, name, labels)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some((200, _)) = self.get("/readyz").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the operator was not ready within {within:?}; stderr:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn logs(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("{out}{err}")
    }

    pub fn log_tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sum of the samples of `name` (OpenMetrics text) carrying every label pair.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, r)) => (m, r),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .fold(0.0, |sum, v| sum + v)
}

/// Polls `check` every 250 ms until it holds; panics with `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------
// A tagging HTTP proxy: every request forwarded with `x-emulator-client: TAG`, so the
// emulator's request log and audit tell replicas apart.

pub struct TagProxy {
    pub addr: SocketAddr,
    /// Requests forwarded so far.
    pub forwarded: Arc<AtomicU64>,
    /// Milliseconds added before forwarding each request.
    pub delay_ms: Arc<AtomicU64>,
    /// Every distinct `Authorization` header forwarded.
    pub authorizations: Arc<Mutex<BTreeSet<String>>>,
    task: JoinHandle<()>,
}

impl TagProxy {
    pub async fn start(upstream: &str, tag: &str) -> Self {
        let upstream = upstream.trim_end_matches('/').to_owned();
        let tag = tag.to_owned();
        let http = reqwest::Client::new();
        let forwarded = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let authorizations: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let (count, delay) = (Arc::clone(&forwarded), Arc::clone(&delay_ms));
        let seen = Arc::clone(&authorizations);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let url = format!(
                    "{upstream}{}",
                    uri.path_and_query().map_or("/", |p| p.as_str())
                );
                let http = http.clone();
                let tag = tag.clone();
                count.fetch_add(1, Ordering::SeqCst);
                if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
                    seen.lock().unwrap().insert(value.to_owned());
                }
                let delay = Duration::from_millis(delay.load(Ordering::SeqCst));
                async move {
                    tokio::time::sleep(delay).await;
                    let mut request = http.request(method, url).body(body);
                    for (name, value) in &headers {
                        if name != "host" && name != "content-length" {
                            request = request.header(name, value);
                        }
                    }
                    match request.header("x-emulator-client", tag).send().await {
                        Ok(answer) => {
                            let status = answer.status();
                            let headers = answer.headers().clone();
                            let body = answer.bytes().await.unwrap_or_default();
                            let mut response = (status, body).into_response();
                            for (name, value) in &headers {
                                if name != "content-length" && name != "transfer-encoding" {
                                    response.headers_mut().insert(name, value.clone());
                                }
                            }
                            response
                        }
                        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                    }
                }
            },
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            forwarded,
            delay_ms,
            authorizations,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TagProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// A TCP proxy to the kube-apiserver that can partition its client: `cut` closes every
// connection and refuses new ones until `heal`.

pub struct CuttableProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let task = tokio::spawn({
            let cut = Arc::clone(&cut);
            let connections = Arc::clone(&connections);
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let conn = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    let mut all = connections.lock().unwrap();
                    all.retain(|c| !c.is_finished());
                    all.push(conn);
                }
            }
        });
        Self {
            addr,
            cut,
            connections,
            task,
        }
    }

    /// Partition: every open connection is closed, new ones are closed at once.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for conn in self.connections.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// A kubeconfig like `original` whose server goes through this proxy.
    pub fn kubeconfig(&self, original: &Path, out: &Path) -> PathBuf {
        let text = std::fs::read_to_string(original).expect("the kubeconfig");
        let mut doc: serde_json::Value = serde_yaml_ng::from_str(&text).expect("a YAML kubeconfig");
        for cluster in doc["clusters"].as_array_mut().into_iter().flatten() {
            cluster["cluster"]["server"] = format!("https://{}", self.addr).into();
        }
        std::fs::write(out, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
        out.to_owned()
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// The log directory of one test's processes (under `CARGO_TARGET_TMPDIR`): removed when
/// the test passes, kept and named on stderr when it fails. Create it before the
/// processes, so they are stopped before it goes.
pub struct LogDir(PathBuf);

impl LogDir {
    pub fn new(name: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("reliability-{name}"));
        std::fs::create_dir_all(&dir).expect("a log directory");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("BINAUTHZ_KEEP_LOGS").is_some() {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
