//! Shares Cloud Run reads between bindings: one list per (project, location, kind) per short window, single-flight.
//!
//! # Guarantees
//! - Within `ttl` of a list starting, every pass asking for the same (project, location,
//!   kind) gets that list's result: concurrent callers wait for the one request in flight
//!   instead of issuing their own (single flight), so N bindings over one project cost one
//!   set of lists per window, not N.
//! - A pass also names the moment its reads must not predate ([`SharedInventory::list`]'s
//!   `not_before`): passes run on the ticks of a clock shared by every binding
//!   ([`Ticks`]), and a pass plans on lists started at or after the last tick. Bindings
//!   with one interval therefore pass together and share one set of lists per interval,
//!   and a change in Cloud Run is seen by the first tick after it: within one interval
//!   plus one pass.
//! - A failed list is shared by the callers that waited for it, then forgotten: the next
//!   caller lists again.
//! - At most [`MAX_CONCURRENT_LISTS`] lists are in flight: a scope's previous list lives
//!   until its new one lands, so the estate is held about once, not twice, while a tick
//!   lists every scope again.
//! - A remediation's result is written through ([`SharedInventory::record`]), so a pass
//!   planned right after another binding's write sees the resource as it now is. The
//!   wire object (etag) kept beside it may then be stale; the client re-reads on a stale
//!   etag, so that costs one read, never a lost update.
//! - The last successful list of each scope is kept after it goes stale, only to decide
//!   which bindings overlap ([`SharedInventory::last_known`]) and to start a write from
//!   the freshest state known ([`SharedInventory::latest`]); passes never plan on it.
//! - Writes to one resource take turns ([`SharedInventory::write_turn`]): passes of
//!   bindings that co-own a resource (or that planned on one list) would otherwise all
//!   write it at once, one succeeding and the others failing on its etag. The next in
//!   turn starts from the state the previous one wrote through, and makes no call when
//!   that already complies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::api::ResourceKind;
use crate::cloudrun::{CloudRunClient, Error as CloudRunError, LiveResource};
use crate::resource::{ObservedResource, ResourceId};

/// What is listed together: one collection of one project and region.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// Project id or number, as bindings name it.
    pub project: String,
    /// Cloud Run region.
    pub location: String,
    /// Services, jobs or worker pools.
    pub kind: ResourceKind,
}

/// One scope's resources as listed; each resource shared, so writing one through copies
/// pointers, not resources.
pub type Listed = Arc<Vec<Arc<LiveResource>>>;

type ListResult = Result<Listed, Arc<CloudRunError>>;

struct Entry {
    /// Distinguishes successive lists of one scope; a completing list only lands in the
    /// entry when the generation is still its own.
    generation: u64,
    started: Instant,
    state: EntryState,
    /// The last successful list, fresh or not (for `last_known`).
    last_ok: Option<Listed>,
}

enum EntryState {
    Loading(Shared<BoxFuture<'static, ListResult>>),
    Ready(Listed),
    /// Failed, or invalidated: the next caller lists again.
    Expired,
}

/// The inventory shared by every pass of the controller.
pub struct SharedInventory {
    client: CloudRunClient,
    ttl: Duration,
    entries: Mutex<HashMap<Scope, Entry>>,
    next_generation: AtomicU64,
    ticks: Ticks,
    turns: Mutex<HashMap<ResourceId, Arc<tokio::sync::Mutex<()>>>>,
    /// Bounds the lists in flight: a scope's previous list is kept until its new one
    /// lands, so listing every scope at once would hold two copies of the whole estate.
    listing: Arc<tokio::sync::Semaphore>,
}

/// One list's resources, each behind its own pointer. Not `collect`: collecting in place
/// would keep the resources' buffer (400 bytes a resource, where a pointer needs 8) as the
/// pointers' storage for as long as the list is held.
fn shared(items: Vec<LiveResource>) -> Vec<Arc<LiveResource>> {
    let mut out = Vec::with_capacity(items.len());
    out.extend(items.into_iter().map(Arc::new));
    out
}

/// Lists in flight at once (each a (project, region, kind) collection, page by page).
pub const MAX_CONCURRENT_LISTS: usize = 8;

/// The turn of one pass to write one resource; the next pass waiting for it goes when
/// this is dropped.
pub struct WriteTurn<'a> {
    inventory: &'a SharedInventory,
    id: ResourceId,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for WriteTurn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut turns = self.inventory.turns();
        if turns
            .get(&self.id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            turns.remove(&self.id);
        }
    }
}

impl std::fmt::Debug for SharedInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedInventory")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SharedInventory {
    /// An empty inventory reading through `client`; a list is fresh for `ttl` after it
    /// started.
    pub fn new(client: CloudRunClient, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            entries: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(0),
            ticks: Ticks::new(Instant::now()),
            turns: Mutex::new(HashMap::new()),
            listing: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_LISTS)),
        }
    }

    /// The clock passes run on (its epoch: when the inventory was made).
    pub fn ticks(&self) -> Ticks {
        self.ticks
    }

    /// The Cloud Run client the inventory reads through.
    pub fn client(&self) -> &CloudRunClient {
        &self.client
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Scope, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn turns(&self) -> MutexGuard<'_, HashMap<ResourceId, Arc<tokio::sync::Mutex<()>>>> {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the turn to write `id` (see the module docs); hold it for the write.
    pub async fn write_turn(&self, id: &ResourceId) -> WriteTurn<'_> {
        let lock = Arc::clone(self.turns().entry(id.clone()).or_default());
        let guard = lock.lock_owned().await;
        WriteTurn {
            inventory: self,
            id: id.clone(),
            guard: Some(guard),
        }
    }

    /// The freshest state known of `id`: the last list of its scope, with every write
    /// recorded since.
    pub fn latest(&self, id: &ResourceId) -> Option<Arc<LiveResource>> {
        self.entries()
            .get(&Scope::of(id))?
            .last_ok
            .as_ref()?
            .iter()
            .find(|r| r.observed.id == *id)
            .cloned()
    }

    fn generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    /// The resources of one scope: a fresh shared list, the one in flight, or a new one. A
    /// list is fresh when it started less than `ttl` ago and not before `not_before`.
    ///
    /// # Errors
    /// The client's error for the list (shared with every caller that waited for it).
    pub async fn list(&self, scope: &Scope, not_before: Instant) -> ListResult {
        self.list_within(scope, not_before, self.ttl).await
    }

    /// Like [`SharedInventory::list`], with a list fresh for `max_age` instead of the
    /// inventory's ttl: a pass queued right after an event's write (recorded into the
    /// list) plans on the list of the current tick instead of listing again.
    ///
    /// # Errors
    /// The client's error for the list (shared with every caller that waited for it).
    pub async fn list_within(
        &self,
        scope: &Scope,
        not_before: Instant,
        max_age: Duration,
    ) -> ListResult {
        let (generation, future) = {
            let mut entries = self.entries();
            let fresh = entries
                .get(scope)
                .filter(|e| e.started >= not_before && e.started.elapsed() < max_age);
            match fresh.map(|e| (&e.state, e.generation)) {
                Some((EntryState::Ready(items), _)) => return Ok(Arc::clone(items)),
                Some((EntryState::Loading(future), generation)) => (generation, future.clone()),
                _ => {
                    let generation = self.generation();
                    let client = self.client.clone();
                    let s = scope.clone();
                    let listing = Arc::clone(&self.listing);
                    let future = async move {
                        // Never closed: the inventory owns the semaphore.
                        let _permit = listing.acquire_owned().await.ok();
                        client
                            .list_all(&s.project, &s.location, s.kind)
                            .await
                            .map(|items| Arc::new(shared(items)))
                            .map_err(Arc::new)
                    }
                    .boxed()
                    .shared();
                    let last_ok = entries.remove(scope).and_then(|e| e.last_ok);
                    entries.insert(
                        scope.clone(),
                        Entry {
                            generation,
                            started: Instant::now(),
                            state: EntryState::Loading(future.clone()),
                            last_ok,
                        },
                    );
                    (generation, future)
                }
            }
        };
        let result = future.await;
        if let Some(entry) = self.entries().get_mut(scope) {
            if entry.generation == generation {
                match &result {
                    Ok(items) => {
                        entry.state = EntryState::Ready(Arc::clone(items));
                        entry.last_ok = Some(Arc::clone(items));
                    }
                    Err(_) => entry.state = EntryState::Expired,
                }
            }
        }
        result
    }

    /// Writes a resource's new state through to the list that holds it (and to the last
    /// list kept after it went stale). A list in flight may have read the old state: it is
    /// expired, so the next caller lists again.
    pub fn record(&self, resource: &ObservedResource) {
        let scope = Scope::of(&resource.id);
        let generation = self.generation();
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&scope) else {
            return;
        };
        // The last list (fresh or not; a fresh one is the same list) gets the write, so the
        // next write in turn starts from it even after the list went stale.
        let written = entry.last_ok.as_ref().and_then(|items| {
            let i = items.iter().position(|r| r.observed.id == resource.id)?;
            let mut updated = Vec::clone(items);
            let mut live = LiveResource::clone(&updated[i]);
            live.observed = resource.clone();
            updated[i] = Arc::new(live);
            Some(Arc::new(updated))
        });
        if let Some(updated) = written {
            if let EntryState::Ready(items) = &mut entry.state {
                *items = Arc::clone(&updated);
            }
            entry.last_ok = Some(updated);
        }
        if matches!(entry.state, EntryState::Loading(_)) {
            entry.generation = generation;
            entry.state = EntryState::Expired;
        }
    }

    /// Writes a resource just read (wire object and all) through to the lists of its
    /// scope, adding it when they do not hold it yet (a resource created since the list).
    /// Nothing happens when the scope was never listed (its first pass lists it). A list
    /// in flight may have read an older state: it is expired.
    pub fn observe(&self, resource: &LiveResource) {
        let scope = Scope::of(&resource.observed.id);
        let generation = self.generation();
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(&scope) else {
            return;
        };
        let upsert = |items: &Listed| {
            let mut updated = Vec::clone(items);
            let fresh = Arc::new(resource.clone());
            match updated
                .iter()
                .position(|r| r.observed.id == resource.observed.id)
            {
                Some(i) => updated[i] = fresh,
                None => updated.push(fresh),
            }
            Arc::new(updated)
        };
        if let Some(updated) = entry.last_ok.as_ref().map(upsert) {
            if let EntryState::Ready(items) = &mut entry.state {
                *items = Arc::clone(&updated);
            }
            entry.last_ok = Some(updated);
        }
        if matches!(entry.state, EntryState::Loading(_)) {
            entry.generation = generation;
            entry.state = EntryState::Expired;
        }
    }

    /// Expires the list of a resource's scope (e.g. after a write whose result is
    /// unknown), so the next caller lists again.
    pub fn invalidate(&self, id: &ResourceId) {
        let generation = self.generation();
        if let Some(entry) = self.entries().get_mut(&Scope::of(id)) {
            entry.generation = generation;
            entry.state = EntryState::Expired;
        }
    }

    /// Every resource of `project` from the last successful lists, fresh or not — only to
    /// decide which bindings overlap; never planned on.
    pub fn last_known(&self, project: &str) -> Vec<Arc<LiveResource>> {
        self.entries()
            .iter()
            .filter(|(scope, _)| scope.project == project)
            .filter_map(|(_, entry)| entry.last_ok.as_ref())
            .flat_map(|items| items.iter().cloned())
            .collect()
    }
}

/// The clock passes run on. The ticks of an interval are the whole multiples of it since
/// the epoch; every binding's periodic pass is scheduled on the next tick of its interval,
/// so bindings with one interval (and those whose intervals are multiples of each other,
/// on the ticks they share) pass at the same moment over one set of lists.
#[derive(Clone, Copy, Debug)]
pub struct Ticks {
    epoch: Instant,
}

impl Ticks {
    /// A clock whose ticks count from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self { epoch }
    }

    fn count(&self, interval: Duration, now: Instant) -> u128 {
        let nanos = interval.as_nanos().max(1);
        now.saturating_duration_since(self.epoch).as_nanos() / nanos
    }

    fn at(&self, interval: Duration, count: u128) -> Instant {
        let nanos = interval.as_nanos().max(1).saturating_mul(count);
        self.epoch + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The last tick of `interval` at or before `now` (the epoch before the first).
    pub fn last(&self, interval: Duration, now: Instant) -> Instant {
        self.at(interval, self.count(interval, now))
    }

    /// How long from `now` until the first tick of `interval` after it.
    pub fn until_next(&self, interval: Duration, now: Instant) -> Duration {
        self.at(interval, self.count(interval, now) + 1)
            .saturating_duration_since(now)
    }
}

impl Scope {
    /// The scope a resource is listed in.
    pub fn of(id: &ResourceId) -> Self {
        Self {
            project: id.project.clone(),
            location: id.location.clone(),
            kind: id.kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudrun::{CloudRunConfig, RetryPolicy};
    use crate::policy::ObservedPolicy;
    use cloudrun_emulator::{EmulatorConfig, EmulatorHandle, Faults, Seed};

    const SEED: &str = r#"
projects:
  acme-prod:
    projectNumber: 123456789012
    regions:
      us-central1:
        services:
          - {name: checkout, image: us-docker.pkg.dev/p/i:1}
"#;

    async fn setup(ttl: Duration) -> (EmulatorHandle, SharedInventory) {
        let emulator = cloudrun_emulator::start(EmulatorConfig {
            seed: Seed::from_yaml_str(SEED).unwrap(),
            ..EmulatorConfig::default()
        })
        .await
        .unwrap();
        let mut config = CloudRunConfig::emulator(&emulator.url());
        config.retry = RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_attempts: 1,
            deadline: Duration::from_secs(5),
        };
        let client = CloudRunClient::new(config).await.unwrap();
        (emulator, SharedInventory::new(client, ttl))
    }

    fn scope() -> Scope {
        Scope {
            project: "acme-prod".into(),
            location: "us-central1".into(),
            kind: ResourceKind::Service,
        }
    }

    fn long_ago() -> Instant {
        Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap()
    }

    fn lists(emulator: &EmulatorHandle) -> u64 {
        emulator
            .counters(None)
            .calls
            .iter()
            .filter(|c| c.method == "services.list")
            .map(|c| c.count)
            .sum()
    }

    #[tokio::test]
    async fn a_fresh_list_is_shared_and_writes_go_through_it() {
        let (emulator, inventory) = setup(Duration::from_secs(3600)).await;
        let s = scope();
        let (a, b) = tokio::join!(
            inventory.list(&s, long_ago()),
            inventory.list(&s, long_ago())
        );
        assert_eq!(a.unwrap().len(), 1);
        assert_eq!(b.unwrap().len(), 1);
        assert_eq!(lists(&emulator), 1, "single flight");

        let mut fixed = inventory.list(&scope(), long_ago()).await.unwrap()[0]
            .observed
            .clone();
        assert_eq!(fixed.policy, ObservedPolicy::None);
        fixed.policy = ObservedPolicy::ProjectDefault;
        inventory.record(&fixed);
        let again = inventory.list(&scope(), long_ago()).await.unwrap();
        assert_eq!(again[0].observed.policy, ObservedPolicy::ProjectDefault);
        assert_eq!(lists(&emulator), 1, "served from the shared list");

        inventory.invalidate(&fixed.id);
        let relisted = inventory.list(&scope(), long_ago()).await.unwrap();
        assert_eq!(
            relisted[0].observed.policy,
            ObservedPolicy::None,
            "read again"
        );
        assert_eq!(lists(&emulator), 2);
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn a_list_started_before_the_last_tick_is_read_again_once() {
        let (emulator, inventory) = setup(Duration::from_secs(3600)).await;
        inventory.list(&scope(), long_ago()).await.unwrap();
        inventory.list(&scope(), long_ago()).await.unwrap();
        assert_eq!(lists(&emulator), 1);
        let tick = Instant::now();
        let s = scope();
        let (a, b) = tokio::join!(inventory.list(&s, tick), inventory.list(&s, tick));
        assert_eq!((a.unwrap().len(), b.unwrap().len()), (1, 1));
        assert_eq!(lists(&emulator), 2, "one new list for the tick, shared");
        inventory.list(&scope(), tick).await.unwrap();
        assert_eq!(lists(&emulator), 2);
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn writes_to_one_resource_take_turns_and_start_from_the_last_recorded_state() {
        let (emulator, inventory) = setup(Duration::from_secs(3600)).await;
        let listed = inventory.list(&scope(), long_ago()).await.unwrap();
        let id = listed[0].observed.id.clone();
        let other = ResourceId {
            name: "other".into(),
            ..id.clone()
        };

        let first = inventory.write_turn(&id).await;
        let waiting = inventory.write_turn(&id);
        tokio::pin!(waiting);
        assert!(
            futures::poll!(waiting.as_mut()).is_pending(),
            "a second writer of the same resource waits"
        );
        let elsewhere = inventory.write_turn(&other).await; // another resource does not
        let mut fixed = listed[0].observed.clone();
        fixed.policy = ObservedPolicy::ProjectDefault;
        inventory.record(&fixed);
        drop(first);
        let second = waiting.await;
        assert_eq!(
            inventory.latest(&id).unwrap().observed.policy,
            ObservedPolicy::ProjectDefault,
            "the next in turn sees what the first recorded"
        );
        drop(second);
        drop(elsewhere);
        assert!(
            inventory.turns().is_empty(),
            "turns are forgotten when done"
        );
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn a_write_recorded_after_the_list_expired_is_still_the_latest_state() {
        let (emulator, inventory) = setup(Duration::from_secs(3600)).await;
        let listed = inventory.list(&scope(), long_ago()).await.unwrap();
        let mut fixed = listed[0].observed.clone();
        inventory.invalidate(&fixed.id);
        fixed.policy = ObservedPolicy::ProjectDefault;
        inventory.record(&fixed);
        assert_eq!(
            inventory.latest(&fixed.id).unwrap().observed.policy,
            ObservedPolicy::ProjectDefault
        );
        emulator.shutdown().await;
    }

    #[test]
    fn ticks_are_whole_intervals_from_the_epoch() {
        let epoch = Instant::now();
        let ticks = Ticks::new(epoch);
        let s = Duration::from_secs;
        let i = s(30);
        assert_eq!(ticks.last(i, epoch + s(29)), epoch);
        assert_eq!(ticks.last(i, epoch + s(30)), epoch + i);
        assert_eq!(ticks.last(i, epoch + s(61)), epoch + 2 * i);
        assert_eq!(ticks.until_next(i, epoch), i);
        assert_eq!(ticks.until_next(i, epoch + s(61)), s(29));
        assert_eq!(ticks.until_next(i, epoch + s(60)), i);
        // Intervals that are multiples of each other share ticks: 10 min is every 20th
        // tick of 30 s.
        let ten = s(600);
        assert_eq!(
            ticks.last(ten, epoch + s(1250)),
            ticks.last(i, epoch + s(1200))
        );
        assert_eq!(
            ticks.until_next(ten, epoch + s(1190)),
            ticks.until_next(i, epoch + s(1190))
        );
    }

    #[tokio::test]
    async fn stale_lists_are_read_again_but_kept_for_overlap_decisions() {
        let (emulator, inventory) = setup(Duration::ZERO).await;
        inventory.list(&scope(), long_ago()).await.unwrap();
        inventory.list(&scope(), long_ago()).await.unwrap();
        assert_eq!(lists(&emulator), 2);
        assert_eq!(inventory.last_known("acme-prod").len(), 1);
        assert!(inventory.last_known("other").is_empty());
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn a_drift_refresh_plans_on_the_ticks_list_with_the_resource_just_read() {
        let (emulator, inventory) = setup(Duration::ZERO).await;
        let since = long_ago();
        inventory.list(&scope(), since).await.unwrap();
        // Stale for the ttl, still of this tick: no second list within a longer age.
        let id = ResourceId {
            kind: ResourceKind::Service,
            project: "acme-prod".into(),
            location: "us-central1".into(),
            name: "checkout".into(),
        };
        let mut read = inventory.client().get(&id).await.unwrap();
        read.observed.policy = ObservedPolicy::ProjectDefault;
        inventory.observe(&read);
        let listed = inventory
            .list_within(&scope(), since, Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(lists(&emulator), 1, "no re-list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].observed.policy, ObservedPolicy::ProjectDefault);
        // A resource created since the list is added to it.
        let mut created = read.clone();
        created.observed.id.name = "fresh".into();
        inventory.observe(&created);
        let listed = inventory
            .list_within(&scope(), since, Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        assert!(inventory.latest(&created.observed.id).is_some());
        emulator.shutdown().await;
    }

    #[tokio::test]
    async fn a_failed_list_is_not_kept() {
        let (emulator, inventory) = setup(Duration::from_secs(3600)).await;
        emulator
            .set_faults(Faults {
                forbidden: vec!["acme-prod".into()],
                ..Faults::default()
            })
            .unwrap();
        let err = inventory.list(&scope(), long_ago()).await.unwrap_err();
        assert!(err.is_permission_denied(), "{err}");
        emulator.set_faults(Faults::default()).unwrap();
        assert_eq!(inventory.list(&scope(), long_ago()).await.unwrap().len(), 1);
        assert_eq!(lists(&emulator), 2);
        emulator.shutdown().await;
    }
}
