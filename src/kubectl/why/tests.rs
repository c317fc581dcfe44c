//! `why`, unit-tested: names, matching, ownership, the sentences.

use super::*;
use serde_json::json;

/// The shared test binding, in namespace `ns`, with these spec overrides.
fn binding(ns: &str, name: &str, spec: serde_json::Value) -> Arc<BinAuthzBinding> {
    let mut b = crate::testing::binding(name, spec);
    b.metadata.namespace = Some(ns.to_owned());
    Arc::new(b)
}

fn service(name: &str, labels: &[(&str, &str)]) -> ObservedResource {
    ObservedResource {
        id: parse_resource_name(&format!(
            "projects/acme-prod/locations/us-central1/services/{name}"
        ))
        .unwrap(),
        labels: labels.iter().copied().collect(),
        deleted: false,
        policy: ObservedPolicy::None,
        breakglass: None,
        deploy_blocked: None,
        last_change: None,
        running: Default::default(),
    }
}

const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";

#[test]
fn resource_names_parse_or_name_the_expected_form() {
    let id = parse_resource_name("projects/p1/locations/europe-west1/workerPools/pool").unwrap();
    assert_eq!(id.kind, ResourceKind::WorkerPool);
    assert_eq!(
        (id.project.as_str(), id.location.as_str(), id.name.as_str()),
        ("p1", "europe-west1", "pool")
    );
    let job = parse_resource_name("//run.googleapis.com/projects/p/locations/l/jobs/j").unwrap();
    assert_eq!(job.kind, ResourceKind::Job);
    for bad in [
        "checkout",
        "projects/p/locations/l/services",
        "projects/p/locations/l/functions/f",
        "projects/p/regions/l/services/s",
        "projects//locations/l/services/s",
        "projects/p/locations/l/services/s/revisions/r",
    ] {
        let err = parse_resource_name(bad).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("RESOURCE {bad:?} is not")),
            "{err}"
        );
        assert!(
            err.ends_with(
                "expected projects/PROJECT/locations/LOCATION/{services|jobs|workerPools}/NAME"
            ),
            "{err}"
        );
    }
}

#[test]
fn the_highest_priority_owns_and_the_others_say_why_not() {
    let bindings = [
        binding("a", "all", json!({"priority": 0})),
        binding(
            "b",
            "checkout",
            json!({"priority": 10, "targets": {"services": {"names": ["check*"]}}}),
        ),
        binding(
            "c",
            "excluder",
            json!({"targets": {"services": {"names": ["*"], "exclude": ["checkout"]}}}),
        ),
        binding("d", "eu", json!({"locations": ["europe-west1"]})),
        binding("e", "jobs", json!({"targets": {"jobs": {"names": ["*"]}}})),
        binding(
            "f",
            "labelled",
            json!({"targets": {"services": {"labelSelector": {"matchLabels": {"env": "prod"}}}}}),
        ),
        binding("g", "paused", json!({"priority": 100, "suspend": true})),
        binding("h", "other", json!({"project": "acme-staging"})),
    ];
    let e = explain(
        &bindings,
        &Tenancy::open(),
        &service("checkout", &[("env", "dev")]),
        Source::Offline,
        "all namespaces".into(),
    )
    .unwrap();
    assert_eq!(e.other_projects, 1);
    let by_name: BTreeMap<&str, &BindingVerdict> =
        e.bindings.iter().map(|v| (v.name.as_str(), v)).collect();
    assert_eq!(
        by_name["checkout"].role,
        Some(Role::Owner {
            decision: OwnerDecision::Remediate {
                policy: "default".into(),
                clear_breakglass: false
            }
        })
    );
    assert_eq!(
        by_name["all"].role,
        Some(Role::Superseded {
            by: vec!["b/checkout".into()],
            priority: 10
        })
    );
    assert_eq!(
        by_name["excluder"].matching,
        MatchResult::Excluded {
            pattern: "checkout".into()
        }
    );
    assert!(matches!(
        by_name["eu"].matching,
        MatchResult::LocationNotCovered { .. }
    ));
    assert_eq!(by_name["jobs"].matching, MatchResult::KindNotTargeted);
    assert_eq!(by_name["labelled"].matching, MatchResult::LabelsDoNotMatch);
    assert_eq!(by_name["paused"].participation, Participation::Suspended);
    assert_eq!(by_name["paused"].role, None);
    assert_eq!(
        e.ownership,
        Ownership::Owned {
            owners: vec!["b/checkout".into()],
            priority: 10,
            superseded: 1
        }
    );
    assert_eq!(
        e.action,
        OperatorAction::Write {
            policy: "default".into(),
            clear_breakglass: false,
            bindings: vec!["b/checkout".into()],
            only_if_drifted: true
        }
    );
    // JSON fields are camelCase, inside the tagged variants too.
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(
        json["action"],
        json!({"result": "write", "policy": "default", "clearBreakglass": false,
               "bindings": ["b/checkout"], "onlyIfDrifted": true})
    );
    assert_eq!(
        json["bindings"][1]["role"],
        json!({"role": "owner", "decision": {"decision": "remediate", "policy": "default", "clearBreakglass": false}})
    );
    assert_eq!(json["otherProjects"], 1);
    let mut out = Vec::new();
    write_text(&e, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(
            "Owner: b/checkout, priority 10, the highest of 2 matching bindings (1 superseded)"
        ),
        "{text}"
    );
    assert!(text.contains("Operator: if it does not carry default (not read here), sets policy default for b/checkout (Enforce)"), "{text}");
    assert!(text.contains("no: excluded by \"checkout\""), "{text}");
    assert!(text.contains("steps aside (suspended)"), "{text}");

    // The label given makes the label selector match: an equal-priority co-owner.
    let e = explain(
        &bindings,
        &Tenancy::open(),
        &service("checkout", &[("env", "prod")]),
        Source::Offline,
        "all namespaces".into(),
    )
    .unwrap();
    let labelled = e.bindings.iter().find(|v| v.name == "labelled").unwrap();
    assert_eq!(
        labelled.matching,
        MatchResult::Matches {
            name: None,
            labels: true
        }
    );
    assert!(matches!(labelled.role, Some(Role::Superseded { .. })));
}

#[test]
fn a_conflict_leaves_the_resource_untouched() {
    let bindings = [
        binding("a", "default", json!({})),
        binding("b", "strict", json!({"policy": {"name": STRICT}})),
        binding("c", "low", json!({"priority": -5, "mode": "Audit"})),
    ];
    let e = explain(
        &bindings,
        &Tenancy::open(),
        &service("web", &[]),
        Source::Offline,
        "all namespaces".into(),
    )
    .unwrap();
    assert_eq!(
        e.ownership,
        Ownership::Conflicted {
            bindings: vec!["a/default".into(), "b/strict".into()],
            priority: 0
        }
    );
    assert_eq!(e.action, OperatorAction::LeftUntouched);
    let mut out = Vec::new();
    write_text(&e, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("conflicted with b/strict"), "{text}");
    assert!(
        text.contains(
            "Owner: none: conflict: a/default and b/strict match it at the same priority 0"
        ),
        "{text}"
    );
}

#[test]
fn live_state_decides_exactly() {
    let bindings = [binding("a", "audit", json!({"mode": "Audit"}))];
    let mut live = service("web", &[]);
    live.policy = ObservedPolicy::ProjectDefault;
    let e = explain(
        &bindings,
        &Tenancy::open(),
        &live,
        Source::CloudRun,
        "all namespaces".into(),
    )
    .unwrap();
    assert_eq!(e.action, OperatorAction::Nothing);
    assert_eq!(e.live.as_ref().map(|l| l.policy.as_str()), Some("default"));
    live.policy = ObservedPolicy::None;
    let e = explain(
        &bindings,
        &Tenancy::open(),
        &live,
        Source::CloudRun,
        "all namespaces".into(),
    )
    .unwrap();
    assert_eq!(
        e.action,
        OperatorAction::ReportDrift {
            bindings: vec!["a/audit".into()],
            only_if_drifted: false
        }
    );
    let e = explain(
        &[],
        &Tenancy::open(),
        &live,
        Source::CloudRun,
        "namespace x".into(),
    )
    .unwrap();
    assert_eq!(e.ownership, Ownership::Unowned);
    assert_eq!(e.action, OperatorAction::NotCovered);
}

#[test]
fn an_excepted_resource_says_which_exception_holds_the_fix_and_until_when() {
    let bindings = [binding("a", "all", json!({}))];
    let until = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(2))
        .unwrap();
    let exception: BinAuthzException = serde_json::from_value(json!({
        "apiVersion": "binauthz.dev/v1alpha1", "kind": "BinAuthzException",
        "metadata": {"name": "hotfix", "namespace": "a"},
        "spec": {"project": "acme-prod", "location": "us-central1", "kind": "Service",
                 "names": ["checkout"], "reason": "INC-1", "expiresAt": until.to_string()}
    }))
    .unwrap();
    let e = explain_with_exceptions(
        &bindings,
        &Tenancy::open(),
        std::slice::from_ref(&exception),
        &service("checkout", &[]),
        Source::Offline,
        "all namespaces".into(),
    )
    .unwrap();
    assert_eq!(
        e.action,
        OperatorAction::Excepted {
            exception: "a/hotfix".into(),
            until: until.to_string(),
            only_if_drifted: true,
        }
    );
    let mut out = Vec::new();
    text::write_text(&e, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("reports it Excepted and leaves it as is until")
            && out.contains("(BinAuthzException a/hotfix)"),
        "{out}"
    );
    // An exception of another namespace does not apply to this binding.
    let mut elsewhere = exception.clone();
    elsewhere.metadata.namespace = Some("b".into());
    let e = explain_with_exceptions(
        &bindings,
        &Tenancy::open(),
        &[elsewhere],
        &service("checkout", &[]),
        Source::Offline,
        "all namespaces".into(),
    )
    .unwrap();
    assert!(
        matches!(e.action, OperatorAction::Write { .. }),
        "{:?}",
        e.action
    );
}

#[test]
fn a_binding_no_grant_allows_steps_aside_and_the_next_one_owns() {
    let bindings = [
        binding("platform", "baseline", json!({"priority": 0})),
        binding("team", "takeover", json!({"priority": 500})),
    ];
    let grants = crate::plan::Grants::new([crate::plan::Grant {
        name: "platform".into(),
        spec: crate::api::BinAuthzTenancySpec {
            namespaces: vec!["platform".into()],
            namespace_selector: None,
            projects: vec!["acme-*".into()],
            max_priority: 0,
            policies: None,
        },
    }]);
    let e = explain(
        &bindings,
        &Tenancy::offline(grants),
        &service("checkout", &[]),
        Source::Offline,
        "all namespaces".into(),
    )
    .unwrap();
    let by_name: BTreeMap<&str, &BindingVerdict> =
        e.bindings.iter().map(|v| (v.name.as_str(), v)).collect();
    let Participation::NotPermitted { reason } = &by_name["takeover"].participation else {
        panic!("{:?}", by_name["takeover"].participation);
    };
    assert!(
        reason.contains("no BinAuthzTenancy grant selects namespace team"),
        "{reason}"
    );
    assert_eq!(by_name["takeover"].role, None);
    assert!(matches!(by_name["baseline"].role, Some(Role::Owner { .. })));
    assert!(matches!(e.ownership, Ownership::Owned { priority: 0, .. }));
}
