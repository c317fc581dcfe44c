//! The API surface: which path is which method, its query parameters, and the per-call
//! pipeline (latency, resets, auth, injected errors, permissions, quotas, then the handler).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::json;

use super::assumed;
use super::denials::{self, ProjectAccess};
use super::enums;
use super::faults::{self, Access, Faults, QuotaExceeded};
use super::google::{self, ApiError, Code};
use super::handlers;
use super::journal::RequestRecord;
use super::server::{ConnControl, PeerAddr};
use super::state::Kind;
use super::{lock, Shared};

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// One call of the emulated API, parsed from its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET v2/projects/{p}/locations/{l}/{collection}`.
    List {
        /// Kind listed.
        kind: Kind,
        /// Project id or number.
        project: String,
        /// Region.
        location: String,
    },
    /// `GET v2/projects/{p}/locations/{l}/{collection}/{id}`.
    Get {
        /// Kind.
        kind: Kind,
        /// Project id or number.
        project: String,
        /// Region.
        location: String,
        /// Resource id.
        id: String,
    },
    /// `PATCH v2/projects/{p}/locations/{l}/{collection}/{id}`.
    Patch {
        /// Kind.
        kind: Kind,
        /// Project id or number.
        project: String,
        /// Region.
        location: String,
        /// Resource id.
        id: String,
    },
    /// `GET v2/projects/{p}/locations/{l}/{services|workerPools}/{id}/revisions/{revision}`.
    GetRevision {
        /// Service or WorkerPool (the revision's parent).
        kind: Kind,
        /// Project id or number.
        project: String,
        /// Region.
        location: String,
        /// The parent's id.
        id: String,
        /// Revision id.
        revision: String,
    },
    /// `GET v2/projects/{p}/locations/{l}/operations/{id}`.
    GetOperation {
        /// Project id or number.
        project: String,
        /// Region.
        location: String,
        /// Operation id.
        id: String,
    },
    /// `POST v2/projects/{p}/locations/{l}/operations/{id}:wait`.
    WaitOperation {
        /// Project id or number.
        project: String,
        /// Region.
        location: String,
        /// Operation id.
        id: String,
    },
    /// `GET v1/projects/{p}/locations`.
    ListLocations {
        /// Project id or number.
        project: String,
    },
    /// `GET v1/projects/{p}/platforms/cloudRun/policies/{id}` (Binary Authorization API).
    GetPolicy {
        /// Project id or number.
        project: String,
        /// Policy id.
        id: String,
    },
    /// `GET v2/projects/{p}/policies/{constraint}:getEffectivePolicy` (Org Policy API).
    GetEffectivePolicy {
        /// Project id or number.
        project: String,
        /// The constraint (`run.allowedBinaryAuthorizationPolicies`).
        constraint: String,
    },
}

impl Route {
    /// The method name used by counters and the request log (`services.list`, ...).
    pub fn method(&self) -> &'static str {
        use Kind::*;
        match self {
            Route::List { kind: Service, .. } => "services.list",
            Route::List { kind: Job, .. } => "jobs.list",
            Route::List {
                kind: WorkerPool, ..
            } => "workerPools.list",
            Route::Get { kind: Service, .. } => "services.get",
            Route::Get { kind: Job, .. } => "jobs.get",
            Route::Get {
                kind: WorkerPool, ..
            } => "workerPools.get",
            Route::Patch { kind: Service, .. } => "services.patch",
            Route::Patch { kind: Job, .. } => "jobs.patch",
            Route::Patch {
                kind: WorkerPool, ..
            } => "workerPools.patch",
            Route::GetRevision { .. } => "revisions.get",
            Route::GetOperation { .. } => "operations.get",
            Route::WaitOperation { .. } => "operations.wait",
            Route::ListLocations { .. } => "locations.list",
            Route::GetPolicy { .. } => "platformPolicies.get",
            Route::GetEffectivePolicy { .. } => "policies.getEffectivePolicy",
        }
    }

    /// The fully-qualified RPC, as Google names it in `ErrorInfo` metadata.
    fn rpc(&self) -> &'static str {
        use Kind::*;
        match self {
            Route::List { kind: Service, .. } => "google.cloud.run.v2.Services.ListServices",
            Route::List { kind: Job, .. } => "google.cloud.run.v2.Jobs.ListJobs",
            Route::List {
                kind: WorkerPool, ..
            } => "google.cloud.run.v2.WorkerPools.ListWorkerPools",
            Route::Get { kind: Service, .. } => "google.cloud.run.v2.Services.GetService",
            Route::Get { kind: Job, .. } => "google.cloud.run.v2.Jobs.GetJob",
            Route::Get {
                kind: WorkerPool, ..
            } => "google.cloud.run.v2.WorkerPools.GetWorkerPool",
            Route::Patch { kind: Service, .. } => "google.cloud.run.v2.Services.UpdateService",
            Route::Patch { kind: Job, .. } => "google.cloud.run.v2.Jobs.UpdateJob",
            Route::Patch {
                kind: WorkerPool, ..
            } => "google.cloud.run.v2.WorkerPools.UpdateWorkerPool",
            Route::GetRevision { .. } => "google.cloud.run.v2.Revisions.GetRevision",
            Route::GetOperation { .. } => "google.longrunning.Operations.GetOperation",
            Route::WaitOperation { .. } => "google.longrunning.Operations.WaitOperation",
            Route::ListLocations { .. } => "google.cloud.location.Locations.ListLocations",
            Route::GetPolicy { .. } => {
                "google.cloud.binaryauthorization.v1.BinauthzManagementServiceV1.GetPlatformPolicy"
            }
            Route::GetEffectivePolicy { .. } => {
                "google.cloud.orgpolicy.v2.OrgPolicy.GetEffectivePolicy"
            }
        }
    }

    /// Read or write, for quotas and `write:` forbidden entries.
    pub fn access(&self) -> Access {
        match self {
            Route::Patch { .. } => Access::Write,
            _ => Access::Read,
        }
    }

    /// The project named by the path.
    pub fn project(&self) -> &str {
        match self {
            Route::List { project, .. }
            | Route::Get { project, .. }
            | Route::Patch { project, .. }
            | Route::GetRevision { project, .. }
            | Route::GetOperation { project, .. }
            | Route::WaitOperation { project, .. }
            | Route::ListLocations { project }
            | Route::GetPolicy { project, .. }
            | Route::GetEffectivePolicy { project, .. } => project,
        }
    }

    /// The region named by the path (v2 calls), which the per-region quotas count against.
    pub fn location(&self) -> Option<&str> {
        match self {
            Route::List { location, .. }
            | Route::Get { location, .. }
            | Route::Patch { location, .. }
            | Route::GetRevision { location, .. }
            | Route::GetOperation { location, .. }
            | Route::WaitOperation { location, .. } => Some(location),
            Route::ListLocations { .. }
            | Route::GetPolicy { .. }
            | Route::GetEffectivePolicy { .. } => None,
        }
    }

    /// Whether the call is to the Cloud Run Admin API (not Binary Authorization's or Org
    /// Policy's): only those are refused when the Cloud Run Admin API is disabled or a VPC
    /// Service Controls perimeter keeps the caller out.
    pub fn is_cloud_run(&self) -> bool {
        !matches!(
            self,
            Route::GetPolicy { .. } | Route::GetEffectivePolicy { .. }
        )
    }

    /// The name the call is about, as the caller wrote it.
    pub fn target(&self) -> String {
        match self {
            Route::List {
                kind,
                project,
                location,
            } => format!(
                "projects/{project}/locations/{location}/{}",
                kind.collection()
            ),
            Route::Get {
                kind,
                project,
                location,
                id,
            }
            | Route::Patch {
                kind,
                project,
                location,
                id,
            } => format!(
                "projects/{project}/locations/{location}/{}/{id}",
                kind.collection()
            ),
            Route::GetRevision {
                kind,
                project,
                location,
                id,
                revision,
            } => format!(
                "projects/{project}/locations/{location}/{}/{id}/revisions/{revision}",
                kind.collection()
            ),
            Route::GetOperation {
                project,
                location,
                id,
            }
            | Route::WaitOperation {
                project,
                location,
                id,
            } => format!("projects/{project}/locations/{location}/operations/{id}"),
            Route::ListLocations { project } => format!("projects/{project}"),
            Route::GetPolicy { project, id } => {
                format!("projects/{project}/platforms/cloudRun/policies/{id}")
            }
            Route::GetEffectivePolicy {
                project,
                constraint,
            } => format!("projects/{project}/policies/{constraint}"),
        }
    }

    /// What a call is about, for resource- and location-level forbidden entries: the
    /// resource, the collection listed, or the operation (the project's v1 locations list
    /// has none).
    fn resource(&self) -> Option<String> {
        match self {
            Route::ListLocations { .. } => None,
            _ => Some(self.target()),
        }
    }

    /// The IAM permission the call needs.
    pub fn permission(&self) -> String {
        match self {
            Route::List { kind, .. } => format!("run.{}.list", kind.permission_noun()),
            Route::Get { kind, .. } => format!("run.{}.get", kind.permission_noun()),
            Route::Patch { kind, .. } => format!("run.{}.update", kind.permission_noun()),
            Route::GetRevision { .. } => "run.revisions.get".into(),
            Route::GetOperation { .. } | Route::WaitOperation { .. } => "run.operations.get".into(),
            Route::ListLocations { .. } => "run.locations.list".into(),
            Route::GetPolicy { .. } => "binaryauthorization.platformPolicies.get".into(),
            Route::GetEffectivePolicy { .. } => "orgpolicy.policy.get".into(),
        }
    }

    /// Query parameters the method binds (besides Google's system parameters).
    fn parameters(&self) -> &'static [Param] {
        match self {
            Route::List { .. } => &[Param::PageSize, Param::PageToken, Param::ShowDeleted],
            Route::Patch {
                kind: Kind::Job, ..
            } => &[Param::ValidateOnly, Param::AllowMissing],
            Route::Patch {
                kind: Kind::Service,
                ..
            } => &[Param::UpdateMask, Param::ValidateOnly, Param::AllowMissing],
            Route::Patch {
                kind: Kind::WorkerPool,
                ..
            } => &[
                Param::UpdateMask,
                Param::ValidateOnly,
                Param::AllowMissing,
                Param::ForceNewRevision,
            ],
            Route::ListLocations { .. } => &[
                Param::PageSize,
                Param::PageToken,
                Param::Filter,
                Param::ExtraLocationTypes,
            ],
            Route::Get { .. }
            | Route::GetRevision { .. }
            | Route::GetOperation { .. }
            | Route::WaitOperation { .. }
            | Route::GetPolicy { .. }
            | Route::GetEffectivePolicy { .. } => &[],
        }
    }
}

/// Why a path is not served.
fn no_route(method: &Method, path: &str, known_path: bool) -> ApiError {
    if known_path {
        ApiError::new(
            Code::Unimplemented,
            format!("The emulator does not implement {method} {path}."),
        )
    } else {
        ApiError::not_found(format!(
            "The requested URL {path} was not found on this server."
        ))
    }
}

/// Parses the method and path of a call.
pub fn parse_route(method: &Method, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let owned = |x: &str| x.to_string();
    let route = match s.as_slice() {
        ["v2", "projects", p, "locations", l, "operations", id] => {
            if let Some(id) = id.strip_suffix(":wait") {
                (method == Method::POST).then(|| Route::WaitOperation {
                    project: owned(p),
                    location: owned(l),
                    id: owned(id),
                })
            } else {
                (method == Method::GET).then(|| Route::GetOperation {
                    project: owned(p),
                    location: owned(l),
                    id: owned(id),
                })
            }
        }
        ["v2", "projects", p, "locations", l, collection]
            if Kind::from_collection(collection).is_some() =>
        {
            let kind = Kind::from_collection(collection).unwrap_or(Kind::Service);
            (method == Method::GET).then(|| Route::List {
                kind,
                project: owned(p),
                location: owned(l),
            })
        }
        ["v2", "projects", p, "locations", l, collection, id]
            if Kind::from_collection(collection).is_some() && !id.contains(':') =>
        {
            let kind = Kind::from_collection(collection).unwrap_or(Kind::Service);
            let (project, location, id) = (owned(p), owned(l), owned(id));
            match *method {
                Method::GET => Some(Route::Get {
                    kind,
                    project,
                    location,
                    id,
                }),
                Method::PATCH => Some(Route::Patch {
                    kind,
                    project,
                    location,
                    id,
                }),
                _ => None,
            }
        }
        ["v2", "projects", p, "locations", l, collection, id, "revisions", revision]
            if matches!(
                Kind::from_collection(collection),
                Some(Kind::Service | Kind::WorkerPool)
            ) =>
        {
            let kind = Kind::from_collection(collection).unwrap_or(Kind::Service);
            (method == Method::GET).then(|| Route::GetRevision {
                kind,
                project: owned(p),
                location: owned(l),
                id: owned(id),
                revision: owned(revision),
            })
        }
        ["v1", "projects", p, "locations"] => {
            (method == Method::GET).then(|| Route::ListLocations { project: owned(p) })
        }
        ["v1", "projects", p, "platforms", "cloudRun", "policies", id] => (method == Method::GET)
            .then(|| Route::GetPolicy {
                project: owned(p),
                id: owned(id),
            }),
        ["v2", "projects", p, "policies", last] if last.ends_with(":getEffectivePolicy") => {
            (method == Method::GET).then(|| Route::GetEffectivePolicy {
                project: owned(p),
                constraint: owned(last.trim_end_matches(":getEffectivePolicy")),
            })
        }
        _ => return Err(no_route(method, path, false)),
    };
    route.ok_or_else(|| no_route(method, path, true))
}

/// A query parameter a method binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Param {
    PageSize,
    PageToken,
    ShowDeleted,
    UpdateMask,
    ValidateOnly,
    AllowMissing,
    ForceNewRevision,
    Filter,
    ExtraLocationTypes,
}

impl Param {
    /// The parameter for a query key, in its JSON (`pageSize`) or proto (`page_size`) form.
    fn from_key(key: &str) -> Option<Param> {
        Some(match key {
            "pageSize" | "page_size" => Param::PageSize,
            "pageToken" | "page_token" => Param::PageToken,
            "showDeleted" | "show_deleted" => Param::ShowDeleted,
            "updateMask" | "update_mask" => Param::UpdateMask,
            "validateOnly" | "validate_only" => Param::ValidateOnly,
            "allowMissing" | "allow_missing" => Param::AllowMissing,
            "forceNewRevision" | "force_new_revision" => Param::ForceNewRevision,
            "filter" => Param::Filter,
            "extraLocationTypes" | "extra_location_types" => Param::ExtraLocationTypes,
            _ => return None,
        })
    }
}

/// Google's standard system parameters, accepted on every call.
const SYSTEM_PARAMETERS: &[&str] = &[
    "$alt",
    "alt",
    "prettyPrint",
    "$prettyPrint",
    "fields",
    "$fields",
    "key",
    "quotaUser",
    "$.xgafv",
    "access_token",
    "oauth_token",
    "callback",
    "$callback",
    "uploadType",
    "upload_protocol",
    "userIp",
];

/// The query parameters of one call, validated.
#[derive(Clone, Debug)]
pub struct Params {
    /// `pageSize`; 0 or absent means the default.
    pub page_size: i64,
    /// `pageToken`; empty means the first page.
    pub page_token: Option<String>,
    /// `showDeleted`.
    pub show_deleted: bool,
    /// `updateMask`, when given and not empty.
    pub update_mask: Option<String>,
    /// `validateOnly`.
    pub validate_only: bool,
    /// `allowMissing`.
    pub allow_missing: bool,
    /// `forceNewRevision` (worker pools).
    pub force_new_revision: bool,
    /// `filter` (locations), when given and not empty.
    pub filter: Option<String>,
    /// `prettyPrint` (default true, like Google's front end).
    pub pretty: bool,
    /// `access_token` given as a query parameter.
    pub access_token: Option<String>,
    /// `$alt=json;enum-encoding=int`: answer enums as their numbers.
    pub enum_int: bool,
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "True" | "TRUE" | "1" => Ok(true),
        "false" | "False" | "FALSE" | "0" | "" => Ok(false),
        _ => Err(ApiError::invalid_payload(format!(
            "Invalid value at '{key}' (TYPE_BOOL), \"{value}\""
        ))),
    }
}

/// Parses and validates a query string against the parameters `route` binds.
pub fn parse_params(query: Option<&str>, route: &Route) -> Result<Params, ApiError> {
    let mut params = Params {
        page_size: 0,
        page_token: None,
        show_deleted: false,
        update_mask: None,
        validate_only: false,
        allow_missing: false,
        force_new_revision: false,
        filter: None,
        pretty: true,
        access_token: None,
        enum_int: false,
    };
    let allowed = route.parameters();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let (key, value) = (key.as_ref(), value.as_ref());
        if SYSTEM_PARAMETERS.contains(&key) {
            match key {
                "$alt" | "alt" => {
                    let mut options = value.split(';').map(str::trim);
                    if options.next() != Some("json") {
                        return Err(ApiError::invalid_payload(format!(
                            "Invalid value for \"{key}\": \"{value}\" (this API answers json only)"
                        )));
                    }
                    for option in options {
                        match option.split_once('=') {
                            Some(("enum-encoding", "int")) => params.enum_int = true,
                            Some(("enum-encoding", "string")) => params.enum_int = false,
                            _ => {}
                        }
                    }
                }
                "prettyPrint" | "$prettyPrint" => params.pretty = parse_bool(key, value)?,
                "access_token" | "oauth_token" if !value.is_empty() => {
                    params.access_token = Some(value.to_string())
                }
                _ => {}
            }
            continue;
        }
        let param = Param::from_key(key).filter(|p| allowed.contains(p)).ok_or_else(|| {
            ApiError::invalid_payload(format!(
                "Invalid JSON payload received. Unknown name \"{key}\": Cannot bind query parameter. \
                 Field '{key}' could not be found in request message."
            ))
        })?;
        match param {
            Param::PageSize => {
                let size: i64 = value.parse().map_err(|_| {
                    ApiError::invalid_payload(format!(
                        "Invalid value at 'page_size' (TYPE_INT32), \"{value}\""
                    ))
                })?;
                if size < 0 {
                    return Err(ApiError::invalid_field(
                        "page_size",
                        "page_size must not be negative.",
                    ));
                }
                params.page_size = size;
            }
            Param::PageToken => params.page_token = (!value.is_empty()).then(|| value.to_string()),
            Param::ShowDeleted => params.show_deleted = parse_bool("show_deleted", value)?,
            Param::UpdateMask => {
                params.update_mask = (!value.is_empty()).then(|| value.to_string())
            }
            Param::ValidateOnly => params.validate_only = parse_bool("validate_only", value)?,
            Param::AllowMissing => params.allow_missing = parse_bool("allow_missing", value)?,
            Param::ForceNewRevision => {
                params.force_new_revision = parse_bool("force_new_revision", value)?
            }
            Param::Filter => params.filter = (!value.is_empty()).then(|| value.to_string()),
            Param::ExtraLocationTypes => {}
        }
    }
    Ok(params)
}

/// Who is calling: the tag tests use to tell callers apart, and the principal recorded as
/// `lastModifier`.
#[derive(Clone, Debug)]
pub struct Caller {
    /// `x-emulator-client`, else the User-Agent, else empty.
    pub tag: String,
    /// `x-emulator-principal`, else a fixed service-account-like email.
    pub principal: String,
    /// The bearer token, if one was sent.
    pub token: Option<String>,
    /// The User-Agent, recorded as `callerSuppliedUserAgent` in audit log entries.
    pub user_agent: String,
    /// The TCP peer's IP address (`callerIp` in audit log entries).
    pub ip: String,
}

/// Principal recorded for API writes without an `x-emulator-principal` header.
pub const DEFAULT_PRINCIPAL: &str = "emulator-caller@example.com";

impl Caller {
    /// Reads the caller's identity from the headers.
    pub fn from_headers(headers: &HeaderMap) -> Caller {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let token = header("authorization").and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            let token = token.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
        });
        Caller {
            tag: header("x-emulator-client")
                .or_else(|| header("user-agent"))
                .unwrap_or_default(),
            principal: header("x-emulator-principal").unwrap_or_else(|| DEFAULT_PRINCIPAL.into()),
            token,
            user_agent: header("user-agent").unwrap_or_default(),
            ip: String::new(),
        }
    }
}

/// The canonical message of an injected error with this status.
fn injected_error(status: u16, route: &Route, project_number: &str, faults: &Faults) -> ApiError {
    let code = Code::from_http(status).unwrap_or(Code::Unavailable);
    match code {
        Code::ResourceExhausted => {
            let access = route.access();
            let (reads, writes) = assumed::INJECTED_QUOTA_LIMITS;
            let limit = faults.quota(access).unwrap_or(match access {
                Access::Read => reads,
                Access::Write => writes,
            });
            faults::quota_error(QuotaExceeded {
                access,
                project_number,
                region: route.location().unwrap_or("global"),
                limit,
                retry_after: std::time::Duration::from_secs(1),
                with_retry_info: faults.quota_retry_info,
            })
        }
        Code::Unauthenticated => unauthenticated(route),
        Code::PermissionDenied => permission_denied(route),
        _ => ApiError::new(
            code,
            match code {
                Code::InvalidArgument => "Request contains an invalid argument.",
                Code::NotFound => "Requested entity was not found.",
                Code::Aborted => "The operation was aborted.",
                Code::Internal => "Internal error encountered.",
                Code::Unimplemented => "Method not implemented.",
                Code::DeadlineExceeded => "The request deadline was exceeded.",
                _ => "The service is currently unavailable.",
            },
        ),
    }
}

fn unauthenticated(route: &Route) -> ApiError {
    ApiError::new(
        Code::Unauthenticated,
        "Request is missing required authentication credential. Expected OAuth 2 access token, \
         login cookie or other valid authentication credential.",
    )
    .with_detail(google::error_info(
        "CREDENTIALS_MISSING",
        "googleapis.com",
        json!({"method": route.rpc(), "service": "run.googleapis.com"}),
    ))
}

/// 403 PERMISSION_DENIED naming the permission the call needs and what it is about.
pub fn permission_denied(route: &Route) -> ApiError {
    denials::permission_denied(&route.permission(), &route.target())
}

/// The fallback handler serving the whole emulated API.
pub async fn api(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let time = Timestamp::now().to_string();
    let (parts, body) = request.into_parts();
    let mut caller = Caller::from_headers(&parts.headers);
    if let Some(PeerAddr(peer)) = parts.extensions.get::<PeerAddr>() {
        caller.ip = peer.ip().to_string();
    }
    let path = parts.uri.path().to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_string());
    let route = parse_route(&parts.method, &path);
    let mut record = RequestRecord {
        seq: 0,
        time,
        method: route.as_ref().map_or("unknown", Route::method).to_string(),
        http_method: parts.method.to_string(),
        path: path_and_query,
        resource: route.as_ref().ok().map(Route::target),
        code: 0,
        client: caller.tag.clone(),
    };
    let access = route.as_ref().ok().map(Route::access);
    let faults = shared.faults();

    let latency = faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if faults::roll(faults.reset_rate) {
        if let Some(control) = parts.extensions.get::<ConnControl>() {
            lock(&shared.journal).record(record, access);
            control.reset();
            return std::future::pending().await;
        }
    }

    let response = match route {
        Ok(route) => match serve(&shared, &faults, &caller, route, parts.uri.query(), body).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        },
        Err(error) => error.into_response(),
    };
    record.code = response.status().as_u16();
    tracing::debug!(
        method = %record.method,
        path = %record.path,
        code = record.code,
        client = %record.client,
        "emulator: API call"
    );
    lock(&shared.journal).record(record, access);
    response
}

/// Everything after the transport faults: auth, injected errors, permissions, quotas,
/// then the method itself.
async fn serve(
    shared: &Shared,
    faults: &Faults,
    caller: &Caller,
    route: Route,
    query: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let params = parse_params(query, &route)?;
    if faults.require_token && caller.token.is_none() && params.access_token.is_none() {
        return Err(unauthenticated(&route));
    }
    // A project that does not exist and one the caller cannot see answer alike: 403.
    let (project_id, project_number, seeded_access) = {
        let store = lock(&shared.store);
        let project = store
            .project(route.project())
            .ok_or_else(|| permission_denied(&route))?;
        (project.id.clone(), project.number.clone(), project.access)
    };
    let access = faults
        .access_to((&project_id, &project_number))
        .unwrap_or(seeded_access);
    match access {
        ProjectAccess::Granted => {}
        ProjectAccess::NotVisible => return Err(permission_denied(&route)),
        ProjectAccess::ApiDisabled if route.is_cloud_run() => {
            return Err(denials::api_disabled(&project_number))
        }
        ProjectAccess::VpcServiceControls if route.is_cloud_run() => {
            return Err(denials::vpc_service_controls(
                &project_number,
                &format!("{}/{}", route.method(), route.target()),
            ))
        }
        ProjectAccess::ApiDisabled | ProjectAccess::VpcServiceControls => {}
    }
    if let Some(status) = faults.roll_error() {
        return Err(injected_error(status, &route, &project_number, faults));
    }
    let resource = route.resource();
    if faults.is_forbidden(
        route.access(),
        (&project_id, &project_number),
        resource.as_deref(),
    ) {
        return Err(permission_denied(&route));
    }
    if let Some(location) = route.location() {
        lock(&shared.store).require_location(&project_id, location)?;
        if let Some(limit) = faults.quota(route.access()) {
            let taken = lock(&shared.quotas).take(
                &project_id,
                location,
                route.access(),
                limit,
                Instant::now(),
            );
            if let Err(retry_after) = taken {
                return Err(faults::quota_error(QuotaExceeded {
                    access: route.access(),
                    project_number: &project_number,
                    region: location,
                    limit,
                    retry_after,
                    with_retry_info: faults.quota_retry_info,
                }));
            }
        }
    }
    let body = match route {
        Route::Patch { .. } | Route::WaitOperation { .. } => {
            axum::body::to_bytes(body, MAX_BODY_BYTES)
                .await
                .map_err(|err| {
                    ApiError::invalid_payload(format!("Cannot read the request body: {err}"))
                })?
        }
        _ => Default::default(),
    };
    let mut value = handlers::handle(shared, faults, caller, &route, &params, &body).await?;
    if params.enum_int {
        enums::to_numbers(&mut value);
    }
    Ok(google::json_response(
        axum::http::StatusCode::OK,
        &value,
        params.pretty,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_methods() {
        let route = parse_route(&Method::GET, "/v2/projects/p/locations/l/workerPools").unwrap();
        assert_eq!(route.method(), "workerPools.list");
        let route = parse_route(
            &Method::POST,
            "/v2/projects/p/locations/l/operations/abc%3Await",
        )
        .unwrap();
        assert_eq!(
            route,
            Route::WaitOperation {
                project: "p".into(),
                location: "l".into(),
                id: "abc".into()
            }
        );
        let err =
            parse_route(&Method::DELETE, "/v2/projects/p/locations/l/services/s").unwrap_err();
        assert_eq!(err.code, Code::Unimplemented);
        let err = parse_route(&Method::GET, "/v3/whatever").unwrap_err();
        assert_eq!(err.code, Code::NotFound);
    }

    #[test]
    fn query_parameters_accept_both_spellings_and_system_parameters() {
        let route = parse_route(&Method::PATCH, "/v2/projects/p/locations/l/services/s").unwrap();
        let params = parse_params(
            Some("update_mask=binaryAuthorization&validateOnly=false&allowMissing=false&%24alt=json%3Benum-encoding%3Dint&prettyPrint=false&fields=name"),
            &route,
        )
        .unwrap();
        assert_eq!(params.update_mask.as_deref(), Some("binaryAuthorization"));
        assert!(!params.pretty);
        let job = parse_route(&Method::PATCH, "/v2/projects/p/locations/l/jobs/j").unwrap();
        let err = parse_params(Some("updateMask=binaryAuthorization"), &job).unwrap_err();
        assert!(
            err.message.contains("Cannot bind query parameter"),
            "{}",
            err.message
        );
    }
}
