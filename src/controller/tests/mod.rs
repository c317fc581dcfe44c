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
use super::triggers::{pass_trigger, watch_backoff, WATCH_BACKOFF_MAX};
use super::{reconcile, Context, Error};
use crate::api::BinAuthzBinding;
use crate::cloudrun::{CloudRunClient, CloudRunConfig, RetryPolicy};
use crate::fleet::inventory::SharedInventory;
use crate::telemetry::{Health, Metrics, Telemetry};
pub(super) use crate::testing::binding;
use cloudrun_emulator::{Counters, EmulatorConfig, EmulatorHandle, Faults, Seed};

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
    let emulator = cloudrun_emulator::start(EmulatorConfig {
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
                } else if k == "effect" {
                    // `state/basis`: times and messages are the planner's tests' business.
                    assert!(v["message"].is_string(), "{v}");
                    *v = json!(format!(
                        "{}/{}",
                        v["state"].as_str().unwrap_or_default(),
                        v["basis"].as_str().unwrap_or_default()
                    ));
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
                       "superseded": 0, "conflicted": 0, "failed": 0, "deployBlocked": 0,
                       "notEffective": 0});
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
    // Whether the policy is in effect: the seeded revisions were created with the
    // resources' last change (effective); the operator's own write predates nothing new.
    match state {
        "Compliant" | "Breakglass" => t["effect"] = json!("Effective/UpdateTime"),
        "Remediated" => t["effect"] = json!("NotEffective/Remediation"),
        _ => {}
    }
    t
}

/// A target entry as a status written before any revision is read (the interim one).
fn without_effect(mut target: Value) -> Value {
    if let Some(t) = target.as_object_mut() {
        t.remove("effect");
    }
    target
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

mod failures;
mod lifecycle;
mod remediation;
