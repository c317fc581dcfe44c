//! Metrics: the Prometheus registry, every metric the operator exposes, and its labels.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::outcomes::{
    DriftHandled, DriftIgnored, PassResult, PolicyReportWrite, RemediationResult, SubscriptionCall,
};
use crate::api::{Mode, OrgPolicyState, ResourceKind, Summary, TargetState};
use crate::cloudrun::{ApiMethod, Budget, CallObserver, CallStatus, Throttle};

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
struct ShardLabels {
    shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BindingLabels {
    binding: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BindingInfoLabels {
    binding: String,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CoverageLabels {
    project: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrgPolicyLabels {
    project: String,
    state: &'static str,
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
        TargetState::Excepted => "Excepted",
    }
}

fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "Enforce",
        Mode::Audit => "Audit",
    }
}

const MODES: [Mode; 2] = [Mode::Enforce, Mode::Audit];

fn kind_label(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Service => "Service",
        ResourceKind::Job => "Job",
        ResourceKind::WorkerPool => "WorkerPool",
    }
}

/// Every organization policy state, for the per-project gauge.
const ORG_POLICY_STATES: [OrgPolicyState; 3] = [
    OrgPolicyState::Enforced,
    OrgPolicyState::NotSet,
    OrgPolicyState::Unreadable,
];

fn org_policy_label(state: OrgPolicyState) -> &'static str {
    match state {
        OrgPolicyState::Enforced => "Enforced",
        OrgPolicyState::NotSet => "NotSet",
        OrgPolicyState::Unreadable => "Unreadable",
    }
}

/// Every target state, for the per-binding gauges.
const TARGET_STATES: [TargetState; 8] = [
    TargetState::Compliant,
    TargetState::Remediated,
    TargetState::Drifted,
    TargetState::Breakglass,
    TargetState::Superseded,
    TargetState::Conflicted,
    TargetState::Failed,
    TargetState::Excepted,
];

/// The operator's Prometheus metrics. Cheap to share (`Arc`); every method is lock-free or
/// takes a short lock.
pub struct Metrics {
    registry: Registry,
    passes: Family<ResultLabels, Counter>,
    pass_duration: Histogram,
    targets: Family<TargetLabels, Gauge>,
    binding_ready: Family<BindingLabels, Gauge>,
    binding_info: Family<BindingInfoLabels, Gauge>,
    deploy_blocked: Family<BindingLabels, Gauge>,
    breakglass: Family<BindingLabels, Gauge>,
    breakglass_age: Family<BindingLabels, Gauge>,
    not_effective: Family<BindingLabels, Gauge>,
    uncovered: Family<CoverageLabels, Gauge>,
    org_policy: Family<OrgPolicyLabels, Gauge>,
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
    shard_held: Family<ShardLabels, Gauge>,
    drift_received: Counter,
    drift_handled: Family<ResultLabels, Counter>,
    drift_ignored: Family<ReasonLabels, Counter>,
    drift_latency: Histogram,
    drift_subscription_errors: Family<CallNameLabels, Counter>,
    drift_last_pull: Gauge<f64, AtomicU64>,
    policy_reports: Family<ResultLabels, Counter>,
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
        let binding_ready = Family::<BindingLabels, Gauge>::default();
        registry.register(
            "binauthz_binding_ready",
            "1 when the binding's Ready condition is True, 0 when it is False, as of its last pass (no series while suspended)",
            binding_ready.clone(),
        );
        let binding_info = Family::<BindingInfoLabels, Gauge>::default();
        registry.register(
            "binauthz_binding_info",
            "Always 1: one series per binding carrying its mode (Enforce, Audit), to join with the other per-binding metrics",
            binding_info.clone(),
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
        let breakglass_age = Family::<BindingLabels, Gauge>::default();
        registry.register(
            "binauthz_breakglass_age_seconds",
            "Age of the oldest breakglass justification per binding (0 when none), since it was set or first seen",
            breakglass_age.clone(),
        );
        let not_effective = Family::<BindingLabels, Gauge>::default();
        registry.register(
            "binauthz_not_effective",
            "Matched resources per binding carrying the desired policy while something they run (a revision receiving traffic, a job's latest execution) predates it: effective at the next deploy or run",
            not_effective.clone(),
        );
        let uncovered = Family::<CoverageLabels, Gauge>::default();
        registry.register(
            "binauthz_uncovered",
            "Cloud Run resources no binding matches, per project a binding names and kind, among those the bindings' reads listed",
            uncovered.clone(),
        );
        let org_policy = Family::<OrgPolicyLabels, Gauge>::default();
        registry.register(
            "binauthz_org_policy",
            "1 for the state (Enforced, NotSet, Unreadable) of the organization policy constraint run.allowedBinaryAuthorizationPolicies of each project a binding names, as last read; 0 for the others",
            org_policy.clone(),
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
        let shard_held = Family::<ShardLabels, Gauge>::default();
        registry.register(
            "binauthz_shard_held",
            "With --shards: 1 for each shard whose Lease this replica holds (it writes for the shard's projects), 0 for the others",
            shard_held.clone(),
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
        let drift_last_pull = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "binauthz_drift_subscription_last_pull_timestamp_seconds",
            "Unix time of the drift events subscriber's last successful pull (only with --drift-events; the leader pulls)",
            drift_last_pull.clone(),
        );
        let policy_reports = Family::<ResultLabels, Counter>::default();
        registry.register(
            "binauthz_policy_report_writes",
            "PolicyReport writes (only with --policy-reports, only when a report changed), by result (written, deleted, failed)",
            policy_reports.clone(),
        );
        Self {
            registry,
            passes,
            pass_duration,
            targets,
            binding_ready,
            binding_info,
            deploy_blocked,
            breakglass,
            breakglass_age,
            not_effective,
            uncovered,
            org_policy,
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
            shard_held,
            drift_received,
            drift_handled,
            drift_ignored,
            drift_latency,
            drift_subscription_errors,
            drift_last_pull,
            policy_reports,
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
                TargetState::Excepted => summary.excepted,
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
        self.not_effective
            .get_or_create(&labels)
            .set(i64::from(summary.not_effective));
    }

    /// Sets the number of resources of `kind` no binding matches in `project`.
    pub fn set_uncovered(&self, project: &str, kind: ResourceKind, count: usize) {
        self.uncovered
            .get_or_create(&CoverageLabels {
                project: project.to_owned(),
                kind: kind_label(kind),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sets the state of a project's organization policy constraint (1 for `state`, 0
    /// for the others).
    pub fn set_org_policy(&self, project: &str, state: OrgPolicyState) {
        for s in ORG_POLICY_STATES {
            self.org_policy
                .get_or_create(&OrgPolicyLabels {
                    project: project.to_owned(),
                    state: org_policy_label(s),
                })
                .set(i64::from(s == state));
        }
    }

    /// Drops the coverage and organization policy series of a project no binding names
    /// any more.
    pub fn forget_project(&self, project: &str) {
        for kind in ResourceKind::ALL {
            self.uncovered.remove(&CoverageLabels {
                project: project.to_owned(),
                kind: kind_label(kind),
            });
        }
        for state in ORG_POLICY_STATES {
            self.org_policy.remove(&OrgPolicyLabels {
                project: project.to_owned(),
                state: org_policy_label(state),
            });
        }
    }

    /// Sets a binding's mode and readiness: `ready` is `None` while it has no Ready
    /// condition (suspended), which removes the readiness series.
    pub fn set_binding(&self, binding: &str, mode: Mode, ready: Option<bool>) {
        for other in MODES {
            let labels = BindingInfoLabels {
                binding: binding.to_owned(),
                mode: mode_label(other),
            };
            if other == mode {
                self.binding_info.get_or_create(&labels).set(1);
            } else {
                self.binding_info.remove(&labels);
            }
        }
        let labels = BindingLabels {
            binding: binding.to_owned(),
        };
        match ready {
            Some(ready) => {
                self.binding_ready
                    .get_or_create(&labels)
                    .set(i64::from(ready));
            }
            None => {
                self.binding_ready.remove(&labels);
            }
        }
    }

    /// Sets the age of the binding's oldest breakglass justification.
    pub fn set_breakglass_age(&self, binding: &str, age: Duration) {
        self.breakglass_age
            .get_or_create(&BindingLabels {
                binding: binding.to_owned(),
            })
            .set(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
    }

    /// Drops every per-binding series of a deleted binding.
    pub fn forget_binding(&self, binding: &str) {
        for mode in MODES {
            self.binding_info.remove(&BindingInfoLabels {
                binding: binding.to_owned(),
                mode: mode_label(mode),
            });
        }
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
        self.binding_ready.remove(&labels);
        self.breakglass_age.remove(&labels);
        self.not_effective.remove(&labels);
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

    /// Sets whether this replica holds `shard`'s Lease.
    pub fn set_shard_held(&self, shard: usize, held: bool) {
        self.shard_held
            .get_or_create(&ShardLabels {
                shard: shard.to_string(),
            })
            .set(i64::from(held));
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

    /// Records a successful pull of the drift events subscription (even an empty one).
    pub fn drift_pulled(&self, at: std::time::SystemTime) {
        let unix = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.drift_last_pull.set(unix);
    }

    /// Records one PolicyReport write, deletion or failed attempt.
    pub fn policy_report(&self, result: PolicyReportWrite) {
        self.policy_reports
            .get_or_create(&ResultLabels {
                result: result.as_str(),
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cloudrun::Code;
    use std::collections::{BTreeMap, BTreeSet};

    /// Touches every metric so each family has a sample with its labels.
    pub(in crate::telemetry) fn touched_metrics() -> Metrics {
        let m = Metrics::new();
        m.pass_finished(PassResult::Completed, Duration::from_millis(5));
        m.set_targets("ns/b", &Summary::default(), 0);
        m.set_breakglass_age("ns/b", Duration::from_secs(3600));
        m.set_shard_held(0, true);
        m.set_uncovered("acme-prod", ResourceKind::Service, 2);
        m.set_org_policy("acme-prod", OrgPolicyState::NotSet);
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
        m.set_binding("ns/b", Mode::Enforce, Some(true));
        m.policy_report(PolicyReportWrite::Written);
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
}
