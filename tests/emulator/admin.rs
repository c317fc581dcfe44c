//! The emulator's admin API over loopback HTTP: drift and deploy injection, counters, the
//! request and audit logs, state dump and reset, estate generation.

use crate::support::emulator;

use cloudrun_emulator::{Faults, GenerateSpec, Seed};
use emulator::{ids, start_example, start_with};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const PROD_US: &str = "projects/acme-prod/locations/us-central1";
const PROD_EU: &str = "projects/acme-prod/locations/europe-west1";
const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";

fn image(resource: &Value) -> &str {
    resource["template"]["containers"][0]["image"]
        .as_str()
        .unwrap()
}

#[tokio::test]
async fn drift_sets_and_clears_binary_authorization() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/services/checkout");
    let before = emu.read(&name).await;
    let cleared = emu
        .admin(
            Method::POST,
            "/drift",
            Some(&json!({"name": name, "binaryAuthorization": null, "by": "mallory@acme.example"})),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{:#}", cleared.body);
    assert_eq!(
        cleared.body["change"]["fields"],
        json!(["binaryAuthorization"])
    );
    assert_eq!(cleared.body["change"]["source"], json!("admin"));
    let after = emu.read(&name).await;
    assert!(after.get("binaryAuthorization").is_none());
    assert_eq!(after["lastModifier"], json!("mallory@acme.example"));
    assert_eq!(after["generation"], json!("2"));
    assert_ne!(after["etag"], before["etag"]);
    assert_eq!(
        after["template"], before["template"],
        "drift is not a deploy"
    );

    let other_policy = emu
        .admin(
            Method::POST,
            "/drift",
            Some(&json!({"name": name, "binaryAuthorization": {"policy": "projects/acme-prod/platforms/cloudRun/policies/legacy"}})),
        )
        .await;
    assert_eq!(other_policy.status, StatusCode::OK);
    assert_eq!(
        emu.read(&name).await["binaryAuthorization"]["policy"],
        json!("projects/acme-prod/platforms/cloudRun/policies/legacy")
    );

    for (body, status) in [
        (
            json!({"name": name, "binaryAuthorization": {"policy": "projects/x/platforms/cloudRun/policies/none"}}),
            400,
        ),
        (json!({"name": format!("{PROD_US}/services/ghost")}), 404),
        (json!({"binaryAuthorization": null}), 400),
        (json!({"name": name, "colour": "red"}), 400),
        (json!({"name": "checkout"}), 400),
    ] {
        let reply = emu.admin(Method::POST, "/drift", Some(&body)).await;
        assert_eq!(reply.status.as_u16(), status, "{body}: {:#}", reply.body);
        assert!(
            reply.body["error"]["status"].is_string(),
            "Google's envelope: {:#}",
            reply.body
        );
    }
}

#[tokio::test]
async fn a_user_deploy_changes_the_image_and_can_clear_binary_authorization() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/services/cart");
    let before = emu.read(&name).await;
    let deployed = emu
        .admin(
            Method::POST,
            "/deploy",
            Some(&json!({"name": name, "image": "us-docker.pkg.dev/acme-prod/shop/cart:2.1.0", "binaryAuthorization": null})),
        )
        .await;
    assert_eq!(deployed.status, StatusCode::OK, "{:#}", deployed.body);
    let after = emu.read(&name).await;
    assert_eq!(image(&after), "us-docker.pkg.dev/acme-prod/shop/cart:2.1.0");
    assert!(
        after.get("binaryAuthorization").is_none(),
        "the deploy cleared it"
    );
    assert_eq!(after["generation"], json!("2"));
    assert_ne!(after["latestReadyRevision"], before["latestReadyRevision"]);
    assert_eq!(after["latestReadyRevision"], after["latestCreatedRevision"]);
    assert!(after["latestCreatedRevision"]
        .as_str()
        .unwrap()
        .starts_with("cart-00002-"));
    assert_eq!(
        after["terminalCondition"]["state"],
        json!("CONDITION_SUCCEEDED")
    );
    assert_eq!(after["labels"], before["labels"]);
    let mut fields = deployed.body["change"]["fields"]
        .as_array()
        .unwrap()
        .clone();
    fields.sort_by_key(|f| f.as_str().unwrap().to_string());
    assert_eq!(
        fields,
        [json!("binaryAuthorization"), json!("template.containers")]
    );

    // Without an image, a new tag; without binaryAuthorization, the setting is kept.
    let pool = format!("{PROD_US}/workerPools/order-events");
    let redeployed = emu
        .admin(Method::POST, "/deploy", Some(&json!({"name": pool})))
        .await;
    assert_eq!(redeployed.status, StatusCode::OK);
    let pool_after = emu.read(&pool).await;
    assert_eq!(
        image(&pool_after),
        "us-docker.pkg.dev/acme-prod/shop/order-events:deploy-2"
    );
    assert_eq!(
        pool_after["binaryAuthorization"],
        json!({"useDefault": true})
    );
}

#[tokio::test]
async fn a_deploy_refused_by_binary_authorization_keeps_the_previous_revision_serving() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/services/checkout");
    let before = emu.read(&name).await;
    let unsigned = "us-docker.pkg.dev/acme-prod/shop/checkout:1.15.0-unsigned";
    let refused = emu
        .admin(
            Method::POST,
            "/deploy",
            Some(&json!({"name": name, "image": unsigned, "unauthorized": true})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::OK, "{:#}", refused.body);
    let after = emu.read(&name).await;
    let revision = after["latestCreatedRevision"].as_str().unwrap();
    assert_ne!(revision, before["latestCreatedRevision"].as_str().unwrap());
    assert_eq!(
        after["latestReadyRevision"], before["latestReadyRevision"],
        "still serving the previous revision"
    );
    assert_eq!(after["binaryAuthorization"], json!({"policy": STRICT}));
    let expected = format!(
        "Revision {revision} uses an unauthorized container image. Container image {unsigned} is not authorized by policy."
    );
    let terminal = &after["terminalCondition"];
    assert_eq!(terminal["state"], json!("CONDITION_FAILED"));
    assert_eq!(terminal["reason"], json!("CONTAINER_IMAGE_UNAUTHORIZED"));
    assert_eq!(terminal["message"], json!(expected));
    let in_conditions = after["conditions"].as_array().unwrap().iter().any(|c| {
        c["reason"] == json!("CONTAINER_IMAGE_UNAUTHORIZED") && c["message"] == json!(expected)
    });
    assert!(in_conditions, "{:#}", after["conditions"]);

    // The next successful deploy clears it.
    let fixed = emu
        .admin(
            Method::POST,
            "/deploy",
            Some(
                &json!({"name": name, "image": "us-docker.pkg.dev/acme-prod/shop/checkout:1.15.0"}),
            ),
        )
        .await;
    assert_eq!(fixed.status, StatusCode::OK);
    let healed = emu.read(&name).await;
    assert_eq!(
        healed["latestReadyRevision"],
        healed["latestCreatedRevision"]
    );
    assert_eq!(
        healed["terminalCondition"]["state"],
        json!("CONDITION_SUCCEEDED")
    );

    // Jobs: the execution is refused.
    let job = format!("{PROD_US}/jobs/nightly-billing");
    let refused_job = emu
        .admin(
            Method::POST,
            "/deploy",
            Some(&json!({"name": job, "image": "job:unsigned", "unauthorized": true})),
        )
        .await;
    assert_eq!(refused_job.status, StatusCode::OK);
    let job_after = emu.read(&job).await;
    let execution = job_after["latestCreatedExecution"]["name"]
        .as_str()
        .unwrap();
    assert_eq!(
        job_after["terminalCondition"]["message"],
        json!(format!("Revision {execution} uses an unauthorized container image. Container image job:unsigned is not authorized by policy."))
    );

    // Binary Authorization cannot refuse a deploy where it is disabled.
    let disabled = emu
        .admin(Method::POST, "/deploy", Some(&json!({"name": format!("{PROD_US}/services/search-frontend"), "unauthorized": true})))
        .await;
    disabled.assert_error(400, "FAILED_PRECONDITION");

    // The seeded blocked deploy reads the same way.
    let seeded = emu
        .read(&format!("{PROD_EU}/services/recommendations"))
        .await;
    assert_eq!(
        seeded["terminalCondition"]["reason"],
        json!("CONTAINER_IMAGE_UNAUTHORIZED")
    );
    assert_ne!(
        seeded["latestReadyRevision"],
        seeded["latestCreatedRevision"]
    );
}

#[tokio::test]
async fn counters_and_the_request_log_tell_callers_apart() {
    let emu = start_example().await;
    for _ in 0..3 {
        emu.call_as(
            "replica-a",
            Method::GET,
            &format!("/v2/{PROD_US}/services"),
            None,
        )
        .await;
    }
    emu.call_as(
        "replica-b",
        Method::GET,
        &format!("/v2/{PROD_US}/services"),
        None,
    )
    .await;
    emu.call_as(
        "replica-b",
        Method::GET,
        &format!("/v2/{PROD_US}/services/ghost"),
        None,
    )
    .await;
    emu.call_as(
        "replica-b",
        Method::PATCH,
        &format!("/v2/{PROD_US}/services/search-frontend?updateMask=binaryAuthorization"),
        Some(&json!({"binaryAuthorization": {"useDefault": true}})),
    )
    .await;
    // Without x-emulator-client, the User-Agent tags the caller.
    let agent = reqwest::Client::builder()
        .user_agent("binauthz-operator/0.1")
        .build()
        .unwrap();
    agent
        .get(format!("{}/v2/{PROD_US}/jobs", emu.url))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();

    let all = emu.admin(Method::GET, "/counters", None).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(
        all.body,
        json!({
            "calls": [
                {"method": "jobs.list", "code": 200, "count": 1},
                {"method": "services.get", "code": 404, "count": 1},
                {"method": "services.list", "code": 200, "count": 4},
                {"method": "services.patch", "code": 200, "count": 1},
            ],
            "reads": 6,
            "writes": 1,
            "changes": 1,
        })
    );
    let replica_a = emu
        .admin(Method::GET, "/counters?client=replica-a", None)
        .await;
    assert_eq!(
        replica_a.body["calls"],
        json!([{"method": "services.list", "code": 200, "count": 3}])
    );
    assert_eq!(replica_a.body["changes"], json!(0));
    let by_agent = emu.handle.counters(Some("binauthz-operator/0.1"));
    assert_eq!(by_agent.reads, 1);

    let log = emu
        .admin(Method::GET, "/requests?client=replica-b", None)
        .await;
    let entries = log.body["requests"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1]["method"], json!("services.get"));
    assert_eq!(entries[1]["code"], json!(404));
    assert_eq!(
        entries[1]["resource"],
        json!(format!("{PROD_US}/services/ghost"))
    );
    assert_eq!(entries[1]["httpMethod"], json!("GET"));
    assert!(entries[1]["time"].as_str().unwrap().ends_with('Z'));
    assert!(entries[2]["path"]
        .as_str()
        .unwrap()
        .contains("updateMask=binaryAuthorization"));
    let since = entries[1]["seq"].as_u64().unwrap();
    let later = emu
        .admin(
            Method::GET,
            &format!("/requests?client=replica-b&since={since}"),
            None,
        )
        .await;
    assert_eq!(later.body["requests"].as_array().unwrap().len(), 1);
    let patches = emu
        .admin(Method::GET, "/requests?method=services.patch", None)
        .await;
    assert_eq!(patches.body["requests"].as_array().unwrap().len(), 1);
    emu.admin(Method::GET, "/requests?colour=red", None)
        .await
        .assert_error(400, "INVALID_ARGUMENT");
    let typo = emu.admin(Method::GET, "/counter", None).await;
    typo.assert_error(404, "NOT_FOUND");
    assert!(typo.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/_emulator/counter"));
    let unknown_api = emu.get("/v2/projects/acme-prod/services").await;
    unknown_api.assert_error(404, "NOT_FOUND");
    let counted = emu.handle.counters(Some("tests"));
    assert_eq!(
        counted.calls,
        [cloudrun_emulator::CallCount {
            method: "unknown".into(),
            code: 404,
            count: 1
        }]
    );
    assert_eq!(
        counted.reads, 0,
        "a path the API does not serve is neither a read nor a write"
    );
}

#[tokio::test]
async fn the_audit_shows_exactly_which_fields_each_caller_touched() {
    let emu = start_example().await;
    let job_name = format!("{PROD_US}/jobs/db-migrate");
    let mut job = emu.read(&job_name).await;
    job["binaryAuthorization"] = json!({"useDefault": true});
    emu.call_as(
        "operator",
        Method::PATCH,
        &format!("/v2/{job_name}"),
        Some(&job),
    )
    .await;
    emu.call_as(
        "operator",
        Method::PATCH,
        &format!("/v2/{PROD_EU}/workerPools/fraud-scorer?updateMask=binaryAuthorization"),
        Some(&json!({"binaryAuthorization": {"policy": STRICT}})),
    )
    .await;
    emu.admin(
        Method::POST,
        "/deploy",
        Some(&json!({"name": job_name, "by": "dev@acme.example"})),
    )
    .await;

    let operator = emu.admin(Method::GET, "/audit?client=operator", None).await;
    let changes = operator.body["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    for change in changes {
        for field in change["fields"].as_array().unwrap() {
            assert!(
                field.as_str().unwrap().starts_with("binaryAuthorization"),
                "{change:#}"
            );
        }
        assert_eq!(change["source"], json!("api"));
    }
    assert_eq!(changes[0]["method"], json!("jobs.patch"));
    assert_eq!(changes[0]["by"], json!("emulator-caller@example.com"));

    let job_history = emu
        .admin(Method::GET, &format!("/audit?resource={job_name}"), None)
        .await;
    let history = job_history.body["changes"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["by"], json!("dev@acme.example"));
    assert_eq!(
        history[1]["fields"],
        json!(["template.template.containers"])
    );
    assert_eq!(history[1]["generation"], json!(3));
}

#[tokio::test]
async fn state_dumps_as_a_seed_and_resets() {
    let emu = start_example().await;
    let initial = emu.admin(Method::GET, "/state", None).await;
    assert_eq!(initial.status, StatusCode::OK);
    assert_eq!(
        initial.body["projects"]["acme-prod"]["projectNumber"],
        json!("123456789012")
    );
    assert!(initial.body["projects"]["acme-sec"]["policies"]["strict"].is_object());
    let dumped: Seed = serde_json::from_value(initial.body.clone()).expect("a dump is a seed");
    assert_eq!(dumped, emu.handle.state());

    emu.patch(
        &format!("/v2/{PROD_US}/services/search-frontend?updateMask=binaryAuthorization"),
        &json!({"binaryAuthorization": {"useDefault": true}}),
    )
    .await;
    assert_ne!(
        emu.admin(Method::GET, "/state", None).await.body,
        initial.body
    );
    let reset = emu.admin(Method::POST, "/reset", None).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(
        emu.admin(Method::GET, "/state", None).await.body,
        initial.body
    );
    assert!(emu.handle.changes().is_empty());
    assert_eq!(emu.handle.counters(None).calls, []);

    // Reset to another seed (a dump loads back as it was).
    let small = json!({"projects": {"tiny-project": {"projectNumber": 42, "regions": {"us-east1": {"services": [
        {"name": "only", "image": "img:1", "labels": {"env": "dev"}}
    ]}}}}});
    let replaced = emu.admin(Method::POST, "/reset", Some(&small)).await;
    assert_eq!(replaced.status, StatusCode::OK, "{:#}", replaced.body);
    let listed = emu.get("/v2/projects/42/locations/us-east1/services").await;
    assert_eq!(ids(listed.body["services"].as_array().unwrap()), ["only"]);
    // A project that no longer exists: 403, as Google answers for a missing project.
    emu.get(&format!("/v2/{PROD_US}/services"))
        .await
        .assert_error(403, "PERMISSION_DENIED");
    let reloaded = emu.admin(Method::POST, "/reset", Some(&initial.body)).await;
    assert_eq!(reloaded.status, StatusCode::OK);
    assert_eq!(
        emu.admin(Method::GET, "/state", None).await.body,
        initial.body
    );

    let invalid = emu
        .admin(
            Method::POST,
            "/reset",
            Some(&json!({"projects": {"Bad_Id": {"projectNumber": 1}}})),
        )
        .await;
    invalid.assert_error(400, "INVALID_ARGUMENT");
    assert_eq!(
        emu.admin(Method::GET, "/state", None).await.body,
        initial.body,
        "unchanged"
    );
}

#[tokio::test]
async fn estates_are_generated_deterministically() {
    let spec = json!({"count": 300, "seed": 5, "driftRatio": 0.5, "projects": ["gen-alpha"], "regions": ["us-central1", "us-east1"]});
    let emu = start_example().await;
    let added = emu.admin(Method::POST, "/generate", Some(&spec)).await;
    assert_eq!(added.status, StatusCode::OK, "{:#}", added.body);
    assert_eq!(added.body["added"], json!(300));
    let drifted = added.body["drifted"].as_u64().unwrap();
    assert!(
        (90..=210).contains(&drifted),
        "{drifted} of 300 drifted at ratio 0.5"
    );

    let mut total = 0;
    let mut labelled = 0;
    for region in ["us-central1", "us-east1"] {
        for collection in ["services", "jobs", "workerPools"] {
            let items = emu
                .list_all(
                    &format!("projects/gen-alpha/locations/{region}/{collection}"),
                    100,
                )
                .await;
            labelled += items
                .iter()
                .filter(|i| i["labels"]["env"].is_string() && i["labels"]["team"].is_string())
                .count();
            total += items.len();
        }
    }
    assert_eq!(total, 300);
    assert_eq!(labelled, 300);
    let policy = emu
        .get("/v1/projects/gen-alpha/platforms/cloudRun/policies/relaxed")
        .await;
    assert_eq!(policy.status, StatusCode::OK);

    let again = emu.admin(Method::POST, "/generate", Some(&spec)).await;
    again.assert_error(400, "INVALID_ARGUMENT");
    let mut prefixed = spec.clone();
    prefixed["namePrefix"] = json!("b-");
    assert_eq!(
        emu.admin(Method::POST, "/generate", Some(&prefixed))
            .await
            .status,
        StatusCode::OK
    );

    // The same spec in a seed gives the same estate, twice.
    let mut gen_spec: GenerateSpec = serde_json::from_value(spec).unwrap();
    gen_spec.name_prefix = String::new();
    let seed = Seed {
        generate: Some(gen_spec),
        ..Seed::default()
    };
    let first = start_with(seed.clone(), Faults::default()).await;
    let second = start_with(seed, Faults::default()).await;
    assert_eq!(first.handle.state(), second.handle.state());
    let listed = first
        .list_all("projects/gen-alpha/locations/us-east1/services", 100)
        .await;
    let listed_here = emu
        .list_all("projects/gen-alpha/locations/us-east1/services", 100)
        .await;
    let without_prefix: Vec<String> = ids(&listed_here)
        .into_iter()
        .filter(|n| !n.starts_with("b-"))
        .collect();
    assert_eq!(ids(&listed), without_prefix);
}
