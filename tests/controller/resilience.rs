//! The controller under failure, against a real kube-apiserver (envtest) and the Cloud Run
//! emulator, the operator running as its real binary:
//!
//! - every Cloud Run fault at once over a drifting estate with concurrent user deploys:
//!   100% converged within 3 intervals, nothing but `binaryAuthorization` changed, every
//!   user deploy intact;
//! - SIGKILL in the middle of a pass, then a restart: converges, and no resource already
//!   fixed is written again;
//! - two replicas with leader election: only the leader calls Cloud Run (request log by
//!   replica tag); a SIGKILLed leader is replaced within the lease duration; a leader
//!   partitioned from the API server stops writing before its lease can be taken over;
//! - 500 bindings created at once over overlapping targets: no write cycle (no resource
//!   written more often than its desired policy changed), conflicts reported in status.
//!
//! The CRD corpus, RBAC and the ordinary controller scenarios are the end-to-end suite's
//! (tests/e2e/). Figures go to `target/reliability/*.json`.

use crate::support::envtest;
use crate::support::reliability;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::support::kube::{bindings_json, ready_json};
use crate::support::metrics;
use crate::support::process::Operator;
use crate::support::proxy::{CuttableProxy, LogDir, TagProxy};
use crate::support::wait::eventually;
use cloudrun_emulator::{ChangeSource, Faults};
use reliability::{all_faults, bindings_yaml, calls_by_code, env_usize, estate, Users};
use serde_json::{json, Value};

static CRDS: Once = Once::new();

/// The control plane with the CRD installed, a fresh namespace and a log directory.
async fn setup() -> (&'static envtest::ControlPlane, String, LogDir) {
    let cp = envtest::control_plane().await;
    CRDS.call_once(|| cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds")));
    let ns = cp.fresh_namespace().await;
    let logs = LogDir::new(&ns);
    (cp, ns, logs)
}

fn kubeconfig(cp: &envtest::ControlPlane) -> PathBuf {
    cp.kubeconfig()
        .expect("an envtest control plane (USE_EXISTING_CLUSTER is not supported here)")
        .to_owned()
}

fn lease(cp: &envtest::ControlPlane, ns: &str, name: &str) -> Value {
    let out = cp.kubectl(["get", "lease", name, "-n", ns, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn holder(lease: &Value) -> String {
    lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn timestamp(text: &str) -> jiff::Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a timestamp: {e}"))
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_converges_within_three_intervals_under_every_fault() {
    let (cp, ns, logs) = setup().await;
    let count = env_usize("BINAUTHZ_SOAK_RESOURCES", 200);
    let jitter = env_usize("BINAUTHZ_SOAK_JITTER_MS", 40) as u64;
    let interval_secs = env_usize("BINAUTHZ_SOAK_INTERVAL_SECS", 30) as u64;
    let interval = Duration::from_secs(interval_secs);
    let handle = reliability::faulty_estate(count, 0.1, all_faults(jitter)).await;
    let start = estate(&handle);
    let all: Vec<String> = start.keys().cloned().collect();
    let drifted: Vec<String> = start
        .iter()
        .filter(|(_, h)| !h.complies())
        .map(|(n, _)| n.clone())
        .collect();
    let operator = Operator::spawn(&reliability::operator_config(
        &kubeconfig(cp),
        &ns,
        &handle.url(),
        logs.path(),
    ));
    operator.wait_ready(Duration::from_secs(60)).await;

    let users = Users::new(&handle);
    let created = Instant::now();
    cp.apply(&bindings_yaml(&ns, &format!("{interval_secs}s")));
    // Users deploy while the first passes read and fix.
    users
        .deploy_many(
            &all,
            &drifted,
            (count / 20).max(1),
            Duration::from_millis(20),
            0,
        )
        .await;
    let since = Instant::now();
    eventually(
        "every resource carries the policy",
        3 * interval,
        || async { reliability::drifted(&handle) == 0 },
    )
    .await;
    let converged = since.elapsed();
    let converged_at = created.elapsed();
    // Status agrees: both bindings Ready/Compliant.
    eventually("both bindings Ready", interval, || async {
        let all = bindings_json(cp, &ns);
        all.len() == 2
            && all
                .iter()
                .all(|b| ready_json(b) == ("True".into(), "Compliant".into()))
    })
    .await;

    let verdict = reliability::verify(
        &start,
        &estate(&handle),
        &users,
        &handle.changes(),
        "binauthz-operator/",
    );
    let m = operator.metrics().await;
    let metric = |name: &str, labels: &[(&str, &str)]| metrics::sum(&m, name, labels);
    reliability::write_figures(
        "controller-soak",
        &json!({
            "resources": count,
            "intervalSeconds": interval_secs,
            "latencyJitterMs": jitter,
            "driftedAtStart": verdict.drifted_at_start,
            "userDeploys": verdict.user_deploys,
            "raceDeploys": verdict.race_deploys,
            "convergedSecondsAfterCreate": converged_at.as_secs_f64(),
            "convergedWithinIntervals": converged_at.as_secs_f64() / interval_secs as f64,
            "pollSeconds": converged.as_secs_f64(),
            "operatorChanges": verdict.operator_changes,
            "maxChangesPerResource": verdict.max_changes_per_resource,
            "foreignFieldChanges": verdict.foreign_field_changes.len(),
            "userDeploysLost": verdict.deploys_lost.len(),
            "passes": {
                "completed": metric("binauthz_passes_total", &[("result", "completed")]),
                "failed": metric("binauthz_passes_total", &[("result", "failed")]),
            },
            "retries": metric("binauthz_cloudrun_retries_total", &[]),
            "conflictsResolved": metric("binauthz_cloudrun_conflicts_total", &[]),
            "apiCallsByCode": calls_by_code(&handle),
        }),
    );
    verdict.assert_all();
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_operator_restarts_converges_and_never_rewrites_a_fixed_resource() {
    let (cp, ns, logs) = setup().await;
    // Slow writes (one per 5 s per region after a burst of one) so the kill lands mid-pass.
    let faults = Faults {
        operation_delay_ms: 200,
        ..Faults::default()
    };
    let handle = reliability::faulty_estate(60, 0.5, faults).await;
    let start = estate(&handle);
    let needed = start.values().filter(|h| !h.complies()).count();
    let mut opts = reliability::operator_config(&kubeconfig(cp), &ns, &handle.url(), logs.path());
    opts.args = vec!["--write-rate".into(), "12".into()];
    let mut first = Operator::spawn(&opts);
    first.wait_ready(Duration::from_secs(60)).await;
    cp.apply(&bindings_yaml(&ns, "10m"));

    let operator_changes = |handle: &cloudrun_emulator::EmulatorHandle| {
        handle
            .changes()
            .iter()
            .filter(|c| c.source == ChangeSource::Api)
            .count()
    };
    eventually("the first writes", Duration::from_secs(60), || async {
        operator_changes(&handle) >= 4
    })
    .await;
    first.kill();
    let at_kill = operator_changes(&handle);
    assert!(
        at_kill < needed,
        "the pass finished before the kill ({at_kill} of {needed})"
    );

    opts.identity = "op-a-restarted".into();
    let second = Operator::spawn(&opts);
    let restarted = Instant::now();
    eventually(
        "convergence after the restart",
        Duration::from_secs(180),
        || async { reliability::drifted(&handle) == 0 },
    )
    .await;
    let converged_after_restart = restarted.elapsed();

    // The request log: at most one PATCH per resource, whichever process sent it.
    let mut patches: BTreeMap<String, usize> = BTreeMap::new();
    for request in handle.requests() {
        if request.method.ends_with(".patch") {
            *patches
                .entry(request.resource.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    let rewritten: Vec<_> = patches.iter().filter(|(_, n)| **n > 1).collect();
    let users = Users::new(&handle);
    let verdict = reliability::verify(
        &start,
        &estate(&handle),
        &users,
        &handle.changes(),
        "binauthz-operator/",
    );
    reliability::write_figures(
        "sigkill-restart",
        &json!({
            "needed": needed,
            "changesAtKill": at_kill,
            "changesAfterRestart": operator_changes(&handle) - at_kill,
            "patchRequests": patches.values().sum::<usize>(),
            "resourcesPatchedTwice": rewritten.len(),
            "convergedSecondsAfterRestart": converged_after_restart.as_secs_f64(),
        }),
    );
    assert!(rewritten.is_empty(), "written twice: {rewritten:?}");
    assert_eq!(patches.len(), needed);
    verdict.assert_all();
    drop(second);
}

// ---------------------------------------------------------------------------------------

/// Two replicas, each behind its own tagging proxy (Cloud Run) and cuttable proxy (API
/// server). Lease duration 6 s: renewals every 4 s, the write gate closes 5 s after the
/// last renewal, a standby may take over 6 s after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_hands_over_on_kill_and_fences_a_partitioned_leader() {
    const LEASE: &str = "reliability-leader";
    let lease_duration = Duration::from_secs(6);
    let (cp, ns, logs) = setup().await;
    let handle = reliability::faulty_estate(30, 0.3, Faults::default()).await;
    let start = estate(&handle);
    let names: Vec<String> = start.keys().cloned().collect();
    let users = Users::new(&handle);
    let apiserver: std::net::SocketAddr = cp
        .apiserver_url()
        .and_then(|u| u.strip_prefix("https://"))
        .and_then(|a| a.parse().ok())
        .expect("the API server's address");

    let replica = |id: &str, cloud_run: &TagProxy, kube: &CuttableProxy| {
        let mut opts =
            reliability::operator_config(&kubeconfig(cp), &ns, &cloud_run.url(), logs.path());
        opts.identity = id.into();
        opts.leader_election = Some((LEASE.into(), "6s".into()));
        // Every pass reads Cloud Run afresh (drift is injected between passes).
        opts.args = vec!["--inventory-ttl".into(), "1s".into()];
        opts.kubeconfig = kube.kubeconfig(
            &kubeconfig(cp),
            &logs.path().join(format!("{id}.kubeconfig")),
        );
        Operator::spawn(&opts)
    };
    let tag_a = TagProxy::start(&handle.url(), "replica-a").await;
    let tag_b = TagProxy::start(&handle.url(), "replica-b").await;
    let kube_a = CuttableProxy::start(apiserver).await;
    let kube_b = CuttableProxy::start(apiserver).await;

    // A first, so that it leads; then B stands by.
    let mut a = replica("op-a", &tag_a, &kube_a);
    eventually("op-a holds the lease", Duration::from_secs(60), || async {
        holder(&lease(cp, &ns, LEASE)) == "op-a"
    })
    .await;
    let mut b = replica("op-b", &tag_b, &kube_b);
    b.wait_ready(Duration::from_secs(60)).await;
    cp.apply(&bindings_yaml(&ns, "30s"));
    eventually(
        "A converges the estate",
        Duration::from_secs(60),
        || async { reliability::drifted(&handle) == 0 },
    )
    .await;
    let b_calls_as_standby = handle.counters(Some("replica-b"));
    assert_eq!(
        b_calls_as_standby.writes, 0,
        "the standby wrote to Cloud Run"
    );
    assert_eq!(b_calls_as_standby.reads, 0, "the standby read Cloud Run");
    assert!(handle.counters(Some("replica-a")).writes > 0);

    // 1. SIGKILL the leader: B takes over within the lease duration.
    users.drift(&names[0]).await;
    a.kill();
    let killed = Instant::now();
    // A is dead: the Lease keeps its last renewal until B takes it.
    let a_final = lease(cp, &ns, LEASE);
    assert_eq!(holder(&a_final), "op-a");
    eventually("B takes the lease", Duration::from_secs(30), || async {
        holder(&lease(cp, &ns, LEASE)) == "op-b"
    })
    .await;
    let handover = killed.elapsed();
    let taken = lease(cp, &ns, LEASE);
    let acquired = taken["spec"]["acquireTime"]
        .as_str()
        .or_else(|| taken["spec"]["renewTime"].as_str())
        .map(timestamp)
        .expect("the Lease's acquireTime");
    let a_renewed = timestamp(a_final["spec"]["renewTime"].as_str().unwrap_or_default());
    let expired_after = acquired.duration_since(a_renewed);
    eventually("B fixes the drift", Duration::from_secs(30), || async {
        reliability::drifted(&handle) == 0
    })
    .await;
    assert!(handle.counters(Some("replica-b")).writes > 0);

    // 2. Partition B (now the leader) from the API server in the middle of a pass, with
    //    drift appearing all the time; A (restarted) stands by. A spec change makes B
    //    start a pass; its Cloud Run calls are slowed down a little (300 ms) so the cut
    //    lands while the pass is running.
    let a_again = replica("op-a2", &tag_a, &kube_a);
    a_again.wait_ready(Duration::from_secs(60)).await;
    for name in &names[1..4] {
        users.drift(name).await;
    }
    // Past the inventory window (1 s) of B's takeover passes: the next pass lists.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tag_b
        .delay_ms
        .store(300, std::sync::atomic::Ordering::SeqCst);
    let calls = tag_b.forwarded.load(std::sync::atomic::Ordering::SeqCst);
    cp.apply(&bindings_yaml(&ns, "45s"));
    eventually("B starts a pass", Duration::from_secs(30), || async {
        tag_b.forwarded.load(std::sync::atomic::Ordering::SeqCst) > calls
    })
    .await;
    let writes_before_cut = handle.counters(Some("replica-b")).writes;
    kube_b.cut();
    let cut = Instant::now();
    let mut b_unready = false;
    let mut standby_passes_before = None;
    let mut b_last_renewal = None;
    let mut i = 4;
    while cut.elapsed() < Duration::from_secs(20) {
        users.drift(&names[i % names.len()]).await;
        i += 1;
        if let Some((503, _)) = b.get("/readyz").await {
            b_unready = true;
        }
        let now = lease(cp, &ns, LEASE);
        match holder(&now).as_str() {
            // B cannot renew any more: this is its last renewal.
            "op-b" => b_last_renewal = now["spec"]["renewTime"].as_str().map(timestamp),
            "op-a2" if standby_passes_before.is_none() => {
                standby_passes_before = Some(
                    b.metric("binauthz_passes_total", &[("result", "standby")])
                        .await,
                );
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let fenced = lease(cp, &ns, LEASE);
    assert_eq!(
        holder(&fenced),
        "op-a2",
        "A took over from the partitioned B"
    );
    let b_last_renewal = b_last_renewal.expect("B's renewal seen during the partition");
    let takeover_possible =
        b_last_renewal + jiff::SignedDuration::try_from(lease_duration).unwrap();
    let b_writes_while_cut = handle.counters(Some("replica-b")).writes - writes_before_cut;
    // Healed: B sees the Lease held by A and must stay a standby; drift keeps coming.
    kube_b.heal();
    let healed = Instant::now();
    while healed.elapsed() < Duration::from_secs(10) {
        users.drift(&names[i % names.len()]).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eventually("A fixes what drifted", Duration::from_secs(60), || async {
        reliability::drifted(&handle) == 0
    })
    .await;
    let b_patches: Vec<jiff::Timestamp> = handle
        .requests()
        .iter()
        .filter(|r| r.client == "replica-b" && r.method.ends_with(".patch"))
        .map(|r| timestamp(&r.time))
        .collect();
    let late: Vec<_> = b_patches
        .iter()
        .filter(|t| **t >= takeover_possible)
        .collect();
    let b_standby_passes = b
        .metric("binauthz_passes_total", &[("result", "standby")])
        .await
        - standby_passes_before.unwrap_or(0.0);
    assert_eq!(holder(&lease(cp, &ns, LEASE)), "op-a2");

    reliability::write_figures(
        "leader-election",
        &json!({
            "leaseDurationSeconds": lease_duration.as_secs(),
            "standbyCloudRunCalls": b_calls_as_standby.reads + b_calls_as_standby.writes,
            "handoverSecondsAfterSigkill": handover.as_secs_f64(),
            "takeoverSecondsAfterLastRenewal": expired_after.as_secs_f64(),
            "partitionedLeaderWritesWhileCut": b_writes_while_cut,
            "partitionedLeaderStandbyPassesAfterTakeover": b_standby_passes,
            "partitionSeconds": 20,
            "partitionedLeaderWritesAfterTakeoverPossible": late.len(),
            "partitionedLeaderLastWriteBeforeTakeoverPossibleMs": b_patches
                .iter()
                .max()
                .map(|t| takeover_possible.duration_since(*t).as_millis()),
            "partitionedLeaderTurnedUnready": b_unready,
        }),
    );
    // The standby may take the lease once it expired, and must not wait much longer.
    assert!(
        expired_after >= jiff::SignedDuration::try_from(lease_duration).unwrap(),
        "B took over {expired_after:?} after A's last renewal, before the lease expired"
    );
    assert!(
        handover <= lease_duration + Duration::from_secs(3),
        "B took over {handover:?} after the kill (lease {lease_duration:?})"
    );
    assert!(
        late.is_empty(),
        "the partitioned leader wrote after its lease could be taken: {late:?}"
    );
    assert!(b_unready, "the partitioned leader never reported not-ready");
    assert!(a.pid() == 0 && b.running());
    drop(a_again);
}

// ---------------------------------------------------------------------------------------

/// 500 bindings (`BINAUTHZ_FLOOD_BINDINGS`; 120 in `make test`) applied at once, lowest
/// priorities first, over one project's services,
/// jobs and worker pools: services end under the priority-10 owner's policy, worker pools
/// under the policy 97 equal-priority bindings agree on, jobs frozen (conflicted) once two
/// equal-priority bindings that disagree are both known. No write cycle: no resource is written more often
/// than its desired policy changed as the bindings arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_overlapping_bindings_makes_no_write_cycle() {
    const PROJECT: &str = "gen-project-1";
    let (cp, ns, logs) = setup().await;
    let mut spec = cloudrun_emulator::GenerateSpec::new(100);
    spec.seed = 11;
    spec.drift_ratio = 0.5;
    spec.projects = vec![PROJECT.into()];
    spec.regions = vec!["us-central1".into()];
    let handle = cloudrun_emulator::start(cloudrun_emulator::EmulatorConfig {
        seed: cloudrun_emulator::Seed {
            generate: Some(spec),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let start = estate(&handle);
    let policy = |id: &str| format!("projects/{PROJECT}/platforms/cloudRun/policies/{id}");
    let binding = |name: String, priority: i32, targets: &str, policy: String| {
        format!(
            "---\napiVersion: binauthz.dev/v1alpha1\nkind: BinAuthzBinding\n\
             metadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  project: {PROJECT}\n  locations: [us-central1]\n  targets: {targets}\n  \
             policy: {policy}\n  priority: {priority}\n  interval: 10m\n"
        )
    };
    // 500 in `make soak`; `make test` floods fewer (the cost grows with the square).
    let total = env_usize("BINAUTHZ_FLOOD_BINDINGS", 120).max(101);
    let fillers_count = total - 100;
    let mut yaml = String::new();
    let fillers = [
        "{services: {names: [\"svc-*\"]}}",
        "{services: {labelSelector: {matchLabels: {env: prod}}}}",
        "{services: {names: [\"*\"], exclude: [\"svc-0000?\"]}}",
        "{services: {labelSelector: {matchExpressions: [{key: tier, operator: In, values: [critical, standard]}]}}}",
    ];
    for i in 0..fillers_count {
        let policy = match i % 3 {
            0 => "{useDefault: true}".to_owned(),
            1 => format!("{{name: {}}}", policy("strict")),
            _ => format!("{{name: {}}}", policy("relaxed")),
        };
        yaml.push_str(&binding(
            format!("filler-{i:03}"),
            (i % 10) as i32 - 5,
            fillers[i % fillers.len()],
            policy,
        ));
    }
    for i in 0..97 {
        yaml.push_str(&binding(
            format!("pools-{i:02}"),
            10,
            "{workerPools: {names: [\"*\"]}}",
            format!("{{name: {}}}", policy("strict")),
        ));
    }
    yaml.push_str(&binding(
        "jobs-strict".into(),
        10,
        "{jobs: {names: [\"*\"]}}",
        format!("{{name: {}}}", policy("strict")),
    ));
    yaml.push_str(&binding(
        "jobs-relaxed".into(),
        10,
        "{jobs: {names: [\"*\"]}}",
        format!("{{name: {}}}", policy("relaxed")),
    ));
    yaml.push_str(&binding(
        "services-owner".into(),
        10,
        "{services: {names: [\"*\"]}}",
        "{useDefault: true}".into(),
    ));
    assert_eq!(yaml.matches("kind: BinAuthzBinding").count(), total);

    let bounds = desired_changes(&yaml, &start);
    let mut opts = reliability::operator_config(&kubeconfig(cp), &ns, &handle.url(), logs.path());
    // The write budget is not under test here (one region holds the whole estate).
    opts.args = vec!["--write-rate".into(), "6000".into()];
    let operator = Operator::spawn(&opts);
    operator.wait_ready(Duration::from_secs(60)).await;
    // One `kubectl apply` of every document: created in document order, back to back.
    let applied = Instant::now();
    cp.apply(&yaml);
    let apply_seconds = applied.elapsed().as_secs_f64();

    let want = |name: &str| -> Option<Value> {
        if name.contains("/services/") {
            Some(json!({"useDefault": true}))
        } else if name.contains("/workerPools/") {
            Some(json!({"policy": policy("strict")}))
        } else {
            None // jobs: conflicted once both job bindings are known
        }
    };
    let off_target_list = || {
        estate(&handle)
            .into_iter()
            .filter(|(name, held)| match want(name) {
                Some(ba) => held.binary_authorization != ba,
                // Jobs: as they were, or as `jobs-strict` set them in the moment before
                // `jobs-relaxed` arrived (then the conflict freezes them).
                None => {
                    held.binary_authorization != start[name].binary_authorization
                        && held.binary_authorization != json!({"policy": policy("strict")})
                }
            })
            .map(|(name, held)| format!("{name}: {}", held.binary_authorization))
            .collect::<Vec<_>>()
    };
    let off_target = || off_target_list().len();
    let waiting = Instant::now();
    let mut progress = Vec::new();
    while off_target() > 0 {
        if waiting.elapsed().as_secs() / 15 >= progress.len() as u64 {
            let p = json!({
                "seconds": waiting.elapsed().as_secs(),
                "offTarget": off_target(),
                "operatorChanges": handle.changes().iter().filter(|c| c.source == ChangeSource::Api).count(),
                "patchRequests": handle.requests().iter().filter(|r| r.method.ends_with(".patch")).count(),
                "passes": operator.metric("binauthz_passes_total", &[]).await,
            });
            eprintln!("flood progress: {p}");
            progress.push(p);
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(240),
            "the flood did not converge within 240 s (a pass planned before a higher-priority \
             binding arrived may have written its policy after the owner's; nothing corrects \
             it before the interval): {:#?}\n{progress:#?}",
            off_target_list()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged = waiting.elapsed();
    let since = Instant::now();
    eventually(
        "every binding has a status",
        Duration::from_secs(300),
        || async {
            bindings_json(cp, &ns)
                .iter()
                .filter(|b| b["status"]["observedGeneration"].is_number())
                .count()
                == total
        },
    )
    .await;
    let statuses = since.elapsed();
    let all = bindings_json(cp, &ns);
    let by_name = |n: &str| {
        all.iter()
            .find(|b| b["metadata"]["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let jobs = start.keys().filter(|n| n.contains("/jobs/")).count();
    for name in ["jobs-strict", "jobs-relaxed"] {
        let b = by_name(name);
        assert_eq!(
            ready_json(&b),
            ("False".into(), "Conflict".into()),
            "{name}: {}",
            b["status"]
        );
        assert_eq!(b["status"]["summary"]["conflicted"], json!(jobs), "{name}");
    }
    // An owner whose last write's operation was still running when its pass ended says
    // so (Ready=False) and verifies it 30 s later: wait for that, on a loaded machine.
    for owner in ["services-owner", "pools-00"] {
        eventually(
            &format!("{owner} Ready"),
            Duration::from_secs(90),
            || async {
                let b = bindings_json(cp, &ns)
                    .into_iter()
                    .find(|b| b["metadata"]["name"] == owner)
                    .unwrap_or(Value::Null);
                match ready_json(&b).0.as_str() {
                    "True" => Ok(()),
                    _ => Err(format!("{}", b["status"])),
                }
            },
        )
        .await;
    }
    let superseded: u64 = all
        .iter()
        .filter(|b| {
            b["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("filler-"))
        })
        .map(|b| b["status"]["summary"]["superseded"].as_u64().unwrap_or(0))
        .sum();
    assert!(superseded > 0);

    // Quiet afterwards: another look a few seconds later finds no new write.
    let changes_then = handle.changes().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let changes = handle.changes();
    let mut per_resource: BTreeMap<&str, usize> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.source == ChangeSource::Api) {
        *per_resource.entry(&c.resource).or_default() += 1;
    }
    let twice: Vec<_> = per_resource.iter().filter(|(_, n)| **n > 1).collect();
    // A write cycle: more writes to a resource than times its desired policy changed as
    // the bindings arrived (in the order they were applied).
    let cycles: Vec<_> = per_resource
        .iter()
        .filter(|(r, n)| **n > bounds.get(**r).copied().unwrap_or(0))
        .map(|(r, n)| {
            format!(
                "{r}: {n} writes, {} desired changes",
                bounds.get(*r).copied().unwrap_or(0)
            )
        })
        .collect();
    let job_writes = per_resource.keys().filter(|r| r.contains("/jobs/")).count();
    let needed = start
        .iter()
        .filter(|(n, h)| want(n).is_some_and(|ba| h.binary_authorization != ba))
        .count();
    let mut histogram: BTreeMap<usize, usize> = BTreeMap::new();
    for n in per_resource.values() {
        *histogram.entry(*n).or_default() += 1;
    }
    let m = operator.metrics().await;
    reliability::write_figures(
        "binding-flood",
        &json!({
            "bindings": total,
            "resources": start.len(),
            "applySeconds": apply_seconds,
            "writesNeededForTheFinalState": needed,
            "resourcesWritten": per_resource.len(),
            "operatorChanges": per_resource.values().sum::<usize>(),
            "resourcesByWriteCount": histogram,
            "resourcesWrittenMoreThanOnce": twice.len(),
            "maxDesiredChangesPerResource": bounds.values().max(),
            "writeCycles": cycles.len(),
            "jobWrites": job_writes,
            "conflictedJobs": jobs,
            "convergedSecondsAfterApply": converged.as_secs_f64() + apply_seconds,
            "allStatusesSecondsAfterApply": statuses.as_secs_f64() + converged.as_secs_f64() + apply_seconds,
            "passes": metrics::sum(&m, "binauthz_passes_total", &[]),
            "statusWrites": metrics::sum(&m, "binauthz_status_writes_total", &[]),
            "patchRequests": handle.requests().iter().filter(|r| r.method.ends_with(".patch")).count(),
            "progress": progress,
        }),
    );
    assert!(cycles.is_empty(), "write cycles: {cycles:#?}");
    assert_eq!(changes.len(), changes_then, "writes after convergence");
}

/// For each resource, how many times its desired policy changed as the bindings of `yaml`
/// arrived one by one (in document order), by the operator's own planner.
fn desired_changes(
    yaml: &str,
    start: &BTreeMap<String, reliability::Held>,
) -> BTreeMap<String, usize> {
    use binauthz_operator::api::BinAuthzBinding;
    use binauthz_operator::plan::{self, BindingInput, BindingKey};
    use binauthz_operator::policy::ObservedPolicy;
    use binauthz_operator::resource::{ObservedResource, ResourceId};
    use serde::Deserialize;

    let bindings: Vec<BinAuthzBinding> = serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| BinAuthzBinding::deserialize(doc).expect("a binding"))
        .collect();
    let inputs: Vec<BindingInput<'_>> = bindings
        .iter()
        .map(|b| BindingInput {
            key: BindingKey::new(
                b.metadata.namespace.clone().unwrap_or_default(),
                b.metadata.name.clone().unwrap_or_default(),
            ),
            spec: &b.spec,
            permission: plan::Permission::Open,
        })
        .collect();
    // Observed with no policy: every owned, unconflicted resource shows its desired write.
    let observed: Vec<ObservedResource> = start
        .iter()
        .map(|(name, held)| {
            let parts: Vec<&str> = name.split('/').collect();
            let kind = match parts[4] {
                "services" => binauthz_operator::resource::ResourceKind::Service,
                "jobs" => binauthz_operator::resource::ResourceKind::Job,
                _ => binauthz_operator::resource::ResourceKind::WorkerPool,
            };
            ObservedResource {
                id: ResourceId {
                    kind,
                    project: parts[1].into(),
                    location: parts[3].into(),
                    name: parts[5].into(),
                },
                labels: serde_json::from_value::<std::collections::BTreeMap<String, String>>(
                    held.labels.clone(),
                )
                .unwrap_or_default()
                .into(),
                deleted: false,
                policy: ObservedPolicy::None,
                breakglass: None,
                deploy_blocked: None,
                last_change: None,
                running: Default::default(),
            }
        })
        .collect();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut changes: BTreeMap<String, usize> = BTreeMap::new();
    for k in 1..=inputs.len() {
        let planned = plan::plan(&inputs[..k], observed.iter()).expect("a plan");
        for write in planned.writes() {
            let desired = write.remediation.desired.to_string();
            let name = write.resource.id.resource_name();
            if last.get(&name) != Some(&desired) {
                *changes.entry(name.clone()).or_default() += 1;
                last.insert(name, desired);
            }
        }
    }
    changes
}
