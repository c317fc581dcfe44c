//! Metrics hooks of the Cloud Run client: what each call did, for the controller's
//! Prometheus metrics.
//!
//! Every label a hook receives is from a small closed set (API method, status code name,
//! throttle kind) — never a resource name or error text — so metric cardinality stays
//! bounded.

use std::time::Duration;

use super::error::{Code, Error};
use super::ratelimit::{Budget, Throttle};
use crate::resource::ResourceKind;

/// The API methods this client calls, named as Google's audit logs name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiMethod {
    /// `GET v2/.../services`.
    ListServices,
    /// `GET v2/.../jobs`.
    ListJobs,
    /// `GET v2/.../workerPools`.
    ListWorkerPools,
    /// `GET v2/{service}`.
    GetService,
    /// `GET v2/{job}`.
    GetJob,
    /// `GET v2/{workerPool}`.
    GetWorkerPool,
    /// `PATCH v2/{service}`.
    UpdateService,
    /// `PATCH v2/{job}`.
    UpdateJob,
    /// `PATCH v2/{workerPool}`.
    UpdateWorkerPool,
    /// `GET v2/{operation}`.
    GetOperation,
    /// `POST v2/{operation}:wait`.
    WaitOperation,
    /// `GET v1/projects/{p}/locations`.
    ListLocations,
    /// Binary Authorization `GET v1/projects/{p}/platforms/cloudRun/policies/{id}`.
    GetPlatformPolicy,
    /// Organization Policy `GET v2/projects/{p}/policies/{constraint}:getEffectivePolicy`.
    GetEffectiveOrgPolicy,
    /// `GET v2/{service|workerPool}/revisions/{r}` (a revision's creation time).
    GetRevision,
}

impl ApiMethod {
    /// Every method, for pre-registering metric series.
    pub const ALL: [ApiMethod; 15] = [
        Self::ListServices,
        Self::ListJobs,
        Self::ListWorkerPools,
        Self::GetService,
        Self::GetJob,
        Self::GetWorkerPool,
        Self::UpdateService,
        Self::UpdateJob,
        Self::UpdateWorkerPool,
        Self::GetOperation,
        Self::WaitOperation,
        Self::ListLocations,
        Self::GetPlatformPolicy,
        Self::GetEffectiveOrgPolicy,
        Self::GetRevision,
    ];

    /// Stable label: `ListServices`, `UpdateJob`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ListServices => "ListServices",
            Self::ListJobs => "ListJobs",
            Self::ListWorkerPools => "ListWorkerPools",
            Self::GetService => "GetService",
            Self::GetJob => "GetJob",
            Self::GetWorkerPool => "GetWorkerPool",
            Self::UpdateService => "UpdateService",
            Self::UpdateJob => "UpdateJob",
            Self::UpdateWorkerPool => "UpdateWorkerPool",
            Self::GetOperation => "GetOperation",
            Self::WaitOperation => "WaitOperation",
            Self::ListLocations => "ListLocations",
            Self::GetPlatformPolicy => "GetPlatformPolicy",
            Self::GetEffectiveOrgPolicy => "GetEffectiveOrgPolicy",
            Self::GetRevision => "GetRevision",
        }
    }

    pub(crate) fn list(kind: ResourceKind) -> Self {
        match kind {
            ResourceKind::Service => Self::ListServices,
            ResourceKind::Job => Self::ListJobs,
            ResourceKind::WorkerPool => Self::ListWorkerPools,
        }
    }

    pub(crate) fn get(kind: ResourceKind) -> Self {
        match kind {
            ResourceKind::Service => Self::GetService,
            ResourceKind::Job => Self::GetJob,
            ResourceKind::WorkerPool => Self::GetWorkerPool,
        }
    }

    pub(crate) fn update(kind: ResourceKind) -> Self {
        match kind {
            ResourceKind::Service => Self::UpdateService,
            ResourceKind::Job => Self::UpdateJob,
            ResourceKind::WorkerPool => Self::UpdateWorkerPool,
        }
    }
}

impl std::fmt::Display for ApiMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one HTTP attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallStatus {
    /// A Google status code (`Ok` for success).
    Code(Code),
    /// The request did not reach the server or the answer was cut.
    Transport,
    /// No answer within the per-call timeout.
    Timeout,
    /// An answer that is not the expected JSON.
    Decode,
    /// No token could be obtained; nothing was sent.
    Auth,
}

impl CallStatus {
    /// Stable label: `OK`, `PERMISSION_DENIED`, ..., `TRANSPORT`, `TIMEOUT`, `DECODE`, `AUTH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Code(code) => code.as_str(),
            Self::Transport => "TRANSPORT",
            Self::Timeout => "TIMEOUT",
            Self::Decode => "DECODE",
            Self::Auth => "AUTH",
        }
    }

    pub(crate) fn of<T>(result: &Result<T, Error>) -> Self {
        match result {
            Ok(_) => Self::Code(Code::Ok),
            Err(Error::Transport { .. }) => Self::Transport,
            Err(Error::Timeout { .. }) => Self::Timeout,
            Err(Error::Decode { .. }) => Self::Decode,
            Err(err) => err.code().map_or(Self::Auth, Self::Code),
        }
    }
}

/// Receives what the client does; the controller implements it with `prometheus-client`.
/// Every method has a no-op default. Implementations must be cheap and must not block.
pub trait CallObserver: Send + Sync + 'static {
    /// One HTTP attempt finished after `latency` (retries report one call each).
    fn call(&self, method: ApiMethod, status: CallStatus, latency: Duration) {
        let _ = (method, status, latency);
    }

    /// A failed attempt of `method` (with `reason`, see [`Error::reason`]) will be retried
    /// after `delay`.
    fn retry(&self, method: ApiMethod, reason: &'static str, delay: Duration) {
        let _ = (method, reason, delay);
    }

    /// A call waited `waited` for the client-side throttle `throttle` (only reported when
    /// it actually waited).
    fn throttled(&self, throttle: Throttle, waited: Duration) {
        let _ = (throttle, waited);
    }

    /// A remediation write lost an etag race and re-read the resource.
    fn conflict(&self, kind: ResourceKind) {
        let _ = kind;
    }

    /// The effective rate of `budget` in (project, location) changed to `per_minute`: lowered
    /// by a 429, or recovered by a whole request per minute (see [`super::ratelimit`]). Only
    /// (project, region) pairs that met a 429 ever report, so a metric labelled with them
    /// has as many series as the regions Cloud Run throttled.
    fn rate_changed(&self, budget: Budget, project: &str, location: &str, per_minute: f64) {
        let _ = (budget, project, location, per_minute);
    }
}

/// The observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl CallObserver for NoopObserver {}
