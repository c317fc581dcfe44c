//! Leader election on a coordination.k8s.io Lease: gates every write behind holding the lease.
//!
//! The Lease protocol (acquire, renew, take over an expired lease, release) is
//! `kube-lease-manager`'s. On top of it, a [`LeaderGate`] says whether this replica may
//! write right now. Every replica runs the same code: with leader election off the gate
//! is always open.
//!
//! # Guarantees
//! - The gate opens only while `kube-lease-manager` reports this replica as the holder AND
//!   this replica has itself seen the Lease renewed in its name recently: it closes
//!   `leaseDuration - grace/2` after the last renewal it saw. A leader cut off from the
//!   API server (which cannot renew, while `kube-lease-manager` keeps reporting its last
//!   known state) therefore stops writing before another replica can take the lease over
//!   (at `leaseDuration` after the last renewal), given clock skew below `grace/2`.
//! - Losing the lease closes the gate at once; callers check [`LeaderGate::is_leader`]
//!   right before each write, so no new write starts after that (a request already sent
//!   completes).
//! - [`LeaderElection::release`] frees the lease on shutdown so a standby takes over
//!   immediately instead of after the lease duration.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::telemetry::{Health, LeaseState, Metrics};

/// Where the Lease lives and how this replica is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// The Lease's name.
    pub lease_name: String,
    /// The Lease's namespace.
    pub lease_namespace: String,
    /// This replica's identity (the pod name, unique per replica).
    pub identity: String,
    /// How long a lease is valid after its last renewal (at least 3 s).
    pub duration: Duration,
}

impl LeaderConfig {
    /// Renewal happens `grace` before expiry: a third of the duration, at least 1 s.
    fn grace_secs(&self) -> u64 {
        (self.duration.as_secs() / 3).max(1)
    }
}

/// Whether this replica may write (Cloud Run PATCHes, status, events).
#[derive(Clone, Debug)]
pub struct LeaderGate {
    open: watch::Receiver<bool>,
    /// `None` when leader election is off; otherwise until when the last renewal seen
    /// keeps the gate open.
    valid_until: Option<Arc<Mutex<Option<Instant>>>>,
    /// Keeps an always-open gate's channel alive (a closed channel would end `acquired`).
    _always: Option<Arc<watch::Sender<bool>>>,
}

impl LeaderGate {
    /// A gate that is always open (leader election off).
    pub fn always() -> Self {
        let (tx, rx) = watch::channel(true);
        Self {
            open: rx,
            valid_until: None,
            _always: Some(Arc::new(tx)),
        }
    }

    /// A gate fixed open or closed, for tests.
    #[cfg(test)]
    pub(crate) fn fixed(open: bool) -> Self {
        let (tx, rx) = watch::channel(open);
        Self {
            open: rx,
            valid_until: None,
            _always: Some(Arc::new(tx)),
        }
    }

    /// Whether this replica may write now.
    pub fn is_leader(&self) -> bool {
        if !*self.open.borrow() {
            return false;
        }
        match &self.valid_until {
            None => true,
            Some(until) => until
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some_and(|t| Instant::now() < t),
        }
    }

    /// Emits once each time the gate opens (for re-checking every binding on takeover).
    pub fn acquired(&self) -> impl Stream<Item = ()> + Send + 'static {
        let mut rx = self.open.clone();
        rx.mark_unchanged();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                rx.changed().await.ok()?;
                if *rx.borrow_and_update() {
                    return Some(((), rx));
                }
            }
        })
    }
}

/// The running election; [`LeaderElection::release`] ends it.
#[derive(Debug)]
pub struct LeaderElection {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Keeps a single leader's always-true `want` channel alive.
    want: Option<watch::Sender<bool>>,
}

/// Errors starting the election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or created.
    #[error("cannot use Lease {namespace}/{name} for leader election: {error} (the operator needs get, list, watch, create, update and patch on leases.coordination.k8s.io in that namespace)")]
    Lease {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What the lease manager reported.
        error: kube_lease_manager::LeaseManagerError,
    },
    /// The lease duration is too short.
    #[error("--lease-duration must be at least 3s, got {0:?}")]
    Duration(Duration),
}

/// Starts leader election: returns the gate (closed until the lease is acquired) and the
/// handle that releases the lease.
///
/// # Errors
/// [`LeaderError`] when the Lease cannot be created or read, or the duration is too short.
pub async fn start(
    client: Client,
    config: LeaderConfig,
    health: Health,
    metrics: Arc<Metrics>,
) -> Result<(LeaderGate, LeaderElection), LeaderError> {
    let (want, wanted) = watch::channel(true);
    let (gate, mut election) = start_wanting(
        client,
        config,
        wanted,
        Arc::new(SingleLeader { health, metrics }),
    )
    .await?;
    election.want = Some(want);
    Ok((gate, election))
}

/// What an election reports as its lease changes: this replica's view of the Lease
/// (for `/readyz`) and whether its gate is open.
pub trait LeaseObserver: Send + Sync + 'static {
    /// The lease's state now, and whether the gate is open.
    fn lease_changed(&self, state: LeaseState, open: bool);
}

/// The single leader's observer: `/readyz` and the `binauthz_leader` gauge.
struct SingleLeader {
    health: Health,
    metrics: Arc<Metrics>,
}

impl LeaseObserver for SingleLeader {
    fn lease_changed(&self, state: LeaseState, open: bool) {
        self.health.set_lease(state);
        self.metrics.set_leader(open);
    }
}

/// Starts an election that contends for the lease only while `want` is true: when it
/// turns false, the gate closes and a held lease is released (a shard handed to another
/// replica, see [`super::shards`]).
///
/// # Errors
/// [`LeaderError`] when the Lease cannot be created or read, or the duration is too short.
pub async fn start_wanting(
    client: Client,
    config: LeaderConfig,
    want: watch::Receiver<bool>,
    observer: Arc<dyn LeaseObserver>,
) -> Result<(LeaderGate, LeaderElection), LeaderError> {
    if config.duration < Duration::from_secs(3) {
        return Err(LeaderError::Duration(config.duration));
    }
    let manager = build_manager(client.clone(), &config)
        .await
        .map_err(|error| LeaderError::Lease {
            namespace: config.lease_namespace.clone(),
            name: config.lease_name.clone(),
            error,
        })?;
    let (gate_tx, gate_rx) = watch::channel(false);
    let valid_until = Arc::new(Mutex::new(None));
    let (stop, stop_rx) = watch::channel(false);
    observer.lease_changed(LeaseState::Standby, false);
    let task = tokio::spawn(combine(Election {
        client,
        config,
        manager,
        stop_rx,
        want,
        gate: gate_tx,
        valid_until: Arc::clone(&valid_until),
        observer,
    }));
    Ok((
        LeaderGate {
            open: gate_rx,
            valid_until: Some(valid_until),
            _always: None,
        },
        LeaderElection {
            stop,
            task,
            want: None,
        },
    ))
}

impl LeaderElection {
    /// Closes the gate and releases the lease (waits at most `timeout`).
    pub async fn release(self, timeout: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            warn!("the lease was not released within {timeout:?}; a standby takes over when it expires");
        }
    }
}

/// Until when a Lease renewed in our name keeps the gate open, as a local instant.
fn renewal_deadline(lease: &Lease, config: &LeaderConfig) -> Option<Instant> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return None;
    }
    let renewed = spec.renew_time.as_ref()?.0;
    let margin = Duration::from_millis(config.grace_secs() * 500);
    let valid = config.duration.saturating_sub(margin);
    let valid = jiff::SignedDuration::try_from(valid).ok()?;
    let left = renewed
        .checked_add(valid)
        .ok()?
        .duration_since(jiff::Timestamp::now());
    let left = Duration::try_from(left).ok()?;
    Some(Instant::now() + left)
}

/// A lease manager for `config` (creates the Lease when missing).
async fn build_manager(
    client: Client,
    config: &LeaderConfig,
) -> kube_lease_manager::Result<LeaseManager> {
    LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration.as_secs())
        .with_grace(config.grace_secs())
        .build()
        .await
}

/// Shortest and longest pause after a failed lease operation.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What the election task drives and reports to.
struct Election {
    /// For the Lease watch and fresh lease managers.
    client: Client,
    /// Which Lease, under which identity, for how long.
    config: LeaderConfig,
    /// Acquires, renews and releases the Lease.
    manager: LeaseManager,
    /// Becomes true when the controller shuts down.
    stop_rx: watch::Receiver<bool>,
    /// Whether this replica should hold the lease (always, for the single leader).
    want: watch::Receiver<bool>,
    /// The gate passes check before every write.
    gate: watch::Sender<bool>,
    /// Until when the last renewal seen in our name keeps the gate open.
    valid_until: Arc<Mutex<Option<Instant>>>,
    /// Told the lease's state and the gate's.
    observer: Arc<dyn LeaseObserver>,
}

/// Drives the lease manager and opens or closes the gate.
///
/// `LeaseManager::changed` acquires a free lease, renews a held one, and otherwise sleeps
/// until the holder's lease expires — trusting its own copy of the Lease until then. So
/// that a lease released by a leader shutting down is taken over at once rather than at
/// that expiry, a standby that sees the Lease released (through its own watch) starts
/// over with a fresh manager, which reads the Lease first.
async fn combine(election: Election) {
    let Election {
        client,
        config,
        mut manager,
        mut stop_rx,
        mut want,
        gate,
        valid_until,
        observer,
    } = election;
    let mut lease_events = std::pin::pin!(watch_lease(client.clone(), &config));
    let set_deadline = |deadline: Option<Instant>| {
        *valid_until.lock().unwrap_or_else(PoisonError::into_inner) = deadline;
    };
    let mut state = ElectionState::default();
    let mut want_open = true;
    loop {
        let wanted = *want.borrow_and_update();
        if !wanted && state.holder {
            set_gate(&gate, &config, false);
            observer.lease_changed(LeaseState::Standby, false);
            match manager.release().await {
                Ok(()) => {
                    info!(lease = %config.lease_name, "handed the lease over to another replica")
                }
                Err(err) => {
                    warn!(error = %err, lease = %config.lease_name, "releasing the lease failed; another replica takes it when it expires")
                }
            }
            state.holder = false;
            state.released = true;
        }
        if std::mem::take(&mut state.released) && !state.holder {
            match build_manager(client.clone(), &config).await {
                Ok(fresh) => manager = fresh,
                Err(err) => {
                    warn!(error = %err, "cannot re-read the released lease; taking over when it expires")
                }
            }
        }
        let deadline = *valid_until.lock().unwrap_or_else(PoisonError::into_inner);
        let open = state.holder && deadline.is_some_and(|t| Instant::now() < t);
        set_gate(&gate, &config, open);
        observer.lease_changed(state.lease_state(open), open);
        let expiry = async {
            match deadline {
                Some(t) if open => tokio::time::sleep_until(t.into()).await,
                _ => std::future::pending().await,
            }
        };
        let pause = async {
            match state.paused_until {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = manager.changed(), if state.paused_until.is_none() && wanted => state.manager_changed(result),
            changed = want.changed(), if want_open => want_open = changed.is_ok(),
            () = pause => state.paused_until = None,
            event = lease_events.next() => match event {
                Some(Ok(lease)) => {
                    state.watch_ok = true;
                    if let Some(deadline) = renewal_deadline(&lease, &config) {
                        set_deadline(Some(deadline));
                    }
                    state.released = lease
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.as_deref())
                        .is_none_or(str::is_empty);
                }
                Some(Err(err)) => {
                    warn!(error = %err, "watching the lease failed; retrying");
                    state.watch_ok = false;
                }
                None => state.watch_ok = false,
            },
            () = expiry => {
                warn!(identity = %config.identity, "no lease renewal seen in time; this replica stops writing until it sees one");
            }
            _ = stop_rx.changed() => break,
        }
    }
    let _ = gate.send(false);
    observer.lease_changed(LeaseState::Standby, false);
    set_deadline(None);
    match manager.release().await {
        Ok(()) => info!(lease = %config.lease_name, "released the lease"),
        Err(err) => {
            warn!(error = %err, "releasing the lease failed; a standby takes over when it expires")
        }
    }
}

/// What the election task knows between two events.
#[derive(Debug)]
struct ElectionState {
    /// The lease manager says this replica holds the lease.
    holder: bool,
    /// The Lease watch works.
    watch_ok: bool,
    /// The last lease operation worked.
    manager_ok: bool,
    /// The pause after the next failed lease operation.
    retry: Duration,
    /// No lease operation before this instant (after a failure).
    paused_until: Option<Instant>,
    /// The watch saw the Lease released: a standby starts over with a fresh manager.
    released: bool,
}

impl Default for ElectionState {
    fn default() -> Self {
        Self {
            holder: false,
            watch_ok: true,
            manager_ok: true,
            retry: RETRY_MIN,
            paused_until: None,
            released: false,
        }
    }
}

impl ElectionState {
    /// Takes in the result of a lease operation (acquire, renew, or wait for expiry).
    fn manager_changed(&mut self, result: kube_lease_manager::Result<bool>) {
        match result {
            Ok(is_holder) => {
                self.holder = is_holder;
                self.manager_ok = true;
                self.retry = RETRY_MIN;
            }
            Err(err) => {
                warn!(error = %err, retry_in_secs = self.retry.as_secs(), "leader election failed; retrying");
                self.manager_ok = false;
                self.paused_until = Some(Instant::now() + self.retry);
                self.retry = (self.retry * 2).min(RETRY_MAX);
            }
        }
    }

    /// The lease's state for `/readyz`, with the gate `open` or not.
    fn lease_state(&self, open: bool) -> LeaseState {
        match (self.watch_ok && self.manager_ok, open) {
            (false, _) => LeaseState::Failing,
            (true, true) => LeaseState::Leader,
            (true, false) => LeaseState::Standby,
        }
    }
}

/// The Lease as it changes, through this replica's own watch.
fn watch_lease(
    client: Client,
    config: &LeaderConfig,
) -> impl Stream<Item = Result<Lease, watcher::Error>> {
    let leases: Api<Lease> = Api::namespaced(client, &config.lease_namespace);
    let selector = format!("metadata.name={}", config.lease_name);
    watcher(leases, watcher::Config::default().fields(&selector))
        .default_backoff()
        .applied_objects()
}

/// Opens or closes the gate (and says so) when it changes.
fn set_gate(gate: &watch::Sender<bool>, config: &LeaderConfig, open: bool) {
    if *gate.borrow() == open {
        return;
    }
    if open {
        info!(identity = %config.identity, lease = %config.lease_name, "acquired the lease: this replica now writes");
    } else {
        info!(identity = %config.identity, lease = %config.lease_name, "not holding the lease: this replica stops writing and stands by");
    }
    let _ = gate.send(open);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn config() -> LeaderConfig {
        LeaderConfig {
            lease_name: "binauthz-operator".into(),
            lease_namespace: "ops".into(),
            identity: "pod-a".into(),
            duration: Duration::from_secs(15),
        }
    }

    fn lease(holder: &str, renewed_secs_ago: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(
                    jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_secs_ago),
                )),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_renewal_in_our_name_keeps_the_gate_open_for_the_duration_minus_half_the_grace() {
        let c = config();
        // 15 s lease, 5 s grace: open until 12.5 s after the renewal.
        let until = renewal_deadline(&lease("pod-a", 0), &c).unwrap();
        let left = until - Instant::now();
        assert!(
            left > Duration::from_secs(11) && left <= Duration::from_millis(12_500),
            "{left:?}"
        );
        assert_eq!(
            renewal_deadline(&lease("pod-b", 0), &c),
            None,
            "someone else's renewal"
        );
        assert_eq!(
            renewal_deadline(&lease("pod-a", 20), &c),
            None,
            "an expired renewal"
        );
    }

    #[tokio::test]
    async fn an_always_open_gate_is_leader_and_never_reports_a_takeover() {
        let gate = LeaderGate::always();
        assert!(gate.is_leader());
        let mut acquired = Box::pin(gate.acquired());
        let next = tokio::time::timeout(Duration::from_millis(20), acquired.next()).await;
        assert!(
            next.is_err(),
            "no takeover event when the gate never changes"
        );
    }

    #[tokio::test]
    async fn the_gate_is_closed_without_a_recent_renewal_even_if_the_flag_says_leader() {
        let (tx, rx) = watch::channel(true);
        let until = Arc::new(Mutex::new(None));
        let gate = LeaderGate {
            open: rx,
            valid_until: Some(Arc::clone(&until)),
            _always: None,
        };
        assert!(!gate.is_leader(), "no renewal seen");
        *until.lock().unwrap() = Some(Instant::now() + Duration::from_secs(5));
        assert!(gate.is_leader());
        *until.lock().unwrap() = Some(Instant::now() - Duration::from_millis(1));
        assert!(!gate.is_leader(), "renewal too old");
        *until.lock().unwrap() = Some(Instant::now() + Duration::from_secs(5));
        let mut acquired = Box::pin(gate.acquired());
        tx.send(false).unwrap();
        assert!(!gate.is_leader(), "lease lost");
        tx.send(true).unwrap();
        assert_eq!(acquired.next().await, Some(()));
    }
}
