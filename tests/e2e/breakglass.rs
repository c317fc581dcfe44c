//! Breakglass with an owner and an age, end to end: someone sets a justification on a
//! service (through the emulator, as a person with gcloud would); the binding's target
//! says who and since when, the age metric is exported, and once the justification is
//! older than `--breakglass-max-age` a Warning event names it.

use std::time::Duration;

use binauthz_operator::api::{BinAuthzBinding, TargetState};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::support::kube::{binding, operator_cluster, request_pass};
use crate::support::process::{Emulator, Operator, OperatorConfig};
use crate::support::wait::eventually;

const SEED: &str = "examples/cloudrun-seed.yaml";
const CART: &str = "projects/acme-prod/locations/us-central1/services/cart";
const PATIENCE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_breakglass_target_says_who_set_it_since_when_and_is_flagged_when_too_old() {
    let Some((cp, kubeconfig)) = operator_cluster().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let api: Api<BinAuthzBinding> = Api::namespaced(cp.client().await, &ns);
    let emulator = Emulator::start(SEED);
    let operator = Operator::start(
        &OperatorConfig::new(kubeconfig, emulator.url())
            .namespace(&ns)
            .identity(&format!("operator-{ns}"))
            .args(["--breakglass-max-age", "3s"]),
    )
    .await;
    api.create(
        &PostParams::default(),
        &binding(
            "cart",
            json!({
                "project": "acme-prod",
                "locations": ["us-central1"],
                "targets": {"services": {"names": ["cart"]}},
                "policy": {"useDefault": true},
            }),
        ),
    )
    .await
    .expect("creating the binding");

    // Someone deploys with a breakglass justification (the policy stays the default).
    emulator
        .drift(
            CART,
            json!({"useDefault": true, "breakglassJustification": "INC-9: hotfix for checkout outage"}),
        )
        .await;
    let set = emulator
        .audit()
        .await
        .into_iter()
        .rfind(|c| c["resource"] == CART)
        .expect("the emulator recorded the change");
    let set_at: jiff::Timestamp = set["time"].as_str().unwrap().parse().unwrap();
    request_pass(&api, "cart", "breakglass-1").await;

    let target = eventually(
        "the target reports its breakglass owner",
        PATIENCE,
        || async {
            let b = api.get("cart").await.map_err(|e| e.to_string())?;
            b.status
                .as_ref()
                .and_then(|s| s.targets.iter().find(|t| t.name == "cart").cloned())
                .filter(|t| t.state == TargetState::Breakglass && t.breakglass_by.is_some())
                .ok_or_else(|| format!("{:?}", b.status))
        },
    )
    .await;
    assert_eq!(target.breakglass_by.as_deref(), Some("someone@example.com"));
    let since: jiff::Timestamp = target
        .breakglass_since
        .as_deref()
        .and_then(|t| t.parse().ok())
        .expect("breakglassSince");
    assert_eq!(
        since.as_second(),
        set_at.as_second(),
        "since the change that set it"
    );
    assert!(target.message.contains("INC-9"), "{}", target.message);

    let label = format!("{ns}/cart");
    let text = operator.metrics().await;
    assert!(
        text.contains(&format!(
            "binauthz_breakglass_age_seconds{{binding=\"{label}\"}}"
        )),
        "the age gauge is exported: {text}"
    );

    // Older than --breakglass-max-age at a later pass: one Warning event naming who.
    let events: Api<Event> = Api::namespaced(cp.client().await, &ns);
    // Let the justification grow older than the limit, then ask for one pass (a request
    // per poll would keep re-arming the controller's debounce).
    tokio::time::sleep(Duration::from_secs(4)).await;
    request_pass(&api, "cart", "breakglass-2").await;
    let overdue = eventually("a BreakglassOverdue event", PATIENCE, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("BreakglassOverdue"))
            .ok_or_else(|| "no BreakglassOverdue event yet".to_owned())
    })
    .await;
    assert_eq!(overdue.type_.as_deref(), Some("Warning"));
    let note = overdue.note.unwrap_or_default();
    assert!(
        note.contains("Service us-central1/cart: set by someone@example.com"),
        "{note}"
    );
    let age = operator
        .metric("binauthz_breakglass_age_seconds", &[("binding", &label)])
        .await;
    assert!(age >= 3.0, "the age gauge grows: {age}");
    drop(operator);
}
