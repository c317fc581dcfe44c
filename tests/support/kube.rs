//! Kubernetes objects and access the tests build: the cluster as the operator sees it
//! (deploy/ applied, a kubeconfig acting as its service account), bindings, and the shared
//! corpus of valid and invalid bindings (`tests/fixtures/bindings/{valid,invalid}`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use binauthz_operator::api::{BinAuthzBinding, Condition};
use serde_json::{json, Value};

use super::envtest::ControlPlane;
use super::{envtest, repo};

/// The operator's service account as deploy/ creates it.
pub const SERVICE_ACCOUNT: &str = "system:serviceaccount:binauthz-system:binauthz-operator";

/// The shared control plane with deploy/ applied (CRD, namespace, service account, RBAC),
/// and a kubeconfig that acts as the operator's service account; `None` when end-to-end
/// tests are opted out.
pub async fn operator_cluster() -> Option<(&'static ControlPlane, &'static Path)> {
    static KUBECONFIG: OnceLock<tempfile::TempPath> = OnceLock::new();
    let cp = envtest::control_plane_or_skip().await?;
    let kubeconfig = KUBECONFIG.get_or_init(|| {
        let deploy = repo().join("deploy");
        cp.kubectl_ok(["apply".as_ref(), "-k".as_ref(), deploy.as_os_str()]);
        cp.install_crds(repo().join("crds"));
        impersonating_kubeconfig(cp)
    });
    Some((cp, kubeconfig))
}

/// `cp` as the operator sees it: deploy/ applied (with every CRD of crds/), and a
/// kubeconfig acting as its service account; for tests with a control plane of their own.
pub fn prepare_operator_cluster(cp: &ControlPlane) -> tempfile::TempPath {
    let deploy = repo().join("deploy");
    cp.kubectl_ok(["apply".as_ref(), "-k".as_ref(), deploy.as_os_str()]);
    cp.install_crds(repo().join("crds"));
    impersonating_kubeconfig(cp)
}

/// A copy of the admin kubeconfig whose user impersonates the operator's service account
/// (`as:`), so the controller gets exactly deploy/'s RBAC.
pub fn impersonating_kubeconfig(cp: &ControlPlane) -> tempfile::TempPath {
    kubeconfig_as(cp, SERVICE_ACCOUNT)
}

/// A copy of the admin kubeconfig whose user impersonates `user` (`as:`): that user's RBAC
/// and nothing more.
pub fn kubeconfig_as(cp: &ControlPlane, user_name: &str) -> tempfile::TempPath {
    let text = match cp.kubeconfig() {
        Some(path) => std::fs::read_to_string(path).expect("admin kubeconfig readable"),
        None => cp.kubectl_ok(["config", "view", "--raw", "--minify"]),
    };
    let mut config: Value = serde_yaml_ng::from_str(&text).expect("kubeconfig YAML");
    for user in config["users"].as_array_mut().expect("kubeconfig users") {
        user["user"]["as"] = json!(user_name);
    }
    let file = tempfile::NamedTempFile::new().expect("temporary kubeconfig");
    std::fs::write(
        file.path(),
        serde_yaml_ng::to_string(&config).expect("YAML"),
    )
    .expect("writing the kubeconfig");
    file.into_temp_path()
}

/// A binding named `name` with exactly this spec, to create through the API server.
pub use binauthz_operator::testing::new_binding as binding;

/// The condition `type_` of a binding's status.
pub fn condition<'a>(binding: &'a BinAuthzBinding, type_: &str) -> Option<&'a Condition> {
    binding
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Every binding of `ns` as kubectl returns it (JSON).
pub fn bindings_json(cp: &ControlPlane, ns: &str) -> Vec<Value> {
    let text = cp.kubectl_ok(["get", "binauthzbindings", "-n", ns, "-o", "json"]);
    let list: Value = serde_json::from_str(&text).expect("kubectl get -o json is JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The `Ready` condition of a binding as JSON: `(status, reason)`, empty when absent.
pub fn ready_json(binding: &Value) -> (String, String) {
    binding["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .unwrap_or_default()
}

/// A corpus sample: its parsed document and the fragments its error must contain
/// (`# expect: ...` lines).
pub struct Sample {
    pub path: PathBuf,
    pub document: Value,
    pub expect: Vec<String>,
}

impl Sample {
    /// The file name, for messages.
    pub fn file(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The document as JSON, placed in `namespace` (samples name `default` or nothing).
    pub fn in_namespace(&self, namespace: &str) -> Value {
        let mut doc = self.document.clone();
        doc["metadata"]["namespace"] = json!(namespace);
        doc
    }
}

/// The samples of `tests/fixtures/bindings/{kind}` (`valid` or `invalid`), by file name.
pub fn corpus(kind: &str) -> Vec<Sample> {
    let dir = repo().join("tests/fixtures/bindings").join(kind);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("fixture readable");
            let expect = text
                .lines()
                .filter_map(|l| l.strip_prefix("# expect: "))
                .map(str::to_owned)
                .collect();
            let document = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
            Sample {
                path,
                document,
                expect,
            }
        })
        .collect()
}

/// An exception named `name` with exactly this spec, to create through the API server
/// (the API it is created through gives the namespace).
pub fn exception(name: &str, spec: Value) -> binauthz_operator::api::BinAuthzException {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "BinAuthzException",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("an exception the types can hold")
}

/// `now + after`, as an exception's `expiresAt` (RFC 3339, millisecond precision).
pub fn expires_in(after: std::time::Duration) -> (jiff::Timestamp, String) {
    let now = jiff::Timestamp::now().as_millisecond();
    let millis = i64::try_from(after.as_millis()).expect("a short duration");
    let at = jiff::Timestamp::from_millisecond(now + millis).expect("a valid time");
    (at, at.to_string())
}

/// Asks the operator for a pass of binding `name` now (the reconcile-now annotation; give
/// a new `at` each time), without waiting for it.
pub async fn request_pass(api: &kube::Api<BinAuthzBinding>, name: &str, at: &str) {
    let patch = json!({"metadata": {"annotations": {"binauthz.dev/reconcile-requested-at": at}}});
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap_or_else(|e| panic!("requesting a pass of {name}: {e}"));
}

/// Asks for a pass of binding `name` and waits until it has run (the status echoes `at`).
pub async fn reconcile_now(api: &kube::Api<BinAuthzBinding>, name: &str, at: &str) {
    request_pass(api, name, at).await;
    super::wait::eventually(
        &format!("the pass {name} was asked for ({at}) has run"),
        std::time::Duration::from_secs(120),
        || async {
            let b = api.get(name).await.map_err(|e| e.to_string())?;
            let echoed = b.status.and_then(|s| s.last_handled_reconcile_at);
            if echoed.as_deref() == Some(at) {
                Ok(())
            } else {
                Err(format!("last handled: {echoed:?}"))
            }
        },
    )
    .await;
}
