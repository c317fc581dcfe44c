//! The Helm chart end to end: `helm install` (helm from its Go module) on a real
//! kube-apiserver of the test's own, then the operator run exactly as the chart's
//! Deployment runs it — its arguments, its environment's namespace, acting as the chart's
//! service account with the chart's RBAC — reconciles a binding, with leader election on
//! the chart's Lease; then `helm upgrade --set shards=4,replicas=2` and two replicas, as
//! the same service account, share the shards through the chart's RBAC. (No kubelet runs
//! here: the binary stands in for the pod.)

use std::process::Command;
use std::time::Duration;

use binauthz_operator::api::BinAuthzBinding;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::PodSpec;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use crate::support::envtest;
use crate::support::gotool::gotool;
use crate::support::kube::{binding, condition, kubeconfig_as};
use crate::support::process::{Emulator, Operator, OperatorConfig};
use crate::support::repo;
use crate::support::wait::eventually;

const RELEASE: &str = "binauthz-operator";
const NAMESPACE: &str = "binauthz-system";
const PATIENCE: Duration = Duration::from_secs(120);

/// Flags the test harness sets itself (a free metrics port, a short shutdown grace, the
/// emulator): the chart's own values of these are checked, then left out.
const HARNESS_FLAGS: [&str; 3] = [
    "--metrics-addr=",
    "--shutdown-grace=",
    "--cloud-run-endpoint=",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_installs_and_its_operator_reconciles_a_binding() {
    let Some(cp) = envtest::own_control_plane_or_skip() else {
        return;
    };
    let Some(admin) = cp.kubeconfig() else {
        eprintln!("helm: skipped: the control plane has no kubeconfig file of its own");
        return;
    };
    let emulator = Emulator::start("examples/cloudrun-seed.yaml");
    let chart = repo().join("charts/binauthz-operator");
    let out = Command::new(gotool("helm"))
        .args(["install", RELEASE])
        .arg(&chart)
        .args([
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--kubeconfig",
        ])
        .arg(admin)
        .args(["--set", &format!("cloudRun.endpoint={}", emulator.url())])
        .args(["--set", "serviceAccount.gcpServiceAccount="])
        .output()
        .expect("running helm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helm install failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("kubectl wait bab/NAME"),
        "NOTES.txt says how to check the install:\n{stdout}"
    );

    let client = cp.client().await;
    let pod = pod_template(&client).await;
    let args = pod.containers[0].args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("controller"));
    assert!(args.contains(&"--leader-election".to_owned()), "{args:?}");
    assert!(
        args.contains(&format!("--cloud-run-endpoint={}", emulator.url())),
        "the cloudRun.endpoint value reaches the flag: {args:?}"
    );
    let chart_flags: Vec<String> = args
        .iter()
        .skip(1)
        .filter(|a| !HARNESS_FLAGS.iter().any(|f| a.starts_with(f)))
        .cloned()
        .collect();
    let service_account = pod.service_account_name.expect("a service account");

    // The operator as the chart runs it: its flags, its namespace, its identity and RBAC.
    let kubeconfig = kubeconfig_as(
        &cp,
        &format!("system:serviceaccount:{NAMESPACE}:{service_account}"),
    );
    let operator = Operator::start(
        &OperatorConfig::new(&kubeconfig, emulator.url())
            .identity("chart-replica-0")
            .env("POD_NAMESPACE", NAMESPACE)
            .args(chart_flags),
    )
    .await;

    let ns = cp.fresh_namespace().await;
    let bindings: Api<BinAuthzBinding> = Api::namespaced(client.clone(), &ns);
    bind_until_ready(&bindings, "prod", &operator).await;
    let lease = Api::<Lease>::namespaced(client.clone(), NAMESPACE)
        .get(RELEASE)
        .await
        .expect("the chart's Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("chart-replica-0"),
        "the replica leads through the Lease the chart's RBAC allows"
    );
    assert_eq!(operator.metric("binauthz_leader", &[]).await, 1.0);

    // Sharded: the upgraded chart's flags and RBAC let two replicas share four shards.
    let mut operator = operator;
    operator.terminate();
    let out = Command::new(gotool("helm"))
        .args(["upgrade", RELEASE])
        .arg(&chart)
        .args(["--namespace", NAMESPACE, "--reuse-values", "--kubeconfig"])
        .arg(admin)
        .args(["--set", "shards=4", "--set", "replicas=2"])
        .output()
        .expect("running helm");
    assert!(
        out.status.success(),
        "helm upgrade failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args = pod_template(&client).await.containers[0]
        .args
        .clone()
        .unwrap_or_default();
    assert!(args.contains(&"--shards=4".to_owned()), "{args:?}");
    let chart_flags: Vec<String> = args
        .iter()
        .skip(1)
        .filter(|a| !HARNESS_FLAGS.iter().any(|f| a.starts_with(f)))
        .cloned()
        .collect();
    let mut replicas = Vec::new();
    for id in ["chart-replica-1", "chart-replica-2"] {
        replicas.push(
            Operator::start(
                &OperatorConfig::new(&kubeconfig, emulator.url())
                    .identity(id)
                    .env("POD_NAMESPACE", NAMESPACE)
                    .args(chart_flags.clone()),
            )
            .await,
        );
    }
    let leases = Api::<Lease>::namespaced(client.clone(), NAMESPACE);
    let held = || async {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for i in 0..4 {
            let lease = leases
                .get(&format!("{RELEASE}-shard-{i}"))
                .await
                .map_err(|e| e.to_string())?;
            let holder = lease
                .spec
                .and_then(|s| s.holder_identity)
                .unwrap_or_default();
            *by.entry(holder).or_default() += 1;
        }
        Ok::<_, String>(by)
    };
    eventually("two replicas hold two shards each", PATIENCE, || async {
        let by = held().await?;
        if by.get("chart-replica-1") == Some(&2) && by.get("chart-replica-2") == Some(&2) {
            Ok(())
        } else {
            Err(format!("{by:?}\n{}", replicas[0].log_tail()))
        }
    })
    .await;
    bindings
        .delete("prod", &Default::default())
        .await
        .expect("deleting the binding");
    bind_until_ready(&bindings, "prod-again", &replicas[0]).await;
    // A replica shutting down deletes its membership Lease (the RBAC allows it) and hands
    // its shards to the other at once.
    replicas[1].terminate();
    assert!(
        leases
            .get_opt(&format!("{RELEASE}-member-chart-replica-2"))
            .await
            .unwrap()
            .is_none(),
        "the membership Lease is deleted on shutdown"
    );
    eventually("the other replica holds every shard", PATIENCE, || async {
        let by = held().await?;
        (by.get("chart-replica-1") == Some(&4))
            .then_some(())
            .ok_or_else(|| format!("{by:?}"))
    })
    .await;
}

/// The pod template of the chart's Deployment as installed.
async fn pod_template(client: &kube::Client) -> PodSpec {
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .get(RELEASE)
        .await
        .expect("the chart's Deployment")
        .spec
        .and_then(|s| s.template.spec)
        .expect("a pod template")
}

/// Creates binding `name` over acme-prod's services in us-central1 and waits until
/// `operator` (or its peer) makes it Ready.
async fn bind_until_ready(bindings: &Api<BinAuthzBinding>, name: &str, operator: &Operator) {
    bindings
        .create(
            &PostParams::default(),
            &binding(
                name,
                json!({
                    "project": "acme-prod",
                    "locations": ["us-central1"],
                    "targets": {"services": {"names": ["*"]}},
                    "policy": {"useDefault": true},
                }),
            ),
        )
        .await
        .expect("creating a binding");
    eventually(
        &format!("the chart's operator makes {name} Ready"),
        PATIENCE,
        || async {
            let b = bindings.get(name).await.map_err(|e| e.to_string())?;
            match condition(&b, "Ready") {
                Some(c) if c.status == "True" => Ok(()),
                other => Err(format!("{other:?}\n{}", operator.log_tail())),
            }
        },
    )
    .await;
}
