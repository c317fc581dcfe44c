//! Passes Cloud Run refuses: the binding stalls and says what to check; nothing is written.

use super::*;

#[tokio::test]
async fn a_project_refused_everywhere_stalls_the_binding_and_says_what_to_check() {
    let prod = binding("prod", json!({}));
    let faults = Faults {
        forbidden: vec!["acme-prod".into()],
        ..Faults::default()
    };
    let h = harness(faults, std::slice::from_ref(&prod), LeaderGate::always()).await;
    // A permission problem is not retried fast: it needs a person.
    assert_next_tick(&h.pass(&prod).await.unwrap());
    let (calls, counters, _) = h.finish().await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let mut status = status_of(&calls[0]);
    let message = status["conditions"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with(
            "ListServices projects/acme-prod/locations/us-central1: PERMISSION_DENIED (HTTP 403)"
        ),
        "{message}"
    );
    // Google answers 403 for a project that does not exist and for one the operator
    // cannot see: the advice covers both, and names the permission.
    assert!(
        message.ends_with("(or resource may not exist); project acme-prod does not exist or the operator's Google identity cannot see it: check spec.project, and grant the identity run.services.list on the project (the binauthz-operator role in deploy/gcp/ holds every permission it needs)"),
        "{message}"
    );
    for c in status["conditions"].as_array_mut().unwrap() {
        if c["message"] == json!(message) {
            c["message"] = json!("<message>");
        }
    }
    assert_eq!(
        status,
        json!({
            "observedGeneration": 1,
            "policy": "default",
            "conditions": [
                condition("Ready", "False", "ProjectNotFoundOrForbidden", "<message>"),
                condition("Reconciling", "False", "ProjectNotFoundOrForbidden", "no remediation in flight"),
                condition("Stalled", "True", "ProjectNotFoundOrForbidden", "<message>"),
            ],
            "targetsTruncated": false,
        })
    );
    assert_eq!(
        calls[1],
        event("Warning", "ProjectNotFoundOrForbidden", "Check", &message)
    );
    assert_eq!(counters.writes, 0);
}

#[tokio::test]
async fn a_missing_named_policy_is_reported_and_nothing_is_written() {
    let missing = "projects/acme-sec/platforms/cloudRun/policies/missing";
    let prod = binding(
        "prod",
        json!({"targets": {"services": {"names": ["checkout"]}}, "policy": {"name": missing}}),
    );
    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::always(),
    )
    .await;
    assert_next_tick(&h.pass(&prod).await.unwrap());
    let (calls, counters, state) = h.finish().await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let message = format!("Binary Authorization platform policy {missing} does not exist; create it, or correct spec.policy.name");
    assert_eq!(
        status_of(&calls[0]),
        json!({
            "observedGeneration": 1,
            "lastSyncTime": "<now>",
            "policy": missing,
            "conditions": [
                condition("Ready", "False", "PolicyNotFound", &message),
                condition("Reconciling", "False", "PolicyNotFound", "no remediation in flight"),
                condition("Stalled", "True", "PolicyNotFound", &message),
            ],
            "summary": summary(json!({"matched": 1, "failed": 1})),
            "targets": [target("checkout", "Failed", "default", missing, &format!("setting policy {missing} failed: policy not found: {message}"))],
            "targetsTruncated": false,
            "orgPolicy": org_policy_not_set("acme-prod"),
            "policyCheck": {"result": "NotFound", "message": &message},
        })
    );
    assert_eq!(
        calls[1],
        event("Warning", "PolicyNotFound", "Check", &message)
    );
    assert_eq!(counters.writes, 0);
    assert_eq!(binauthz_of(&state, "checkout"), json!({"useDefault": true}));
}
