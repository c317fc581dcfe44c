//! Active-active shards (`--shards N`): every replica writes, each for the GCP projects of
//! the shards whose coordination.k8s.io Lease it holds.
//!
//! # Design
//! - A project's shard is a stable hash of its id as bindings name it
//!   ([`shard_of`]: FNV-1a, the same on every replica, architecture and version), so a
//!   binding (one project) and every Cloud Run resource it covers fall in one shard.
//! - Shard `i` is held through the Lease `<lease-name>-shard-<i>`, each driven by the
//!   same election as the single leader ([`super::leader`]): its gate opens only while
//!   this replica holds the Lease and has itself seen a recent renewal, so a replica cut
//!   off from the API server stops writing before another can take its shards.
//! - Every replica also holds a membership Lease, `<lease-name>-member-<identity>`,
//!   renewed like the others. The live members (unexpired membership Leases, sorted by
//!   identity) share the shards: the `k`-th of `m` members aims at
//!   `n / m + (k < n % m)` of the `n` shards ([`wants`]). A replica above its share
//!   releases the excess; one below it contends for shards nobody holds. A shard whose
//!   holder stopped renewing (a replica that died) is taken by any replica not above its
//!   share, so it moves within the lease duration even before the dead replica's
//!   membership expires; balance follows once it has.
//! - Cluster-wide writes that belong to no project (the tenancy index, exception
//!   statuses, deleting a deleted binding's PolicyReports) are made by shard 0's holder.
//! - Rollouts that change the mapping of projects to writers are fenced: a replica writes
//!   for no shard while a live member announces another shard count (the
//!   `binauthz.dev/shards` annotation of its membership Lease) or while the single
//!   leader's Lease (`<lease-name>`, a replica without `--shards`) is held. Going back
//!   from shards to one leader needs the sharded replicas gone first (the single leader
//!   cannot see them): scale to 0, or use the `Recreate` strategy.
//! - On shutdown a replica deletes its membership Lease first (so the others count it
//!   out at once), then releases its shards: they move without waiting for expiry.

use std::num::NonZeroU16;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::DeleteParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::leader::{self, LeaderConfig, LeaderElection, LeaderError, LeaderGate, LeaseObserver};
use crate::telemetry::{Health, LeaseState, Metrics};

/// How often the balancer re-decides without a Lease event (expiries make none).
const BALANCE_EVERY: Duration = Duration::from_secs(1);
/// How often shard 0's holder deletes membership Leases left behind by killed replicas.
const MEMBER_GC_EVERY: Duration = Duration::from_secs(60);
/// A membership Lease not renewed for this many lease durations is deleted.
const MEMBER_GC_AFTER: u32 = 20;
/// The shard count a replica runs with, on its membership Lease: replicas that map
/// projects to shards differently (a rollout changing `--shards`) never write together.
const SHARDS_ANNOTATION: &str = "binauthz.dev/shards";

/// The shard of `project` among `shards`: FNV-1a (64-bit) of the project as bindings
/// name it, modulo the shard count. Stable across replicas, versions and architectures.
#[must_use]
pub fn shard_of(project: &str, shards: u16) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in project.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let shards = u64::from(shards.max(1));
    usize::try_from(hash % shards).unwrap_or_default()
}

/// Where the shard Leases live and how this replica is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardConfig {
    /// The Leases are `<lease_name>-shard-<i>` and `<lease_name>-member-<identity>`, in
    /// `lease_namespace`, held under `identity` for `duration`.
    pub lease: LeaderConfig,
    /// How many shards.
    pub shards: NonZeroU16,
}

impl ShardConfig {
    fn shard_lease(&self, shard: usize) -> String {
        format!("{}-shard-{shard}", self.lease.lease_name)
    }

    fn member_prefix(&self) -> String {
        format!("{}-member-", self.lease.lease_name)
    }

    fn member_lease(&self) -> String {
        // A Lease name is a DNS subdomain: lowercase alphanumerics, '-' and '.'.
        let identity: String = self
            .lease
            .identity
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .take(200)
            .collect();
        format!("{}{}", self.member_prefix(), identity.trim_matches('-'))
    }
}

/// Whether this replica may write for a project: one gate per shard.
#[derive(Clone, Debug)]
pub struct ShardGates {
    gates: Arc<[LeaderGate]>,
}

impl ShardGates {
    /// The number of shards.
    #[must_use]
    pub fn count(&self) -> u16 {
        u16::try_from(self.gates.len()).unwrap_or(u16::MAX)
    }

    /// Whether this replica holds `shard` now.
    #[must_use]
    pub fn holds(&self, shard: usize) -> bool {
        self.gates.get(shard).is_some_and(LeaderGate::is_leader)
    }

    /// Whether this replica holds the shard of `project` now.
    #[must_use]
    pub fn may_write(&self, project: &str) -> bool {
        self.holds(shard_of(project, self.count()))
    }

    /// Whether this replica holds any shard.
    #[must_use]
    pub fn holds_any(&self) -> bool {
        self.gates.iter().any(LeaderGate::is_leader)
    }

    /// Emits once each time this replica acquires a shard.
    pub fn acquired(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::select_all(self.gates.iter().map(|g| g.acquired().boxed()))
    }
}

/// Whether this replica may write, and for which projects: the single leader's gate, or
/// one gate per shard.
#[derive(Clone, Debug)]
pub enum WriteGates {
    /// Leader election, or none (`LeaderGate::always`): all or nothing.
    Leader(LeaderGate),
    /// `--shards`: per project.
    Shards(ShardGates),
}

impl From<LeaderGate> for WriteGates {
    fn from(gate: LeaderGate) -> Self {
        Self::Leader(gate)
    }
}

impl WriteGates {
    /// Whether this replica may write to `project`'s Cloud Run resources and to the
    /// status and events of bindings naming it, now.
    #[must_use]
    pub fn may_write(&self, project: &str) -> bool {
        match self {
            Self::Leader(gate) => gate.is_leader(),
            Self::Shards(shards) => shards.may_write(project),
        }
    }

    /// Whether this replica makes the writes that belong to no project (the tenancy
    /// index, exception statuses, a deleted binding's PolicyReports): the leader, or
    /// shard 0's holder.
    #[must_use]
    pub fn may_write_cluster(&self) -> bool {
        match self {
            Self::Leader(gate) => gate.is_leader(),
            Self::Shards(shards) => shards.holds(0),
        }
    }

    /// Whether this replica may write anything now (it pulls drift events only then).
    #[must_use]
    pub fn may_write_any(&self) -> bool {
        match self {
            Self::Leader(gate) => gate.is_leader(),
            Self::Shards(shards) => shards.holds_any(),
        }
    }

    /// Emits once each time this replica takes over the lease or a shard.
    pub fn acquired(&self) -> futures::stream::BoxStream<'static, ()> {
        match self {
            Self::Leader(gate) => gate.acquired().boxed(),
            Self::Shards(shards) => shards.acquired().boxed(),
        }
    }
}

/// The running shard elections; [`ShardElection::release`] ends them.
#[derive(Debug)]
pub struct ShardElection {
    elections: Vec<LeaderElection>,
    balancer: JoinHandle<()>,
    member: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    member_held: watch::Receiver<bool>,
    leases: Api<Lease>,
    member_name: String,
}

impl ShardElection {
    /// Leaves the membership (so the other replicas count this one out at once), then
    /// closes every gate and releases every shard (waits at most `timeout` for each).
    pub async fn release(self, timeout: Duration) {
        self.balancer.abort();
        drop(self.member_held);
        if tokio::time::timeout(timeout, self.member).await.is_err() {
            warn!("the membership lease was not released in time");
        }
        match self
            .leases
            .delete(&self.member_name, &DeleteParams::default())
            .await
        {
            Ok(_) => debug!(lease = %self.member_name, "deleted the membership lease"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(err) => {
                warn!(error = %err, lease = %self.member_name, "cannot delete the membership lease; it expires")
            }
        }
        futures::future::join_all(self.elections.into_iter().map(|e| e.release(timeout))).await;
    }
}

/// Every shard election's state, summed up for `/readyz` and the metrics.
struct Board {
    states: Mutex<Vec<(LeaseState, bool)>>,
    health: Health,
    metrics: Arc<Metrics>,
}

impl Board {
    fn set(&self, shard: usize, state: LeaseState, open: bool) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = states.get_mut(shard) {
            *slot = (state, open);
        }
        let any_open = states.iter().any(|(_, open)| *open);
        let failing = states.iter().any(|(s, _)| *s == LeaseState::Failing);
        self.health.set_lease(if failing {
            LeaseState::Failing
        } else if any_open {
            LeaseState::Leader
        } else {
            LeaseState::Standby
        });
        self.metrics.set_leader(any_open);
        self.metrics.set_shard_held(shard, open);
    }
}

struct ShardObserver {
    board: Arc<Board>,
    shard: usize,
}

impl LeaseObserver for ShardObserver {
    fn lease_changed(&self, state: LeaseState, open: bool) {
        self.board.set(self.shard, state, open);
    }
}

/// Joins the members and starts one election per shard, balanced by a task of its own.
///
/// # Errors
/// [`LeaderError`] when a Lease cannot be created or read, or the duration is too short.
pub async fn start(
    client: Client,
    config: ShardConfig,
    health: Health,
    metrics: Arc<Metrics>,
) -> Result<(ShardGates, ShardElection), LeaderError> {
    let lease = &config.lease;
    if lease.duration < Duration::from_secs(3) {
        return Err(LeaderError::Duration(lease.duration));
    }
    let member_name = config.member_lease();
    let member = LeaseManagerBuilder::new(client.clone(), &member_name)
        .with_namespace(&lease.lease_namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration.as_secs())
        .with_grace((lease.duration.as_secs() / 3).max(1))
        .build()
        .await
        .map_err(|error| LeaderError::Lease {
            namespace: lease.lease_namespace.clone(),
            name: member_name.clone(),
            error,
        })?;
    let (member_held, member) = member.watch().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease.lease_namespace);
    let annotation = serde_json::json!({
        "metadata": {"annotations": {SHARDS_ANNOTATION: config.shards.get().to_string()}}
    });
    leases
        .patch(
            &member_name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&annotation),
        )
        .await
        .map_err(|error| LeaderError::Lease {
            namespace: lease.lease_namespace.clone(),
            name: member_name.clone(),
            error: kube_lease_manager::LeaseManagerError::KubeError(error),
        })?;

    let count = usize::from(config.shards.get());
    let board = Arc::new(Board {
        states: Mutex::new(vec![(LeaseState::Standby, false); count]),
        health,
        metrics,
    });
    let mut gates = Vec::with_capacity(count);
    let mut elections = Vec::with_capacity(count);
    let mut wants = Vec::with_capacity(count);
    for shard in 0..count {
        let (want, wanted) = watch::channel(false);
        let shard_config = LeaderConfig {
            lease_name: config.shard_lease(shard),
            ..lease.clone()
        };
        let observer = Arc::new(ShardObserver {
            board: Arc::clone(&board),
            shard,
        });
        let (gate, election) =
            leader::start_wanting(client.clone(), shard_config, wanted, observer).await?;
        gates.push(gate);
        elections.push(election);
        wants.push(want);
    }
    let (store, writer) = reflector::store();
    let stream = watcher(leases.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    info!(
        shards = count,
        identity = %lease.identity,
        "sharding: this replica writes for the projects of the shards it holds"
    );
    let balancer = tokio::spawn(balance(
        Balancer {
            config,
            store,
            leases: leases.clone(),
            wants,
            gates: gates.clone(),
        },
        stream.boxed(),
    ));
    Ok((
        ShardGates {
            gates: gates.into(),
        },
        ShardElection {
            elections,
            balancer,
            member,
            member_held,
            leases,
            member_name,
        },
    ))
}

struct Balancer {
    config: ShardConfig,
    store: Store<Lease>,
    leases: Api<Lease>,
    wants: Vec<watch::Sender<bool>>,
    gates: Vec<LeaderGate>,
}

/// Re-decides which shards this replica wants on every Lease event and every
/// [`BALANCE_EVERY`].
async fn balance(
    b: Balancer,
    mut stream: futures::stream::BoxStream<'static, Result<Lease, watcher::Error>>,
) {
    let mut tick = tokio::time::interval(BALANCE_EVERY);
    let mut gc = tokio::time::interval(MEMBER_GC_EVERY);
    gc.tick().await;
    let mut above_since: Option<std::time::Instant> = None;
    let mut blocked: Option<String> = None;
    let mut wake: Option<tokio::time::Instant> = None;
    loop {
        let expired = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = expired => wake = None,
            event = stream.next() => match event {
                Some(Ok(_)) => {}
                Some(Err(err)) => debug!(error = %err, "watching the shard leases failed; retrying"),
                None => return,
            },
            _ = tick.tick() => {}
            _ = gc.tick() => {
                if b.gates.first().is_some_and(LeaderGate::is_leader) {
                    collect_members(&b).await;
                }
                continue;
            }
        }
        if b.store.wait_until_ready().now_or_never().is_none() {
            continue;
        }
        let now = jiff::Timestamp::now();
        let view = View::read(&b.config, &b.store.state(), now);
        wake = view.next_expiry.and_then(|at| {
            let left = Duration::try_from(at.duration_since(now)).ok()?;
            Some(tokio::time::Instant::now() + left + Duration::from_millis(10))
        });
        // Above the share for a whole lease duration: not a dead replica's shard taken
        // over (its membership would have expired by then), so the excess goes.
        let release = above_since.is_some_and(|t| t.elapsed() >= b.config.lease.duration);
        if view.blocked != blocked {
            match &view.blocked {
                Some(why) => warn!("not writing for any shard: {why}"),
                None => {
                    info!("no replica with another mapping of projects is left; sharing the shards")
                }
            }
            blocked.clone_from(&view.blocked);
        }
        let decided = wants(&view, &b.config.lease.identity, b.wants.len(), release);
        if decided.above_share {
            above_since.get_or_insert_with(std::time::Instant::now);
        } else {
            above_since = None;
        }
        for (want, wanted) in b.wants.iter().zip(decided.want) {
            want.send_if_modified(|w| std::mem::replace(w, wanted) != wanted);
        }
    }
}

/// Deletes membership Leases not renewed for [`MEMBER_GC_AFTER`] lease durations (left
/// behind by killed replicas; a replica that shuts down deletes its own).
async fn collect_members(b: &Balancer) {
    let prefix = b.config.member_prefix();
    let horizon = b.config.lease.duration * MEMBER_GC_AFTER;
    let now = jiff::Timestamp::now();
    for lease in b.store.state() {
        let name = lease.metadata.name.as_deref().unwrap_or_default();
        if !name.starts_with(&prefix) {
            continue;
        }
        let last = lease
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref().map(|t| t.0))
            .or_else(|| lease.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let stale = last.is_some_and(|t| {
            Duration::try_from(now.duration_since(t)).is_ok_and(|age| age > horizon)
        });
        if stale {
            match b.leases.delete(name, &DeleteParams::default()).await {
                Ok(_) => info!(
                    lease = name,
                    "deleted a departed replica's membership lease"
                ),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(err) => {
                    warn!(error = %err, lease = name, "cannot delete a stale membership lease")
                }
            }
        }
    }
}

/// Who holds what, as this replica sees the Leases now.
#[derive(Debug, Default, PartialEq, Eq)]
struct View {
    /// Identities with an unexpired membership Lease.
    members: Vec<String>,
    /// Why no replica may write for any shard now: another replica writes with another
    /// mapping of projects (a rollout changing the mode or the shard count).
    blocked: Option<String>,
    /// Per shard: its Lease's state.
    shards: Vec<Holder>,
    /// The next moment a live Lease of the view expires unless renewed: the balancer
    /// looks again right then, so a dead replica's shard is taken at once.
    next_expiry: Option<jiff::Timestamp>,
}

/// A shard Lease's state.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Holder {
    /// Nobody holds it (never held, or released).
    Free,
    /// Held, renewed in time.
    Live(String),
    /// Its holder stopped renewing it: taken over by anyone not above its share.
    Expired(String),
}

impl View {
    fn read(config: &ShardConfig, leases: &[Arc<Lease>], now: jiff::Timestamp) -> Self {
        let prefix = config.member_prefix();
        let mut members: Vec<String> = Vec::new();
        let mut blocked = None;
        let mut shards = vec![Holder::Free; usize::from(config.shards.get())];
        let count = config.shards.get().to_string();
        let mut next_expiry: Option<jiff::Timestamp> = None;
        for lease in leases {
            let name = lease.metadata.name.as_deref().unwrap_or_default();
            let holder = holder(lease, now);
            if let (Holder::Live(_), Some(at)) = (&holder, expiry(lease)) {
                next_expiry = Some(next_expiry.map_or(at, |t| t.min(at)));
            }
            if name.starts_with(&prefix) {
                if let Holder::Live(who) = holder {
                    let theirs = lease
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(SHARDS_ANNOTATION));
                    // Missing for the moment between a member's create and its annotation.
                    if theirs.is_some_and(|n| *n != count) {
                        blocked = Some(format!(
                            "replica {who} runs with --shards {} (this one: {count}); waiting for the rollout to finish",
                            theirs.map_or("?", String::as_str)
                        ));
                    }
                    members.push(who);
                }
            } else if name == config.lease.lease_name {
                if let Holder::Live(who) = holder {
                    blocked = Some(format!(
                        "replica {who} holds the single leader's Lease {name} (it runs without --shards); waiting for it to stop"
                    ));
                }
            } else if let Some(shard) = (0..shards.len()).find(|i| config.shard_lease(*i) == name) {
                shards[shard] = holder;
            }
        }
        members.sort();
        members.dedup();
        Self {
            members,
            blocked,
            shards,
            next_expiry,
        }
    }
}

/// When a held Lease expires unless renewed again (`None`: not held).
fn expiry(lease: &Lease) -> Option<jiff::Timestamp> {
    let spec = lease.spec.as_ref()?;
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
    let duration =
        jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or_default()));
    spec.renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .and_then(|t| t.0.checked_add(duration).ok())
}

fn holder(lease: &Lease, now: jiff::Timestamp) -> Holder {
    let Some(who) = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
    else {
        return Holder::Free;
    };
    if expiry(lease).is_some_and(|until| until > now) {
        Holder::Live(who.to_owned())
    } else {
        Holder::Expired(who.to_owned())
    }
}

/// What the balancer decided for this replica.
#[derive(Debug, PartialEq, Eq)]
struct Decision {
    /// Per shard: contend for (or keep) it.
    want: Vec<bool>,
    /// This replica holds more than its share.
    above_share: bool,
}

/// Which of the `count` shards replica `me` should hold, given `view`; with `release`,
/// a replica above its share lets the excess go (the highest-numbered held shards).
///
/// Releasing is the caller's call so that it can wait: a replica that took a dead
/// replica's shard is above its share until that replica's membership expires, and
/// must keep the shard meanwhile rather than hand it to nobody.
fn wants(view: &View, me: &str, count: usize, release: bool) -> Decision {
    if view.blocked.is_some() {
        return Decision {
            want: vec![false; count],
            above_share: false,
        };
    }
    let mut members = view.members.clone();
    if !members.iter().any(|m| m == me) {
        members.push(me.to_owned());
        members.sort();
    }
    let k = members.iter().position(|m| m == me).unwrap_or_default();
    let m = members.len().max(1);
    let share = count / m + usize::from(k < count % m);
    // A Lease of ours that looks expired is still ours: the watch may lag behind its
    // renewal, and the gate (not this count) decides whether we may write.
    let mine = |h: &Holder| matches!(h, Holder::Live(who) | Holder::Expired(who) if who == me);
    let held: Vec<usize> = (0..count)
        .filter(|i| view.shards.get(*i).is_some_and(mine))
        .collect();
    let keep = if release { share } else { held.len() };
    let mut want = vec![false; count];
    for shard in held.iter().take(keep) {
        want[*shard] = true;
    }
    let mut holding = held.len().min(keep);
    for (shard, h) in view.shards.iter().enumerate().take(count) {
        let take = match h {
            Holder::Free => holding < share,
            // A dead holder's shard: taken even at the share (balance follows once its
            // membership has expired), never above it.
            Holder::Expired(who) if who != me => holding <= share,
            // Held by a live replica, or ours (counted above).
            Holder::Expired(_) | Holder::Live(_) => false,
        };
        if take {
            want[shard] = true;
            holding += 1;
        }
    }
    Decision {
        want,
        above_share: held.len() > share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    #[test]
    fn a_project_always_lands_in_the_same_shard_and_projects_spread() {
        // Pinned values: changing the hash would move every project on upgrade.
        assert_eq!(shard_of("prod-payments", 16), shard_of("prod-payments", 16));
        assert_eq!(shard_of("a", 1), 0);
        let fnv_of_a: u64 = 0xaf63_dc4c_8601_ec8c;
        assert_eq!(shard_of("a", 7), usize::try_from(fnv_of_a % 7).unwrap());
        let mut per_shard = [0u32; 4];
        for i in 0..400 {
            per_shard[shard_of(&format!("project-{i}"), 4)] += 1;
        }
        assert!(
            per_shard.iter().all(|n| (60..=140).contains(n)),
            "{per_shard:?}"
        );
    }

    fn config() -> ShardConfig {
        ShardConfig {
            lease: LeaderConfig {
                lease_name: "binauthz-operator".into(),
                lease_namespace: "ops".into(),
                identity: "pod-a".into(),
                duration: Duration::from_secs(15),
            },
            shards: NonZeroU16::new(4).unwrap(),
        }
    }

    fn lease(name: &str, holder: Option<&str>, renewed_secs_ago: i64) -> Arc<Lease> {
        Arc::new(Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_secs_ago),
                )),
                ..LeaseSpec::default()
            }),
        })
    }

    fn view(leases: &[Arc<Lease>]) -> View {
        View::read(&config(), leases, jiff::Timestamp::now())
    }

    #[test]
    fn the_view_reads_live_members_and_each_shards_holder() {
        let v = view(&[
            lease("binauthz-operator-member-pod-b", Some("pod-b"), 1),
            lease("binauthz-operator-member-pod-a", Some("pod-a"), 1),
            lease("binauthz-operator-member-pod-dead", Some("pod-dead"), 60),
            lease("binauthz-operator-shard-0", Some("pod-a"), 1),
            lease("binauthz-operator-shard-2", Some("pod-dead"), 60),
            lease("binauthz-operator-shard-3", None, 1),
            lease("unrelated", Some("pod-z"), 1),
        ]);
        assert_eq!(v.members, ["pod-a", "pod-b"]);
        // The live Leases were renewed 1 s ago: the first expires in about 14 s.
        let left = v
            .next_expiry
            .unwrap()
            .duration_since(jiff::Timestamp::now());
        assert!(left.as_secs() >= 13 && left.as_secs() <= 14, "{left:?}");
        assert_eq!(
            v.shards,
            [
                Holder::Live("pod-a".into()),
                Holder::Free,
                Holder::Expired("pod-dead".into()),
                Holder::Free
            ]
        );
    }

    #[test]
    fn a_lone_replica_takes_every_shard() {
        let v = view(&[]);
        assert_eq!(wants(&v, "pod-a", 4, false).want, [true; 4]);
    }

    #[test]
    fn a_replica_above_its_share_releases_the_excess_when_told_and_one_below_takes_free_shards() {
        let mut leases = vec![
            lease("binauthz-operator-member-pod-a", Some("pod-a"), 1),
            lease("binauthz-operator-member-pod-b", Some("pod-b"), 1),
        ];
        for i in 0..4 {
            leases.push(lease(
                &format!("binauthz-operator-shard-{i}"),
                Some("pod-a"),
                1,
            ));
        }
        // Two members, four shards: two each. A keeps all until told to release, then
        // its lowest two.
        let a = wants(&view(&leases), "pod-a", 4, false);
        assert_eq!(
            a,
            Decision {
                want: vec![true; 4],
                above_share: true
            }
        );
        assert_eq!(
            wants(&view(&leases), "pod-a", 4, true).want,
            [true, true, false, false]
        );
        // B wants nothing held by a live replica.
        let b = wants(&view(&leases), "pod-b", 4, true);
        assert_eq!(
            b,
            Decision {
                want: vec![false; 4],
                above_share: false
            }
        );
        // A released 2 and 3: B takes them; A keeps its two.
        leases[4] = lease("binauthz-operator-shard-2", None, 1);
        leases[5] = lease("binauthz-operator-shard-3", None, 1);
        let v = view(&leases);
        assert_eq!(wants(&v, "pod-b", 4, true).want, [false, false, true, true]);
        assert_eq!(wants(&v, "pod-a", 4, true).want, [true, true, false, false]);
    }

    #[test]
    fn shares_differ_by_at_most_one_and_cover_every_shard() {
        for count in 1..=9usize {
            for m in 1..=5usize {
                let members: Vec<String> = (0..m).map(|i| format!("pod-{i}")).collect();
                let v = View {
                    members: members.clone(),
                    shards: vec![Holder::Free; count],
                    ..View::default()
                };
                let taken: Vec<usize> = members
                    .iter()
                    .map(|me| {
                        wants(&v, me, count, true)
                            .want
                            .iter()
                            .filter(|w| **w)
                            .count()
                    })
                    .collect();
                // A free estate: each replica alone would take exactly its share.
                assert_eq!(
                    taken.iter().sum::<usize>(),
                    count,
                    "{count} shards, {m} members"
                );
                let (lo, hi) = (taken.iter().min().unwrap(), taken.iter().max().unwrap());
                assert!(hi - lo <= 1, "{taken:?}");
            }
        }
    }

    #[test]
    fn a_dead_replicas_shards_are_taken_before_its_membership_expires_and_kept() {
        // Three members, three shards, one each; pod-c's shard lease expired while its
        // membership is still (briefly) live.
        let leases = [
            lease("binauthz-operator-member-pod-a", Some("pod-a"), 1),
            lease("binauthz-operator-member-pod-b", Some("pod-b"), 1),
            lease("binauthz-operator-member-pod-c", Some("pod-c"), 10),
            lease("binauthz-operator-shard-0", Some("pod-a"), 1),
            lease("binauthz-operator-shard-1", Some("pod-b"), 1),
            lease("binauthz-operator-shard-2", Some("pod-c"), 20),
        ];
        let mut c = config();
        c.shards = NonZeroU16::new(3).unwrap();
        let v = View::read(&c, &leases, jiff::Timestamp::now());
        assert_eq!(wants(&v, "pod-a", 3, false).want, [true, false, true]);
        assert_eq!(wants(&v, "pod-b", 3, false).want, [false, true, true]);
        // A took it: above its share while pod-c still counts, and keeps it (the caller
        // only releases after a whole lease duration above the share).
        let taken = View {
            members: v.members.clone(),
            blocked: None,
            next_expiry: None,
            shards: vec![
                Holder::Live("pod-a".into()),
                Holder::Live("pod-b".into()),
                Holder::Live("pod-a".into()),
            ],
        };
        let a = wants(&taken, "pod-a", 3, false);
        assert_eq!(
            a,
            Decision {
                want: vec![true, false, true],
                above_share: true
            }
        );
        assert_eq!(wants(&taken, "pod-b", 3, false).want, [false, true, false]);
        // pod-c's membership expired: A is at its share (2 of 3 for the first of two).
        let settled = View {
            members: vec!["pod-a".into(), "pod-b".into()],
            ..taken
        };
        let a = wants(&settled, "pod-a", 3, true);
        assert_eq!(
            a,
            Decision {
                want: vec![true, false, true],
                above_share: false
            }
        );
    }

    #[test]
    fn nobody_writes_while_a_replica_maps_projects_differently() {
        let annotated = |name: &str, who: &str, shards: &str| {
            let mut l = Arc::unwrap_or_clone(lease(name, Some(who), 1));
            l.metadata.annotations =
                Some([(SHARDS_ANNOTATION.to_owned(), shards.to_owned())].into());
            Arc::new(l)
        };
        let free = [lease("binauthz-operator-shard-0", None, 1)];
        // A member of this shard count, and one whose annotation is not written yet.
        let mut same = vec![
            annotated("binauthz-operator-member-pod-b", "pod-b", "4"),
            lease("binauthz-operator-member-pod-c", Some("pod-c"), 1),
        ];
        same.extend(free.clone());
        let v = view(&same);
        assert_eq!(v.blocked, None);
        assert!(wants(&v, "pod-a", 4, true).want.iter().any(|w| *w));
        // A rollout from --shards 6: the old replica is still live.
        let mut other = vec![annotated(
            "binauthz-operator-member-pod-old",
            "pod-old",
            "6",
        )];
        other.extend(free.clone());
        let v = view(&other);
        assert!(
            v.blocked.as_deref().unwrap().contains("--shards 6"),
            "{v:?}"
        );
        assert_eq!(wants(&v, "pod-a", 4, true).want, [false; 4]);
        // A rollout from the single leader: its Lease is live.
        let mut single = vec![lease("binauthz-operator", Some("pod-leader"), 1)];
        single.extend(free.clone());
        let v = view(&single);
        assert!(
            v.blocked.as_deref().unwrap().contains("single leader"),
            "{v:?}"
        );
        assert_eq!(wants(&v, "pod-a", 4, true).want, [false; 4]);
        // Once it expired (the old pod is gone), the shards are taken.
        let mut gone = vec![lease("binauthz-operator", Some("pod-leader"), 60)];
        gone.extend(free);
        assert_eq!(view(&gone).blocked, None);
    }

    #[test]
    fn a_lease_of_ours_that_looks_expired_is_kept_not_released() {
        // Our renewal is late in the watch: still ours, still counted in our share.
        let v = View {
            members: vec!["pod-a".into(), "pod-b".into()],
            blocked: None,
            next_expiry: None,
            shards: vec![
                Holder::Expired("pod-a".into()),
                Holder::Live("pod-b".into()),
            ],
        };
        let a = wants(&v, "pod-a", 2, true);
        assert_eq!(
            a,
            Decision {
                want: vec![true, false],
                above_share: false
            }
        );
    }

    #[test]
    fn member_lease_names_are_valid_lease_names() {
        let mut c = config();
        c.lease.identity = "Pod_A:1".into();
        assert_eq!(c.member_lease(), "binauthz-operator-member-pod-a-1");
    }
}
