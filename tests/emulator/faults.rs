//! The emulator's fault injection, observed over loopback HTTP: latency, injected errors,
//! connection resets, quotas, stale-etag races, permissions, and configuring them by flag
//! and through the admin API.

use crate::support::emulator;

use std::time::{Duration, Instant};

use clap::Parser;
use cloudrun_emulator::{EmulatorArgs, Faults, QuotaPreset};
use emulator::{example_seed, start_example, start_with};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const PROD_US: &str = "projects/acme-prod/locations/us-central1";
const PROD_EU: &str = "projects/acme-prod/locations/europe-west1";

fn faults(configure: impl FnOnce(&mut Faults)) -> Faults {
    let mut faults = Faults::default();
    configure(&mut faults);
    faults
}

#[tokio::test]
async fn latency_is_added_to_every_api_call() {
    let emu = start_with(example_seed(), faults(|f| f.latency_ms = 300)).await;
    let started = Instant::now();
    let reply = emu.get(&format!("/v2/{PROD_US}/services")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "at least the configured latency"
    );
}

#[tokio::test]
async fn injected_errors_use_googles_error_envelope() {
    let emu = start_example().await;
    for (status, name) in [
        (503, "UNAVAILABLE"),
        (500, "INTERNAL"),
        (504, "DEADLINE_EXCEEDED"),
        (429, "RESOURCE_EXHAUSTED"),
        (409, "ABORTED"),
    ] {
        emu.handle
            .set_faults(faults(|f| f.error_rates = [(status, 1.0)].into()))
            .unwrap();
        let reply = emu.get(&format!("/v2/{PROD_US}/services/cart")).await;
        reply.assert_error(status, name);
        if status == 429 {
            // Google's usual shape: ErrorInfo and Help, no RetryInfo.
            assert_eq!(reply.detail("RetryInfo"), Value::Null);
            let info = reply.detail("ErrorInfo");
            assert_eq!(info["reason"], json!("RATE_LIMIT_EXCEEDED"));
            assert_eq!(
                info["metadata"]["quota_metric"],
                json!("run.googleapis.com/read_regional")
            );
            assert!(reply.detail("Help").is_object());
        }
    }
    // The emulator's earlier shape, on request: RetryInfo and QuotaFailure too.
    emu.handle
        .set_faults(faults(|f| {
            f.error_rates = [(429, 1.0)].into();
            f.quota_retry_info = true;
        }))
        .unwrap();
    let reply = emu.get(&format!("/v2/{PROD_US}/services/cart")).await;
    reply.assert_error(429, "RESOURCE_EXHAUSTED");
    assert_eq!(reply.detail("RetryInfo")["retryDelay"], json!("1s"));
    assert_eq!(
        reply.detail("QuotaFailure")["violations"][0]["subject"],
        json!("project_number:123456789012")
    );
    emu.handle
        .set_faults(faults(|f| f.error_rates = [(503, 0.5)].into()))
        .unwrap();
    let mut unavailable = 0;
    for _ in 0..200 {
        let reply = emu.get(&format!("/v2/{PROD_US}/services/cart")).await;
        match reply.status.as_u16() {
            503 => unavailable += 1,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // Binomial(200, 0.5): outside [50, 150] has a probability below 1e-12.
    assert!(
        (50..=150).contains(&unavailable),
        "{unavailable} of 200 were 503"
    );
    let counters = emu.handle.counters(None);
    let get_503 = counters
        .calls
        .iter()
        .find(|c| c.method == "services.get" && c.code == 503)
        .unwrap();
    assert_eq!(get_503.count, unavailable + 1);
}

#[tokio::test]
async fn connection_resets_close_the_connection_without_a_response() {
    let emu = start_with(example_seed(), faults(|f| f.reset_rate = 1.0)).await;
    let result = emu
        .http
        .get(format!("{}/v2/{PROD_US}/services", emu.url))
        .bearer_auth("t")
        .send()
        .await;
    let err = result.expect_err("no response on a reset connection");
    assert!(
        err.status().is_none(),
        "a transport error, not an HTTP status: {err}"
    );
    let counters = emu.handle.counters(None);
    assert_eq!(counters.calls[0].method, "services.list");
    assert_eq!(counters.calls[0].code, 0, "resets are counted with code 0");

    emu.handle.set_faults(Faults::default()).unwrap();
    let fresh = reqwest::Client::new();
    let ok = fresh
        .get(format!("{}/v2/{PROD_US}/services", emu.url))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_write_quota_is_per_project_and_region() {
    let emu = start_with(
        example_seed(),
        faults(|f| f.write_quota_per_minute = Some(2)),
    )
    .await;
    let patch = |path: String| {
        let emu = &emu;
        async move {
            emu.patch(
                &format!("/v2/{path}?updateMask=binaryAuthorization"),
                &json!({"binaryAuthorization": {"useDefault": true}}),
            )
            .await
        }
    };
    assert_eq!(
        patch(format!("{PROD_US}/services/cart")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        patch(format!("{PROD_US}/workerPools/email-sender"))
            .await
            .status,
        StatusCode::OK
    );
    let refused = patch(format!("{PROD_US}/services/search-frontend")).await;
    refused.assert_error(429, "RESOURCE_EXHAUSTED");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per region'"
        ),
        "{message}"
    );
    assert_eq!(
        message,
        "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute \
         per region' of service 'run.googleapis.com' for consumer 'project_number:123456789012'."
    );
    let info = refused.detail("ErrorInfo");
    assert_eq!(info["reason"], json!("RATE_LIMIT_EXCEEDED"));
    assert_eq!(info["domain"], json!("googleapis.com"));
    assert_eq!(
        info["metadata"],
        json!({
            "quota_metric": "run.googleapis.com/write_regional",
            "quota_limit": "WritePerMinutePerProjectRegion",
            "quota_limit_value": "2",
            "quota_location": "us-central1",
            "consumer": "projects/123456789012",
            "service": "run.googleapis.com",
        })
    );
    assert!(refused.detail("Help")["links"][0]["url"]
        .as_str()
        .is_some_and(|url| url.starts_with("https://")));
    // As Cloud Run usually answers: no RetryInfo, no QuotaFailure.
    assert_eq!(refused.detail("RetryInfo"), Value::Null);
    assert_eq!(refused.detail("QuotaFailure"), Value::Null);

    // Another region of the same project, another project, and reads are not affected.
    assert_eq!(
        patch(format!("{PROD_EU}/services/frontend-eu"))
            .await
            .status,
        StatusCode::OK
    );
    let staging = "projects/acme-staging/locations/us-central1/services/checkout".to_string();
    assert_eq!(patch(staging).await.status, StatusCode::OK);
    assert_eq!(
        emu.get(&format!("/v2/{PROD_US}/services")).await.status,
        StatusCode::OK
    );
    let changed: Vec<String> = emu
        .handle
        .changes()
        .into_iter()
        .map(|c| c.resource)
        .collect();
    assert!(
        !changed.iter().any(|r| r.ends_with("/search-frontend")),
        "the refused write changed nothing: {changed:?}"
    );
}

#[tokio::test]
async fn the_read_quota_counts_lists_gets_and_operations() {
    let emu = start_with(
        example_seed(),
        faults(|f| f.read_quota_per_minute = Some(3)),
    )
    .await;
    assert_eq!(
        emu.get(&format!("/v2/{PROD_US}/services")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        emu.get(&format!("/v2/{PROD_US}/jobs")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        emu.get(&format!("/v2/{PROD_US}/services/cart"))
            .await
            .status,
        StatusCode::OK
    );
    let refused = emu.get(&format!("/v2/{PROD_US}/workerPools")).await;
    refused.assert_error(429, "RESOURCE_EXHAUSTED");
    assert_eq!(
        refused.detail("ErrorInfo")["metadata"]["quota_metric"],
        json!("run.googleapis.com/read_regional")
    );
    assert_eq!(
        emu.get(&format!("/v2/{PROD_EU}/services")).await.status,
        StatusCode::OK
    );
    // Raising the quota at runtime starts afresh.
    emu.handle
        .set_faults(faults(|f| f.read_quota_per_minute = Some(100)))
        .unwrap();
    assert_eq!(
        emu.get(&format!("/v2/{PROD_US}/workerPools")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_deploy_racing_a_write_makes_its_etag_stale() {
    let emu = start_with(example_seed(), faults(|f| f.stale_etag_rate = 1.0)).await;
    let name = format!("{PROD_US}/services/search-frontend");
    let read = emu.get(&format!("/v2/{name}")).await.body;
    let write = emu
        .patch(
            &format!("/v2/{name}?updateMask=binaryAuthorization"),
            &json!({"binaryAuthorization": {"useDefault": true}, "etag": read["etag"]}),
        )
        .await;
    write.assert_error(409, "ABORTED");
    let after = emu.get(&format!("/v2/{name}")).await.body;
    assert_ne!(after["template"], read["template"], "a deploy landed");
    assert!(
        after.get("binaryAuthorization").is_none(),
        "the write did not"
    );
    let changes = emu.handle.changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].method, "race.deploy");
    assert_eq!(changes[0].fields, ["template.containers"]);

    // A write without an etag is not checked: the race happens, then the write applies.
    let blind = emu
        .patch(
            &format!("/v2/{name}?updateMask=binaryAuthorization"),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    assert_eq!(blind.status, StatusCode::OK);
    let methods: Vec<String> = emu.handle.changes().into_iter().map(|c| c.method).collect();
    assert_eq!(methods, ["race.deploy", "race.deploy", "services.patch"]);
}

#[tokio::test]
async fn forbidden_projects_and_resources_answer_permission_denied() {
    let forbidden = vec![
        "acme-staging".to_string(),
        "write:acme-prod".to_string(),
        "projects/123456789012/locations/europe-west1/services/checkout".to_string(),
    ];
    let emu = start_with(example_seed(), faults(|f| f.forbidden = forbidden)).await;
    let staging = emu
        .get("/v2/projects/acme-staging/locations/us-central1/services")
        .await;
    staging.assert_error(403, "PERMISSION_DENIED");
    let info = staging.detail("ErrorInfo");
    assert_eq!(info["reason"], json!("IAM_PERMISSION_DENIED"));
    assert_eq!(info["metadata"]["permission"], json!("run.services.list"));
    emu.get("/v2/projects/234567890123/locations/us-central1/jobs")
        .await
        .assert_error(403, "PERMISSION_DENIED");

    assert_eq!(
        emu.get(&format!("/v2/{PROD_US}/services/cart"))
            .await
            .status,
        StatusCode::OK
    );
    let write = emu
        .patch(
            &format!("/v2/{PROD_US}/services/cart?updateMask=binaryAuthorization"),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    write.assert_error(403, "PERMISSION_DENIED");
    assert_eq!(
        write.detail("ErrorInfo")["metadata"]["permission"],
        json!("run.services.update")
    );

    emu.get(&format!("/v2/{PROD_EU}/services/checkout"))
        .await
        .assert_error(403, "PERMISSION_DENIED");
    let listed = emu.get(&format!("/v2/{PROD_EU}/services")).await;
    assert_eq!(
        listed.status,
        StatusCode::OK,
        "listing needs only the project's permission"
    );
    assert!(emu.handle.changes().is_empty());
}

#[tokio::test]
async fn a_forbidden_location_refuses_every_call_in_that_region_only() {
    let emu = start_with(
        example_seed(),
        faults(|f| f.forbidden = vec!["projects/acme-prod/locations/asia-east1".into()]),
    )
    .await;
    for kind in ["services", "jobs", "workerPools"] {
        let reply = emu
            .get(&format!(
                "/v2/projects/123456789012/locations/asia-east1/{kind}"
            ))
            .await;
        reply.assert_error(403, "PERMISSION_DENIED");
        assert!(reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("locations/asia-east1/{kind}")));
    }
    // The neighbouring regions (also one whose name starts alike) are served.
    for region in ["us-central1", "asia-east2"] {
        let reply = emu
            .get(&format!(
                "/v2/projects/acme-prod/locations/{region}/services"
            ))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{region}: {:#}", reply.body);
    }
}

#[tokio::test]
async fn faults_are_configured_at_runtime_through_the_admin_api() {
    let emu = start_example().await;
    let current = emu.admin(Method::GET, "/faults", None).await;
    assert_eq!(current.body["requireToken"], json!(true));
    assert_eq!(current.body["errorRates"], json!({}));

    let patched = emu
        .admin(
            Method::PATCH,
            "/faults",
            Some(&json!({"errorRates": {"503": 1.0}, "latencyMs": 0})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:#}", patched.body);
    assert_eq!(patched.body["errorRates"], json!({"503": 1.0}));
    assert_eq!(
        patched.body["requireToken"],
        json!(true),
        "PATCH keeps the other settings"
    );
    emu.get(&format!("/v2/{PROD_US}/services"))
        .await
        .assert_error(503, "UNAVAILABLE");
    assert_eq!(
        emu.admin(Method::GET, "/counters", None).await.status,
        StatusCode::OK,
        "admin calls never fault"
    );

    let replaced = emu
        .admin(
            Method::PUT,
            "/faults",
            Some(&json!({"writeQuotaPerMinute": 60})),
        )
        .await;
    assert_eq!(
        replaced.body["errorRates"],
        json!({}),
        "PUT replaces everything"
    );
    assert_eq!(replaced.body["writeQuotaPerMinute"], json!(60));
    assert_eq!(emu.handle.faults().write_quota_per_minute, Some(60));
    assert_eq!(
        emu.get(&format!("/v2/{PROD_US}/services")).await.status,
        StatusCode::OK
    );

    for invalid in [
        json!({"resetRate": 2.0}),
        json!({"errorRates": {"418": 0.1}}),
        json!({"errorRates": {"503": 0.7, "500": 0.6}}),
        json!({"latencyMillis": 5}),
    ] {
        let reply = emu.admin(Method::PATCH, "/faults", Some(&invalid)).await;
        reply.assert_error(400, "INVALID_ARGUMENT");
    }
    assert_eq!(
        emu.handle.faults().write_quota_per_minute,
        Some(60),
        "refused changes change nothing"
    );
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: EmulatorArgs,
}

#[test]
fn flags_describe_the_same_faults() {
    let cli = Cli::try_parse_from([
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--latency-ms",
        "20",
        "--latency-jitter-ms",
        "5",
        "--error-rate",
        "503=0.05,429=0.02",
        "--reset-rate",
        "0.01",
        "--read-quota",
        "600",
        "--write-quota",
        "60",
        "--stale-etag-rate",
        "0.1",
        "--operation-delay-ms",
        "250",
        "--operation-failure-rate",
        "0.02",
        "--allow-unauthenticated",
        "--forbid",
        "acme-staging,write:acme-prod",
        "--quota-preset",
        "new-project",
        "--quota-retry-info",
        "--project-access",
        "acme-sec=vpcServiceControls,345678901234=api-disabled",
        "--job-etag-ignored",
        "--generate",
        "50",
    ])
    .unwrap();
    let config = cli.args.config().unwrap();
    let faults: Value = serde_json::to_value(&config.faults).unwrap();
    assert_eq!(
        faults,
        json!({
            "latencyMs": 20, "latencyJitterMs": 5,
            "errorRates": {"429": 0.02, "503": 0.05},
            "resetRate": 0.01,
            "readQuotaPerMinute": 600, "writeQuotaPerMinute": 60,
            "staleEtagRate": 0.1,
            "operationDelayMs": 250, "operationFailureRate": 0.02,
            "requireToken": false,
            "forbidden": ["acme-staging", "write:acme-prod"],
            "quotaPreset": "newProject",
            "quotaRetryInfo": true,
            "projectAccess": {"acme-sec": "vpcServiceControls", "345678901234": "apiDisabled"},
            "jobEtagIgnored": true,
        })
    );
    assert_eq!(config.seed.generate.unwrap().count, 50);
    // The preset fills in only the quotas not given.
    let preset = Cli::try_parse_from([
        "emulator",
        "--quota-preset",
        "new-project",
        "--read-quota",
        "100",
    ])
    .unwrap()
    .args
    .config()
    .unwrap()
    .faults;
    assert_eq!(preset.read_quota_per_minute, Some(100));
    assert_eq!(preset.quota_preset, Some(QuotaPreset::NewProject));
    assert!(Cli::try_parse_from(["emulator", "--quota-preset", "old-project"]).is_err());
    assert!(Cli::try_parse_from(["emulator", "--project-access", "acme-prod=closed"]).is_err());

    let unsupported = Cli::try_parse_from(["emulator", "--error-rate", "418=0.5"]).unwrap();
    let err = unsupported.args.config().unwrap_err();
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("418"), "{err}");
    assert!(Cli::try_parse_from(["emulator", "--error-rate", "503"]).is_err());
    let out_of_range = Cli::try_parse_from(["emulator", "--reset-rate", "1.5"]).unwrap();
    assert!(out_of_range
        .args
        .config()
        .unwrap_err()
        .to_string()
        .contains("resetRate"));
}

#[tokio::test]
async fn the_new_project_preset_allows_600_reads_and_30_writes_per_minute_and_region() {
    let emu = start_with(
        example_seed(),
        faults(|f| f.quota_preset = Some(QuotaPreset::NewProject)),
    )
    .await;
    let path =
        format!("/v2/{PROD_US}/services/cart?updateMask=binaryAuthorization&validateOnly=true");
    let body = json!({"binaryAuthorization": {"useDefault": true}});
    let write = || emu.patch(&path, &body);
    for n in 0..30 {
        let reply = write().await;
        assert_eq!(reply.status, StatusCode::OK, "write {n}: {:#}", reply.body);
    }
    let refused = write().await;
    refused.assert_error(429, "RESOURCE_EXHAUSTED");
    assert_eq!(
        refused.detail("ErrorInfo")["metadata"]["quota_limit_value"],
        json!("30")
    );
    // 600 reads at once in the region (refilled at 10 a second); writes do not count.
    let started = Instant::now();
    let mut served = 0;
    let refused = loop {
        let reply = emu.get(&format!("/v2/{PROD_US}/services/cart")).await;
        if reply.status != StatusCode::OK || served > 2_000 {
            break reply;
        }
        served += 1;
    };
    let refilled = (started.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        (600..=600 + refilled).contains(&served),
        "{served} reads served before the first 429 ({refilled} refilled meanwhile)"
    );
    refused.assert_error(429, "RESOURCE_EXHAUSTED");
    let info = refused.detail("ErrorInfo");
    assert_eq!(
        info["metadata"]["quota_limit"],
        json!("ReadPerMinutePerProjectRegion")
    );
    assert_eq!(info["metadata"]["quota_limit_value"], json!("600"));
    assert_eq!(
        refused.body["error"]["message"],
        json!("Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per region' of service 'run.googleapis.com' for consumer 'project_number:123456789012'.")
    );
    // Another region is another quota.
    assert_eq!(
        emu.get(&format!("/v2/{PROD_EU}/services")).await.status,
        StatusCode::OK
    );
}
