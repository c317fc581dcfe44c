//! Behaviours of the real Cloud Run service that a first real run meets, observed over
//! loopback HTTP: unreadable and Google-managed Binary Authorization policies, the
//! organization policy on allowed policies, the 403 variants, Binary Authorization's
//! enforcement timing, job etags not enforced, and condition enums as numbers.
//! The estate is `tests/fixtures/emulator/real-service.yaml`.

use crate::support::emulator;

use cloudrun_emulator::{Faults, ProjectAccess, Seed};
use emulator::{start_with, Emu, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/emulator/real-service.yaml"
);
const PROD_US: &str = "projects/acme-prod/locations/us-central1";
const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";
const BCID: &str = "projects/bcid-cloud-run-policy/platforms/cloudRun/policies/bcidManagedPolicy";

async fn start() -> Emu {
    start_faulty(Faults::default()).await
}

async fn start_faulty(faults: Faults) -> Emu {
    let seed = Seed::from_file(SEED.as_ref()).expect("fixture seed loads");
    start_with(seed, faults).await
}

/// `PATCH ...?updateMask=binaryAuthorization` of a service or worker pool.
async fn set_policy(emu: &Emu, name: &str, value: Value) -> Reply {
    emu.patch(
        &format!("/v2/{name}?updateMask=binaryAuthorization"),
        &json!({ "binaryAuthorization": value }),
    )
    .await
}

async fn admin(emu: &Emu, path: &str, body: Value) -> Value {
    let reply = emu.admin(Method::POST, path, Some(&body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {:#}", reply.body);
    reply.body
}

fn permission_message(permission: &str, resource: &str) -> Value {
    json!(format!(
        "Permission '{permission}' denied on resource '{resource}' (or resource may not exist)."
    ))
}

#[tokio::test]
async fn unreadable_and_google_managed_policies_answer_403_whether_they_exist_or_not() {
    let emu = start().await;
    let missing = "projects/acme-sec/platforms/cloudRun/policies/does-not-exist";
    for name in [STRICT, missing, BCID] {
        let reply = emu.get(&format!("/v1/{name}")).await;
        reply.assert_error(403, "PERMISSION_DENIED");
        assert_eq!(
            reply.body["error"]["message"],
            permission_message("binaryauthorization.platformPolicies.get", name)
        );
        assert_eq!(
            reply.detail("ErrorInfo")["metadata"]["permission"],
            json!("binaryauthorization.platformPolicies.get")
        );
    }
    // A readable project: the policy as seeded, without the emulator-only authorizedImages.
    let open = emu
        .get("/v1/projects/acme-prod/platforms/cloudRun/policies/open")
        .await;
    assert_eq!(open.status, StatusCode::OK, "{:#}", open.body);
    assert_eq!(
        open.body,
        json!({"name": "projects/acme-prod/platforms/cloudRun/policies/open",
               "description": "Authorizes every image."})
    );
    emu.get("/v1/projects/acme-prod/platforms/cloudRun/policies/nope")
        .await
        .assert_error(404, "NOT_FOUND");

    // Writes accept both: an unreadable policy that exists, and Google's managed one.
    for policy in [STRICT, BCID] {
        let reply = set_policy(
            &emu,
            &format!("{PROD_US}/services/web"),
            json!({"policy": policy}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        assert_eq!(reply.body["done"], json!(true));
        assert_eq!(
            emu.read(&format!("{PROD_US}/services/web")).await["binaryAuthorization"],
            json!({"policy": policy})
        );
    }
}

#[tokio::test]
async fn the_org_policy_effective_value_is_served_per_project() {
    let emu = start().await;
    let path = |p: &str| {
        format!(
            "/v2/projects/{p}/policies/run.allowedBinaryAuthorizationPolicies:getEffectivePolicy"
        )
    };
    let prod = emu.get(&path("acme-prod")).await;
    assert_eq!(prod.status, StatusCode::OK, "{:#}", prod.body);
    assert_eq!(
        prod.body,
        json!({
            "name": "projects/123456789012/policies/run.allowedBinaryAuthorizationPolicies",
            "spec": {"rules": [{"values": {"allowedValues": ["default", STRICT, BCID]}}]},
        })
    );
    let open = emu.get(&path("567890123456")).await;
    assert_eq!(open.body["spec"], json!({"rules": [{"allowAll": true}]}));
    let unset = emu.get(&path("acme-dev")).await;
    assert_eq!(
        unset.body,
        json!({"name": "projects/456789012345/policies/run.allowedBinaryAuthorizationPolicies",
               "spec": {}})
    );
    let closed = emu.get(&path("acme-closed")).await;
    closed.assert_error(403, "PERMISSION_DENIED");
    assert_eq!(
        closed.body["error"]["message"],
        permission_message(
            "orgpolicy.policy.get",
            "projects/acme-closed/policies/run.allowedBinaryAuthorizationPolicies"
        )
    );
    // The Org Policy API is another service: a disabled Cloud Run Admin API does not matter.
    assert_eq!(emu.get(&path("acme-disabled")).await.status, StatusCode::OK);
    emu.get("/v2/projects/acme-prod/policies/gcp.resourceLocations:getEffectivePolicy")
        .await
        .assert_error(501, "UNIMPLEMENTED");
}

#[tokio::test]
async fn a_write_the_org_policy_does_not_allow_is_refused_and_changes_nothing() {
    let emu = start().await;
    let web = format!("{PROD_US}/services/web");
    let before = emu.read(&web).await;
    let open = json!({"policy": "projects/acme-prod/platforms/cloudRun/policies/open"});
    let refused = set_policy(&emu, &web, open).await;
    refused.assert_error(400, "FAILED_PRECONDITION");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("constraints/run.allowedBinaryAuthorizationPolicies")
            && message.contains("projects/acme-prod/platforms/cloudRun/policies/open"),
        "{message}"
    );
    assert_eq!(
        refused.detail("PreconditionFailure")["violations"][0]["type"],
        json!("constraints/run.allowedBinaryAuthorizationPolicies")
    );
    assert_eq!(
        emu.read(&web).await,
        before,
        "the refused write changed nothing"
    );

    // Allowed values pass: default, and the strict policy named by its project's number.
    assert_eq!(
        set_policy(&emu, &web, json!({"useDefault": true}))
            .await
            .status,
        StatusCode::OK
    );
    let by_number = json!({"policy": "projects/345678901234/platforms/cloudRun/policies/strict"});
    assert_eq!(
        set_policy(&emu, &web, by_number).await.status,
        StatusCode::OK
    );
    // Clearing Binary Authorization is not an allowed value; validateOnly is refused alike.
    set_policy(&emu, &web, Value::Null)
        .await
        .assert_error(400, "FAILED_PRECONDITION");
    emu.patch(
        &format!("/v2/{web}?updateMask=binaryAuthorization&validateOnly=true"),
        &json!({"binaryAuthorization": {"useDefault": false}}),
    )
    .await
    .assert_error(400, "FAILED_PRECONDITION");
    // A job's whole-object write is judged on its result too.
    let job = format!("{PROD_US}/jobs/nightly");
    let mut body = emu.read(&job).await;
    body["labels"] = json!({"touched": "yes"});
    emu.patch(&format!("/v2/{job}"), &body)
        .await
        .assert_error(400, "FAILED_PRECONDITION");
    body["binaryAuthorization"] = json!({"useDefault": true});
    assert_eq!(
        emu.patch(&format!("/v2/{job}"), &body).await.status,
        StatusCode::OK
    );

    // denyAll refuses everything; an unset constraint refuses nothing.
    set_policy(
        &emu,
        "projects/acme-closed/locations/us-east1/services/locked",
        json!({"useDefault": true}),
    )
    .await
    .assert_error(400, "FAILED_PRECONDITION");
    let sandbox = "projects/acme-dev/locations/europe-west1/services/sandbox";
    assert_eq!(
        set_policy(&emu, sandbox, Value::Null).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_403_variants_say_what_is_wrong() {
    let emu = start().await;
    let list = |project: &str| format!("/v2/projects/{project}/locations/us-central1/services");

    let disabled = emu.get(&list("acme-disabled")).await;
    disabled.assert_error(403, "PERMISSION_DENIED");
    let url = "https://console.developers.google.com/apis/api/run.googleapis.com/overview?project=789012345678";
    assert_eq!(
        disabled.body["error"]["message"],
        json!(format!(
            "Cloud Run Admin API has not been used in project 789012345678 before or it is disabled. \
             Enable it by visiting {url} then retry. If you enabled this API recently, wait a few \
             minutes for the action to propagate to our systems and retry."
        ))
    );
    let info = disabled.detail("ErrorInfo");
    assert_eq!(info["reason"], json!("SERVICE_DISABLED"));
    assert_eq!(info["domain"], json!("googleapis.com"));
    assert_eq!(info["metadata"]["consumer"], json!("projects/789012345678"));
    assert_eq!(info["metadata"]["service"], json!("run.googleapis.com"));
    assert_eq!(info["metadata"]["activationUrl"], json!(url));
    assert_eq!(disabled.detail("Help")["links"][0]["url"], json!(url));
    // Every Cloud Run call, v1 locations too; the Binary Authorization API is not Cloud Run.
    emu.get("/v1/projects/acme-disabled/locations")
        .await
        .assert_error(403, "PERMISSION_DENIED");
    let policy = emu
        .get("/v1/projects/acme-disabled/platforms/cloudRun/policies/local")
        .await;
    assert_eq!(policy.status, StatusCode::OK, "{:#}", policy.body);

    let perimeter = emu.get(&list("acme-perimeter")).await;
    perimeter.assert_error(403, "PERMISSION_DENIED");
    let message = perimeter.body["error"]["message"].as_str().unwrap();
    let uid = message
        .strip_prefix(
            "Request is prohibited by organization's policy. vpcServiceControlsUniqueIdentifier: ",
        )
        .unwrap_or_else(|| panic!("{message}"));
    let info = perimeter.detail("ErrorInfo");
    assert_eq!(info["reason"], json!("SECURITY_POLICY_VIOLATED"));
    assert_eq!(info["domain"], json!("googleapis.com"));
    assert_eq!(info["metadata"]["uid"], json!(uid));
    assert_eq!(
        perimeter.detail("PreconditionFailure")["violations"][0]["type"],
        json!("VPC_SERVICE_CONTROLS")
    );

    // A project the caller cannot see reads exactly like one that does not exist.
    let gone = emu.get(&list("acme-gone")).await;
    let nowhere = emu.get(&list("no-such-project")).await;
    for reply in [&gone, &nowhere] {
        reply.assert_error(403, "PERMISSION_DENIED");
        assert_eq!(
            reply.detail("ErrorInfo")["reason"],
            json!("IAM_PERMISSION_DENIED")
        );
    }
    assert_eq!(
        gone.body["error"]["message"],
        permission_message(
            "run.services.list",
            "projects/acme-gone/locations/us-central1/services"
        )
    );

    // The same at runtime, per project, through the faults (overriding the seed).
    emu.handle
        .set_faults(Faults {
            project_access: [
                ("123456789012".to_string(), ProjectAccess::ApiDisabled),
                ("acme-disabled".to_string(), ProjectAccess::Granted),
            ]
            .into(),
            ..Faults::default()
        })
        .unwrap();
    let prod = emu.get(&format!("/v2/{PROD_US}/services")).await;
    assert_eq!(
        prod.detail("ErrorInfo")["reason"],
        json!("SERVICE_DISABLED")
    );
    assert_eq!(emu.get(&list("acme-disabled")).await.status, StatusCode::OK);
    let faults = emu.admin(Method::GET, "/faults", None).await;
    assert_eq!(
        faults.body["projectAccess"],
        json!({"123456789012": "apiDisabled", "acme-disabled": "granted"})
    );
}

#[tokio::test]
async fn enforcement_refuses_the_next_unauthorized_deploy_traffic_change_and_execution() {
    let emu = start().await;
    let web = format!("{PROD_US}/services/web");
    let serving = emu.read(&web).await;
    let nginx_revision = serving["latestReadyRevision"].as_str().unwrap().to_string();

    // Setting the policy succeeds although the serving image (docker.io) is not authorized
    // by the project's default policy: enforcement is not retroactive.
    let set = set_policy(&emu, &web, json!({"useDefault": true})).await;
    assert_eq!(set.status, StatusCode::OK, "{:#}", set.body);
    assert!(set.body["response"].is_object(), "{:#}", set.body);
    let after = emu.read(&web).await;
    assert_eq!(after["latestReadyRevision"], json!(nginx_revision));
    assert_eq!(
        after["terminalCondition"]["state"],
        json!("CONDITION_SUCCEEDED")
    );

    // The user's next deploy of an unauthorized image is refused; the old revision serves.
    let refused = admin(
        &emu,
        "/deploy",
        json!({"name": web, "image": "docker.io/library/nginx:1.28"}),
    )
    .await;
    assert_eq!(refused["refused"], json!(true));
    let resource = &refused["resource"];
    assert_eq!(resource["latestReadyRevision"], json!(nginx_revision));
    let blocked = resource["latestCreatedRevision"].as_str().unwrap();
    assert_ne!(blocked, nginx_revision);
    assert_eq!(
        resource["terminalCondition"]["reason"],
        json!("CONTAINER_IMAGE_UNAUTHORIZED")
    );
    assert_eq!(
        resource["terminalCondition"]["message"],
        json!(format!(
            "Revision {blocked} uses an unauthorized container image. Container image \
             docker.io/library/nginx:1.28 is not authorized by policy."
        ))
    );

    // An authorized image deploys and serves.
    let good = admin(
        &emu,
        "/deploy",
        json!({"name": web, "image": "us-docker.pkg.dev/acme-prod/web/web:2.0.0"}),
    )
    .await;
    assert_eq!(good["refused"], json!(false));
    let good_revision = good["resource"]["latestReadyRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        good["resource"]["latestCreatedRevision"],
        json!(good_revision)
    );
    assert_eq!(
        good["resource"]["terminalCondition"]["state"],
        json!("CONDITION_SUCCEEDED")
    );

    // A rollback to the nginx revision is a traffic change to an unauthorized image: refused,
    // the authorized revision keeps serving.
    let rollback = admin(
        &emu,
        "/traffic",
        json!({"name": web, "revision": nginx_revision}),
    )
    .await;
    assert_eq!(rollback["refused"], json!(true));
    let resource = &rollback["resource"];
    assert_eq!(
        resource["traffic"],
        json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": nginx_revision, "percent": 100}])
    );
    assert_eq!(
        resource["trafficStatuses"],
        json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]),
        "serving continues as before"
    );
    assert_eq!(
        resource["terminalCondition"]["reason"],
        json!("CONTAINER_IMAGE_UNAUTHORIZED")
    );
    let routes = resource["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "RoutesReady")
        .unwrap();
    assert_eq!(routes["state"], json!("CONDITION_FAILED"));
    // Traffic to the authorized revision is fine.
    let forward = admin(
        &emu,
        "/traffic",
        json!({"name": web, "revision": good_revision}),
    )
    .await;
    assert_eq!(forward["refused"], json!(false));
    assert_eq!(
        forward["resource"]["trafficStatuses"][0]["revision"],
        json!(good_revision)
    );
    assert_eq!(
        forward["resource"]["terminalCondition"]["state"],
        json!("CONDITION_SUCCEEDED")
    );
    let unknown = emu
        .admin(
            Method::POST,
            "/traffic",
            Some(&json!({"name": web, "revision": "web-99999-zzz"})),
        )
        .await;
    unknown.assert_error(404, "NOT_FOUND");

    // Through the API, a template change to an unauthorized image: the write is accepted,
    // its operation fails, the previous revision keeps serving.
    let mut body = emu.read(&web).await;
    body["template"]["containers"][0]["image"] = json!("docker.io/library/nginx:latest");
    let op = emu.patch(&format!("/v2/{web}"), &body).await;
    assert_eq!(op.status, StatusCode::OK, "{:#}", op.body);
    assert_eq!(op.body["error"]["code"], json!(9), "{:#}", op.body);
    assert!(op.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("uses an unauthorized container image"));
    assert_eq!(
        emu.read(&web).await["latestReadyRevision"],
        json!(good_revision)
    );

    // Jobs: the update succeeds, the next execution fails.
    let job = format!("{PROD_US}/jobs/nightly");
    let mut body = emu.read(&job).await;
    body["binaryAuthorization"] = json!({"useDefault": true});
    let update = emu.patch(&format!("/v2/{job}"), &body).await;
    assert_eq!(update.status, StatusCode::OK, "{:#}", update.body);
    assert!(update.body["response"].is_object(), "{:#}", update.body);
    let run = admin(&emu, "/execute", json!({"name": job})).await;
    assert_eq!(run["refused"], json!(true));
    assert_eq!(
        run["execution"]["completionStatus"],
        json!("EXECUTION_FAILED")
    );
    assert_eq!(
        run["resource"]["terminalCondition"]["reason"],
        json!("CONTAINER_IMAGE_UNAUTHORIZED")
    );
    assert_eq!(run["resource"]["executionCount"], json!(1));
    // An authorized image: the job runs.
    let mut body = emu.read(&job).await;
    body["template"]["template"]["containers"][0]["image"] =
        json!("us-docker.pkg.dev/acme-prod/batch/nightly:1.0.0");
    assert_eq!(
        emu.patch(&format!("/v2/{job}"), &body).await.status,
        StatusCode::OK
    );
    let run = admin(&emu, "/execute", json!({"name": job})).await;
    assert_eq!(run["refused"], json!(false));
    assert_eq!(
        run["execution"]["completionStatus"],
        json!("EXECUTION_SUCCEEDED")
    );
    assert_eq!(run["resource"]["executionCount"], json!(2));

    // A named policy's authorizedImages: strict authorizes only the shop's images.
    let checkout = format!("{PROD_US}/services/checkout");
    let shop = admin(
        &emu,
        "/deploy",
        json!({"name": checkout, "image": "us-docker.pkg.dev/acme-prod/shop/checkout:1.1.0"}),
    )
    .await;
    assert_eq!(shop["refused"], json!(false));
    let elsewhere = admin(
        &emu,
        "/deploy",
        json!({"name": checkout, "image": "us-docker.pkg.dev/acme-prod/web/checkout:1.1.0"}),
    )
    .await;
    assert_eq!(elsewhere["refused"], json!(true));
}

#[tokio::test]
async fn job_etags_can_be_left_unenforced() {
    let emu = start().await;
    let job = format!("{PROD_US}/jobs/nightly");
    let service = format!("{PROD_US}/services/checkout");
    let stale_job = emu.read(&job).await;
    let stale_service = emu.read(&service).await;
    // Someone deploys both in between.
    admin(&emu, "/deploy", json!({"name": job})).await;
    admin(
        &emu,
        "/deploy",
        json!({"name": service, "image": "us-docker.pkg.dev/acme-prod/shop/checkout:1.0.1"}),
    )
    .await;

    let mut body = stale_job.clone();
    body["labels"] = json!({"team": "batch"});
    // (acme-prod's organization policy wants Binary Authorization on every write.)
    body["binaryAuthorization"] = json!({"useDefault": true});
    emu.patch(&format!("/v2/{job}"), &body)
        .await
        .assert_error(409, "ABORTED");

    emu.handle
        .set_faults(Faults {
            job_etag_ignored: true,
            ..Faults::default()
        })
        .unwrap();
    let applied = emu.patch(&format!("/v2/{job}"), &body).await;
    assert_eq!(applied.status, StatusCode::OK, "{:#}", applied.body);
    let now = emu.read(&job).await;
    assert_eq!(now["labels"], json!({"team": "batch"}));
    assert_eq!(
        now["template"], stale_job["template"],
        "the stale copy overwrote the deploy that landed in between"
    );
    // Services still check theirs.
    let mut body = stale_service.clone();
    body["binaryAuthorization"] = json!({"useDefault": true});
    emu.patch(
        &format!("/v2/{service}?updateMask=binaryAuthorization"),
        &body,
    )
    .await
    .assert_error(409, "ABORTED");
}

#[tokio::test]
async fn enum_encoding_int_answers_condition_enums_as_numbers() {
    let emu = start().await;
    let api = format!("{PROD_US}/services/api");
    let names = emu.read(&api).await;
    assert_eq!(
        names["terminalCondition"]["reason"],
        json!("CONTAINER_IMAGE_UNAUTHORIZED")
    );
    assert_eq!(
        names["terminalCondition"]["state"],
        json!("CONDITION_FAILED")
    );

    let numbers = emu
        .get(&format!("/v2/{api}?%24alt=json%3Benum-encoding%3Dint"))
        .await;
    assert_eq!(numbers.status, StatusCode::OK, "{:#}", numbers.body);
    assert_eq!(numbers.body["terminalCondition"]["reason"], json!(8));
    assert_eq!(numbers.body["terminalCondition"]["state"], json!(3));
    assert_eq!(numbers.body["terminalCondition"]["severity"], json!(1));
    let configurations = numbers.body["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ConfigurationsReady")
        .unwrap();
    assert_eq!(configurations["reason"], json!(8));
    let routes = numbers.body["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "RoutesReady")
        .unwrap();
    assert_eq!(routes["state"], json!(4));
    // Lists and operations too.
    let list = emu
        .get(&format!(
            "/v2/{PROD_US}/services?$alt=json;enum-encoding=int"
        ))
        .await;
    let listed = list.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == api)
        .unwrap();
    assert_eq!(listed["terminalCondition"]["reason"], json!(8));
    let op = emu
        .patch(
            &format!("/v2/{PROD_US}/workerPools/consumer?updateMask=binaryAuthorization&%24alt=json%3Benum-encoding%3Dint"),
            &json!({"binaryAuthorization": {"useDefault": true, "breakglassJustification": "incident 42"}}),
        )
        .await;
    assert_eq!(
        op.body["response"]["terminalCondition"]["state"],
        json!(4),
        "{:#}",
        op.body
    );
    // alt=json alone: names.
    let plain = emu.get(&format!("/v2/{api}?alt=json")).await;
    assert_eq!(
        plain.body["terminalCondition"]["reason"],
        json!("CONTAINER_IMAGE_UNAUTHORIZED")
    );
}
