//! `kubectl binauthz` end to end: the built binary run under the name `kubectl-binauthz`
//! (a symlink in a temporary directory, also found by the real kubectl on PATH) against a
//! real kube-apiserver, with the controller and the Cloud Run emulator as subprocesses
//! where a command needs them. Also the krew manifest template.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use binauthz_operator::api::BinAuthzBinding;
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};

use crate::support::envtest::{self, ControlPlane};
use crate::support::kube::{binding, kubeconfig_as, operator_cluster};
use crate::support::process::{Emulator, Operator, OperatorConfig, BINARY};
use crate::support::repo;
use crate::support::wait::eventually;

const SEED: &str = "examples/cloudrun-seed.yaml";
const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";
const PATIENCE: Duration = Duration::from_secs(90);
/// The plugin's environment variables, removed so the caller's cannot leak in.
const PLUGIN_ENV: [&str; 8] = [
    "BINAUTHZ_KUBECTL_CONTEXT",
    "BINAUTHZ_KUBECTL_NAMESPACE",
    "BINAUTHZ_KUBECTL_ALL_NAMESPACES",
    "BINAUTHZ_KUBECTL_OUTPUT",
    "BINAUTHZ_KUBECTL_LABELS",
    "BINAUTHZ_KUBECTL_LIVE",
    "BINAUTHZ_KUBECTL_WAIT",
    "BINAUTHZ_KUBECTL_TIMEOUT",
];

/// A directory holding `kubectl-binauthz`, a symlink to the built binary: how a person
/// installs the plugin.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::os::unix::fs::symlink(BINARY, dir.path().join("kubectl-binauthz"))
            .expect("symlink kubectl-binauthz");
        dir
    })
    .path()
}

/// `kubectl-binauthz ARGS` with `KUBECONFIG=kubeconfig`.
fn plugin(kubeconfig: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(plugin_dir().join("kubectl-binauthz"));
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("CLOUD_RUN_EMULATOR_HOST")
        .stdin(Stdio::null());
    for var in PLUGIN_ENV {
        command.env_remove(var);
    }
    command.output().expect("running kubectl-binauthz")
}

/// Stdout of a run that must succeed.
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one line of a run that must fail: exit 1, nothing on stdout, one `error: ` line on
/// stderr, no panic, no debug dump.
fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    for dump in ["panicked", "Error {", "Status {", "RUST_BACKTRACE"] {
        assert!(!line.contains(dump), "{line}");
    }
    line.to_owned()
}

/// The shared control plane with deploy/ (CRD, RBAC) and deploy/tenancy/ (the viewer and
/// editor roles people are granted) applied, and the operator's kubeconfig.
async fn cluster() -> Option<(&'static ControlPlane, &'static Path)> {
    static TENANCY: OnceLock<()> = OnceLock::new();
    let (cp, kubeconfig) = operator_cluster().await?;
    TENANCY.get_or_init(|| {
        let tenancy = repo().join("deploy/tenancy");
        cp.kubectl_ok(["apply".as_ref(), "-k".as_ref(), tenancy.as_os_str()]);
    });
    Some((cp, kubeconfig))
}

/// The admin kubeconfig as a file (also with USE_EXISTING_CLUSTER).
fn admin_kubeconfig(cp: &ControlPlane) -> &'static Path {
    static ADMIN: OnceLock<tempfile::TempPath> = OnceLock::new();
    ADMIN.get_or_init(|| {
        let text = kubeconfig_text(cp);
        let file = tempfile::NamedTempFile::new().expect("temporary kubeconfig");
        std::fs::write(file.path(), text).expect("writing the kubeconfig");
        file.into_temp_path()
    })
}

fn kubeconfig_text(cp: &ControlPlane) -> String {
    match cp.kubeconfig() {
        Some(path) => std::fs::read_to_string(path).expect("admin kubeconfig readable"),
        None => cp.kubectl_ok(["config", "view", "--raw", "--minify"]),
    }
}

/// A us-central1 services binding of acme-prod.
fn services(names: Value, policy: Value, extra: Value) -> Value {
    let mut spec = json!({
        "project": "acme-prod",
        "locations": ["us-central1"],
        "targets": { "services": { "names": names } },
        "policy": policy,
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

async fn create(api: &Api<BinAuthzBinding>, name: &str, spec: Value) {
    api.create(&PostParams::default(), &binding(name, spec))
        .await
        .unwrap_or_else(|e| panic!("creating binding {name}: {e}"));
}

/// Waits until the binding describes its current generation with Ready's `reason`.
async fn wait_reason(api: &Api<BinAuthzBinding>, name: &str, reason: &str) -> BinAuthzBinding {
    eventually(
        &format!("binding {name} reports {reason}"),
        PATIENCE,
        || async {
            let b = api.get(name).await.map_err(|e| e.to_string())?;
            let status = b.status.as_ref();
            let current = status.and_then(|s| s.observed_generation) == b.metadata.generation;
            // A suspended binding has no Ready condition; Reconciling then says why.
            let condition =
                |t: &str| status.and_then(|s| s.conditions.iter().find(|c| c.type_ == t));
            match condition("Ready").or_else(|| condition("Reconciling")) {
                Some(c) if current && c.reason == reason => Ok(b),
                _ => Err(format!("{:?}", b.status)),
            }
        },
    )
    .await
}

/// A namespace with a controller watching it and an emulator behind.
struct Scenario {
    cp: &'static ControlPlane,
    ns: String,
    api: Api<BinAuthzBinding>,
    admin: &'static Path,
    emulator: Emulator,
    operator: Operator,
}

async fn scenario() -> Option<Scenario> {
    let (cp, kubeconfig) = cluster().await?;
    let ns = cp.fresh_namespace().await;
    let api = Api::namespaced(cp.client().await, &ns);
    let emulator = Emulator::start(SEED);
    let config = OperatorConfig::new(kubeconfig, emulator.url())
        .namespace(&ns)
        .identity(&format!("operator-{ns}"));
    let operator = Operator::start(&config).await;
    Some(Scenario {
        cp,
        ns,
        api,
        admin: admin_kubeconfig(cp),
        emulator,
        operator,
    })
}

#[tokio::test]
async fn status_summarises_every_binding_with_a_total() {
    let Some(s) = scenario().await else {
        return;
    };
    let strict = json!({ "name": STRICT });
    let default = json!({ "useDefault": true });
    create(
        &s.api,
        "payments",
        services(json!(["checkout", "payments-api"]), strict, json!({})),
    )
    .await;
    create(
        &s.api,
        "audit-search",
        services(
            json!(["search-frontend"]),
            default.clone(),
            json!({"mode": "Audit"}),
        ),
    )
    .await;
    create(
        &s.api,
        "paused",
        services(json!(["cart"]), default, json!({"suspend": true})),
    )
    .await;
    wait_reason(&s.api, "payments", "Compliant").await;
    wait_reason(&s.api, "audit-search", "Drifted").await;
    wait_reason(&s.api, "paused", "Suspended").await;

    let table = ok(&plugin(s.admin, &["status", "-n", &s.ns]));
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert_eq!(
        &lines[0][..8],
        [
            "NAMESPACE",
            "NAME",
            "PROJECT",
            "MODE",
            "READY",
            "REASON",
            "MATCHED",
            "COMPLIANT"
        ],
        "{table}"
    );
    let ns = s.ns.as_str();
    // NAMESPACE NAME PROJECT MODE READY REASON, then matched compliant remediated drifted
    // breakglass superseded conflicted failed blocked, not effective, then the last pass.
    assert_eq!(
        &lines[1][..15],
        [
            ns,
            "audit-search",
            "acme-prod",
            "Audit",
            "False",
            "Drifted",
            "1",
            "0",
            "0",
            "1",
            "0",
            "0",
            "0",
            "0",
            "0"
        ],
        "{table}"
    );
    assert_eq!(
        &lines[2][..15],
        [
            ns,
            "paused",
            "acme-prod",
            "Suspended",
            "-",
            "Suspended",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0"
        ],
        "{table}"
    );
    assert_eq!(
        &lines[3][..15],
        [
            ns,
            "payments",
            "acme-prod",
            "Enforce",
            "True",
            "Compliant",
            "2",
            "2",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            "0"
        ],
        "{table}"
    );
    assert!(
        lines[3][16].ends_with('s') || lines[3][16].ends_with('m'),
        "{table}"
    );
    assert_eq!(
        lines[4],
        ["TOTAL", "3", "bindings", "1/3", "3", "2", "0", "1", "0", "0", "0", "0", "0", "0"],
        "{table}"
    );

    let json: Value = serde_json::from_str(&ok(&plugin(
        s.admin,
        &["status", "-n", &s.ns, "-o", "json"],
    )))
    .expect("status -o json is JSON");
    assert_eq!(json["total"]["bindings"], 3, "{json}");
    assert_eq!(json["total"]["ready"], 1, "{json}");
    assert_eq!(json["total"]["summary"]["matched"], 3, "{json}");
    let payments = &json["bindings"][2];
    assert_eq!(payments["name"], "payments");
    assert_eq!(payments["mode"], "Enforce");
    assert_eq!(payments["ready"], "True");
    assert_eq!(payments["upToDate"], true);
    assert_eq!(payments["summary"]["compliant"], 2);
    assert!(payments["lastSyncTime"].is_string(), "{payments}");
    let yaml: Value = serde_yaml_ng::from_str(&ok(&plugin(
        s.admin,
        &["status", "-n", &s.ns, "-o", "yaml"],
    )))
    .expect("status -o yaml is YAML");
    assert_eq!(yaml, json);

    // The same through kubectl itself, which finds the plugin on PATH.
    let path = format!(
        "{}:{}",
        plugin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let through_kubectl = Command::new(s.cp.kubectl_path())
        .args(["binauthz", "status", "-n", &s.ns, "-o", "json"])
        .env("PATH", path)
        .env("KUBECONFIG", s.admin)
        .output()
        .expect("running kubectl binauthz");
    let via: Value = serde_json::from_str(&ok(&through_kubectl)).expect("JSON through kubectl");
    assert_eq!(via["total"], json["total"]);

    // `binauthz-operator kubectl ...` is the same command.
    let direct = Command::new(BINARY)
        .args(["kubectl", "status", "-n", &s.ns, "-o", "json"])
        .env("KUBECONFIG", s.admin)
        .output()
        .expect("running binauthz-operator kubectl");
    let direct: Value = serde_json::from_str(&ok(&direct)).expect("JSON");
    assert_eq!(direct["total"], json["total"]);
    drop(s.operator);
}

#[tokio::test]
async fn why_names_the_owner_by_priority_a_conflict_and_an_exclude() {
    let Some((cp, _)) = cluster().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let api: Api<BinAuthzBinding> = Api::namespaced(cp.client().await, &ns);
    let admin = admin_kubeconfig(cp);
    let default = json!({ "useDefault": true });
    let strict = json!({ "name": STRICT });
    create(
        &api,
        "owner",
        services(json!(["check*"]), default.clone(), json!({"priority": 10})),
    )
    .await;
    create(
        &api,
        "all",
        services(json!(["*"]), strict.clone(), json!({})),
    )
    .await;
    create(
        &api,
        "all-but-checkout",
        services(
            json!(["*"]),
            strict,
            json!({"targets": {"services": {"names": ["*"], "exclude": ["checkout"]}}}),
        ),
    )
    .await;
    create(
        &api,
        "cart-default",
        services(json!(["cart"]), default, json!({})),
    )
    .await;
    create(&api, "jobs-only", json!({"project": "acme-prod", "locations": ["us-central1"], "targets": {"jobs": {"names": ["*"]}}, "policy": {"useDefault": true}})).await;
    create(&api, "staging", json!({"project": "acme-staging", "locations": ["us-central1"], "targets": {"services": {"names": ["*"]}}, "policy": {"useDefault": true}})).await;

    let checkout = "projects/acme-prod/locations/us-central1/services/checkout";
    let text = ok(&plugin(admin, &["why", checkout, "-n", &ns]));
    let row = |name: &str| -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{ns}/{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .to_owned()
    };
    assert!(
        text.starts_with("Service us-central1/checkout (project acme-prod)\n"),
        "{text}"
    );
    assert!(text.contains(&format!("Bindings of project acme-prod (namespace {ns}; 1 other binding covers another project):")), "{text}");
    assert!(
        row("owner").contains("yes: names \"check*\"") && row("owner").contains("owner"),
        "{text}"
    );
    assert!(
        row("all").contains(&format!("superseded by {ns}/owner (priority 10)")),
        "{text}"
    );
    assert!(
        row("all-but-checkout").contains("no: excluded by \"checkout\""),
        "{text}"
    );
    assert!(
        row("cart-default").contains("no: name not in names"),
        "{text}"
    );
    assert!(row("jobs-only").contains("no: kind not targeted"), "{text}");
    assert!(
        text.contains(&format!(
            "Owner: {ns}/owner, priority 10, the highest of 2 matching bindings (1 superseded)"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("Operator: if it does not carry default (not read here), sets policy default for {ns}/owner (Enforce)")), "{text}");

    let json: Value = serde_json::from_str(&ok(&plugin(
        admin,
        &["why", checkout, "-n", &ns, "-o", "json"],
    )))
    .expect("why -o json");
    assert_eq!(
        json["ownership"],
        json!({"result": "owned", "owners": [format!("{ns}/owner")], "priority": 10, "superseded": 1})
    );
    assert_eq!(json["action"]["result"], "write");
    assert_eq!(json["action"]["onlyIfDrifted"], true);
    assert_eq!(json["otherProjects"], 1);
    assert_eq!(json["bindings"].as_array().map(Vec::len), Some(5), "{json}");

    // cart: `all` and `all-but-checkout` (strict) against `cart-default` (default), all at
    // priority 0: a conflict, nobody writes it.
    let cart = "projects/acme-prod/locations/us-central1/services/cart";
    let json: Value =
        serde_json::from_str(&ok(&plugin(admin, &["why", cart, "-n", &ns, "-o", "json"])))
            .expect("why -o json");
    assert_eq!(
        json["ownership"],
        json!({"result": "conflicted", "bindings": [format!("{ns}/all"), format!("{ns}/all-but-checkout"), format!("{ns}/cart-default")], "priority": 0})
    );
    assert_eq!(json["action"], json!({"result": "leftUntouched"}));
    let text = ok(&plugin(admin, &["why", cart, "-n", &ns]));
    assert!(text.contains("Owner: none: conflict:"), "{text}");
    assert!(
        text.contains(&format!("conflicted with {ns}/cart-default")),
        "{text}"
    );

    // --live reads the resource: checkout carries strict, its owner wants the default.
    let emulator = Emulator::start(SEED);
    let live = ok(&plugin(
        admin,
        &[
            "why",
            checkout,
            "-n",
            &ns,
            "--live",
            "--cloud-run-endpoint",
            emulator.url(),
        ],
    ));
    assert!(
        live.contains("labels: env=prod,team=payments,tier=critical (read from Cloud Run)"),
        "{live}"
    );
    assert!(live.contains(&format!("policy: {STRICT}")), "{live}");
    assert!(
        live.contains(&format!(
            "Operator: sets policy default for {ns}/owner (Enforce)"
        )),
        "{live}"
    );
    let requests = emulator.requests().await;
    assert_eq!(
        requests.len(),
        1,
        "--live reads one resource: {requests:#?}"
    );
    let missing = one_line_error(&plugin(
        admin,
        &[
            "why",
            "projects/acme-prod/locations/us-central1/services/nope",
            "-n",
            &ns,
            "--live",
            "--cloud-run-endpoint",
            emulator.url(),
        ],
    ));
    assert!(missing.contains("cannot read projects/acme-prod/locations/us-central1/services/nope from Cloud Run (--live): it does not exist"), "{missing}");

    // A resource name in another shape: one line naming the argument and the form.
    let bad = one_line_error(&plugin(admin, &["why", "checkout", "-n", &ns]));
    assert_eq!(
        bad,
        "error: RESOURCE \"checkout\" is not a Cloud Run resource name: expected projects/PROJECT/locations/LOCATION/{services|jobs|workerPools}/NAME"
    );
}

#[tokio::test]
async fn reconcile_wait_returns_once_the_controller_echoes_the_request() {
    let Some(s) = scenario().await else {
        return;
    };
    create(
        &s.api,
        "web",
        services(json!(["cart"]), json!({"useDefault": true}), json!({})),
    )
    .await;
    wait_reason(&s.api, "web", "Compliant").await;

    let out = ok(&plugin(
        s.admin,
        &[
            "reconcile",
            "web",
            "-n",
            &s.ns,
            "--wait",
            "--timeout",
            "90s",
        ],
    ));
    assert!(
        out.starts_with(&format!("binding {}/web: reconciled in ", s.ns)),
        "{out}"
    );
    assert!(out.contains("Ready=True (Compliant)"), "{out}");
    let b = s.api.get("web").await.expect("binding");
    let asked = b
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("binauthz.dev/reconcile-requested-at"))
        .cloned();
    let echoed = b
        .status
        .as_ref()
        .and_then(|st| st.last_handled_reconcile_at.clone());
    assert!(asked.is_some(), "{:?}", b.metadata.annotations);
    assert_eq!(echoed, asked);
    let managers: Vec<String> = b
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "kubectl-binauthz"),
        "{managers:?}"
    );

    // Without --wait it only asks; a second request is a new value.
    let out = ok(&plugin(s.admin, &["reconcile", "web", "-n", &s.ns]));
    assert!(
        out.starts_with(&format!(
            "binding {}/web: reconcile requested (binauthz.dev/reconcile-requested-at=",
            s.ns
        )),
        "{out}"
    );
    let again = s.api.get("web").await.expect("binding");
    let asked_again = again
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("binauthz.dev/reconcile-requested-at"))
        .cloned();
    assert_ne!(asked_again, asked);

    // No controller watches this namespace: --wait gives up after --timeout, in one line.
    let quiet = s.cp.fresh_namespace().await;
    let quiet_api: Api<BinAuthzBinding> = Api::namespaced(s.cp.client().await, &quiet);
    create(
        &quiet_api,
        "orphan",
        services(json!(["cart"]), json!({"useDefault": true}), json!({})),
    )
    .await;
    let started = Instant::now();
    let line = one_line_error(&plugin(
        s.admin,
        &[
            "reconcile",
            "orphan",
            "-n",
            &quiet,
            "--wait",
            "--timeout",
            "2s",
        ],
    ));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        line,
        format!("error: binding orphan in namespace {quiet}: the controller did not handle the reconcile request within 2s; is the operator running and watching this namespace? (its logs: kubectl -n binauthz-system logs deploy/binauthz-operator)")
    );
    drop(s.operator);
}

/// The binding's spec exactly as the API server returns it.
fn raw_spec(cp: &ControlPlane, ns: &str, name: &str) -> String {
    cp.kubectl_ok([
        "get",
        "binauthzbinding",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.spec}",
    ])
}

#[tokio::test]
async fn suspend_and_resume_change_spec_suspend_and_nothing_else() {
    let Some(s) = scenario().await else {
        return;
    };
    let mut web = binding(
        "web",
        services(
            json!(["cart", "inventory"]),
            json!({"name": STRICT}),
            json!({"mode": "Audit", "interval": "45s", "priority": 7}),
        ),
    );
    web.metadata.labels = Some([("team".to_owned(), "web".to_owned())].into());
    web.metadata.annotations =
        Some([("acme.dev/owner".to_owned(), "web-oncall".to_owned())].into());
    s.api
        .create(&PostParams::default(), &web)
        .await
        .expect("creating web");
    wait_reason(&s.api, "web", "Drifted").await;
    let spec_before = raw_spec(s.cp, &s.ns, "web");
    let before: Value = serde_json::from_str(&spec_before).expect("spec JSON");
    assert_eq!(
        before["suspend"], false,
        "the CRD defaults suspend: {spec_before}"
    );
    let meta_before = s.api.get("web").await.expect("web").metadata;

    let out = ok(&plugin(s.admin, &["suspend", "web", "-n", &s.ns]));
    assert_eq!(out, format!("binding {}/web suspended (spec.suspend=true): no Cloud Run calls until `kubectl binauthz resume`\n", s.ns));
    let suspended: Value = serde_json::from_str(&raw_spec(s.cp, &s.ns, "web")).expect("spec JSON");
    let mut expected = before.clone();
    expected["suspend"] = json!(true);
    assert_eq!(suspended, expected, "only spec.suspend changes");
    wait_reason(&s.api, "web", "Suspended").await;
    let status = ok(&plugin(s.admin, &["status", "-n", &s.ns]));
    assert!(
        status
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains(" Suspended ")),
        "{status}"
    );
    let again = ok(&plugin(s.admin, &["suspend", "web", "-n", &s.ns]));
    assert_eq!(
        again,
        format!("binding {}/web: already suspended; nothing changed\n", s.ns)
    );

    let out = ok(&plugin(s.admin, &["resume", "web", "-n", &s.ns]));
    assert_eq!(
        out,
        format!(
            "binding {}/web resumed (spec.suspend=false): its next pass starts now\n",
            s.ns
        )
    );
    assert_eq!(
        raw_spec(s.cp, &s.ns, "web"),
        spec_before,
        "the spec is byte-identical again"
    );
    let meta_after = s.api.get("web").await.expect("web").metadata;
    assert_eq!(meta_after.labels, meta_before.labels);
    assert_eq!(meta_after.annotations, meta_before.annotations);
    wait_reason(&s.api, "web", "Drifted").await;
    assert_eq!(
        ok(&plugin(s.admin, &["resume", "web", "-n", &s.ns])),
        format!("binding {}/web: not suspended; nothing changed\n", s.ns)
    );
    drop(s.operator);
    drop(s.emulator);
}

#[tokio::test]
async fn errors_are_one_line_naming_the_binding_and_what_to_do() {
    let Some((cp, _)) = cluster().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let api: Api<BinAuthzBinding> = Api::namespaced(cp.client().await, &ns);
    let admin = admin_kubeconfig(cp);
    create(
        &api,
        "web",
        services(json!(["cart"]), json!({"useDefault": true}), json!({})),
    )
    .await;

    // A binding that does not exist.
    for command in ["suspend", "resume", "reconcile"] {
        let line = one_line_error(&plugin(admin, &[command, "nope", "-n", &ns]));
        assert_eq!(
            line,
            format!("error: binding nope not found in namespace {ns}: `kubectl binauthz status -n {ns}` lists its bindings (or pass -n NAMESPACE)"),
            "{command}"
        );
    }

    // RBAC: a viewer of this namespace reads but may not patch, and may not list others.
    let viewer = format!("viewer-{ns}");
    cp.kubectl_ok([
        "create",
        "rolebinding",
        "view-bindings",
        "-n",
        &ns,
        "--clusterrole=binauthz-binding-viewer",
        &format!("--user={viewer}"),
    ]);
    let as_viewer = kubeconfig_as(cp, &viewer);
    let table = eventually(
        "the viewer's role binding takes effect",
        PATIENCE,
        || async {
            let out = plugin(&as_viewer, &["status", "-n", &ns]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
                .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
        },
    )
    .await;
    assert!(table.contains(" web "), "{table}");
    let line = one_line_error(&plugin(&as_viewer, &["suspend", "web", "-n", &ns]));
    assert!(
        line.starts_with(&format!(
            "error: forbidden to patch binding web in namespace {ns}: "
        )),
        "{line}"
    );
    assert!(
        line.contains(&format!("User \"{viewer}\" cannot patch")),
        "{line}"
    );
    assert!(line.ends_with(&format!("; ask a cluster admin for the role binauthz-binding-editor (or the built-in edit role) bound in namespace {ns}")), "{line}");
    let line = one_line_error(&plugin(&as_viewer, &["status"]));
    assert!(
        line.starts_with("error: forbidden to list bindings in all namespaces: "),
        "{line}"
    );
    assert!(line.ends_with("ask a cluster admin for the role binauthz-binding-viewer (or the built-in view role) bound cluster-wide, or pass -n NAMESPACE to look at one namespace"), "{line}");
    let line = one_line_error(&plugin(&as_viewer, &["reconcile", "web", "-n", &ns]));
    assert!(
        line.starts_with(&format!(
            "error: forbidden to patch binding web in namespace {ns}: "
        )),
        "{line}"
    );
    // The spec is untouched by the refused patches.
    assert!(!api.get("web").await.expect("web").spec.suspend);

    // No cluster: an API server that does not answer, a kubeconfig that does not exist.
    let mut dead: Value = serde_yaml_ng::from_str(&kubeconfig_text(cp)).expect("kubeconfig YAML");
    for c in dead["clusters"].as_array_mut().expect("clusters") {
        c["cluster"]["server"] = json!("https://127.0.0.1:1");
    }
    let dead_file = tempfile::NamedTempFile::new().expect("temporary kubeconfig");
    std::fs::write(
        dead_file.path(),
        serde_yaml_ng::to_string(&dead).expect("YAML"),
    )
    .expect("writing");
    let line = one_line_error(&plugin(dead_file.path(), &["status"]));
    assert!(
        line.starts_with("error: cannot reach the Kubernetes API server at https://127.0.0.1:1/: "),
        "{line}"
    );
    assert!(
        line.ends_with("(check --context / KUBECONFIG and that the cluster is up)"),
        "{line}"
    );
    let line = one_line_error(&plugin(
        admin,
        &["status", "--kubeconfig", "/nonexistent/kubeconfig"],
    ));
    assert!(
        line.starts_with("error: cannot load a Kubernetes configuration: "),
        "{line}"
    );
    assert!(line.contains("/nonexistent/kubeconfig"), "{line}");
    let line = one_line_error(&plugin(admin, &["status", "--context", "no-such-context"]));
    assert!(
        line.starts_with(
            "error: cannot load a Kubernetes configuration for context no-such-context: "
        ),
        "{line}"
    );
}

#[tokio::test]
async fn without_the_crd_every_command_says_how_to_install_it() {
    // Its own control plane: the shared one has the CRD.
    let Some(cp) = envtest::own_control_plane_or_skip() else {
        return;
    };
    let Some(kubeconfig) = cp.kubeconfig() else {
        // USE_EXISTING_CLUSTER: a cluster whose CRD this test must not take away.
        return;
    };
    let url = cp.apiserver_url().expect("the control plane's URL");
    let expected = format!(
        "error: the cluster at {url}/ does not serve BinAuthzBindings (the CRD binauthzbindings.binauthz.dev is not installed): install it with `binauthz-operator crd | kubectl apply -f -`, or check --context"
    );
    let why = [
        "why",
        "projects/acme-prod/locations/us-central1/services/cart",
    ];
    for args in [
        &["status"][..],
        &["status", "-n", "default"],
        &why,
        &["suspend", "web", "-n", "default"],
        &["reconcile", "web", "-n", "default", "--wait"],
    ] {
        let line = one_line_error(&plugin(kubeconfig, args));
        assert_eq!(line, expected, "{args:?}");
    }
}

#[test]
fn help_under_both_names_lists_the_same_commands() {
    let help = |program: &Path, args: &[&str]| -> String {
        let out = Command::new(program)
            .args(args)
            .arg("--help")
            .output()
            .expect("--help");
        ok(&out)
    };
    let as_plugin = help(&plugin_dir().join("kubectl-binauthz"), &[]);
    assert!(
        as_plugin.contains("Usage: kubectl binauthz [OPTIONS] <COMMAND>"),
        "{as_plugin}"
    );
    let as_subcommand = help(Path::new(BINARY), &["kubectl"]);
    assert!(
        as_subcommand.contains("Usage: binauthz-operator kubectl [OPTIONS] <COMMAND>"),
        "{as_subcommand}"
    );
    let commands = |text: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| l.trim() != "Commands:")
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            // A command's line is indented by two; its wrapped description by more.
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        commands(&as_plugin),
        ["status", "why", "reconcile", "suspend", "resume", "help"]
    );
    assert_eq!(commands(&as_plugin), commands(&as_subcommand));
}

/// The krew manifest template with its placeholders filled in.
fn rendered_krew_manifest(values: &[(&str, &str)]) -> (String, Value) {
    let template = std::fs::read_to_string(repo().join("deploy/krew/binauthz.yaml"))
        .expect("deploy/krew/binauthz.yaml");
    let mut text = template.clone();
    for (name, value) in values {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    let manifest: Value = serde_yaml_ng::from_str(&text).expect("the rendered manifest is YAML");
    (template, manifest)
}

#[test]
fn the_krew_manifest_template_renders_to_a_plugin_krew_accepts() {
    let sha = |c: char| c.to_string().repeat(64);
    let (a, b, c, d) = (sha('a'), sha('b'), sha('c'), sha('d'));
    let values = [
        ("VERSION", "0.2.0"),
        ("RELEASE_URL", "https://example.com/releases/v0.2.0"),
        ("HOMEPAGE", "https://example.com/binauthz-operator"),
        ("SHA256_LINUX_AMD64", a.as_str()),
        ("SHA256_LINUX_ARM64", b.as_str()),
        ("SHA256_DARWIN_AMD64", c.as_str()),
        ("SHA256_DARWIN_ARM64", d.as_str()),
    ];
    let (template, m) = rendered_krew_manifest(&values);
    // Every placeholder is one of those (and the raw template parses too).
    let placeholders: std::collections::BTreeSet<&str> = template
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split("${").skip(1))
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect();
    let known: std::collections::BTreeSet<&str> = values.iter().map(|(n, _)| *n).collect();
    assert_eq!(placeholders, known);
    serde_yaml_ng::from_str::<Value>(&template).expect("the template itself is YAML");

    // What krew's validation (pkg/index/validation) requires.
    assert_eq!(m["apiVersion"], "krew.googlecode.com/v1alpha2");
    assert_eq!(m["kind"], "Plugin");
    let name = m["metadata"]["name"].as_str().expect("metadata.name");
    assert_eq!(
        name, "binauthz",
        "the plugin name is the file's name and the command's"
    );
    let safe = regex::Regex::new(r"^[\w-]+$").unwrap();
    assert!(safe.is_match(name));
    let version = m["spec"]["version"].as_str().expect("spec.version");
    let semver =
        regex::Regex::new(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$").unwrap();
    assert!(semver.is_match(version), "{version}");
    assert!(!m["spec"]["shortDescription"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    assert!(
        m["spec"]["shortDescription"]
            .as_str()
            .unwrap_or_default()
            .len()
            <= 50,
        "krew-index keeps short descriptions short"
    );
    assert!(m["spec"]["homepage"]
        .as_str()
        .is_some_and(|h| h.starts_with("https://")));
    let platforms = m["spec"]["platforms"].as_array().expect("spec.platforms");
    let sha256 = regex::Regex::new(r"^[a-f0-9]{64}$").unwrap();
    let mut seen = Vec::new();
    for p in platforms {
        let labels = p["selector"]["matchLabels"]
            .as_object()
            .expect("selector.matchLabels");
        assert!(!labels.is_empty());
        assert!(
            labels.keys().all(|k| k == "os" || k == "arch"),
            "{labels:?}"
        );
        let (os, arch) = (
            labels["os"].as_str().unwrap(),
            labels["arch"].as_str().unwrap(),
        );
        seen.push(format!("{os}/{arch}"));
        let uri = p["uri"].as_str().expect("uri");
        assert_eq!(
            uri,
            format!(
                "https://example.com/releases/v0.2.0/binauthz-operator-0.2.0-{os}-{arch}.tar.gz"
            )
        );
        assert!(sha256.is_match(p["sha256"].as_str().expect("sha256")));
        // krew links `bin` onto PATH as kubectl-binauthz; the files rename the binary to
        // that name, which is how it recognises itself as the plugin.
        assert_eq!(p["bin"], "kubectl-binauthz");
        assert_eq!(
            p["files"],
            json!([{"from": "binauthz-operator", "to": "kubectl-binauthz"}])
        );
    }
    seen.sort();
    assert_eq!(
        seen,
        ["darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64"]
    );
    let shas: std::collections::BTreeSet<&str> = platforms
        .iter()
        .filter_map(|p| p["sha256"].as_str())
        .collect();
    assert_eq!(
        shas.len(),
        4,
        "each archive has its own checksum placeholder"
    );
}
