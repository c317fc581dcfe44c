//! The emulator's Cloud Run wire contract, spoken over loopback HTTP with raw JSON: lists,
//! pages, gets, patches, operations, locations, policies, errors and bookkeeping.

use crate::support::emulator;

use std::collections::BTreeMap;

use cloudrun_emulator::{Faults, ProjectSeed, RegionSeed, ResourceSeed, Seed};
use emulator::{ids, start_example, start_with};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map};

const PROD_US: &str = "projects/acme-prod/locations/us-central1";
const PROD_EU: &str = "projects/acme-prod/locations/europe-west1";
const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";

/// One project `paging-test` (number 111111111111) with `count` services in us-central1.
fn many_services(count: usize) -> Seed {
    let services = (0..count)
        .map(|i| ResourceSeed {
            name: format!("svc-{i:03}"),
            image: Some(format!("img/svc:{i}")),
            deploy_blocked: None,
            deleted: false,
            fields: Map::new(),
        })
        .collect();
    Seed {
        projects: BTreeMap::from([(
            "paging-test".to_string(),
            ProjectSeed {
                project_number: "111111111111".into(),
                policies: BTreeMap::new(),
                regions: BTreeMap::from([(
                    "us-central1".to_string(),
                    Some(RegionSeed {
                        services,
                        ..RegionSeed::default()
                    }),
                )]),
                ..ProjectSeed::default()
            },
        )]),
        generate: None,
    }
}

#[tokio::test]
async fn lists_are_newest_first_and_hide_deleted_resources_unless_asked() {
    let emu = start_example().await;
    let reply = emu.get(&format!("/v2/{PROD_US}/services")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let items = reply.body["services"].as_array().unwrap().clone();
    assert_eq!(
        ids(&items),
        [
            "inventory",
            "search-frontend",
            "cart",
            "payments-sandbox",
            "payments-api",
            "checkout"
        ]
    );
    assert!(
        reply.body.get("nextPageToken").is_none(),
        "last page has no token"
    );

    let reply = emu
        .get(&format!("/v2/{PROD_US}/services?showDeleted=true"))
        .await;
    let items = reply.body["services"].as_array().unwrap();
    assert_eq!(ids(items)[0], "legacy-checkout");
    assert!(items[0]["deleteTime"].is_string());

    let jobs = emu.get(&format!("/v2/{PROD_US}/jobs")).await;
    assert_eq!(
        ids(jobs.body["jobs"].as_array().unwrap()),
        ["db-migrate", "nightly-billing"]
    );
    let pools = emu.get(&format!("/v2/{PROD_US}/workerPools")).await;
    assert_eq!(
        ids(pools.body["workerPools"].as_array().unwrap()),
        ["email-sender", "order-events"]
    );
}

#[tokio::test]
async fn pages_follow_opaque_tokens_and_are_capped_at_100() {
    let emu = start_with(many_services(250), Faults::default()).await;
    let parent = "projects/paging-test/locations/us-central1";

    let first = emu
        .get(&format!("/v2/{parent}/services?pageSize=1000"))
        .await;
    assert_eq!(
        first.body["services"].as_array().unwrap().len(),
        100,
        "capped at 100"
    );
    let token = first.body["nextPageToken"].as_str().unwrap().to_string();
    assert!(
        !token.contains("svc") && token.parse::<u64>().is_err(),
        "opaque token: {token}"
    );
    let default = emu
        .get(&format!("/v2/{parent}/services?pageSize=0&pageToken="))
        .await;
    assert_eq!(default.body["services"].as_array().unwrap().len(), 100);

    let all = emu.list_all(&format!("{parent}/services"), 7).await;
    let expected: Vec<String> = (0..250).rev().map(|i| format!("svc-{i:03}")).collect();
    assert_eq!(ids(&all), expected, "every resource once, newest first");
    // Listing by project number continues the same collection.
    let by_number = emu
        .list_all("projects/111111111111/locations/us-central1/services", 100)
        .await;
    assert_eq!(ids(&by_number), expected);

    let bad = emu
        .get(&format!("/v2/{parent}/services?pageToken=not-a-token"))
        .await;
    bad.assert_error(400, "INVALID_ARGUMENT");
    let other_params = emu
        .get(&format!(
            "/v2/{parent}/services?pageToken={token}&showDeleted=true"
        ))
        .await;
    other_params.assert_error(400, "INVALID_ARGUMENT");
    let other_collection = emu
        .get(&format!("/v2/{parent}/jobs?pageToken={token}"))
        .await;
    other_collection.assert_error(400, "INVALID_ARGUMENT");
    let negative = emu.get(&format!("/v2/{parent}/services?pageSize=-1")).await;
    negative.assert_error(400, "INVALID_ARGUMENT");

    // An empty list is `{}`, like Google's JSON encoding.
    let empty = emu.get(&format!("/v2/{parent}/jobs")).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body, json!({}));
}

#[tokio::test]
async fn system_parameters_are_accepted_and_unknown_parameters_refused() {
    let emu = start_example().await;
    let query = "%24alt=json%3Benum-encoding%3Dint&alt=json&prettyPrint=false&fields=services.name\
                 &pageSize=0&pageToken=&showDeleted=false&key=k&quotaUser=q&%24.xgafv=2";
    let response = emu
        .http
        .get(format!("{}/v2/{PROD_US}/services?{query}", emu.url))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains('\n'),
        "prettyPrint=false answers compact JSON"
    );
    let pretty = emu
        .http
        .get(format!("{}/v2/{PROD_US}/services", emu.url))
        .bearer_auth("t");
    assert!(pretty
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains('\n'));

    let snake = emu
        .get(&format!(
            "/v2/{PROD_US}/services?page_size=1&show_deleted=true"
        ))
        .await;
    assert_eq!(
        ids(snake.body["services"].as_array().unwrap()),
        ["legacy-checkout"]
    );

    let unknown = emu
        .get(&format!("/v2/{PROD_US}/services?colour=blue"))
        .await;
    unknown.assert_error(400, "INVALID_ARGUMENT");
    let violation = &unknown.detail("BadRequest")["fieldViolations"][0]["description"];
    assert!(
        violation
            .as_str()
            .unwrap()
            .contains("Cannot bind query parameter"),
        "{violation}"
    );

    let patch_flags = emu
        .patch(
            &format!("/v2/{PROD_US}/services/cart?updateMask=binaryAuthorization&validateOnly=false&allowMissing=false"),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    assert_eq!(patch_flags.status, StatusCode::OK, "{:#}", patch_flags.body);
}

#[tokio::test]
async fn project_number_and_id_address_the_same_project() {
    let emu = start_example().await;
    let by_id = emu.get(&format!("/v2/{PROD_US}/services/checkout")).await;
    let by_number = emu
        .get("/v2/projects/123456789012/locations/us-central1/services/checkout")
        .await;
    assert_eq!(by_id.status, StatusCode::OK);
    assert_eq!(by_id.body, by_number.body);
    assert_eq!(
        by_id.body["name"],
        json!(format!("{PROD_US}/services/checkout"))
    );
    assert_eq!(by_id.body["binaryAuthorization"], json!({"policy": STRICT}));
    assert_eq!(
        by_id.body["generation"],
        json!("1"),
        "int64 as a JSON string"
    );
    assert_eq!(by_id.body["observedGeneration"], json!("1"));
    for field in [
        "uid",
        "etag",
        "createTime",
        "updateTime",
        "creator",
        "lastModifier",
        "latestReadyRevision",
        "uri",
    ] {
        assert!(by_id.body[field].is_string(), "{field} in {:#}", by_id.body);
    }
}

#[tokio::test]
async fn unknown_resources_and_paths_are_not_found() {
    let emu = start_example().await;
    for path in [
        format!("/v2/{PROD_US}/services/no-such-service"),
        format!("/v2/{PROD_US}/jobs/no-such-job"),
        format!("/v2/{PROD_US}/workerPools/no-such-pool"),
        format!("/v2/{PROD_US}/operations/no-such-operation"),
        "/v1/projects/acme-sec/platforms/cloudRun/policies/nope".to_string(),
        "/v3/whatever".to_string(),
    ] {
        emu.get(&path).await.assert_error(404, "NOT_FOUND");
    }
    let missing = emu
        .get(&format!("/v2/{PROD_US}/services/no-such-service"))
        .await;
    assert_eq!(
        missing.body["error"]["message"],
        json!("Resource 'no-such-service' of kind 'SERVICE' in region 'us-central1' in project 'acme-prod' does not exist.")
    );
    let patch_missing = emu
        .patch(
            &format!("/v2/{PROD_US}/services/ghost?updateMask=binaryAuthorization"),
            &json!({}),
        )
        .await;
    patch_missing.assert_error(404, "NOT_FOUND");
    let delete = emu
        .call_as(
            "tests",
            Method::DELETE,
            &format!("/v2/{PROD_US}/services/cart"),
            None,
        )
        .await;
    delete.assert_error(501, "UNIMPLEMENTED");
}

#[tokio::test]
async fn a_project_that_does_not_exist_is_permission_denied_not_not_found() {
    let emu = start_example().await;
    for (path, permission, resource) in [
        (
            "/v2/projects/nobody-here/locations/us-central1/services",
            "run.services.list",
            "projects/nobody-here/locations/us-central1/services",
        ),
        (
            "/v2/projects/nobody-here/locations/us-central1/jobs/j",
            "run.jobs.get",
            "projects/nobody-here/locations/us-central1/jobs/j",
        ),
        (
            "/v1/projects/nobody-here/locations",
            "run.locations.list",
            "projects/nobody-here",
        ),
    ] {
        let reply = emu.get(path).await;
        reply.assert_error(403, "PERMISSION_DENIED");
        assert_eq!(
            reply.body["error"]["message"],
            json!(format!(
                "Permission '{permission}' denied on resource '{resource}' (or resource may not exist)."
            ))
        );
        let info = reply.detail("ErrorInfo");
        assert_eq!(info["reason"], json!("IAM_PERMISSION_DENIED"));
        assert_eq!(info["metadata"]["permission"], json!(permission));
    }
}

#[tokio::test]
async fn every_cloud_run_region_lists_and_only_a_location_that_is_no_region_is_an_error() {
    let emu = start_example().await;
    // acme-prod has resources in us-central1 and europe-west1 only: every other region of
    // the catalogue answers an empty list, for each kind.
    for kind in ["services", "jobs", "workerPools"] {
        for region in ["asia-east1", "africa-south1", "us-west4"] {
            let reply = emu
                .get(&format!("/v2/projects/acme-prod/locations/{region}/{kind}"))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
            assert_eq!(reply.body, json!({}));
        }
    }
    // A project with no region at all in the seed lists fine too.
    let sec = emu
        .get("/v2/projects/acme-sec/locations/us-central1/services")
        .await;
    assert_eq!((sec.status, sec.body), (StatusCode::OK, json!({})));
    // A malformed location is 400; a well-formed one that is no Cloud Run region, 404.
    for (region, http, status) in [
        ("us-central", 400, "INVALID_ARGUMENT"),
        ("US-CENTRAL1", 400, "INVALID_ARGUMENT"),
        ("-", 400, "INVALID_ARGUMENT"),
        ("asia-east9", 404, "NOT_FOUND"),
        ("moon-base1", 404, "NOT_FOUND"),
    ] {
        let reply = emu
            .get(&format!(
                "/v2/projects/acme-prod/locations/{region}/services"
            ))
            .await;
        reply.assert_error(http, status);
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(region),
            "{:#}",
            reply.body
        );
    }
}

#[tokio::test]
async fn locations_list_answers_the_whole_catalogue_whatever_the_project_runs() {
    let emu = start_example().await;
    let mut all = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let reply = emu
            .get(&format!(
                "/v1/projects/acme-sec/locations?pageSize=15&pageToken={token}"
            ))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        pages += 1;
        all.extend(
            reply.body["locations"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        match reply.body["nextPageToken"].as_str() {
            Some(next) => token = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 40, "{all:#?}");
    let ids: Vec<&str> = all
        .iter()
        .map(|l| l["locationId"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    for region in [
        "us-central1",
        "europe-west1",
        "asia-northeast1",
        "me-central2",
        "africa-south1",
    ] {
        assert!(ids.contains(&region), "{region} missing from {ids:?}");
    }
    let iowa = all
        .iter()
        .find(|l| l["locationId"] == "us-central1")
        .unwrap();
    assert_eq!(
        *iowa,
        json!({
            "name": "projects/acme-sec/locations/us-central1",
            "locationId": "us-central1",
            "displayName": "Iowa",
            "labels": {
                "cloud.googleapis.com/region": "us-central1",
                "run.googleapis.com/supportsPzs": "false",
            },
        })
    );
    // The same catalogue for a project with resources, addressed by number.
    let prod = emu.get("/v1/projects/123456789012/locations").await;
    assert_eq!(prod.body["locations"].as_array().unwrap().len(), 40);
    assert!(prod.body.get("nextPageToken").is_none());
}

#[tokio::test]
async fn platform_policies_are_served_per_project() {
    let emu = start_example().await;
    let strict = emu.get(&format!("/v1/{STRICT}")).await;
    assert_eq!(strict.status, StatusCode::OK);
    assert_eq!(strict.body["name"], json!(STRICT));
    assert!(strict.body["description"].is_string());
    let by_number = emu
        .get("/v1/projects/345678901234/platforms/cloudRun/policies/strict")
        .await;
    assert_eq!(by_number.body, strict.body);
    emu.get("/v1/projects/acme-prod/platforms/cloudRun/policies/strict")
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn a_masked_patch_changes_only_binary_authorization_and_bumps_the_bookkeeping() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/services/search-frontend");
    let before = emu.read(&name).await;
    let response = emu
        .http
        .patch(format!(
            "{}/v2/{name}?updateMask=binaryAuthorization",
            emu.url
        ))
        .bearer_auth("t")
        .header(
            "x-emulator-principal",
            "binauthz-operator@acme-ops.iam.gserviceaccount.com",
        )
        .json(&json!({
            "binaryAuthorization": {"useDefault": true},
            "labels": {"env": "hacked"},
            "annotations": {},
            "etag": before["etag"],
        }))
        .send()
        .await
        .unwrap();
    let op = emulator::reply(response).await;
    assert_eq!(op.status, StatusCode::OK, "{:#}", op.body);
    assert!(op.body["name"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{PROD_US}/operations/")));
    assert_eq!(op.body["done"], json!(true));
    assert_eq!(
        op.body["metadata"]["@type"],
        json!("type.googleapis.com/google.cloud.run.v2.Service")
    );
    assert_eq!(
        op.body["response"]["@type"],
        json!("type.googleapis.com/google.cloud.run.v2.Service")
    );
    assert_eq!(
        op.body["response"]["binaryAuthorization"],
        json!({"useDefault": true})
    );

    let after = emu.read(&name).await;
    assert_eq!(after["binaryAuthorization"], json!({"useDefault": true}));
    assert_eq!(
        after["labels"], before["labels"],
        "unmasked fields are not applied"
    );
    assert_eq!(after["annotations"], before["annotations"]);
    assert_eq!(after["template"], before["template"]);
    assert_eq!(after["generation"], json!("2"));
    assert_eq!(after["observedGeneration"], json!("2"));
    assert_ne!(after["etag"], before["etag"]);
    assert_ne!(after["updateTime"], before["updateTime"]);
    assert_eq!(after["uid"], before["uid"]);
    assert_eq!(after["createTime"], before["createTime"]);
    assert_eq!(
        after["lastModifier"],
        json!("binauthz-operator@acme-ops.iam.gserviceaccount.com")
    );
    assert_eq!(
        after["latestReadyRevision"], before["latestReadyRevision"],
        "no new revision"
    );

    // The proto spelling of the mask works too, on a worker pool.
    let pool = format!("{PROD_EU}/workerPools/fraud-scorer");
    let op = emu
        .patch(
            &format!("/v2/{pool}?update_mask=binary_authorization"),
            &json!({"binaryAuthorization": {"policy": STRICT}}),
        )
        .await;
    assert_eq!(
        op.body["response"]["@type"],
        json!("type.googleapis.com/google.cloud.run.v2.WorkerPool")
    );
    assert_eq!(
        emu.read(&pool).await["binaryAuthorization"],
        json!({"policy": STRICT})
    );

    let changes = emu.handle.changes();
    assert_eq!(changes.len(), 2);
    // Both had no Binary Authorization: the whole field appeared.
    assert_eq!(changes[0].fields, ["binaryAuthorization"]);
    assert_eq!(changes[1].fields, ["binaryAuthorization"]);
    assert_eq!(
        changes[0].by,
        "binauthz-operator@acme-ops.iam.gserviceaccount.com"
    );
}

#[tokio::test]
async fn an_update_mask_naming_another_field_is_refused() {
    let emu = start_example().await;
    for mask in [
        "labels",
        "binaryAuthorization,labels",
        "binaryAuthorisation",
        "*",
    ] {
        let reply = emu
            .patch(
                &format!("/v2/{PROD_US}/services/cart?updateMask={mask}"),
                &json!({"binaryAuthorization": {"useDefault": true}}),
            )
            .await;
        reply.assert_error(400, "INVALID_ARGUMENT");
        let violation = &reply.detail("BadRequest")["fieldViolations"][0];
        assert_eq!(
            violation["field"],
            json!("update_mask"),
            "{mask}: {:#}",
            reply.body
        );
    }
    assert!(emu.handle.changes().is_empty());
}

#[tokio::test]
async fn a_job_patch_replaces_the_whole_job_and_keeps_unknown_fields() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/jobs/nightly-billing");
    let mut job = emu.read(&name).await;
    let before = job.clone();
    job["binaryAuthorization"] = json!({"policy": STRICT});
    job["futureField"] = json!({"nested": [1, 2, 3]});
    job["generation"] = json!("999"); // output-only: ignored
    job["uid"] = json!("forged");
    let op = emu.patch(&format!("/v2/{name}"), &job).await;
    assert_eq!(op.status, StatusCode::OK, "{:#}", op.body);
    assert_eq!(
        op.body["response"]["@type"],
        json!("type.googleapis.com/google.cloud.run.v2.Job")
    );
    let after = emu.read(&name).await;
    assert_eq!(after["binaryAuthorization"], json!({"policy": STRICT}));
    assert_eq!(
        after["futureField"],
        json!({"nested": [1, 2, 3]}),
        "unknown fields round-trip"
    );
    assert_eq!(after["generation"], json!("2"));
    assert_eq!(after["uid"], before["uid"]);
    assert_eq!(after["template"], before["template"]);
    assert_eq!(
        emu.handle.changes()[0].fields,
        [
            "binaryAuthorization.policy",
            "binaryAuthorization.useDefault",
            "futureField"
        ]
    );

    // Sending only part of a job would wipe the rest: refused when the template is missing.
    let partial = emu
        .patch(
            &format!("/v2/{name}"),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    partial.assert_error(400, "INVALID_ARGUMENT");
    assert_eq!(
        partial.detail("BadRequest")["fieldViolations"][0]["field"],
        json!("job.template")
    );
    // jobs.patch has no updateMask.
    let masked = emu
        .patch(
            &format!("/v2/{name}?updateMask=binaryAuthorization"),
            &after,
        )
        .await;
    masked.assert_error(400, "INVALID_ARGUMENT");
}

#[tokio::test]
async fn validate_only_answers_the_result_without_changing_anything() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/services/search-frontend");
    let before = emu.read(&name).await;
    let op = emu
        .patch(
            &format!("/v2/{name}?updateMask=binaryAuthorization&validateOnly=true"),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    assert_eq!(op.status, StatusCode::OK);
    assert_eq!(op.body["done"], json!(true));
    assert_eq!(
        op.body["response"]["binaryAuthorization"],
        json!({"useDefault": true})
    );
    assert_eq!(emu.read(&name).await, before);
    assert!(emu.handle.changes().is_empty());
    // validateOnly still validates.
    let invalid = emu
        .patch(
            &format!("/v2/{name}?updateMask=binaryAuthorization&validateOnly=true"),
            &json!({"binaryAuthorization": {"policy": "projects/acme-sec/platforms/cloudRun/policies/nope"}}),
        )
        .await;
    invalid.assert_error(400, "INVALID_ARGUMENT");
}

#[tokio::test]
async fn a_stale_etag_is_aborted_and_a_missing_etag_is_not_checked() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/services/cart");
    let read_once = emu.read(&name).await;
    let first = emu
        .patch(
            &format!("/v2/{name}?updateMask=binaryAuthorization"),
            &json!({"binaryAuthorization": {"policy": STRICT}, "etag": read_once["etag"]}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let stale = emu
        .patch(
            &format!("/v2/{name}?updateMask=binaryAuthorization"),
            &json!({"binaryAuthorization": {"useDefault": true}, "etag": read_once["etag"]}),
        )
        .await;
    stale.assert_error(409, "ABORTED");
    let message = stale.body["error"]["message"].as_str().unwrap();
    let prefix = "Conflict for resource 'cart': version '";
    assert!(message.starts_with(prefix), "{message}");
    let rest = &message[prefix.len()..];
    let (specified, rest) = rest
        .split_once("' was specified but current version is '")
        .unwrap();
    let current = rest.strip_suffix("'.").unwrap();
    assert!(
        specified.parse::<u64>().is_ok() && current.parse::<u64>().is_ok(),
        "{message}"
    );
    assert!(current.parse::<u64>().unwrap() > specified.parse::<u64>().unwrap());
    assert_eq!(
        emu.read(&name).await["binaryAuthorization"],
        json!({"policy": STRICT})
    );

    let blind = emu
        .patch(
            &format!("/v2/{name}?updateMask=binaryAuthorization"),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    assert_eq!(blind.status, StatusCode::OK);
    assert_eq!(
        emu.read(&name).await["binaryAuthorization"],
        json!({"useDefault": true})
    );
}

#[tokio::test]
async fn binary_authorization_rules_are_enforced() {
    let emu = start_example().await;
    let path = format!("/v2/{PROD_US}/services/cart?updateMask=binaryAuthorization");
    let refused = [
        json!({"binaryAuthorization": {"useDefault": true, "policy": STRICT}}),
        json!({"binaryAuthorization": {"useDefault": false, "breakglassJustification": "urgent"}}),
        json!({"binaryAuthorization": {"breakglassJustification": "urgent"}}),
        json!({"binaryAuthorization": {"policy": "projects/acme-sec/platforms/cloudRun/policies/missing"}}),
        json!({"binaryAuthorization": {"policy": "strict"}}),
        json!({"binaryAuthorization": {"usedefault": true}}),
        json!({"binaryAuthorization": {"useDefault": "yes"}}),
        json!({"binaryAuthorization": "default"}),
        json!([1, 2]),
    ];
    for body in refused {
        let reply = emu.patch(&path, &body).await;
        reply.assert_error(400, "INVALID_ARGUMENT");
        assert!(
            !reply.detail("BadRequest").is_null(),
            "{body}: {:#}",
            reply.body
        );
    }
    let unknown_policy = emu
        .patch(&path, &json!({"binaryAuthorization": {"policy": "projects/acme-sec/platforms/cloudRun/policies/missing"}}))
        .await;
    assert!(unknown_policy.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("policies/missing"));
    let malformed = emu
        .http
        .patch(format!("{}{path}", emu.url))
        .bearer_auth("t")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    emulator::reply(malformed)
        .await
        .assert_error(400, "INVALID_ARGUMENT");
    assert!(
        emu.handle.changes().is_empty(),
        "nothing refused was applied"
    );

    let accepted = [
        json!({"binaryAuthorization": {"policy": STRICT, "breakglassJustification": "INC-1"}}),
        json!({"binaryAuthorization": {"useDefault": true, "breakglassJustification": "INC-2"}}),
        json!({"binaryAuthorization": {"policy": "projects/345678901234/platforms/cloudRun/policies/strict"}}),
        json!({"binaryAuthorization": {"useDefault": false}}),
        json!({}),
    ];
    for body in accepted {
        let reply = emu.patch(&path, &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{body}: {:#}", reply.body);
    }
    let cleared = emu.read(&format!("{PROD_US}/services/cart")).await;
    assert!(
        cleared.get("binaryAuthorization").is_none(),
        "a masked field absent from the body is cleared"
    );
}

#[tokio::test]
async fn operations_can_be_polled_and_waited_for() {
    let emu = start_example().await;
    let name = format!("{PROD_US}/services/search-frontend");
    emu.handle
        .set_faults(Faults {
            operation_delay_ms: 60_000,
            ..Faults::default()
        })
        .unwrap();
    let slow = emu
        .patch(
            &format!("/v2/{name}?updateMask=binaryAuthorization"),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    assert_eq!(slow.body["done"], json!(false));
    assert!(slow.body.get("response").is_none() && slow.body.get("error").is_none());
    assert_eq!(
        slow.body["metadata"]["@type"],
        json!("type.googleapis.com/google.cloud.run.v2.Service")
    );
    let op_name = slow.body["name"].as_str().unwrap().to_string();
    let polled = emu.get(&format!("/v2/{op_name}")).await;
    assert_eq!(polled.body["done"], json!(false));
    let resource = emu.read(&name).await;
    assert_eq!(resource["generation"], json!("2"));
    assert_eq!(
        resource["observedGeneration"],
        json!("1"),
        "not yet reconciled"
    );
    assert_eq!(resource["reconciling"], json!(true));
    let op_id = op_name.rsplit('/').next().unwrap();
    let waited = emu
        .post(
            &format!("/v2/projects/123456789012/locations/us-central1/operations/{op_id}:wait"),
            &json!({"timeout": "0.2s"}),
        )
        .await;
    assert_eq!(waited.status, StatusCode::OK);
    assert_eq!(
        waited.body["done"],
        json!(false),
        "wait may return before done"
    );

    emu.handle
        .set_faults(Faults {
            operation_delay_ms: 300,
            ..Faults::default()
        })
        .unwrap();
    let quick = emu
        .patch(
            &format!("/v2/{PROD_US}/workerPools/email-sender?updateMask=binaryAuthorization"),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    let quick_name = quick.body["name"].as_str().unwrap();
    let done = emu
        .post(
            &format!("/v2/{quick_name}:wait"),
            &json!({"timeout": "30s"}),
        )
        .await;
    assert_eq!(done.body["done"], json!(true));
    assert_eq!(
        done.body["response"]["@type"],
        json!("type.googleapis.com/google.cloud.run.v2.WorkerPool")
    );
    assert_eq!(done.body["response"]["observedGeneration"], json!("2"));
    assert!(done.body["response"].get("reconciling").is_none());
    let polled = emu.get(&format!("/v2/{quick_name}")).await;
    assert_eq!(polled.body, done.body);
}

#[tokio::test]
async fn a_failed_operation_carries_a_code_and_leaves_the_resource_unchanged() {
    let emu = start_example().await;
    emu.handle
        .set_faults(Faults {
            operation_failure_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let name = format!("{PROD_US}/services/search-frontend");
    let before = emu.read(&name).await;
    let op = emu
        .patch(
            &format!("/v2/{name}?updateMask=binaryAuthorization"),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    assert_eq!(op.status, StatusCode::OK);
    assert_eq!(op.body["done"], json!(true));
    assert!(op.body.get("response").is_none());
    let error = &op.body["error"];
    assert_eq!(error["code"], json!(13), "a google.rpc.Code number");
    assert!(error["message"].is_string());
    assert_eq!(error["details"], json!([]));
    assert!(
        error.get("status").is_none(),
        "no status string inside an operation"
    );
    assert_eq!(emu.read(&name).await, before);
}

#[tokio::test]
async fn calls_without_a_bearer_token_are_unauthenticated() {
    let emu = start_example().await;
    let url = format!("{}/v2/{PROD_US}/services", emu.url);
    let anonymous = emulator::reply(emu.http.get(&url).send().await.unwrap()).await;
    anonymous.assert_error(401, "UNAUTHENTICATED");
    assert!(anonymous.headers.contains_key("www-authenticate"));
    assert_eq!(
        anonymous.detail("ErrorInfo")["reason"],
        json!("CREDENTIALS_MISSING")
    );
    let basic = emu
        .http
        .get(&url)
        .basic_auth("user", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    let query_token = emu
        .http
        .get(format!("{url}?access_token=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(query_token.status(), StatusCode::OK);

    emu.handle
        .set_faults(Faults {
            require_token: false,
            ..Faults::default()
        })
        .unwrap();
    assert_eq!(
        emu.http.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn deleted_resources_cannot_be_patched_and_missing_ones_are_not_created() {
    let emu = start_example().await;
    let deleted = emu
        .patch(
            &format!("/v2/{PROD_US}/services/legacy-checkout?updateMask=binaryAuthorization"),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    deleted.assert_error(400, "FAILED_PRECONDITION");
    let create = emu
        .patch(
            &format!(
                "/v2/{PROD_US}/services/brand-new?updateMask=binaryAuthorization&allowMissing=true"
            ),
            &json!({"binaryAuthorization": {"useDefault": true}}),
        )
        .await;
    create.assert_error(501, "UNIMPLEMENTED");
}
