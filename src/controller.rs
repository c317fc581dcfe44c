//! The `controller` subcommand: a kube-runtime Controller over `BinAuthzBinding` that keeps Cloud Run under Binary Authorization.
//!
//! It wires Kubernetes, the Cloud Run client and the planner together:
//! - a watch (reflector) of every binding — in one namespace or all — whose cache feeds
//!   the planner's ownership decisions (`src/plan.rs`);
//! - a pass per binding ([`pass`]) on create/update (generation changes only, so status
//!   writes never trigger one), every `spec.interval` (on the ticks of a clock shared by
//!   every binding, see [`crate::fleet::inventory::Ticks`]), when an overlapping binding
//!   changes or is deleted (through [`crate::plan::affected_bindings`]), on taking over
//!   the lease, and after errors with per-binding exponential backoff;
//! - an inventory shared by all passes ([`inventory`]): one list per (project, location,
//!   kind) per short window;
//! - leader election ([`leader`]): every replica watches, only the lease holder writes;
//! - the status ([`status`]) and events ([`events`]) of each binding;
//! - metrics and health ([`crate::telemetry`]).
//!
//! # Shutdown
//! On SIGTERM or SIGINT no new pass starts; passes in flight (and their writes) get
//! `--shutdown-grace` to finish, then are cancelled; the lease is released so a standby
//! takes over at once.

pub mod events;

pub mod leader;
mod pass;
pub mod status;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::future::FutureExt;
use futures::StreamExt;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{predicates, watcher, Controller, PredicateConfig, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use rand::Rng;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::api::{BinAuthzBinding, BinAuthzBindingSpec, RECONCILE_REQUESTED_AT};
use crate::cloudrun::{CallObserver, CloudRunArgs, CloudRunClient};
use crate::drift::pubsub::{Subscriber, SubscriptionName};
use crate::drift::{DriftConfig, Environment, Handler};
use crate::plan::{affected_bindings, BindingInput, BindingKey, TargetHistory};
use crate::resource::ResourceId;
use crate::telemetry::{self, Health, LogFormat, Metrics, PassResult, Telemetry, TelemetryError};

use crate::fleet::{inventory::SharedInventory, key_of};
use leader::{LeaderConfig, LeaderError, LeaderGate};

/// The API group/version of bindings, for the CRD check.
const GROUP_VERSION: &str = "binauthz.dev/v1alpha1";
/// The plural of bindings.
const PLURAL: &str = "binauthzbindings";
/// How often the API server is checked to answer and serve the CRD (for `/readyz`).
const API_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How long that check may take before the API server counts as unreachable.
const API_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// First retry delay after a failed pass; doubles per failure.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay after failed passes (also never more than the binding's interval).
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A binding's pass waits until no new reason for one came for this long (trailing-edge
/// debounce): a flood of overlapping bindings re-checks each binding once, not once per
/// arrival.
const DEBOUNCE: Duration = Duration::from_secs(1);
/// The name events and leases are reported under.
const CONTROLLER_NAME: &str = "binauthz-operator";

/// Flags of `binauthz-operator controller`. Every flag has an environment fallback.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerArgs {
    /// Watch bindings in this namespace only (default: every namespace).
    #[arg(long, env = "WATCH_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "METRICS_ADDR",
        value_name = "ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_addr: SocketAddr,

    /// Elect a leader through a coordination.k8s.io Lease: only the holder writes to Cloud
    /// Run and to bindings; other replicas stand by and take over within --lease-duration.
    #[arg(long, env = "LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the Lease used for leader election.
    #[arg(long, env = "LEASE_NAME", value_name = "NAME", default_value = CONTROLLER_NAME)]
    pub lease_name: String,

    /// Namespace of the Lease (default: $POD_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long, env = "LEASE_NAMESPACE", value_name = "NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long the lease holds without renewal; a standby takes over at most this long
    /// after the leader stops renewing. At least 3s.
    #[arg(long, env = "LEASE_DURATION", value_name = "DURATION", default_value = "15s", value_parser = crate::cloudrun::config::parse_duration)]
    pub lease_duration: Duration,

    /// Log format: `text` for people, `json` for log pipelines. The level comes from
    /// RUST_LOG (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// On SIGTERM/SIGINT, how long passes in flight get to finish their writes before
    /// they are cancelled.
    #[arg(long, env = "SHUTDOWN_GRACE", value_name = "DURATION", default_value = "25s", value_parser = crate::cloudrun::config::parse_duration)]
    pub shutdown_grace: Duration,

    /// How long one list of a project's region and kind serves every binding's pass
    /// before it is read again.
    #[arg(long, env = "INVENTORY_TTL", value_name = "DURATION", default_value = "20s", value_parser = crate::cloudrun::config::parse_duration)]
    pub inventory_ttl: Duration,

    /// Binding passes in flight at once. Each holds its binding's plan while it writes and
    /// reports (about 0.4 MiB each over a 5,000-resource project); a pass waiting for its
    /// region's write budget keeps its slot, so raise this when many bindings fix large
    /// drift at the same time.
    #[arg(long, env = "MAX_CONCURRENT_PASSES", value_name = "N", default_value_t = NonZeroU16::new(8).unwrap_or(NonZeroU16::MIN))]
    pub max_concurrent_passes: NonZeroU16,

    /// Consume Cloud Run's Admin Activity audit log entries from this Pub/Sub
    /// subscription (`projects/P/subscriptions/S`, fed by a Logging sink) and re-check the
    /// one resource each names within seconds; the periodic pass stays the backstop.
    /// `PUBSUB_EMULATOR_HOST` points it at the Pub/Sub emulator. See docs/drift-events.md.
    #[arg(long, env = "BINAUTHZ_DRIFT_EVENTS", value_name = "SUBSCRIPTION")]
    pub drift_events: Option<SubscriptionName>,

    /// A principal (e.g. the operator's Google service account) whose Cloud Run writes are
    /// the operator's own: their audit log entries are ignored. Repeat or separate with
    /// commas. Writes carrying the operator's user agent are always ignored.
    #[arg(
        long,
        env = "BINAUTHZ_DRIFT_EVENTS_IGNORE_PRINCIPAL",
        value_name = "EMAIL",
        value_delimiter = ','
    )]
    pub drift_events_ignore_principal: Vec<String>,

    /// Cloud Run client flags.
    #[command(flatten)]
    pub cloud_run: CloudRunArgs,
}

/// Everything that can go wrong in the controller. Display is one line for a person.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No kubeconfig and not in a cluster.
    #[error(
        "cannot load a Kubernetes configuration: {0} (set KUBECONFIG or run inside a cluster)"
    )]
    KubeConfig(String),
    /// The API server does not answer (or refuses the credentials).
    #[error("cannot reach the Kubernetes API server at {url}: {detail}")]
    ApiServerUnreachable {
        /// The server.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The CRD is not installed.
    #[error("the BinAuthzBinding CRD ({PLURAL}.binauthz.dev) is not installed: run `kubectl apply -f crds/binauthzbindings.binauthz.dev.yaml` or `binauthz-operator crd | kubectl apply -f -`")]
    CrdNotInstalled,
    /// Discovery failed for another reason.
    #[error("cannot check whether the BinAuthzBinding CRD is installed: {0}")]
    Discovery(String),
    /// The Cloud Run client cannot be built (credentials, flags).
    #[error(transparent)]
    CloudRun(#[from] crate::cloudrun::Error),
    /// The telemetry server failed.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// Leader election could not start.
    #[error(transparent)]
    Leader(#[from] LeaderError),
    /// A status write failed (the pass is retried with backoff).
    #[error(
        "cannot write the status of binding {binding}: {}",
        kube_error_line(error)
    )]
    StatusWrite {
        /// The binding.
        binding: BindingKey,
        /// The API server's answer.
        error: Box<kube::Error>,
    },
    /// Cloud Run failed in a way worth retrying soon (the status already says so).
    #[error("binding {binding}: Cloud Run failed, retrying with backoff: {message}")]
    CloudRunRetry {
        /// The binding.
        binding: BindingKey,
        /// Cloud Run's error.
        message: String,
    },
    /// The planner refused its input (a bug: the watch cache holds unique bindings).
    #[error("planning failed: {0}")]
    Plan(String),
    /// The drift events subscriber cannot start (no credentials for Pub/Sub).
    #[error(transparent)]
    DriftEvents(#[from] crate::drift::pubsub::PubSubError),
}

impl Error {
    /// A stable CamelCase name of the variant, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::KubeConfig(_) => "KubeConfig",
            Self::ApiServerUnreachable { .. } => "ApiServerUnreachable",
            Self::CrdNotInstalled => "CrdNotInstalled",
            Self::Discovery(_) => "Discovery",
            Self::CloudRun(_) => "CloudRun",
            Self::Telemetry(_) => "Telemetry",
            Self::Leader(_) => "Leader",
            Self::StatusWrite { .. } => "StatusWrite",
            Self::CloudRunRetry { .. } => "CloudRunRetry",
            Self::Plan(_) => "Plan",
            Self::DriftEvents(_) => "DriftEvents",
        }
    }
}

/// One line for a Kubernetes client error (kube's own Display of API errors repeats the
/// whole status as a debug dump).
fn kube_error_line(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

/// What a pass remembers about a binding between passes (in memory only; a new leader
/// starts from the status).
#[derive(Debug, Default)]
pub(crate) struct BindingMemory {
    /// Every target's state after the last pass (complete, unlike the status's 100).
    history: Option<TargetHistory>,
    /// When a pass first saw each still-drifting resource (for the drift-correction
    /// histogram).
    first_seen: HashMap<ResourceId, Instant>,
}

/// What every pass shares.
pub struct Context {
    kube: Client,
    bindings: Store<BinAuthzBinding>,
    inventory: SharedInventory,
    telemetry: Telemetry,
    leader: LeaderGate,
    reporter: Reporter,
    memory: Mutex<HashMap<BindingKey, BindingMemory>>,
    failures: Mutex<HashMap<BindingKey, u32>>,
    /// Bindings whose next pass was queued by a drift event's re-check (it may plan on
    /// the lists of the current tick).
    refresh: Mutex<HashSet<BindingKey>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context for passes: the Kubernetes client, the bindings' watch cache, the shared
    /// inventory, telemetry, the leader gate and the events reporter.
    pub fn new(
        kube: Client,
        bindings: Store<BinAuthzBinding>,
        inventory: SharedInventory,
        telemetry: Telemetry,
        leader: LeaderGate,
        reporter: Reporter,
    ) -> Self {
        Self {
            kube,
            bindings,
            inventory,
            telemetry,
            leader,
            reporter,
            memory: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashSet::new()),
        }
    }

    /// Marks the next pass of `key` as queued by a drift event's re-check.
    fn request_refresh(&self, key: &BindingKey) {
        self.refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
    }

    /// Whether this pass of `key` was queued by a drift event's re-check (and forgets it).
    pub(crate) fn take_refresh(&self, key: &BindingKey) -> bool {
        self.refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
    }

    fn take_memory(&self, key: &BindingKey) -> BindingMemory {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
            .unwrap_or_default()
    }

    fn put_memory(&self, key: &BindingKey, memory: BindingMemory) {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), memory);
    }

    /// Forgets everything about a deleted binding.
    fn forget(&self, key: &BindingKey) {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        self.telemetry.metrics.forget_binding(&key.to_string());
    }

    /// Counts a failed pass; returns how many failed in a row.
    fn failed(&self, key: &BindingKey) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn succeeded(&self, key: &BindingKey) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// Runs one pass over a binding (the controller's reconcile function).
///
/// # Errors
/// See [`Error::StatusWrite`] and [`Error::CloudRunRetry`]; the controller retries with
/// per-binding exponential backoff ([`error_policy`]).
pub async fn reconcile(binding: Arc<BinAuthzBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(&binding);
    let span = info_span!(
        "pass",
        binding = %key,
        generation = binding.meta().generation.unwrap_or_default()
    );
    async move {
        let _in_flight = ctx.telemetry.health.pass_started();
        let started = Instant::now();
        let result = pass::pass(&binding, &ctx).await;
        match &result {
            Ok(end) => {
                ctx.telemetry
                    .metrics
                    .pass_finished(end.result, started.elapsed());
                if end.result != PassResult::Standby {
                    ctx.succeeded(&key);
                }
            }
            Err(_) => ctx
                .telemetry
                .metrics
                .pass_finished(PassResult::Failed, started.elapsed()),
        }
        result.map(|end| end.action)
    }
    .instrument(span)
    .await
}

/// After a failed pass: retry with per-binding exponential backoff (5 s doubling, with
/// jitter, at most 5 min and never later than the binding's interval).
pub fn error_policy(binding: Arc<BinAuthzBinding>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = key_of(&binding);
    let failures = ctx.failed(&key);
    let delay = backoff(failures, binding.spec.interval());
    warn!(binding = %key, error = %err, reason = err.reason(), retry_in_secs = delay.as_secs(), "pass failed");
    Action::requeue(delay)
}

/// The delay after `failures` failed passes in a row: "equal jitter" over
/// `BACKOFF_BASE * 2^(failures-1)`, capped.
fn backoff(failures: u32, interval: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let cap = BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX)
        .min(interval);
    let half = cap / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter)
}

/// How the bindings watch retries after an error: 0.5 s doubling to at most
/// [`WATCH_BACKOFF_MAX`], half of each delay random. While the API server is away the watch
/// reports an error at least that often, so once it reports none for
/// [`telemetry::WATCH_ERROR_GRACE`] it has reconnected (a resumed watch is silent until
/// something changes) and `/readyz` recovers within seconds of the API server's return.
#[derive(Debug)]
struct WatchBackoff {
    next: Duration,
}

/// First retry delay of the bindings watch.
const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest retry delay of the bindings watch.
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            next: WATCH_BACKOFF_MIN,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (delay * 2).min(WATCH_BACKOFF_MAX);
        let half = delay / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        Some(half + Duration::from_millis(jitter))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_BACKOFF_MIN;
    }
}

/// Watches binding events beside the reflector: readiness, re-checks of overlapping
/// bindings, and cleanup of deleted ones.
struct Tap {
    ctx: Arc<Context>,
    triggers: mpsc::UnboundedSender<ObjectRef<BinAuthzBinding>>,
    /// The generation and spec last seen per binding.
    seen: HashMap<BindingKey, (Option<i64>, BinAuthzBindingSpec)>,
}

impl Tap {
    fn observe(&mut self, event: &Result<watcher::Event<BinAuthzBinding>, watcher::Error>) {
        let health = &self.ctx.telemetry.health;
        let event = match event {
            Ok(event) => {
                health.watch_recovered();
                event
            }
            Err(err) => {
                warn!(error = %err, "watching bindings failed; retrying with backoff");
                health.watch_failed();
                return;
            }
        };
        match event {
            watcher::Event::Init => {}
            watcher::Event::InitApply(binding) => {
                self.seen.insert(
                    key_of(binding),
                    (binding.meta().generation, binding.spec.clone()),
                );
            }
            watcher::Event::InitDone => health.set_synced(),
            watcher::Event::Apply(binding) => {
                let key = key_of(binding);
                let now = (binding.meta().generation, binding.spec.clone());
                let old = self.seen.insert(key.clone(), now);
                let changed = old
                    .as_ref()
                    .is_none_or(|(g, _)| *g != binding.meta().generation);
                if changed {
                    self.recheck(
                        &key,
                        old.as_ref().map(|(_, spec)| spec),
                        Some(&binding.spec),
                    );
                }
            }
            watcher::Event::Delete(binding) => {
                let key = key_of(binding);
                let old = self.seen.remove(&key);
                self.recheck(&key, old.as_ref().map(|(_, spec)| spec), None);
                self.ctx.forget(&key);
            }
        }
    }

    /// Triggers a pass of every binding sharing resources with `changed`'s old or new
    /// spec, judged on the last resources listed for their projects.
    fn recheck(
        &self,
        changed: &BindingKey,
        old: Option<&BinAuthzBindingSpec>,
        new: Option<&BinAuthzBindingSpec>,
    ) {
        let projects: BTreeSet<&str> = old
            .into_iter()
            .chain(new)
            .map(|s| s.project.as_str())
            .collect();
        let resources: Vec<_> = projects
            .iter()
            .flat_map(|p| self.ctx.inventory.last_known(p))
            .collect();
        if resources.is_empty() {
            return;
        }
        let all = self.ctx.bindings.state();
        let inputs: Vec<BindingInput<'_>> = all
            .iter()
            .filter(|b| projects.contains(b.spec.project.as_str()))
            .map(|b| BindingInput {
                key: key_of(b),
                spec: &b.spec,
            })
            .collect();
        let affected =
            affected_bindings(changed, old, &inputs, resources.iter().map(|r| &r.observed));
        if !affected.is_empty() {
            // One line per change, not per pair: a flood of N overlapping bindings would
            // otherwise log N² lines.
            info!(changed = %changed, rechecks = affected.len(), "a binding changed; re-checking the bindings it shares resources with");
        }
        for other in affected {
            debug!(changed = %changed, recheck = %other, "re-checking an overlapping binding");
            let _ = self
                .triggers
                .unbounded_send(ObjectRef::new(&other.name).within(&other.namespace));
        }
    }
}

/// What starts a pass on a watch event: a new generation (spec change) or a new value of
/// the reconcile-now annotation. Status writes change neither.
fn pass_trigger(binding: &BinAuthzBinding) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    predicates::generation(binding).hash(&mut hasher);
    binding
        .annotations()
        .get(RECONCILE_REQUESTED_AT)
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// The drift handler's view of the controller: the passes' inventory, watch cache, lease
/// and metrics; a re-check queues passes of the bindings that cover the resource.
struct DriftEnv {
    ctx: Arc<Context>,
    triggers: mpsc::UnboundedSender<ObjectRef<BinAuthzBinding>>,
}

impl Environment for DriftEnv {
    fn inventory(&self) -> &SharedInventory {
        &self.ctx.inventory
    }

    fn bindings(&self) -> Vec<Arc<BinAuthzBinding>> {
        self.ctx.bindings.state()
    }

    fn is_leader(&self) -> bool {
        self.ctx.leader.is_leader()
    }

    fn metrics(&self) -> &Metrics {
        &self.ctx.telemetry.metrics
    }

    fn rechecked(&self, bindings: &[BindingKey]) {
        for key in bindings {
            self.ctx.request_refresh(key);
            let _ = self
                .triggers
                .unbounded_send(ObjectRef::new(&key.name).within(&key.namespace));
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the controller");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received: shutting down"),
        () = terminate => info!("SIGTERM received: shutting down"),
    }
}

/// Checks the API server answers and serves the CRD.
async fn check_cluster(client: &Client, url: &str) -> Result<(), Error> {
    client
        .apiserver_version()
        .await
        .map_err(|err| Error::ApiServerUnreachable {
            url: url.to_owned(),
            detail: kube_error_line(&err),
        })?;
    crd_served(client)
        .await?
        .then_some(())
        .ok_or(Error::CrdNotInstalled)
}

/// Whether discovery lists the bindings resource. The API server answers discovery of a
/// group/version it does not serve with a plain-text `404 page not found`, not a Status
/// (kube keeps only the HTTP code), so the code decides.
async fn crd_served(client: &Client) -> Result<bool, Error> {
    match client.list_api_group_resources(GROUP_VERSION).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == PLURAL)),
        Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 404 => Ok(false),
        Err(err) => Err(Error::Discovery(kube_error_line(&err))),
    }
}

/// This replica's identity: `$POD_NAME`, else `$HOSTNAME`, else a random name.
fn identity() -> String {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    from_env("POD_NAME")
        .or_else(|| from_env("HOSTNAME"))
        .unwrap_or_else(|| {
            let suffix: u32 = rand::rng().random();
            format!("{CONTROLLER_NAME}-{suffix:08x}")
        })
}

/// Runs the controller until SIGTERM/SIGINT.
///
/// # Errors
/// Start-up failures, each one line naming what to do: no Kubernetes configuration, API
/// server unreachable, CRD not installed, no Google credentials (without an emulator
/// endpoint), metrics address unavailable, Lease not usable.
pub async fn run(args: ControllerArgs) -> Result<(), Error> {
    let ControllerArgs {
        namespace,
        metrics_addr,
        leader_election,
        lease_name,
        lease_namespace,
        lease_duration,
        log_format: _,
        shutdown_grace,
        inventory_ttl,
        max_concurrent_passes,
        drift_events,
        drift_events_ignore_principal,
        cloud_run,
    } = args;
    let telemetry = Telemetry {
        metrics: Arc::new(Metrics::new()),
        health: Health::new(),
    };
    let listener = telemetry::bind(metrics_addr).await?;

    let config = kube::Config::infer()
        .await
        .map_err(|err| Error::KubeConfig(err.to_string()))?;
    let url = config.cluster_url.to_string();
    let kube = Client::try_from(config).map_err(|err| Error::ApiServerUnreachable {
        url: url.clone(),
        detail: kube_error_line(&err),
    })?;
    check_cluster(&kube, &url).await?;
    telemetry.health.set_crd_served(true);

    let subscriber = match drift_events {
        Some(subscription) => Some(Subscriber::from_env(subscription).await?),
        None => None,
    };
    let observer: Arc<dyn CallObserver> = Arc::new(telemetry.clone());
    let cloud_run = CloudRunClient::with_observer(cloud_run.config()?, observer).await?;
    info!(
        cloud_run = %cloud_run.config().cloud_run_base_url,
        namespace = namespace.as_deref().unwrap_or("(all)"),
        leader_election,
        "starting the controller"
    );

    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(telemetry::serve(listener, telemetry.clone(), async {
        let _ = server_stopped.await;
    }));

    let identity = identity();
    let (gate, election) = if leader_election {
        let lease_namespace = lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|ns| !ns.trim().is_empty())
            .unwrap_or_else(|| kube.default_namespace().to_owned());
        let config = LeaderConfig {
            lease_name,
            lease_namespace,
            identity: identity.clone(),
            duration: lease_duration,
        };
        let (gate, election) = leader::start(
            kube.clone(),
            config,
            telemetry.health.clone(),
            Arc::clone(&telemetry.metrics),
        )
        .await?;
        (gate, Some(election))
    } else {
        telemetry.metrics.set_leader(true);
        (LeaderGate::always(), None)
    };

    let crd_check = tokio::spawn({
        let kube = kube.clone();
        let health = telemetry.health.clone();
        async move {
            let mut tick = tokio::time::interval(API_CHECK_EVERY);
            loop {
                tick.tick().await;
                match tokio::time::timeout(API_CHECK_TIMEOUT, crd_served(&kube)).await {
                    Ok(Ok(served)) => {
                        health.set_api_reachable(true);
                        health.set_crd_served(served);
                    }
                    Ok(Err(err)) => {
                        warn!(error = %err, "cannot check the CRD");
                        health.set_api_reachable(false);
                    }
                    Err(_) => {
                        warn!(
                            timeout_secs = API_CHECK_TIMEOUT.as_secs(),
                            "the API server did not answer in time"
                        );
                        health.set_api_reachable(false);
                    }
                }
            }
        }
    });

    let (reader, writer) = reflector::store();
    let ctx = Arc::new(Context::new(
        kube.clone(),
        reader.clone(),
        SharedInventory::new(cloud_run, inventory_ttl),
        telemetry.clone(),
        gate.clone(),
        Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some(identity),
        },
    ));
    let (triggers, trigger_stream) = mpsc::unbounded();
    let mut tap = Tap {
        ctx: Arc::clone(&ctx),
        triggers,
        seen: HashMap::new(),
    };
    let api: Api<BinAuthzBinding> = match &namespace {
        Some(ns) => Api::namespaced(kube.clone(), ns),
        None => Api::all(kube.clone()),
    };
    let bindings = watcher(api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .reflect(writer)
        .inspect(move |event| tap.observe(event))
        .applied_objects()
        .predicate_filter(pass_trigger, PredicateConfig::default());

    let signal = shutdown_signal().boxed().shared();
    let (drift_triggers, drift_trigger_stream) = mpsc::unbounded();
    let drift = subscriber.map(|subscriber| {
        let env = Arc::new(DriftEnv {
            ctx: Arc::clone(&ctx),
            triggers: drift_triggers,
        });
        let config = DriftConfig {
            ignore_principals: drift_events_ignore_principal,
        };
        let handler = Handler::new(env, subscriber, config);
        tokio::spawn(handler.run(signal.clone()))
    });
    let controller = Controller::for_stream(bindings, reader)
        .with_config(
            kube::runtime::Config::default()
                .concurrency(max_concurrent_passes.get())
                .debounce(DEBOUNCE),
        )
        .reconcile_on(futures::stream::select(
            trigger_stream,
            drift_trigger_stream,
        ))
        .reconcile_all_on(gate.acquired())
        .graceful_shutdown_on(signal.clone())
        .run(reconcile, error_policy, Arc::clone(&ctx))
        .for_each(|result| async move {
            use kube::runtime::controller::Error as RunError;
            match result {
                // Failed passes are logged by `error_policy`, watch errors by the tap.
                Ok(_) | Err(RunError::ReconcilerFailed(..) | RunError::QueueError(_)) => {}
                Err(RunError::ObjectNotFound(object)) => {
                    tracing::debug!(binding = %object, "binding deleted before its pass")
                }
                Err(other) => error!(error = %other, "the controller failed"),
            }
        });
    telemetry.health.set_controller_running(true);
    let mut controller = std::pin::pin!(controller);
    tokio::select! {
        () = &mut controller => {
            warn!("the controller stopped unexpectedly");
        }
        () = signal.clone() => {
            info!(grace_secs = shutdown_grace.as_secs(), "no new passes; waiting for passes in flight");
            if tokio::time::timeout(shutdown_grace, &mut controller).await.is_err() {
                warn!("passes still running after --shutdown-grace are cancelled");
            }
        }
    }
    telemetry.health.set_controller_running(false);
    if let Some(election) = election {
        election.release(Duration::from_secs(5)).await;
    }
    crd_check.abort();
    if let Some(drift) = drift {
        drift.abort();
    }
    let _ = stop_server.send(());
    match server.await {
        Ok(Err(err)) => error!(error = %err, "the metrics server failed"),
        Err(err) => error!(error = %err, "the metrics server task failed"),
        Ok(Ok(())) => {}
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests;
