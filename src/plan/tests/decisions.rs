//! Who owns each resource and what the planner decides about it.

use super::*;

#[test]
fn only_matched_resources_are_planned_and_deleted_ones_never() {
    let estate = [
        service("us-central1", "pay-1"),
        service("us-central1", "pay-2").deleted(),
        service("us-central1", "web"),
        service("europe-west1", "pay-3"),
        service("us-central1", "pay-4").project("acme-dev"),
        job("us-central1", "pay-5"),
    ];
    let plan = run(&[binding("a").names(["pay-*"])], &estate);
    let names: Vec<String> = decisions(&plan, "a").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["pay-1"]);
}

#[test]
fn labels_and_excludes_narrow_the_match() {
    let estate = [
        service("us-central1", "pay-1").labels([("env", "prod")]),
        service("us-central1", "pay-2").labels([("env", "dev")]),
        service("us-central1", "pay-sandbox").labels([("env", "prod")]),
    ];
    let plan = run(
        &[binding("a")
            .labels([("env", "prod")])
            .exclude(["*-sandbox"])],
        &estate,
    );
    let names: Vec<String> = decisions(&plan, "a").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["pay-1"]);
}

#[test]
fn compliance_needs_exactly_the_desired_policy() {
    let estate = [
        service("us-central1", "default").policy_default(),
        service("us-central1", "none").policy_none(),
        service("us-central1", "strict").policy_named("strict"),
        service("us-central1", "lax").policy_named("lax"),
    ];
    let plan = run(
        &[binding("d"), binding("s").policy("strict").priority(-1)],
        &estate,
    );
    assert_eq!(decision(&plan, "d", "default"), Some(Decision::Compliant));
    assert_eq!(decision(&plan, "d", "none"), Some(set_default(false)));
    assert_eq!(decision(&plan, "d", "strict"), Some(set_default(false)));
    assert_eq!(decision(&plan, "d", "lax"), Some(set_default(false)));

    let plan = run(&[binding("s").policy("strict")], &estate);
    assert_eq!(decision(&plan, "s", "strict"), Some(Decision::Compliant));
    assert_eq!(decision(&plan, "s", "default"), Some(set_named("strict")));
    assert_eq!(decision(&plan, "s", "lax"), Some(set_named("strict")));
    assert_eq!(decision(&plan, "s", "none"), Some(set_named("strict")));
}

#[test]
fn audit_mode_reports_what_enforce_would_fix_and_writes_nothing() {
    let estate = [
        service("us-central1", "ok").policy_default(),
        service("us-central1", "off").policy_none(),
        service("us-central1", "bg")
            .policy_default()
            .breakglass("incident 42"),
    ];
    let plan = run(&[binding("a").audit().clear_breakglass()], &estate);
    assert_eq!(
        decisions(&plan, "a"),
        [
            ("bg".to_owned(), Decision::Drifted),
            ("off".to_owned(), Decision::Drifted),
            ("ok".to_owned(), Decision::Compliant),
        ]
    );
    assert!(plan.writes().is_empty());
    let plan = run(&[binding("a").audit()], &estate);
    assert_eq!(decision(&plan, "a", "bg"), Some(Decision::Breakglass));
}

#[test]
fn breakglass_is_reported_under_allow_and_cleared_under_clear() {
    let estate = [
        service("us-central1", "bg-ok")
            .policy_default()
            .breakglass("incident 42"),
        service("us-central1", "bg-off")
            .policy_none()
            .breakglass("incident 43"),
    ];
    let allow = run(&[binding("a")], &estate);
    assert_eq!(decision(&allow, "a", "bg-ok"), Some(Decision::Breakglass));
    assert_eq!(
        decision(&allow, "a", "bg-off"),
        Some(set_default(false)),
        "the policy is still enforced and the justification kept"
    );
    let clear = run(&[binding("a").clear_breakglass()], &estate);
    assert_eq!(decision(&clear, "a", "bg-ok"), Some(set_default(true)));
    assert_eq!(decision(&clear, "a", "bg-off"), Some(set_default(true)));
}

#[test]
fn the_highest_priority_owns_and_lower_ones_are_superseded() {
    let estate = [service("us-central1", "pay-1")];
    let plan = run(
        &[
            binding("low").policy("lax"),
            binding("high").policy("strict").priority(10),
        ],
        &estate,
    );
    assert_eq!(decision(&plan, "high", "pay-1"), Some(set_named("strict")));
    assert_eq!(
        decision(&plan, "low", "pay-1"),
        Some(Decision::Superseded {
            by: keys(&["high"]),
            priority: 10
        })
    );
    assert_eq!(plan.writes().len(), 1);
}

#[test]
fn equal_priorities_with_the_same_policy_co_own() {
    let estate = [service("us-central1", "pay-1").breakglass("incident")];
    let plan = run(&[binding("a"), binding("b").clear_breakglass()], &estate);
    assert_eq!(decision(&plan, "a", "pay-1"), Some(set_default(false)));
    assert_eq!(decision(&plan, "b", "pay-1"), Some(set_default(true)));
    let writes = plan.writes();
    assert_eq!(writes.len(), 1, "one write per resource");
    assert_eq!(
        writes[0].remediation,
        Remediation {
            desired: DesiredPolicy::ProjectDefault,
            breakglass: BreakglassChange::Clear,
        }
    );
    assert_eq!(writes[0].bindings, [key("a"), key("b")]);
}

#[test]
fn equal_priorities_with_different_policies_conflict_and_nobody_writes() {
    let estate = [
        service("us-central1", "pay-1"),
        service("us-central1", "web").policy_default(),
    ];
    let plan = run(
        &[
            binding("a").names(["pay-*"]),
            binding("b").policy("strict").names(["pay-1"]),
            binding("c").policy("strict").names(["pay-1"]),
            binding("low").priority(-5),
        ],
        &estate,
    );
    assert_eq!(
        decision(&plan, "a", "pay-1"),
        Some(Decision::Conflicted {
            with: keys(&["b", "c"])
        })
    );
    assert_eq!(
        decision(&plan, "b", "pay-1"),
        Some(Decision::Conflicted { with: keys(&["a"]) })
    );
    assert_eq!(
        decision(&plan, "low", "pay-1"),
        Some(Decision::Superseded {
            by: keys(&["a", "b", "c"]),
            priority: 0
        }),
        "a lower binding does not step in while the owners conflict"
    );
    assert_eq!(decision(&plan, "low", "web"), Some(Decision::Compliant));
    assert!(plan.writes().is_empty());
}

#[test]
fn suspended_and_invalid_bindings_step_aside() {
    let estate = [service("us-central1", "pay-1")];
    let plan = run(
        &[
            binding("a"),
            binding("paused").policy("strict").suspended(),
            binding("broken").policy("strict").priority(100).invalid(),
        ],
        &estate,
    );
    assert_eq!(decision(&plan, "a", "pay-1"), Some(set_default(false)));
    let paused = plan.binding(&key("paused")).unwrap();
    assert_eq!(paused.activity(), &Activity::Suspended);
    assert!(paused.targets().is_empty());
    let broken = plan.binding(&key("broken")).unwrap();
    assert!(matches!(broken.activity(), Activity::Invalid(_)));
    assert!(broken.targets().is_empty());
}

#[test]
fn a_binding_given_twice_is_refused() {
    let a = binding("a");
    let err = plan(&[a.input(), a.input()], &[]).unwrap_err();
    assert_eq!(err.binding(), &key("a"));
    assert_eq!(
        err.to_string(),
        "binding platform/a is given more than once; each binding needs a unique namespace/name"
    );
}

#[test]
fn other_kinds_are_planned_with_their_own_selectors() {
    let estate = [
        service("us-central1", "nightly"),
        job("us-central1", "nightly"),
    ];
    let plan = run(&[binding("a").no_services().jobs(["night*"])], &estate);
    let ids: Vec<ResourceKind> = plan
        .binding(&key("a"))
        .unwrap()
        .targets()
        .iter()
        .map(|t| t.resource.id.kind)
        .collect();
    assert_eq!(ids, [ResourceKind::Job]);
}
