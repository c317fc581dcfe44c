//! Hostile Cloud Run answers never panic or hang the client, and never make it weaken a
//! resource.
//!
//! - Property tests straight over the parsers (model documents, Google's error envelope,
//!   `RetryInfo`/`Retry-After`, the JSON value budget): arbitrary bytes and JSON, valid
//!   documents with fields removed, retyped or truncated, unknown enum values.
//! - A property test over the whole client against a tiny hostile HTTP server (raw tokio
//!   `TcpListener`): every call — list, get, regions, policy lookup, remediation with its
//!   operation — answered with hostile responses, including truncated bodies, garbage that
//!   is not HTTP and connection resets.
//! - Loopback regressions for the slow and the huge: slow-loris bodies, a stalled server, a
//!   page of 100,000 items, bodies beyond the size cap, pathological JSON, page-token loops,
//!   cross-origin redirects, huge retry delays, multi-line messages.
//!
//! Every call runs under the test's own `tokio::time::timeout` guard: a hang fails the test.
//! `BINAUTHZ_FUZZ_CASES` scales the number of generated cases (`make soak` raises it).

use std::io;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use binauthz_operator::cloudrun::model::{
    json_values_at_most, BinaryAuthorization, ListPage, LocationsPage, Operation, Resource,
};
use binauthz_operator::cloudrun::retry::{parse_proto_duration, parse_retry_after};
use binauthz_operator::cloudrun::{
    ApiError, CloudRunClient, CloudRunConfig, Code, Error, OperationPolicy, RateLimitConfig,
    RemediationOutcome, RetryPolicy,
};
use binauthz_operator::policy::{DesiredPolicy, PolicyName};
use binauthz_operator::resource::{BreakglassChange, Remediation, ResourceId, ResourceKind};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------
// Case counts.

/// Generated cases per property, scaled by `BINAUTHZ_FUZZ_CASES` (default `default`).
fn cases(default: u32) -> u32 {
    std::env::var("BINAUTHZ_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(default, |n| n.max(1))
}

fn proptest_config(default_cases: u32) -> Config {
    Config {
        cases: cases(default_cases),
        // Failures are saved under proptest-regressions/ and replayed first.
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        max_shrink_iters: 2_000,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// A hostile HTTP/1.1 server on a raw TcpListener: each request gets a `Plan`.

/// One request as the server read it.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with one request.
#[derive(Clone, Debug)]
enum Plan {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// These bytes as they are (not necessarily HTTP), then close.
    Raw(Vec<u8>),
    /// A `Content-Length` promising `declared` bytes, only `body` sent, then close.
    Truncated {
        status: u16,
        declared: usize,
        body: Vec<u8>,
    },
    /// 200 with a large `Content-Length`, then one body byte every `every`, forever.
    Trickle { every: Duration },
    /// Reads the request and never answers.
    Stall,
    /// Closes the connection with a TCP reset, no answer.
    Reset,
    /// A 200 whose body is `prefix`, `fill` repeated up to `total` bytes, then `suffix`;
    /// with a `Content-Length` or chunked.
    Stream {
        prefix: Vec<u8>,
        fill: Vec<u8>,
        suffix: Vec<u8>,
        total: usize,
        content_length: bool,
    },
}

impl Plan {
    fn json(status: u16, body: &Value) -> Self {
        Plan::Full {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }
}

/// Answers the request numbered `n` (from 0, since the last [`HostileServer::clear`]).
type Script = Arc<dyn Fn(usize, &Request) -> Plan + Send + Sync>;

struct HostileServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    /// Body bytes the server managed to write, over all connections.
    written: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HostileServer {
    async fn start(script: impl Fn(usize, &Request) -> Plan + Send + Sync + 'static) -> Self {
        let script: Script = Arc::new(script);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let requests = Arc::clone(&requests);
            let written = Arc::clone(&written);
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let script = Arc::clone(&script);
                    let requests = Arc::clone(&requests);
                    let written = Arc::clone(&written);
                    tokio::spawn(async move {
                        let _ = serve(stream, script, requests, written).await;
                    });
                }
            }
        });
        Self {
            addr,
            requests,
            written,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(stream: &mut TcpStream) -> io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
    }))
}

fn head(status: u16, headers: &[(String, String)], length: Option<usize>) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} Hostile\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    match length {
        Some(len) => out.push_str(&format!("Content-Length: {len}\r\n")),
        None => out.push_str("Transfer-Encoding: chunked\r\n"),
    }
    out.push_str("\r\n");
    out.into_bytes()
}

async fn serve(
    mut stream: TcpStream,
    script: Script,
    requests: Arc<Mutex<Vec<Request>>>,
    written: Arc<AtomicUsize>,
) -> io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    // Numbered from the last `clear`.
    let n = {
        let mut requests = requests.lock().unwrap();
        requests.push(request.clone());
        requests.len() - 1
    };
    match script(n, &request) {
        Plan::Full {
            status,
            headers,
            body,
        } => {
            stream
                .write_all(&head(status, &headers, Some(body.len())))
                .await?;
            stream.write_all(&body).await?;
            written.fetch_add(body.len(), Ordering::SeqCst);
        }
        Plan::Raw(bytes) => stream.write_all(&bytes).await?,
        Plan::Truncated {
            status,
            declared,
            body,
        } => {
            stream.write_all(&head(status, &[], Some(declared))).await?;
            stream.write_all(&body).await?;
        }
        Plan::Trickle { every } => {
            stream.write_all(&head(200, &[], Some(1 << 20))).await?;
            stream.write_all(b"{\"services\": [").await?;
            loop {
                tokio::time::sleep(every).await;
                stream.write_all(b" ").await?;
                written.fetch_add(1, Ordering::SeqCst);
            }
        }
        Plan::Stall => {
            // Hold the connection open until the client gives up.
            let mut sink = [0u8; 64];
            while stream.read(&mut sink).await? > 0 {}
        }
        Plan::Reset => {
            socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
        }
        Plan::Stream {
            prefix,
            fill,
            suffix,
            total,
            content_length,
        } => {
            let length = content_length.then_some(total);
            stream.write_all(&head(200, &[], length)).await?;
            let mut sent = 0;
            let mut block = Vec::with_capacity(64 * 1024);
            let emit = |bytes: &[u8], block: &mut Vec<u8>| block.extend_from_slice(bytes);
            emit(&prefix, &mut block);
            while sent + block.len() + suffix.len() < total {
                let left = total - suffix.len() - sent - block.len();
                let take = fill.len().min(left);
                emit(&fill[..take], &mut block);
                if block.len() >= 60 * 1024 {
                    write_block(&mut stream, &block, content_length).await?;
                    sent += block.len();
                    written.fetch_add(block.len(), Ordering::SeqCst);
                    block.clear();
                }
            }
            emit(&suffix, &mut block);
            write_block(&mut stream, &block, content_length).await?;
            written.fetch_add(block.len(), Ordering::SeqCst);
            if !content_length {
                stream.write_all(b"0\r\n\r\n").await?;
            }
        }
    }
    stream.flush().await?;
    Ok(())
}

async fn write_block(stream: &mut TcpStream, block: &[u8], raw: bool) -> io::Result<()> {
    if raw {
        stream.write_all(block).await
    } else {
        stream
            .write_all(format!("{:x}\r\n", block.len()).as_bytes())
            .await?;
        stream.write_all(block).await?;
        stream.write_all(b"\r\n").await
    }
}

// ---------------------------------------------------------------------------------------
// Clients and documents.

fn config(url: &str) -> CloudRunConfig {
    let mut config = CloudRunConfig::emulator(url);
    config.retry = RetryPolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        max_attempts: 3,
        deadline: Duration::from_secs(2),
    };
    config.request_timeout = Duration::from_secs(2);
    config.operation = OperationPolicy {
        wait_timeout: Duration::from_millis(50),
        deadline: Duration::from_millis(300),
        poll_interval: Duration::from_millis(5),
    };
    config.rate_limits = RateLimitConfig {
        reads_per_minute: NonZeroU32::new(6_000_000).unwrap(),
        writes_per_minute: NonZeroU32::new(6_000_000).unwrap(),
        max_concurrent_writes: NonZeroUsize::new(8).unwrap(),
    };
    config.max_list_pages = 20;
    config
}

async fn client(config: CloudRunConfig) -> CloudRunClient {
    CloudRunClient::new(config).await.unwrap()
}

const PROJECT: &str = "acme-prod";
const REGION: &str = "us-central1";
const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";

fn checkout() -> ResourceId {
    ResourceId {
        kind: ResourceKind::Service,
        project: PROJECT.into(),
        location: REGION.into(),
        name: "checkout".into(),
    }
}

fn to_default() -> Remediation {
    Remediation {
        desired: DesiredPolicy::ProjectDefault,
        breakglass: BreakglassChange::Keep,
    }
}

fn service_doc(name: &str) -> Value {
    json!({
        "name": format!("projects/{PROJECT}/locations/{REGION}/services/{name}"),
        "uid": "8f2b", "generation": "4", "observedGeneration": "4",
        "labels": {"env": "prod", "team": "payments"},
        "etag": "\"e4\"", "reconciling": false,
        "template": {"containers": [{"image": "us-docker.pkg.dev/acme/app:1", "ports": [{"containerPort": 8080}]}]},
        "binaryAuthorization": {"useDefault": false, "breakglassJustification": "INC-7"},
        "terminalCondition": {"type": "Ready", "state": "CONDITION_FAILED", "reason": "CONTAINER_IMAGE_UNAUTHORIZED",
                              "message": "Revision checkout-00004 uses an unauthorized container image."},
        "conditions": [{"type": "RoutesReady", "state": 4, "reason": 6}],
        "ingress": "INGRESS_TRAFFIC_ALL", "launchStage": "GA"
    })
}

fn page_doc(target_query: &str) -> Value {
    let page: usize = target_query
        .split('&')
        .find_map(|kv| kv.strip_prefix("pageToken=p"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let items: Vec<Value> = (0..3)
        .map(|i| service_doc(&format!("svc-{page}-{i}")))
        .collect();
    let mut doc = json!({ "services": items });
    if page < 2 {
        doc["nextPageToken"] = json!(format!("p{}", page + 1));
    }
    doc
}

fn operation_doc(done: bool) -> Value {
    let mut op = json!({
        "name": format!("projects/{PROJECT}/locations/{REGION}/operations/op-1"),
        "metadata": {"@type": "type.googleapis.com/google.cloud.run.v2.Service"},
        "done": done
    });
    if done {
        let mut response = service_doc("checkout");
        response["binaryAuthorization"] = json!({"useDefault": true});
        response["@type"] = json!("type.googleapis.com/google.cloud.run.v2.Service");
        op["response"] = response;
    }
    op
}

fn envelope_doc() -> Value {
    json!({"error": {
    "code": 429,
    "message": "Quota exceeded for quota metric 'Write requests'.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
         "domain": "googleapis.com", "metadata": {"quota_metric": "run.googleapis.com/write_requests"}},
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"subject": "project:1", "description": "writes"}]},
        {"@type": "type.googleapis.com/google.rpc.BadRequest",
         "fieldViolations": [{"field": "binary_authorization", "description": "bad"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.001s"}
    ]}})
}

/// The well-formed answer to `request`, which hostile cases then damage.
fn valid_doc(request: &Request) -> Value {
    let path = request.path();
    if path.ends_with(":wait") || path.contains("/operations/") {
        operation_doc(true)
    } else if request.method == "PATCH" {
        operation_doc(false)
    } else if path.contains("/platforms/cloudRun/policies/") {
        json!({"name": STRICT, "description": "strict", "updateTime": "2026-01-01T00:00:00Z"})
    } else if path.starts_with("/v1/") && path.ends_with("/locations") {
        json!({"locations": [
            {"name": format!("projects/{PROJECT}/locations/us-central1"), "locationId": "us-central1"},
            {"name": format!("projects/{PROJECT}/locations/europe-west1"), "displayName": "Belgium"}
        ]})
    } else if path.ends_with("/services") {
        page_doc(request.query())
    } else {
        service_doc("checkout")
    }
}

/// Every JSON pointer inside `value` (the root included).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A change to one place of a document.
#[derive(Clone, Debug)]
enum Mutation {
    /// Remove the member or element (the root becomes `null`).
    Remove(usize),
    /// Put this value there instead (wrong types, unknown enum values, ...).
    Replace(usize, Value),
}

fn mutate(mut doc: Value, mutations: &[Mutation]) -> Value {
    for mutation in mutations {
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        let (index, replacement) = match mutation {
            Mutation::Remove(i) => (*i, None),
            Mutation::Replace(i, v) => (*i, Some(v.clone())),
        };
        let pointer = &all[index % all.len()];
        match (replacement, pointer.rsplit_once('/')) {
            (Some(value), _) => match doc.pointer_mut(pointer) {
                Some(slot) => *slot = value,
                None => doc = value,
            },
            (None, None) => doc = Value::Null,
            (None, Some((parent, key))) => match doc.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = key.parse::<usize>() {
                        if i < items.len() {
                            items.remove(i);
                        }
                    }
                }
                _ => {}
            },
        }
    }
    doc
}

// ---------------------------------------------------------------------------------------
// Strategies.

/// Keys the client reads, so arbitrary objects often hit a modelled field with a wrong type.
const KEYS: &[&str] = &[
    "services",
    "jobs",
    "workerPools",
    "nextPageToken",
    "name",
    "uid",
    "etag",
    "generation",
    "observedGeneration",
    "labels",
    "reconciling",
    "binaryAuthorization",
    "useDefault",
    "policy",
    "breakglassJustification",
    "conditions",
    "terminalCondition",
    "state",
    "reason",
    "message",
    "deleteTime",
    "template",
    "containers",
    "image",
    "done",
    "error",
    "response",
    "code",
    "status",
    "details",
    "@type",
    "retryDelay",
    "violations",
    "fieldViolations",
    "metadata",
    "locations",
    "locationId",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => ".{0,8}",
    ]
}

/// Strings that tend to break things: unknown enum values, names with odd segments,
/// control characters, huge numbers as text, durations.
fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,24}",
        1 => proptest::sample::select(vec![
            "", "CONDITION_FAILED", "CONDITION_SUCCEEDED", "CONTAINER_IMAGE_UNAUTHORIZED",
            "A_REASON_FROM_2030", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "ABORTED", "SOMETHING_NEW",
            "projects/acme-prod/locations/us-central1/services/checkout",
            "projects/acme-prod/locations/us-central1/jobs/checkout",
            "projects/acme-prod/locations/us-central1/services/a/b",
            "projects//locations//services/", "projects/../../etc/passwd",
            "projects/acme-prod/locations/us-central1/operations/op?x=1#y",
            "line one\nline two\r\n\u{1b}[31mred", "18446744073709551615", "-1", "1e400",
            "18446744073709551615s", "0.000000001s", "1.5s", "-3s", "Sat, 28 Nov 2099 10:00:30 GMT",
            "type.googleapis.com/google.rpc.RetryInfo", "type.googleapis.com/google.rpc.BadRequest",
            "type.googleapis.com/google.rpc.QuotaFailure", "type.googleapis.com/google.rpc.ErrorInfo",
        ]).prop_map(str::to_owned),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        arb_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((arb_key(), inner), 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(
        prop_oneof![
            any::<usize>().prop_map(Mutation::Remove),
            (any::<usize>(), arb_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        ],
        0..4,
    )
}

/// A response body, resolved against the request when served.
#[derive(Clone, Debug)]
enum Body {
    /// Arbitrary bytes.
    Bytes(Vec<u8>),
    /// Arbitrary JSON.
    Json(Value),
    /// The valid answer to the request, damaged; `cut` (per mille) truncates its text.
    Valid {
        mutations: Vec<Mutation>,
        cut: Option<u16>,
    },
    /// Google's error envelope (all detail types), damaged.
    Envelope { mutations: Vec<Mutation> },
}

impl Body {
    fn render(&self, request: &Request) -> Vec<u8> {
        match self {
            Body::Bytes(bytes) => bytes.clone(),
            Body::Json(value) => value.to_string().into_bytes(),
            Body::Valid { mutations, cut } => {
                let text = mutate(valid_doc(request), mutations).to_string();
                let mut bytes = text.into_bytes();
                if let Some(cut) = cut {
                    bytes.truncate(bytes.len() * usize::from(*cut) / 1000);
                }
                bytes
            }
            Body::Envelope { mutations } => {
                mutate(envelope_doc(), mutations).to_string().into_bytes()
            }
        }
    }
}

/// One hostile answer.
#[derive(Clone, Debug)]
enum Answer {
    Http {
        status: u16,
        retry_after: Option<String>,
        body: Body,
    },
    Truncated {
        status: u16,
        body: Body,
    },
    Raw(Vec<u8>),
    Reset,
}

impl Answer {
    fn plan(&self, request: &Request) -> Plan {
        match self {
            Answer::Http {
                status,
                retry_after,
                body,
            } => {
                let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
                if let Some(value) = retry_after {
                    headers.push(("Retry-After".into(), value.clone()));
                }
                Plan::Full {
                    status: *status,
                    headers,
                    body: body.render(request),
                }
            }
            Answer::Truncated { status, body } => {
                let bytes = body.render(request);
                Plan::Truncated {
                    status: *status,
                    declared: bytes.len() + 1 + bytes.len() / 2,
                    body: bytes,
                }
            }
            Answer::Raw(bytes) => Plan::Raw(bytes.clone()),
            Answer::Reset => Plan::Reset,
        }
    }
}

fn arb_status() -> impl Strategy<Value = u16> {
    prop_oneof![
        6 => Just(200u16),
        4 => proptest::sample::select(vec![
            201u16, 204, 301, 302, 304, 400, 401, 403, 404, 409, 412, 429, 499, 500, 501, 502, 503, 504,
        ]),
        1 => 200u16..600,
    ]
}

fn arb_retry_after() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(None),
        1 => "[0-9]{1,25}".prop_map(Some),
        1 => Just(Some(u64::MAX.to_string())),
        1 => Just(Some("Sat, 28 Nov 2099 10:00:30 GMT".to_owned())),
        1 => ".{0,12}".prop_map(Some),
    ]
}

fn arb_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..256).prop_map(Body::Bytes),
        2 => arb_json().prop_map(Body::Json),
        5 => (arb_mutations(), proptest::option::weighted(0.2, 0u16..1000))
            .prop_map(|(mutations, cut)| Body::Valid { mutations, cut }),
        2 => arb_mutations().prop_map(|mutations| Body::Envelope { mutations }),
    ]
}

fn arb_answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        12 => (arb_status(), arb_retry_after(), arb_body())
            .prop_map(|(status, retry_after, body)| Answer::Http { status, retry_after, body }),
        1 => (arb_status(), arb_body()).prop_map(|(status, body)| Answer::Truncated { status, body }),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Answer::Raw),
        1 => proptest::sample::select(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}".to_vec(),
            b"HTTP/1.1 999 Weird\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n".to_vec(),
            b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
            b"HTTP/1.0 200 OK\r\n\r\n{\"services\": []}".to_vec(),
            b"\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec(),
        ]).prop_map(Answer::Raw),
        1 => Just(Answer::Reset),
    ]
}

/// Which client call a case makes.
#[derive(Clone, Copy, Debug)]
enum CallKind {
    List,
    Get,
    Regions,
    PolicyExists,
    Remediate,
    RemediateNamed,
}

fn arb_call() -> impl Strategy<Value = CallKind> {
    proptest::sample::select(vec![
        CallKind::List,
        CallKind::Get,
        CallKind::Regions,
        CallKind::PolicyExists,
        CallKind::Remediate,
        CallKind::Remediate,
        CallKind::RemediateNamed,
    ])
}

// ---------------------------------------------------------------------------------------
// Checks shared by every case.

/// An error a person reads: one line, bounded, classified by a known reason.
fn assert_readable(err: &Error) -> Result<(), TestCaseError> {
    let text = err.to_string();
    prop_assert!(
        !text.chars().any(char::is_control),
        "error text has control characters: {text:?}"
    );
    prop_assert!(text.len() <= 4096, "error text of {} bytes", text.len());
    prop_assert!(
        !matches!(err.reason(), "InvalidConfig" | "NoCredentials" | "Auth"),
        "misclassified: {} ({text})",
        err.reason()
    );
    Ok(())
}

/// Every PATCH the client sent sets only Binary Authorization, to the desired policy, with
/// the update mask: whatever it read, the write never weakens and never touches another
/// field.
fn assert_patches_safe(requests: &[Request], desired: &DesiredPolicy) -> Result<(), TestCaseError> {
    for patch in requests.iter().filter(|r| r.method == "PATCH") {
        prop_assert!(
            patch.query().contains("updateMask=binaryAuthorization"),
            "{}",
            patch.target
        );
        let body: Value = serde_json::from_slice(&patch.body)
            .map_err(|e| TestCaseError::fail(format!("PATCH body is not JSON: {e}")))?;
        let object = body
            .as_object()
            .ok_or_else(|| TestCaseError::fail("PATCH body is not an object"))?;
        for key in object.keys() {
            prop_assert!(
                key == "binaryAuthorization" || key == "etag",
                "PATCH touches {key}: {body}"
            );
        }
        let ba = &body["binaryAuthorization"];
        prop_assert_ne!(ba.get("useDefault"), Some(&json!(false)), "{}", body);
        match desired {
            DesiredPolicy::ProjectDefault => {
                prop_assert_eq!(ba.get("useDefault"), Some(&json!(true)), "{}", body);
                prop_assert!(ba.get("policy").is_none(), "{}", body);
            }
            DesiredPolicy::Named(name) => {
                prop_assert_eq!(ba.get("policy"), Some(&json!(name.as_str())), "{}", body);
                prop_assert!(ba.get("useDefault").is_none(), "{}", body);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Properties over the parsers (no HTTP).

fn count_values(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_values).sum(),
        Value::Object(map) => map.values().map(count_values).sum(),
        _ => 0,
    }
}

fn arb_doc_bytes() -> impl Strategy<Value = Vec<u8>> {
    let request = Request {
        method: "GET".into(),
        target: "/v2/projects/acme-prod/locations/us-central1/services/checkout".into(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let kinds = vec![
        request.clone(),
        Request {
            target: "/v2/projects/acme-prod/locations/us-central1/services?pageSize=100".into(),
            ..request.clone()
        },
        Request {
            method: "PATCH".into(),
            ..request.clone()
        },
        Request {
            target: "/v2/projects/acme-prod/locations/us-central1/operations/op-1".into(),
            ..request.clone()
        },
        Request {
            target: "/v1/projects/acme-prod/locations".into(),
            ..request
        },
    ];
    (proptest::sample::select(kinds), arb_body()).prop_map(|(request, body)| body.render(&request))
}

proptest! {
    #![proptest_config(proptest_config(2_000))]

    /// Any bytes as a list page, resource, operation or locations page: either a decode
    /// error or a value whose every accessor works, and whose remediation body never
    /// weakens and carries nothing but Binary Authorization (services) or the whole
    /// resource as read (jobs).
    #[test]
    fn model_documents_never_panic(bytes in arb_doc_bytes()) {
        if let Ok(page) = serde_json::from_slice::<ListPage>(&bytes) {
            for item in &page.items {
                let _ = serde_json::from_str::<Resource>(item.get());
            }
        }
        if let Ok(page) = serde_json::from_slice::<LocationsPage>(&bytes) {
            for location in &page.locations {
                let _ = location.region();
            }
        }
        if let Ok(op) = serde_json::from_slice::<Operation>(&bytes) {
            if let Some(error) = &op.error {
                let err = Error::from_api(ApiError::from_operation_status("UpdateService x", error));
                assert_readable(&err)?;
            }
            if let Some(response) = op.response {
                let _ = serde_json::from_value::<Resource>(response);
            }
        }
        if let Ok(resource) = serde_json::from_slice::<Resource>(&bytes) {
            let _ = resource.name_parts();
            let _ = resource.images();
            let _ = resource.deploy_blocked();
            let observed = resource.observe(checkout());
            for (desired, breakglass) in [
                (DesiredPolicy::ProjectDefault, BreakglassChange::Keep),
                (DesiredPolicy::Named(PolicyName::parse(STRICT).unwrap()), BreakglassChange::Clear),
            ] {
                let remediation = Remediation { desired: desired.clone(), breakglass };
                let _ = remediation.is_satisfied_by(&observed);
                for kind in ResourceKind::ALL {
                    let body = resource.remediation_body(kind, &remediation)
                        .map_err(|e| TestCaseError::fail(format!("cannot encode: {e}")))?;
                    let written: BinaryAuthorization =
                        serde_json::from_value(body["binaryAuthorization"].clone())
                            .map_err(|e| TestCaseError::fail(format!("written value unreadable: {e}")))?;
                    prop_assert_eq!(written.observed_policy(), (&desired).into());
                    prop_assert_ne!(written.use_default, Some(false));
                    if kind == ResourceKind::Job {
                        // The whole job as read, only binaryAuthorization replaced.
                        let mut back = body.clone();
                        let mut read = serde_json::to_value(&resource).unwrap();
                        back.as_object_mut().unwrap().remove("binaryAuthorization");
                        read.as_object_mut().unwrap().remove("binaryAuthorization");
                        prop_assert_eq!(back, read);
                    } else {
                        prop_assert!(body.as_object().unwrap().keys().all(|k| k == "binaryAuthorization" || k == "etag"));
                    }
                }
            }
        }
    }

    /// Any error answer (any status, any body, any Retry-After) is classified from Google's
    /// status or the HTTP status, reads as one bounded line, and its retry decision never
    /// panics nor shortens the delay the server asked for.
    #[test]
    fn error_envelopes_are_classified_and_never_panic(
        status in 100u16..600,
        retry_after in arb_retry_after(),
        body in prop_oneof![
            arb_doc_bytes(),
            arb_mutations().prop_map(|m| Body::Envelope { mutations: m }.render(&Request {
                method: "GET".into(), target: "/".into(), headers: Vec::new(), body: Vec::new(),
            })),
        ],
    ) {
        let api = ApiError::from_http(
            "GetService projects/acme-prod/locations/us-central1/services/checkout",
            status,
            retry_after.as_deref(),
            &body,
        );
        let named = serde_json::from_slice::<Value>(&body).ok()
            .and_then(|v| v.pointer("/error/status").and_then(Value::as_str).and_then(Code::from_name));
        let expected = named.unwrap_or_else(|| Code::from_http_status(status));
        // A body that is an envelope with an unreadable member falls back to the HTTP status.
        prop_assert!(api.code == expected || api.code == Code::from_http_status(status),
            "{:?} for HTTP {} and {:?}", api.code, status, String::from_utf8_lossy(&body));
        let err = Error::from_api(api);
        assert_readable(&err)?;
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: 8,
            deadline: Duration::from_secs(120),
        };
        let mut retrier = policy.start();
        if let Some(delay) = retrier.next_delay(&err) {
            prop_assert!(err.is_retryable());
            if let Some(hint) = err.retry_after() {
                prop_assert!(delay >= hint, "{delay:?} < server hint {hint:?}");
            }
            prop_assert!(delay < policy.deadline);
        }
    }

    /// Durations and Retry-After values from a server never panic.
    #[test]
    fn retry_hints_never_panic(text in arb_string(), digits in "[0-9]{0,30}(\\.[0-9]{0,12})?s?") {
        let _ = parse_proto_duration(&text);
        let _ = parse_proto_duration(&digits);
        let _ = parse_retry_after(&text);
        let _ = parse_retry_after(&digits);
    }

    /// The JSON value budget agrees with the values a decoder would build.
    #[test]
    fn the_value_budget_counts_what_a_decoder_builds(value in arb_json(), slack in 0usize..3) {
        let text = value.to_string();
        let n = count_values(&value);
        prop_assert!(json_values_at_most(text.as_bytes(), n + slack));
        prop_assert!(!json_values_at_most(text.as_bytes(), n - 1));
    }
}

// ---------------------------------------------------------------------------------------
// The whole client against hostile answers.

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

/// The answers of the current case, handed out in request order (the last one repeats).
static ANSWERS: LazyLock<Mutex<Vec<Answer>>> = LazyLock::new(|| Mutex::new(Vec::new()));

static SERVER: LazyLock<HostileServer> = LazyLock::new(|| {
    RUNTIME.block_on(HostileServer::start(|n, request| {
        let answers = ANSWERS.lock().unwrap();
        answers
            .get(n)
            .or_else(|| answers.last())
            .map_or(Plan::Reset, |answer| answer.plan(request))
    }))
});

/// How long one hostile case may take before it counts as a hang: far beyond the client's
/// own bounds (2 s per call, 3 attempts, 300 ms operation deadline, 20 pages).
const GUARD: Duration = Duration::from_secs(30);

async fn run_case(call: CallKind, answers: Vec<Answer>) -> Result<(), TestCaseError> {
    let server = &*SERVER;
    *ANSWERS.lock().unwrap() = answers;
    server.clear();
    let client = client(config(&server.url())).await;
    let named = DesiredPolicy::Named(PolicyName::parse(STRICT).unwrap());
    let outcome = tokio::time::timeout(GUARD, async {
        match call {
            CallKind::List => client
                .list_all(PROJECT, REGION, ResourceKind::Service)
                .await
                .map(|items| {
                    for item in &items {
                        assert_eq!(item.observed.id.kind, ResourceKind::Service);
                        assert!(!item.observed.id.name.is_empty());
                        assert!(!item.observed.id.name.contains('/'));
                    }
                }),
            CallKind::Get => client.get(&checkout()).await.map(|live| {
                assert_eq!(live.observed.id, checkout());
            }),
            CallKind::Regions => client.regions(PROJECT).await.map(|regions| {
                assert!(regions.iter().all(|r| !r.is_empty()));
            }),
            CallKind::PolicyExists => client
                .policy_exists(&PolicyName::parse(STRICT).unwrap())
                .await
                .map(drop),
            CallKind::Remediate => client.remediate(&checkout(), &to_default()).await.map(drop),
            CallKind::RemediateNamed => client
                .remediate(
                    &checkout(),
                    &Remediation {
                        desired: named.clone(),
                        breakglass: BreakglassChange::Clear,
                    },
                )
                .await
                .map(|outcome| {
                    if let RemediationOutcome::Applied {
                        resource: Some(after),
                    } = outcome
                    {
                        assert_eq!(after.id, checkout());
                    }
                }),
        }
    })
    .await;
    let result = outcome.map_err(|_| {
        TestCaseError::fail(format!("{call:?} did not finish within {GUARD:?}: a hang"))
    })?;
    if let Err(err) = &result {
        assert_readable(err)?;
    }
    let requests = server.requests();
    match call {
        CallKind::RemediateNamed => assert_patches_safe(&requests, &named)?,
        _ => assert_patches_safe(&requests, &DesiredPolicy::ProjectDefault)?,
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(300))]

    /// Any sequence of hostile answers to any call: the call ends (no hang) with a value
    /// or a classified, readable error, and any write it made is the safe one.
    #[test]
    fn the_client_survives_hostile_answers(
        call in arb_call(),
        answers in proptest::collection::vec(arb_answer(), 1..5),
    ) {
        // Started outside `block_on` (it blocks on the runtime itself).
        LazyLock::force(&SERVER);
        RUNTIME.block_on(run_case(call, answers))?;
    }
}

// ---------------------------------------------------------------------------------------
// Loopback regressions: the slow, the huge and the looping.

/// Runs `call` under the test's own guard: a hang fails the test.
async fn guarded<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

#[tokio::test]
async fn a_truncated_body_is_a_transport_error_after_the_retries() {
    let server = HostileServer::start(|_, request| Plan::Truncated {
        status: 200,
        declared: 10_000,
        body: valid_doc(request).to_string().into_bytes()[..40].to_vec(),
    })
    .await;
    let client = client(config(&server.url())).await;
    let err = guarded("get", client.get(&checkout())).await.unwrap_err();
    assert_eq!(err.reason(), "Transport", "{err}");
    assert!(err.is_retryable());
    assert_eq!(server.requests().len(), 3, "max_attempts");
    assert!(!err.to_string().contains('\n'));
}

#[tokio::test]
async fn a_slow_loris_body_hits_the_per_call_timeout() {
    let server = HostileServer::start(|_, _| Plan::Trickle {
        every: Duration::from_millis(20),
    })
    .await;
    let mut config = config(&server.url());
    config.request_timeout = Duration::from_millis(400);
    config.retry.max_attempts = 2;
    let client = client(config).await;
    let err = guarded(
        "list",
        client.list_all(PROJECT, REGION, ResourceKind::Service),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "Timeout", "{err}");
    assert!(err.to_string().contains("no answer within 400ms"), "{err}");
    assert_eq!(server.requests().len(), 2);
    // The body did trickle: the timeout covers the body, not only the headers.
    assert!(server.written.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_per_call_timeout() {
    let server = HostileServer::start(|_, _| Plan::Stall).await;
    let mut config = config(&server.url());
    config.request_timeout = Duration::from_millis(300);
    config.retry.max_attempts = 2;
    let client = client(config).await;
    let err = guarded("get", client.get(&checkout())).await.unwrap_err();
    assert_eq!(err.reason(), "Timeout", "{err}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_page_of_100k_items_is_listed_whole() {
    let items: Vec<Value> = (0..100_000)
        .map(
            |i| json!({"name": format!("projects/{PROJECT}/locations/{REGION}/services/s-{i:06}")}),
        )
        .collect();
    let page = json!({ "services": items });
    let server = HostileServer::start(move |_, _| Plan::json(200, &page)).await;
    let client = client(config(&server.url())).await;
    let all = guarded(
        "list",
        client.list_all(PROJECT, REGION, ResourceKind::Service),
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 100_000);
    assert_eq!(all[99_999].observed.id.name, "s-099999");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_body_beyond_the_size_cap_is_refused_without_reading_it_all() {
    const TOTAL: usize = 64 * 1024 * 1024;
    for content_length in [true, false] {
        let server = HostileServer::start(move |_, _| Plan::Stream {
            prefix: b"{\"services\": [], \"padding\": \"".to_vec(),
            fill: b"abcdefghijklmnopqrstuvwxyz0123456789".to_vec(),
            suffix: b"\"}".to_vec(),
            total: TOTAL,
            content_length,
        })
        .await;
        let client = client(config(&server.url())).await;
        let err = guarded(
            "list",
            client.list_all(PROJECT, REGION, ResourceKind::Service),
        )
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "Decode", "{err}");
        assert!(
            err.to_string()
                .contains(&format!("larger than {} bytes", 16 * 1024 * 1024)),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert_eq!(server.requests().len(), 1);
        // Let the server notice the closed connection, then compare what it wrote.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let written = server.written.load(Ordering::SeqCst);
        assert!(
            written < TOTAL / 2,
            "content-length {content_length}: the client read {written} of {TOTAL} bytes"
        );
    }
}

#[tokio::test]
async fn pathological_json_is_refused_before_it_is_decoded() {
    // 2 bytes of text per value, ~72 bytes each once decoded: refused by the value budget.
    let mut body = b"{\"services\": [".to_vec();
    body.extend(std::iter::repeat_n(&b"0,"[..], 2_000_000).flatten());
    body.extend_from_slice(b"0]}");
    let ok_body = body.clone();
    let server = HostileServer::start(move |n, _| {
        let status = if n == 0 { 200 } else { 503 };
        Plan::Full {
            status,
            headers: Vec::new(),
            body: ok_body.clone(),
        }
    })
    .await;
    let mut config = config(&server.url());
    config.retry.max_attempts = 1;
    let client = client(config).await;
    let err = guarded(
        "list",
        client.list_all(PROJECT, REGION, ResourceKind::Service),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "Decode", "{err}");
    assert!(
        err.to_string().contains("more than 1000000 JSON values"),
        "{err}"
    );
    // The same body as an error answer: classified by its HTTP status, not decoded.
    let err = guarded("get", client.get(&checkout())).await.unwrap_err();
    assert_eq!(err.reason(), "Unavailable", "{err}");
    assert!(err.to_string().len() < 2048, "{err}");
}

#[tokio::test]
async fn a_page_token_loop_ends_the_list_with_an_error() {
    // p1 -> a -> b -> a -> ...: never the same token twice in a row.
    let server = HostileServer::start(|_, request| {
        let next = if request.query().contains("pageToken=a") {
            "b"
        } else {
            "a"
        };
        let doc = if request.path().ends_with("/locations") {
            json!({"locations": [{"locationId": "us-central1"}], "nextPageToken": next})
        } else {
            json!({"services": [service_doc("x")], "nextPageToken": next})
        };
        Plan::json(200, &doc)
    })
    .await;
    let client = client(config(&server.url())).await;
    let err = guarded(
        "list",
        client.list_all(PROJECT, REGION, ResourceKind::Service),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "Decode", "{err}");
    assert!(err.to_string().contains("same page token"), "{err}");
    assert_eq!(server.requests().len(), 3, "pages '', a, b");

    server.clear();
    let err = guarded("regions", client.regions(PROJECT))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Decode", "{err}");
    assert!(err.to_string().contains("same page token"), "{err}");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn an_endless_list_stops_at_the_page_cap() {
    let server = HostileServer::start(|n, _| {
        Plan::json(
            200,
            &json!({"services": [service_doc(&format!("s{n}"))], "nextPageToken": format!("t{n}")}),
        )
    })
    .await;
    let client = client(config(&server.url())).await;
    let err = guarded(
        "list",
        client.list_all(PROJECT, REGION, ResourceKind::Service),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "Decode", "{err}");
    assert!(err.to_string().contains("beyond 20 pages"), "{err}");
    assert_eq!(server.requests().len(), 20);
}

#[tokio::test]
async fn a_redirect_never_carries_the_token_to_another_origin() {
    let elsewhere = HostileServer::start(|_, _| Plan::json(200, &json!({"services": []}))).await;
    let target = format!("{}/stolen", elsewhere.url());
    let server = HostileServer::start(move |_, _| Plan::Full {
        status: 307,
        headers: vec![("Location".into(), target.clone())],
        body: Vec::new(),
    })
    .await;
    let client = client(config(&server.url())).await;
    let _ = guarded(
        "list",
        client.list_all(PROJECT, REGION, ResourceKind::Service),
    )
    .await;
    assert!(server.requests()[0].header("authorization").is_some());
    for request in elsewhere.requests() {
        assert_eq!(
            request.header("authorization"),
            None,
            "the bearer token followed a redirect to {}",
            request.target
        );
    }
}

#[tokio::test]
async fn absurd_retry_delays_end_the_call_instead_of_panicking_or_sleeping() {
    // RetryInfo and Retry-After of u64::MAX seconds once made `hint + jitter` overflow.
    let server = HostileServer::start(|n, _| {
        let mut envelope = envelope_doc();
        envelope["error"]["details"][3]["retryDelay"] = json!(format!("{}.999999999s", u64::MAX));
        if n % 2 == 1 {
            envelope["error"]["details"] = json!([]);
        }
        Plan::Full {
            status: 429,
            headers: vec![("Retry-After".into(), u64::MAX.to_string())],
            body: envelope.to_string().into_bytes(),
        }
    })
    .await;
    let mut config = config(&server.url());
    // The production backoff cap: jitter of up to 30 s on top of the server's delay.
    config.retry.max_backoff = Duration::from_secs(30);
    let client = client(config).await;
    for hint in [
        Duration::new(u64::MAX, 999_999_999),
        Duration::from_secs(u64::MAX),
    ] {
        let err = guarded("get", client.get(&checkout())).await.unwrap_err();
        assert_eq!(err.reason(), "QuotaExceeded", "{err}");
        assert_eq!(err.retry_after(), Some(hint));
    }
    assert_eq!(
        server.requests().len(),
        2,
        "no retry is scheduled past the deadline"
    );
}

#[tokio::test]
async fn server_messages_reach_people_as_one_bounded_line() {
    let message = "first line\nFAKE-LOG level=INFO msg=\"all good\"\r\n\u{1b}[2J".repeat(10_000);
    let server = HostileServer::start(move |_, _| {
        Plan::json(
            400,
            &json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": message,
                "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": vec![json!({"field": "a\nb", "description": "x".repeat(10_000)}); 1_000]}]}}),
        )
    })
    .await;
    let client = client(config(&server.url())).await;
    let err = guarded("get", client.get(&checkout())).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidArgument");
    let text = err.to_string();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.len() < 4096, "{} bytes", text.len());
    assert!(text.contains("first line FAKE-LOG"), "{text}");
    let api = err.api_error().unwrap();
    assert_eq!(api.details.field_violations.len(), 10);
}
