//! The controller's start-up checks against a real kube-apiserver: a control plane of this
//! test's own, without the BinAuthzBinding CRD, as a fresh cluster starts.

use crate::support::envtest;
use crate::support::net::free_port;
use crate::support::process;
use crate::support::repo;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::process::{Emulator, Operator, OperatorConfig};

const CRD: &str = "binauthzbindings.binauthz.dev";

/// Runs `binauthz-operator controller` against `kubeconfig` until it exits (at most 60 s);
/// returns its exit code and everything it printed.
fn controller_until_exit(kubeconfig: &std::path::Path) -> (Option<i32>, String, String) {
    let mut child = Command::new(process::BINARY)
        .arg("controller")
        .arg(format!("--metrics-addr={}", free_port()))
        // Never reached: the cluster check comes first, and this keeps credentials out of it.
        .arg("--cloud-run-endpoint=http://127.0.0.1:9")
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env_remove("WATCH_NAMESPACE")
        .env_remove("CLOUD_RUN_EMULATOR_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} controller: {e}", process::BINARY));
    let deadline = Instant::now() + Duration::from_secs(60);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let out = child.wait_with_output().expect("controller output");
        panic!(
            "the controller kept running for 60 s without the CRD:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = child.wait_with_output().expect("controller output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn without_the_crd_the_controller_exits_1_with_the_install_command_and_starts_once_applied() {
    // Its own control plane: the other tests of this binary install the CRD in theirs.
    let Some(cp) = envtest::own_control_plane_or_skip() else {
        return;
    };
    let cp = &cp;
    let Some(kubeconfig) = cp.kubeconfig() else {
        // USE_EXISTING_CLUSTER: a cluster this test must not take the CRD away from.
        let crd = cp.kubectl(["get", "customresourcedefinition", CRD]);
        assert!(
            !crd.status.success(),
            "USE_EXISTING_CLUSTER: the CRD {CRD} is installed, so the start-up path without \
             it cannot be tested here; run this test binary against its own control plane"
        );
        return;
    };

    let (code, stdout, stderr) = controller_until_exit(kubeconfig);
    let printed = format!("{stdout}{stderr}");
    let expected = "error: the BinAuthzBinding CRD (binauthzbindings.binauthz.dev) is not \
                    installed: run `kubectl apply -f crds/binauthzbindings.binauthz.dev.yaml` \
                    or `binauthz-operator crd | kubectl apply -f -`";
    assert_eq!(code, Some(1), "{printed}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors, [expected], "{printed}");
    assert!(
        !printed.contains("404") && !printed.contains("Failed to parse"),
        "the raw API answer leaked into the output:\n{printed}"
    );

    // Doing what the line says is enough: the controller then starts.
    let command = expected
        .split('`')
        .nth(1)
        .expect("the message quotes a command");
    let manifest = command
        .strip_prefix("kubectl apply -f ")
        .unwrap_or_else(|| panic!("unexpected command {command:?}"));
    cp.kubectl_ok([
        "apply".as_ref(),
        "-f".as_ref(),
        repo().join(manifest).as_os_str(),
    ]);
    // Waits until the API server's discovery serves the resource, as the controller's
    // check needs (applying again changes nothing).
    cp.install_crds(repo().join("crds"));
    let emulator = Emulator::start("examples/cloudrun-seed.yaml");
    let mut controller = Operator::start(
        &OperatorConfig::new(kubeconfig, emulator.url()).identity("startup-after-crd"),
    )
    .await;
    assert!(controller.running(), "{}", controller.log_tail());
}
