//! What runs, over HTTP: revisions with creation times (`revisions.get`), traffic and
//! instance split statuses, and job executions — what tells whether a policy is in effect.

use crate::support::emulator;

use emulator::start_example;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const PROD_US: &str = "projects/acme-prod/locations/us-central1";

fn time(v: &Value) -> jiff::Timestamp {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_service_serves_revisions_whose_creation_times_can_be_read() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/services/cart");
    let before = emu.read(&name).await;
    assert_eq!(
        before["trafficStatuses"],
        json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}])
    );
    let first = before["latestReadyRevision"].as_str().unwrap().to_owned();
    let revision = emu.get(&format!("/v2/{name}/revisions/{first}")).await;
    assert_eq!(revision.status, StatusCode::OK, "{:#}", revision.body);
    assert_eq!(
        revision.body["name"],
        json!(format!("{name}/revisions/{first}"))
    );
    assert_eq!(revision.body["service"], json!("cart"));
    assert!(time(&revision.body["createTime"]) <= time(&before["updateTime"]));

    let deployed = emu
        .admin(Method::POST, "/deploy", Some(&json!({"name": name})))
        .await;
    assert_eq!(deployed.status, StatusCode::OK, "{:#}", deployed.body);
    let after = emu.read(&name).await;
    let second = after["latestReadyRevision"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let created = emu.get(&format!("/v2/{name}/revisions/{second}")).await;
    assert_eq!(created.status, StatusCode::OK, "{:#}", created.body);
    // The deploy's revision is created with the change that made it.
    assert_eq!(
        time(&created.body["createTime"]),
        time(&after["updateTime"])
    );
    assert!(time(&created.body["createTime"]) > time(&revision.body["createTime"]));
    // The older revision is still there, with the time it always had.
    let again = emu.get(&format!("/v2/{name}/revisions/{first}")).await;
    assert_eq!(again.body["createTime"], revision.body["createTime"]);

    // A rollback sends the traffic to the old revision by name.
    let rolled = emu
        .admin(
            Method::POST,
            "/traffic",
            Some(&json!({"name": name, "revision": first})),
        )
        .await;
    assert_eq!(rolled.status, StatusCode::OK, "{:#}", rolled.body);
    let status = &emu.read(&name).await["trafficStatuses"][0];
    assert_eq!(status["revision"], json!(first));
    assert_eq!(status["percent"], json!(100));
}

#[tokio::test]
async fn an_unknown_revision_is_not_found_and_jobs_have_no_revisions() {
    let emu = start_example().await;
    let missing = emu
        .get(&format!(
            "/v2/{PROD_US}/services/cart/revisions/cart-99999-zzz"
        ))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{:#}", missing.body);
    assert_eq!(missing.body["error"]["status"], json!("NOT_FOUND"));
    let job = emu
        .get(&format!("/v2/{PROD_US}/jobs/nightly-billing/revisions/x"))
        .await;
    assert_eq!(job.status, StatusCode::NOT_FOUND, "{:#}", job.body);
}

#[tokio::test]
async fn a_worker_pool_reports_its_instance_split_and_its_revisions() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/workerPools/order-events");
    let pool = emu.read(&name).await;
    assert_eq!(
        pool["instanceSplitStatuses"],
        json!([{"type": "INSTANCE_SPLIT_ALLOCATION_TYPE_LATEST", "percent": 100}])
    );
    let latest = pool["latestReadyRevision"].as_str().unwrap();
    let revision = emu.get(&format!("/v2/{name}/revisions/{latest}")).await;
    assert_eq!(revision.status, StatusCode::OK, "{:#}", revision.body);
    assert_eq!(revision.body["workerPool"], json!("order-events"));
    assert!(revision.body["createTime"].is_string());
}

#[tokio::test]
async fn running_a_job_creates_an_execution_dated_now_without_changing_the_job() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/jobs/nightly-billing");
    let before = emu.read(&name).await;
    let ran = emu
        .admin(Method::POST, "/execute", Some(&json!({"name": name})))
        .await;
    assert_eq!(ran.status, StatusCode::OK, "{:#}", ran.body);
    let after = emu.read(&name).await;
    let execution = &after["latestCreatedExecution"];
    assert_eq!(execution["name"], ran.body["execution"]["name"]);
    assert!(time(&execution["createTime"]) >= time(&before["updateTime"]));
    assert_eq!(
        after["generation"], before["generation"],
        "a run is not a change"
    );
    assert_eq!(after["updateTime"], before["updateTime"]);
}

#[tokio::test]
async fn revision_reads_are_counted_by_method() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/services/cart");
    let latest = emu.read(&name).await["latestReadyRevision"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = emu.get(&format!("/v2/{name}/revisions/{latest}")).await;
    assert_eq!(ok.status, StatusCode::OK);
    let counters = emu.admin(Method::GET, "/counters", None).await;
    assert_eq!(counters.status, StatusCode::OK, "{:#}", counters.body);
    let text = counters.body.to_string();
    assert!(text.contains("revisions.get"), "{text}");
}
