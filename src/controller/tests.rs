//! Passes against a mocked Kubernetes API (tower-test, controller-rs's ApiServerVerifier
//! pattern) and the real Cloud Run client talking to the in-process emulator: the exact
//! status patches and events of each kind of pass.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};

use super::leader::LeaderGate;
use super::{reconcile, Context, Error, WatchBackoff, WATCH_BACKOFF_MAX};
use crate::api::BinAuthzBinding;
use crate::cloudrun::{CloudRunClient, CloudRunConfig, RetryPolicy};
use crate::emulator::{self, Counters, EmulatorConfig, EmulatorHandle, Faults, Seed};
use crate::fleet::inventory::SharedInventory;
use crate::telemetry::{Health, Metrics, Telemetry};

const SEED: &str = r#"
projects:
  acme-sec:
    projectNumber: 345678901234
    policies:
      strict: {description: the security team's policy}
  acme-prod:
    projectNumber: 123456789012
    regions:
      us-central1:
        services:
          - name: checkout
            image: us-docker.pkg.dev/acme-prod/shop/checkout:1.0.0
            labels: {env: prod}
            binaryAuthorization: {useDefault: true}
          - name: search
            image: us-docker.pkg.dev/acme-prod/search/frontend:5.1.0
            labels: {env: prod}
"#;

/// A binding in namespace `team`, generation 1, over acme-prod/us-central1 services.
fn binding(name: &str, extra_spec: Value) -> BinAuthzBinding {
    let mut spec = json!({
        "project": "acme-prod",
        "locations": ["us-central1"],
        "targets": {"services": {"names": ["*"]}},
        "policy": {"useDefault": true},
    });
    for (k, v) in extra_spec.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    serde_json::from_value(json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "BinAuthzBinding",
        "metadata": {"name": name, "namespace": "team", "generation": 1, "uid": format!("uid-{name}")},
        "spec": spec,
    }))
    .unwrap()
}

/// One Kubernetes API call the pass made.
#[derive(Clone, Debug, PartialEq)]
enum Call {
    /// A server-side apply of the status, with its field manager and force flag.
    Status {
        binding: String,
        manager: String,
        force: bool,
        body: Value,
    },
    /// An events.k8s.io Event.
    Event {
        type_: String,
        reason: String,
        action: String,
        note: String,
        regarding: String,
    },
    /// Anything else (a test failure).
    Other(String),
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// Serves the mocked API server until the client is dropped, recording every call.
async fn api_server(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    bindings: BTreeMap<String, BinAuthzBinding>,
    calls: Calls,
) {
    while let Some((request, send)) = handle.next_request().await {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let path = uri.path().to_owned();
        let query = uri.query().unwrap_or("").to_owned();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let (call, response) = if method == Method::PATCH && path.ends_with("/status") {
            let name = path.rsplit('/').nth(1).unwrap().to_owned();
            let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let mut object = serde_json::to_value(&bindings[&name]).unwrap();
            object["status"] = body["status"].clone();
            (
                Call::Status {
                    binding: name,
                    manager: params.get("fieldManager").cloned().unwrap_or_default(),
                    force: params.get("force").map(String::as_str) == Some("true"),
                    body,
                },
                Response::builder()
                    .status(200)
                    .body(Body::from(serde_json::to_vec(&object).unwrap()))
                    .unwrap(),
            )
        } else if method == Method::POST && path == "/apis/events.k8s.io/v1/namespaces/team/events"
        {
            let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
            (
                Call::Event {
                    type_: text("type"),
                    reason: text("reason"),
                    action: text("action"),
                    note: text("note"),
                    regarding: body["regarding"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                },
                Response::builder()
                    .status(201)
                    .body(Body::from(bytes.to_vec()))
                    .unwrap(),
            )
        } else {
            (
                Call::Other(format!("{method} {path}?{query}")),
                Response::builder()
                    .status(404)
                    .body(Body::from(
                        serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not served by the test"})).unwrap(),
                    ))
                    .unwrap(),
            )
        };
        calls.lock().unwrap().push(call);
        send.send_response(response);
    }
}

struct Harness {
    emulator: EmulatorHandle,
    ctx: Arc<Context>,
    metrics: Arc<Metrics>,
    api: tokio::task::JoinHandle<()>,
    calls: Calls,
    _writer: Writer<BinAuthzBinding>,
}

async fn harness(faults: Faults, bindings: &[BinAuthzBinding], gate: LeaderGate) -> Harness {
    harness_with(SEED, faults, bindings, gate).await
}

async fn harness_with(
    seed: &str,
    faults: Faults,
    bindings: &[BinAuthzBinding],
    gate: LeaderGate,
) -> Harness {
    let emulator = emulator::start(EmulatorConfig {
        seed: Seed::from_yaml_str(seed).unwrap(),
        faults,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let mut config = CloudRunConfig::emulator(&emulator.url());
    config.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_attempts: 2,
        deadline: Duration::from_secs(5),
    };
    let client = CloudRunClient::new(config).await.unwrap();

    let (reader, mut writer) = reflector::store();
    for b in bindings {
        writer.apply_watcher_event(&watcher::Event::Apply(b.clone()));
    }
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let kube = Client::new(service, "default");
    let by_name = bindings
        .iter()
        .map(|b| (b.metadata.name.clone().unwrap(), b.clone()))
        .collect();
    let calls = Calls::default();
    let api = tokio::spawn(api_server(handle, by_name, Arc::clone(&calls)));
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(Context::new(
        kube,
        reader,
        SharedInventory::new(client, Duration::from_secs(20)),
        Telemetry {
            metrics: Arc::clone(&metrics),
            health: Health::new(),
        },
        gate,
        Reporter {
            controller: "binauthz-operator".into(),
            instance: Some("test".into()),
        },
    ));
    Harness {
        emulator,
        ctx,
        metrics,
        api,
        calls,
        _writer: writer,
    }
}

/// How long until the next pass `action` asks for (kube's `Action` has no getter; its
/// `Debug` shows the duration, e.g. `Some(599.992s)`).
fn requeue_after(action: &Action) -> Option<Duration> {
    let debug = format!("{action:?}");
    let inner = debug.split("Some(").nth(1)?.split(')').next()?;
    let (number, scale) = match inner.strip_suffix("ms") {
        Some(ms) => (ms, 1e-3),
        None => (inner.strip_suffix('s')?, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .map(|n| Duration::from_secs_f64(n * scale))
}

/// The pass asked to run again at the next tick of its 10 min interval: at most 10 min
/// away, and the harness's clock started less than a minute ago.
#[track_caller]
fn assert_next_tick(action: &Action) {
    let after = requeue_after(action);
    assert!(
        after.is_some_and(|d| d <= TEN_MINUTES && d > TEN_MINUTES - Duration::from_secs(60)),
        "expected a requeue at the next tick of 10 min, got {action:?}"
    );
}

impl Harness {
    async fn pass(&self, binding: &BinAuthzBinding) -> Result<Action, Error> {
        reconcile(Arc::new(binding.clone()), Arc::clone(&self.ctx)).await
    }

    /// The Kubernetes API calls so far.
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Stops the mocked API server and the emulator; returns the API calls, the
    /// emulator's counters and its final state.
    async fn finish(self) -> (Vec<Call>, Counters, Seed) {
        let Harness {
            emulator,
            ctx,
            api,
            calls,
            ..
        } = self;
        drop(ctx);
        api.await.unwrap();
        let counters = emulator.counters(None);
        let state = emulator.state();
        emulator.shutdown().await;
        let calls = calls.lock().unwrap().clone();
        (calls, counters, state)
    }
}

/// The status of a status call with every timestamp replaced by `<now>` (after checking it
/// is one).
/// `status.orgPolicy` of a project without the allowed-policies constraint.
fn org_policy_not_set(project: &str) -> Value {
    json!({
        "state": "NotSet",
        "message": format!("constraints/run.allowedBinaryAuthorizationPolicies does not restrict project {project}: nothing prevents a deploy without Binary Authorization"),
    })
}

fn status_of(call: &Call) -> Value {
    let Call::Status {
        manager,
        force,
        body,
        ..
    } = call
    else {
        panic!("expected a status write, got {call:?}");
    };
    assert_eq!(manager, "binauthz-operator");
    assert!(force, "the apply must be forced");
    assert_eq!(body["apiVersion"], "binauthz.dev/v1alpha1");
    assert_eq!(body["kind"], "BinAuthzBinding");
    let mut status = body["status"].clone();
    normalize(&mut status);
    status
}

fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "lastSyncTime" || k == "lastTransitionTime" {
                    let text = v.as_str().unwrap_or_default();
                    assert!(text.parse::<jiff::Timestamp>().is_ok(), "{k}: {text:?}");
                    *v = json!("<now>");
                } else {
                    normalize(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "<now>", "observedGeneration": 1})
}

fn summary(fields: Value) -> Value {
    let mut s = json!({"matched": 0, "compliant": 0, "remediated": 0, "drifted": 0, "breakglass": 0,
                       "superseded": 0, "conflicted": 0, "failed": 0, "deployBlocked": 0});
    for (k, v) in fields.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

fn target(name: &str, state: &str, observed: &str, desired: &str, message: &str) -> Value {
    let mut t = json!({"kind": "Service", "location": "us-central1", "name": name, "state": state,
                       "observed": observed, "desired": desired, "lastTransitionTime": "<now>"});
    if !message.is_empty() {
        t["message"] = json!(message);
    }
    t
}

fn event(type_: &str, reason: &str, action: &str, note: &str) -> Call {
    Call::Event {
        type_: type_.into(),
        reason: reason.into(),
        action: action.into(),
        note: note.into(),
        regarding: "prod".into(),
    }
}

fn binauthz_of(state: &Seed, name: &str) -> Value {
    let region = state.projects["acme-prod"].regions["us-central1"]
        .as_ref()
        .unwrap();
    let service = region.services.iter().find(|s| s.name == name).unwrap();
    serde_json::to_value(service).unwrap()["binaryAuthorization"].clone()
}

const TEN_MINUTES: Duration = Duration::from_secs(600);

/// `binding` as the watch delivers it after `call` wrote its status.
fn with_status(binding: &BinAuthzBinding, call: &Call) -> BinAuthzBinding {
    let Call::Status { body, .. } = call else {
        panic!("expected a status write, got {call:?}");
    };
    let mut b = binding.clone();
    b.status = Some(serde_json::from_value(body["status"].clone()).unwrap());
    b
}

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
            "targets": [
                target("search", "Drifted", "none", "default", "fix in progress: setting policy default (was none)"),
                target("checkout", "Compliant", "default", "default", ""),
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
            "summary": summary(json!({"matched": 2, "compliant": 2, "remediated": 1})),
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
                condition("Stalled", "False", "Drifted", "nothing needs a human to make progress"),
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

#[tokio::test]
async fn a_suspended_binding_makes_no_cloud_run_call() {
    let prod = binding("prod", json!({"suspend": true}));
    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::always(),
    )
    .await;
    assert_eq!(h.pass(&prod).await.unwrap(), Action::await_change());
    let (calls, counters, _) = h.finish().await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let message = "spec.suspend is true: the operator makes no Cloud Run calls for this binding";
    assert_eq!(
        status_of(&calls[0]),
        json!({
            "observedGeneration": 1,
            "conditions": [
                condition("Ready", "Unknown", "Suspended", message),
                condition("Reconciling", "False", "Suspended", "no remediation in flight"),
                condition("Stalled", "False", "Suspended", "nothing needs a human to make progress"),
            ],
            "targetsTruncated": false,
        })
    );
    assert_eq!((counters.reads, counters.writes), (0, 0));
}

#[tokio::test]
async fn a_reconcile_request_starts_a_pass_and_is_echoed_in_the_status() {
    let mut prod = binding(
        "prod",
        json!({"targets": {"services": {"names": ["checkout"]}}}),
    );
    let annotate = |b: &mut BinAuthzBinding, value: &str| {
        b.metadata.annotations = Some(BTreeMap::from([(
            crate::api::RECONCILE_REQUESTED_AT.to_owned(),
            value.to_owned(),
        )]));
    };
    let plain = prod.clone();
    annotate(&mut prod, "2026-12-02T09:00:00Z");
    // The watch starts a pass on a new annotation value, not on a status change.
    assert_ne!(super::pass_trigger(&plain), super::pass_trigger(&prod));
    let mut with_status_only = prod.clone();
    with_status_only.status = Some(Default::default());
    assert_eq!(
        super::pass_trigger(&prod),
        super::pass_trigger(&with_status_only)
    );

    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::always(),
    )
    .await;
    h.pass(&prod).await.unwrap();
    let calls = h.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(
        status_of(&calls[0])["lastHandledReconcileAt"],
        json!("2026-12-02T09:00:00Z")
    );
    // Handled: the same value again writes nothing; a new one is echoed.
    let mut written = with_status(&prod, &calls[0]);
    h.pass(&written).await.unwrap();
    assert_eq!(h.calls().len(), 1);
    annotate(&mut written, "again");
    h.pass(&written).await.unwrap();
    let (calls, _, _) = h.finish().await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(
        status_of(&calls[1])["lastHandledReconcileAt"],
        json!("again")
    );
}

#[tokio::test]
async fn a_standby_replica_reads_and_writes_nothing() {
    let prod = binding("prod", json!({}));
    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::fixed(false),
    )
    .await;
    assert_eq!(h.pass(&prod).await.unwrap(), Action::await_change());
    let (calls, counters, _) = h.finish().await;
    assert_eq!(calls, Vec::<Call>::new());
    assert_eq!((counters.reads, counters.writes), (0, 0));
}

#[tokio::test]
async fn bindings_over_one_project_share_one_list() {
    let a = binding(
        "prod",
        json!({"targets": {"services": {"names": ["checkout"]}}}),
    );
    let b = binding(
        "other",
        json!({"targets": {"services": {"names": ["search"]}}, "mode": "Audit"}),
    );
    let h = harness(
        Faults::default(),
        &[a.clone(), b.clone()],
        LeaderGate::always(),
    )
    .await;
    let (ra, rb) = tokio::join!(h.pass(&a), h.pass(&b));
    ra.unwrap();
    rb.unwrap();
    let (_, counters, _) = h.finish().await;
    let lists: u64 = counters
        .calls
        .iter()
        .filter(|c| c.method == "services.list")
        .map(|c| c.count)
        .sum();
    assert_eq!(lists, 1, "{counters:?}");
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
        5,
        "interim and final status, then three events: {calls:#?}"
    );
    let reasons: Vec<&str> = calls[2..]
        .iter()
        .map(|c| match c {
            Call::Event { reason, .. } => reason.as_str(),
            other => panic!("expected an event, got {other:?}"),
        })
        .collect();
    assert_eq!(reasons, ["Remediated", "Breakglass", "DeployBlocked"]);
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
    let status = status_of(&calls[1]);
    assert_eq!(
        status["summary"],
        summary(
            json!({"matched": 3, "compliant": 3, "remediated": 2, "breakglass": 1, "deployBlocked": 1})
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
}

#[test]
fn the_watch_retries_at_least_every_five_seconds_so_readiness_recovers_within_the_grace() {
    use kube::runtime::utils::Backoff as _;
    let mut backoff = WatchBackoff::default();
    let delays: Vec<Duration> = (&mut backoff).take(12).collect();
    assert!(
        delays[0] >= Duration::from_millis(250) && delays[0] <= Duration::from_millis(500),
        "{delays:?}"
    );
    assert!(delays.iter().all(|d| *d <= WATCH_BACKOFF_MAX), "{delays:?}");
    assert!(
        delays[8..].iter().all(|d| *d >= WATCH_BACKOFF_MAX / 2),
        "it grows to the cap: {delays:?}"
    );
    backoff.reset();
    assert!(backoff.next().unwrap() <= Duration::from_millis(500));
    // While the API server is away, an error is reported at least every
    // WATCH_BACKOFF_MAX (plus the failed attempt itself); the grace spans three of them.
    assert!(crate::telemetry::WATCH_ERROR_GRACE >= 3 * WATCH_BACKOFF_MAX);
}
