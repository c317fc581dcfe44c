//! Active-active shards (`--shards`) on a real kube-apiserver: three replicas, six shards,
//! twelve projects behind per-replica tagging proxies, so that the emulator's change log
//! (its audit log) says which replica wrote what.
//!
//! - the replicas share the shards evenly and every binding converges, each project
//!   written only by its shard's holder, each replica exporting only its bindings;
//! - killing a replica (SIGKILL, repeated in `make soak`) moves its shards within the
//!   lease duration, nothing is left drifted, and no resource is written by two replicas
//!   while the shards stand still;
//! - a replica cut off from the API server stops writing before its shards can be taken.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use binauthz_operator::controller::shards::shard_of;
use cloudrun_emulator::{ChangeSource, EmulatorConfig, EmulatorHandle, GenerateSpec, Seed};
use serde_json::{json, Value};

use crate::support::envtest::{self, ControlPlane};
use crate::support::kube::{bindings_json, ready_json};
use crate::support::process::{Operator, OperatorConfig};
use crate::support::proxy::{CuttableProxy, LogDir, TagProxy};
use crate::support::reliability::{self, env_usize, Users};
use crate::support::wait::eventually;

const LEASE: &str = "sharded";
const SHARDS: u16 = 6;
const LEASE_SECS: u64 = 6;
const REGIONS: [&str; 2] = ["us-central1", "europe-west1"];

static CRDS: Once = Once::new();

fn projects() -> Vec<String> {
    (0..12).map(|i| format!("shard-project-{i}")).collect()
}

fn project_of(resource: &str) -> &str {
    resource.split('/').nth(1).unwrap_or_default()
}

/// Shard number → holder identity, for the shard Leases renewed in time.
fn holders(cp: &ControlPlane, ns: &str) -> BTreeMap<usize, String> {
    let out = cp.kubectl(["get", "leases", "-n", ns, "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let now = jiff::Timestamp::now();
    let mut held = BTreeMap::new();
    for lease in list["items"].as_array().into_iter().flatten() {
        let name = lease["metadata"]["name"].as_str().unwrap_or_default();
        let Some(shard) = name
            .strip_prefix(&format!("{LEASE}-shard-"))
            .and_then(|s| s.parse::<usize>().ok())
        else {
            continue;
        };
        let spec = &lease["spec"];
        let holder = spec["holderIdentity"].as_str().unwrap_or_default();
        let renewed: Option<jiff::Timestamp> =
            spec["renewTime"].as_str().and_then(|t| t.parse().ok());
        let live = renewed.is_some_and(|t| {
            now.duration_since(t) < jiff::SignedDuration::from_secs(LEASE_SECS as i64)
        });
        if !holder.is_empty() && live {
            held.insert(shard, holder.to_owned());
        }
    }
    held
}

/// Each holder's number of shards.
fn counts(held: &BTreeMap<usize, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for who in held.values() {
        *counts.entry(who.clone()).or_insert(0) += 1;
    }
    counts
}

fn renew_time(cp: &ControlPlane, ns: &str, shard: usize) -> Option<(String, jiff::Timestamp)> {
    let out = cp.kubectl([
        "get",
        "lease",
        &format!("{LEASE}-shard-{shard}"),
        "-n",
        ns,
        "-o",
        "json",
    ]);
    let lease: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        lease["spec"]["holderIdentity"].as_str()?.to_owned(),
        lease["spec"]["renewTime"].as_str()?.parse().ok()?,
    ))
}

fn bindings_yaml(ns: &str, slower: &[String]) -> String {
    projects()
        .iter()
        .enumerate()
        .map(|(i, project)| {
            let interval = if slower.contains(project) { "45s" } else { "30s" };
            format!(
                "---\napiVersion: binauthz.dev/v1alpha1\nkind: BinAuthzBinding\n\
                 metadata: {{name: project-{i}, namespace: {ns}}}\n\
                 spec:\n  project: {project}\n  locations: [{}]\n  \
                 targets:\n    services: {{names: [\"*\"]}}\n    jobs: {{names: [\"*\"]}}\n    workerPools: {{names: [\"*\"]}}\n  \
                 policy: {{useDefault: true}}\n  interval: {interval}\n",
                REGIONS.join(", ")
            )
        })
        .collect()
}

async fn estate(count: usize) -> EmulatorHandle {
    let mut spec = GenerateSpec::new(count);
    spec.seed = 11;
    spec.drift_ratio = 0.3;
    spec.projects = projects();
    spec.regions = REGIONS.iter().map(|r| r.to_string()).collect();
    cloudrun_emulator::start(EmulatorConfig {
        seed: Seed {
            generate: Some(spec),
            ..Seed::default()
        },
        request_log_limit: 1_000_000,
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts")
}

/// The replicas' writes after change `since`, as `project → {replica tag}`.
fn writers(handle: &EmulatorHandle, since: u64) -> BTreeMap<String, BTreeSet<String>> {
    let mut by = BTreeMap::<String, BTreeSet<String>>::new();
    for change in handle.changes() {
        if change.seq > since && change.source == ChangeSource::Api {
            by.entry(project_of(&change.resource).to_owned())
                .or_default()
                .insert(change.client.clone());
        }
    }
    by
}

fn last_change(handle: &EmulatorHandle) -> u64 {
    handle.changes().last().map_or(0, |c| c.seq)
}

/// Every project written since `since` was written by one replica only: the one holding
/// its shard in `held`.
fn assert_single_writers(
    handle: &EmulatorHandle,
    since: u64,
    held: &BTreeMap<usize, String>,
    phase: &str,
) -> usize {
    let by = writers(handle, since);
    assert!(!by.is_empty(), "{phase}: no write at all");
    for (project, tags) in &by {
        let holder = held
            .get(&shard_of(project, SHARDS))
            .map(|h| format!("replica-{h}"));
        assert_eq!(
            tags.iter().cloned().collect::<Vec<_>>(),
            holder.into_iter().collect::<Vec<_>>(),
            "{phase}: {project} (shard {}) written by {tags:?}; holders {held:?}",
            shard_of(project, SHARDS)
        );
    }
    by.len()
}

fn all_ready(cp: &ControlPlane, ns: &str) -> bool {
    let all = bindings_json(cp, ns);
    all.len() == projects().len() && all.iter().all(|b| ready_json(b).0 == "True")
}

struct Replica {
    operator: Operator,
    /// The replica reaches Cloud Run through it (it can slow its calls down).
    cloud_run: TagProxy,
    kube: CuttableProxy,
}

struct Fleet<'a> {
    cp: &'a ControlPlane,
    ns: String,
    logs: LogDir,
    cloud_run: String,
    apiserver: std::net::SocketAddr,
}

impl Fleet<'_> {
    async fn replica(&self, id: &str) -> Replica {
        let cloud_run = TagProxy::start(&self.cloud_run, &format!("replica-{id}")).await;
        let kube = CuttableProxy::start(self.apiserver).await;
        let kubeconfig = kubeconfig(self.cp);
        let config = OperatorConfig::new(
            &kube.kubeconfig(
                &kubeconfig,
                &self.logs.path().join(format!("{id}.kubeconfig")),
            ),
            &cloud_run.url(),
        )
        .namespace(&self.ns)
        .identity(id)
        .log_dir(self.logs.path())
        .leader_election(LEASE, &format!("{LEASE_SECS}s"))
        // Every pass reads Cloud Run afresh (drift is injected between passes).
        .args(["--shards", &SHARDS.to_string(), "--inventory-ttl", "1s"]);
        Replica {
            operator: Operator::spawn(&config),
            cloud_run,
            kube,
        }
    }
}

fn kubeconfig(cp: &ControlPlane) -> PathBuf {
    cp.kubeconfig()
        .expect("an envtest control plane (USE_EXISTING_CLUSTER is not supported here)")
        .to_owned()
}

async fn balanced(cp: &ControlPlane, ns: &str, live: &[&str]) {
    let share = usize::from(SHARDS) / live.len();
    eventually(
        &format!("{live:?} hold {share} shards each"),
        Duration::from_secs(90),
        || async {
            let held = holders(cp, ns);
            let c = counts(&held);
            held.len() == usize::from(SHARDS) && live.iter().all(|id| c.get(*id) == Some(&share))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_spread_move_on_kill_and_fence_a_partitioned_replica() {
    let cp = envtest::control_plane().await;
    CRDS.call_once(|| cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds")));
    let ns = cp.fresh_namespace().await;
    let logs = LogDir::new(&ns);
    let kills = env_usize("BINAUTHZ_SHARD_KILLS", 1);
    let handle = estate(env_usize("BINAUTHZ_SHARD_RESOURCES", 240)).await;
    let names: Vec<String> = reliability::estate(&handle).keys().cloned().collect();
    let users = Users::new(&handle);
    let fleet = Fleet {
        cp,
        ns: ns.clone(),
        logs,
        cloud_run: handle.url(),
        apiserver: cp
            .apiserver_url()
            .and_then(|u| u.strip_prefix("https://"))
            .and_then(|a| a.parse().ok())
            .expect("the API server's address"),
    };
    let mut replicas: BTreeMap<String, Replica> = BTreeMap::new();
    for id in ["op-a", "op-b", "op-c"] {
        let r = fleet.replica(id).await;
        r.operator.wait_ready(Duration::from_secs(60)).await;
        replicas.insert(id.to_owned(), r);
    }
    // 1. Balanced before any binding exists, so that every write below is made while
    //    the shards stand still.
    balanced(cp, &ns, &["op-a", "op-b", "op-c"]).await;
    let held = holders(cp, &ns);
    let since = last_change(&handle);
    let applied = Instant::now();
    cp.apply(&bindings_yaml(&ns, &[]));
    eventually(
        "every binding Ready, nothing drifted",
        Duration::from_secs(120),
        || async { reliability::drifted(&handle) == 0 && all_ready(cp, &ns) },
    )
    .await;
    let converged = applied.elapsed();
    assert_eq!(holders(cp, &ns), held, "no shard moved meanwhile");
    let projects_written = assert_single_writers(&handle, since, &held, "first convergence");
    // Each replica exports the bindings of its own shards only (the dashboards sum them).
    for (id, r) in &replicas {
        let metrics = r.operator.metrics().await;
        for (i, project) in projects().iter().enumerate() {
            let mine = held.get(&shard_of(project, SHARDS)) == Some(id);
            let series = format!("binauthz_binding_ready{{binding=\"{ns}/project-{i}\"}}");
            assert_eq!(
                metrics.contains(&series),
                mine,
                "{id} exports {series}: {mine} expected"
            );
        }
    }

    // 2. Kill a replica (more rounds in `make soak`): its shards move, its drift is fixed.
    let mut moves = Vec::new();
    for round in 0..kills {
        let ids: Vec<String> = replicas.keys().cloned().collect();
        let victim = ids[round % ids.len()].clone();
        let before = holders(cp, &ns);
        let lost: Vec<usize> = before
            .iter()
            .filter(|(_, h)| **h == victim)
            .map(|(s, _)| *s)
            .collect();
        assert!(!lost.is_empty(), "{victim} holds shards: {before:?}");
        // Drift in every project, the victim's among them.
        for project in projects() {
            if let Some(name) = names.iter().find(|n| project_of(n) == project) {
                users.drift(name).await;
            }
        }
        let mut dead = replicas.remove(&victim).expect("the victim");
        dead.operator.kill();
        let killed = Instant::now();
        // Its Leases keep their last renewal until taken over.
        let last_renewals: Vec<jiff::Timestamp> = lost
            .iter()
            .filter_map(|s| renew_time(cp, &ns, *s).map(|(_, t)| t))
            .collect();
        let survivors: Vec<String> = replicas.keys().cloned().collect();
        eventually(
            &format!("{victim}'s shards {lost:?} taken over"),
            Duration::from_secs(60),
            || async {
                let now = holders(cp, &ns);
                lost.iter()
                    .all(|s| now.get(s).is_some_and(|h| survivors.contains(h)))
            },
        )
        .await;
        let moved = killed.elapsed();
        // From the victim's last renewal of each shard to its new holder's acquisition.
        let after_renewal: Vec<f64> = lost
            .iter()
            .zip(&last_renewals)
            .filter_map(|(s, renewed)| {
                let out = cp.kubectl([
                    "get",
                    "lease",
                    &format!("{LEASE}-shard-{s}"),
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.spec.acquireTime}",
                ]);
                let acquired: jiff::Timestamp =
                    String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
                Some(acquired.duration_since(*renewed).as_secs_f64())
            })
            .collect();
        let refs: Vec<&str> = survivors.iter().map(String::as_str).collect();
        balanced(cp, &ns, &refs).await;
        eventually(
            "the survivors fix every drift and every binding is Ready",
            Duration::from_secs(120),
            || async { reliability::drifted(&handle) == 0 && all_ready(cp, &ns) },
        )
        .await;
        // While the shards stand still, each project has one writer: its holder.
        let held = holders(cp, &ns);
        let since = last_change(&handle);
        for project in projects() {
            if let Some(name) = names.iter().rev().find(|n| project_of(n) == project) {
                users.drift(name).await;
            }
        }
        eventually("the new drift fixed", Duration::from_secs(60), || async {
            reliability::drifted(&handle) == 0
        })
        .await;
        assert_eq!(holders(cp, &ns), held, "no shard moved meanwhile");
        assert_single_writers(&handle, since, &held, &format!("after killing {victim}"));
        moves.push(json!({
            "victim": victim,
            "shards": lost,
            "takenOverSecondsAfterKill": moved.as_secs_f64(),
            "takenOverSecondsAfterLastRenewal": after_renewal,
        }));
        // A replacement joins (a new pod name, as a Deployment would give it).
        let fresh = format!("{victim}-{round}");
        let r = fleet.replica(&fresh).await;
        r.operator.wait_ready(Duration::from_secs(60)).await;
        replicas.insert(fresh, r);
        let ids: Vec<String> = replicas.keys().cloned().collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        balanced(cp, &ns, &refs).await;
    }

    // 3. Cut one replica off from the API server in the middle of a pass that has drift
    //    to fix in its projects (its Cloud Run calls slowed down to 1 s, so that the pass
    //    outlives the cut), while drift keeps coming: it stops writing before its shards
    //    can be taken, and they are.
    let before = holders(cp, &ns);
    let cut_id = replicas.keys().last().cloned().expect("a replica");
    let cut_shards: Vec<usize> = before
        .iter()
        .filter(|(_, h)| **h == cut_id)
        .map(|(s, _)| *s)
        .collect();
    let cut_projects: Vec<String> = projects()
        .into_iter()
        .filter(|p| cut_shards.contains(&shard_of(p, SHARDS)))
        .collect();
    assert!(
        !cut_projects.is_empty(),
        "{cut_id} holds a project: {before:?}"
    );
    let drifting: Vec<&String> = names
        .iter()
        .filter(|n| cut_projects.iter().any(|p| p == project_of(n)))
        .collect();
    for name in drifting.iter().step_by(3) {
        users.drift(name).await;
    }
    let cut = &replicas[&cut_id];
    let tag = format!("replica-{cut_id}");
    cut.cloud_run
        .delay_ms
        .store(1000, std::sync::atomic::Ordering::SeqCst);
    let calls = cut
        .cloud_run
        .forwarded
        .load(std::sync::atomic::Ordering::SeqCst);
    // A spec change of its bindings starts their passes.
    cp.apply(&bindings_yaml(&ns, &cut_projects));
    eventually(
        &format!("{cut_id} starts a pass"),
        Duration::from_secs(30),
        || async {
            cut.cloud_run
                .forwarded
                .load(std::sync::atomic::Ordering::SeqCst)
                > calls
        },
    )
    .await;
    cut.kube.cut();
    let cut_at = Instant::now();
    let mut last_renewal: BTreeMap<usize, jiff::Timestamp> = BTreeMap::new();
    let mut i = 0;
    while cut_at.elapsed() < Duration::from_secs(4 * LEASE_SECS) {
        users.drift(drifting[i % drifting.len()]).await;
        i += 1;
        for shard in &cut_shards {
            if let Some((who, renewed)) = renew_time(cp, &ns, *shard) {
                if who == cut_id {
                    last_renewal.insert(*shard, renewed);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let calls_while_cut = cut
        .cloud_run
        .forwarded
        .load(std::sync::atomic::Ordering::SeqCst)
        - calls;
    let taken = holders(cp, &ns);
    for shard in &cut_shards {
        assert!(
            taken.get(shard).is_some_and(|h| *h != cut_id),
            "shard {shard} taken from the cut-off {cut_id}: {taken:?}"
        );
    }
    let lease = jiff::SignedDuration::from_secs(LEASE_SECS as i64);
    let mut late = Vec::new();
    let mut last_write_before_takeover_ms = Vec::new();
    for request in handle.requests() {
        if request.client != tag || !request.method.ends_with(".patch") {
            continue;
        }
        let Some(resource) = request.resource.as_deref() else {
            continue;
        };
        let shard = shard_of(project_of(resource), SHARDS);
        let (Some(renewed), Ok(at)) = (
            last_renewal.get(&shard),
            request.time.parse::<jiff::Timestamp>(),
        ) else {
            continue;
        };
        let takeover_possible = *renewed + lease;
        if at >= takeover_possible {
            late.push(format!("{resource} at {at}"));
        } else if at >= *renewed {
            last_write_before_takeover_ms
                .push(takeover_possible.duration_since(at).as_millis() as i64);
        }
    }
    assert!(
        late.is_empty(),
        "{cut_id} wrote after its shards could be taken: {late:?}"
    );
    cut.cloud_run
        .delay_ms
        .store(0, std::sync::atomic::Ordering::SeqCst);
    cut.kube.heal();
    let ids: Vec<String> = replicas.keys().cloned().collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    balanced(cp, &ns, &refs).await;
    eventually(
        "healed: everything fixed, every binding Ready",
        Duration::from_secs(120),
        || async { reliability::drifted(&handle) == 0 && all_ready(cp, &ns) },
    )
    .await;

    reliability::write_figures(
        "shards",
        &json!({
            "replicas": 3,
            "shards": SHARDS,
            "projects": projects().len(),
            "resources": names.len(),
            "leaseDurationSeconds": LEASE_SECS,
            "convergedSecondsAfterApply": converged.as_secs_f64(),
            "projectsWrittenAtFirstConvergence": projects_written,
            "kills": moves,
            "partitionedShards": cut_shards,
            "partitionedCloudRunCalls": calls_while_cut,
            "partitionedWritesBeforeTakeoverPossible": last_write_before_takeover_ms.len(),
            "partitionedWritesAfterTakeoverPossible": late.len(),
            "partitionedLastWritesBeforeTakeoverPossibleMs": last_write_before_takeover_ms,
        }),
    );
}
