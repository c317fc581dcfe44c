//! Event-driven drift: Cloud Run's Admin Activity audit log entries, routed by a Logging
//! sink to Pub/Sub, start a re-check of the one resource written — within seconds instead
//! of at the next periodic pass.
//!
//! # Expected flow
//! 1. While this replica is the leader, pull the subscription ([`pubsub::Subscriber`]);
//!    on failure retry with backoff (1 s doubling to 30 s, with jitter), counted, never
//!    stopping the controller.
//! 2. Per message: drop a redelivery (message id and publish time), read the entry ([`auditlog::Entry`]),
//!    ignore failed calls, the operator's own writes (its user agent, or a configured
//!    principal), methods that are not watched writes, the second entry of a long-running
//!    call (operation id) and resources no binding covers (judged on the watch cache: no
//!    Cloud Run call). Unparsable messages are acknowledged, counted and logged at most
//!    once a minute.
//! 3. Coalesce per resource: at most one re-check in flight; an event during it schedules
//!    exactly one more.
//! 4. Re-check: one GET, plan with every binding of the project as they are now, the
//!    policy checks a pass makes (cached by the client), at most one write through
//!    [`crate::fleet::remediate::remediate_all`] (write turn, `still_owned` guard, lease
//!    gate). The resource read and the write are recorded in the shared inventory; the
//!    bindings that cover it get a pass queued ([`Environment::rechecked`]) that plans
//!    on the inventory's lists of the current tick, so status and events follow within
//!    seconds without a re-list.
//! 5. Acknowledge the messages a re-check covered once it ended (a lost lease leaves them
//!    unacknowledged: the next leader gets them again).
//!
//! # Guarantees
//! - Never a full re-list: a re-check reads one resource.
//! - The write decision is the planner's, with the same ownership, priority, mode and
//!   breakglass handling as a pass; a resource changed back before the re-check is read
//!   as compliant and not written.
//! - The periodic pass stays the backstop for lost events.

pub mod auditlog;
pub mod pubsub;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rand::Rng;
use tracing::{debug, info, warn};

use crate::api::{BinAuthzBinding, BinAuthzBindingSpec};
use crate::cloudrun::client::USER_AGENT;
use crate::fleet::inventory::SharedInventory;
use crate::fleet::read::{check_org_policy, check_policy};
use crate::fleet::remediate::{remediate_all, WriteRequest, Written};
use crate::fleet::{key_of, project_inputs, still_owned};
use crate::matching::{LocationFilter, NameSet};
use crate::plan::{self, Activity, BindingKey, Decision, Exceptions};
use crate::policy::DesiredPolicy;
use crate::resource::{ObservedResource, Remediation, ResourceId};
use crate::telemetry::{DriftHandled, DriftIgnored, Metrics, SubscriptionCall};
use auditlog::Entry;
use pubsub::{Received, Subscriber};

/// Messages asked for per pull.
pub const MAX_MESSAGES: u32 = 100;
/// Re-checks in flight at once (each one GET and at most one write).
pub const MAX_CONCURRENT_RECHECKS: usize = 16;
/// How long message and operation ids are remembered for de-duplication.
const DEDUPE_FOR: Duration = Duration::from_secs(15 * 60);
/// Ids remembered at most (older ones are forgotten first past this).
const DEDUPE_CAPACITY: usize = 50_000;
/// First retry delay after a failed pull; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay after failed pulls.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A standby checks this often whether it became the leader.
const STANDBY_POLL: Duration = Duration::from_secs(1);
/// At most one log line per kind of trouble per this long.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What the drift handler needs from the controller (or a test).
pub trait Environment: Send + Sync + 'static {
    /// The inventory passes read through (and its Cloud Run client).
    fn inventory(&self) -> &SharedInventory;
    /// Every binding as the watch cache has it now.
    fn bindings(&self) -> Vec<Arc<BinAuthzBinding>>;
    /// The tenancy grants and namespace labels as they are now.
    fn tenancy(&self) -> crate::fleet::Tenancy;
    /// Whether this replica may act on drift events now (it pulls them only then): the
    /// leader, or with `--shards` the holder of at least one shard.
    fn is_active(&self) -> bool;
    /// Whether this replica may re-check and write `project`'s resources now (with
    /// `--shards`: it holds the project's shard).
    fn may_write(&self, _project: &str) -> bool {
        self.is_active()
    }
    /// The metrics.
    fn metrics(&self) -> &Metrics;
    /// A re-check of a resource these bindings cover ended: queue their passes so status
    /// and events follow.
    fn rechecked(&self, bindings: &[BindingKey]);
    /// An audit entry says `principal` changed `id` (the owner of a breakglass
    /// justification the next pass finds there). Ignored unless the environment keeps it.
    fn changed_by(&self, _id: &ResourceId, _principal: &str) {}
    /// The `BinAuthzException`s as they stand now (none unless the environment has them).
    fn exceptions(&self) -> Exceptions {
        Exceptions::none()
    }
}

/// Settings of the drift handler.
#[derive(Clone, Debug, Default)]
pub struct DriftConfig {
    /// Principals whose writes are the operator's own (besides its user agent).
    pub ignore_principals: Vec<String>,
}

/// Why an entry needs no re-check, or the resource it asks to re-check.
pub fn judge(
    entry: &Entry,
    config: &DriftConfig,
    bindings: &[Arc<BinAuthzBinding>],
) -> Result<ResourceId, DriftIgnored> {
    let (Some(_), Some(id)) = (entry.write, entry.resource.as_ref()) else {
        return Err(DriftIgnored::NotAWrite);
    };
    if entry.status_code != 0 {
        return Err(DriftIgnored::FailedCall);
    }
    if is_own_write(entry, config) {
        return Err(DriftIgnored::OwnWrite);
    }
    if !bindings.iter().any(|b| covers(&b.spec, id)) {
        return Err(DriftIgnored::Uncovered);
    }
    Ok(id.clone())
}

/// The operator's own write: its user agent (`binauthz-operator/<version>`, whatever the
/// version, so a rolling upgrade's other replica counts too) or an ignored principal.
fn is_own_write(entry: &Entry, config: &DriftConfig) -> bool {
    let product = USER_AGENT.split('/').next().unwrap_or(USER_AGENT);
    let by_agent = entry.user_agent.as_deref().is_some_and(|ua| {
        ua.split_whitespace().any(|token| {
            token
                .strip_prefix(product)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    });
    let by_principal = entry
        .principal
        .as_deref()
        .is_some_and(|p| config.ignore_principals.iter().any(|i| i == p));
    by_agent || by_principal
}

/// Whether an active binding could match the resource: its project, region and kind, and
/// its names when it selects by name only (labels need a read; the plan decides then).
fn covers(spec: &BinAuthzBindingSpec, id: &ResourceId) -> bool {
    // Tenancy is left to the plan, which decides with the grants as they are now.
    if spec.project != id.project
        || !matches!(
            Activity::of(spec, &crate::plan::Permission::Open),
            Activity::Active(_)
        )
    {
        return false;
    }
    if !LocationFilter::new(&spec.locations).contains(&id.location) {
        return false;
    }
    let Some(selector) = spec.targets.for_kind(id.kind) else {
        return false;
    };
    if !selector.exclude.is_empty() && NameSet::new(&selector.exclude).matches(&id.name) {
        return false;
    }
    match (&selector.names, &selector.label_selector) {
        (Some(names), None) => NameSet::new(names).matches(&id.name),
        _ => true,
    }
}

/// What makes a delivery a redelivery: the message id with its publish time. Ids are
/// unique per topic on Pub/Sub, but the emulator counts them from 1 again when it restarts,
/// and a new message must not pass for an old one's redelivery.
fn redelivery_key(message: &Received) -> String {
    format!("m/{}@{}", message.message_id, message.publish_time)
}

/// Message and operation ids seen recently.
#[derive(Debug, Default)]
pub struct Dedupe {
    seen: HashMap<String, Instant>,
}

impl Dedupe {
    /// True the first time `key` is offered within [`DEDUPE_FOR`].
    pub fn first(&mut self, key: &str) -> bool {
        let now = Instant::now();
        if self
            .seen
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < DEDUPE_FOR)
        {
            return false;
        }
        if self.seen.len() >= DEDUPE_CAPACITY {
            self.seen
                .retain(|_, at| now.duration_since(*at) < DEDUPE_FOR);
            if self.seen.len() >= DEDUPE_CAPACITY {
                // Still full of recent ids: forget the oldest half.
                let mut ages: Vec<Instant> = self.seen.values().copied().collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                self.seen.retain(|_, at| *at > cut);
            }
        }
        self.seen.insert(key.to_owned(), now);
        true
    }
}

impl Dedupe {
    /// Forgets `key` (its next offer is a first again).
    pub fn forget(&mut self, key: &str) {
        self.seen.remove(key);
    }
}

/// The re-checks of one resource: one in flight, at most one more queued.
#[derive(Debug, Default)]
struct Slot {
    /// Acknowledgements and the earliest entry time the queued re-check covers.
    queued: Option<Round>,
}

#[derive(Debug)]
struct Round {
    acks: Vec<String>,
    /// The de-duplication keys of its messages, forgotten again when the lease is lost
    /// before the round is handled (so the redeliveries to the next leader count).
    keys: Vec<String>,
    since: Timestamp,
}

/// Logs one kind of trouble at most once per [`LOG_EVERY`].
#[derive(Debug, Default)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn allow(&mut self) -> Option<u64> {
        if self.last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The drift handler: judges pulled messages, coalesces re-checks, acknowledges.
pub struct Handler<E: Environment> {
    env: Arc<E>,
    subscriber: Subscriber,
    config: DriftConfig,
    dedupe: Mutex<Dedupe>,
    slots: Mutex<HashMap<ResourceId, Slot>>,
    limit: Arc<tokio::sync::Semaphore>,
    unparsable_log: Mutex<Throttled>,
    error_log: Mutex<Throttled>,
}

impl<E: Environment> std::fmt::Debug for Handler<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("subscription", self.subscriber.subscription())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<E: Environment> Handler<E> {
    /// A handler of `subscriber`'s messages over `env`.
    pub fn new(env: Arc<E>, subscriber: Subscriber, config: DriftConfig) -> Arc<Self> {
        Arc::new(Self {
            env,
            subscriber,
            config,
            dedupe: Mutex::new(Dedupe::default()),
            slots: Mutex::new(HashMap::new()),
            limit: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_RECHECKS)),
            unparsable_log: Mutex::new(Throttled::default()),
            error_log: Mutex::new(Throttled::default()),
        })
    }

    /// Pulls and handles messages while this replica is the leader, until `stop`
    /// resolves. Never returns early: Pub/Sub failures are retried with backoff.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut delay = RETRY_MIN;
        info!(subscription = %self.subscriber.subscription(), "consuming drift events");
        loop {
            if !self.env.is_active() {
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(STANDBY_POLL) => continue,
                }
            }
            let pulled = tokio::select! {
                () = &mut stop => return,
                pulled = self.subscriber.pull(MAX_MESSAGES) => pulled,
            };
            match pulled {
                Ok(messages) => {
                    self.env
                        .metrics()
                        .drift_pulled(std::time::SystemTime::now());
                    if delay > RETRY_MIN {
                        info!(subscription = %self.subscriber.subscription(), "drift events subscription reachable again");
                    }
                    delay = RETRY_MIN;
                    Arc::clone(&self).accept(messages).await;
                }
                Err(err) => {
                    self.env
                        .metrics()
                        .drift_subscription_error(SubscriptionCall::Pull);
                    if let Some(suppressed) = lock(&self.error_log).allow() {
                        warn!(error = %err, suppressed, retry_in_ms = delay.as_millis() as u64, "cannot pull drift events; retrying with backoff (the periodic pass still runs)");
                    }
                    let half = delay / 2;
                    let jitter = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(half + Duration::from_millis(jitter)) => {}
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Handles one batch of pulled messages: acknowledges the ignored ones at once and
    /// starts (or queues) the re-checks of the others.
    pub async fn accept(self: Arc<Self>, messages: Vec<Received>) {
        let metrics = self.env.metrics();
        let bindings = self.env.bindings();
        let mut acks = Vec::new();
        let mut nacks = Vec::new();
        for message in messages {
            metrics.drift_received();
            let verdict = self.verdict(&message, &bindings);
            match verdict {
                Ok((id, _, keys)) if !self.env.may_write(&id.project) => {
                    // Another replica's shard: back to Pub/Sub for its holder. Forgotten
                    // here, so that it counts if it comes back once this one holds it.
                    self.forget_keys(&keys);
                    metrics.drift_ignored(DriftIgnored::OtherShard);
                    nacks.push(message.ack_id);
                }
                Ok((id, since, keys)) => self.submit(id, message.ack_id, keys, since),
                Err(reason) => {
                    metrics.drift_ignored(reason);
                    acks.push(message.ack_id);
                }
            }
        }
        self.ack(&acks).await;
        self.nack(&nacks).await;
    }

    fn forget_keys<'k>(&self, keys: impl IntoIterator<Item = &'k String>) {
        let mut dedupe = lock(&self.dedupe);
        for key in keys {
            dedupe.forget(key);
        }
    }

    fn verdict(
        &self,
        message: &Received,
        bindings: &[Arc<BinAuthzBinding>],
    ) -> Result<(ResourceId, Timestamp, Vec<String>), DriftIgnored> {
        let mut keys = Vec::new();
        if !message.message_id.is_empty() {
            let key = redelivery_key(message);
            if !lock(&self.dedupe).first(&key) {
                return Err(DriftIgnored::Duplicate);
            }
            keys.push(key);
        }
        let entry = message
            .data
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|data| Entry::from_json(data).map_err(|e| e.to_string()));
        let entry = match entry {
            Ok(entry) => entry,
            Err(problem) => {
                if let Some(suppressed) = lock(&self.unparsable_log).allow() {
                    warn!(message_id = %message.message_id, problem, suppressed, "unparsable drift event acknowledged and dropped (logged at most once a minute)");
                }
                return Err(DriftIgnored::Unparsable);
            }
        };
        let id = judge(&entry, &self.config, bindings)?;
        if let Some(principal) = entry.principal.as_deref().filter(|p| !p.is_empty()) {
            self.env.changed_by(&id, principal);
        }
        if let Some(op) = &entry.operation {
            let key = format!("o/{}", op.id);
            if !lock(&self.dedupe).first(&key) {
                return Err(DriftIgnored::Duplicate);
            }
            keys.push(key);
        }
        debug!(resource = %id, method = %entry.method_name, "drift event");
        Ok((id, entry.timestamp, keys))
    }

    /// Starts a re-check of `id`, or queues one behind the re-check in flight.
    fn submit(self: &Arc<Self>, id: ResourceId, ack: String, keys: Vec<String>, since: Timestamp) {
        {
            let mut slots = lock(&self.slots);
            if let Some(slot) = slots.get_mut(&id) {
                match &mut slot.queued {
                    Some(round) => {
                        round.acks.push(ack);
                        round.keys.extend(keys);
                        round.since = round.since.min(since);
                        self.env.metrics().drift_ignored(DriftIgnored::Coalesced);
                    }
                    None => {
                        slot.queued = Some(Round {
                            acks: vec![ack],
                            keys,
                            since,
                        });
                    }
                }
                return;
            }
            slots.insert(id.clone(), Slot::default());
        }
        let handler = Arc::clone(self);
        tokio::spawn(async move {
            let mut round = Round {
                acks: vec![ack],
                keys,
                since,
            };
            loop {
                let permit = Arc::clone(&handler.limit).acquire_owned().await.ok();
                let handled = recheck(&*handler.env, &id).await;
                drop(permit);
                let Some(handled) = handled else {
                    // The lease (or the project's shard) was lost: hand every message of
                    // the resource back to Pub/Sub for the new holder, and forget their
                    // ids so that a redelivery here counts too.
                    let queued = lock(&handler.slots).remove(&id).and_then(|s| s.queued);
                    let rounds = std::iter::once(&round).chain(queued.iter());
                    handler.forget_keys(rounds.clone().flat_map(|r| &r.keys));
                    let nacks: Vec<String> = rounds.flat_map(|r| r.acks.clone()).collect();
                    handler.nack(&nacks).await;
                    return;
                };
                let latency = (handled == DriftHandled::Fixed).then(|| {
                    let since = Timestamp::now().duration_since(round.since);
                    Duration::try_from(since).unwrap_or_default()
                });
                handler.env.metrics().drift_handled(handled, latency);
                handler.ack(&round.acks).await;
                let next = {
                    let mut slots = lock(&handler.slots);
                    let next = slots.get_mut(&id).and_then(|s| s.queued.take());
                    if next.is_none() {
                        slots.remove(&id);
                    }
                    next
                };
                match next {
                    Some(next) => round = next,
                    None => return,
                }
            }
        });
    }

    async fn nack(&self, nacks: &[String]) {
        let result = self.subscriber.nack(nacks).await;
        self.settled(result, SubscriptionCall::Nack, "cannot hand drift events back; Pub/Sub delivers them again after their acknowledgement deadline");
    }

    async fn ack(&self, acks: &[String]) {
        let result = self.subscriber.acknowledge(acks).await;
        self.settled(result, SubscriptionCall::Acknowledge, "cannot acknowledge drift events; Pub/Sub delivers them again and they are de-duplicated");
    }

    /// Counts and logs (at most once a minute) a failed acknowledgement or hand-back.
    fn settled(
        &self,
        result: Result<(), pubsub::PubSubError>,
        call: SubscriptionCall,
        consequence: &str,
    ) {
        if let Err(err) = result {
            self.env.metrics().drift_subscription_error(call);
            if let Some(suppressed) = lock(&self.error_log).allow() {
                warn!(error = %err, suppressed, "{consequence}");
            }
        }
    }

    /// Whether no re-check is in flight or queued (for tests and shutdown).
    pub fn idle(&self) -> bool {
        lock(&self.slots).is_empty()
    }
}

/// Re-checks one resource (see the module docs); `None` when the lease was lost before
/// it could finish.
#[tracing::instrument(skip(env), fields(resource = %id))]
pub async fn recheck<E: Environment + ?Sized>(env: &E, id: &ResourceId) -> Option<DriftHandled> {
    if !env.may_write(&id.project) {
        return None;
    }
    let inventory = env.inventory();
    let client = inventory.client();
    let live = match client.get(id).await {
        Ok(live) => live,
        Err(err) if err.is_not_found() => {
            inventory.invalidate(id);
            return Some(DriftHandled::Gone);
        }
        Err(err) => {
            warn!(error = %err, "cannot read the resource a drift event names; the periodic pass re-checks it");
            return Some(DriftHandled::Failed);
        }
    };
    inventory.observe(&live);
    let all = env.bindings();
    let inputs = project_inputs(&all, &id.project, &env.tenancy());
    let exceptions = env.exceptions();
    let plan =
        match plan::plan_with_exceptions(&inputs, &exceptions, std::iter::once(&live.observed)) {
            Ok(plan) => plan,
            Err(err) => {
                warn!(error = %err, "cannot plan the resource a drift event names");
                return Some(DriftHandled::Failed);
            }
        };
    let mut covering = Vec::new();
    let mut write: Option<(BindingKey, Remediation)> = None;
    for bp in plan.bindings() {
        if let Some(target) = bp.target(id) {
            covering.push(bp.key().clone());
            if let Decision::Remediate(r) = &target.decision {
                write = Some((bp.key().clone(), r.clone()));
            }
        }
    }
    let handled = match write {
        None => DriftHandled::NoWrite,
        Some((key, remediation)) => {
            let spec = all
                .iter()
                .find(|b| key_of(b) == key)
                .map(|b| b.spec.clone());
            match spec {
                None => DriftHandled::NoWrite,
                Some(spec) => {
                    write_one(env, &key, &spec, &live.observed, &live, remediation).await?
                }
            }
        }
    };
    if !covering.is_empty() {
        env.rechecked(&covering);
    }
    Some(handled)
}

async fn write_one<E: Environment + ?Sized>(
    env: &E,
    key: &BindingKey,
    spec: &BinAuthzBindingSpec,
    resource: &ObservedResource,
    live: &crate::cloudrun::LiveResource,
    remediation: Remediation,
) -> Option<DriftHandled> {
    let inventory = env.inventory();
    let client = inventory.client();
    // The same reads a pass makes before writing (cached by the client).
    if let Some(desired) = spec.desired_policy() {
        if let DesiredPolicy::Named(name) = &desired {
            if let (_, Some(failure)) = check_policy(client, name).await {
                info!(binding = %key, reason = ?failure.reason, "not written: {}", failure.message);
                return Some(DriftHandled::Failed);
            }
        }
        if let (_, Some(failure)) = check_org_policy(client, &spec.project, &desired).await {
            info!(binding = %key, reason = ?failure.reason, "not written: {}", failure.message);
            return Some(DriftHandled::Failed);
        }
    }
    let requests = vec![WriteRequest {
        resource,
        remediation,
        listed: Some(live),
    }];
    let still_wanted = |now: &ObservedResource, remediation: &Remediation| {
        let all = env.bindings();
        still_owned(
            &project_inputs(&all, &now.id.project, &env.tenancy()),
            &env.exceptions(),
            key,
            now,
            remediation,
        )
    };
    let may_write = || env.may_write(&resource.id.project);
    let done = |id: &ResourceId, written: &Written| {
        env.metrics().remediation(id.kind, written.metric());
    };
    let results = remediate_all(inventory, requests, &still_wanted, &may_write, &done).await;
    let written = results.into_iter().next().and_then(|(_, w)| w)?;
    Some(match written {
        Written::Applied | Written::Pending { .. } => DriftHandled::Fixed,
        Written::AlreadySatisfied | Written::Withdrawn => DriftHandled::NoWrite,
        Written::Gone => DriftHandled::Gone,
        Written::Failed(_) => DriftHandled::Failed,
    })
}

#[cfg(test)]
mod tests;
