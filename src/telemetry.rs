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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::api::{ResourceKind, Summary, TargetState};
use crate::cloudrun::{ApiMethod, Budget, CallObserver, CallStatus, Throttle};

/// A pass in flight that made no progress (no Cloud Run call finished, no step done) for
/// this long counts as stuck, and `/healthz` fails.
pub const STUCK_AFTER: Duration = Duration::from_secs(300);

/// `/readyz` stays failing this long after the bindings watch last reported an error: the
/// watch retries at least every 5 s (reporting each failure), and a resumed watch is silent
/// until something changes, so three retry periods without an error mean it is back.
pub const WATCH_ERROR_GRACE: Duration = Duration::from_secs(15);

/// Content type of `/metrics`.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    Json,
    /// Human-readable lines.
    #[default]
    Text,
}

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

/// Installs the global tracing subscriber: `RUST_LOG` filter (default `info`), text or
/// JSON lines on stderr.
///
/// # Errors
/// An invalid `RUST_LOG`, or a subscriber already installed.
pub fn init_tracing(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(value) if !value.trim().is_empty() => {
            EnvFilter::try_new(value).map_err(|e| TelemetryError::Filter(e.to_string()))?
        }
        _ => EnvFilter::new("info"),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(true).with_current_span(true))
            .try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    }
    .map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))
}

/// How a pass ended, as the `result` label of `binauthz_passes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PassResult {
    /// Cloud Run was read (and written) and the status computed; the binding may still
    /// be non-compliant (see its conditions).
    Completed,
    /// The pass failed (Cloud Run unavailable or refused, or the Kubernetes API failed);
    /// it is retried with backoff.
    Failed,
    /// Suspended or invalid binding: no Cloud Run calls.
    Skipped,
    /// This replica is a standby: nothing read, nothing written.
    Standby,
}

impl PassResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Standby => "standby",
        }
    }
}

/// What became of one remediation, as the `result` label of
/// `binauthz_remediations_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemediationResult {
    /// Written and confirmed.
    Succeeded,
    /// Written, the operation still running (verified next pass).
    Pending,
    /// Refused or failed after retries.
    Failed,
    /// Not needed any more after a re-read (someone else fixed it), or the resource is gone.
    Skipped,
}

impl RemediationResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// Why a drift event (an audit log message) led to no re-check, as the `reason` label of
/// `binauthz_drift_events_ignored_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriftIgnored {
    /// Not base64, not JSON, or a LogEntry lacking a field the handler needs.
    Unparsable,
    /// A method that is not a watched Cloud Run write (a delete, a read, another service).
    NotAWrite,
    /// The call failed (`protoPayload.status.code` is not 0): nothing changed.
    FailedCall,
    /// The operator's own write (its user agent, or an ignored principal).
    OwnWrite,
    /// No binding covers the resource's project, region and kind (no Cloud Run call).
    Uncovered,
    /// A redelivery of a message already handled, or the second entry of one operation.
    Duplicate,
    /// Arrived while a re-check of the resource was in flight and another was already
    /// queued: that one covers it.
    Coalesced,
}

impl DriftIgnored {
    /// Every reason, for docs and tests.
    pub const ALL: [Self; 7] = [
        Self::Unparsable,
        Self::NotAWrite,
        Self::FailedCall,
        Self::OwnWrite,
        Self::Uncovered,
        Self::Duplicate,
        Self::Coalesced,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unparsable => "unparsable",
            Self::NotAWrite => "not_a_write",
            Self::FailedCall => "failed_call",
            Self::OwnWrite => "own_write",
            Self::Uncovered => "uncovered",
            Self::Duplicate => "duplicate",
            Self::Coalesced => "coalesced",
        }
    }
}

/// What a drift re-check of one resource ended with, as the `result` label of
/// `binauthz_drift_events_handled_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriftHandled {
    /// The resource drifted and was written (operation finished or still running).
    Fixed,
    /// Read and planned: nothing to write (it complies, is not owned, Audit mode,
    /// breakglass, or the user changed it back).
    NoWrite,
    /// The resource is gone.
    Gone,
    /// The read or the write failed, or the write is refused (policy missing, organization
    /// policy); the periodic pass retries and reports it.
    Failed,
}

impl DriftHandled {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::NoWrite => "no_write",
            Self::Gone => "gone",
            Self::Failed => "failed",
        }
    }
}

/// Which Pub/Sub call failed, as the `call` label of
/// `binauthz_drift_subscription_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionCall {
    /// `:pull`.
    Pull,
    /// `:acknowledge`.
    Acknowledge,
}

impl SubscriptionCall {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Acknowledge => "acknowledge",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallNameLabels {
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BindingLabels {
    binding: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    binding: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemediationLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    method: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThrottleLabels {
    throttle: &'static str,
}

/// A rate lane of the Cloud Run client: project and region come from the bindings'
/// configuration (bounded by it), and only lanes that met a 429 ever report.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLabels {
    direction: &'static str,
    project: String,
    region: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 10 ms .. ~5.8 min
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

fn drift_histogram() -> Histogram {
    // 1 s .. ~9 h
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

fn state_label(state: TargetState) -> &'static str {
    match state {
        TargetState::Compliant => "Compliant",
        TargetState::Remediated => "Remediated",
        TargetState::Drifted => "Drifted",
        TargetState::Breakglass => "Breakglass",
        TargetState::Superseded => "Superseded",
        TargetState::Conflicted => "Conflicted",
        TargetState::Failed => "Failed",
    }
}

fn kind_label(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Service => "Service",
        ResourceKind::Job => "Job",
        ResourceKind::WorkerPool => "WorkerPool",
    }
}

/// Every target state, for the per-binding gauges.
const TARGET_STATES: [TargetState; 7] = [
    TargetState::Compliant,
    TargetState::Remediated,
    TargetState::Drifted,
    TargetState::Breakglass,
    TargetState::Superseded,
    TargetState::Conflicted,
    TargetState::Failed,
];

/// The operator's Prometheus metrics. Cheap to share (`Arc`); every method is lock-free or
/// takes a short lock.
pub struct Metrics {
    registry: Registry,
    passes: Family<ResultLabels, Counter>,
    pass_duration: Histogram,
    targets: Family<TargetLabels, Gauge>,
    deploy_blocked: Family<BindingLabels, Gauge>,
    breakglass: Family<BindingLabels, Gauge>,
    remediations: Family<RemediationLabels, Counter>,
    drift_correction: Histogram,
    cloud_run_calls: Family<CallLabels, Counter>,
    cloud_run_latency: HistogramFamily<MethodLabels>,
    cloud_run_retries: Family<RetryLabels, Counter>,
    cloud_run_conflicts: Family<KindLabels, Counter>,
    throttle_wait: HistogramFamily<ThrottleLabels>,
    effective_rate: Family<RateLabels, Gauge<f64, AtomicU64>>,
    events: Family<ResultLabels, Counter>,
    status_writes: Counter,
    leader: Gauge,
    drift_received: Counter,
    drift_handled: Family<ResultLabels, Counter>,
    drift_ignored: Family<ReasonLabels, Counter>,
    drift_latency: Histogram,
    drift_subscription_errors: Family<CallNameLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric (documented in README.md; a test keeps the two equal).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let passes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "binauthz_passes",
            "Passes over bindings, by result (completed, failed, skipped, standby)",
            passes.clone(),
        );
        let pass_duration = seconds_histogram();
        registry.register(
            "binauthz_pass_duration_seconds",
            "Duration of a pass over one binding (Cloud Run reads, writes and the status write)",
            pass_duration.clone(),
        );
        let targets = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "binauthz_targets",
            "Matched Cloud Run resources per binding and target state, as of the binding's last pass",
            targets.clone(),
        );
        let deploy_blocked = Family::<BindingLabels, Gauge>::default();
        registry.register(
            "binauthz_deploy_blocked",
            "Matched resources per binding whose latest deploy was refused by Binary Authorization",
            deploy_blocked.clone(),
        );
        let breakglass = Family::<BindingLabels, Gauge>::default();
        registry.register(
            "binauthz_breakglass",
            "Matched resources per binding carrying a breakglass justification",
            breakglass.clone(),
        );
        let remediations = Family::<RemediationLabels, Counter>::default();
        registry.register(
            "binauthz_remediations",
            "Remediation writes to Cloud Run, by resource kind and result (succeeded, pending, failed, skipped)",
            remediations.clone(),
        );
        let drift_correction = drift_histogram();
        registry.register(
            "binauthz_drift_correction_seconds",
            "Time from a pass first seeing a resource drift to the operator seeing it corrected",
            drift_correction.clone(),
        );
        let cloud_run_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "binauthz_cloudrun_requests",
            "HTTP requests to the Cloud Run and Binary Authorization APIs (each attempt), by method and status code",
            cloud_run_calls.clone(),
        );
        let cloud_run_latency: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(seconds_histogram);
        registry.register(
            "binauthz_cloudrun_request_duration_seconds",
            "Latency of one HTTP request to the Cloud Run and Binary Authorization APIs, by method",
            cloud_run_latency.clone(),
        );
        let cloud_run_retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "binauthz_cloudrun_retries",
            "Cloud Run requests retried after a retryable error, by method and error reason",
            cloud_run_retries.clone(),
        );
        let cloud_run_conflicts = Family::<KindLabels, Counter>::default();
        registry.register(
            "binauthz_cloudrun_conflicts",
            "Remediation writes that lost an etag race (a concurrent change) and re-read the resource, by kind",
            cloud_run_conflicts.clone(),
        );
        let throttle_wait: HistogramFamily<ThrottleLabels> =
            Family::new_with_constructor(seconds_histogram);
        registry.register(
            "binauthz_cloudrun_throttle_wait_seconds",
            "Time a Cloud Run request waited for the client-side throttle (read_rate, write_rate, write_concurrency)",
            throttle_wait.clone(),
        );
        let effective_rate = Family::<RateLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "binauthz_cloudrun_effective_rate_per_minute",
            "Cloud Run requests per minute the client sends to a project and region after 429s lowered it (additive recovery), by direction (read, write)",
            effective_rate.clone(),
        );
        let events = Family::<ResultLabels, Counter>::default();
        registry.register(
            "binauthz_events",
            "Kubernetes Events published on bindings, by result (published, failed)",
            events.clone(),
        );
        let status_writes = Counter::default();
        registry.register(
            "binauthz_status_writes",
            "Status subresource writes (only made when the status changed)",
            status_writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "binauthz_leader",
            "1 when this replica may write (leader, or leader election off), 0 on a standby",
            leader.clone(),
        );
        let drift_received = Counter::default();
        registry.register(
            "binauthz_drift_events_received",
            "Audit log messages pulled from the drift events subscription",
            drift_received.clone(),
        );
        let drift_handled = Family::<ResultLabels, Counter>::default();
        registry.register(
            "binauthz_drift_events_handled",
            "Re-checks of one resource made for drift events, by result (fixed, no_write, gone, failed)",
            drift_handled.clone(),
        );
        let drift_ignored = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "binauthz_drift_events_ignored",
            "Drift events that led to no re-check, by reason",
            drift_ignored.clone(),
        );
        let drift_latency = seconds_histogram();
        registry.register(
            "binauthz_drift_event_to_fix_seconds",
            "Time from the audit log entry's timestamp to the end of the write that fixed the drift",
            drift_latency.clone(),
        );
        let drift_subscription_errors = Family::<CallNameLabels, Counter>::default();
        registry.register(
            "binauthz_drift_subscription_errors",
            "Failed Pub/Sub calls of the drift events subscriber, by call (pull, acknowledge)",
            drift_subscription_errors.clone(),
        );
        Self {
            registry,
            passes,
            pass_duration,
            targets,
            deploy_blocked,
            breakglass,
            remediations,
            drift_correction,
            cloud_run_calls,
            cloud_run_latency,
            cloud_run_retries,
            cloud_run_conflicts,
            throttle_wait,
            effective_rate,
            events,
            status_writes,
            leader,
            drift_received,
            drift_handled,
            drift_ignored,
            drift_latency,
            drift_subscription_errors,
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records a finished pass.
    pub fn pass_finished(&self, result: PassResult, elapsed: Duration) {
        self.passes
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
        self.pass_duration.observe(elapsed.as_secs_f64());
    }

    /// Sets a binding's per-state target gauges, its deploy-blocked and breakglass gauges.
    /// `breakglass_state` is the number of targets in state Breakglass (the summary's
    /// `breakglass` also counts remediated resources that kept their justification).
    pub fn set_targets(&self, binding: &str, summary: &Summary, breakglass_state: u32) {
        let compliant_state = summary
            .compliant
            .saturating_sub(summary.remediated)
            .saturating_sub(breakglass_state);
        for state in TARGET_STATES {
            let count = match state {
                TargetState::Compliant => compliant_state,
                TargetState::Remediated => summary.remediated,
                TargetState::Drifted => summary.drifted,
                TargetState::Breakglass => breakglass_state,
                TargetState::Superseded => summary.superseded,
                TargetState::Conflicted => summary.conflicted,
                TargetState::Failed => summary.failed,
            };
            self.targets
                .get_or_create(&TargetLabels {
                    binding: binding.to_owned(),
                    state: state_label(state),
                })
                .set(i64::from(count));
        }
        let labels = BindingLabels {
            binding: binding.to_owned(),
        };
        self.deploy_blocked
            .get_or_create(&labels)
            .set(i64::from(summary.deploy_blocked));
        self.breakglass
            .get_or_create(&labels)
            .set(i64::from(summary.breakglass));
    }

    /// Drops every per-binding series of a deleted binding.
    pub fn forget_binding(&self, binding: &str) {
        for state in TARGET_STATES {
            self.targets.remove(&TargetLabels {
                binding: binding.to_owned(),
                state: state_label(state),
            });
        }
        let labels = BindingLabels {
            binding: binding.to_owned(),
        };
        self.deploy_blocked.remove(&labels);
        self.breakglass.remove(&labels);
    }

    /// Records one remediation outcome.
    pub fn remediation(&self, kind: ResourceKind, result: RemediationResult) {
        self.remediations
            .get_or_create(&RemediationLabels {
                kind: kind_label(kind),
                result: result.as_str(),
            })
            .inc();
    }

    /// Records the time from drift first seen to drift corrected.
    pub fn drift_corrected(&self, after: Duration) {
        self.drift_correction.observe(after.as_secs_f64());
    }

    /// Records one event publication.
    pub fn event(&self, published: bool) {
        let result = if published { "published" } else { "failed" };
        self.events.get_or_create(&ResultLabels { result }).inc();
    }

    /// Records one status write.
    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Counts one message pulled from the drift events subscription.
    pub fn drift_received(&self) {
        self.drift_received.inc();
    }

    /// Counts one drift event that led to no re-check.
    pub fn drift_ignored(&self, reason: DriftIgnored) {
        self.drift_ignored
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts one drift re-check; `since_event` is set when it fixed a drift.
    pub fn drift_handled(&self, result: DriftHandled, since_event: Option<Duration>) {
        self.drift_handled
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
        if let Some(latency) = since_event {
            self.drift_latency.observe(latency.as_secs_f64());
        }
    }

    /// Counts one failed Pub/Sub call.
    pub fn drift_subscription_error(&self, call: SubscriptionCall) {
        self.drift_subscription_errors
            .get_or_create(&CallNameLabels {
                call: call.as_str(),
            })
            .inc();
    }
}

impl CallObserver for Metrics {
    fn call(&self, method: ApiMethod, status: CallStatus, latency: Duration) {
        let method = method.as_str();
        self.cloud_run_calls
            .get_or_create(&CallLabels {
                method,
                code: status.as_str(),
            })
            .inc();
        self.cloud_run_latency
            .get_or_create(&MethodLabels { method })
            .observe(latency.as_secs_f64());
    }

    fn retry(&self, method: ApiMethod, reason: &'static str, _delay: Duration) {
        self.cloud_run_retries
            .get_or_create(&RetryLabels {
                method: method.as_str(),
                reason,
            })
            .inc();
    }

    fn throttled(&self, throttle: Throttle, waited: Duration) {
        self.throttle_wait
            .get_or_create(&ThrottleLabels {
                throttle: throttle.as_str(),
            })
            .observe(waited.as_secs_f64());
    }

    fn conflict(&self, kind: ResourceKind) {
        self.cloud_run_conflicts
            .get_or_create(&KindLabels {
                kind: kind_label(kind),
            })
            .inc();
    }

    fn rate_changed(&self, budget: Budget, project: &str, location: &str, per_minute: f64) {
        self.effective_rate
            .get_or_create(&RateLabels {
                direction: budget.as_str(),
                project: project.to_owned(),
                region: location.to_owned(),
            })
            .set(per_minute);
    }
}

/// Leader-election state as `/readyz` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum LeaseState {
    /// Leader election is off: this replica always writes.
    Disabled = 0,
    /// This replica holds the lease.
    Leader = 1,
    /// Another replica holds the lease; this one watches and waits.
    Standby = 2,
    /// The lease cannot be read or renewed (API errors); neither leader nor standby.
    Failing = 3,
}

impl LeaseState {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Leader,
            2 => Self::Standby,
            3 => Self::Failing,
            _ => Self::Disabled,
        }
    }
}

/// Shared liveness and readiness state, updated by the controller and read by the server.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    epoch: Instant,
    controller_running: AtomicBool,
    crd_served: AtomicBool,
    api_reachable: AtomicBool,
    synced: AtomicBool,
    /// Milliseconds since `epoch` of the last watch error, plus one (0: never).
    last_watch_error: AtomicU64,
    lease: AtomicU8,
    /// Milliseconds since `epoch` of the last progress of any pass.
    last_progress: AtomicU64,
    passes_in_flight: Mutex<HashMap<u64, ()>>,
    next_pass_id: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

/// Marks a pass in flight for `/healthz`; dropping it ends the pass.
#[derive(Debug)]
pub struct PassGuard {
    health: Health,
    id: u64,
}

impl Drop for PassGuard {
    fn drop(&mut self) {
        self.health.progress();
        if let Ok(mut passes) = self.health.inner.passes_in_flight.lock() {
            passes.remove(&self.id);
        }
    }
}

impl Health {
    /// Nothing ready yet, controller not running.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(HealthInner {
                epoch: Instant::now(),
                controller_running: AtomicBool::new(false),
                crd_served: AtomicBool::new(false),
                api_reachable: AtomicBool::new(true),
                synced: AtomicBool::new(false),
                last_watch_error: AtomicU64::new(0),
                lease: AtomicU8::new(LeaseState::Disabled as u8),
                last_progress: AtomicU64::new(0),
                passes_in_flight: Mutex::new(HashMap::new()),
                next_pass_id: AtomicU64::new(0),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The controller loop started (true) or ended (false).
    pub fn set_controller_running(&self, running: bool) {
        self.inner
            .controller_running
            .store(running, Ordering::Release);
    }

    /// Whether the API server serves the BinAuthzBinding CRD, as last checked.
    pub fn set_crd_served(&self, served: bool) {
        self.inner.crd_served.store(served, Ordering::Release);
    }

    /// Whether the API server answered the last periodic check in time.
    pub fn set_api_reachable(&self, reachable: bool) {
        self.inner.api_reachable.store(reachable, Ordering::Release);
    }

    /// The bindings watch finished its initial list.
    pub fn set_synced(&self) {
        self.inner.synced.store(true, Ordering::Release);
    }

    /// The bindings watch reported an error (it retries with backoff).
    pub fn watch_failed(&self) {
        let now = self.now_ms().saturating_add(1);
        self.inner.last_watch_error.store(now, Ordering::Release);
    }

    /// The bindings watch delivered an event: any earlier error is over.
    pub fn watch_recovered(&self) {
        self.inner.last_watch_error.store(0, Ordering::Release);
    }

    /// Sets the leader-election state.
    pub fn set_lease(&self, state: LeaseState) {
        self.inner.lease.store(state as u8, Ordering::Release);
    }

    /// The current leader-election state.
    pub fn lease(&self) -> LeaseState {
        LeaseState::from_u8(self.inner.lease.load(Ordering::Acquire))
    }

    /// A pass starts; keep the guard until it ends.
    pub fn pass_started(&self) -> PassGuard {
        self.progress();
        let id = self.inner.next_pass_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut passes) = self.inner.passes_in_flight.lock() {
            passes.insert(id, ());
        }
        PassGuard {
            health: self.clone(),
            id,
        }
    }

    /// A pass made progress (a Cloud Run call finished, a step completed).
    pub fn progress(&self) {
        let now = self.now_ms();
        self.inner.last_progress.store(now, Ordering::Release);
    }

    /// Why the process is not live, if it is not.
    pub fn liveness_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.inner.controller_running.load(Ordering::Acquire) {
            problems.push("the controller loop is not running".to_owned());
        }
        let in_flight = self
            .inner
            .passes_in_flight
            .lock()
            .map(|p| p.len())
            .unwrap_or(0);
        let idle_ms = self
            .now_ms()
            .saturating_sub(self.inner.last_progress.load(Ordering::Acquire));
        if in_flight > 0 && Duration::from_millis(idle_ms) > STUCK_AFTER {
            problems.push(format!(
                "{in_flight} pass(es) in flight made no progress for {}s",
                idle_ms / 1000
            ));
        }
        problems
    }

    /// Why the replica is not ready, if it is not.
    pub fn readiness_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.inner.api_reachable.load(Ordering::Acquire) {
            problems.push("the Kubernetes API server did not answer the last check".to_owned());
        } else if !self.inner.crd_served.load(Ordering::Acquire) {
            problems.push("the BinAuthzBinding CRD is not served by the API server".to_owned());
        }
        if !self.inner.synced.load(Ordering::Acquire) {
            problems.push("the bindings watch has not synced yet".to_owned());
        }
        let error_at = self.inner.last_watch_error.load(Ordering::Acquire);
        if error_at > 0 {
            let since = Duration::from_millis(self.now_ms().saturating_sub(error_at - 1));
            if since < WATCH_ERROR_GRACE {
                problems.push(format!(
                    "the bindings watch failed {}s ago and is reconnecting",
                    since.as_secs()
                ));
            }
        }
        if self.lease() == LeaseState::Failing {
            problems.push("the leader-election lease cannot be read or renewed".to_owned());
        }
        problems
    }
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

/// The `/metrics`, `/healthz` and `/readyz` routes.
pub fn router(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler))
        .with_state(telemetry)
}

async fn metrics_handler(State(t): State<Telemetry>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        t.metrics.encode(),
    )
        .into_response()
}

fn problems_response(problems: Vec<String>) -> Response {
    if problems.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let mut body = String::new();
        for p in problems {
            let _ = writeln!(body, "{p}");
        }
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn healthz_handler(State(t): State<Telemetry>) -> Response {
    problems_response(t.health.liveness_problems())
}

async fn readyz_handler(State(t): State<Telemetry>) -> Response {
    problems_response(t.health.readiness_problems())
}

/// Binds the telemetry server's address (separately from serving, so start-up can fail
/// early with a clear error).
///
/// # Errors
/// [`TelemetryError::Bind`] when the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, TelemetryError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| TelemetryError::Bind { addr, error })
}

/// Serves the telemetry routes until `shutdown` resolves.
///
/// # Errors
/// [`TelemetryError::Serve`] when the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Telemetry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), TelemetryError> {
    axum::serve(listener, router(telemetry))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(TelemetryError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudrun::Code;
    use std::collections::{BTreeMap, BTreeSet};

    /// Touches every metric so each family has a sample with its labels.
    fn touched_metrics() -> Metrics {
        let m = Metrics::new();
        m.pass_finished(PassResult::Completed, Duration::from_millis(5));
        m.set_targets("ns/b", &Summary::default(), 0);
        m.remediation(ResourceKind::Service, RemediationResult::Succeeded);
        m.drift_corrected(Duration::from_secs(3));
        m.call(
            ApiMethod::ListServices,
            CallStatus::Code(Code::Ok),
            Duration::from_millis(3),
        );
        m.retry(
            ApiMethod::ListServices,
            "Unavailable",
            Duration::from_secs(1),
        );
        m.throttled(Throttle::WriteRate, Duration::from_millis(2));
        m.conflict(ResourceKind::Job);
        m.rate_changed(Budget::Write, "acme-prod", "us-central1", 15.0);
        m.event(true);
        m.status_written();
        m.set_leader(true);
        m.drift_received();
        m.drift_ignored(DriftIgnored::Uncovered);
        m.drift_handled(DriftHandled::Fixed, Some(Duration::from_secs(2)));
        m.drift_subscription_error(SubscriptionCall::Pull);
        m
    }

    /// name → (type, label names) from the exposition: samples' names are mapped back to
    /// the names people query (`_total` for counters, the family name for histograms).
    fn exposed(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
        let mut families = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                let query_name = if kind == "counter" {
                    format!("{name}_total")
                } else {
                    name.to_owned()
                };
                families.insert(query_name, (kind.to_owned(), BTreeSet::new()));
            }
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, _) = line.split_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let family = families
                .keys()
                .filter(|f| name.starts_with(f.trim_end_matches("_total")))
                .max_by_key(|f| f.len())
                .cloned()
                .unwrap_or_else(|| panic!("sample {name} has no family"));
            let set = &mut families.get_mut(&family).unwrap().1;
            for pair in labels
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty())
            {
                let key = pair.split_once('=').unwrap().0;
                if key != "le" {
                    set.insert(key.to_owned());
                }
            }
        }
        families
    }

    /// name → (type, label names) from the metrics table of README.md.
    fn documented() -> BTreeMap<String, (String, BTreeSet<String>)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let doc = std::fs::read_to_string(path).expect("README.md");
        doc.lines()
            .filter(|l| l.starts_with("| `binauthz_"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells[1].trim_matches('`').to_owned();
                let kind = cells[2].to_owned();
                let labels = cells[3]
                    .split(',')
                    .map(|s| s.trim().trim_matches('`'))
                    .filter(|s| !s.is_empty() && *s != "—")
                    .map(str::to_owned)
                    .collect();
                (name, (kind, labels))
            })
            .collect()
    }

    #[test]
    fn the_documented_metrics_are_exactly_the_exposed_ones() {
        let exposed = exposed(&touched_metrics().encode());
        let documented = documented();
        assert!(!documented.is_empty(), "README.md lists no metric");
        assert_eq!(
            documented, exposed,
            "README.md's metrics table differs from /metrics (name, type, labels)"
        );
    }

    #[test]
    fn the_exposition_is_openmetrics_and_ends_with_eof() {
        let text = touched_metrics().encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("binauthz_passes_total{result=\"completed\"} 1"));
        assert!(text.contains("binauthz_leader 1"));
    }

    #[test]
    fn target_gauges_split_the_summary_by_state_and_go_away_with_the_binding() {
        let m = Metrics::new();
        let summary = Summary {
            matched: 6,
            compliant: 4,
            remediated: 1,
            drifted: 1,
            breakglass: 2,
            superseded: 1,
            deploy_blocked: 1,
            ..Summary::default()
        };
        m.set_targets("team/prod", &summary, 1);
        let text = m.encode();
        for (state, n) in [
            ("Compliant", 2),
            ("Remediated", 1),
            ("Breakglass", 1),
            ("Drifted", 1),
            ("Superseded", 1),
            ("Failed", 0),
        ] {
            let line = format!("binauthz_targets{{binding=\"team/prod\",state=\"{state}\"}} {n}");
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert!(text.contains("binauthz_deploy_blocked{binding=\"team/prod\"} 1"));
        assert!(text.contains("binauthz_breakglass{binding=\"team/prod\"} 2"));
        m.forget_binding("team/prod");
        assert!(!m.encode().contains("team/prod"));
    }

    #[test]
    fn readiness_needs_crd_sync_and_a_healthy_watch_and_lease() {
        let h = Health::new();
        assert_eq!(h.readiness_problems().len(), 2);
        h.set_crd_served(true);
        h.set_synced();
        assert!(h.readiness_problems().is_empty());
        h.watch_failed();
        assert!(h.readiness_problems()[0].contains("watch failed"));
        h.watch_recovered();
        assert!(h.readiness_problems().is_empty());
        h.set_lease(LeaseState::Standby);
        assert!(h.readiness_problems().is_empty(), "a standby is ready");
        h.set_lease(LeaseState::Failing);
        assert_eq!(h.readiness_problems().len(), 1);
        h.set_lease(LeaseState::Leader);
        h.set_api_reachable(false);
        assert_eq!(
            h.readiness_problems(),
            ["the Kubernetes API server did not answer the last check"]
        );
    }

    #[test]
    fn liveness_needs_the_controller_loop() {
        let h = Health::new();
        assert_eq!(h.liveness_problems().len(), 1);
        h.set_controller_running(true);
        let guard = h.pass_started();
        assert!(h.liveness_problems().is_empty());
        drop(guard);
        h.set_controller_running(false);
        assert!(!h.liveness_problems().is_empty());
    }

    #[tokio::test]
    async fn the_server_answers_each_route() {
        let health = Health::new();
        let telemetry = Telemetry {
            metrics: Arc::new(touched_metrics()),
            health: health.clone(),
        };
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, telemetry, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::new();
        let get = |path: &str| {
            let http = http.clone();
            let url = format!("http://{addr}{path}");
            async move {
                let r = http.get(url).send().await.unwrap();
                let status = r.status().as_u16();
                let ct = r
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned());
                (status, ct, r.text().await.unwrap())
            }
        };
        let (status, ct, body) = get("/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(ct.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
        assert!(body.contains("binauthz_status_writes_total 1"));
        let (status, _, body) = get("/readyz").await;
        assert_eq!(status, 503);
        assert!(body.contains("CRD is not served"), "{body}");
        let (status, _, _) = get("/healthz").await;
        assert_eq!(status, 503);
        health.set_controller_running(true);
        health.set_crd_served(true);
        health.set_synced();
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(get("/readyz").await.0, 200);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
