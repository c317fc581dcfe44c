//! A real control plane (etcd + kube-apiserver) shared by every test of one
//! test binary, the way controller-runtime's envtest works (and, for a test that needs a
//! cluster the others must not touch, one of its own: `own_control_plane_or_skip`).
//!
//! ```ignore
//! #[tokio::test]
//! async fn lists_namespaces() {
//!     let Some(cp) = envtest::control_plane_or_skip().await else { return };
//!     let ns = cp.fresh_namespace().await;
//!     let client = cp.client().await;
//!     // ...
//! }
//! ```
//!
//! - The binaries come from `scripts/envtest.sh` (which honours `KUBEBUILDER_ASSETS`
//!   and `TEST_ASSET_*`, or builds them once into a cache).
//! - One control plane per test binary, started lazily by the first test; a
//!   watchdog started by the script stops it when this process exits, however it
//!   exits (statics are never dropped, and a panicking test must not leak etcd).
//! - `USE_EXISTING_CLUSTER=true` runs against the current kubeconfig instead.
//! - A control plane that cannot start is a test FAILURE. Only the explicit
//!   opt-out `BINAUTHZ_SKIP_E2E=1` skips, loudly.
//!
//! Depends only on crates the test crate already has: kube, k8s-openapi,
//! serde_json (and std).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The opt-out: set to `1` to skip (not pass!) the tests that need a control plane.
pub const SKIP_ENV: &str = "BINAUTHZ_SKIP_E2E";
/// Keep the control plane's directory (logs, certificates) after the binary exits.
pub const KEEP_ENV: &str = "BINAUTHZ_ENVTEST_KEEP";

pub struct ControlPlane {
    /// `None` with `USE_EXISTING_CLUSTER`: kubectl and kube use their defaults.
    kubeconfig: Option<PathBuf>,
    /// The directory given to `envtest.sh start` (None with an existing cluster).
    dir: Option<PathBuf>,
    kubectl: PathBuf,
    apiserver_url: Option<String>,
}

/// A failed start is remembered: the other tests fail at once with the same
/// message instead of each waiting for a start that cannot succeed.
static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
static NAMESPACE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Write straight to the process's stderr: libtest captures `eprintln!` of
/// passing tests, and these messages must be seen.
fn say(msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{msg}");
}

fn env_true(name: &str) -> bool {
    matches!(
        std::env::var(name).map(|v| v.trim().to_ascii_lowercase()),
        Ok(v) if v == "1" || v == "true" || v == "yes"
    )
}

/// True when the person running the tests opted out of the end-to-end tests.
/// Prints a loud warning (once per binary, plus one line per skipped test).
pub fn e2e_skipped() -> bool {
    static BANNER: Once = Once::new();
    if !env_true(SKIP_ENV) {
        return false;
    }
    BANNER.call_once(|| {
        let bar = "!".repeat(78);
        say(&format!(
            "\n{bar}\n!!! {SKIP_ENV}=1 is set: end-to-end tests against a real kube-apiserver are\n\
             !!! SKIPPED. Nothing they cover (CRD schema, CEL rules, RBAC, SSA, status,\n\
             !!! watches) has been tested by this run. Unset {SKIP_ENV} to run them.\n{bar}\n"
        ));
    });
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_string();
    say(&format!(
        "!!! SKIPPED (no control plane, {SKIP_ENV}=1): {test}"
    ));
    true
}

/// The shared control plane, or `None` (after a loud warning) when the tests
/// were explicitly opted out with `BINAUTHZ_SKIP_E2E=1`.
pub async fn control_plane_or_skip() -> Option<&'static ControlPlane> {
    if e2e_skipped() {
        return None;
    }
    Some(control_plane().await)
}

/// The shared control plane, started on first use. Panics (fails the test) when
/// it cannot be started. Blocks the calling thread while starting: it is plain
/// `std::process`, independent of the async runtime each test creates.
pub async fn control_plane() -> &'static ControlPlane {
    assert!(
        !env_true(SKIP_ENV),
        "{SKIP_ENV}=1 is set: use envtest::control_plane_or_skip() in this test"
    );
    let started = CONTROL_PLANE.get_or_init(|| {
        std::panic::catch_unwind(start).map_err(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "unknown panic".to_string())
        })
    });
    match started {
        Ok(cp) => cp,
        Err(msg) => panic!("envtest: the shared control plane could not be started: {msg}"),
    }
}

/// A control plane of the caller's own (not the shared one), for a test that needs a
/// cluster in a state the others must not see (e.g. without the CRD); stopped when
/// dropped. `None` (after the loud warning) when end-to-end tests are opted out.
pub fn own_control_plane_or_skip() -> Option<ControlPlane> {
    if e2e_skipped() {
        return None;
    }
    Some(start())
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let script = repo_root().join("scripts").join("envtest.sh");
            let _ = Command::new("bash")
                .arg(&script)
                .arg("stop")
                .arg("--dir")
                .arg(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status();
        }
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn start() -> ControlPlane {
    if env_true("USE_EXISTING_CLUSTER") {
        return existing_cluster();
    }
    let script = repo_root().join("scripts").join("envtest.sh");
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = base.join(format!("envtest-{}-{nanos:08x}", std::process::id()));
    let keep = env_true(KEEP_ENV);

    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg("start")
        .arg("--dir")
        .arg(&dir)
        .arg("--owner-pid")
        .arg(std::process::id().to_string());
    if !keep {
        cmd.arg("--rm-dir");
    }
    // Build progress and errors go straight to the terminal; stdout is the path.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("envtest: could not run {}: {e}", script.display()));
    if !out.status.success() {
        panic!(
            "envtest: `{} start --dir {}` failed ({}); see its messages above and the logs kept in \
             that directory. To run against a real cluster instead set \
             USE_EXISTING_CLUSTER=true; to skip these tests on purpose set {SKIP_ENV}=1.",
            script.display(),
            dir.display(),
            out.status
        );
    }
    let kubeconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        kubeconfig.is_file(),
        "envtest: start printed {kubeconfig:?}, which is not a file"
    );
    let env = read_env_file(&dir.join("env"));
    let kubectl = env
        .iter()
        .find(|(k, _)| k == "KUBECTL")
        .map(|(_, v)| PathBuf::from(v))
        .expect("envtest: DIR/env has no KUBECTL line");
    let apiserver_url = env
        .iter()
        .find(|(k, _)| k == "APISERVER_URL")
        .map(|(_, v)| v.clone());
    say(&format!(
        "envtest: control plane {} ready in {:.1?} (dir {}{})",
        apiserver_url.as_deref().unwrap_or("?"),
        started.elapsed(),
        dir.display(),
        if keep { ", kept" } else { ", removed at exit" }
    ));
    ControlPlane {
        kubeconfig: Some(kubeconfig),
        dir: Some(dir),
        kubectl,
        apiserver_url,
    }
}

fn existing_cluster() -> ControlPlane {
    let kubectl = std::env::var_os("TEST_ASSET_KUBECTL")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("KUBEBUILDER_ASSETS")
                .map(|d| PathBuf::from(d).join("kubectl"))
                .filter(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("kubectl"));
    say(&format!(
        "envtest: USE_EXISTING_CLUSTER=true: using the current kubeconfig context and {}",
        kubectl.display()
    ));
    ControlPlane {
        kubeconfig: None,
        dir: None,
        kubectl,
        apiserver_url: None,
    }
}

fn read_env_file(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("envtest: cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl ControlPlane {
    /// The admin kubeconfig (None when running against an existing cluster).
    pub fn kubeconfig(&self) -> Option<&Path> {
        self.kubeconfig.as_deref()
    }

    /// `https://127.0.0.1:<port>` of the started kube-apiserver.
    pub fn apiserver_url(&self) -> Option<&str> {
        self.apiserver_url.as_deref()
    }

    /// The directory with the control plane's logs and certificates.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The kubectl matching the API server (from the same assets).
    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    /// A kube config for this control plane.
    pub async fn config(&self) -> kube::Config {
        match &self.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .unwrap_or_else(|e| panic!("envtest: reading {}: {e}", path.display()));
                kube::Config::from_custom_kubeconfig(
                    kc,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("envtest: kubeconfig {}: {e}", path.display()))
            }
            None => kube::Config::infer().await.unwrap_or_else(|e| {
                panic!("envtest: USE_EXISTING_CLUSTER: no usable kubeconfig: {e}")
            }),
        }
    }

    /// A new client, bound to the calling test's runtime (do not share clients
    /// between tests: each `#[tokio::test]` has its own runtime).
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config().await)
            .unwrap_or_else(|e| panic!("envtest: building a kube client: {e}"))
    }

    /// Create a namespace named after the calling test and return its name.
    /// (There is no namespace controller here: deleted namespaces stay
    /// Terminating, so tests do not bother deleting them.)
    pub async fn fresh_namespace(&self) -> String {
        use k8s_openapi::api::core::v1::Namespace;
        let name = namespace_name();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": { "binauthz.test/e2e": "true" } }
        }))
        .expect("envtest: namespace object");
        let api: kube::Api<Namespace> = kube::Api::all(self.client().await);
        api.create(&kube::api::PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("envtest: creating namespace {name}: {e}"));
        name
    }

    fn kubectl_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.kubectl);
        if let Some(kc) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(kc);
        }
        cmd.args(args);
        cmd
    }

    /// Run kubectl against this control plane; returns its raw output.
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.kubectl_command(args);
        cmd.stdin(Stdio::null());
        cmd.output()
            .unwrap_or_else(|e| panic!("envtest: running {}: {e}", self.kubectl.display()))
    }

    /// Run kubectl with `input` on stdin (e.g. `apply -f -`); returns its raw output.
    pub fn kubectl_stdin<I, S>(&self, args: I, input: &str) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.kubectl_command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("envtest: running {}: {e}", self.kubectl.display()));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .expect("envtest: writing kubectl's stdin");
        }
        child
            .wait_with_output()
            .expect("envtest: waiting for kubectl")
    }

    /// `kubectl apply --server-side` of `yaml`; fails the test unless it succeeds.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl_stdin(["apply", "--server-side", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run kubectl, fail the test unless it succeeds, return its stdout.
    pub fn kubectl_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.kubectl(&args);
        assert!(
            out.status.success(),
            "kubectl {:?} failed ({}):\n{}{}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Apply every CRD manifest in `dir` (`kubectl apply -f dir`), wait until
    /// each is Established, then until discovery serves each served version's
    /// plural (as envtest does), so the next request for it cannot 404.
    pub fn install_crds(&self, dir: impl AsRef<Path>) {
        let dir = dir.as_ref();
        let applied = self.kubectl_ok([
            OsStr::new("apply"),
            OsStr::new("--server-side"),
            OsStr::new("--force-conflicts"),
            OsStr::new("-o"),
            OsStr::new("name"),
            OsStr::new("-f"),
            dir.as_os_str(),
        ]);
        let crds: Vec<&str> = applied
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("customresourcedefinition.apiextensions.k8s.io/"))
            .collect();
        assert!(
            !crds.is_empty(),
            "envtest: {} contains no CustomResourceDefinition (kubectl printed {applied:?})",
            dir.display()
        );
        for crd in &crds {
            self.wait_crd_established(crd);
            let json = self.kubectl_ok(["get", "customresourcedefinition", crd, "-o", "json"]);
            let obj: serde_json::Value =
                serde_json::from_str(&json).expect("envtest: CRD JSON from kubectl");
            let group = obj["spec"]["group"]
                .as_str()
                .expect("envtest: CRD spec.group");
            let plural = obj["spec"]["names"]["plural"]
                .as_str()
                .expect("envtest: CRD spec.names.plural");
            let versions = obj["spec"]["versions"]
                .as_array()
                .expect("envtest: CRD spec.versions");
            for v in versions
                .iter()
                .filter(|v| v["served"].as_bool() == Some(true))
            {
                let version = v["name"].as_str().expect("envtest: CRD version name");
                self.wait_discovery(group, version, plural);
            }
        }
    }

    /// Waits (up to 30 s) until the CRD `name` is Established. (`kubectl wait
    /// --for=condition=Established` right after an apply can fail instead of waiting: the
    /// new CRD has no conditions yet.)
    pub fn wait_crd_established(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // A go-template, not a jsonpath filter: both kubectl wait and jsonpath filters fail
        // on the absent conditions of a CRD created a moment ago.
        let template = r#"go-template={{range .status.conditions}}{{if eq .type "Established"}}{{.status}}{{end}}{{end}}"#;
        loop {
            let out = self.kubectl(["get", "customresourcedefinition", name, "-o", template]);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "True" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "envtest: CRD {name} not Established after 30 s: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_discovery(&self, group: &str, version: &str, plural: &str) {
        let path = format!("/apis/{group}/{version}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.kubectl(["get", "--raw", &path]);
            if out.status.success() {
                if let Ok(list) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                    let found = list["resources"]
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|r| r["name"].as_str() == Some(plural)));
                    if found {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "envtest: {plural}.{group}/{version} not in discovery after 10 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `e2e-<test name>-<n><random>`, a valid DNS-1123 label unique across runs.
fn namespace_name() -> String {
    let test = std::thread::current()
        .name()
        .map(|n| n.rsplit("::").next().unwrap_or(n).to_string())
        .unwrap_or_default();
    let mut stem: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    stem.truncate(40);
    let stem = stem.trim_matches('-');
    let n = NAMESPACE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ std::process::id())
        .unwrap_or(0)
        % 0x10000;
    if stem.is_empty() {
        format!("e2e-{n}-{salt:04x}")
    } else {
        format!("e2e-{stem}-{n}-{salt:04x}")
    }
}
