//! The Cloud Run emulator's audit log: Admin Activity entries published to Google's real
//! Pub/Sub emulator (started by `scripts/pubsub-emulator.sh`), read back over its REST API.

use crate::support::pubsub;

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cloudrun_emulator::{AuditLogConfig, EmulatorConfig, EmulatorHandle, Faults, Seed};
use pubsub::{PubSub, Received};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const PROJECT: &str = "audit-prod";
const SERVICE: &str = "projects/audit-prod/locations/us-central1/services/web";
const JOB: &str = "projects/audit-prod/locations/us-central1/jobs/nightly";
const POOL: &str = "projects/audit-prod/locations/us-central1/workerPools/queue";
/// The User-Agent the operator's Cloud Run client sends.
const OPERATOR_UA: &str = binauthz_operator::cloudrun::client::USER_AGENT;
const OPERATOR_SA: &str = "binauthz-operator@ops-project.iam.gserviceaccount.com";
/// How long an expected entry may take to arrive (a guard, not a performance target).
const ARRIVAL: Duration = Duration::from_secs(20);

const SEED: &str = r#"
projects:
  audit-prod:
    projectNumber: 555000111222
    policies:
      strict: {description: strict}
    allowedBinaryAuthorizationPolicies: [default, projects/audit-prod/platforms/cloudRun/policies/strict]
    regions:
      us-central1:
        services:
          - name: web
            image: us-docker.pkg.dev/audit-prod/web/web:1.0.0
            binaryAuthorization: {useDefault: true}
        jobs:
          - name: nightly
            image: us-docker.pkg.dev/audit-prod/batch/nightly:1.0.0
            binaryAuthorization: {useDefault: true}
        workerPools:
          - name: queue
            image: us-docker.pkg.dev/audit-prod/queue/worker:1.0.0
            binaryAuthorization: {useDefault: true}
"#;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh topic and subscription on `pubsub`: `(topic, subscription)`.
async fn fresh_topic(pubsub: &PubSub) -> (String, String) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    pubsub
        .topic_and_subscription(
            PROJECT,
            &format!("run-audit-{n}"),
            &format!("run-audit-sub-{n}"),
        )
        .await
}

async fn start_emulator(pubsub: &PubSub, topic: &str, faults: Faults) -> EmulatorHandle {
    cloudrun_emulator::start(EmulatorConfig {
        seed: Seed::from_yaml_str(SEED).expect("seed parses"),
        faults,
        audit_log: Some(AuditLogConfig::new(topic, &pubsub.host()).expect("valid config")),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts")
}

/// A PATCH of `binaryAuthorization` as the operator sends it.
async fn operator_patch(
    emu: &EmulatorHandle,
    name: &str,
    binary_authorization: Value,
) -> (StatusCode, Value) {
    let (query, body) = if name.contains("/jobs/") {
        let mut job = crate::support::emulator::get_resource(&emu.url(), name).await;
        job["binaryAuthorization"] = binary_authorization;
        (String::new(), job)
    } else {
        (
            "?updateMask=binaryAuthorization".to_string(),
            json!({"binaryAuthorization": binary_authorization}),
        )
    };
    call(
        emu,
        reqwest::Method::PATCH,
        &format!("/v2/{name}{query}"),
        Some(&body),
    )
    .await
}

async fn call(
    emu: &EmulatorHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", emu.url()))
        .bearer_auth("t")
        .header("user-agent", OPERATOR_UA)
        .header("x-emulator-principal", OPERATOR_SA);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("call completes");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn admin(emu: &EmulatorHandle, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/_emulator{path}", emu.url()))
        .json(&body)
        .send()
        .await
        .expect("admin call completes");
    assert_eq!(response.status(), StatusCode::OK, "admin {path}");
    response.json().await.unwrap()
}

/// A value the seed's organization policy allows.
fn strict() -> Value {
    json!({"policy": "projects/audit-prod/platforms/cloudRun/policies/strict"})
}

fn time(value: &Value) -> jiff::Timestamp {
    value
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
}

/// Waits (at most `ARRIVAL`) until `done` holds; fails the test otherwise.
async fn wait_for(done: impl Fn() -> bool) {
    let deadline = Instant::now() + ARRIVAL;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "condition not met in {ARRIVAL:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn entries(messages: &[Received]) -> Vec<Value> {
    messages.iter().map(Received::json).collect()
}

#[tokio::test]
async fn an_api_patch_logs_a_first_and_a_last_entry_with_the_operators_identity() {
    let pubsub = pubsub::shared();
    let (topic, sub) = fresh_topic(pubsub).await;
    let delay = Duration::from_millis(1500);
    let emu = start_emulator(
        pubsub,
        &topic,
        Faults {
            operation_delay_ms: delay.as_millis() as u64,
            ..Faults::default()
        },
    )
    .await;

    let called = Instant::now();
    let (status, operation) = operator_patch(&emu, SERVICE, strict()).await;
    assert_eq!(status, StatusCode::OK, "{operation}");
    // Publishing is off the request path: the call answered before its operation is done.
    assert!(called.elapsed() < delay, "the PATCH waited for publishing");

    let messages = pubsub.pull_acked(&sub, 2, ARRIVAL).await;
    assert_eq!(messages.len(), 2, "first and last entry");
    let (first, last) = (messages[0].json(), messages[1].json());
    for (message, entry) in messages.iter().zip([&first, &last]) {
        assert_eq!(
            entry["logName"],
            "projects/audit-prod/logs/cloudaudit.googleapis.com%2Factivity"
        );
        assert_eq!(
            entry["resource"],
            json!({"type": "cloud_run_revision", "labels": {"project_id": PROJECT,
                   "location": "us-central1", "service_name": "web",
                   "configuration_name": "", "revision_name": ""}})
        );
        let payload = &entry["protoPayload"];
        assert_eq!(
            payload["@type"],
            "type.googleapis.com/google.cloud.audit.AuditLog"
        );
        assert_eq!(payload["serviceName"], "run.googleapis.com");
        assert_eq!(
            payload["methodName"],
            "google.cloud.run.v2.Services.UpdateService"
        );
        assert_eq!(payload["resourceName"], SERVICE);
        assert_eq!(payload["authenticationInfo"]["principalEmail"], OPERATOR_SA);
        assert_eq!(
            payload["requestMetadata"]["callerSuppliedUserAgent"],
            OPERATOR_UA
        );
        assert_eq!(payload["requestMetadata"]["callerIp"], "127.0.0.1");
        assert_eq!(payload["status"], json!({}));
        assert_eq!(entry["severity"], "NOTICE");
        assert_eq!(entry["operation"]["id"], operation["name"]);
        assert_eq!(entry["operation"]["producer"], "run.googleapis.com");
        assert!(entry["insertId"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(time(&entry["receiveTimestamp"]) > time(&entry["timestamp"]));
        assert_eq!(
            message
                .attributes
                .get("logging.googleapis.com/timestamp")
                .map(String::as_str),
            entry["timestamp"].as_str()
        );
    }
    assert_eq!(first["operation"]["first"], true);
    assert!(first["operation"].get("last").is_none());
    assert_eq!(last["operation"]["last"], true);
    assert!(last["operation"].get("first").is_none());
    assert_ne!(first["insertId"], last["insertId"]);
    // The last entry is written when the operation is done, and carries the result.
    let gap = time(&last["timestamp"])
        .duration_since(time(&first["timestamp"]))
        .as_millis();
    assert!(
        gap >= 1400,
        "last entry {gap} ms after the first, operation took 1500 ms"
    );
    assert_eq!(
        last["protoPayload"]["response"]["binaryAuthorization"],
        strict()
    );
    assert_eq!(last["protoPayload"]["response"]["name"], SERVICE);
    assert_eq!(
        last["protoPayload"]["response"]["@type"],
        "type.googleapis.com/google.cloud.run.v2.Service"
    );
    wait_for(|| emu.audit_log_stats().unwrap().published == 2).await;
}

#[tokio::test]
async fn job_and_worker_pool_patches_carry_their_resource_types_and_methods() {
    let pubsub = pubsub::shared();
    let (topic, sub) = fresh_topic(pubsub).await;
    let emu = start_emulator(pubsub, &topic, Faults::default()).await;
    assert_eq!(operator_patch(&emu, JOB, strict()).await.0, StatusCode::OK);
    assert_eq!(operator_patch(&emu, POOL, strict()).await.0, StatusCode::OK);
    let got = entries(&pubsub.pull_acked(&sub, 4, ARRIVAL).await);
    assert_eq!(got.len(), 4);
    for entry in &got[..2] {
        assert_eq!(
            entry["resource"],
            json!({"type": "cloud_run_job", "labels": {"project_id": PROJECT,
                   "location": "us-central1", "job_name": "nightly"}})
        );
        assert_eq!(
            entry["protoPayload"]["methodName"],
            "google.cloud.run.v2.Jobs.UpdateJob"
        );
        assert_eq!(entry["protoPayload"]["resourceName"], JOB);
    }
    for entry in &got[2..] {
        assert_eq!(
            entry["resource"],
            json!({"type": "cloud_run_worker_pool", "labels": {"project_id": PROJECT,
                   "location": "us-central1", "worker_pool_name": "queue"}})
        );
        assert_eq!(
            entry["protoPayload"]["methodName"],
            "google.cloud.run.v2.WorkerPools.UpdateWorkerPool"
        );
        assert_eq!(entry["protoPayload"]["resourceName"], POOL);
    }
    assert_eq!(
        got.iter()
            .map(|e| e["operation"]["first"] == true)
            .collect::<Vec<_>>(),
        [true, false, true, false]
    );
}

#[tokio::test]
async fn admin_drift_logs_a_v1_gcloud_entry_or_a_v2_pair_as_asked() {
    let pubsub = pubsub::shared();
    let (topic, sub) = fresh_topic(pubsub).await;
    let emu = start_emulator(pubsub, &topic, Faults::default()).await;

    // Default: gcloud's v1 ReplaceService, one entry, no operation.
    admin(
        &emu,
        "/drift",
        json!({"name": SERVICE, "binaryAuthorization": null, "by": "alice@example.com"}),
    )
    .await;
    let v1 = entries(&pubsub.pull_acked(&sub, 1, ARRIVAL).await);
    assert_eq!(v1.len(), 1);
    let payload = &v1[0]["protoPayload"];
    assert_eq!(
        payload["methodName"],
        "google.cloud.run.v1.Services.ReplaceService"
    );
    assert_eq!(
        payload["resourceName"],
        "namespaces/audit-prod/services/web"
    );
    assert_eq!(
        payload["authenticationInfo"]["principalEmail"],
        "alice@example.com"
    );
    assert!(payload["requestMetadata"]["callerSuppliedUserAgent"]
        .as_str()
        .is_some_and(|ua| ua.starts_with("google-cloud-sdk gcloud/")
            && ua.contains("command/gcloud.run.services.update")));
    assert!(
        payload.get("status").is_none(),
        "v1 success carries no status"
    );
    assert!(v1[0].get("operation").is_none());
    // The labels are the same as in v2 entries.
    assert_eq!(v1[0]["resource"]["type"], "cloud_run_revision");
    assert_eq!(v1[0]["resource"]["labels"]["service_name"], "web");
    assert_eq!(v1[0]["resource"]["labels"]["location"], "us-central1");

    // v1 job and worker pool, addressed by project number: names carry the id.
    admin(&emu, "/drift", json!({"name": "projects/555000111222/locations/us-central1/jobs/nightly", "binaryAuthorization": null, "apiVersion": "v1"})).await;
    admin(
        &emu,
        "/drift",
        json!({"name": POOL, "binaryAuthorization": null}),
    )
    .await;
    let v1 = entries(&pubsub.pull_acked(&sub, 2, ARRIVAL).await);
    assert_eq!(
        v1[0]["protoPayload"]["methodName"],
        "google.cloud.run.v1.Jobs.ReplaceJob"
    );
    assert_eq!(
        v1[0]["protoPayload"]["resourceName"],
        "namespaces/audit-prod/jobs/nightly"
    );
    assert_eq!(v1[0]["resource"]["labels"]["job_name"], "nightly");
    assert_eq!(v1[0]["resource"]["labels"]["project_id"], PROJECT);
    assert_eq!(
        v1[0]["protoPayload"]["authenticationInfo"]["principalEmail"],
        "user@example.com"
    );
    assert_eq!(
        v1[1]["protoPayload"]["methodName"],
        "google.cloud.run.v1.WorkerPools.ReplaceWorkerPool"
    );
    assert_eq!(v1[1]["resource"]["type"], "cloud_run_worker_pool");

    // v2 with a caller-chosen user agent: a first/last pair.
    admin(
        &emu,
        "/drift",
        json!({"name": SERVICE, "binaryAuthorization": {"useDefault": true},
        "apiVersion": "v2", "userAgent": "Terraform/1.9.8", "by": "ci@example.com"}),
    )
    .await;
    let v2 = entries(&pubsub.pull_acked(&sub, 2, ARRIVAL).await);
    assert_eq!(v2.len(), 2);
    for entry in &v2 {
        assert_eq!(
            entry["protoPayload"]["methodName"],
            "google.cloud.run.v2.Services.UpdateService"
        );
        assert_eq!(entry["protoPayload"]["resourceName"], SERVICE);
        assert_eq!(
            entry["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"],
            "Terraform/1.9.8"
        );
        assert_eq!(
            entry["protoPayload"]["authenticationInfo"]["principalEmail"],
            "ci@example.com"
        );
    }
    assert_eq!(v2[0]["operation"]["first"], true);
    assert_eq!(v2[1]["operation"]["last"], true);
    assert_eq!(v2[0]["operation"]["id"], v2[1]["operation"]["id"]);

    // A bad apiVersion is refused with the field named, and logs nothing.
    let response = reqwest::Client::new()
        .post(format!("{}/_emulator/drift", emu.url()))
        .json(&json!({"name": SERVICE, "apiVersion": "v3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("apiVersion"));
}

#[tokio::test]
async fn admin_deploys_log_like_gcloud_deploy_and_a_refused_v2_deploy_ends_in_error() {
    let pubsub = pubsub::shared();
    let (topic, sub) = fresh_topic(pubsub).await;
    let emu = start_emulator(pubsub, &topic, Faults::default()).await;
    admin(&emu, "/deploy", json!({"name": SERVICE})).await;
    let got = entries(&pubsub.pull_acked(&sub, 1, ARRIVAL).await);
    assert_eq!(
        got[0]["protoPayload"]["methodName"],
        "google.cloud.run.v1.Services.ReplaceService"
    );
    assert!(
        got[0]["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"]
            .as_str()
            .is_some_and(|ua| ua.contains("command/gcloud.run.deploy"))
    );

    let refused = admin(
        &emu,
        "/deploy",
        json!({"name": SERVICE, "unauthorized": true, "apiVersion": "v2"}),
    )
    .await;
    assert_eq!(refused["refused"], true);
    let got = entries(&pubsub.pull_acked(&sub, 2, ARRIVAL).await);
    assert_eq!(got[0]["severity"], "NOTICE");
    assert_eq!(got[1]["severity"], "ERROR");
    assert_eq!(got[1]["protoPayload"]["status"]["code"], 9);
    assert!(got[1]["protoPayload"]["status"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("not authorized")));
}

#[tokio::test]
async fn refused_and_validate_only_writes_publish_nothing_and_failed_operations_end_in_error() {
    let pubsub = pubsub::shared();
    let (topic, sub) = fresh_topic(pubsub).await;
    let emu = start_emulator(pubsub, &topic, Faults::default()).await;

    // 400 bad mask, 400 org policy refusal, 409 stale etag, 404 unknown, validateOnly.
    let refused = [
        (format!("/v2/{SERVICE}?updateMask=labels"), json!({"labels": {}}), 400),
        (format!("/v2/{SERVICE}?updateMask=binaryAuthorization"),
         json!({"binaryAuthorization": {"policy": "projects/audit-prod/platforms/cloudRun/policies/strict", "useDefault": true}}), 400),
        (format!("/v2/{SERVICE}?updateMask=binaryAuthorization"), json!({"binaryAuthorization": null}), 400),
        (format!("/v2/{SERVICE}?updateMask=binaryAuthorization"),
         json!({"binaryAuthorization": {"useDefault": true}, "etag": "\"stale\""}), 409),
        ("/v2/projects/audit-prod/locations/us-central1/services/nope?updateMask=binaryAuthorization".to_string(),
         json!({"binaryAuthorization": null}), 404),
    ];
    for (path, body, code) in &refused {
        let (status, answer) = call(&emu, reqwest::Method::PATCH, path, Some(body)).await;
        assert_eq!(status.as_u16(), *code, "{path}: {answer}");
    }
    let (status, _) = call(
        &emu,
        reqwest::Method::PATCH,
        &format!("/v2/{SERVICE}?updateMask=binaryAuthorization&validateOnly=true"),
        Some(&json!({"binaryAuthorization": {"useDefault": true}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // 403: the operator may not write this resource.
    emu.set_faults(Faults {
        forbidden: vec![format!("write:{POOL}")],
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(
        operator_patch(&emu, POOL, json!({"useDefault": true}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // Then an accepted write whose operation fails: its two entries are the only ones
    // (entries are published in order, so anything earlier would have come first).
    emu.set_faults(Faults {
        operation_failure_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    assert_eq!(
        operator_patch(&emu, JOB, json!({"useDefault": true}))
            .await
            .0,
        StatusCode::OK
    );
    let got = entries(&pubsub.pull_acked(&sub, 2, ARRIVAL).await);
    let tail = pubsub.drain(&sub, Duration::from_millis(500)).await;
    assert_eq!(
        got.len() + tail.len(),
        2,
        "only the accepted write is logged: {got:#?}"
    );
    assert!(got.iter().all(|e| e["protoPayload"]["resourceName"] == JOB));
    assert_eq!(got[0]["protoPayload"]["status"], json!({}));
    assert_eq!(got[1]["protoPayload"]["status"]["code"], 13);
    assert_eq!(got[1]["severity"], "ERROR");
    assert!(got[1]["protoPayload"].get("response").is_none());
    assert_eq!(emu.audit_log_stats().unwrap().entries, 2);
}

#[tokio::test]
async fn writes_go_on_while_pubsub_is_down_and_failures_are_counted() {
    let pubsub = PubSub::start();
    let (topic, _) = fresh_topic(&pubsub).await;
    let emu = start_emulator(&pubsub, &topic, Faults::default()).await;
    pubsub.kill();

    for (i, name) in [SERVICE, JOB, POOL].into_iter().enumerate() {
        let started = Instant::now();
        let (status, body) = operator_patch(&emu, name, json!({"useDefault": true})).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "write {i} with Pub/Sub down: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the write waited for Pub/Sub"
        );
    }
    let (status, web) = call(&emu, reqwest::Method::GET, &format!("/v2/{SERVICE}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(web["binaryAuthorization"], json!({"useDefault": true}));
    wait_for(|| emu.audit_log_stats().unwrap().failed >= 6).await;
    let stats = emu.audit_log_stats().unwrap();
    assert_eq!((stats.entries, stats.published, stats.failed), (6, 0, 6));
    let admin_view = reqwest::Client::new()
        .get(format!("{}/_emulator/auditlog", emu.url()))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(admin_view["failed"], 6);
    assert_eq!(admin_view["topic"], topic.as_str());

    // Back up (empty, as a restarted emulator is): later writes are published again.
    pubsub.restart();
    let (_, sub) = pubsub
        .topic_and_subscription(PROJECT, topic.rsplit('/').next().unwrap(), "after-restart")
        .await;
    assert_eq!(
        operator_patch(&emu, SERVICE, strict()).await.0,
        StatusCode::OK
    );
    let got = entries(&pubsub.pull_acked(&sub, 2, ARRIVAL).await);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["protoPayload"]["resourceName"], SERVICE);
    wait_for(|| emu.audit_log_stats().unwrap().published == 2).await;
}

#[tokio::test]
async fn the_binary_publishes_with_the_flag_and_pubsub_emulator_host() {
    let pubsub = pubsub::shared();
    let (topic, sub) = fresh_topic(pubsub).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, SEED).unwrap();
    let binary = env!("CARGO_BIN_EXE_binauthz-operator");

    // Without an emulator address: one clear line, no start.
    let output = tokio::process::Command::new(binary)
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--audit-log-topic",
            &topic,
        ])
        .env_remove("PUBSUB_EMULATOR_HOST")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PUBSUB_EMULATOR_HOST") && stderr.contains(&topic),
        "{stderr}"
    );
    // A one-character topic is named as invalid.
    let output = tokio::process::Command::new(binary)
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--audit-log-topic",
            "projects/p1/topics/t",
        ])
        .env("PUBSUB_EMULATOR_HOST", pubsub.host())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("3 to 255 characters"));

    let mut child = tokio::process::Command::new(binary)
        .args(["emulator", "--listen", "127.0.0.1:0", "--seed"])
        .arg(&seed)
        .args(["--audit-log-topic", &topic])
        .env("PUBSUB_EMULATOR_HOST", pubsub.host())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let response = reqwest::Client::new()
        .patch(format!("{url}/v2/{SERVICE}?updateMask=binaryAuthorization"))
        .bearer_auth("t")
        .header("user-agent", OPERATOR_UA)
        .json(&json!({"binaryAuthorization": strict()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let got = entries(&pubsub.pull_acked(&sub, 2, ARRIVAL).await);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0]["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"],
        OPERATOR_UA
    );
    child.kill().await.unwrap();
}
