//! Logs, metrics and health: tracing set-up, the Prometheus registry, and the HTTP server for `/metrics`, `/healthz` and `/readyz`.
//!
//! # Contract
//! - Every metric label is bounded: binding (`namespace/name`), resource kind, state or
//!   result enums, Cloud Run method and status code, throttle kind. Never a Cloud Run
//!   resource name, never error text.
//! - `/metrics` answers in the OpenMetrics text format.
//! - `/healthz` answers 200 while the process works: the controller loop is running and
//!   no pass has been stuck without progress for [`STUCK_AFTER`]. 503 otherwise.
//! - `/readyz` answers 200 only when the API server answered the last periodic check and
//!   serves the CRD, the bindings watch has synced and has not failed within
//!   [`WATCH_ERROR_GRACE`], and — with leader election — the replica is either leader or
//!   a healthy standby. 503 otherwise, with one line per failing check.
//!
//! # Parts
//! - `logs`: the tracing subscriber (text or JSON lines).
//! - `outcomes`: the enums whose values are the bounded label values of the metrics.
//! - `metrics`: the Prometheus registry and every metric.
//! - `health`: liveness and readiness state.
//! - `server`: the HTTP routes over metrics and health.

mod health;
mod logs;
mod metrics;
mod outcomes;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::api::ResourceKind;
use crate::cloudrun::{ApiMethod, Budget, CallObserver, CallStatus, Throttle};

pub use health::{Health, LeaseState, PassGuard, STUCK_AFTER, WATCH_ERROR_GRACE};
pub use logs::{init_tracing, LogFormat};
pub use metrics::Metrics;
pub use outcomes::{
    DriftHandled, DriftIgnored, PassResult, PolicyReportWrite, RemediationResult, SubscriptionCall,
};
pub use server::{bind, router, serve};

/// Errors of the telemetry set-up and server.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` does not parse.
    #[error(
        "RUST_LOG is not a valid log filter: {0} (e.g. RUST_LOG=info,binauthz_operator=debug)"
    )]
    Filter(String),
    /// A global subscriber was already installed.
    #[error("logging was already initialised: {0}")]
    AlreadyInitialised(String),
    /// The metrics address cannot be bound.
    #[error("cannot listen on {addr} for /metrics, /healthz and /readyz: {error} (choose another --metrics-addr)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The server failed while running.
    #[error("the metrics server stopped: {0}")]
    Serve(std::io::Error),
}

/// What the HTTP server serves.
#[derive(Clone, Debug)]
pub struct Telemetry {
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness.
    pub health: Health,
}

/// The Cloud Run client reports to the metrics, and each finished call counts as progress
/// of the passes in flight (for `/healthz`).
impl CallObserver for Telemetry {
    fn call(&self, method: ApiMethod, status: CallStatus, latency: Duration) {
        self.health.progress();
        self.metrics.call(method, status, latency);
    }

    fn retry(&self, method: ApiMethod, reason: &'static str, delay: Duration) {
        self.metrics.retry(method, reason, delay);
    }

    fn throttled(&self, throttle: Throttle, waited: Duration) {
        self.health.progress();
        self.metrics.throttled(throttle, waited);
    }

    fn conflict(&self, kind: ResourceKind) {
        self.metrics.conflict(kind);
    }

    fn rate_changed(&self, budget: Budget, project: &str, location: &str, per_minute: f64) {
        self.metrics
            .rate_changed(budget, project, location, per_minute);
    }
}
