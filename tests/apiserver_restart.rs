//! The kube-apiserver restarted under a running operator (its own control plane: this
//! binary kills and restarts the API server, keeping etcd and its data).
//!
//! Proven: the operator never exits, `/healthz` answers 200 throughout, `/readyz` reports
//! not-ready while the API server is away and ready again after; its watches resume (a
//! spec change made after the restart is reconciled and its status written); Cloud Run is
//! never written twice for one needed change.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is how a test reports failure"
)]

#[path = "support/mod.rs"]
mod support;

use support::process::Operator;
use support::proxy::LogDir;
use support::wait::eventually;
use support::{envtest, reliability};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloudrun_emulator::Faults;
use reliability::{bindings_yaml, estate, Users};
use serde_json::{json, Value};

/// The running kube-apiserver's pid and command line (from the envtest directory).
fn apiserver_process(dir: &Path) -> (u32, Vec<String>) {
    let pid: u32 = std::fs::read_to_string(dir.join("kube-apiserver.pid"))
        .expect("the kube-apiserver pid file")
        .trim()
        .parse()
        .expect("a pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("its command line");
    let argv = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (pid, argv)
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Starts the API server again with the same flags, in its own session as envtest.sh
/// starts it (not our child: the envtest watchdog stops it through the pid file when this
/// test binary exits). Returns its pid.
fn restart_apiserver(dir: &Path, argv: &[String]) -> u32 {
    let pid_file = dir.join("kube-apiserver.pid");
    let _ = std::fs::remove_file(&pid_file);
    let status = Command::new("setsid")
        .arg("--fork")
        .arg("bash")
        .arg("-c")
        .arg(r#"pid_file="$1"; log="$2"; shift 2; echo $$ >"$pid_file"; exec "$@" >>"$log" 2>&1 </dev/null"#)
        .arg("restart-apiserver")
        .arg(&pid_file)
        .arg(dir.join("kube-apiserver.log"))
        .args(argv)
        .stdin(Stdio::null())
        .status()
        .expect("setsid runs");
    assert!(status.success(), "setsid failed: {status}");
    let started = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no pid file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_rides_out_an_apiserver_restart() {
    let cp = envtest::control_plane().await;
    cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    let dir = cp.dir().expect("an envtest control plane").to_owned();
    let ns = cp.fresh_namespace().await;
    let logs = LogDir::new(&ns);
    let handle = reliability::faulty_estate(30, 0.3, Faults::default()).await;
    let start = estate(&handle);
    let names: Vec<String> = start.keys().cloned().collect();
    let users = Users::new(&handle);

    let mut opts = reliability::operator_config(
        cp.kubeconfig().expect("a kubeconfig"),
        &ns,
        &handle.url(),
        logs.path(),
    );
    opts.args = vec!["--inventory-ttl".into(), "1s".into()];
    let mut operator = Operator::spawn(&opts);
    operator.wait_ready(Duration::from_secs(60)).await;
    cp.apply(&bindings_yaml(&ns, "30s"));
    eventually("converged", Duration::from_secs(60), || async {
        reliability::drifted(&handle) == 0
    })
    .await;

    // Down: SIGKILL the API server (etcd and its data stay).
    let (pid, argv) = apiserver_process(&dir);
    kill(pid, "-KILL");
    let down = Instant::now();
    while alive(pid) {
        assert!(
            down.elapsed() < Duration::from_secs(10),
            "kube-apiserver survived SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    users.drift(&names[0]).await;
    let mut healthz_failures = Vec::new();
    let mut not_ready_after = None;
    while down.elapsed() < Duration::from_secs(15) {
        match operator.get("/healthz").await {
            Some((200, _)) => {}
            other => healthz_failures.push(format!("{:?}: {other:?}", down.elapsed())),
        }
        if not_ready_after.is_none() {
            if let Some((503, body)) = operator.get("/readyz").await {
                not_ready_after = Some((down.elapsed(), body));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        operator.running(),
        "the operator exited while the API server was down"
    );

    // Up again, same flags, same port.
    let restarted_after = down.elapsed();
    let new_pid = restart_apiserver(&dir, &argv);
    let since = Instant::now();
    eventually(
        "kube-apiserver ready again",
        Duration::from_secs(90),
        || async { cp.kubectl(["get", "--raw", "/readyz"]).status.success() },
    )
    .await;
    let up = since.elapsed();
    let since = Instant::now();
    eventually(
        "the operator ready again",
        Duration::from_secs(90),
        || async { matches!(operator.get("/readyz").await, Some((200, _))) },
    )
    .await;
    let ready_again = since.elapsed();

    // The watch resumed: a spec change made now is reconciled, and its status written.
    users.drift(&names[1]).await;
    cp.apply(&bindings_yaml(&ns, "45s"));
    let since = Instant::now();
    eventually(
        "the spec change is reconciled",
        Duration::from_secs(90),
        || async {
            let text = cp.kubectl_ok(["get", "binauthzbindings", "-n", &ns, "-o", "json"]);
            let list: Value = serde_json::from_str(&text).unwrap();
            list["items"].as_array().is_some_and(|items| {
                items.len() == 2
                    && items
                        .iter()
                        .all(|b| b["status"]["observedGeneration"] == json!(2))
            }) && reliability::drifted(&handle) == 0
        },
    )
    .await;
    let reconciled = since.elapsed();
    assert!(operator.running(), "the operator exited after the restart");

    let verdict = reliability::verify(
        &start,
        &estate(&handle),
        &users,
        &handle.changes(),
        "binauthz-operator/",
    );
    let watch_errors = operator
        .logs()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .count();
    reliability::write_figures(
        "apiserver-restart",
        &json!({
            "apiserverDownSeconds": restarted_after.as_secs_f64() + up.as_secs_f64(),
            "healthzFailuresWhileDown": healthz_failures.len(),
            "notReadyAfterSeconds": not_ready_after.as_ref().map(|(t, _)| t.as_secs_f64()),
            "notReadyReason": not_ready_after.as_ref().map(|(_, b)| b.trim().to_owned()),
            "apiserverReadySecondsAfterRestart": up.as_secs_f64(),
            "operatorReadySecondsAfterApiserver": ready_again.as_secs_f64(),
            "specChangeReconciledSeconds": reconciled.as_secs_f64(),
            "operatorChanges": verdict.operator_changes,
            "maxChangesPerResource": verdict.max_changes_per_resource,
            "errorLogLines": watch_errors,
        }),
    );
    assert!(
        healthz_failures.is_empty(),
        "/healthz failed: {healthz_failures:?}"
    );
    assert!(
        not_ready_after.is_some(),
        "/readyz never reported not-ready while the API server was down"
    );
    verdict.assert_all();
    operator.terminate();
    let _ = new_pid;
}
