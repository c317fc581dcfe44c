//! The Cloud Run client over loopback HTTP: scripted fault sequences against a tiny local
//! server (exact call counts), and the full behaviour against the Cloud Run emulator.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use binauthz_operator::cloudrun::{
    ApiMethod, Budget, CallObserver, CallStatus, CloudRunClient, CloudRunConfig, Code, Error,
    RetryPolicy, Throttle,
};
use binauthz_operator::resource::{ResourceId, ResourceKind};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------
// Scripted server: answers each request with the next scripted response and records it.

#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

/// A response extension asking the scripted server to answer only after this long.
#[derive(Clone, Copy)]
struct Delay(Duration);

type Script = Arc<dyn Fn(usize, &Recorded) -> Response + Send + Sync>;

struct ScriptedServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl ScriptedServer {
    async fn start(script: impl Fn(usize, &Recorded) -> Response + Send + Sync + 'static) -> Self {
        let script: Script = Arc::new(script);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().fallback({
            let requests = Arc::clone(&requests);
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let script = Arc::clone(&script);
                let requests = Arc::clone(&requests);
                let counter = Arc::clone(&counter);
                async move {
                    let recorded = Recorded {
                        method,
                        uri,
                        headers,
                        body,
                        at: Instant::now(),
                    };
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    requests.lock().unwrap().push(recorded.clone());
                    let mut response = script(n, &recorded);
                    if let Some(Delay(delay)) = response.extensions_mut().remove::<Delay>() {
                        tokio::time::sleep(delay).await;
                    }
                    response
                }
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn google_error(status: StatusCode, code: &str, message: &str, details: Value) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "status": code, "details": details}})),
    )
        .into_response()
}

fn service(name: &str) -> Value {
    json!({
        "name": format!("projects/acme-prod/locations/us-central1/services/{name}"),
        "generation": "1",
        "etag": "\"e1\"",
        "template": {"containers": [{"image": "us-docker.pkg.dev/acme/app:1"}]}
    })
}

// ---------------------------------------------------------------------------------------
// A recording observer.

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(ApiMethod, CallStatus)>>,
    retries: Mutex<Vec<(ApiMethod, &'static str, Duration)>>,
    throttled: Mutex<Vec<(Throttle, Duration)>>,
    conflicts: AtomicUsize,
    rates: Mutex<Vec<(Budget, String, String, f64)>>,
}

impl CallObserver for Recorder {
    fn call(&self, method: ApiMethod, status: CallStatus, _latency: Duration) {
        self.calls.lock().unwrap().push((method, status));
    }
    fn retry(&self, method: ApiMethod, reason: &'static str, delay: Duration) {
        self.retries.lock().unwrap().push((method, reason, delay));
    }
    fn throttled(&self, throttle: Throttle, waited: Duration) {
        self.throttled.lock().unwrap().push((throttle, waited));
    }
    fn conflict(&self, _kind: ResourceKind) {
        self.conflicts.fetch_add(1, Ordering::SeqCst);
    }
    fn rate_changed(&self, budget: Budget, project: &str, location: &str, per_minute: f64) {
        self.rates
            .lock()
            .unwrap()
            .push((budget, project.into(), location.into(), per_minute));
    }
}

fn fast_config(url: &str) -> CloudRunConfig {
    let mut config = CloudRunConfig::emulator(url);
    config.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        max_attempts: 8,
        deadline: Duration::from_secs(30),
    };
    config.request_timeout = Duration::from_secs(10);
    config.operation.poll_interval = Duration::from_millis(10);
    config
}

async fn client(config: CloudRunConfig) -> (CloudRunClient, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let client = CloudRunClient::with_observer(config, recorder.clone())
        .await
        .unwrap();
    (client, recorder)
}

fn checkout() -> ResourceId {
    ResourceId {
        kind: ResourceKind::Service,
        project: "acme-prod".into(),
        location: "us-central1".into(),
        name: "checkout".into(),
    }
}

// ---------------------------------------------------------------------------------------
// Scripted tests.

#[tokio::test]
async fn a_503_storm_is_retried_until_it_passes() {
    let server = ScriptedServer::start(|n, _| {
        if n < 4 {
            google_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                json!([]),
            )
        } else {
            axum::Json(service("checkout")).into_response()
        }
    })
    .await;
    let (client, recorder) = client(fast_config(&server.url())).await;
    let live = client.get(&checkout()).await.unwrap();
    assert_eq!(live.observed.id, checkout());
    assert_eq!(server.requests().len(), 5);
    let retries = recorder.retries.lock().unwrap().clone();
    assert_eq!(retries.len(), 4);
    assert!(retries
        .iter()
        .all(|(m, reason, _)| *m == ApiMethod::GetService && *reason == "Unavailable"));
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 5);
    assert_eq!(calls[0].1.as_str(), "UNAVAILABLE");
    assert_eq!(calls[4].1.as_str(), "OK");
}

#[tokio::test]
async fn an_endless_storm_ends_with_the_last_error_after_max_attempts() {
    let server = ScriptedServer::start(|_, _| {
        google_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.",
            json!([]),
        )
    })
    .await;
    let mut config = fast_config(&server.url());
    config.retry.max_attempts = 3;
    let (client, _) = client(config).await;
    let err = client.get(&checkout()).await.unwrap_err();
    assert_eq!(err.reason(), "Internal");
    assert!(
        err.to_string().contains("Internal error encountered."),
        "{err}"
    );
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn permission_denied_is_surfaced_at_once() {
    let server = ScriptedServer::start(|_, _| {
        google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Permission 'run.services.get' denied on resource 'projects/acme-prod/locations/us-central1/services/checkout' (or it may not exist).",
            json!([]),
        )
    })
    .await;
    let (client, recorder) = client(fast_config(&server.url())).await;
    let err = client.get(&checkout()).await.unwrap_err();
    assert!(err.is_permission_denied(), "{err:?}");
    assert_eq!(err.code(), Some(Code::PermissionDenied));
    assert!(err.to_string().contains("run.services.get"));
    assert_eq!(server.requests().len(), 1, "a 403 must never be retried");
    assert!(recorder.retries.lock().unwrap().is_empty());
}

#[tokio::test]
async fn quota_exhaustion_waits_at_least_what_retry_info_asks() {
    let server = ScriptedServer::start(|n, _| {
        if n == 0 {
            google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per region' of service 'run.googleapis.com'.",
                json!([
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
                     "metadata": {"quota_metric": "run.googleapis.com/read_requests"}},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.300s"}
                ]),
            )
        } else {
            axum::Json(service("checkout")).into_response()
        }
    })
    .await;
    let (client, recorder) = client(fast_config(&server.url())).await;
    client.get(&checkout()).await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    // The retry came no sooner than the server asked (a lower bound: a slow machine only
    // makes the gap longer).
    assert!(requests[1].at - requests[0].at >= Duration::from_millis(300));
    let retries = recorder.retries.lock().unwrap().clone();
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].1, "QuotaExceeded");
    assert!(retries[0].2 >= Duration::from_millis(300));
}

#[tokio::test]
async fn retry_after_headers_are_honoured() {
    let server = ScriptedServer::start(|n, _| {
        if n == 0 {
            let mut response = google_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "try later",
                json!([]),
            );
            response
                .headers_mut()
                .insert("retry-after", "1".parse().unwrap());
            response
        } else {
            axum::Json(service("checkout")).into_response()
        }
    })
    .await;
    let (client, recorder) = client(fast_config(&server.url())).await;
    client.get(&checkout()).await.unwrap();
    let requests = server.requests();
    assert!(requests[1].at - requests[0].at >= Duration::from_secs(1));
    assert!(recorder.retries.lock().unwrap()[0].2 >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_server_delay_beyond_the_deadline_is_returned_not_slept() {
    let server = ScriptedServer::start(|_, _| {
        google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded",
            json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3600s"}]),
        )
    })
    .await;
    let (client, _) = client(fast_config(&server.url())).await;
    let err = client.get(&checkout()).await.unwrap_err();
    match &err {
        Error::QuotaExceeded { retry_after, .. } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(3600)))
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn requests_carry_the_user_agent_and_a_bearer_token_that_never_leaks() {
    let server = ScriptedServer::start(|_, _| {
        google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Resource 'checkout' of kind 'SERVICE' in region 'us-central1' in project 'acme-prod' does not exist.", json!([]))
    })
    .await;
    let (client, _) = client(fast_config(&server.url())).await;
    let err = client.get(&checkout()).await.unwrap_err();
    assert!(err.is_not_found());
    assert!(!err.is_retryable());
    let request = &server.requests()[0];
    assert_eq!(request.method, Method::GET);
    assert_eq!(
        request.uri.path(),
        "/v2/projects/acme-prod/locations/us-central1/services/checkout"
    );
    let auth = request.headers["authorization"].to_str().unwrap();
    let token = auth.strip_prefix("Bearer ").expect("a bearer token");
    assert!(!token.is_empty());
    assert_eq!(
        request.headers["user-agent"].to_str().unwrap(),
        format!("binauthz-operator/{}", env!("CARGO_PKG_VERSION"))
    );
    for text in [err.to_string(), format!("{err:?}"), format!("{client:?}")] {
        assert!(!text.contains(token), "token leaked into {text}");
    }
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried() {
    let server = ScriptedServer::start(|n, _| {
        let mut response = axum::Json(service("checkout")).into_response();
        if n == 0 {
            response
                .extensions_mut()
                .insert(Delay(Duration::from_secs(5)));
        }
        response
    })
    .await;
    let mut config = fast_config(&server.url());
    config.request_timeout = Duration::from_millis(200);
    let (client, recorder) = client(config).await;
    client.get(&checkout()).await.unwrap();
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(calls[0].1, CallStatus::Timeout);
    assert_eq!(calls.last().unwrap().1.as_str(), "OK");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transport_error() {
    // Bind then drop a listener: nothing listens on that port any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = fast_config(&format!("http://{addr}"));
    config.retry.max_attempts = 2;
    let (client, recorder) = client(config).await;
    let err = client.get(&checkout()).await.unwrap_err();
    assert_eq!(err.reason(), "Transport", "{err}");
    assert!(err.is_retryable());
    assert_eq!(recorder.calls.lock().unwrap().len(), 2);
    assert!(!err.to_string().contains('\n'));
}

#[tokio::test]
async fn lists_follow_page_tokens_and_send_page_size() {
    let server = ScriptedServer::start(|_, request| {
        let query = request.uri.query().unwrap_or("");
        let page: usize = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("pageToken="))
            .map_or(0, |t| t.trim_start_matches("p").parse().unwrap());
        let items: Vec<Value> = (0..3).map(|i| service(&format!("s-{page}-{i}"))).collect();
        let mut body = json!({"services": items});
        if page < 2 {
            body["nextPageToken"] = json!(format!("p{}", page + 1));
        }
        axum::Json(body).into_response()
    })
    .await;
    let (client, _) = client(fast_config(&server.url())).await;
    let all = client
        .list_all("acme-prod", "us-central1", ResourceKind::Service)
        .await
        .unwrap();
    assert_eq!(all.len(), 9);
    assert_eq!(all[8].observed.id.name, "s-2-2");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[0].uri.query().unwrap().contains("pageSize=100"));
    assert!(!requests[0].uri.query().unwrap().contains("pageToken"));
    assert!(requests[2].uri.query().unwrap().contains("pageToken=p2"));
}

#[tokio::test]
async fn a_repeated_page_token_ends_the_list_with_an_error() {
    let server = ScriptedServer::start(|_, _| {
        axum::Json(json!({"services": [service("a")], "nextPageToken": "same"})).into_response()
    })
    .await;
    let (client, _) = client(fast_config(&server.url())).await;
    let err = client
        .list_all("acme-prod", "us-central1", ResourceKind::Service)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Decode");
    assert!(err.to_string().contains("same page token"), "{err}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn regions_and_policy_answers_are_cached() {
    let server = ScriptedServer::start(|_, request| {
        let path = request.uri.path();
        if path == "/v1/projects/acme-prod/locations" {
            axum::Json(json!({"locations": [
                {"name": "projects/acme-prod/locations/us-central1", "locationId": "us-central1"},
                {"name": "projects/acme-prod/locations/europe-west1", "locationId": "europe-west1"}
            ]}))
            .into_response()
        } else if path.ends_with("/policies/strict") {
            axum::Json(json!({"name": path.trim_start_matches("/v1/"), "cloudRunPolicy": {}}))
                .into_response()
        } else {
            google_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "policy not found",
                json!([]),
            )
        }
    })
    .await;
    let (client, _) = client(fast_config(&server.url())).await;
    for _ in 0..3 {
        assert_eq!(
            client.regions("acme-prod").await.unwrap(),
            ["europe-west1", "us-central1"]
        );
    }
    let strict = binauthz_operator::policy::PolicyName::parse(
        "projects/acme-sec/platforms/cloudRun/policies/strict",
    )
    .unwrap();
    let missing = binauthz_operator::policy::PolicyName::parse(
        "projects/acme-sec/platforms/cloudRun/policies/missing",
    )
    .unwrap();
    for _ in 0..3 {
        assert!(client.policy_exists(&strict).await.unwrap());
        assert!(!client.policy_exists(&missing).await.unwrap());
    }
    let paths: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.uri.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "/v1/projects/acme-prod/locations",
            "/v1/projects/acme-sec/platforms/cloudRun/policies/strict",
            "/v1/projects/acme-sec/platforms/cloudRun/policies/missing",
        ]
    );
}

#[tokio::test]
async fn the_write_rate_throttles_and_reports_its_waits() {
    // 60 writes/min with a burst of 6: the 7th write in a row waits for the limiter.
    let server = ScriptedServer::start(|_, request| {
        if request.method == Method::PATCH {
            google_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "rejected",
                json!([]),
            )
        } else {
            axum::Json(service("checkout")).into_response()
        }
    })
    .await;
    let mut config = fast_config(&server.url());
    config.rate_limits.writes_per_minute = std::num::NonZeroU32::new(60).unwrap();
    let (client, recorder) = client(config).await;
    let remediation = binauthz_operator::resource::Remediation {
        desired: binauthz_operator::policy::DesiredPolicy::ProjectDefault,
        breakglass: binauthz_operator::resource::BreakglassChange::Keep,
    };
    for _ in 0..7 {
        let err = client
            .remediate(&checkout(), &remediation)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidArgument");
    }
    let throttled = recorder.throttled.lock().unwrap().clone();
    assert!(
        throttled
            .iter()
            .any(|(t, waited)| *t == Throttle::WriteRate && !waited.is_zero()),
        "{throttled:?}"
    );
    assert!(throttled.iter().all(|(t, _)| *t != Throttle::ReadRate));
}

#[tokio::test]
async fn a_write_waiting_for_its_regions_budget_holds_no_write_slot() {
    // One write slot and 1 write per minute per region. us-central1's second write waits a
    // minute for its region's budget; a write to europe-west1 must not queue behind it.
    let server = ScriptedServer::start(|_, request| {
        let path = request.uri.path();
        if request.method == Method::PATCH {
            let name = path.trim_start_matches("/v2/");
            axum::Json(json!({"name": format!("{name}/operations/op"), "done": true}))
                .into_response()
        } else {
            let name = path.rsplit('/').next().unwrap_or_default();
            let mut body = service(name);
            body["name"] = json!(path.trim_start_matches("/v2/"));
            axum::Json(body).into_response()
        }
    })
    .await;
    let mut config = fast_config(&server.url());
    config.rate_limits.writes_per_minute = std::num::NonZeroU32::new(1).unwrap();
    config.rate_limits.max_concurrent_writes = std::num::NonZeroUsize::new(1).unwrap();
    let (client, _) = client(config).await;
    let in_region = |location: &str, name: &str| ResourceId {
        location: location.into(),
        name: name.into(),
        ..checkout()
    };
    let fix = default_policy(binauthz_operator::resource::BreakglassChange::Keep);
    let first = client
        .remediate(&in_region("us-central1", "a"), &fix)
        .await
        .unwrap();
    assert!(
        matches!(
            first,
            binauthz_operator::cloudrun::RemediationOutcome::Applied { .. }
        ),
        "{first:?}"
    );

    let waiting = tokio::spawn({
        let (client, fix) = (client.clone(), fix.clone());
        async move { client.remediate(&in_region("us-central1", "b"), &fix).await }
    });
    // The second us-central1 write reads its resource, then waits for its region's budget
    // (the budget before a write slot): once its read has been served it waits.
    crate::support::wait::eventually(
        "the second us-central1 write read its resource",
        Duration::from_secs(30),
        || async {
            server.requests().iter().any(|r| {
                r.method == Method::GET
                    && r.uri.path() == "/v2/projects/acme-prod/locations/us-central1/services/b"
            })
        },
    )
    .await;
    let other_region = tokio::time::timeout(
        Duration::from_secs(30),
        client.remediate(&in_region("europe-west1", "c"), &fix),
    )
    .await
    .expect("the europe-west1 write went while us-central1's waited for its budget")
    .unwrap();
    assert!(
        matches!(
            other_region,
            binauthz_operator::cloudrun::RemediationOutcome::Applied { .. }
        ),
        "{other_region:?}"
    );
    assert!(
        !waiting.is_finished(),
        "us-central1's second write still waits"
    );
    waiting.abort();
    let patched: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.method == Method::PATCH)
        .map(|r| r.uri.path().to_owned())
        .collect();
    assert_eq!(
        patched,
        [
            "/v2/projects/acme-prod/locations/us-central1/services/a",
            "/v2/projects/acme-prod/locations/europe-west1/services/c"
        ]
    );
}

fn default_policy(
    breakglass: binauthz_operator::resource::BreakglassChange,
) -> binauthz_operator::resource::Remediation {
    binauthz_operator::resource::Remediation {
        desired: binauthz_operator::policy::DesiredPolicy::ProjectDefault,
        breakglass,
    }
}

fn body_of(request: &Recorded) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

#[tokio::test]
async fn a_stale_etag_is_re_read_and_the_write_retried_with_the_new_etag() {
    // GET (etag e1) → PATCH 409 → GET (etag e2: someone deployed meanwhile) → PATCH →
    // operation not done → :wait → done.
    let patches = Arc::new(AtomicUsize::new(0));
    let server = ScriptedServer::start({
        let patches = Arc::clone(&patches);
        move |_, request| {
            let path = request.uri.path();
            match (request.method.as_str(), path) {
                ("GET", "/v2/projects/acme-prod/locations/us-central1/services/checkout") => {
                    let mut s = service("checkout");
                    s["binaryAuthorization"] = json!({"useDefault": false, "breakglassJustification": "INC-7"});
                    if patches.load(Ordering::SeqCst) > 0 {
                        s["etag"] = json!("\"e2\"");
                        s["template"]["containers"][0]["image"] = json!("us-docker.pkg.dev/acme/app:2");
                    }
                    axum::Json(s).into_response()
                }
                ("PATCH", _) => {
                    patches.fetch_add(1, Ordering::SeqCst);
                    if body_of(request)["etag"] == json!("\"e1\"") {
                        google_error(StatusCode::CONFLICT, "ABORTED", "Conflict for resource 'checkout': version '1' was specified but current version is '2'.", json!([]))
                    } else {
                        axum::Json(json!({"name": "projects/acme-prod/locations/us-central1/operations/op-1", "done": false})).into_response()
                    }
                }
                ("POST", "/v2/projects/acme-prod/locations/us-central1/operations/op-1:wait") => {
                    let mut s = service("checkout");
                    s["binaryAuthorization"] = json!({"useDefault": true, "breakglassJustification": "INC-7"});
                    axum::Json(json!({"name": "projects/acme-prod/locations/us-central1/operations/op-1", "done": true,
                        "response": s})).into_response()
                }
                _ => StatusCode::IM_A_TEAPOT.into_response(),
            }
        }
    })
    .await;
    let (client, recorder) = client(fast_config(&server.url())).await;
    let outcome = client
        .remediate(
            &checkout(),
            &default_policy(binauthz_operator::resource::BreakglassChange::Keep),
        )
        .await
        .unwrap();
    match outcome {
        binauthz_operator::cloudrun::RemediationOutcome::Applied {
            resource: Some(after),
        } => {
            assert_eq!(
                after.policy,
                binauthz_operator::policy::ObservedPolicy::ProjectDefault
            );
            assert_eq!(after.breakglass.as_deref(), Some("INC-7"));
        }
        other => panic!("expected Applied, got {other:?}"),
    }
    assert_eq!(recorder.conflicts.load(Ordering::SeqCst), 1);
    let requests = server.requests();
    let summary: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri.path()))
        .collect();
    assert_eq!(
        summary,
        [
            "GET /v2/projects/acme-prod/locations/us-central1/services/checkout",
            "PATCH /v2/projects/acme-prod/locations/us-central1/services/checkout",
            "GET /v2/projects/acme-prod/locations/us-central1/services/checkout",
            "PATCH /v2/projects/acme-prod/locations/us-central1/services/checkout",
            "POST /v2/projects/acme-prod/locations/us-central1/operations/op-1:wait",
        ]
    );
    let second_patch = &requests[3];
    assert_eq!(
        second_patch.uri.query(),
        Some("updateMask=binaryAuthorization")
    );
    assert_eq!(
        body_of(second_patch),
        json!({"binaryAuthorization": {"useDefault": true, "breakglassJustification": "INC-7"}, "etag": "\"e2\""})
    );
    assert_eq!(body_of(&requests[4]), json!({"timeout": "10s"}));
}

#[tokio::test]
async fn a_failed_operation_is_reported_with_googles_message() {
    // :wait is not implemented here: the client falls back to polling GET.
    let server = ScriptedServer::start(|n, request| match request.method.as_str() {
        "GET" if request.uri.path().contains("/services/") => axum::Json(service("checkout")).into_response(),
        "PATCH" => axum::Json(json!({"name": "projects/acme-prod/locations/us-central1/operations/op-9", "done": false})).into_response(),
        "POST" => google_error(StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED", "wait is not supported", json!([])),
        "GET" if n < 5 => axum::Json(json!({"name": "projects/acme-prod/locations/us-central1/operations/op-9", "done": false})).into_response(),
        "GET" => axum::Json(json!({"name": "projects/acme-prod/locations/us-central1/operations/op-9", "done": true,
            "error": {"code": 9, "message": "Revision checkout-00002 is not ready and cannot serve traffic.", "details": []}})).into_response(),
        _ => StatusCode::IM_A_TEAPOT.into_response(),
    })
    .await;
    let (client, _) = client(fast_config(&server.url())).await;
    let err = client
        .remediate(
            &checkout(),
            &default_policy(binauthz_operator::resource::BreakglassChange::Clear),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "OperationFailed");
    assert_eq!(err.code(), Some(Code::FailedPrecondition));
    let text = err.to_string();
    assert!(
        text.contains("op-9") && text.contains("is not ready and cannot serve traffic"),
        "{text}"
    );
    // Service writes carry only binaryAuthorization (and the etag read).
    let patch = server
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH)
        .unwrap();
    assert_eq!(
        body_of(&patch),
        json!({"binaryAuthorization": {"useDefault": true}, "etag": "\"e1\""})
    );
}

#[tokio::test]
async fn an_operation_still_running_at_the_deadline_is_pending() {
    let server = ScriptedServer::start(|_, request| match request.method.as_str() {
        "GET" if request.uri.path().contains("/services/") => axum::Json(service("checkout")).into_response(),
        _ => axum::Json(json!({"name": "projects/acme-prod/locations/us-central1/operations/op-slow", "done": false})).into_response(),
    })
    .await;
    let mut config = fast_config(&server.url());
    config.operation.wait_timeout = Duration::from_millis(50);
    config.operation.deadline = Duration::from_millis(300);
    let (client, _) = client(config).await;
    let outcome = client
        .remediate(
            &checkout(),
            &default_policy(binauthz_operator::resource::BreakglassChange::Keep),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        binauthz_operator::cloudrun::RemediationOutcome::Pending {
            operation: "projects/acme-prod/locations/us-central1/operations/op-slow".into()
        }
    );
}

#[tokio::test]
async fn a_job_is_written_back_whole_with_only_binary_authorization_changed() {
    let job = json!({
        "name": "projects/acme-prod/locations/us-central1/jobs/nightly-export",
        "uid": "5d0c",
        "generation": "12",
        "observedGeneration": "12",
        "etag": "\"job-12\"",
        "labels": {"tier": "batch"},
        "annotations": {"owner": "data"},
        "createTime": "2026-01-02T03:04:05.123456789Z",
        "launchStage": "GA",
        "binaryAuthorization": {"useDefault": false},
        "template": {"taskCount": 4, "template": {
            "containers": [{"image": "us-docker.pkg.dev/acme/jobs/export:2.3.1", "env": [{"name": "A", "value": "1"}]}],
            "maxRetries": 3, "timeout": "600s"}},
        "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": "2026-11-27T02:10:00Z"},
        "executionCount": 41,
        "latestCreatedExecution": {"name": "nightly-export-abcde", "completionTime": "2026-11-27T02:10:00Z"},
        "aFieldFromTheFuture": {"x": [1, 2.5, null]}
    });
    let server = ScriptedServer::start({
        let job = job.clone();
        move |_, request| match request.method.as_str() {
            "GET" => axum::Json(job.clone()).into_response(),
            _ => axum::Json(json!({"name": "projects/acme-prod/locations/us-central1/operations/op-j", "done": true,
                "response": {"name": job["name"], "binaryAuthorization": {"useDefault": true}}})).into_response(),
        }
    })
    .await;
    let (client, _) = client(fast_config(&server.url())).await;
    let id = ResourceId {
        kind: ResourceKind::Job,
        name: "nightly-export".into(),
        ..checkout()
    };
    let outcome = client
        .remediate(
            &id,
            &default_policy(binauthz_operator::resource::BreakglassChange::Keep),
        )
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        binauthz_operator::cloudrun::RemediationOutcome::Applied { .. }
    ));
    let patch = server
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH)
        .unwrap();
    assert_eq!(patch.uri.query(), None, "jobs take no updateMask");
    let mut want = job.clone();
    want["binaryAuthorization"] = json!({"useDefault": true});
    assert_eq!(body_of(&patch), want);
}

// ---------------------------------------------------------------------------------------
// Adaptive rates: Cloud Run's real 429 (no RetryInfo) lowers the lane's rate.

/// A per-minute quota as a token bucket (`capacity` at once, refilled at `per_minute`),
/// answering 429 as Google does: ErrorInfo RATE_LIMIT_EXCEEDED with the quota metric and
/// limit, a Help link, and no RetryInfo or QuotaFailure.
struct Quota {
    per_minute: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
    /// Every request admitted so far, and when.
    admitted: Vec<Instant>,
    refused: usize,
    /// `quota_limit_value` in the answer.
    name_the_limit: bool,
    /// The quota was raised: every request passes.
    lifted: bool,
}

impl Quota {
    fn new(per_minute: f64, capacity: f64, name_the_limit: bool) -> Self {
        Self {
            per_minute,
            capacity,
            tokens: capacity,
            last: Instant::now(),
            admitted: Vec::new(),
            refused: 0,
            name_the_limit,
            lifted: false,
        }
    }

    fn take(&mut self) -> Option<Response> {
        let now = Instant::now();
        self.tokens = (self.tokens
            + now.duration_since(self.last).as_secs_f64() * self.per_minute / 60.0)
            .min(self.capacity);
        self.last = now;
        if self.lifted || self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.admitted.push(now);
            return None;
        }
        self.refused += 1;
        let mut metadata = json!({
            "quota_metric": "run.googleapis.com/read_regional",
            "quota_limit": "ReadPerMinutePerProjectRegion",
            "quota_location": "us-central1",
            "consumer": "projects/123456789",
            "service": "run.googleapis.com"
        });
        if self.name_the_limit {
            metadata["quota_limit_value"] = json!(format!("{}", self.per_minute));
        }
        Some(google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per region' of service 'run.googleapis.com' for consumer 'project_number:123456789'.",
            json!([
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                 "domain": "googleapis.com", "metadata": metadata},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [
                    {"description": "Request a higher quota limit.", "url": "https://cloud.google.com/docs/quotas/help/request_increase"}]}
            ]),
        ))
    }
}

async fn quota_server(quota: Arc<Mutex<Quota>>) -> ScriptedServer {
    ScriptedServer::start(move |_, _| {
        let refused = quota.lock().unwrap().take();
        refused.unwrap_or_else(|| axum::Json(service("checkout")).into_response())
    })
    .await
}

/// `n` reads of one service, 4 at a time; every one must succeed in the end.
async fn reads(client: &CloudRunClient, n: usize) {
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|_| async { client.get(&checkout()).await })
        .buffer_unordered(4)
        .collect()
        .await;
    for result in results {
        result.unwrap();
    }
}

/// Most requests admitted within any 60-second-equivalent window of `window`.
fn busiest(admitted: &[Instant], window: Duration) -> usize {
    (0..admitted.len())
        .map(|i| {
            admitted[i..]
                .iter()
                .take_while(|t| t.duration_since(admitted[i]) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_429_without_retry_info_lowers_the_rate_to_the_named_limit_and_it_recovers_when_raised() {
    // The client is configured for 12,000 reads a minute; the project's real quota is
    // 6,000 (100/s, a bucket of 100). Google's 429 names the limit but sets no RetryInfo.
    let quota = Arc::new(Mutex::new(Quota::new(6000.0, 100.0, true)));
    let server = quota_server(Arc::clone(&quota)).await;
    let mut config = fast_config(&server.url());
    config.rate_limits.reads_per_minute = std::num::NonZeroU32::new(12_000).unwrap();
    config.adaptive_rate.recovery_percent = std::num::NonZeroU32::new(2000).unwrap();
    config.adaptive_rate.learned_limit_ttl = Duration::from_secs(8);
    let (client, recorder) = client(config).await;
    let started = Instant::now();
    reads(&client, 400).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the learned limit still holds"
    );
    let rate = client.effective_rate(Budget::Read, "acme-prod", "us-central1");
    assert_eq!(rate, 5400.0, "90 % of the limit Google named");
    let (refused, admitted) = {
        let q = quota.lock().unwrap();
        (q.refused, q.admitted.clone())
    };
    assert!(
        refused <= 12,
        "{refused} 429s for 400 reads (at most 3 %): the client converged"
    );
    // Once lowered, the client stays under the quota: no second wave of 429s, and no
    // one-second window (a minute scaled by 60) above the server's rate plus its bucket.
    let retries = recorder.retries.lock().unwrap().clone();
    assert!(retries
        .iter()
        .all(|(_, reason, _)| *reason == "QuotaExceeded"));
    let busiest = busiest(&admitted[100..], Duration::from_secs(1));
    assert!(
        busiest <= 100 + 100,
        "{busiest} reads admitted within a second"
    );
    let rates = recorder.rates.lock().unwrap().clone();
    assert_eq!(
        rates.first(),
        Some(&(
            Budget::Read,
            "acme-prod".to_owned(),
            "us-central1".to_owned(),
            5400.0
        )),
        "the decrease is reported: {rates:?}"
    );
    assert_eq!(
        client.effective_rate(Budget::Write, "acme-prod", "us-central1"),
        30.0
    );

    // The quota is raised; once the learned limit expires, successes bring the rate back
    // to the configured 12,000, additively.
    quota.lock().unwrap().lifted = true;
    // (The limit was learned at the last 429, shortly after the start.)
    tokio::time::sleep(Duration::from_secs(9).saturating_sub(started.elapsed())).await;
    reads(&client, 600).await;
    let recovered = client.effective_rate(Budget::Read, "acme-prod", "us-central1");
    assert_eq!(recovered, 12_000.0);
    let rates = recorder.rates.lock().unwrap().clone();
    let after: Vec<f64> = rates.iter().skip(1).map(|r| r.3).collect();
    assert!(after.len() > 20, "{after:?}");
    assert!(
        after.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] < 600.0),
        "recovery is additive, by small steps: {after:?}"
    );
    assert_eq!(quota.lock().unwrap().refused, refused);
}

#[tokio::test]
async fn a_429_naming_no_limit_halves_the_rate_once_per_overload() {
    let quota = Arc::new(Mutex::new(Quota::new(3000.0, 50.0, false)));
    let server = quota_server(Arc::clone(&quota)).await;
    let mut config = fast_config(&server.url());
    config.rate_limits.reads_per_minute = std::num::NonZeroU32::new(6000).unwrap();
    let (client, recorder) = client(config).await;
    reads(&client, 300).await;
    let refused = quota.lock().unwrap().refused;
    assert!(refused <= 15, "{refused} 429s for 300 reads (at most 5 %)");
    let rates: Vec<f64> = recorder.rates.lock().unwrap().iter().map(|r| r.3).collect();
    // 4 reads were in flight when the first 429 came: one halving, not four.
    assert_eq!(rates.first(), Some(&3000.0), "{rates:?}");
    assert!(
        rates.iter().all(|r| *r >= 750.0),
        "the rate never collapses (at most three halvings in all): {rates:?}"
    );
    // Recovery probes back up slowly (5 % of the configured rate per minute of traffic).
    let rate = client.effective_rate(Budget::Read, "acme-prod", "us-central1");
    assert!(rate < 3300.0, "{rate}");
}

// ---------------------------------------------------------------------------------------
// Jobs are read right before their whole-object write.

fn job(image: &str, etag: &str, binary_authorization: Value) -> Value {
    json!({
        "name": "projects/acme-prod/locations/us-central1/jobs/nightly",
        "generation": "3",
        "etag": etag,
        "binaryAuthorization": binary_authorization,
        "template": {"template": {"containers": [{"image": image}]}}
    })
}

/// A Cloud Run stand-in that does NOT check job etags: a write replaces the job whatever
/// etag it carries (whether the real service checks them is unverified).
async fn etag_blind_jobs(state: Arc<Mutex<Value>>) -> ScriptedServer {
    ScriptedServer::start(move |_, request| {
        let path = request.uri.path();
        match request.method.as_str() {
            "GET" if path.ends_with("/jobs") => {
                axum::Json(json!({"jobs": [state.lock().unwrap().clone()]})).into_response()
            }
            "GET" => axum::Json(state.lock().unwrap().clone()).into_response(),
            "PATCH" => {
                let mut written = body_of(request);
                written["etag"] = json!("\"after-write\"");
                *state.lock().unwrap() = written.clone();
                axum::Json(
                    json!({"name": "projects/acme-prod/locations/us-central1/operations/op-j",
                    "done": true, "response": written}),
                )
                .into_response()
            }
            _ => StatusCode::IM_A_TEAPOT.into_response(),
        }
    })
    .await
}

#[tokio::test]
async fn a_deploy_between_the_list_and_the_write_survives_a_server_blind_to_job_etags() {
    let state = Arc::new(Mutex::new(job(
        "us-docker.pkg.dev/acme/jobs/nightly:1",
        "\"j1\"",
        json!({"useDefault": false}),
    )));
    let server = etag_blind_jobs(Arc::clone(&state)).await;
    let (client, _) = client(fast_config(&server.url())).await;
    let listed = client
        .list_all("acme-prod", "us-central1", ResourceKind::Job)
        .await
        .unwrap();
    // A user deploys a new image after the list, before the write.
    let deployed = "us-docker.pkg.dev/acme/jobs/nightly:2";
    *state.lock().unwrap() = job(deployed, "\"j2\"", json!({"useDefault": false}));
    let outcome = client
        .remediate_listed(
            &listed[0],
            &default_policy(binauthz_operator::resource::BreakglassChange::Keep),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            binauthz_operator::cloudrun::RemediationOutcome::Applied { .. }
        ),
        "{outcome:?}"
    );
    let requests = server.requests();
    let summary: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri.path()))
        .collect();
    assert_eq!(
        summary,
        [
            "GET /v2/projects/acme-prod/locations/us-central1/jobs",
            "GET /v2/projects/acme-prod/locations/us-central1/jobs/nightly",
            "PATCH /v2/projects/acme-prod/locations/us-central1/jobs/nightly",
        ]
    );
    let written = body_of(&requests[2]);
    assert_eq!(
        written,
        job(deployed, "\"j2\"", json!({"useDefault": true})),
        "the copy read right before the write, with only binaryAuthorization changed"
    );
    assert_eq!(
        state.lock().unwrap()["template"]["template"]["containers"][0]["image"],
        deployed,
        "the user's deploy is not reverted"
    );
}

#[tokio::test]
async fn a_job_fixed_since_the_list_is_not_written_and_a_compliant_listed_job_is_not_read() {
    let state = Arc::new(Mutex::new(job(
        "us-docker.pkg.dev/acme/jobs/nightly:1",
        "\"j1\"",
        json!({}),
    )));
    let server = etag_blind_jobs(Arc::clone(&state)).await;
    let (client, _) = client(fast_config(&server.url())).await;
    let listed = client
        .list_all("acme-prod", "us-central1", ResourceKind::Job)
        .await
        .unwrap();
    *state.lock().unwrap() = job(
        "us-docker.pkg.dev/acme/jobs/nightly:1",
        "\"j2\"",
        json!({"useDefault": true}),
    );
    let fix = default_policy(binauthz_operator::resource::BreakglassChange::Keep);
    let outcome = client.remediate_listed(&listed[0], &fix).await.unwrap();
    assert_eq!(
        outcome,
        binauthz_operator::cloudrun::RemediationOutcome::AlreadySatisfied
    );
    let compliant = client
        .list_all("acme-prod", "us-central1", ResourceKind::Job)
        .await
        .unwrap();
    let outcome = client.remediate_listed(&compliant[0], &fix).await.unwrap();
    assert_eq!(
        outcome,
        binauthz_operator::cloudrun::RemediationOutcome::AlreadySatisfied
    );
    let methods: Vec<String> = server
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri.path().rsplit('/').next().unwrap()))
        .collect();
    assert_eq!(methods, ["GET jobs", "GET nightly", "GET jobs"]);
}

// ---------------------------------------------------------------------------------------
// Named policies and the organization policy constraint.

const BCID: &str = "projects/bcid-cloud-run-policy/platforms/cloudRun/policies/bcidManagedPolicy";

#[tokio::test]
async fn policy_checks_tell_missing_from_unverifiable_and_never_read_googles_policy() {
    let server = ScriptedServer::start(|_, request| {
        let path = request.uri.path();
        if path.starts_with("/v1/projects/acme-sec/") && path.ends_with("/strict") {
            axum::Json(json!({"name": path.trim_start_matches("/v1/")})).into_response()
        } else if path.starts_with("/v1/projects/acme-sec/") {
            google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Requested entity was not found.", json!([]))
        } else {
            let name = path.trim_start_matches("/v1/");
            google_error(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                &format!("Permission 'binaryauthorization.platformPolicies.get' denied on resource '{name}' (or resource may not exist)."),
                json!([]),
            )
        }
    })
    .await;
    let (client, _) = client(fast_config(&server.url())).await;
    let name = |n: &str| binauthz_operator::policy::PolicyName::parse(n).unwrap();
    let strict = name("projects/acme-sec/platforms/cloudRun/policies/strict");
    let missing = name("projects/acme-sec/platforms/cloudRun/policies/missing");
    let foreign = name("projects/other-org/platforms/cloudRun/policies/strict");
    let bcid = name(BCID);
    for _ in 0..2 {
        assert!(matches!(
            client.policy_check(&strict).await.unwrap(),
            binauthz_operator::cloudrun::PolicyCheck::Exists
        ));
        assert!(matches!(
            client.policy_check(&missing).await.unwrap(),
            binauthz_operator::cloudrun::PolicyCheck::NotFound
        ));
        match client.policy_check(&foreign).await.unwrap() {
            binauthz_operator::cloudrun::PolicyCheck::Unverifiable { error } => {
                assert!(error.is_permission_denied(), "{error}");
                assert!(
                    error
                        .to_string()
                        .contains("binaryauthorization.platformPolicies.get"),
                    "{error}"
                );
            }
            other => panic!("expected Unverifiable, got {other:?}"),
        }
        assert!(matches!(
            client.policy_check(&bcid).await.unwrap(),
            binauthz_operator::cloudrun::PolicyCheck::GoogleManaged
        ));
    }
    // policy_exists keeps its meaning: Google's policy exists, an unreadable one is an error.
    assert!(client.policy_exists(&bcid).await.unwrap());
    assert!(client
        .policy_exists(&foreign)
        .await
        .unwrap_err()
        .is_permission_denied());
    let paths: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.uri.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "/v1/projects/acme-sec/platforms/cloudRun/policies/strict",
            "/v1/projects/acme-sec/platforms/cloudRun/policies/missing",
            "/v1/projects/other-org/platforms/cloudRun/policies/strict",
        ],
        "each read once (cached), Google's managed policy never"
    );
}

#[tokio::test]
async fn the_effective_org_policy_is_read_typed_and_cached_from_its_own_endpoint() {
    let orgpolicy = ScriptedServer::start(|_, request| {
        let path = request.uri.path();
        let project = path
            .strip_prefix("/v2/projects/")
            .and_then(|p| p.split('/').next())
            .unwrap_or_default();
        let name = format!("projects/{project}/policies/run.allowedBinaryAuthorizationPolicies");
        match project {
            "acme-prod" => axum::Json(json!({"name": name, "spec": {
                "etag": "CKq", "updateTime": "2026-11-01T00:00:00Z",
                "rules": [{"values": {"allowedValues": [format!("is:{BCID}")]}}]}}))
            .into_response(),
            "acme-dev" => axum::Json(json!({"name": name})).into_response(),
            _ => google_error(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                &format!("Permission 'orgpolicy.policy.get' denied on resource '{name}' (or it may not exist)."),
                json!([]),
            ),
        }
    })
    .await;
    // Cloud Run itself is elsewhere (nothing listens there): the Org Policy API has its own
    // endpoint.
    let args = binauthz_operator::cloudrun::CloudRunArgs {
        cloud_run_endpoint: Some("127.0.0.1:9".into()),
        orgpolicy_endpoint: Some(orgpolicy.url()),
        ..binauthz_operator::cloudrun::CloudRunArgs::default()
    };
    let mut config = args.config().unwrap();
    config.retry = fast_config(&orgpolicy.url()).retry;
    let (client, _) = client(config).await;
    use binauthz_operator::cloudrun::{AllowedBinauthzValue, OrgPolicyConstraint};
    use binauthz_operator::policy::{DesiredPolicy, PolicyName};
    for _ in 0..2 {
        let prod = client.effective_org_policy("acme-prod").await.unwrap();
        assert_eq!(
            prod,
            OrgPolicyConstraint::Allowed {
                values: vec![AllowedBinauthzValue::Policy(
                    PolicyName::parse(BCID).unwrap()
                )]
            }
        );
        assert!(!prod.allows(&DesiredPolicy::ProjectDefault));
        assert!(prod.allows(&DesiredPolicy::Named(PolicyName::parse(BCID).unwrap())));
        let dev = client.effective_org_policy("acme-dev").await.unwrap();
        assert_eq!(dev, OrgPolicyConstraint::NotSet);
        assert!(!dev.is_enforced());
        let err = client
            .effective_org_policy("locked-down")
            .await
            .unwrap_err();
        assert!(err.is_permission_denied(), "{err}");
        assert!(err.to_string().contains("orgpolicy.policy.get"), "{err}");
    }
    let requests: Vec<String> = orgpolicy
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri.path()))
        .collect();
    assert_eq!(
        requests,
        [
            "GET /v2/projects/acme-prod/policies/run.allowedBinaryAuthorizationPolicies:getEffectivePolicy",
            "GET /v2/projects/acme-dev/policies/run.allowedBinaryAuthorizationPolicies:getEffectivePolicy",
            "GET /v2/projects/locked-down/policies/run.allowedBinaryAuthorizationPolicies:getEffectivePolicy",
            "GET /v2/projects/locked-down/policies/run.allowedBinaryAuthorizationPolicies:getEffectivePolicy",
        ],
        "answers are cached per project, refusals are not"
    );
}

// ---------------------------------------------------------------------------------------
// Against the Cloud Run emulator (issue 3), started in-process on a free loopback port.

mod against_the_emulator {
    use super::*;
    use binauthz_operator::cloudrun::{LiveResource, RemediationOutcome};
    use binauthz_operator::policy::{DesiredPolicy, ObservedPolicy, PolicyName};
    use binauthz_operator::resource::{BreakglassChange, Remediation};
    use cloudrun_emulator::{EmulatorConfig, EmulatorHandle, Faults, Seed};

    const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";

    /// A small estate with rich resources (fields the client does not model included).
    fn seed() -> Seed {
        let estate = json!({"projects": {
            "acme-sec": {"projectNumber": "200000000002", "policies": {"strict": {}, "lax": {}},
                         "regions": {"us-central1": null}},
            "acme-prod": {"projectNumber": "100000000001", "policies": {},
              "regions": {
                "us-central1": {
                  "services": [{
                    "name": "checkout",
                    "image": "us-docker.pkg.dev/acme-prod/apps/checkout:1.4.2",
                    "labels": {"env": "prod", "team": "payments"},
                    "annotations": {"run.googleapis.com/launch-stage": "GA", "owner": "payments"},
                    "description": "Checkout front end",
                    "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
                    "binaryAuthorization": {"useDefault": false},
                    "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
                    "scaling": {"minInstanceCount": 2},
                    "futureField": {"nested": [1, 2.5, "x", null]}
                  }, {
                    "name": "hotfix",
                    "image": "us-docker.pkg.dev/acme-prod/apps/hotfix:3",
                    "binaryAuthorization": {"useDefault": true, "breakglassJustification": "INC-9 emergency"}
                  }, {
                    "name": "compliant",
                    "image": "us-docker.pkg.dev/acme-prod/apps/compliant:1",
                    "binaryAuthorization": {"useDefault": true}
                  }, {
                    "name": "blocked",
                    "image": "us-docker.pkg.dev/acme-prod/apps/blocked:1",
                    "binaryAuthorization": {"useDefault": true},
                    "deployBlocked": {"image": "us-docker.pkg.dev/acme-prod/apps/blocked:2-unsigned"}
                  }],
                  "jobs": [{
                    "name": "nightly-export",
                    "image": "us-docker.pkg.dev/acme-prod/jobs/export:2.3.1",
                    "labels": {"tier": "batch"},
                    "annotations": {"owner": "data"},
                    "futureField": "kept"
                  }],
                  "workerPools": [{
                    "name": "queue-consumer",
                    "image": "us-docker.pkg.dev/acme-prod/pools/consumer:7",
                    "labels": {"tier": "critical"},
                    "binaryAuthorization": {"policy": "projects/acme-sec/platforms/cloudRun/policies/lax",
                                            "breakglassJustification": "INC-4411: \"quoted\", ünïcode"},
                    "futureField": 42
                  }]
                },
                "europe-west1": null
              }}
        }});
        Seed::from_yaml_str(&estate.to_string()).expect("valid seed")
    }

    async fn start(seed: Seed, faults: Faults) -> EmulatorHandle {
        cloudrun_emulator::start(EmulatorConfig {
            seed,
            faults,
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts")
    }

    fn id(kind: ResourceKind, name: &str) -> ResourceId {
        ResourceId {
            kind,
            project: "acme-prod".into(),
            location: "us-central1".into(),
            name: name.into(),
        }
    }

    fn to(desired: DesiredPolicy, breakglass: BreakglassChange) -> Remediation {
        Remediation {
            desired,
            breakglass,
        }
    }

    fn strict() -> DesiredPolicy {
        DesiredPolicy::Named(PolicyName::parse(STRICT).unwrap())
    }

    /// The resource's JSON exactly as the emulator serves it (not through the client).
    async fn raw(emulator: &EmulatorHandle, id: &ResourceId) -> Value {
        reqwest::Client::new()
            .get(format!("{}/v2/{}", emulator.url(), id.resource_name()))
            .bearer_auth("test")
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Fields Cloud Run itself moves on any write.
    const SERVER_MANAGED: [&str; 8] = [
        "generation",
        "observedGeneration",
        "etag",
        "updateTime",
        "lastModifier",
        "conditions",
        "terminalCondition",
        "reconciling",
    ];

    fn without(mut value: Value, fields: &[&str]) -> Value {
        let object = value.as_object_mut().unwrap();
        for field in fields {
            object.remove(*field);
        }
        value
    }

    async fn emulator_client(emulator: &EmulatorHandle) -> (CloudRunClient, Arc<Recorder>) {
        client(fast_config(&emulator.url())).await
    }

    fn count(emulator: &EmulatorHandle, method: &str, code: u16) -> u64 {
        emulator
            .counters(None)
            .calls
            .iter()
            .filter(|c| c.method == method && c.code == code)
            .map(|c| c.count)
            .sum()
    }

    #[tokio::test]
    async fn a_remediation_changes_nothing_but_binary_authorization() {
        let emulator = start(seed(), Faults::default()).await;
        let (client, _) = emulator_client(&emulator).await;
        let cases = [
            (
                id(ResourceKind::Service, "checkout"),
                to(DesiredPolicy::ProjectDefault, BreakglassChange::Keep),
                json!({"useDefault": true}),
            ),
            (
                id(ResourceKind::Service, "hotfix"),
                to(DesiredPolicy::ProjectDefault, BreakglassChange::Clear),
                json!({"useDefault": true}),
            ),
            (
                id(ResourceKind::Job, "nightly-export"),
                to(strict(), BreakglassChange::Keep),
                json!({"policy": STRICT}),
            ),
            (
                id(ResourceKind::WorkerPool, "queue-consumer"),
                to(DesiredPolicy::ProjectDefault, BreakglassChange::Keep),
                json!({"useDefault": true, "breakglassJustification": "INC-4411: \"quoted\", ünïcode"}),
            ),
        ];
        for (id, remediation, written) in cases {
            let before = raw(&emulator, &id).await;
            let outcome = client.remediate(&id, &remediation).await.unwrap();
            assert!(
                matches!(outcome, RemediationOutcome::Applied { .. }),
                "{id}: {outcome:?}"
            );
            let after = raw(&emulator, &id).await;
            assert_eq!(after["binaryAuthorization"], written, "{id}");
            // Everything else is exactly as before, but what Cloud Run manages itself.
            let mut ignored = SERVER_MANAGED.to_vec();
            ignored.push("binaryAuthorization");
            assert_eq!(
                without(after.clone(), &ignored),
                without(before.clone(), &ignored),
                "{id}"
            );
            assert_ne!(
                after["etag"], before["etag"],
                "{id}: a write bumps the etag"
            );
            // The emulator's audit log agrees: one change, of binaryAuthorization only.
            let changes: Vec<_> = emulator
                .changes()
                .into_iter()
                .filter(|c| c.resource == id.resource_name())
                .collect();
            assert_eq!(changes.len(), 1, "{id}");
            let fields = &changes[0].fields;
            assert!(!fields.is_empty(), "{id}");
            assert!(
                fields
                    .iter()
                    .all(|f| f == "binaryAuthorization" || f.starts_with("binaryAuthorization.")),
                "{id}: {fields:?}"
            );
            // And a second remediation finds nothing to do.
            assert_eq!(
                client.remediate(&id, &remediation).await.unwrap(),
                RemediationOutcome::AlreadySatisfied
            );
        }
        assert_eq!(count(&emulator, "services.patch", 200), 2);
        assert_eq!(count(&emulator, "jobs.patch", 200), 1);
        assert_eq!(count(&emulator, "workerPools.patch", 200), 1);
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn lists_page_through_2500_resources() {
        let mut region = json!({"services": [], "jobs": [], "workerPools": []});
        for (kind, n) in [("services", 1000), ("jobs", 1000), ("workerPools", 500)] {
            region[kind] = Value::Array(
                (0..n)
                    .map(|i| {
                        json!({"name": format!("r-{i:04}"), "image": "us-docker.pkg.dev/p/a/b:1",
                                    "labels": {"i": i.to_string()}})
                    })
                    .collect(),
            );
        }
        let seed = Seed::from_yaml_str(
            &json!({"projects": {"acme-prod": {"projectNumber": "100000000001", "regions": {"us-central1": region}}}}).to_string(),
        )
        .unwrap();
        let emulator = start(seed, Faults::default()).await;
        let (client, _) = emulator_client(&emulator).await;
        let mut total = 0;
        for (kind, n) in [
            (ResourceKind::Service, 1000),
            (ResourceKind::Job, 1000),
            (ResourceKind::WorkerPool, 500),
        ] {
            let mut pages = client.list("acme-prod", "us-central1", kind);
            let mut names = std::collections::BTreeSet::new();
            let mut page_count = 0;
            while let Some(page) = futures::StreamExt::next(&mut pages).await {
                let page = page.unwrap();
                assert!(page.len() <= 100);
                page_count += 1;
                for live in page {
                    assert_eq!(live.observed.id.kind, kind);
                    assert!(
                        names.insert(live.observed.id.name.clone()),
                        "{} listed twice",
                        live.observed.id.name
                    );
                }
            }
            assert_eq!(names.len(), n, "{kind}");
            assert_eq!(page_count, n / 100, "{kind}");
            total += names.len();
        }
        assert_eq!(total, 2500);
        assert_eq!(count(&emulator, "services.list", 200), 10);
        assert_eq!(count(&emulator, "jobs.list", 200), 10);
        assert_eq!(count(&emulator, "workerPools.list", 200), 5);
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn a_stale_etag_race_keeps_the_concurrent_deploy() {
        let emulator = start(seed(), Faults::default()).await;
        let (client, recorder) = emulator_client(&emulator).await;
        let listed: Vec<LiveResource> = client
            .list_all("acme-prod", "us-central1", ResourceKind::Service)
            .await
            .unwrap();
        let checkout = listed
            .iter()
            .find(|l| l.observed.id.name == "checkout")
            .unwrap()
            .clone();
        // A user deploys a new image between our list and our write.
        let deployed = "us-docker.pkg.dev/acme-prod/apps/checkout:1.5.0";
        let response = reqwest::Client::new()
            .post(format!("{}/_emulator/deploy", emulator.url()))
            .json(&json!({"name": checkout.observed.id.resource_name(), "image": deployed}))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
        let outcome = client
            .remediate_listed(
                &checkout,
                &to(DesiredPolicy::ProjectDefault, BreakglassChange::Keep),
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome, RemediationOutcome::Applied { .. }),
            "{outcome:?}"
        );
        assert_eq!(recorder.conflicts.load(Ordering::SeqCst), 1);
        assert_eq!(count(&emulator, "services.patch", 409), 1);
        assert_eq!(count(&emulator, "services.patch", 200), 1);
        let after = raw(&emulator, &checkout.observed.id).await;
        assert_eq!(
            after["template"]["containers"][0]["image"], deployed,
            "the user's deploy survives"
        );
        assert_eq!(after["binaryAuthorization"], json!({"useDefault": true}));
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn a_job_deployed_between_the_list_and_the_write_is_read_again_not_reverted() {
        // Job etags not enforced: writing back the listed copy would revert the deploy.
        let emulator = start(
            seed(),
            Faults {
                job_etag_ignored: true,
                ..Faults::default()
            },
        )
        .await;
        let (client, recorder) = emulator_client(&emulator).await;
        let listed: Vec<LiveResource> = client
            .list_all("acme-prod", "us-central1", ResourceKind::Job)
            .await
            .unwrap();
        let nightly = listed
            .iter()
            .find(|l| l.observed.id.name == "nightly-export")
            .unwrap()
            .clone();
        let deployed = "us-docker.pkg.dev/acme-prod/jobs/export:9.9.9";
        reqwest::Client::new()
            .post(format!("{}/_emulator/deploy", emulator.url()))
            .json(&json!({"name": nightly.observed.id.resource_name(), "image": deployed}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        let outcome = client
            .remediate_listed(&nightly, &to(strict(), BreakglassChange::Keep))
            .await
            .unwrap();
        assert!(
            matches!(outcome, RemediationOutcome::Applied { .. }),
            "{outcome:?}"
        );
        // Read right before the write: no stale etag, no conflict to resolve.
        assert_eq!(count(&emulator, "jobs.get", 200), 1);
        assert_eq!(count(&emulator, "jobs.patch", 409), 0);
        assert_eq!(count(&emulator, "jobs.patch", 200), 1);
        assert_eq!(recorder.conflicts.load(Ordering::SeqCst), 0);
        let after = raw(&emulator, &nightly.observed.id).await;
        assert_eq!(
            after["template"]["template"]["containers"][0]["image"], deployed,
            "the user's deploy survives"
        );
        assert_eq!(after["binaryAuthorization"], json!({"policy": STRICT}));
        emulator.shutdown().await;
    }

    /// The controller's guard: a write decided before another binding took the resource
    /// over (and wrote it) is re-checked after the stale etag, and withdrawn.
    #[tokio::test]
    async fn a_guard_re_checked_after_a_stale_etag_withdraws_the_write() {
        let emulator = start(seed(), Faults::default()).await;
        let (client, _) = emulator_client(&emulator).await;
        let checkout = client
            .get(&id(ResourceKind::Service, "checkout"))
            .await
            .unwrap();
        let strict = "projects/acme-sec/platforms/cloudRun/policies/strict";
        // The new owner's write lands between our read and our write.
        reqwest::Client::new()
            .post(format!("{}/_emulator/drift", emulator.url()))
            .json(
                &json!({"name": checkout.observed.id.resource_name(), "binaryAuthorization": {"policy": strict}}),
            )
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        let as_planned = checkout.observed.policy.clone();
        let checks = std::sync::atomic::AtomicUsize::new(0);
        let still_wanted = |now: &binauthz_operator::resource::ObservedResource| {
            checks.fetch_add(1, Ordering::SeqCst);
            now.policy == as_planned
        };
        let outcome = client
            .remediate_listed_while(
                &checkout,
                &to(DesiredPolicy::ProjectDefault, BreakglassChange::Keep),
                &still_wanted,
            )
            .await
            .unwrap();
        assert_eq!(outcome, RemediationOutcome::Withdrawn);
        assert_eq!(
            checks.load(Ordering::SeqCst),
            2,
            "asked before each attempt"
        );
        assert_eq!(count(&emulator, "services.patch", 409), 1);
        assert_eq!(count(&emulator, "services.patch", 200), 0);
        let after = client.get(&checkout.observed.id).await.unwrap();
        assert_eq!(after.observed.policy, ObservedPolicy::Named(strict.into()));
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn a_concurrent_fix_means_no_write() {
        let emulator = start(seed(), Faults::default()).await;
        let (client, _) = emulator_client(&emulator).await;
        let checkout = client
            .get(&id(ResourceKind::Service, "checkout"))
            .await
            .unwrap();
        // Someone else enables the default policy meanwhile.
        reqwest::Client::new()
            .post(format!("{}/_emulator/drift", emulator.url()))
            .json(&json!({"name": checkout.observed.id.resource_name(), "binaryAuthorization": {"useDefault": true}}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        let outcome = client
            .remediate_listed(
                &checkout,
                &to(DesiredPolicy::ProjectDefault, BreakglassChange::Keep),
            )
            .await
            .unwrap();
        assert_eq!(outcome, RemediationOutcome::AlreadySatisfied);
        assert_eq!(count(&emulator, "services.patch", 409), 1);
        assert_eq!(count(&emulator, "services.patch", 200), 0);
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn slow_operations_are_followed_and_failed_ones_reported() {
        let emulator = start(
            seed(),
            Faults {
                operation_delay_ms: 300,
                ..Faults::default()
            },
        )
        .await;
        let (client, _) = emulator_client(&emulator).await;
        let outcome = client
            .remediate(
                &id(ResourceKind::Job, "nightly-export"),
                &to(strict(), BreakglassChange::Keep),
            )
            .await
            .unwrap();
        match outcome {
            RemediationOutcome::Applied {
                resource: Some(after),
            } => assert_eq!(after.policy, ObservedPolicy::Named(STRICT.into())),
            other => panic!("expected Applied with the resource, got {other:?}"),
        }
        emulator
            .set_faults(Faults {
                operation_failure_rate: 1.0,
                ..Faults::default()
            })
            .unwrap();
        let service = id(ResourceKind::Service, "checkout");
        let before = raw(&emulator, &service).await;
        let err = client
            .remediate(
                &service,
                &to(DesiredPolicy::ProjectDefault, BreakglassChange::Keep),
            )
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "OperationFailed", "{err}");
        assert!(!err.to_string().contains('\n'));
        let after = raw(&emulator, &service).await;
        assert_eq!(after["binaryAuthorization"], before["binaryAuthorization"]);
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn quota_429s_with_retry_info_are_waited_out() {
        // 60 reads per minute at the emulator (a bucket of 60, refilled 1/s); the client's
        // own budget is far higher, so the 61st read meets a 429 and must wait as RetryInfo
        // says.
        let emulator = start(
            seed(),
            Faults {
                read_quota_per_minute: Some(60),
                // The emulator's earlier 429 shape: RetryInfo (and QuotaFailure).
                quota_retry_info: true,
                ..Faults::default()
            },
        )
        .await;
        let mut config = fast_config(&emulator.url());
        config.rate_limits.reads_per_minute = std::num::NonZeroU32::new(60_000).unwrap();
        let (client, recorder) = client(config).await;
        for _ in 0..61 {
            client
                .get(&id(ResourceKind::Service, "checkout"))
                .await
                .unwrap();
        }
        assert_eq!(count(&emulator, "services.get", 429), 1);
        let retries = recorder.retries.lock().unwrap().clone();
        assert_eq!(retries.len(), 1);
        assert_eq!(retries[0].1, "QuotaExceeded");
        assert!(retries[0].2 >= Duration::from_secs(1), "{retries:?}");
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn a_503_storm_is_ridden_out() {
        let emulator = start(seed(), Faults::default()).await;
        let mut config = fast_config(&emulator.url());
        config.retry.max_attempts = 1000;
        let (client, _) = client(config).await;
        let storm = Faults {
            error_rates: [(503, 1.0)].into_iter().collect(),
            ..Faults::default()
        };
        emulator.set_faults(storm).unwrap();
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.get(&id(ResourceKind::Service, "checkout")).await }
        });
        while count(&emulator, "services.get", 503) < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        emulator.set_faults(Faults::default()).unwrap();
        let live = call.await.unwrap().unwrap();
        assert_eq!(live.observed.id.name, "checkout");
        assert!(count(&emulator, "services.get", 503) >= 5);
        assert_eq!(count(&emulator, "services.get", 200), 1);
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn permission_denied_is_surfaced_at_once() {
        let emulator = start(
            seed(),
            Faults {
                forbidden: vec!["write:acme-prod".into()],
                ..Faults::default()
            },
        )
        .await;
        let (client, recorder) = emulator_client(&emulator).await;
        let err = client
            .remediate(
                &id(ResourceKind::Service, "checkout"),
                &to(DesiredPolicy::ProjectDefault, BreakglassChange::Keep),
            )
            .await
            .unwrap_err();
        assert!(err.is_permission_denied(), "{err}");
        assert!(err.to_string().contains("run.services.update"), "{err}");
        assert_eq!(count(&emulator, "services.patch", 403), 1, "never retried");
        assert!(recorder.retries.lock().unwrap().is_empty());
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn missing_resources_are_not_found_and_never_written() {
        let emulator = start(seed(), Faults::default()).await;
        let (client, _) = emulator_client(&emulator).await;
        let ghost = id(ResourceKind::Service, "ghost");
        assert!(client.get(&ghost).await.unwrap_err().is_not_found());
        let err = client
            .remediate(
                &ghost,
                &to(DesiredPolicy::ProjectDefault, BreakglassChange::Keep),
            )
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(emulator.counters(None).writes, 0);
        let nowhere = ResourceId {
            location: "asia-east9".into(),
            ..id(ResourceKind::Job, "x")
        };
        assert!(client.get(&nowhere).await.unwrap_err().is_not_found());
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn validate_only_changes_nothing_and_reports_bad_policies() {
        let emulator = start(seed(), Faults::default()).await;
        let (client, _) = emulator_client(&emulator).await;
        let service = id(ResourceKind::Service, "checkout");
        let before = raw(&emulator, &service).await;
        assert_eq!(
            client
                .validate_remediation(&service, &to(strict(), BreakglassChange::Keep))
                .await
                .unwrap(),
            RemediationOutcome::Validated
        );
        let unknown = DesiredPolicy::Named(
            PolicyName::parse("projects/acme-sec/platforms/cloudRun/policies/nope").unwrap(),
        );
        let err = client
            .validate_remediation(&service, &to(unknown, BreakglassChange::Keep))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidArgument", "{err}");
        assert_eq!(raw(&emulator, &service).await, before);
        assert!(emulator.changes().is_empty());
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn regions_policies_and_blocked_deploys_are_read() {
        let emulator = start(seed(), Faults::default()).await;
        let (client, _) = emulator_client(&emulator).await;
        // The catalogue of Cloud Run regions, as Google answers it, not where the project
        // has resources.
        let regions = client.regions("acme-prod").await.unwrap();
        assert!(regions.len() >= 40, "{regions:?}");
        for region in ["europe-west1", "us-central1", "asia-northeast1", "me-west1"] {
            assert!(regions.iter().any(|r| r == region), "{region}: {regions:?}");
        }
        assert!(regions.is_sorted(), "{regions:?}");
        assert!(client
            .policy_exists(&PolicyName::parse(STRICT).unwrap())
            .await
            .unwrap());
        assert!(!client
            .policy_exists(
                &PolicyName::parse("projects/acme-sec/platforms/cloudRun/policies/nope").unwrap()
            )
            .await
            .unwrap());
        let services = client
            .list_all("acme-prod", "us-central1", ResourceKind::Service)
            .await
            .unwrap();
        let blocked = services
            .iter()
            .find(|s| s.observed.id.name == "blocked")
            .unwrap();
        let message = blocked
            .observed
            .deploy_blocked
            .as_deref()
            .expect("deploy blocked");
        assert!(
            message.contains("blocked:2-unsigned") && message.contains("not authorized by policy"),
            "{message}"
        );
        let checkout = services
            .iter()
            .find(|s| s.observed.id.name == "checkout")
            .unwrap();
        assert_eq!(checkout.observed.policy, ObservedPolicy::None);
        assert_eq!(checkout.observed.labels.get("team"), Some("payments"));
        let hotfix = services
            .iter()
            .find(|s| s.observed.id.name == "hotfix")
            .unwrap();
        assert_eq!(hotfix.observed.policy, ObservedPolicy::ProjectDefault);
        assert_eq!(
            hotfix.observed.breakglass.as_deref(),
            Some("INC-9 emergency")
        );
        let pools = client
            .list_all("acme-prod", "us-central1", ResourceKind::WorkerPool)
            .await
            .unwrap();
        assert_eq!(
            pools[0].observed.policy,
            ObservedPolicy::Named("projects/acme-sec/platforms/cloudRun/policies/lax".into())
        );
        emulator.shutdown().await;
    }
}
