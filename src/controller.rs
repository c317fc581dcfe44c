//! The `controller` subcommand: a kube-runtime Controller over `BinAuthzBinding` that keeps Cloud Run under Binary Authorization.
//!
//! It wires Kubernetes, the Cloud Run client and the planner together:
//! - a watch (reflector) of every binding — in one namespace or all — whose cache feeds
//!   the planner's ownership decisions (`src/plan/`);
//! - a pass per binding ([`pass`]) on create/update (generation changes only, so status
//!   writes never trigger one), every `spec.interval` (on the ticks of a clock shared by
//!   every binding, see [`crate::fleet::inventory::Ticks`]), when an overlapping binding
//!   changes or is deleted (through [`crate::plan::affected_bindings`]), on taking over
//!   the lease, and after errors with per-binding exponential backoff;
//! - an inventory shared by all passes ([`inventory`]): one list per (project, location,
//!   kind) per short window;
//! - tenancy ([`tenancy`]): watches of the `BinAuthzTenancy` grants and namespace labels;
//!   a grant or label change re-checks the bindings whose permission moved; the leader
//!   writes the grants' index the admission policy reads;
//! - leader election ([`leader`]): every replica watches, only the lease holder writes;
//! - the status ([`status`]) and events ([`events`]) of each binding;
//! - metrics and health ([`crate::telemetry`]).
//!
//! # Shutdown
//! On SIGTERM or SIGINT no new pass starts; passes in flight (and their writes) get
//! `--shutdown-grace` to finish, then are cancelled; the lease is released so a standby
//! takes over at once.

mod error;
pub mod events;
mod exceptions;
pub mod leader;
mod pass;
pub mod policyreport;
pub mod shards;
mod startup;
pub mod status;
mod tenancy;
mod triggers;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{Stream, StreamExt};
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, Controller, PredicateConfig, WatchStreamExt};
use kube::{Api, Client, Resource};
use rand::Rng;
use tracing::{error, info, info_span, warn, Instrument};

use crate::api::{BinAuthzBinding, BinAuthzException};
use crate::cloudrun::{CallObserver, CloudRunArgs, CloudRunClient};
use crate::drift::pubsub::{Subscriber, SubscriptionName};
use crate::drift::{DriftConfig, Handler};
use crate::fleet::{inventory::SharedInventory, key_of};
use crate::plan::{BindingKey, TargetHistory};
use crate::resource::ResourceId;
use crate::telemetry::{self, Health, LogFormat, Metrics, PassResult, Telemetry, TelemetryError};

use crate::error_line::kube_error_line;
pub use error::{Error, RetryCause};
use leader::{LeaderConfig, LeaderElection, LeaderGate};
use policyreport::PolicyReports;
use shards::{ShardConfig, ShardElection, WriteGates};
use startup::{check_cluster, crd_served, identity, shutdown_signal};
use triggers::{pass_trigger, trim_for_cache, watch_backoff, DriftEnv, Tap};

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
    #[arg(long, env = "LEASE_DURATION", value_name = "DURATION", default_value = "15s", value_parser = crate::duration::parse)]
    pub lease_duration: Duration,

    /// With --leader-election: split the GCP projects over N shards, each held through a
    /// Lease of its own (`<lease-name>-shard-<i>`); every replica is active and writes for
    /// the projects of the shards it holds, the replicas share the shards evenly, and a
    /// dead replica's shards move within --lease-duration. See docs/sharding.md.
    #[arg(long, env = "SHARDS", value_name = "N", requires = "leader_election")]
    pub shards: Option<NonZeroU16>,

    /// Log format: `text` for people, `json` for log pipelines. The level comes from
    /// RUST_LOG (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// On SIGTERM/SIGINT, how long passes in flight get to finish their writes before
    /// they are cancelled.
    #[arg(long, env = "SHUTDOWN_GRACE", value_name = "DURATION", default_value = "25s", value_parser = crate::duration::parse)]
    pub shutdown_grace: Duration,

    /// How long one list of a project's region and kind serves every binding's pass
    /// before it is read again.
    #[arg(long, env = "INVENTORY_TTL", value_name = "DURATION", default_value = "20s", value_parser = crate::duration::parse)]
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

    /// Write one wgpolicyk8s.io/v1alpha2 PolicyReport per binding, in its namespace, with
    /// one result per matched Cloud Run resource (for Policy Reporter and similar
    /// dashboards). Needs the PolicyReport CRD and RBAC on policyreports.
    #[arg(long, env = "POLICY_REPORTS")]
    pub policy_reports: bool,
    /// The longest BinAuthzException honoured, from its creation: a longer one is refused
    /// (its status and a Warning event say so). Go duration.
    #[arg(long, env = "BINAUTHZ_EXCEPTION_MAX_DURATION", value_name = "DURATION", default_value = "720h", value_parser = crate::duration::parse)]
    pub exception_max_duration: Duration,

    /// A breakglass justification older than this gets a Warning event
    /// (`BreakglassOverdue`) on its binding, once. Go duration.
    #[arg(long, env = "BINAUTHZ_BREAKGLASS_MAX_AGE", value_name = "DURATION", default_value = "72h", value_parser = crate::duration::parse)]
    pub breakglass_max_age: Duration,

    /// Cloud Run client flags.
    #[command(flatten)]
    pub cloud_run: CloudRunArgs,
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
    /// Who set each breakglass justification and since when (`None`: read it from the
    /// status).
    breakglass: Option<crate::plan::BreakglassLedger>,
}

/// What every pass shares.
pub struct Context {
    kube: Client,
    bindings: Store<BinAuthzBinding>,
    /// The exceptions' watch cache (empty without [`Context::with_exceptions`]).
    exceptions: Store<BinAuthzException>,
    /// `--exception-max-duration`.
    exception_max: Duration,
    /// `--breakglass-max-age`.
    breakglass_max_age: Duration,
    /// The principal of the last audit log entry per resource (drift events), the owner
    /// of a breakglass justification a pass finds there for the first time.
    principals: Mutex<HashMap<ResourceId, String>>,
    inventory: SharedInventory,
    telemetry: Telemetry,
    gates: WriteGates,
    reporter: Reporter,
    memory: Mutex<HashMap<BindingKey, BindingMemory>>,
    failures: Mutex<HashMap<BindingKey, u32>>,
    /// Bindings whose next pass was queued by a drift event's re-check (it may plan on
    /// the lists of the current tick).
    refresh: Mutex<HashSet<BindingKey>>,
    /// The PolicyReport writer, with `--policy-reports`.
    policy_reports: Option<PolicyReports>,
    /// The grants and namespace labels tenancy is decided from.
    tenancy: tenancy::TenancyWatch,
    /// When each project's coverage gauges were last computed (at most once per
    /// [`COVERAGE_EVERY`]: every binding's pass of a project would otherwise recompute
    /// the same numbers over the whole project).
    coverage_at: Mutex<HashMap<String, (std::time::Instant, u64)>>,
}

/// Least time between two computations of one project's coverage gauges.
const COVERAGE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

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
        gates: impl Into<WriteGates>,
        reporter: Reporter,
    ) -> Self {
        Self {
            kube,
            bindings,
            exceptions: reflector::store().0,
            exception_max: crate::plan::DEFAULT_EXCEPTION_MAX,
            breakglass_max_age: Duration::from_secs(72 * 3600),
            principals: Mutex::new(HashMap::new()),
            inventory,
            telemetry,
            gates: gates.into(),
            reporter,
            memory: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashSet::new()),
            policy_reports: None,
            tenancy: tenancy::TenancyWatch::off(),
            coverage_at: Mutex::new(HashMap::new()),
        }
    }

    /// Passes honour the exceptions of this watch cache, up to `max` long.
    pub fn with_exceptions(mut self, exceptions: Store<BinAuthzException>, max: Duration) -> Self {
        self.exceptions = exceptions;
        self.exception_max = max;
        self
    }

    /// A breakglass justification older than `max_age` is reported overdue.
    pub fn with_breakglass_max_age(mut self, max_age: Duration) -> Self {
        self.breakglass_max_age = max_age;
        self
    }

    /// A drift event's audit entry says `principal` changed `id`.
    fn changed_by(&self, id: &ResourceId, principal: &str) {
        self.principals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), principal.to_owned());
    }

    /// The principals drift events named for `ids`, forgetting them (a pass consumes them).
    pub(crate) fn take_principals<'i>(
        &self,
        ids: impl IntoIterator<Item = &'i ResourceId>,
    ) -> HashMap<ResourceId, String> {
        let mut principals = self
            .principals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ids.into_iter()
            .filter_map(|id| principals.remove_entry(id))
            .collect()
    }

    /// Decides tenancy from these watches (without, tenancy is off).
    pub(crate) fn with_tenancy(mut self, watch: tenancy::TenancyWatch) -> Self {
        self.tenancy = watch;
        self
    }

    /// The tenancy grants and namespace labels as they are now.
    pub(crate) fn tenancy(&self) -> crate::fleet::Tenancy {
        self.tenancy.now()
    }

    /// Marks the next pass of `key` as queued by a drift event's re-check.
    fn request_refresh(&self, key: &BindingKey) {
        self.refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
    }

    /// Also writes PolicyReports (`--policy-reports`).
    #[must_use]
    pub fn with_policy_reports(mut self, reports: PolicyReports) -> Self {
        self.policy_reports = Some(reports);
        self
    }

    /// Deletes a deleted binding's PolicyReports (with `--policy-reports`, on the leader).
    pub(crate) async fn forget_reports(&self, namespace: &str, uid: &str) {
        if let Some(reports) = &self.policy_reports {
            if self.gates.may_write_cluster() {
                reports
                    .forget(&self.kube, &self.telemetry.metrics, namespace, uid)
                    .await;
            }
        }
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

    /// Whether this project's coverage is due: its bindings changed (`bindings` is a
    /// fingerprint of their keys and generations), or it was not computed in the last
    /// [`COVERAGE_EVERY`]. A due computation counts as made now.
    fn coverage_due(&self, project: &str, bindings: u64) -> bool {
        let now = std::time::Instant::now();
        let mut at = self
            .coverage_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match at.get(project) {
            Some((last, seen))
                if *seen == bindings && now.duration_since(*last) < COVERAGE_EVERY =>
            {
                false
            }
            _ => {
                at.insert(project.to_owned(), (now, bindings));
                true
            }
        }
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
        shards,
        log_format: _,
        shutdown_grace,
        inventory_ttl,
        max_concurrent_passes,
        drift_events,
        drift_events_ignore_principal,
        policy_reports,
        exception_max_duration,
        breakglass_max_age,
        cloud_run,
    } = args;
    let telemetry = Telemetry {
        metrics: Arc::new(Metrics::new()),
        health: Health::new(),
    };
    let listener = telemetry::bind(metrics_addr).await?;
    let kube = connect(&telemetry.health).await?;
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
        shards = shards.map(NonZeroU16::get),
        "starting the controller"
    );
    let server = MetricsServer::start(listener, &telemetry);

    let identity = identity();
    let lease = leader_election.then(|| LeaderConfig {
        lease_name,
        lease_namespace: lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|ns| !ns.trim().is_empty())
            .unwrap_or_else(|| kube.default_namespace().to_owned()),
        identity: identity.clone(),
        duration: lease_duration,
    });
    let (gates, election) = elect(&kube, lease, shards, &telemetry).await?;
    let api_check = tokio::spawn(check_api_server(kube.clone(), telemetry.health.clone()));

    let (tenancy_watch, tenancy_changes) = tenancy::watch_tenancy(&kube).await?;
    let (reader, writer) = reflector::store();
    let (exception_reader, exception_writer) = reflector::store();
    let mut ctx = Context::new(
        kube.clone(),
        reader.clone(),
        SharedInventory::new(cloud_run, inventory_ttl),
        telemetry.clone(),
        gates,
        Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some(identity),
        },
    )
    .with_exceptions(exception_reader.clone(), exception_max_duration)
    .with_breakglass_max_age(breakglass_max_age);
    if policy_reports {
        info!("writing a PolicyReport (wgpolicyk8s.io/v1alpha2) per binding");
        ctx = ctx.with_policy_reports(PolicyReports::new());
    }
    let ctx = Arc::new(ctx.with_tenancy(tenancy_watch.clone()));
    let (watch_triggers, watch_trigger_stream) = mpsc::unbounded();
    let exception_watch = exceptions::watch_exceptions(
        &kube,
        namespace.as_deref(),
        exception_writer,
        exceptions::ExceptionTap::new(&ctx, watch_triggers.clone()),
    );
    let bindings = watch_bindings(
        &kube,
        namespace.as_deref(),
        writer,
        Tap::new(&ctx, watch_triggers),
    );
    let signal: Shutdown = shutdown_signal().boxed().shared();
    let (drift_triggers, drift_trigger_stream) = mpsc::unbounded();
    let drift = subscriber.map(|subscriber| {
        let env = Arc::new(DriftEnv {
            ctx: Arc::clone(&ctx),
            triggers: drift_triggers,
        });
        let config = DriftConfig {
            ignore_principals: drift_events_ignore_principal,
        };
        tokio::spawn(Handler::new(env, subscriber, config).run(signal.clone()))
    });
    let (tenancy_triggers, tenancy_trigger_stream) = mpsc::unbounded();
    let follow = tokio::spawn(tenancy::follow_tenancy(
        Arc::clone(&ctx),
        tenancy_changes,
        tenancy_triggers,
    ));
    let triggers = futures::stream::select(
        futures::stream::select(watch_trigger_stream, drift_trigger_stream),
        tenancy_trigger_stream,
    );
    // A pass before the grants are read would take "not read yet" for "no grant".
    tenancy_watch.ready().await;
    let controller = futures::future::join(
        passes(
            bindings,
            reader,
            triggers,
            &ctx,
            max_concurrent_passes,
            signal.clone(),
        ),
        exception_statuses(exception_watch, exception_reader, &ctx, signal.clone()),
    )
    .map(drop);

    telemetry.health.set_controller_running(true);
    run_until_shutdown(controller, signal, shutdown_grace).await;
    telemetry.health.set_controller_running(false);
    election.release(Duration::from_secs(5)).await;
    api_check.abort();
    follow.abort();
    if let Some(drift) = drift {
        drift.abort();
    }
    server.stop().await;
    info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT, for every task that stops then.
type Shutdown = Shared<BoxFuture<'static, ()>>;

/// Connects to the API server and checks it serves the CRD.
async fn connect(health: &Health) -> Result<Client, Error> {
    let config = kube::Config::infer()
        .await
        .map_err(|err| Error::KubeConfig(err.to_string()))?;
    let url = config.cluster_url.to_string();
    let kube = Client::try_from(config).map_err(|err| Error::ApiServerUnreachable {
        url: url.clone(),
        detail: kube_error_line(&err),
    })?;
    check_cluster(&kube, &url).await?;
    health.set_crd_served(true);
    Ok(kube)
}

/// The HTTP server of /metrics, /healthz and /readyz, running until stopped.
struct MetricsServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), TelemetryError>>,
}

impl MetricsServer {
    fn start(listener: tokio::net::TcpListener, telemetry: &Telemetry) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(telemetry::serve(listener, telemetry.clone(), async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    /// Stops serving and logs how the server ended.
    async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Err(err)) => error!(error = %err, "the metrics server failed"),
            Err(err) => error!(error = %err, "the metrics server task failed"),
            Ok(Ok(())) => {}
        }
    }
}

/// The elections this replica takes part in, released on shutdown.
enum Elected {
    /// Leader election off: the gate is always open.
    Nothing,
    /// One Lease.
    Leader(LeaderElection),
    /// A Lease per shard (and one for membership).
    Shards(Box<ShardElection>),
}

impl Elected {
    async fn release(self, timeout: Duration) {
        match self {
            Self::Nothing => {}
            Self::Leader(election) => election.release(timeout).await,
            Self::Shards(election) => election.release(timeout).await,
        }
    }
}

/// Starts leader election on `lease` (split into `shards` when given), or, without one,
/// opens the gate for good.
async fn elect(
    kube: &Client,
    lease: Option<LeaderConfig>,
    shards: Option<NonZeroU16>,
    telemetry: &Telemetry,
) -> Result<(WriteGates, Elected), Error> {
    let Some(config) = lease else {
        telemetry.metrics.set_leader(true);
        return Ok((LeaderGate::always().into(), Elected::Nothing));
    };
    let health = telemetry.health.clone();
    let metrics = Arc::clone(&telemetry.metrics);
    if let Some(shards) = shards {
        let config = ShardConfig {
            lease: config,
            shards,
        };
        let (gates, election) = shards::start(kube.clone(), config, health, metrics).await?;
        return Ok((
            WriteGates::Shards(gates),
            Elected::Shards(Box::new(election)),
        ));
    }
    let (gate, election) = leader::start(kube.clone(), config, health, metrics).await?;
    Ok((gate.into(), Elected::Leader(election)))
}

/// Checks every [`API_CHECK_EVERY`] that the API server answers and serves the CRD, for
/// `/readyz`.
async fn check_api_server(kube: Client, health: Health) {
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

/// The bindings watch (in `namespace`, or every namespace) feeding the reflector and the
/// tap; yields the bindings whose generation or reconcile request changed.
fn watch_bindings(
    kube: &Client,
    namespace: Option<&str>,
    writer: Writer<BinAuthzBinding>,
    mut tap: Tap,
) -> impl Stream<Item = Result<BinAuthzBinding, watcher::Error>> + Send + 'static {
    let api: Api<BinAuthzBinding> = match namespace {
        Some(ns) => Api::namespaced(kube.clone(), ns),
        None => Api::all(kube.clone()),
    };
    watcher(api, watcher::Config::default())
        .backoff(watch_backoff())
        .modify(trim_for_cache)
        .reflect(writer)
        .inspect(move |event| tap.observe(event))
        .applied_objects()
        .predicate_filter(pass_trigger, PredicateConfig::default())
}

/// The kube-runtime controller running passes: on watch events, on `triggers`, for every
/// binding when this replica takes over the lease, and on each pass's requeue; at most
/// `concurrency` at once, debounced; no new pass once `signal` fires.
fn passes(
    bindings: impl Stream<Item = Result<BinAuthzBinding, watcher::Error>> + Send + 'static,
    reader: Store<BinAuthzBinding>,
    triggers: impl Stream<Item = ObjectRef<BinAuthzBinding>> + Send + 'static,
    ctx: &Arc<Context>,
    concurrency: NonZeroU16,
    signal: Shutdown,
) -> impl Future<Output = ()> {
    Controller::for_stream(bindings, reader)
        .with_config(
            kube::runtime::Config::default()
                .concurrency(concurrency.get())
                .debounce(DEBOUNCE),
        )
        .reconcile_on(triggers)
        .reconcile_all_on(ctx.gates.acquired())
        .graceful_shutdown_on(signal)
        .run(reconcile, error_policy, Arc::clone(ctx))
        .for_each(|result| async move { log_controller_result(result) })
}

/// The kube-runtime controller writing exceptions' statuses: on watch events, when this
/// replica takes over the lease, and at each exception's expiry.
fn exception_statuses(
    exceptions: impl Stream<Item = Result<BinAuthzException, watcher::Error>> + Send + 'static,
    reader: Store<BinAuthzException>,
    ctx: &Arc<Context>,
    signal: Shutdown,
) -> impl Future<Output = ()> {
    Controller::for_stream(exceptions, reader)
        .reconcile_all_on(ctx.gates.acquired())
        .graceful_shutdown_on(signal)
        .run(
            exceptions::reconcile_exception,
            exceptions::exception_error_policy,
            Arc::clone(ctx),
        )
        .for_each(|_| async {})
}

/// Logs what the controller's stream reports beyond passes and watch errors.
fn log_controller_result(
    result: Result<
        (ObjectRef<BinAuthzBinding>, Action),
        kube::runtime::controller::Error<Error, watcher::Error>,
    >,
) {
    use kube::runtime::controller::Error as RunError;
    match result {
        // Failed passes are logged by `error_policy`, watch errors by the tap.
        Ok(_) | Err(RunError::ReconcilerFailed(..) | RunError::QueueError(_)) => {}
        Err(RunError::ObjectNotFound(object)) => {
            tracing::debug!(binding = %object, "binding deleted before its pass")
        }
        Err(other) => error!(error = %other, "the controller failed"),
    }
}

/// Runs the controller until it stops or the signal comes; then passes in flight get
/// `grace` to finish.
async fn run_until_shutdown(
    controller: impl Future<Output = ()>,
    signal: Shutdown,
    grace: Duration,
) {
    let mut controller = std::pin::pin!(controller);
    tokio::select! {
        () = &mut controller => {
            warn!("the controller stopped unexpectedly");
        }
        () = signal => {
            info!(grace_secs = grace.as_secs(), "no new passes; waiting for passes in flight");
            if tokio::time::timeout(grace, &mut controller).await.is_err() {
                warn!("passes still running after --shutdown-grace are cancelled");
            }
        }
    }
}

#[cfg(test)]
mod tests;
