//! Proxies the reliability suites put in front of the operator: one that tags its Cloud Run
//! calls for the emulator's request log, one that can cut it off from the kube-apiserver;
//! and the log directory of a test's processes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

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
