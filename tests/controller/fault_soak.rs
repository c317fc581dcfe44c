//! Fault soak: a generated estate with 10% drift, every Cloud Run fault at once, and
//! simulated users deploying (new image, Binary Authorization cleared) while the operator
//! fixes. Passes are `check --fix` runs of the binary (one run = one pass).
//!
//! Proven after at most 3 passes: every resource carries the policy; the emulator's audit
//! shows the operator changed nothing but `binaryAuthorization`; every user deploy kept
//! its image, template and labels; no resource was written more often than it needed
//! fixing. `BINAUTHZ_SOAK_RESOURCES` sets the estate size (200 in `make test`, 1,000 in
//! `make soak`); figures go to `target/reliability/check-fix-soak.json`.

use crate::support::reliability;

use std::process::Stdio;
use std::time::{Duration, Instant};

use cloudrun_emulator::EmulatorHandle;
use reliability::{all_faults, bindings_yaml, calls_by_code, env_usize, estate, Users};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_binauthz-operator");

/// One `check --fix -o json` run against the emulator: exit code and report.
async fn check_fix(handle: &EmulatorHandle, bindings: &std::path::Path) -> (i32, Value) {
    let child = tokio::process::Command::new(BIN)
        .args(["check", "--fix", "-o", "json", "-f"])
        .arg(bindings)
        .args(["--cloud-run-endpoint", &handle.url()])
        .env_remove("CLOUD_RUN_EMULATOR_HOST")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let out = tokio::time::timeout(Duration::from_secs(600), child.wait_with_output())
        .await
        .expect("a check pass hung")
        .expect("the check ran");
    let code = out.status.code().unwrap_or(-1);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON report ({e}); exit {code}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

fn counts(report: &Value) -> Value {
    let changes = report["changes"].as_array().cloned().unwrap_or_default();
    let of = |result: &str| changes.iter().filter(|c| c["result"] == result).count();
    json!({
        "applied": of("Applied"),
        "alreadySatisfied": of("AlreadySatisfied"),
        "pending": of("Pending"),
        "failed": of("Failed"),
        "gone": of("Gone"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fix_converges_under_every_fault_with_concurrent_user_deploys() {
    let count = env_usize("BINAUTHZ_SOAK_RESOURCES", 200);
    let jitter = env_usize("BINAUTHZ_SOAK_JITTER_MS", 40) as u64;
    let handle = reliability::faulty_estate(count, 0.1, all_faults(jitter)).await;
    let dir = tempfile::tempdir().unwrap();
    let bindings = dir.path().join("bindings.yaml");
    std::fs::write(&bindings, bindings_yaml("platform", "10m")).unwrap();

    let start = estate(&handle);
    assert_eq!(start.len(), count);
    let all: Vec<String> = start.keys().cloned().collect();
    let drifted: Vec<String> = start
        .iter()
        .filter(|(_, h)| !h.complies())
        .map(|(n, _)| n.clone())
        .collect();
    let users = Users::new(&handle);
    let deploys = (count / 20).max(1);

    let started = Instant::now();
    let mut passes = Vec::new();
    let mut converged_after = None;
    for pass in 1..=3 {
        let t = Instant::now();
        // Users deploy while the first pass reads and fixes.
        let (code, report) = if pass == 1 {
            let (result, ()) = tokio::join!(
                check_fix(&handle, &bindings),
                users.deploy_many(&all, &drifted, deploys, Duration::from_millis(20), 0)
            );
            result
        } else {
            check_fix(&handle, &bindings).await
        };
        let left = reliability::drifted(&handle);
        passes.push(json!({
            "pass": pass,
            "seconds": t.elapsed().as_secs_f64(),
            "exitCode": code,
            "changes": counts(&report),
            "driftedAfter": left,
        }));
        if left == 0 && converged_after.is_none() {
            converged_after = Some(pass);
        }
        if left != 0 {
            converged_after = None;
        }
    }

    let end = estate(&handle);
    let verdict = reliability::verify(
        &start,
        &end,
        &users,
        &handle.changes(),
        "binauthz-operator/",
    );
    let codes = calls_by_code(&handle);
    reliability::write_figures(
        "check-fix-soak",
        &json!({
            "resources": count,
            "driftedAtStart": verdict.drifted_at_start,
            "userDeploys": verdict.user_deploys,
            "raceDeploys": verdict.race_deploys,
            "latencyJitterMs": jitter,
            "passes": passes,
            "convergedAfterPass": converged_after,
            "operatorChanges": verdict.operator_changes,
            "maxChangesPerResource": verdict.max_changes_per_resource,
            "foreignFieldChanges": verdict.foreign_field_changes.len(),
            "userDeploysLost": verdict.deploys_lost.len(),
            "apiCallsByCode": codes,
            "seconds": started.elapsed().as_secs_f64(),
        }),
    );
    verdict.assert_all();
    assert!(converged_after.is_some_and(|p| p <= 3));
    // The faults did happen. A short run (make test: ~160 calls) is only sure to see some
    // of them (a 1% reset rate leaves a 20% chance of none); the soak sees every kind.
    let seen = |code: u16| codes.get(&code).copied().unwrap_or(0);
    assert!(
        seen(503) + seen(429) + seen(0) > 0,
        "no fault was injected: {codes:?}"
    );
    if count >= 1000 {
        for code in [503, 429, 409, 0] {
            assert!(seen(code) > 0, "no {code} answers were injected: {codes:?}");
        }
    }
}

/// The checks above can fail: an "operator" that writes a job back from a stale read
/// (reverting a user's deploy) is caught by the same verification.
#[tokio::test]
async fn the_verification_catches_a_lost_deploy() {
    let handle = reliability::faulty_estate(40, 0.2, cloudrun_emulator::Faults::default()).await;
    let start = estate(&handle);
    let victim = start
        .keys()
        .find(|name| name.contains("/jobs/"))
        .expect("a job")
        .clone();
    let http = reqwest::Client::new();
    let url = format!("{}/v2/{victim}", handle.url());
    let mut stale = crate::support::emulator::get_resource(&handle.url(), &victim).await;
    let users = Users::new(&handle);
    users.deploy(&victim, 1).await;
    // A rogue writer with the operator's tag writes the job back as it was before the
    // deploy (without the etag that would have stopped it).
    stale.as_object_mut().unwrap().remove("etag");
    stale["binaryAuthorization"] = json!({"useDefault": true});
    let answer = http
        .patch(&url)
        .header("user-agent", "binauthz-operator/rogue")
        .bearer_auth("t")
        .json(&stale)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    let verdict = reliability::verify(
        &start,
        &estate(&handle),
        &users,
        &handle.changes(),
        "binauthz-operator/",
    );
    assert_eq!(verdict.foreign_field_changes.len(), 1, "{verdict:#?}");
    assert_eq!(
        verdict.deploys_lost.len(),
        2,
        "template and image: {verdict:#?}"
    );
    assert!(verdict.drifted_at_end > 0);
}
