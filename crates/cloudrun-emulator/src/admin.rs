//! The admin API under `/_emulator/`: inject drift and deploys, configure faults, read
//! counters, the request log and the audit log, dump, reset and grow the estate.
//!
//! Admin calls are not subject to faults, auth or quotas, and are not counted or logged as
//! API calls. Errors use Google's error envelope, like the API.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::assumed;
use super::auditlog::{ApiVersion, AuditedWrite, LongRunning, Outcome};
use super::faults::Faults;
use super::generate::{self, GenerateSpec};
use super::google::{self, ApiError, Code};
use super::seed::{self, Seed};
use super::state::{Actor, ChangeSource, Deploy, Kind};
use super::{lock, Shared};

/// Principal recorded for admin changes without a `by`.
const DEFAULT_ADMIN_PRINCIPAL: &str = "user@example.com";

/// The admin routes, to nest under `/_emulator`.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/state", get(state))
        .route("/reset", post(reset))
        .route("/drift", post(drift))
        .route("/deploy", post(deploy))
        .route("/traffic", post(traffic))
        .route("/execute", post(execute))
        .route(
            "/faults",
            get(get_faults).put(put_faults).patch(patch_faults),
        )
        .route("/counters", get(counters))
        .route("/requests", get(requests))
        .route("/audit", get(audit))
        .route("/generate", post(grow))
        .route("/auditlog", get(audit_log))
        .fallback(unknown_route)
}

/// Any other `/_emulator/...` path: 404, not counted as an API call.
async fn unknown_route(uri: axum::http::Uri) -> Response {
    use axum::response::IntoResponse as _;
    ApiError::not_found(format!(
        "No admin route /_emulator{}: see docs/emulator.md for the routes under /_emulator/.",
        uri.path()
    ))
    .into_response()
}

type AdminResult = Result<Response, ApiError>;

fn ok(value: Value) -> AdminResult {
    Ok(google::json_response(
        axum::http::StatusCode::OK,
        &value,
        true,
    ))
}

fn object_body(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::invalid_payload("The body must be a JSON object.")),
        Err(err) => Err(ApiError::invalid_payload(format!(
            "Invalid JSON body: {err}"
        ))),
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|err| ApiError::invalid_payload(format!("Invalid {what}: {err}")))
}

fn admin_actor(body: &Map<String, Value>, method: &str) -> Result<Actor, ApiError> {
    let by = match body.get("by") {
        None | Some(Value::Null) => DEFAULT_ADMIN_PRINCIPAL.to_string(),
        Some(Value::String(by)) => by.clone(),
        Some(other) => {
            return Err(ApiError::invalid_field(
                "by",
                format!("'by' must be a string, got {other}"),
            ))
        }
    };
    Ok(Actor {
        principal: by,
        client: "admin".into(),
        source: ChangeSource::Admin,
        method: method.into(),
    })
}

fn resource_name(body: &Map<String, Value>) -> Result<String, ApiError> {
    body.get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::invalid_field(
                "name",
                "'name' is required: the full resource name, projects/P/locations/L/services|jobs|workerPools/ID",
            )
        })
}

fn check_keys(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(ApiError::invalid_field(
            key,
            format!(
                "unknown field '{key}'; expected one of: {}",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// The tool a simulated user's write came from, for its audit log entry.
#[derive(Clone, Copy, Debug)]
enum UserAction {
    /// Someone edits Binary Authorization (`gcloud run services update --binary-authorization`).
    Update,
    /// A deploy (`gcloud run deploy`).
    Deploy,
    /// A traffic change or rollback (`gcloud run services update-traffic`).
    Traffic,
}

/// How an admin write appears in the audit log: `apiVersion` (`"v1"`, the default, as
/// gcloud and the console call; or `"v2"`) and `userAgent` (default: gcloud's for v1,
/// Terraform's for v2).
struct AdminAudit {
    api: ApiVersion,
    user_agent: Option<String>,
}

fn admin_audit(body: &Map<String, Value>) -> Result<AdminAudit, ApiError> {
    let api = match body.get("apiVersion") {
        None | Some(Value::Null) => ApiVersion::default(),
        Some(Value::String(text)) => ApiVersion::parse(text).ok_or_else(|| {
            ApiError::invalid_field(
                "apiVersion",
                format!("'apiVersion' must be \"v1\" or \"v2\", got \"{text}\""),
            )
        })?,
        Some(other) => {
            return Err(ApiError::invalid_field(
                "apiVersion",
                format!("'apiVersion' must be \"v1\" or \"v2\", got {other}"),
            ))
        }
    };
    let user_agent = match body.get("userAgent") {
        None | Some(Value::Null) => None,
        Some(Value::String(ua)) if !ua.trim().is_empty() => Some(ua.clone()),
        Some(other) => {
            return Err(ApiError::invalid_field(
                "userAgent",
                format!("'userAgent' must be a non-empty string, got {other}"),
            ))
        }
    };
    Ok(AdminAudit { api, user_agent })
}

/// The User-Agent of the tool a simulated user writes with: gcloud for v1 (its command
/// names the action), the Terraform Google provider for v2.
fn default_user_agent(api: ApiVersion, kind: Kind, action: UserAction) -> String {
    match api {
        ApiVersion::V1 => {
            let command = match (kind, action) {
                (Kind::Service, UserAction::Update) => "gcloud.run.services.update",
                (Kind::Service, UserAction::Deploy) => "gcloud.run.deploy",
                (Kind::Service, UserAction::Traffic) => "gcloud.run.services.update-traffic",
                (Kind::Job, UserAction::Update) => "gcloud.run.jobs.update",
                (Kind::Job, _) => "gcloud.run.jobs.deploy",
                (Kind::WorkerPool, UserAction::Update) => "gcloud.beta.run.worker-pools.update",
                (Kind::WorkerPool, _) => "gcloud.beta.run.worker-pools.deploy",
            };
            format!(
                "google-cloud-sdk gcloud/502.0.0 command/{command} invocation-id/{} \
                 environment/None environment-version/None client-os/LINUX \
                 client-os-ver/6.1.0 client-pltf-arch/x86_64 interactive/True \
                 from-script/False python/3.12.8 term/xterm-256color (Linux 6.1.0),gzip(gfe)",
                uuid::Builder::from_random_bytes(rand::random())
                    .into_uuid()
                    .simple()
            )
        }
        ApiVersion::V2 => {
            "Terraform/1.9.8 (+https://www.terraform.io) Terraform-Plugin-SDK/2.33.0 \
             terraform-provider-google/6.12.0,gzip(gfe)"
                .to_string()
        }
    }
}

/// Puts a successful admin write in the audit log (when one is configured). `refused`:
/// Binary Authorization refused the new revision, so a v2 operation ends with
/// FAILED_PRECONDITION and the resource's condition message.
fn record_admin_write(
    shared: &Shared,
    resource: &Map<String, Value>,
    name: &str,
    actor: &Actor,
    audit: AdminAudit,
    action: UserAction,
    refused: bool,
) {
    let Some(log) = &shared.audit_log else { return };
    let ["projects", _, "locations", location, collection, id] =
        name.split('/').collect::<Vec<_>>()[..]
    else {
        return;
    };
    let Some(kind) = Kind::from_collection(collection) else {
        return;
    };
    // The project id, also when the admin call named the project by number.
    let project = resource
        .get("name")
        .and_then(Value::as_str)
        .and_then(|n| n.split('/').nth(1))
        .unwrap_or_default()
        .to_string();
    let operation = (audit.api == ApiVersion::V2).then(|| LongRunning {
        name: format!(
            "projects/{project}/locations/{location}/operations/{}",
            uuid::Builder::from_random_bytes(rand::random()).into_uuid()
        ),
        done_at: Instant::now(),
        outcome: if refused {
            let message = resource
                .get("terminalCondition")
                .and_then(|c| c.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("The container image is not authorized by policy.");
            Outcome::Failed(Code::FailedPrecondition, message.to_string())
        } else {
            Outcome::Done(resource.clone())
        },
    });
    log.record(AuditedWrite {
        kind,
        project,
        location: location.to_string(),
        id: id.to_string(),
        api: audit.api,
        principal: actor.principal.clone(),
        user_agent: audit
            .user_agent
            .unwrap_or_else(|| default_user_agent(audit.api, kind, action)),
        caller_ip: assumed::ADMIN_CALLER_IP.to_string(),
        operation,
    });
}

/// `GET /_emulator/auditlog`: the audit log publisher's topic and counts.
async fn audit_log(State(shared): State<Arc<Shared>>) -> AdminResult {
    match &shared.audit_log {
        None => ok(json!({"enabled": false})),
        Some(log) => {
            let mut out = json!({
                "enabled": true,
                "topic": log.config().topic.to_string(),
                "pubsubEmulatorHost": log.config().pubsub_host,
            });
            if let (Value::Object(out), Ok(Value::Object(stats))) =
                (&mut out, serde_json::to_value(log.stats()))
            {
                out.extend(stats);
            }
            ok(out)
        }
    }
}

/// `GET /_emulator/state`: the whole estate in the seed format.
async fn state(State(shared): State<Arc<Shared>>) -> AdminResult {
    let dump = seed::dump(&lock(&shared.store));
    ok(serde_json::to_value(dump).map_err(|e| ApiError::new(Code::Internal, e.to_string()))?)
}

/// `POST /_emulator/reset` (optional body: a seed as JSON): back to the start-up seed, or
/// to the seed given; clears operations, the audit log, the request log, counters and
/// quota usage. Faults are kept.
async fn reset(State(shared): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let given = object_body(&body)?;
    let seed = if given.is_empty() {
        lock(&shared.initial).clone()
    } else {
        typed::<Seed>(Value::Object(given), "seed")?
    };
    let store = seed::load(&seed)
        .map_err(|err| ApiError::invalid_payload(format!("Invalid seed: {err}")))?;
    *lock(&shared.store) = store;
    *lock(&shared.initial) = seed;
    lock(&shared.journal).clear();
    lock(&shared.quotas).clear();
    ok(json!({"reset": true}))
}

/// `POST /_emulator/drift {"name", "binaryAuthorization": {...} | null, "by"?}`: someone
/// edits a resource's Binary Authorization (null or absent clears it).
async fn drift(State(shared): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let body = object_body(&body)?;
    check_keys(
        &body,
        &[
            "name",
            "binaryAuthorization",
            "by",
            "apiVersion",
            "userAgent",
        ],
    )?;
    let name = resource_name(&body)?;
    let actor = admin_actor(&body, "admin.drift")?;
    let audit = admin_audit(&body)?;
    let value = body
        .get("binaryAuthorization")
        .cloned()
        .filter(|v| !v.is_null());
    let mut store = lock(&shared.store);
    let change = store.set_binary_authorization(&name, value, &actor, Instant::now())?;
    let resource = store.resource_by_name_mut(&name)?.render(Instant::now());
    drop(store);
    record_admin_write(
        &shared,
        &resource,
        &name,
        &actor,
        audit,
        UserAction::Update,
        false,
    );
    ok(json!({"change": change, "resource": resource}))
}

/// `POST /_emulator/deploy {"name", "image"?, "binaryAuthorization"?, "unauthorized"?,
/// "by"?}`: a user deploys a new image (a new tag when absent); `binaryAuthorization`
/// absent keeps it, null clears it, an object sets it; `unauthorized: true` makes Binary
/// Authorization refuse the image (the previous revision keeps serving).
async fn deploy(State(shared): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let body = object_body(&body)?;
    check_keys(
        &body,
        &[
            "name",
            "image",
            "binaryAuthorization",
            "unauthorized",
            "by",
            "apiVersion",
            "userAgent",
        ],
    )?;
    let name = resource_name(&body)?;
    let actor = admin_actor(&body, "admin.deploy")?;
    let audit = admin_audit(&body)?;
    let image = match body.get("image") {
        None | Some(Value::Null) => None,
        Some(Value::String(image)) if !image.is_empty() => Some(image.clone()),
        Some(other) => {
            return Err(ApiError::invalid_field(
                "image",
                format!("'image' must be a non-empty string, got {other}"),
            ))
        }
    };
    let refused = match body.get("unauthorized") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::invalid_field(
                "unauthorized",
                format!("'unauthorized' must be a boolean, got {other}"),
            ))
        }
    };
    let binary_authorization = match body.get("binaryAuthorization") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(value) => Some(Some(value.clone())),
    };
    let mut store = lock(&shared.store);
    let deployed = store.deploy(
        &name,
        Deploy {
            image,
            binary_authorization,
            refused,
        },
        &actor,
        Instant::now(),
    )?;
    let resource = store.resource_by_name_mut(&name)?.render(Instant::now());
    drop(store);
    record_admin_write(
        &shared,
        &resource,
        &name,
        &actor,
        audit,
        UserAction::Deploy,
        deployed.refused,
    );
    ok(json!({"change": deployed.change, "refused": deployed.refused, "resource": resource}))
}

/// `POST /_emulator/traffic {"name", "revision", "by"?}`: a user sends all of a service's
/// traffic to one of its revisions (a traffic change or a rollback). Binary Authorization
/// refuses it when the service's policy does not authorize that revision's image: the
/// previous revisions keep serving (`refused: true`).
async fn traffic(State(shared): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let body = object_body(&body)?;
    check_keys(
        &body,
        &["name", "revision", "by", "apiVersion", "userAgent"],
    )?;
    let name = resource_name(&body)?;
    let actor = admin_actor(&body, "admin.traffic")?;
    let audit = admin_audit(&body)?;
    let revision = body
        .get("revision")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_field(
                "revision",
                "'revision' is required: the revision name (latestReadyRevision, or an earlier one)",
            )
        })?
        .to_string();
    let mut store = lock(&shared.store);
    let routed = store.route_traffic(&name, &revision, &actor, Instant::now())?;
    let resource = store.resource_by_name_mut(&name)?.render(Instant::now());
    drop(store);
    record_admin_write(
        &shared,
        &resource,
        &name,
        &actor,
        audit,
        UserAction::Traffic,
        routed.refused,
    );
    ok(json!({"change": routed.change, "refused": routed.refused, "resource": resource}))
}

/// `POST /_emulator/execute {"name"}`: runs a job once. The execution fails with
/// `CONTAINER_IMAGE_UNAUTHORIZED` when the job's policy does not authorize its image.
async fn execute(State(shared): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let body = object_body(&body)?;
    check_keys(&body, &["name"])?;
    let name = resource_name(&body)?;
    let mut store = lock(&shared.store);
    let time = jiff::Timestamp::now().to_string();
    let (execution, refused) = store.execute(&name, &time)?;
    let resource = store.resource_by_name_mut(&name)?.render(Instant::now());
    ok(json!({"execution": execution, "refused": refused, "resource": resource}))
}

/// `GET /_emulator/faults`: the fault configuration in force.
async fn get_faults(State(shared): State<Arc<Shared>>) -> AdminResult {
    ok(json!(shared.faults()))
}

/// `PUT /_emulator/faults`: replaces the whole configuration (absent fields: no fault,
/// token required).
async fn put_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let faults: Faults = typed(Value::Object(object_body(&body)?), "faults")?;
    shared
        .set_faults(faults.clone())
        .map_err(|err| ApiError::invalid_payload(err.to_string()))?;
    ok(json!(faults))
}

/// `PATCH /_emulator/faults`: changes only the fields given.
async fn patch_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let changes = object_body(&body)?;
    let mut merged = match serde_json::to_value(shared.faults()) {
        Ok(Value::Object(current)) => current,
        _ => Map::new(),
    };
    merged.extend(changes);
    let faults: Faults = typed(Value::Object(merged), "faults")?;
    shared
        .set_faults(faults.clone())
        .map_err(|err| ApiError::invalid_payload(err.to_string()))?;
    ok(json!(faults))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountersQuery {
    client: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestsQuery {
    #[serde(default)]
    since: u64,
    client: Option<String>,
    method: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    since: u64,
    client: Option<String>,
    resource: Option<String>,
}

/// The query of an admin call, with a Google-style error when it does not parse.
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|err| ApiError::invalid_payload(format!("Invalid query: {}", err.body_text())))
}

/// `GET /_emulator/counters[?client=TAG]`: calls per method and status, reads, writes and
/// API changes (of one caller only, with `client`).
async fn counters(
    State(shared): State<Arc<Shared>>,
    params: Result<Query<CountersQuery>, QueryRejection>,
) -> AdminResult {
    let params = query(params)?;
    ok(json!(shared.counters(params.client.as_deref())))
}

/// `GET /_emulator/requests[?since=SEQ&client=TAG&method=services.patch]`: the request log.
async fn requests(
    State(shared): State<Arc<Shared>>,
    params: Result<Query<RequestsQuery>, QueryRejection>,
) -> AdminResult {
    let params = query(params)?;
    let requests = lock(&shared.journal).requests(
        params.since,
        params.client.as_deref(),
        params.method.as_deref(),
    );
    ok(json!({"requests": requests}))
}

/// `GET /_emulator/audit[?since=SEQ&client=TAG&resource=NAME]`: every change applied to a
/// resource, with the fields it touched and who made it.
async fn audit(
    State(shared): State<Arc<Shared>>,
    params: Result<Query<AuditQuery>, QueryRejection>,
) -> AdminResult {
    let params = query(params)?;
    let store = lock(&shared.store);
    let changes: Vec<_> = store
        .audit()
        .iter()
        .filter(|c| c.seq > params.since)
        .filter(|c| {
            params
                .client
                .as_ref()
                .is_none_or(|client| &c.client == client)
        })
        .filter(|c| params.resource.as_ref().is_none_or(|r| &c.resource == r))
        .collect();
    ok(json!({"changes": changes}))
}

/// `POST /_emulator/generate` (a generate spec): adds generated resources to the estate.
async fn grow(State(shared): State<Arc<Shared>>, body: Bytes) -> AdminResult {
    let spec: GenerateSpec = typed(Value::Object(object_body(&body)?), "generate spec")?;
    let mut store = lock(&shared.store);
    let known = store
        .projects()
        .map(|p| (p.id.clone(), p.number.clone()))
        .collect();
    let generated = generate::estate(&spec, &known)
        .map_err(|m| ApiError::invalid_payload(format!("Invalid generate spec: {m}")))?;
    let drifted = generate::drifted(&generated);
    seed::add(&mut store, &generated)
        .map_err(|err| ApiError::new(Code::InvalidArgument, err.to_string()))?;
    ok(json!({"added": spec.count, "drifted": drifted}))
}
