//! `BinAuthzException` end to end: the operator binary against a real kube-apiserver and the
//! Cloud Run emulator. An exception keeps a drifted service from being fixed and reports it
//! `Excepted` (status, metric, events); at its expiry the operator enforces at once, and the
//! delay between the expiry and the write is measured. The API server refuses what the CEL
//! rules refuse; the operator refuses what its own maximum refuses.

use std::time::Duration;

use binauthz_operator::api::{BinAuthzBinding, BinAuthzException, ExceptionState, TargetState};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

use crate::support::kube::{binding, condition, exception, expires_in, operator_cluster};
use crate::support::process::{Emulator, Operator, OperatorConfig};
use crate::support::wait::eventually;

const SEED: &str = "examples/cloudrun-seed.yaml";
const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";
const PATIENCE: Duration = Duration::from_secs(90);
/// How long after its expiry an exception's resource must be written (issue 17: "within a
/// second of their expiry").
const EXPIRY_BOUND: Duration = Duration::from_secs(1);

struct Scenario {
    cp: &'static crate::support::envtest::ControlPlane,
    ns: String,
    bindings: Api<BinAuthzBinding>,
    exceptions: Api<BinAuthzException>,
    emulator: Emulator,
    operator: Operator,
}

async fn scenario(operator_args: &[&str]) -> Option<Scenario> {
    let (cp, kubeconfig) = operator_cluster().await?;
    let ns = cp.fresh_namespace().await;
    let client = cp.client().await;
    let emulator = Emulator::start(SEED);
    let operator = Operator::start(
        &OperatorConfig::new(kubeconfig, emulator.url())
            .namespace(&ns)
            .identity(&format!("operator-{ns}"))
            .args(operator_args.iter().copied()),
    )
    .await;
    Some(Scenario {
        cp,
        bindings: Api::namespaced(client.clone(), &ns),
        exceptions: Api::namespaced(client, &ns),
        ns,
        emulator,
        operator,
    })
}

fn strict_services() -> Value {
    json!({
        "project": "acme-prod",
        "locations": ["us-central1"],
        "targets": { "services": { "names": ["*"] } },
        "policy": { "name": STRICT },
    })
}

fn exception_spec(name: &str, expires_at: &str) -> Value {
    json!({
        "project": "acme-prod",
        "location": "us-central1",
        "kind": "Service",
        "names": [name],
        "reason": "INC-4711: vendor image awaiting attestation",
        "expiresAt": expires_at,
    })
}

/// A service of acme-prod/us-central1 the seed leaves without the strict policy.
async fn drifted_service(emulator: &Emulator) -> String {
    let state = emulator.state().await;
    state["projects"]["acme-prod"]["regions"]["us-central1"]["services"]
        .as_array()
        .expect("services in the seed")
        .iter()
        .filter(|s| s["deleted"] != true && s.get("deleteTime").is_none())
        .find(|s| s["binaryAuthorization"]["policy"] != STRICT)
        .and_then(|s| s["name"].as_str())
        .expect("the seed carries drift in acme-prod/us-central1")
        .to_owned()
}

fn full_name(service: &str) -> String {
    format!("projects/acme-prod/locations/us-central1/services/{service}")
}

/// The operator's writes to one resource, from the emulator's audit log.
async fn writes_to(emulator: &Emulator, service: &str) -> Vec<Value> {
    let name = full_name(service);
    emulator
        .audit()
        .await
        .into_iter()
        .filter(|c| c["resource"] == name.as_str())
        .collect()
}

async fn event(
    cp: &crate::support::envtest::ControlPlane,
    ns: &str,
    reason: &str,
    on: &str,
) -> Event {
    let events: Api<Event> = Api::namespaced(cp.client().await, ns);
    eventually(&format!("a {reason} event on {on}"), PATIENCE, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(on)
            })
            .ok_or_else(|| format!("no {reason} event on {on} yet"))
    })
    .await
}

#[tokio::test]
async fn an_exception_holds_the_fix_until_it_expires_then_the_operator_enforces_at_once() {
    let Some(s) = scenario(&[]).await else {
        return;
    };
    let service = drifted_service(&s.emulator).await;
    // Long enough for the binding's first pass to report the exception before it ends.
    let (expiry, expires_at) = expires_in(Duration::from_secs(25));
    s.exceptions
        .create(
            &PostParams::default(),
            &exception("hotfix", exception_spec(&service, &expires_at)),
        )
        .await
        .expect("creating the exception");
    s.bindings
        .create(
            &PostParams::default(),
            &binding("strict", strict_services()),
        )
        .await
        .expect("creating the binding");

    // While active: the service is reported Excepted, counted, not written; the binding is
    // Ready (everything else was fixed); the exception says Active.
    let b = eventually(
        "the binding reports the excepted service",
        PATIENCE,
        || async {
            let b = s.bindings.get("strict").await.map_err(|e| e.to_string())?;
            let summary = b.status.as_ref().and_then(|st| st.summary);
            match (summary, condition(&b, "Ready")) {
                (Some(sum), Some(ready)) if sum.excepted == 1 && ready.reason == "Compliant" => {
                    Ok(b)
                }
                _ => Err(format!("{:?}", b.status)),
            }
        },
    )
    .await;
    let status = b.status.expect("status");
    let target = status
        .targets
        .iter()
        .find(|t| t.name == service)
        .expect("the excepted service is listed");
    assert_eq!(target.state, TargetState::Excepted, "{target:?}");
    assert!(
        target
            .message
            .contains(&format!("excepted by BinAuthzException {}/hotfix", s.ns))
            && target.message.contains("INC-4711"),
        "{}",
        target.message
    );
    let ready = condition_message(&s.bindings, "strict").await;
    assert!(
        ready.contains("1 excepted by a BinAuthzException"),
        "{ready}"
    );
    assert!(
        writes_to(&s.emulator, &service).await.is_empty(),
        "the excepted service was written while the exception was active"
    );
    let binding_label = format!("{}/strict", s.ns);
    eventually(
        "binauthz_targets counts the excepted service",
        PATIENCE,
        || async {
            let n = s
                .operator
                .metric(
                    "binauthz_targets",
                    &[("binding", &binding_label), ("state", "Excepted")],
                )
                .await;
            if n == 1.0 {
                Ok(())
            } else {
                Err(format!("binauthz_targets{{state=\"Excepted\"}} = {n}"))
            }
        },
    )
    .await;
    let active = eventually("the exception's status says Active", PATIENCE, || async {
        let e = s
            .exceptions
            .get("hotfix")
            .await
            .map_err(|e| e.to_string())?;
        match e.status.as_ref().and_then(|st| st.state) {
            Some(ExceptionState::Active) => Ok(e),
            _ => Err(format!("{:?}", e.status)),
        }
    })
    .await;
    assert!(
        active
            .status
            .expect("status")
            .message
            .contains("honoured until"),
        "the Active message says until when"
    );
    event(s.cp, &s.ns, "Excepted", "strict").await;

    // At the expiry: one write of the service, right after the expiry moment.
    let writes = eventually(
        "the service is written after the expiry",
        PATIENCE,
        || async {
            let writes = writes_to(&s.emulator, &service).await;
            if writes.is_empty() {
                Err("not written yet".to_owned())
            } else {
                Ok(writes)
            }
        },
    )
    .await;
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let written: jiff::Timestamp = writes[0]["time"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("the audit record's time");
    let delay = written.duration_since(expiry);
    eprintln!(
        "exception expiry -> remediation write: {} ms",
        delay.as_millis()
    );
    assert!(
        delay.is_positive(),
        "the service was written {} ms before its exception expired",
        -delay.as_millis()
    );
    assert!(
        delay < jiff::SignedDuration::try_from(EXPIRY_BOUND).expect("bound"),
        "the write came {} ms after the expiry (bound {} ms)",
        delay.as_millis(),
        EXPIRY_BOUND.as_millis()
    );
    assert_eq!(
        s.emulator.binary_authorization(&full_name(&service)).await["policy"],
        STRICT
    );
    let fields = writes[0]["fields"].as_array().expect("fields");
    assert!(
        fields.iter().all(|f| f
            .as_str()
            .is_some_and(|f| f.starts_with("binaryAuthorization"))),
        "{fields:?}"
    );

    // ... and says so: on the binding and on the exception.
    let expired = event(s.cp, &s.ns, "ExceptionExpired", "strict").await;
    assert!(
        expired.note.unwrap_or_default().contains(&service),
        "the ExceptionExpired event names the service"
    );
    eventually("the exception's status says Expired", PATIENCE, || async {
        let e = s
            .exceptions
            .get("hotfix")
            .await
            .map_err(|e| e.to_string())?;
        match e.status.as_ref().and_then(|st| st.state) {
            Some(ExceptionState::Expired) => Ok(()),
            _ => Err(format!("{:?}", e.status)),
        }
    })
    .await;
    event(s.cp, &s.ns, "ExceptionExpired", "hotfix").await;
    drop(s.operator);
}

async fn condition_message(api: &Api<BinAuthzBinding>, name: &str) -> String {
    let b = api.get(name).await.expect("binding");
    condition(&b, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_exception_longer_than_the_operator_allows_is_refused_and_never_honoured() {
    let Some(s) = scenario(&["--exception-max-duration", "1h"]).await else {
        return;
    };
    let service = drifted_service(&s.emulator).await;
    let (_, expires_at) = expires_in(Duration::from_secs(2 * 3600));
    s.exceptions
        .create(
            &PostParams::default(),
            &exception("too-long", exception_spec(&service, &expires_at)),
        )
        .await
        .expect("the API server accepts it: the maximum is the operator's");
    let refused = eventually("the exception's status says Refused", PATIENCE, || async {
        let e = s
            .exceptions
            .get("too-long")
            .await
            .map_err(|e| e.to_string())?;
        match e.status {
            Some(st) if st.state == Some(ExceptionState::Refused) => Ok(st),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        refused
            .message
            .contains("more than the 1h the operator allows"),
        "{}",
        refused.message
    );
    let warning = event(s.cp, &s.ns, "ExceptionRefused", "too-long").await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));

    s.bindings
        .create(
            &PostParams::default(),
            &binding("strict", strict_services()),
        )
        .await
        .expect("creating the binding");
    eventually("the service is fixed regardless", PATIENCE, || async {
        let ba = s.emulator.binary_authorization(&full_name(&service)).await;
        if ba["policy"] == STRICT {
            Ok(())
        } else {
            Err(ba.to_string())
        }
    })
    .await;
    drop(s.operator);
}

#[tokio::test]
async fn the_api_server_refuses_an_exception_for_everything_or_for_no_real_time() {
    let Some((cp, _)) = operator_cluster().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let api: Api<BinAuthzException> = Api::namespaced(cp.client().await, &ns);
    for (name, spec, expected) in [
        (
            "everything",
            exception_spec("*", "2030-01-01T00:00:00Z"),
            "names must not be '*'",
        ),
        (
            "no-time",
            exception_spec("checkout", "2030-02-31T00:00:00Z"),
            "spec.expiresAt",
        ),
    ] {
        let err = api
            .create(&PostParams::default(), &exception(name, spec))
            .await
            .expect_err("the API server refuses it");
        let text = err.to_string();
        assert!(text.contains(expected), "{name}: {text}");
    }
}

#[tokio::test]
async fn deleting_an_exception_enforces_at_once() {
    let Some(s) = scenario(&[]).await else {
        return;
    };
    let service = drifted_service(&s.emulator).await;
    let (_, expires_at) = expires_in(Duration::from_secs(24 * 3600));
    s.exceptions
        .create(
            &PostParams::default(),
            &exception("hotfix", exception_spec(&service, &expires_at)),
        )
        .await
        .expect("creating the exception");
    s.bindings
        .create(
            &PostParams::default(),
            &binding("strict", strict_services()),
        )
        .await
        .expect("creating the binding");
    eventually(
        "the binding reports the excepted service",
        PATIENCE,
        || async {
            let b = s.bindings.get("strict").await.map_err(|e| e.to_string())?;
            match b.status.as_ref().and_then(|st| st.summary) {
                Some(sum) if sum.excepted == 1 => Ok(()),
                _ => Err(format!("{:?}", b.status)),
            }
        },
    )
    .await;
    assert!(writes_to(&s.emulator, &service).await.is_empty());

    s.exceptions
        .delete("hotfix", &Default::default())
        .await
        .expect("deleting the exception");
    // The deletion queues a pass of the namespace's bindings of that project: the fix
    // follows without waiting for the binding's 10m interval.
    eventually(
        "the service is fixed once the exception is gone",
        PATIENCE,
        || async {
            let ba = s.emulator.binary_authorization(&full_name(&service)).await;
            if ba["policy"] == STRICT {
                Ok(())
            } else {
                Err(ba.to_string())
            }
        },
    )
    .await;
    let ended = event(s.cp, &s.ns, "ExceptionExpired", "strict").await;
    assert!(ended.note.unwrap_or_default().contains(&service));
    drop(s.operator);
}
