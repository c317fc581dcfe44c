//! Passes that find compliance, drift, conflicts and breakglass: the status, the writes and
//! the events of each.

use super::*;

#[tokio::test]
async fn an_all_compliant_binding_writes_its_status_once_and_then_nothing() {
    let prod = binding(
        "prod",
        json!({"targets": {"services": {"names": ["checkout"]}}}),
    );
    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::always(),
    )
    .await;
    assert_next_tick(&h.pass(&prod).await.unwrap());
    let calls = h.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(
        status_of(&calls[0]),
        json!({
            "observedGeneration": 1,
            "lastSyncTime": "<now>",
            "policy": "default",
            "conditions": [
                condition("Ready", "True", "Compliant", "1/1 targets comply"),
                condition("Reconciling", "False", "Compliant", "no remediation in flight"),
                condition("Stalled", "False", "Compliant", "nothing needs a human to make progress"),
            ],
            "summary": summary(json!({"matched": 1, "compliant": 1})),
            "targets": [target("checkout", "Compliant", "default", "default", "")],
            "targetsTruncated": false,
            "orgPolicy": org_policy_not_set("acme-prod"),
        })
    );
    // The watch delivers the written status; the next pass finds nothing changed and
    // writes nothing (interval passes cost no status write).
    let written = with_status(&prod, &calls[0]);
    assert_next_tick(&h.pass(&written).await.unwrap());
    let (calls, counters, _) = h.finish().await;
    assert_eq!(calls.len(), 1, "no second status write: {calls:#?}");
    assert_eq!(counters.writes, 0);
}

#[tokio::test]
async fn drift_is_fixed_with_one_patch_and_reported_once() {
    let prod = binding("prod", json!({}));
    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::always(),
    )
    .await;
    assert_next_tick(&h.pass(&prod).await.unwrap());
    let metrics = h.metrics.encode();
    let (calls, counters, state) = h.finish().await;
    assert_eq!(calls.len(), 3, "{calls:#?}");
    // First: a fix is in flight.
    assert_eq!(
        status_of(&calls[0]),
        json!({
            "observedGeneration": 1,
            "lastSyncTime": "<now>",
            "policy": "default",
            "conditions": [
                condition("Ready", "False", "Drifted", "1 of 2 targets drift from policy default (fixes in progress)"),
                condition("Reconciling", "True", "RemediationInProgress", "1 remediation(s) in flight; the next pass verifies them"),
                condition("Stalled", "False", "Drifted", "nothing needs a human to make progress"),
            ],
            "summary": summary(json!({"matched": 2, "compliant": 1, "drifted": 1})),
            // The interim status says nothing of effect (no revision is read before the
            // writes); the final one does.
            "targets": [
                target("search", "Drifted", "none", "default", "fix in progress: setting policy default (was none)"),
                without_effect(target("checkout", "Compliant", "default", "default", "")),
            ],
            "targetsTruncated": false,
            "orgPolicy": org_policy_not_set("acme-prod"),
        })
    );
    // Then: fixed.
    assert_eq!(
        status_of(&calls[1]),
        json!({
            "observedGeneration": 1,
            "lastSyncTime": "<now>",
            "policy": "default",
            "conditions": [
                condition("Ready", "True", "Compliant", "2/2 targets comply; 1 remediated in this pass"),
                condition("Reconciling", "False", "Compliant", "no remediation in flight"),
                condition("Stalled", "False", "Compliant", "nothing needs a human to make progress"),
            ],
            "summary": summary(json!({"matched": 2, "compliant": 2, "remediated": 1, "notEffective": 1})),
            "targets": [
                target("search", "Remediated", "default", "default", "set policy default (was none)"),
                target("checkout", "Compliant", "default", "default", ""),
            ],
            "targetsTruncated": false,
            "orgPolicy": org_policy_not_set("acme-prod"),
        })
    );
    assert_eq!(
        calls[2],
        event("Normal", "Remediated", "Remediate", "Set Binary Authorization policy default on 1 resource(s): Service us-central1/search (was none). Cloud Run enforces it from each resource's next deploy.")
    );
    assert_eq!(counters.writes, 1, "one PATCH");
    assert_eq!(binauthz_of(&state, "search"), json!({"useDefault": true}));
    assert_eq!(binauthz_of(&state, "checkout"), json!({"useDefault": true}));
    assert!(
        metrics.contains(r#"binauthz_remediations_total{kind="Service",result="succeeded"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("binauthz_drift_correction_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"binauthz_targets{binding="team/prod",state="Remediated"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn audit_mode_reports_drift_and_never_writes() {
    let prod = binding("prod", json!({"mode": "Audit"}));
    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::always(),
    )
    .await;
    assert_next_tick(&h.pass(&prod).await.unwrap());
    let (calls, counters, state) = h.finish().await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(
        status_of(&calls[0]),
        json!({
            "observedGeneration": 1,
            "lastSyncTime": "<now>",
            "policy": "default",
            "conditions": [
                condition("Ready", "False", "Drifted", "1 of 2 targets drift from policy default (Audit mode: reported, not fixed)"),
                condition("Reconciling", "False", "Drifted", "no remediation in flight"),
                // Audit mode never fixes it: only a person does.
                condition("Stalled", "True", "Drifted", "1 of 2 targets drift from policy default (Audit mode: reported, not fixed)"),
            ],
            "summary": summary(json!({"matched": 2, "compliant": 1, "drifted": 1})),
            "targets": [
                target("search", "Drifted", "none", "default", "Audit mode: carries none, should carry default; not fixed"),
                target("checkout", "Compliant", "default", "default", ""),
            ],
            "targetsTruncated": false,
            "orgPolicy": org_policy_not_set("acme-prod"),
        })
    );
    assert_eq!(
        calls[1],
        event("Warning", "DriftDetected", "Check", "1 resource(s) do not carry Binary Authorization policy default (Audit mode: reported, not fixed): Service us-central1/search (carries none). Fix them (e.g. gcloud run services update search --region us-central1 --project acme-prod --binary-authorization=default) or set spec.mode: Enforce to let the operator fix them.")
    );
    assert_eq!(counters.writes, 0, "Audit never writes");
    assert_eq!(binauthz_of(&state, "search"), Value::Null);
}

#[tokio::test]
async fn equal_priority_bindings_with_different_policies_conflict_and_nobody_writes() {
    let prod = binding(
        "prod",
        json!({"targets": {"services": {"names": ["search"]}}}),
    );
    let strict = binding(
        "strict",
        json!({"targets": {"services": {"names": ["search"]}},
               "policy": {"name": "projects/acme-sec/platforms/cloudRun/policies/strict"}}),
    );
    let h = harness(
        Faults::default(),
        &[prod.clone(), strict],
        LeaderGate::always(),
    )
    .await;
    assert_next_tick(&h.pass(&prod).await.unwrap());
    let (calls, counters, state) = h.finish().await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let message = "1 of 1 targets are also claimed with a different policy by equal-priority binding(s) team/strict and are left untouched; align the policies or give one binding a higher spec.priority";
    assert_eq!(
        status_of(&calls[0]),
        json!({
            "observedGeneration": 1,
            "lastSyncTime": "<now>",
            "policy": "default",
            "conditions": [
                condition("Ready", "False", "Conflict", message),
                condition("Reconciling", "False", "Conflict", "no remediation in flight"),
                condition("Stalled", "True", "Conflict", message),
            ],
            "summary": summary(json!({"matched": 1, "conflicted": 1})),
            "targets": [
                target("search", "Conflicted", "none", "default", "equal-priority binding(s) team/strict want a different policy; left untouched"),
            ],
            "targetsTruncated": false,
            "orgPolicy": org_policy_not_set("acme-prod"),
        })
    );
    assert_eq!(
        calls[1],
        event("Warning", "Conflict", "Check", "1 resource(s) are claimed with a different policy by an equal-priority binding and are left untouched: Service us-central1/search (equal-priority binding(s) team/strict want a different policy; left untouched). Align the policies of the bindings or give one of them a higher spec.priority.")
    );
    assert_eq!(counters.writes, 0);
    assert_eq!(binauthz_of(&state, "search"), Value::Null);
}

#[tokio::test]
async fn breakglass_and_blocked_deploys_are_reported_in_the_pass_that_fixes_drift() {
    let seed = r#"
projects:
  acme-prod:
    projectNumber: 123456789012
    regions:
      us-central1:
        services:
          - name: hotfix
            image: us-docker.pkg.dev/acme-prod/shop/hotfix:1
            binaryAuthorization: {useDefault: true, breakglassJustification: "INC-4711: outage"}
          - name: recs
            image: us-docker.pkg.dev/acme-prod/search/recs:1
            deployBlocked: {image: us-docker.pkg.dev/acme-prod/search/recs:2-unsigned}
          - name: search
            image: us-docker.pkg.dev/acme-prod/search/frontend:5.1.0
"#;
    let prod = binding("prod", json!({}));
    let h = harness_with(
        seed,
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::always(),
    )
    .await;
    h.pass(&prod).await.unwrap();
    let metrics = h.metrics.encode();
    let (calls, counters, _) = h.finish().await;
    assert_eq!(counters.writes, 2);
    assert_eq!(
        calls.len(),
        6,
        "interim and final status, then four events: {calls:#?}"
    );
    let reasons: Vec<&str> = calls[2..]
        .iter()
        .map(|c| match c {
            Call::Event { reason, .. } => reason.as_str(),
            other => panic!("expected an event, got {other:?}"),
        })
        .collect();
    // The seed dates the justification at the service's creation, long before now: it is
    // overdue (older than --breakglass-max-age) the first time it is seen.
    assert_eq!(
        reasons,
        [
            "Remediated",
            "Breakglass",
            "DeployBlocked",
            "BreakglassOverdue"
        ]
    );
    assert_eq!(
        calls[3],
        event("Warning", "Breakglass", "Check", "1 resource(s) carry a breakglass justification (their policy is still enforced): Service us-central1/hotfix: \"INC-4711: outage\". Review the justification; once the emergency is over, redeploy normally or set spec.breakglass: Clear to have the operator remove it.")
    );
    let Call::Event { note, type_, .. } = &calls[4] else {
        unreachable!()
    };
    assert_eq!(type_, "Warning");
    assert!(note.starts_with("The latest deploy of 1 resource(s) was refused by Binary Authorization; they keep serving their previous revision: Service us-central1/recs: "), "{note}");
    assert!(note.contains("recs:2-unsigned"), "{note}");
    let Call::Event { note, type_, .. } = &calls[5] else {
        unreachable!()
    };
    assert_eq!(type_, "Warning");
    assert!(
        note.starts_with("1 breakglass justification(s) have been in place longer than 3d (--breakglass-max-age): Service us-central1/hotfix: set by "),
        "{note}"
    );
    let status = status_of(&calls[1]);
    let hotfix = status["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "hotfix"))
        .cloned()
        .unwrap_or_default();
    assert!(
        hotfix["breakglassBy"].is_string() && hotfix["breakglassSince"].is_string(),
        "{hotfix}"
    );
    assert_eq!(
        status["summary"],
        summary(
            json!({"matched": 3, "compliant": 3, "remediated": 2, "breakglass": 1, "deployBlocked": 1, "notEffective": 2})
        )
    );
    assert!(
        metrics.contains(r#"binauthz_breakglass{binding="team/prod"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"binauthz_deploy_blocked{binding="team/prod"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"binauthz_breakglass_age_seconds{binding="team/prod"} "#),
        "{metrics}"
    );
}
