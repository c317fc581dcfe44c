//! Enabled versus effective, end to end: the controller (a subprocess, with deploy/'s
//! RBAC) against a real kube-apiserver and the emulator. Setting a policy does not put it
//! in effect for what already runs; the next deploy (a job's next run) does, and the
//! binding's status, its summary and the `binauthz_not_effective` gauge say so.

use crate::support::kube::{binding, operator_cluster, request_pass};
use crate::support::process::{Emulator, Operator, OperatorConfig};
use crate::support::wait::eventually;

use std::time::Duration;

use binauthz_operator::api::{
    BinAuthzBinding, EffectBasis, EffectState, TargetEffect, TargetStatus,
};
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

const SEED: &str = "examples/cloudrun-seed.yaml";
const PATIENCE: Duration = Duration::from_secs(90);
const SERVICE: &str = "projects/acme-prod/locations/us-central1/services/search-frontend";
const JOB: &str = "projects/acme-prod/locations/us-central1/jobs/db-migrate";

fn target<'b>(b: &'b BinAuthzBinding, name: &str) -> Option<&'b TargetStatus> {
    b.status.as_ref()?.targets.iter().find(|t| t.name == name)
}

fn effect(b: &BinAuthzBinding, name: &str) -> Option<TargetEffect> {
    target(b, name).and_then(|t| t.effect.clone())
}

fn picture(b: &BinAuthzBinding) -> String {
    match &b.status {
        None => "no status".to_owned(),
        Some(s) => format!(
            "summary {:?}; targets {:?}",
            s.summary,
            s.targets
                .iter()
                .map(|t| format!("{} {} {:?}", t.name, t.state, t.effect))
                .collect::<Vec<_>>()
        ),
    }
}

/// Waits until both targets' effects are in `state`, and returns the binding.
async fn wait_effects(api: &Api<BinAuthzBinding>, state: EffectState) -> BinAuthzBinding {
    eventually(
        &format!("search-frontend and db-migrate are {state}"),
        PATIENCE,
        || async {
            let b = api.get("effective").await.map_err(|e| e.to_string())?;
            let both = ["search-frontend", "db-migrate"]
                .iter()
                .all(|n| effect(&b, n).is_some_and(|e| e.state == state));
            both.then_some(b.clone()).ok_or_else(|| picture(&b))
        },
    )
    .await
}

#[tokio::test]
async fn a_policy_set_by_the_operator_takes_effect_at_the_next_deploy_and_run() {
    let Some((cp, kubeconfig)) = operator_cluster().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let api: Api<BinAuthzBinding> = Api::namespaced(cp.client().await, &ns);
    let emulator = Emulator::start(SEED);
    // The job ran before anyone set its policy.
    emulator.execute(JOB).await;
    let operator = Operator::start(
        &OperatorConfig::new(kubeconfig, emulator.url())
            .namespace(&ns)
            .identity(&format!("operator-{ns}")),
    )
    .await;
    api.create(
        &PostParams::default(),
        &binding(
            "effective",
            json!({
                "project": "acme-prod",
                "locations": ["us-central1"],
                "targets": {
                    "services": {"names": ["search-frontend"]},
                    "jobs": {"names": ["db-migrate"]},
                },
                "policy": {"useDefault": true},
            }),
        ),
    )
    .await
    .expect("creating the binding");

    // The operator set the policy: enabled, not yet in effect.
    let b = wait_effects(&api, EffectState::NotEffective).await;
    let service = effect(&b, "search-frontend").unwrap();
    assert_eq!(service.basis, EffectBasis::Remediation, "{}", picture(&b));
    assert!(service.policy_set_time.is_some(), "{}", picture(&b));
    assert!(
        service.message.contains("next deploy"),
        "{}",
        service.message
    );
    let job = effect(&b, "db-migrate").unwrap();
    assert!(job.message.contains("next run"), "{}", job.message);
    let summary = b.status.as_ref().and_then(|s| s.summary).unwrap();
    assert_eq!(summary.not_effective, 2, "{}", picture(&b));
    assert_eq!(summary.compliant, 2, "{}", picture(&b));
    let gauge = format!("{ns}/effective");
    eventually("the not-effective gauge says 2", PATIENCE, || async {
        let n = operator
            .metric("binauthz_not_effective", &[("binding", gauge.as_str())])
            .await;
        (n == 2.0).then_some(()).ok_or_else(|| format!("gauge {n}"))
    })
    .await;
    // Coverage of acme-prod among what the pass listed (services and jobs of
    // us-central1): 5 services and 1 job no binding matches; the project's org policy is
    // not set. No read of its own.
    for (kind, n) in [("Service", 5.0), ("Job", 1.0)] {
        eventually(&format!("{n} uncovered {kind}"), PATIENCE, || async {
            let got = operator
                .metric(
                    "binauthz_uncovered",
                    &[("project", "acme-prod"), ("kind", kind)],
                )
                .await;
            (got == n)
                .then_some(())
                .ok_or_else(|| format!("gauge {got}"))
        })
        .await;
    }
    assert_eq!(
        operator
            .metric(
                "binauthz_org_policy",
                &[("project", "acme-prod"), ("state", "NotSet")]
            )
            .await,
        1.0
    );
    // Report only: the operator never redeploys.
    let writes: Vec<_> = emulator
        .audit()
        .await
        .into_iter()
        .filter(|c| c["resource"] == SERVICE || c["resource"] == JOB)
        .collect();
    assert_eq!(writes.len(), 2, "one write each, nothing else: {writes:#?}");
    for change in &writes {
        assert_eq!(change["fields"], json!(["binaryAuthorization"]), "{change}");
    }

    // Someone deploys the service and the job runs: both are checked by the policy.
    emulator.deploy(SERVICE).await;
    emulator.execute(JOB).await;
    request_pass(&api, "effective", "after-deploy").await;
    let b = wait_effects(&api, EffectState::Effective).await;
    let service = effect(&b, "search-frontend").unwrap();
    assert_eq!(service.basis, EffectBasis::Remediation, "{}", picture(&b));
    let summary = b.status.as_ref().and_then(|s| s.summary).unwrap();
    assert_eq!(summary.not_effective, 0, "{}", picture(&b));
    eventually("the not-effective gauge says 0", PATIENCE, || async {
        let n = operator
            .metric("binauthz_not_effective", &[("binding", gauge.as_str())])
            .await;
        (n == 0.0).then_some(()).ok_or_else(|| format!("gauge {n}"))
    })
    .await;
    // The revision it now serves was read once (then remembered), the job not at all.
    let revision_reads = emulator
        .requests()
        .await
        .into_iter()
        .filter(|r| r["method"] == "revisions.get")
        .count();
    assert!(
        (1..=2).contains(&revision_reads),
        "revision reads: {revision_reads}"
    );
    drop(operator);
}
