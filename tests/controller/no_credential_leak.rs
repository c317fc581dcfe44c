//! No credential ever reaches logs, reports, events, status or metrics.
//!
//! The operator and `check` run with real Google credential handling: a service-account
//! key file (`GOOGLE_APPLICATION_CREDENTIALS`) whose private key, key id and client id are
//! recognizable canaries, and whose `token_uri` is a local token endpoint answering a
//! recognizable access token. `--google-credentials` makes them use it against the
//! emulator endpoint (as against a Private Service Connect endpoint). A proxy in front of
//! the emulator proves the canary token was really sent; then every output is searched for
//! every canary: stdout and stderr at `RUST_LOG=trace` (text and JSON logs), the check
//! report in each format, `/metrics`, `/healthz`, `/readyz`, the bindings' status and the
//! events — with both a successful remediation and a permission error in the run.

use crate::support::envtest;
use crate::support::reliability;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::kube::{bindings_json, ready_json};
use crate::support::process::{Operator, BINARY as BIN};
use crate::support::proxy::{LogDir, TagProxy};
use crate::support::wait::eventually;
use axum::body::Bytes;
use cloudrun_emulator::Faults;
use reliability::bindings_yaml;
use serde_json::json;

/// Secrets of one run, each recognizable wherever it lands.
struct Canaries {
    token: String,
    key_id: String,
    client_id: String,
    /// A slice of the private key's base64 body.
    key_fragment: String,
    key_file: PathBuf,
    /// The signed JWT assertions the token endpoint received.
    assertions: Arc<Mutex<Vec<String>>>,
    token_requests: Arc<Mutex<usize>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Canaries {
    async fn new(dir: &Path) -> Self {
        let salt = format!("{:08x}", std::process::id() ^ 0x5eed_c0de);
        let token = format!("ya29.CANARY-ACCESS-TOKEN-{salt}");
        let key_id = format!("canarykeyid{salt}");
        let client_id = format!("918273645{salt}");
        let pem = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .stderr(Stdio::null())
            .output()
            .expect("openssl generates a key");
        assert!(pem.status.success());
        let pem = String::from_utf8(pem.stdout).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let key_fragment = body[400..448].to_owned();

        let assertions: Arc<Mutex<Vec<String>>> = Arc::default();
        let token_requests: Arc<Mutex<usize>> = Arc::default();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post({
                let assertions = Arc::clone(&assertions);
                let token_requests = Arc::clone(&token_requests);
                let token = token.clone();
                move |body: Bytes| {
                    let assertions = Arc::clone(&assertions);
                    let token_requests = Arc::clone(&token_requests);
                    let token = token.clone();
                    async move {
                        *token_requests.lock().unwrap() += 1;
                        let form: Vec<(String, String)> =
                            form_urlencoded::parse(&body).into_owned().collect();
                        if let Some((_, jwt)) = form.iter().find(|(k, _)| k == "assertion") {
                            assertions.lock().unwrap().push(jwt.clone());
                        }
                        axum::Json(json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}))
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let key_file = dir.join("canary-service-account.json");
        std::fs::write(
            &key_file,
            serde_json::to_string_pretty(&json!({
                "type": "service_account",
                "project_id": "canary-project",
                "private_key_id": key_id,
                "private_key": pem,
                "client_email": "canary-operator@canary-project.iam.gserviceaccount.com",
                "client_id": client_id,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": format!("http://{addr}/token"),
            }))
            .unwrap(),
        )
        .unwrap();
        Self {
            token,
            key_id,
            client_id,
            key_fragment,
            key_file,
            assertions,
            token_requests,
            _server: server,
        }
    }

    /// Every secret string that must never appear in an output.
    fn secrets(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("access token".into(), self.token.clone()),
            (
                "access token (without prefix)".into(),
                self.token["ya29.".len()..].to_owned(),
            ),
            ("private key id".into(), self.key_id.clone()),
            ("client id".into(), self.client_id.clone()),
            ("private key".into(), self.key_fragment.clone()),
            ("private key marker".into(), "PRIVATE KEY".into()),
        ];
        for jwt in self.assertions.lock().unwrap().iter() {
            out.push(("signed JWT assertion".into(), jwt.clone()));
            if let Some(signature) = jwt.rsplit('.').next() {
                out.push((
                    "JWT signature".into(),
                    signature[..signature.len().min(40)].to_owned(),
                ));
            }
        }
        out
    }

    /// Fails the test naming each secret found in each output.
    fn assert_absent(&self, outputs: &[(String, String)]) {
        let mut found = Vec::new();
        for (what, text) in outputs {
            for (secret, value) in self.secrets() {
                if text.contains(&value) {
                    let at = text.find(&value).unwrap_or(0);
                    let context =
                        &text[at.saturating_sub(120)..(at + value.len() + 40).min(text.len())];
                    found.push(format!("{secret} in {what}: …{context}…"));
                }
            }
        }
        assert!(
            found.is_empty(),
            "credentials leaked:\n{}",
            found.join("\n")
        );
    }
}

fn emulator_faults() -> Faults {
    // The second project refuses everything (Google's answer for a project that does not
    // exist or cannot be seen): errors travel through every output too.
    Faults {
        forbidden: vec!["gen-project-2".into()],
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_never_prints_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let canaries = Canaries::new(dir.path()).await;
    let handle = reliability::faulty_estate(30, 0.3, emulator_faults()).await;
    let proxy = TagProxy::start(&handle.url(), "check").await;
    let bindings = dir.path().join("bindings.yaml");
    std::fs::write(&bindings, bindings_yaml("platform", "10m")).unwrap();

    let mut outputs = Vec::new();
    for (format, fix) in [
        ("table", false),
        ("json", false),
        ("yaml", true),
        ("json", true),
    ] {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(["check", "-o", format, "--wide", "-f"])
            .arg(&bindings)
            .args(["--cloud-run-endpoint", &proxy.url(), "--google-credentials"])
            .env("GOOGLE_APPLICATION_CREDENTIALS", &canaries.key_file)
            .env("HOME", dir.path())
            .env("RUST_LOG", "trace")
            .env_remove("CLOUD_RUN_EMULATOR_HOST")
            .kill_on_drop(true);
        if fix {
            cmd.arg("--fix");
        }
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("check hung")
            .expect("check runs");
        // Exit 1: the forbidden project is an error; the report is printed all the same.
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            stdout.contains("PermissionDenied") || stdout.contains("permission"),
            "{stdout}"
        );
        outputs.push((format!("check -o {format} fix={fix} stdout"), stdout));
        outputs.push((
            format!("check -o {format} fix={fix} stderr (RUST_LOG=trace)"),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    // The canary really was the credential used.
    assert!(*canaries.token_requests.lock().unwrap() >= 1);
    assert!(
        proxy
            .authorizations
            .lock()
            .unwrap()
            .contains(&format!("Bearer {}", canaries.token)),
        "the canary token was not sent: {:?}",
        proxy.authorizations.lock().unwrap()
    );
    assert!(
        reliability::drifted(&handle) > 0,
        "the forbidden project keeps its drift"
    );
    canaries.assert_absent(&outputs);
    reliability::write_figures(
        "no-credential-leak-check",
        &json!({
            "runs": 4,
            "bytesSearched": outputs.iter().map(|(_, t)| t.len()).sum::<usize>(),
            "secretsSearched": canaries.secrets().len(),
            "tokenRequests": *canaries.token_requests.lock().unwrap(),
        }),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_never_exposes_a_credential() {
    let cp = envtest::control_plane().await;
    cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    let ns = cp.fresh_namespace().await;
    let dir = tempfile::tempdir().unwrap();
    let canaries = Canaries::new(dir.path()).await;
    let handle = reliability::faulty_estate(30, 0.3, emulator_faults()).await;
    let proxy = TagProxy::start(&handle.url(), "controller").await;
    let logs = LogDir::new(&ns);

    let mut outputs = Vec::new();
    for format in ["json", "text"] {
        let mut opts = reliability::operator_config(
            cp.kubeconfig().expect("a kubeconfig"),
            &ns,
            &proxy.url(),
            logs.path(),
        );
        opts.identity = format!("op-{format}");
        opts.args = vec![
            "--google-credentials".into(),
            "--log-format".into(),
            format.into(),
        ];
        opts.env = vec![
            (
                "GOOGLE_APPLICATION_CREDENTIALS".into(),
                canaries.key_file.display().to_string(),
            ),
            ("HOME".into(), dir.path().display().to_string()),
            ("RUST_LOG".into(), "trace".into()),
        ];
        let mut operator = Operator::spawn(&opts);
        operator.wait_ready(Duration::from_secs(90)).await;
        if format == "json" {
            apply_bindings(cp, &ns);
        } else {
            // A fresh drift for the second replica to fix.
            let users = reliability::Users::new(&handle);
            let name = reliability::estate(&handle)
                .into_keys()
                .find(|n| n.contains("gen-project-1"))
                .expect("a resource");
            users.drift(&name).await;
            cp.apply(&bindings_yaml(&ns, "45s"));
        }
        eventually(
            "both bindings reconciled",
            Duration::from_secs(90),
            || async {
                let list = bindings_json(cp, &ns);
                let reasons: Vec<_> = list.iter().map(|b| ready_json(b).1).collect();
                reasons.len() == 2
                    && reasons.contains(&"ProjectNotFoundOrForbidden".to_owned())
                    && reasons.contains(&"Compliant".to_owned())
                    && list
                        .iter()
                        .all(|b| b["status"]["observedGeneration"] == b["metadata"]["generation"])
            },
        )
        .await;
        for path in ["/metrics", "/healthz", "/readyz"] {
            let (_, body) = operator.get(path).await.unwrap_or_default();
            outputs.push((format!("{path} ({format})"), body));
        }
        operator.terminate();
        outputs.push((
            format!("controller logs, --log-format {format}, RUST_LOG=trace"),
            operator.logs(),
        ));
    }
    outputs.push((
        "bindings (status)".into(),
        cp.kubectl_ok(["get", "binauthzbindings", "-n", &ns, "-o", "yaml"]),
    ));
    outputs.push((
        "events.events.k8s.io".into(),
        cp.kubectl_ok(["get", "events.events.k8s.io", "-n", &ns, "-o", "yaml"]),
    ));
    outputs.push((
        "core events".into(),
        cp.kubectl_ok(["get", "events", "-n", &ns, "-o", "yaml"]),
    ));
    let events = &outputs[outputs.len() - 2].1;
    assert!(
        events.contains("ProjectNotFoundOrForbidden"),
        "no ProjectNotFoundOrForbidden event"
    );
    assert!(events.contains("Remediated"), "no Remediated event");
    assert!(
        proxy
            .authorizations
            .lock()
            .unwrap()
            .contains(&format!("Bearer {}", canaries.token)),
        "the canary token was not sent: {:?}",
        proxy.authorizations.lock().unwrap()
    );
    canaries.assert_absent(&outputs);
    reliability::write_figures(
        "no-credential-leak-controller",
        &json!({
            "outputs": outputs.iter().map(|(w, t)| json!({"output": w, "bytes": t.len()})).collect::<Vec<_>>(),
            "secretsSearched": canaries.secrets().len(),
            "tokenRequests": *canaries.token_requests.lock().unwrap(),
        }),
    );
}

fn apply_bindings(cp: &envtest::ControlPlane, ns: &str) {
    cp.apply(&bindings_yaml(ns, "30s"));
}

/// The search itself finds a secret that did leak.
#[tokio::test]
#[should_panic(expected = "access token in planted")]
async fn the_search_finds_a_planted_token() {
    let dir = tempfile::tempdir().unwrap();
    let canaries = Canaries::new(dir.path()).await;
    let planted = format!(
        "level=DEBUG msg=\"sending\" authorization=\"Bearer {}\"",
        canaries.token
    );
    canaries.assert_absent(&[("planted".into(), planted)]);
}
