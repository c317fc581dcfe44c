//! `--policy-reports` end to end: the upstream PolicyReport CRD (wgpolicyk8s.io/v1alpha2,
//! as Kyverno ships it) on a real kube-apiserver, deploy/ and deploy/policyreports/ RBAC,
//! the controller acting as its service account against the Cloud Run emulator.

use std::time::Duration;

use binauthz_operator::api::BinAuthzBinding;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::Api;
use serde_json::{json, Value};

use crate::support::kube::{binding, operator_cluster, reconcile_now};
use crate::support::process::{Emulator, Operator, OperatorConfig};
use crate::support::repo;
use crate::support::wait::eventually;

const PATIENCE: Duration = Duration::from_secs(120);

fn reports_api(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        "policyreports",
    );
    Api::namespaced_with(client, ns, &ar)
}

/// The binding's reports (by its uid label), sorted by name.
async fn reports(api: &Api<DynamicObject>, uid: &str) -> Result<Vec<DynamicObject>, String> {
    let lp = kube::api::ListParams::default().labels(&format!("binauthz.dev/binding-uid={uid}"));
    let mut items = api.list(&lp).await.map_err(|e| e.to_string())?.items;
    items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(items)
}

fn results(reports: &[DynamicObject]) -> Vec<Value> {
    reports
        .iter()
        .flat_map(|r| r.data["results"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn verdicts(results: &[Value], verdict: &str) -> usize {
    results.iter().filter(|r| r["result"] == verdict).count()
}

/// 1,500 generated resources in one project and region, a fifth of them drifted: more than
/// the status lists (100) and more than one report holds (1,000).
fn large_seed(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("seed.yaml");
    std::fs::write(
        &path,
        "projects:\n  gen-reports:\n    projectNumber: 900000000777\n\
         generate:\n  count: 1500\n  seed: 11\n  driftRatio: 0.2\n  projects: [gen-reports]\n  regions: [us-central1]\n",
    )
    .expect("writing the seed");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn every_target_is_reported_in_pages_only_rewritten_on_change_and_removed_with_the_binding() {
    let Some((cp, kubeconfig)) = operator_cluster().await else {
        return;
    };
    cp.install_crds(repo().join("tests/fixtures/policyreport"));
    let rbac = repo().join("deploy/policyreports");
    cp.kubectl_ok(["apply".as_ref(), "-k".as_ref(), rbac.as_os_str()]);
    let ns = cp.fresh_namespace().await;
    let client = cp.client().await;
    let bindings: Api<BinAuthzBinding> = Api::namespaced(client.clone(), &ns);
    let reports_api = reports_api(client.clone(), &ns);

    let dir = tempfile::tempdir().expect("temporary directory");
    let seed = large_seed(dir.path());
    let emulator = Emulator::start(seed.to_str().expect("UTF-8 path"));
    let operator = Operator::start(
        &OperatorConfig::new(kubeconfig, emulator.url())
            .namespace(&ns)
            .identity(&format!("operator-{ns}"))
            .args(["--policy-reports", "--inventory-ttl=1s"]),
    )
    .await;

    // Audit mode: drift stays, so the report shows failures.
    let created = bindings
        .create(
            &PostParams::default(),
            &binding(
                "fleet",
                json!({
                    "project": "gen-reports",
                    "locations": ["us-central1"],
                    "targets": {"services": {"names": ["*"]}, "jobs": {"names": ["*"]}, "workerPools": {"names": ["*"]}},
                    "policy": {"useDefault": true},
                    "mode": "Audit",
                }),
            ),
        )
        .await
        .expect("creating the binding");
    let uid = created.metadata.uid.clone().expect("uid");

    let pages = eventually(
        "the binding's PolicyReports cover all 1,500 resources",
        PATIENCE,
        || async {
            let pages = reports(&reports_api, &uid).await?;
            let n = results(&pages).len();
            if n == 1500 {
                Ok(pages)
            } else {
                Err(format!("{} reports, {n} results", pages.len()))
            }
        },
    )
    .await;
    let names: Vec<&str> = pages
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    assert_eq!(
        names,
        ["binauthz-fleet", "binauthz-fleet-2"],
        "two pages of at most 1,000 results"
    );
    let all = results(&pages);
    let status = bindings
        .get("fleet")
        .await
        .expect("binding")
        .status
        .expect("status");
    let summary = status.summary.expect("summary");
    assert_eq!(
        status.targets.len(),
        100,
        "the status lists 100 targets; the reports list all"
    );
    assert_eq!(
        verdicts(&all, "fail") as u32,
        summary.drifted,
        "one fail per drifted target"
    );
    assert_eq!(
        verdicts(&all, "pass") as u32,
        summary.compliant,
        "one pass per compliant target"
    );
    assert!(
        summary.drifted > 0,
        "the seed drifts a fifth of the resources"
    );
    let summed: u64 = pages
        .iter()
        .map(|p| p.data["summary"]["fail"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        summed as u32, summary.drifted,
        "the pages' summaries add up"
    );

    // Each result names its Cloud Run resource in full.
    let failing = all
        .iter()
        .find(|r| r["result"] == "fail")
        .expect("a failing result");
    let resource = failing["resources"][0]["name"]
        .as_str()
        .expect("resource name");
    assert!(
        resource.starts_with("projects/gen-reports/locations/us-central1/"),
        "full resource name, got {resource}"
    );
    assert_eq!(failing["policy"], "fleet");
    assert_eq!(failing["source"], "binauthz-operator");
    // Owned by the binding (the garbage collector removes them with it).
    for page in &pages {
        let owners = page.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "BinAuthzBinding");
        assert_eq!(owners[0].name, "fleet");
        assert_eq!(owners[0].uid, uid);
        assert_eq!(owners[0].controller, Some(true));
    }

    // Passes that find nothing new write nothing.
    let written = operator
        .metric(
            "binauthz_policy_report_writes_total",
            &[("result", "written")],
        )
        .await;
    assert_eq!(written, 2.0, "each page written once");
    let versions: Vec<Option<String>> = pages
        .iter()
        .map(|p| p.metadata.resource_version.clone())
        .collect();
    for round in 0..2 {
        let at = format!("round-{round}");
        bindings
            .patch(
                "fleet",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"binauthz.dev/reconcile-requested-at": at}}})),
            )
            .await
            .expect("requesting a pass");
        eventually("the requested pass has run", PATIENCE, || async {
            let b = bindings.get("fleet").await.map_err(|e| e.to_string())?;
            let echoed = b.status.and_then(|s| s.last_handled_reconcile_at);
            if echoed.as_deref() == Some(at.as_str()) {
                Ok(())
            } else {
                Err(format!("{echoed:?}"))
            }
        })
        .await;
    }
    let after = reports(&reports_api, &uid).await.expect("reports");
    let versions_after: Vec<Option<String>> = after
        .iter()
        .map(|p| p.metadata.resource_version.clone())
        .collect();
    assert_eq!(
        versions, versions_after,
        "unchanged reports are not rewritten"
    );
    assert_eq!(
        operator
            .metric(
                "binauthz_policy_report_writes_total",
                &[("result", "written")]
            )
            .await,
        2.0
    );

    // Drift changes what a report says: it is rewritten.
    let ok = all
        .iter()
        .find(|r| r["result"] == "pass")
        .expect("a passing result");
    let name = ok["resources"][0]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    emulator.drift(&name, Value::Null).await;
    reconcile_now(&bindings, "fleet", "after-drift").await;
    eventually(
        "the drifted resource fails in the report",
        PATIENCE,
        || async {
            let now = results(&reports(&reports_api, &uid).await?);
            let r = now
                .iter()
                .find(|r| r["resources"][0]["name"] == name.as_str());
            match r {
                Some(r) if r["result"] == "fail" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // Deleting the binding removes its reports.
    bindings
        .delete("fleet", &DeleteParams::default())
        .await
        .expect("deleting the binding");
    eventually(
        "the reports are gone with the binding",
        PATIENCE,
        || async {
            let left = reports(&reports_api, &uid).await?;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} left", left.len()))
            }
        },
    )
    .await;
    assert!(
        operator
            .metric(
                "binauthz_policy_report_writes_total",
                &[("result", "deleted")]
            )
            .await
            >= 2.0
    );
    assert_eq!(
        operator
            .metric(
                "binauthz_policy_report_writes_total",
                &[("result", "failed")]
            )
            .await,
        0.0
    );
}

/// `binauthz_binding_ready` and the Enforce and Audit series of `binauthz_binding_info` of
/// `binding` in a scrape.
fn binding_gauges(metrics: &str, binding: &str) -> (f64, f64, f64) {
    let sum = crate::support::metrics::sum;
    let info = |mode| {
        sum(
            metrics,
            "binauthz_binding_info",
            &[("binding", binding), ("mode", mode)],
        )
    };
    (
        sum(metrics, "binauthz_binding_ready", &[("binding", binding)]),
        info("Enforce"),
        info("Audit"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_and_mode_gauges_follow_the_binding() {
    let Some((cp, kubeconfig)) = operator_cluster().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let bindings: Api<BinAuthzBinding> = Api::namespaced(cp.client().await, &ns);
    let emulator = Emulator::start("examples/cloudrun-seed.yaml");
    let operator = Operator::start(
        &OperatorConfig::new(kubeconfig, emulator.url())
            .namespace(&ns)
            .identity(&format!("operator-{ns}")),
    )
    .await;
    let key = format!("{ns}/prod");
    bindings
        .create(
            &PostParams::default(),
            &binding(
                "prod",
                json!({
                    "project": "acme-prod",
                    "locations": ["us-central1"],
                    "targets": {"services": {"names": ["*"]}},
                    "policy": {"useDefault": true},
                    "mode": "Audit",
                }),
            ),
        )
        .await
        .expect("creating the binding");
    // Audit over drifted services: not Ready.
    eventually(
        "binauthz_binding_ready is 0 for the Audit binding",
        PATIENCE,
        || async {
            let m = operator.metrics().await;
            let (ready, enforce, audit) = binding_gauges(&m, &key);
            if m.contains("binauthz_binding_ready{")
                && ready == 0.0
                && (enforce, audit) == (0.0, 1.0)
            {
                Ok(())
            } else {
                Err(m)
            }
        },
    )
    .await;
    // Enforce fixes the drift: Ready, and the mode series follows.
    bindings
        .patch(
            "prod",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "Enforce"}})),
        )
        .await
        .expect("switching to Enforce");
    eventually(
        "binauthz_binding_ready is 1 in Enforce",
        PATIENCE,
        || async {
            let m = operator.metrics().await;
            let (ready, enforce, audit) = binding_gauges(&m, &key);
            if ready == 1.0 && (enforce, audit) == (1.0, 0.0) {
                Ok(())
            } else {
                Err(m)
            }
        },
    )
    .await;
    // Suspended: no Ready condition, no readiness series.
    bindings
        .patch(
            "prod",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .expect("suspending");
    eventually("no readiness series while suspended", PATIENCE, || async {
        let m = operator.metrics().await;
        let line = format!("binauthz_binding_ready{{binding=\"{key}\"}}");
        if m.contains(&line) {
            Err(m)
        } else {
            Ok(())
        }
    })
    .await;
}
