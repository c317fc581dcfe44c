//! Unit tests of the wire model.

use super::*;

use serde_json::{Map, Value};

use crate::policy::PolicyName;
use crate::policy::{DesiredPolicy, ObservedPolicy};
use crate::resource::{BreakglassChange, Remediation, ResourceId, ResourceKind};
use serde_json::json;

/// A service as `GET v2/projects/acme-prod/locations/us-central1/services/checkout`
/// answers it, with fields the model does not name.
pub(crate) fn service_json() -> Value {
    json!({
        "name": "projects/acme-prod/locations/us-central1/services/checkout",
        "uid": "2b4e7c61-6f1a-4d3b-9f55-0c2b8e1d7a90",
        "generation": "7",
        "labels": {"env": "prod", "team": "payments"},
        "annotations": {"run.googleapis.com/ingress-status": "all"},
        "createTime": "2026-01-02T03:04:05.123456Z",
        "updateTime": "2026-11-01T10:00:00.000001Z",
        "creator": "dev@acme.example",
        "lastModifier": "ci@acme-prod.iam.gserviceaccount.com",
        "client": "gcloud",
        "clientVersion": "520.0.0",
        "ingress": "INGRESS_TRAFFIC_ALL",
        "launchStage": "GA",
        "binaryAuthorization": {"useDefault": true, "breakglassJustification": "INC-4411 hotfix"},
        "template": {
            "revision": "checkout-00007-xyz",
            "labels": {"env": "prod"},
            "scaling": {"minInstanceCount": 1, "maxInstanceCount": 100},
            "timeout": "300s",
            "serviceAccount": "checkout@acme-prod.iam.gserviceaccount.com",
            "containers": [{
                "name": "app",
                "image": "us-docker.pkg.dev/acme-prod/apps/checkout@sha256:4f1d",
                "ports": [{"name": "http1", "containerPort": 8080}],
                "env": [{"name": "MODE", "value": "prod"}],
                "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": true, "startupCpuBoost": true}
            }],
            "maxInstanceRequestConcurrency": 80,
            "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2"
        },
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
        "observedGeneration": "7",
        "terminalCondition": {
            "type": "Ready", "state": "CONDITION_SUCCEEDED",
            "lastTransitionTime": "2026-11-01T10:00:05.5Z"
        },
        "conditions": [
            {"type": "RoutesReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": "2026-11-01T10:00:05.5Z"},
            {"type": "ConfigurationsReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": "2026-11-01T10:00:04Z"}
        ],
        "latestReadyRevision": "projects/acme-prod/locations/us-central1/services/checkout/revisions/checkout-00007-xyz",
        "latestCreatedRevision": "projects/acme-prod/locations/us-central1/services/checkout/revisions/checkout-00007-xyz",
        "trafficStatuses": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
        "uri": "https://checkout-abc123-uc.a.run.app",
        "urls": ["https://checkout-123456789.us-central1.run.app"],
        "satisfiesPzs": false,
        "someFieldFromTheFuture": {"nested": [1, 2.5, null, "x"]},
        "etag": "\"CJnwr7gGEJD5gN8B/cHJvamVjdHMvYWNtZS1wcm9kL2xvY2F0aW9ucy91cy1jZW50cmFsMS9zZXJ2aWNlcy9jaGVja291dA\""
    })
}

/// A job whose last deploy was refused by Binary Authorization, with int enums.
fn blocked_job_json() -> Value {
    json!({
        "name": "projects/acme-prod/locations/europe-west1/jobs/nightly-export",
        "generation": 12,
        "labels": {"tier": "batch"},
        "etag": "\"job-etag-12\"",
        "template": {
            "parallelism": 2,
            "taskCount": 4,
            "template": {
                "containers": [{"image": "europe-docker.pkg.dev/acme-prod/jobs/export:2.3.1"}],
                "maxRetries": 3,
                "timeout": "600s"
            }
        },
        "terminalCondition": {
            "type": "Ready",
            "state": 3,
            "reason": 8,
            "message": "Revision nightly-export-00012 uses an unauthorized container image. Container image europe-docker.pkg.dev/acme-prod/jobs/export:2.3.1 is not authorized by policy."
        },
        "executionCount": 41,
        "latestCreatedExecution": {"name": "nightly-export-abcde", "createTime": "2026-11-27T02:00:00Z"}
    })
}

fn named(name: &str) -> DesiredPolicy {
    DesiredPolicy::Named(PolicyName::parse(name).unwrap())
}

#[test]
fn resources_round_trip_every_field() {
    for fixture in [service_json(), blocked_job_json()] {
        let resource: Resource = serde_json::from_value(fixture.clone()).unwrap();
        let mut back = serde_json::to_value(&resource).unwrap();
        // The only normalization: int64 numbers are written as strings.
        if let Some(g) = fixture.get("generation").and_then(Value::as_i64) {
            assert_eq!(back["generation"], json!(g.to_string()));
            back["generation"] = json!(g);
        }
        assert_eq!(back, fixture);
    }
}

#[test]
fn int64_fields_are_strings_on_the_wire() {
    let resource: Resource = serde_json::from_value(service_json()).unwrap();
    assert_eq!(resource.generation, Some(Int64(7)));
    assert_eq!(resource.observed_generation, Some(Int64(7)));
    assert_eq!(serde_json::to_value(Int64(42)).unwrap(), json!("42"));
    assert!(serde_json::from_value::<Int64>(json!("nope")).is_err());
}

#[test]
fn a_service_is_observed_with_policy_labels_and_breakglass() {
    let resource: Resource = serde_json::from_value(service_json()).unwrap();
    let parts = resource.name_parts().unwrap();
    assert_eq!(parts.kind, ResourceKind::Service);
    assert_eq!(parts.id, "checkout");
    let id = ResourceId {
        kind: parts.kind,
        project: "acme-prod".into(),
        location: "us-central1".into(),
        name: parts.id.into(),
    };
    let observed = resource.observe(id.clone());
    assert_eq!(observed.id, id);
    assert_eq!(observed.policy, ObservedPolicy::ProjectDefault);
    assert_eq!(observed.breakglass.as_deref(), Some("INC-4411 hotfix"));
    assert_eq!(observed.labels.get("team"), Some("payments"));
    assert!(!observed.deleted);
    assert_eq!(observed.deploy_blocked, None);
    assert_eq!(
        resource.images(),
        vec!["us-docker.pkg.dev/acme-prod/apps/checkout@sha256:4f1d"]
    );
}

#[test]
fn a_refused_deploy_is_reported_with_cloud_runs_message_even_with_int_enums() {
    let resource: Resource = serde_json::from_value(blocked_job_json()).unwrap();
    let message = resource.deploy_blocked().unwrap();
    assert!(message.contains("is not authorized by policy"), "{message}");
    assert_eq!(resource.observed_policy(), ObservedPolicy::None);
    assert_eq!(
        resource.images(),
        vec!["europe-docker.pkg.dev/acme-prod/jobs/export:2.3.1"]
    );

    let mut by_name = blocked_job_json();
    by_name["terminalCondition"]["reason"] = json!("CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED");
    by_name["terminalCondition"]["state"] = json!("CONDITION_FAILED");
    let resource: Resource = serde_json::from_value(by_name.clone()).unwrap();
    assert!(resource.deploy_blocked().is_some());

    // A later successful reconciliation is not a blocked deploy.
    by_name["terminalCondition"]["state"] = json!("CONDITION_SUCCEEDED");
    let resource: Resource = serde_json::from_value(by_name).unwrap();
    assert_eq!(resource.deploy_blocked(), None);
}

#[test]
fn condition_reasons_read_by_name_and_by_number_as_in_condition_proto() {
    // (name, number, blocks a deploy)
    let cases = [
        ("CONTAINER_MISSING", 6, false),
        ("CONTAINER_PERMISSION_DENIED", 7, false),
        ("CONTAINER_IMAGE_UNAUTHORIZED", 8, true),
        ("CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED", 9, true),
        ("ENCRYPTION_KEY_PERMISSION_DENIED", 10, false),
        ("REVISION_FAILED", 3, false),
    ];
    for (name, number, blocks) in cases {
        for (reason, state) in [
            (json!(name), json!("CONDITION_FAILED")),
            (json!(number), json!(3)),
        ] {
            let condition: Condition =
                serde_json::from_value(json!({"type": "Ready", "state": state, "reason": reason}))
                    .unwrap();
            let typed = condition.common_reason().unwrap();
            assert_eq!(typed.as_str(), name, "{reason}");
            assert_eq!(condition.condition_state(), Some(ConditionState::Failed));
            assert_eq!(condition.blocks_deploy(), blocks, "{reason}");
        }
    }
    for (name, number) in CommonReason::TABLE.iter().map(|(_, n, i)| (*n, *i)) {
        assert_eq!(
            CommonReason::of(&EnumValue::Name(name.into())),
            CommonReason::of(&EnumValue::Number(number)),
            "{name}"
        );
    }
    let revision: Condition = serde_json::from_value(
        json!({"type": "Active", "state": "CONDITION_SUCCEEDED", "revisionReason": 3}),
    )
    .unwrap();
    assert_eq!(revision.revision_reason(), Some(RevisionReason::Retired));
    assert_eq!(revision.common_reason(), None);
    let execution: Condition = serde_json::from_value(
        json!({"type": "Completed", "state": 3, "executionReason": "NON_ZERO_EXIT_CODE"}),
    )
    .unwrap();
    assert_eq!(
        execution.execution_reason(),
        Some(ExecutionReason::NonZeroExitCode)
    );
    assert_eq!(
        ExecutionReason::of(&EnumValue::Number(6)),
        Some(ExecutionReason::DelayedStartPending)
    );
    // Typed fields still round-trip exactly.
    let back = serde_json::to_value(&execution).unwrap();
    assert_eq!(
        back,
        json!({"type": "Completed", "state": 3, "executionReason": "NON_ZERO_EXIT_CODE"})
    );
}

#[test]
fn unknown_enum_values_parse() {
    let mut job = blocked_job_json();
    job["terminalCondition"]["reason"] = json!("A_REASON_FROM_2030");
    job["terminalCondition"]["state"] = json!(77);
    let resource: Resource = serde_json::from_value(job).unwrap();
    assert_eq!(resource.deploy_blocked(), None);
}

#[test]
fn binary_authorization_states_map_to_observed_policies() {
    let cases = [
        (json!({}), ObservedPolicy::None),
        (json!({"useDefault": false}), ObservedPolicy::None),
        (json!({"useDefault": true}), ObservedPolicy::ProjectDefault),
        (json!({"policy": ""}), ObservedPolicy::None),
        (
            json!({"policy": "projects/sec/platforms/cloudRun/policies/strict"}),
            ObservedPolicy::Named("projects/sec/platforms/cloudRun/policies/strict".into()),
        ),
    ];
    for (value, want) in cases {
        let ba: BinaryAuthorization = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(ba.observed_policy(), want, "{value}");
    }
    let mut service = service_json();
    service
        .as_object_mut()
        .unwrap()
        .remove("binaryAuthorization");
    let resource: Resource = serde_json::from_value(service).unwrap();
    assert_eq!(resource.observed_policy(), ObservedPolicy::None);
    let empty: BinaryAuthorization =
        serde_json::from_value(json!({"useDefault": true, "breakglassJustification": ""})).unwrap();
    assert_eq!(empty.breakglass(), None);
}

#[test]
fn deleted_resources_are_marked() {
    let mut service = service_json();
    service["deleteTime"] = json!("2026-11-28T09:00:00Z");
    let resource: Resource = serde_json::from_value(service).unwrap();
    let parts = resource.name_parts().unwrap();
    let observed = resource.observe(ResourceId {
        kind: parts.kind,
        project: "p".into(),
        location: "l".into(),
        name: parts.id.into(),
    });
    assert!(observed.deleted);
}

#[test]
fn remediation_values_keep_or_clear_breakglass_and_keep_unknown_fields() {
    let current: BinaryAuthorization = serde_json::from_value(json!({
        "useDefault": false, "breakglassJustification": "INC-1 (verbatim: ünïcode, \"quotes\")", "future": 1
    }))
    .unwrap();
    let keep = Remediation {
        desired: DesiredPolicy::ProjectDefault,
        breakglass: BreakglassChange::Keep,
    };
    assert_eq!(
        serde_json::to_value(BinaryAuthorization::for_remediation(Some(&current), &keep)).unwrap(),
        json!({"useDefault": true, "breakglassJustification": "INC-1 (verbatim: ünïcode, \"quotes\")", "future": 1})
    );
    let clear = Remediation {
        desired: named("projects/sec/platforms/cloudRun/policies/strict"),
        breakglass: BreakglassChange::Clear,
    };
    assert_eq!(
        serde_json::to_value(BinaryAuthorization::for_remediation(Some(&current), &clear)).unwrap(),
        json!({"policy": "projects/sec/platforms/cloudRun/policies/strict", "future": 1})
    );
    assert_eq!(
        serde_json::to_value(BinaryAuthorization::for_remediation(None, &keep)).unwrap(),
        json!({"useDefault": true})
    );
}

#[test]
fn a_service_patch_carries_only_binary_authorization_and_the_etag() {
    let resource: Resource = serde_json::from_value(service_json()).unwrap();
    let remediation = Remediation {
        desired: named("projects/sec/platforms/cloudRun/policies/strict"),
        breakglass: BreakglassChange::Keep,
    };
    for kind in [ResourceKind::Service, ResourceKind::WorkerPool] {
        let body = resource.remediation_body(kind, &remediation).unwrap();
        assert_eq!(
            body,
            json!({
                "binaryAuthorization": {
                    "policy": "projects/sec/platforms/cloudRun/policies/strict",
                    "breakglassJustification": "INC-4411 hotfix"
                },
                "etag": service_json()["etag"]
            })
        );
    }
}

#[test]
fn a_job_patch_is_the_whole_job_with_only_binary_authorization_changed() {
    let original = blocked_job_json();
    let resource: Resource = serde_json::from_value(original.clone()).unwrap();
    let remediation = Remediation {
        desired: DesiredPolicy::ProjectDefault,
        breakglass: BreakglassChange::Clear,
    };
    let mut body = resource
        .remediation_body(ResourceKind::Job, &remediation)
        .unwrap();
    assert_eq!(body["binaryAuthorization"], json!({"useDefault": true}));
    assert_eq!(body["etag"], original["etag"]);
    let object = body.as_object_mut().unwrap();
    object.remove("binaryAuthorization");
    object.insert("generation".into(), json!(12));
    assert_eq!(body, original);
}

#[test]
fn names_parse_only_v2_resource_names() {
    let wp = NameParts::parse("projects/123456/locations/us-east1/workerPools/queue").unwrap();
    assert_eq!(wp.kind, ResourceKind::WorkerPool);
    assert_eq!(wp.project, "123456");
    for bad in [
        "",
        "projects/p/locations/l/services",
        "projects/p/locations/l/revisions/r",
        "projects/p/locations/l/services/s/revisions/r",
        "namespaces/p/services/s",
        "projects//locations/l/services/s",
    ] {
        assert_eq!(NameParts::parse(bad), None, "{bad}");
    }
}

#[test]
fn list_pages_read_every_collection_key() {
    for key in ["services", "jobs", "workerPools"] {
        let page: ListPage = serde_json::from_str(
            &json!({key: [service_json()], "nextPageToken": "t2"}).to_string(),
        )
        .unwrap();
        assert_eq!(page.items.len(), 1, "{key}");
        assert_eq!(page.next_page_token.as_deref(), Some("t2"));
    }
    let last: ListPage = serde_json::from_str("{}").unwrap();
    assert!(last.items.is_empty() && last.next_page_token.is_none());
}

#[test]
fn json_values_are_counted_without_decoding() {
    let page = json!({"services": [service_json(), blocked_job_json()], "nextPageToken": "t"});
    let text = page.to_string();
    let values = |v: &Value| -> usize {
        fn count(v: &Value) -> usize {
            1 + match v {
                Value::Array(a) => a.iter().map(count).sum(),
                Value::Object(o) => o.values().map(count).sum(),
                _ => 0,
            }
        }
        count(v)
    };
    let n = values(&page);
    assert!(json_values_at_most(text.as_bytes(), n));
    assert!(!json_values_at_most(text.as_bytes(), n - 1));
    assert!(!json_values_at_most(b"[0,0,0,0,0]", 5));
    assert!(json_values_at_most(b"[0,0,0,0,0]", 6));
    // Not JSON, or truncated within budget: left to the decoder to report.
    assert!(json_values_at_most(b"<html>", 1));
    assert!(json_values_at_most(b"{\"services\": [1, 2", 10));
}

#[test]
fn locations_yield_their_region() {
    let page: LocationsPage = serde_json::from_value(json!({"locations": [
        {"name": "projects/p/locations/us-central1", "locationId": "us-central1", "displayName": "Iowa"},
        {"name": "projects/p/locations/europe-west1"}
    ]}))
    .unwrap();
    let regions: Vec<_> = page.locations.iter().filter_map(Location::region).collect();
    assert_eq!(regions, ["us-central1", "europe-west1"]);
}

mod never_weakens {
    use super::*;
    use proptest::prelude::*;

    fn arb_current() -> impl Strategy<Value = Option<BinaryAuthorization>> {
        proptest::option::of(
            (
                proptest::option::of(".{0,12}"),
                proptest::option::of(any::<bool>()),
                proptest::option::of(
                    "(|projects/[a-z]{1,5}/platforms/cloudRun/policies/[a-z]{1,5})",
                ),
            )
                .prop_map(|(breakglass_justification, use_default, policy)| {
                    BinaryAuthorization {
                        breakglass_justification,
                        use_default,
                        policy,
                        other: Map::new(),
                    }
                }),
        )
    }

    fn arb_remediation() -> impl Strategy<Value = Remediation> {
        (
            prop_oneof![
                Just(DesiredPolicy::ProjectDefault),
                "[a-z]{1,8}"
                    .prop_map(|p| named(&format!("projects/sec/platforms/cloudRun/policies/{p}"))),
            ],
            prop_oneof![Just(BreakglassChange::Keep), Just(BreakglassChange::Clear)],
        )
            .prop_map(|(desired, breakglass)| Remediation {
                desired,
                breakglass,
            })
    }

    proptest! {
        #[test]
        fn the_written_value_enforces_the_desired_policy(current in arb_current(), remediation in arb_remediation()) {
            let written = BinaryAuthorization::for_remediation(current.as_ref(), &remediation);
            let json = serde_json::to_value(&written).unwrap();
            // Exactly one member of the oneof, never a disabling one.
            prop_assert_ne!(json.get("useDefault"), Some(&json!(false)));
            match &remediation.desired {
                DesiredPolicy::ProjectDefault => {
                    prop_assert_eq!(json.get("useDefault"), Some(&json!(true)));
                    prop_assert!(json.get("policy").is_none());
                }
                DesiredPolicy::Named(name) => {
                    prop_assert_eq!(json.get("policy"), Some(&json!(name.as_str())));
                    prop_assert!(json.get("useDefault").is_none());
                }
            }
            prop_assert_eq!(ObservedPolicy::from(&remediation.desired), written.observed_policy());
            // Breakglass: kept verbatim or removed, as asked.
            let want = match remediation.breakglass {
                BreakglassChange::Keep => current.as_ref().and_then(|c| c.breakglass_justification.clone()),
                BreakglassChange::Clear => None,
            };
            prop_assert_eq!(written.breakglass_justification, want);
        }
    }
}

#[test]
fn what_runs_comes_from_the_resources_own_fields() {
    use crate::resource::Workload;
    let parse = |v: Value| serde_json::from_value::<Resource>(v).unwrap();
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    // A split between a named revision (full name) and the latest one; 0 % is no traffic.
    let service = parse(json!({
        "name": "projects/acme-prod/locations/us-central1/services/checkout",
        "updateTime": "2026-11-01T10:00:00Z",
        "latestReadyRevision": "projects/acme-prod/locations/us-central1/services/checkout/revisions/checkout-00007-xyz",
        "trafficStatuses": [
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "checkout-00005-abc", "percent": 10},
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 90},
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "checkout-00001-old", "tag": "canary"},
        ],
    }));
    let running = service.running(ResourceKind::Service);
    assert_eq!(running.changed, Some(t("2026-11-01T10:00:00Z")));
    assert_eq!(
        running.workload,
        Workload::Revisions(["checkout-00005-abc".into(), "checkout-00007-xyz".into()].into())
    );
    // Worker pools: instance split statuses.
    let pool = parse(json!({
        "name": "projects/acme-prod/locations/us-central1/workerPools/events",
        "latestReadyRevision": "events-00002-k2p",
        "instanceSplitStatuses": [{"type": "INSTANCE_SPLIT_ALLOCATION_TYPE_LATEST", "percent": 100}],
    }));
    assert_eq!(
        pool.running(ResourceKind::WorkerPool).workload,
        Workload::Revisions(["events-00002-k2p".into()].into())
    );
    // No statuses at all: Cloud Run does not say.
    let silent = parse(json!({"name": "projects/p/locations/l/services/s"}));
    assert_eq!(
        silent.running(ResourceKind::Service).workload,
        Workload::Unknown
    );
    // Jobs: the latest execution, or none.
    let job = parse(json!({
        "name": "projects/acme-prod/locations/us-central1/jobs/nightly",
        "latestCreatedExecution": {"name": "nightly-x7k2p", "createTime": "2026-11-02T01:00:00Z"},
    }));
    assert_eq!(
        job.running(ResourceKind::Job).workload,
        Workload::Execution(Some(t("2026-11-02T01:00:00Z")))
    );
    let never = parse(json!({"name": "projects/acme-prod/locations/us-central1/jobs/new"}));
    assert_eq!(
        never.running(ResourceKind::Job).workload,
        Workload::Execution(None)
    );
}
