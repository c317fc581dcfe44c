//! deploy/ on a real kube-apiserver: the kustomize base passes a server-side dry run and
//! applies cleanly, the operator's pod template passes the namespace's `restricted` Pod
//! Security level, and the operator's service account can do exactly what
//! tests/fixtures/rbac-expectations.txt says — checked by impersonation, both with
//! `kubectl auth can-i` and with real requests made as the service account.

use crate::support::envtest;
use crate::support::repo;

use std::process::Command;
use std::sync::OnceLock;

use binauthz_operator::api::{BinAuthzBinding, BinAuthzBindingStatus, Condition, Summary};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

const NAMESPACE: &str = "binauthz-system";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:binauthz-system:binauthz-operator";

/// What `kubectl apply` printed on stderr (warnings) when deploy/ was applied.
struct Deployed {
    dry_run_stderr: String,
    apply_stderr: String,
}

/// A control plane of these tests' own (a fresh cluster: the other tests of this binary
/// install the CRD their own way in the shared one) with deploy/ applied once: first its
/// namespace (a server-side dry run of namespaced objects needs it to exist), then the whole
/// base with `--dry-run=server`, which must store nothing, then the base for real.
async fn deployed() -> Option<(&'static envtest::ControlPlane, &'static Deployed)> {
    static CLUSTER: OnceLock<Option<envtest::ControlPlane>> = OnceLock::new();
    static DEPLOYED: OnceLock<Deployed> = OnceLock::new();
    let cp = CLUSTER
        .get_or_init(envtest::own_control_plane_or_skip)
        .as_ref()?;
    let deployed = DEPLOYED.get_or_init(|| {
        let deploy = repo().join("deploy");
        cp.kubectl_ok([
            "apply".as_ref(),
            "-f".as_ref(),
            deploy.join("namespace.yaml").as_os_str(),
        ]);
        // (With USE_EXISTING_CLUSTER the CRD may be installed already.)
        let crd_before = cp
            .kubectl(["get", "customresourcedefinitions", "-o", "name"])
            .stdout;
        let dry_run = cp.kubectl([
            "apply".as_ref(),
            "--dry-run=server".as_ref(),
            "-k".as_ref(),
            deploy.as_os_str(),
        ]);
        assert!(
            dry_run.status.success(),
            "kubectl apply --dry-run=server -k deploy/ failed:\n{}{}",
            String::from_utf8_lossy(&dry_run.stdout),
            String::from_utf8_lossy(&dry_run.stderr)
        );
        let crd_after = cp
            .kubectl(["get", "customresourcedefinitions", "-o", "name"])
            .stdout;
        assert_eq!(
            String::from_utf8_lossy(&crd_after),
            String::from_utf8_lossy(&crd_before),
            "the dry run stored a CRD"
        );
        let apply = cp.kubectl(["apply".as_ref(), "-k".as_ref(), deploy.as_os_str()]);
        assert!(
            apply.status.success(),
            "kubectl apply -k deploy/ failed:\n{}{}",
            String::from_utf8_lossy(&apply.stdout),
            String::from_utf8_lossy(&apply.stderr)
        );
        cp.wait_crd_established("binauthzbindings.binauthz.dev");
        Deployed {
            dry_run_stderr: String::from_utf8_lossy(&dry_run.stderr).into_owned(),
            apply_stderr: String::from_utf8_lossy(&apply.stderr).into_owned(),
        }
    });
    Some((cp, deployed))
}

#[tokio::test]
async fn deploy_base_passes_a_server_dry_run_and_applies_cleanly() {
    let Some((cp, deployed)) = deployed().await else {
        return;
    };
    // No warnings: no PodSecurity violation, no deprecated API, no unknown field.
    for (what, stderr) in [
        ("the dry run", &deployed.dry_run_stderr),
        ("the apply", &deployed.apply_stderr),
    ] {
        assert!(
            !stderr.to_ascii_lowercase().contains("warning"),
            "{what} of deploy/ printed warnings:\n{stderr}"
        );
    }
    // Everything the base declares is there.
    let listed = cp.kubectl_ok([
        "get",
        "serviceaccount,deployment,service,poddisruptionbudget,networkpolicy,role,rolebinding",
        "-n",
        NAMESPACE,
        "-o",
        "name",
    ]);
    for object in [
        "serviceaccount/binauthz-operator",
        "deployment.apps/binauthz-operator",
        "service/binauthz-operator-metrics",
        "poddisruptionbudget.policy/binauthz-operator",
        "networkpolicy.networking.k8s.io/binauthz-operator",
        "role.rbac.authorization.k8s.io/binauthz-operator-leader-election",
        "rolebinding.rbac.authorization.k8s.io/binauthz-operator-leader-election",
    ] {
        assert!(
            listed.lines().any(|l| l == object),
            "{object} missing after apply -k deploy/:\n{listed}"
        );
    }
    let deployment: Value = serde_json::from_str(&cp.kubectl_ok([
        "get",
        "deployment",
        "binauthz-operator",
        "-n",
        NAMESPACE,
        "-o",
        "json",
    ]))
    .expect("deployment JSON");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .is_some_and(|a| a.iter().any(|x| x == "--leader-election")),
        "the Deployment does not enable leader election: {args}"
    );

    // Applying again changes nothing: the base is stable under the server's defaulting.
    let diff = cp.kubectl([
        "diff".as_ref(),
        "-k".as_ref(),
        repo().join("deploy").as_os_str(),
    ]);
    assert!(
        diff.status.success(),
        "kubectl diff -k deploy/ after apply shows changes ({}):\n{}{}",
        diff.status,
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
}

#[tokio::test]
async fn operator_pod_passes_the_restricted_pod_security_level() {
    let Some((cp, _)) = deployed().await else {
        return;
    };
    let namespace: Value =
        serde_json::from_str(&cp.kubectl_ok(["get", "namespace", NAMESPACE, "-o", "json"]))
            .expect("namespace JSON");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
        "deploy/namespace.yaml should enforce the restricted Pod Security level"
    );
    // No kubelet or controller-manager here, so no pods: send the Deployment's pod template
    // as a Pod, in a dry run. PodSecurity admission refuses it if it violates `restricted`.
    let deployment: Value = serde_json::from_str(&cp.kubectl_ok([
        "get",
        "deployment",
        "binauthz-operator",
        "-n",
        NAMESPACE,
        "-o",
        "json",
    ]))
    .expect("deployment JSON");
    let template = &deployment["spec"]["template"];
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "binauthz-operator-template", "namespace": NAMESPACE,
                      "labels": template["metadata"]["labels"] },
        "spec": template["spec"],
    });
    let out = cp.kubectl_stdin(
        ["create", "--dry-run=server", "-o", "name", "-f", "-"],
        &pod.to_string(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("PodSecurity"),
        "the operator's pod template is refused or warned about in {NAMESPACE}: {stderr}"
    );
    // The check has teeth: the same pod running as root is refused.
    let mut root = pod.clone();
    root["spec"]["securityContext"]["runAsNonRoot"] = json!(false);
    root["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false);
    root["spec"]["containers"][0]["securityContext"]["runAsUser"] = json!(0);
    let out = cp.kubectl_stdin(
        ["create", "--dry-run=server", "-o", "name", "-f", "-"],
        &root.to_string(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("violates PodSecurity"),
        "a root pod was not refused by PodSecurity in {NAMESPACE}: {stderr}"
    );
}

#[tokio::test]
async fn service_account_rbac_matches_the_expectations() {
    let Some((cp, _)) = deployed().await else {
        return;
    };
    let mut cmd = Command::new(repo().join("scripts").join("rbac-can-i.sh"));
    cmd.env("KUBECTL", cp.kubectl_path());
    if let Some(kubeconfig) = cp.kubeconfig() {
        cmd.arg("--kubeconfig").arg(kubeconfig);
    }
    cmd.arg(repo().join("tests/fixtures/rbac-expectations.txt"));
    let out = cmd.output().expect("running scripts/rbac-can-i.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the service account's RBAC differs from tests/fixtures/rbac-expectations.txt:\n{}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    // Every expectation was checked (a runner that checks nothing must not pass).
    let expected = std::fs::read_to_string(repo().join("tests/fixtures/rbac-expectations.txt"))
        .expect("expectations readable")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    assert!(
        expected >= 40,
        "expected the whole list, found {expected} lines"
    );
    assert!(
        stdout.contains(&format!("{expected} checked, 0 failed")),
        "not every expectation was checked:\n{stdout}"
    );
}

/// A client that acts as the operator's service account (impersonation, as kubectl --as).
async fn as_service_account(cp: &envtest::ControlPlane) -> kube::Client {
    let mut config = cp.config().await;
    config.auth_info.impersonate = Some(SERVICE_ACCOUNT.to_owned());
    kube::Client::try_from(config).expect("impersonating client")
}

fn forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what} as the service account: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn service_account_writes_status_and_nothing_else() {
    let Some((cp, _)) = deployed().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let admin: Api<BinAuthzBinding> = Api::namespaced(cp.client().await, &ns);
    let binding: BinAuthzBinding = serde_json::from_value(json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "BinAuthzBinding",
        "metadata": { "name": "web", "namespace": ns },
        "spec": {
            "project": "acme-prod",
            "locations": ["us-central1"],
            "targets": { "services": { "names": ["*"] } },
            "policy": { "useDefault": true }
        }
    }))
    .expect("binding");
    admin
        .create(&PostParams::default(), &binding)
        .await
        .expect("creating the binding as admin");

    let sa = as_service_account(cp).await;
    let bindings: Api<BinAuthzBinding> = Api::namespaced(sa.clone(), &ns);
    let everywhere: Api<BinAuthzBinding> = Api::all(sa.clone());

    // Reads, everywhere.
    let listed = everywhere
        .list(&ListParams::default())
        .await
        .expect("listing bindings in every namespace as the service account");
    assert!(listed
        .items
        .iter()
        .any(|b| b.metadata.name.as_deref() == Some("web")));

    // The status subresource: the operator's only write to a binding.
    let status = BinAuthzBindingStatus {
        observed_generation: Some(1),
        policy: Some("default".to_owned()),
        conditions: vec![Condition {
            type_: "Ready".to_owned(),
            status: "True".to_owned(),
            reason: "Compliant".to_owned(),
            message: "1/1 targets comply".to_owned(),
            last_transition_time: "2026-01-05T10:00:00Z".to_owned(),
            observed_generation: Some(1),
        }],
        summary: Some(Summary {
            matched: 1,
            compliant: 1,
            ..Summary::default()
        }),
        ..BinAuthzBindingStatus::default()
    };
    let patched = bindings
        .patch_status(
            "web",
            &PatchParams::apply("binauthz-operator").force(),
            &Patch::Apply(json!({
                "apiVersion": "binauthz.dev/v1alpha1",
                "kind": "BinAuthzBinding",
                "status": status,
            })),
        )
        .await
        .expect("a server-side apply of the status as the service account");
    assert_eq!(patched.status.as_ref(), Some(&status));
    bindings
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "policy": "default" } })),
        )
        .await
        .expect("a merge patch of the status as the service account");

    // Never the spec, never a create or a delete.
    forbidden(
        "patching the spec",
        bindings
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "mode": "Audit" } })),
            )
            .await,
    );
    let mut other = binding.clone();
    other.metadata.name = Some("other".to_owned());
    forbidden(
        "creating a binding",
        bindings.create(&PostParams::default(), &other).await,
    );
    forbidden(
        "deleting a binding",
        bindings.delete("web", &DeleteParams::default()).await,
    );
    let unchanged = admin
        .get("web")
        .await
        .expect("reading the binding as admin");
    assert_eq!(unchanged.spec, binding.spec);

    // Events about the binding, in its namespace.
    let events: Api<Event> = Api::namespaced(sa.clone(), &ns);
    let event: Event = serde_json::from_value(json!({
        "metadata": { "generateName": "web-" },
        "eventTime": "2026-01-05T10:00:00.000000Z",
        "reportingController": "binauthz.dev/operator",
        "reportingInstance": "binauthz-operator-0",
        "action": "Reconcile",
        "reason": "Compliant",
        "type": "Normal",
        "note": "1/1 targets comply",
        "regarding": {
            "apiVersion": "binauthz.dev/v1alpha1",
            "kind": "BinAuthzBinding",
            "namespace": ns,
            "name": "web",
            "uid": unchanged.metadata.uid,
        }
    }))
    .expect("event");
    events
        .create(&PostParams::default(), &event)
        .await
        .expect("creating an event as the service account");
    forbidden("listing events", events.list(&ListParams::default()).await);

    // Its own Lease for leader election, nowhere else.
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": "binauthz-operator" },
        "spec": { "holderIdentity": "binauthz-operator-0", "leaseDurationSeconds": 15 }
    }))
    .expect("lease");
    let leases: Api<Lease> = Api::namespaced(sa.clone(), NAMESPACE);
    leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("creating the operator's Lease as the service account");
    forbidden(
        "deleting the operator's Lease",
        leases
            .delete("binauthz-operator", &DeleteParams::default())
            .await,
    );
    let mut held = leases
        .get("binauthz-operator")
        .await
        .expect("reading the operator's Lease");
    if let Some(spec) = held.spec.as_mut() {
        spec.holder_identity = Some("binauthz-operator-1".to_owned());
    }
    leases
        .replace("binauthz-operator", &PostParams::default(), &held)
        .await
        .expect("renewing the operator's Lease (update) as the service account");
    let foreign: Api<Lease> = Api::namespaced(sa.clone(), &ns);
    forbidden(
        "creating a Lease outside binauthz-system",
        foreign.create(&PostParams::default(), &lease).await,
    );

    // No secrets, not even in its own namespace.
    let secrets: Api<Secret> = Api::namespaced(sa, NAMESPACE);
    forbidden(
        "listing secrets",
        secrets.list(&ListParams::default()).await,
    );
}
