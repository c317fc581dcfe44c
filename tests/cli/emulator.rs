//! `binauthz-operator emulator` as a subprocess: the printed URL, serving the seed, flags,
//! and one-line errors for bad input.

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_binauthz-operator");
const EXAMPLE_SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cloudrun-seed.yaml");

/// A running emulator subprocess; killed when dropped.
struct Running {
    child: Child,
    url: String,
}

/// Starts the binary and reads the URL from the first line of its stdout.
async fn spawn(args: &[&str]) -> Running {
    let mut child = Command::new(BINARY)
        .arg("emulator")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut first_line = String::new();
    // A guard against a hung process, not a performance assertion.
    tokio::time::timeout(
        Duration::from_secs(120),
        BufReader::new(stdout).read_line(&mut first_line),
    )
    .await
    .expect("the emulator prints its URL")
    .expect("stdout readable");
    let url = first_line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    Running { child, url }
}

impl Running {
    async fn stop(mut self) {
        self.child.kill().await.expect("kill");
        self.child.wait().await.expect("reaped");
    }
}

#[tokio::test]
async fn the_binary_prints_its_url_and_serves_the_seed() {
    let running = spawn(&["--seed", EXAMPLE_SEED]).await;
    let http = reqwest::Client::new();
    let services: Value = http
        .get(format!(
            "{}/v2/projects/acme-prod/locations/us-central1/services",
            running.url
        ))
        .bearer_auth("token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        services["services"][0]["name"],
        "projects/acme-prod/locations/us-central1/services/inventory"
    );
    let anonymous = http
        .get(format!("{}/v1/projects/acme-prod/locations", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let counters: Value = http
        .get(format!("{}/_emulator/counters", running.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["reads"], 2);
    running.stop().await;
}

#[tokio::test]
async fn flags_generate_an_estate_and_configure_faults() {
    let running = spawn(&[
        "--generate",
        "500",
        "--generate-seed",
        "9",
        "--generate-projects",
        "bench-project",
        "--generate-regions",
        "us-central1",
        "--allow-unauthenticated",
        "--error-rate",
        "503=0",
    ])
    .await;
    let http = reqwest::Client::new();
    let mut total = 0;
    for collection in ["services", "jobs", "workerPools"] {
        let mut token = String::new();
        loop {
            let page: Value = http
                .get(format!(
                    "{}/v2/projects/bench-project/locations/us-central1/{collection}?pageSize=100&pageToken={token}",
                    running.url
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            total += page[collection].as_array().map_or(0, Vec::len);
            match page["nextPageToken"].as_str() {
                Some(next) => token = next.to_string(),
                None => break,
            }
        }
    }
    assert_eq!(total, 500);
    let faults: Value = http
        .get(format!("{}/_emulator/faults", running.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["requireToken"], false);
    running.stop().await;
}

/// Runs the binary to completion; returns (exit code, stderr).
async fn run_to_end(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(BINARY)
        .arg("emulator")
        .args(args)
        .output()
        .await
        .expect("binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_input_is_one_clear_line() {
    let mut seed = tempfile::NamedTempFile::new().unwrap();
    write!(
        seed,
        "projects:\n  acme-prod:\n    projectNumber: 1\n    regions:\n      us-central1:\n        services:\n          - name: web\n            image: img:1\n            binary_authorization: {{useDefault: true}}\n"
    )
    .unwrap();
    let path = seed.path().to_str().unwrap().to_string();
    let (code, stderr) = run_to_end(&["--listen", "127.0.0.1:0", "--seed", &path]).await;
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: seed file {path}: projects.acme-prod.regions.us-central1.services[0] (web)"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("binaryAuthorization"), "{stderr}");

    // A misspelt key is named, not only the field it leaves missing.
    let mut typo = tempfile::NamedTempFile::new().unwrap();
    write!(
        typo,
        "projects:\n  acme-prod:\n    projectNumber: 1\n    regions:\n      us-central1:\n        services:\n          - nme: web\n            image: img:1\n"
    )
    .unwrap();
    let typo_path = typo.path().to_str().unwrap().to_string();
    let (code, stderr) = run_to_end(&["--listen", "127.0.0.1:0", "--seed", &typo_path]).await;
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("missing field `name` (unknown key `nme`: did you mean `name`?)"),
        "{stderr}"
    );

    let (code, stderr) = run_to_end(&["--seed", "/no/such/seed.yaml"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/no/such/seed.yaml"), "{stderr}");

    let (code, stderr) = run_to_end(&["--listen", "127.0.0.1:0", "--error-rate", "418=0.5"]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("418"), "{stderr}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run_to_end(&["--listen", &addr]).await;
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
}
