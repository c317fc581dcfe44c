//! A local Cloud Run Admin API emulator: v2 services, jobs, worker pools and operations, v1
//! locations, Binary Authorization platform policies and the Org Policy effective policy of
//! `run.allowedBinaryAuthorizationPolicies` over HTTP/JSON, with fault injection.
//!
//! It is an independent implementation of the wire contract (docs/emulator.md, "What it
//! serves"): it works on JSON values, never on the Cloud Run client's types, so a mistake in
//! one cannot hide in the other. A crate of its own, it depends on nothing of the operator,
//! so the compiler keeps that independence. Behaviours no source settles live in
//! [`assumed`].
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), cloudrun_emulator::EmulatorError> {
//! use cloudrun_emulator::{EmulatorConfig, Seed};
//! let seed = Seed::from_file("examples/cloudrun-seed.yaml".as_ref())?;
//! let handle = cloudrun_emulator::start(EmulatorConfig { seed, ..EmulatorConfig::default() }).await?;
//! println!("Cloud Run at {}", handle.url()); // http://127.0.0.1:PORT
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//! - Every API failure is Google's error envelope; every resource field it was given is
//!   served back unchanged unless a write changed it.
//! - Writes bump `generation`, `etag`, `updateTime` and `lastModifier`, and are recorded in
//!   the audit log with the exact field paths they changed.
//! - The admin API (`/_emulator/...`) is never subject to faults and is not counted.
#![forbid(unsafe_code)]

mod admin;
pub mod assumed;
mod auditlog;
mod denials;
mod enums;
mod faults;
mod generate;
mod google;
mod handlers;
mod journal;
mod orgpolicy;
mod regions;
mod routes;
mod seed;
mod server;
mod state;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use auditlog::{ApiVersion, AuditLogConfig, AuditLogError, AuditLogStats, TopicName};
pub use denials::ProjectAccess;
pub use faults::{Faults, FaultsError, QuotaPreset};
pub use generate::GenerateSpec;
pub use journal::{CallCount, Counters, RequestRecord};
pub use orgpolicy::AllowedPolicies;
pub use seed::{DeployBlocked, ProjectSeed, RegionSeed, ResourceSeed, Seed, SeedError};
pub use state::{ChangeRecord, ChangeSource};

use auditlog::AuditLog;
use faults::Quotas;
use journal::Journal;
use state::Store;

/// Why the emulator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The seed file cannot be read or is invalid.
    #[error("seed file {path}: {message}")]
    Seed {
        /// The file.
        path: String,
        /// What is wrong (with the field or resource) and what to do.
        message: String,
    },
    /// The seed given in the configuration is invalid.
    #[error("invalid seed: {0}")]
    InvalidSeed(SeedError),
    /// A fault setting is invalid.
    #[error("invalid fault setting: {0}")]
    Faults(FaultsError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr} (is another process using it? use port 0 for a free one)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The audit log settings are unusable.
    #[error("{0}")]
    AuditLog(AuditLogError),
    /// Waiting for a shutdown signal failed.
    #[error("cannot wait for a shutdown signal")]
    Signal(#[source] std::io::Error),
}

// Not `#[from]`: that would also make them the error's source, and a report of the chain
// would print their message twice.
impl From<SeedError> for EmulatorError {
    fn from(err: SeedError) -> Self {
        EmulatorError::InvalidSeed(err)
    }
}

impl From<AuditLogError> for EmulatorError {
    fn from(err: AuditLogError) -> Self {
        EmulatorError::AuditLog(err)
    }
}

impl From<FaultsError> for EmulatorError {
    fn from(err: FaultsError) -> Self {
        EmulatorError::Faults(err)
    }
}

impl EmulatorError {
    /// True when the input (seed, flags) is at fault rather than the environment.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            EmulatorError::Seed { .. }
                | EmulatorError::InvalidSeed(_)
                | EmulatorError::Faults(_)
                | EmulatorError::AuditLog(
                    AuditLogError::Topic { .. }
                        | AuditLogError::MissingHost { .. }
                        | AuditLogError::Host { .. }
                )
        )
    }
}

/// Everything the emulator starts with.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to bind; port 0 picks a free port (see [`EmulatorHandle::url`]).
    pub listen: SocketAddr,
    /// The estate, including an optional `generate` section.
    pub seed: Seed,
    /// Faults in force at start; change them later with [`EmulatorHandle::set_faults`] or
    /// `PUT /_emulator/faults`.
    pub faults: Faults,
    /// How many API calls the request log keeps (oldest dropped first; counters stay exact).
    pub request_log_limit: usize,
    /// Publish an Admin Activity audit log entry to this Pub/Sub topic for every
    /// successful write (none by default).
    pub audit_log: Option<AuditLogConfig>,
}

impl Default for EmulatorConfig {
    /// 127.0.0.1, a free port, no projects, no faults (a bearer token is still required).
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: Seed::default(),
            faults: Faults::default(),
            request_log_limit: 100_000,
            audit_log: None,
        }
    }
}

/// State shared by every request.
pub(crate) struct Shared {
    store: Mutex<Store>,
    faults: RwLock<Faults>,
    quotas: Mutex<Quotas>,
    journal: Mutex<Journal>,
    /// The seed a reset goes back to.
    initial: Mutex<Seed>,
    /// The audit log publisher, with `--audit-log-topic`.
    audit_log: Option<AuditLog>,
}

impl Shared {
    fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_faults(&self, faults: Faults) -> Result<(), FaultsError> {
        faults.validate()?;
        let mut current = self.faults.write().unwrap_or_else(PoisonError::into_inner);
        if current.quota(faults::Access::Read) != faults.quota(faults::Access::Read)
            || current.quota(faults::Access::Write) != faults.quota(faults::Access::Write)
        {
            lock(&self.quotas).clear();
        }
        *current = faults;
        Ok(())
    }

    fn counters(&self, client: Option<&str>) -> Counters {
        let changes = lock(&self.store)
            .audit()
            .iter()
            .filter(|c| c.source == ChangeSource::Api)
            .filter(|c| client.is_none_or(|tag| c.client == tag))
            .count() as u64;
        lock(&self.journal).counters(client, changes)
    }
}

/// Locks a mutex, carrying on after a panic elsewhere (the data stays usable).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running emulator. Dropping it stops the server (without waiting);
/// [`EmulatorHandle::shutdown`] stops it and waits.
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash): the API is at `{url}/v2/...`,
    /// `{url}/v1/...`, the admin API at `{url}/_emulator/...`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Call counters (all callers, or only the caller tagged `client`).
    pub fn counters(&self, client: Option<&str>) -> Counters {
        self.shared.counters(client)
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.journal).requests(0, None, None)
    }

    /// Every change applied to a resource, oldest first.
    pub fn changes(&self) -> Vec<ChangeRecord> {
        lock(&self.shared.store).audit().to_vec()
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults in force.
    pub fn set_faults(&self, faults: Faults) -> Result<(), FaultsError> {
        self.shared.set_faults(faults)
    }

    /// What the audit log publisher did so far (`None` without an audit log topic).
    pub fn audit_log_stats(&self) -> Option<AuditLogStats> {
        self.shared.audit_log.as_ref().map(AuditLog::stats)
    }

    /// The whole estate as a seed (what `GET /_emulator/state` answers).
    pub fn state(&self) -> Seed {
        seed::dump(&lock(&self.shared.store))
    }

    /// Stops accepting, closes every connection and waits for the server task.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Loads the seed, binds `config.listen` and serves the emulator in the background on the
/// current tokio runtime.
pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
    let EmulatorConfig {
        listen,
        seed,
        faults,
        request_log_limit,
        audit_log,
    } = config;
    faults.validate()?;
    let store = seed::load(&seed)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| EmulatorError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| EmulatorError::Bind {
            addr: listen,
            source,
        })?;
    let shutdown = CancellationToken::new();
    let audit_log = audit_log
        .map(|config| AuditLog::start(config, shutdown.clone()))
        .transpose()?;
    let shared = Arc::new(Shared {
        store: Mutex::new(store),
        faults: RwLock::new(faults),
        quotas: Mutex::new(Quotas::default()),
        journal: Mutex::new(Journal::new(request_log_limit)),
        initial: Mutex::new(seed),
        audit_log,
    });
    let app = Router::new()
        .nest("/_emulator", admin::router())
        .fallback(routes::api)
        .with_state(shared.clone());
    let task = tokio::spawn(server::serve(listener, app, shutdown.clone()));
    Ok(EmulatorHandle {
        addr,
        shared,
        shutdown,
        task: Some(task),
    })
}

/// `binauthz-operator emulator`: a local Cloud Run Admin API with fault injection.
#[derive(clap::Args, Clone, Debug)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0: a free port). The first line on stdout is
    /// `listening on http://HOST:PORT`.
    #[arg(
        long,
        env = "BINAUTHZ_EMULATOR_LISTEN",
        default_value = "127.0.0.1:8787"
    )]
    pub listen: SocketAddr,
    /// Seed file (YAML or JSON): projects, regions, policies, services, jobs, worker pools.
    #[arg(long, env = "BINAUTHZ_EMULATOR_SEED")]
    pub seed: Option<PathBuf>,
    /// Generate this many resources on top of the seed (deterministic).
    #[arg(long, env = "BINAUTHZ_EMULATOR_GENERATE")]
    pub generate: Option<usize>,
    /// Seed number of --generate.
    #[arg(long, env = "BINAUTHZ_EMULATOR_GENERATE_SEED", default_value_t = 1)]
    pub generate_seed: u64,
    /// Fraction of generated resources whose Binary Authorization drifts.
    #[arg(long, env = "BINAUTHZ_EMULATOR_DRIFT_RATIO", default_value_t = 0.1)]
    pub drift_ratio: f64,
    /// Projects to generate into (comma-separated; default gen-project-1,gen-project-2).
    #[arg(
        long,
        env = "BINAUTHZ_EMULATOR_GENERATE_PROJECTS",
        value_delimiter = ','
    )]
    pub generate_projects: Vec<String>,
    /// Regions to generate into (comma-separated; default us-central1,europe-west1,asia-northeast1).
    #[arg(
        long,
        env = "BINAUTHZ_EMULATOR_GENERATE_REGIONS",
        value_delimiter = ','
    )]
    pub generate_regions: Vec<String>,
    /// Latency added to every API call, in milliseconds.
    #[arg(long, env = "BINAUTHZ_EMULATOR_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Extra random latency per call, uniform in [0, N] milliseconds.
    #[arg(long, env = "BINAUTHZ_EMULATOR_LATENCY_JITTER_MS", default_value_t = 0)]
    pub latency_jitter_ms: u64,
    /// Injected error rates per HTTP status, e.g. 503=0.05,429=0.02.
    #[arg(long, env = "BINAUTHZ_EMULATOR_ERROR_RATE", value_parser = parse_error_rate_arg)]
    pub error_rate: Option<BTreeMap<u16, f64>>,
    /// Probability of resetting the connection instead of answering.
    #[arg(long, env = "BINAUTHZ_EMULATOR_RESET_RATE", default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Read calls allowed per minute per project and region (429 beyond).
    #[arg(long, env = "BINAUTHZ_EMULATOR_READ_QUOTA")]
    pub read_quota: Option<u32>,
    /// Write calls allowed per minute per project and region (429 beyond).
    #[arg(long, env = "BINAUTHZ_EMULATOR_WRITE_QUOTA")]
    pub write_quota: Option<u32>,
    /// Probability that a simulated deploy lands between a client's read and its write
    /// (the write's etag is then stale: 409 ABORTED).
    #[arg(long, env = "BINAUTHZ_EMULATOR_STALE_ETAG_RATE", default_value_t = 0.0)]
    pub stale_etag_rate: f64,
    /// Milliseconds until a write's operation is done.
    #[arg(
        long,
        env = "BINAUTHZ_EMULATOR_OPERATION_DELAY_MS",
        default_value_t = 0
    )]
    pub operation_delay_ms: u64,
    /// Probability that a write's operation fails (the resource is left unchanged).
    #[arg(
        long,
        env = "BINAUTHZ_EMULATOR_OPERATION_FAILURE_RATE",
        default_value_t = 0.0
    )]
    pub operation_failure_rate: f64,
    /// Accept calls without an `Authorization: Bearer` header.
    #[arg(long, env = "BINAUTHZ_EMULATOR_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// Projects (id or number), locations (projects/P/locations/L) or resource names
    /// answering 403; prefix `write:` to refuse only writes (comma-separated).
    #[arg(long, env = "BINAUTHZ_EMULATOR_FORBID", value_delimiter = ',')]
    pub forbid: Vec<String>,
    /// Quotas of a kind of project for whichever of --read-quota / --write-quota is not
    /// given: new-project (600 reads and 30 writes per minute per project and region).
    #[arg(long, env = "BINAUTHZ_EMULATOR_QUOTA_PRESET", value_parser = QuotaPreset::parse)]
    pub quota_preset: Option<QuotaPreset>,
    /// A 429 also carries QuotaFailure and RetryInfo details (by default it carries
    /// ErrorInfo and Help only, as Cloud Run usually answers).
    #[arg(long, env = "BINAUTHZ_EMULATOR_QUOTA_RETRY_INFO")]
    pub quota_retry_info: bool,
    /// How the caller sees projects: PROJECT=apiDisabled|vpcServiceControls|notVisible
    /// (comma-separated; overrides the seed's `access`).
    #[arg(
        long,
        env = "BINAUTHZ_EMULATOR_PROJECT_ACCESS",
        value_delimiter = ',',
        value_parser = parse_project_access_arg
    )]
    pub project_access: Vec<(String, ProjectAccess)>,
    /// Job PATCHes do not check the etag they carry (services and worker pools still do).
    #[arg(long, env = "BINAUTHZ_EMULATOR_JOB_ETAG_IGNORED")]
    pub job_etag_ignored: bool,
    /// Publish an Admin Activity audit log entry (a LogEntry, as a Logging sink delivers
    /// it) to this Pub/Sub topic, projects/P/topics/T, for every successful write.
    #[arg(long, env = "BINAUTHZ_EMULATOR_AUDIT_LOG_TOPIC")]
    pub audit_log_topic: Option<String>,
    /// The Pub/Sub emulator the audit log goes to, HOST:PORT.
    #[arg(long, env = "PUBSUB_EMULATOR_HOST")]
    pub pubsub_emulator_host: Option<String>,
    /// How many API calls the request log keeps.
    #[arg(
        long,
        env = "BINAUTHZ_EMULATOR_REQUEST_LOG_LIMIT",
        default_value_t = 100_000
    )]
    pub request_log_limit: usize,
}

fn parse_project_access_arg(text: &str) -> Result<(String, ProjectAccess), String> {
    let (project, access) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not PROJECT=ACCESS (e.g. acme-prod=apiDisabled)"))?;
    Ok((
        project.trim().to_string(),
        ProjectAccess::parse(access.trim())?,
    ))
}

fn parse_error_rate_arg(text: &str) -> Result<BTreeMap<u16, f64>, String> {
    faults::parse_error_rates(text).map_err(|err| err.to_string())
}

impl EmulatorArgs {
    /// The configuration these flags describe (reads and checks the seed file).
    pub fn config(&self) -> Result<EmulatorConfig, EmulatorError> {
        let EmulatorArgs {
            listen,
            seed,
            generate,
            generate_seed,
            drift_ratio,
            generate_projects,
            generate_regions,
            latency_ms,
            latency_jitter_ms,
            error_rate,
            reset_rate,
            read_quota,
            write_quota,
            stale_etag_rate,
            operation_delay_ms,
            operation_failure_rate,
            allow_unauthenticated,
            forbid,
            quota_preset,
            quota_retry_info,
            project_access,
            job_etag_ignored,
            request_log_limit,
            audit_log_topic,
            pubsub_emulator_host,
        } = self.clone();
        let mut seed = match seed {
            Some(path) => Seed::from_file(&path)?,
            None => Seed::default(),
        };
        if let Some(count) = generate {
            let mut spec = GenerateSpec::new(count);
            spec.seed = generate_seed;
            spec.drift_ratio = drift_ratio;
            if !generate_projects.is_empty() {
                spec.projects = generate_projects;
            }
            if !generate_regions.is_empty() {
                spec.regions = generate_regions;
            }
            seed.generate = Some(spec);
        }
        let faults = Faults {
            latency_ms,
            latency_jitter_ms,
            error_rates: error_rate.unwrap_or_default(),
            reset_rate,
            read_quota_per_minute: read_quota,
            write_quota_per_minute: write_quota,
            stale_etag_rate,
            operation_delay_ms,
            operation_failure_rate,
            require_token: !allow_unauthenticated,
            forbidden: forbid,
            quota_preset,
            quota_retry_info,
            project_access: project_access.into_iter().collect(),
            job_etag_ignored,
        };
        faults.validate()?;
        let audit_log = match (audit_log_topic, pubsub_emulator_host) {
            (None, _) => None,
            (Some(topic), None) => return Err(AuditLogError::MissingHost { topic }.into()),
            (Some(topic), Some(host)) => Some(AuditLogConfig::new(&topic, &host)?),
        };
        Ok(EmulatorConfig {
            listen,
            seed,
            faults,
            request_log_limit,
            audit_log,
        })
    }
}

/// Runs the emulator until SIGINT or SIGTERM. Prints `listening on http://HOST:PORT` as
/// the first line on stdout once it accepts connections.
pub async fn run(args: EmulatorArgs) -> Result<(), EmulatorError> {
    let handle = start(args.config()?).await?;
    {
        let mut out = std::io::stdout().lock();
        // A closed stdout must not stop the emulator: the URL is also on stderr.
        let _ = writeln!(out, "listening on {}", handle.url());
        let _ = out.flush();
    }
    let summary = {
        let store = lock(&handle.shared.store);
        let projects = store.projects().count();
        let resources: usize = store
            .projects()
            .flat_map(|p| {
                p.regions
                    .iter()
                    .flat_map(move |r| state::Kind::ALL.map(|k| (p.id.clone(), r.clone(), k)))
            })
            .filter_map(|(p, r, k)| store.collection(&p, &r, k).map(|c| c.items().len()))
            .sum();
        format!("{projects} projects, {resources} resources")
    };
    eprintln!(
        "Cloud Run emulator at {url} ({summary}); admin API at {url}/_emulator/",
        url = handle.url()
    );
    if let Some(log) = &handle.shared.audit_log {
        eprintln!(
            "audit log entries of every write published to {} on the Pub/Sub emulator at {}",
            log.config().topic,
            log.config().pubsub_host
        );
    }
    wait_for_signal().await?;
    handle.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), EmulatorError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(EmulatorError::Signal)?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map_err(EmulatorError::Signal),
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), EmulatorError> {
    tokio::signal::ctrl_c().await.map_err(EmulatorError::Signal)
}
