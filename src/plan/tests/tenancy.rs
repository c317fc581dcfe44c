//! Tenancy: what the grants permit, and how a refused binding steps out of ownership.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::api::{
    BinAuthzTenancySpec, LabelOperator, NamespaceRequirement, NamespaceSelector, PolicyGrant,
};

fn grant(name: &str, namespaces: &[&str], projects: &[&str], max_priority: i32) -> Grant {
    Grant {
        name: name.into(),
        spec: BinAuthzTenancySpec {
            namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
            namespace_selector: None,
            projects: projects.iter().map(|s| (*s).to_owned()).collect(),
            max_priority,
            policies: None,
        },
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn permission(grants: &Grants, namespace: &str, b: &TestBinding) -> Permission {
    let labels = labels(&[("kubernetes.io/metadata.name", namespace)]);
    grants.permission(
        Namespace {
            name: namespace,
            labels: &labels,
        },
        &b.spec,
    )
}

#[test]
fn without_grants_everything_is_open() {
    let b = binding("a").priority(1000);
    assert_eq!(
        permission(&Grants::default(), "anywhere", &b),
        Permission::Open
    );
}

#[test]
fn a_namespace_no_grant_selects_may_bind_nothing() {
    let grants = Grants::new([grant("team-a", &["team-a"], &["acme-*"], 0)]);
    let refused = permission(&grants, "team-b", &binding("a"));
    let Permission::NotPermitted(refusal) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(
        refusal,
        Refusal::Namespace {
            namespace: "team-b".into()
        }
    );
    assert!(refusal
        .to_string()
        .contains("no BinAuthzTenancy grant selects namespace team-b"));
}

#[test]
fn another_teams_project_is_refused_naming_the_grants_of_the_namespace() {
    let grants = Grants::new([
        grant("team-a", &["team-a"], &["acme-a-*"], 0),
        grant("team-b", &["team-b"], &["acme-prod"], 0),
    ]);
    let refused = permission(&grants, "team-a", &binding("a"));
    let message = match &refused {
        Permission::NotPermitted(r @ Refusal::Project { .. }) => r.to_string(),
        other => panic!("expected a project refusal, got {other:?}"),
    };
    assert!(
        message.contains("namespace team-a bind project acme-prod (its grants: team-a)"),
        "{message}"
    );
}

#[test]
fn the_priority_cap_is_the_highest_of_the_grants_listing_the_project() {
    let grants = Grants::new([
        grant("low", &["team-a"], &["acme-prod"], 10),
        grant("high", &["team-a"], &["acme-*"], 50),
        grant("other-project", &["team-a"], &["acme-x"], 900),
    ]);
    assert_eq!(
        permission(&grants, "team-a", &binding("a").priority(50)),
        Permission::Granted(vec!["high".into()])
    );
    assert_eq!(
        permission(&grants, "team-a", &binding("a").priority(10)),
        Permission::Granted(vec!["high".into(), "low".into()])
    );
    match permission(&grants, "team-a", &binding("a").priority(51)) {
        Permission::NotPermitted(Refusal::Priority { max, grants, .. }) => {
            assert_eq!(max, 50);
            assert_eq!(grants, vec!["high".to_owned(), "low".to_owned()]);
        }
        other => panic!("expected a priority refusal, got {other:?}"),
    }
}

#[test]
fn grants_add_up_across_objects() {
    // One grant gives the project at a low cap, another the same project at a higher cap
    // with only the default policy: a binding needing both is still refused (one grant must
    // allow everything), each half alone is allowed.
    let mut default_only = grant("default-only", &["team-a"], &["acme-prod"], 100);
    default_only.spec.policies = Some(PolicyGrant { names: Vec::new() });
    let grants = Grants::new([grant("named", &["team-a"], &["acme-prod"], 0), default_only]);
    let named = binding("a").policy("strict");
    assert!(permission(&grants, "team-a", &named).is_permitted());
    assert!(permission(&grants, "team-a", &binding("a").priority(100)).is_permitted());
    assert!(matches!(
        permission(&grants, "team-a", &named.priority(100)),
        Permission::NotPermitted(Refusal::Policy { .. })
    ));
}

#[test]
fn named_policies_are_matched_by_glob_and_use_default_is_always_allowed() {
    let mut g = grant("g", &["team-a"], &["acme-prod"], 0);
    g.spec.policies = Some(PolicyGrant {
        names: vec![policy_name("team-a-*")],
    });
    let grants = Grants::new([g]);
    assert!(permission(&grants, "team-a", &binding("a")).is_permitted());
    assert!(permission(&grants, "team-a", &binding("a").policy("team-a-strict")).is_permitted());
    let refused = permission(&grants, "team-a", &binding("a").policy("lax"));
    assert!(
        matches!(refused, Permission::NotPermitted(Refusal::Policy { .. })),
        "{refused:?}"
    );
}

#[test]
fn namespaces_are_selected_by_labels() {
    let mut g = grant("apps", &[], &["acme-prod"], 0);
    g.spec.namespace_selector = Some(NamespaceSelector {
        match_labels: labels(&[("example.com/tier", "apps")]),
        match_expressions: vec![NamespaceRequirement {
            key: "team".into(),
            operator: LabelOperator::NotIn,
            values: vec!["sandbox".into()],
        }],
    });
    let grants = Grants::new([g]);
    let decide = |pairs: &[(&str, &str)]| {
        let labels = labels(pairs);
        grants.permission(
            Namespace {
                name: "x",
                labels: &labels,
            },
            &binding("a").spec,
        )
    };
    assert!(decide(&[("example.com/tier", "apps"), ("team", "shop")]).is_permitted());
    assert!(!decide(&[("example.com/tier", "apps"), ("team", "sandbox")]).is_permitted());
    assert!(!decide(&[("team", "shop")]).is_permitted());
}

#[test]
fn a_refused_binding_neither_owns_supersedes_nor_conflicts() {
    let security = binding("security").priority(10);
    let rogue = binding("rogue").priority(900).policy("lax").not_permitted();
    let rival = binding("rival")
        .priority(10)
        .policy("other")
        .not_permitted();
    let inputs = [security.input(), rogue.input(), rival.input()];
    let live = [service("us-central1", "checkout")];
    let p = plan(&inputs, &live).unwrap();
    let owner = p.binding(&security.key).unwrap();
    assert!(matches!(
        owner.targets()[0].decision,
        Decision::Remediate(_)
    ));
    for refused in [&rogue, &rival] {
        let bp = p.binding(&refused.key).unwrap();
        assert!(matches!(bp.activity(), Activity::NotPermitted(_)));
        assert!(bp.targets().is_empty());
    }
    assert_eq!(p.writes().len(), 1);
    assert_eq!(p.writes()[0].bindings, vec![security.key.clone()]);
}

#[test]
fn a_refused_binding_reports_not_permitted_and_stalls() {
    let b = binding("a").not_permitted();
    let inputs = [b.input()];
    let p = plan(&inputs, &[]).unwrap();
    let outcomes = BTreeMap::new();
    let report = p.binding(&b.key).unwrap().status(&StatusInput {
        generation: Some(1),
        now: jiff::Timestamp::UNIX_EPOCH,
        pass_failure: None,
        findings: None,
        outcomes: &outcomes,
        previous: None,
        history: None,
        breakglass: None,
        revisions: None,
    });
    assert_eq!(report.ready, ReadyReason::NotPermitted);
    let ready = condition(&report.status.conditions, ConditionType::Ready).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotPermitted")
    );
    assert!(
        ready
            .message
            .contains("no BinAuthzTenancy grant selects namespace platform"),
        "{}",
        ready.message
    );
    let stalled = condition(&report.status.conditions, ConditionType::Stalled).unwrap();
    assert_eq!(stalled.status, "True");
}

#[test]
fn invalid_wins_over_not_permitted_which_wins_over_suspended() {
    let refusal = Permission::NotPermitted(Refusal::Namespace {
        namespace: "x".into(),
    });
    assert!(matches!(
        Activity::of(&binding("a").invalid().spec, &refusal),
        Activity::Invalid(_)
    ));
    assert!(matches!(
        Activity::of(&binding("a").suspended().spec, &refusal),
        Activity::NotPermitted(_)
    ));
}

/// A grant over a small alphabet of namespaces and projects.
fn arb_grant() -> impl Strategy<Value = Grant> {
    (
        "[a-z]{3}",
        prop::collection::vec(prop::sample::select(vec!["ns-a", "ns-b", "ns-c"]), 0..3),
        prop::collection::vec(
            prop::sample::select(vec!["acme-prod", "acme-*", "other-x", "*"]),
            1..3,
        ),
        -5i32..5,
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec![
                "projects/p/platforms/cloudRun/policies/a",
                "projects/p/platforms/cloudRun/policies/*",
            ]),
            0..2,
        )),
    )
        .prop_map(
            |(name, namespaces, projects, max_priority, policies)| Grant {
                name,
                spec: BinAuthzTenancySpec {
                    namespaces: namespaces.into_iter().map(str::to_owned).collect(),
                    namespace_selector: None,
                    projects: projects.into_iter().map(str::to_owned).collect(),
                    max_priority,
                    policies: policies.map(|names| PolicyGrant {
                        names: names.into_iter().map(str::to_owned).collect(),
                    }),
                },
            },
        )
}

proptest! {
    /// Grants add up: a binding is permitted by a set of grants exactly when one of them
    /// alone permits it, whatever the order the grants come in.
    #[test]
    fn permitted_by_the_union_iff_by_one_grant(
        grants in prop::collection::vec(arb_grant(), 1..5),
        namespace in prop::sample::select(vec!["ns-a", "ns-b", "ns-c"]),
        priority in -6i32..6,
        named in any::<bool>(),
    ) {
        let mut b = binding("a").priority(priority);
        if named {
            b.spec.policy = crate::api::PolicyRef {
                use_default: None,
                name: Some("projects/p/platforms/cloudRun/policies/a".into()),
            };
        }
        let all = Grants::new(grants.clone());
        let reversed = Grants::new(grants.iter().rev().cloned());
        let alone = grants.iter().any(|g| permission(&Grants::new([g.clone()]), namespace, &b).is_permitted());
        prop_assert_eq!(permission(&all, namespace, &b).is_permitted(), alone);
        prop_assert_eq!(permission(&all, namespace, &b), permission(&reversed, namespace, &b));
        // Adding a grant never takes a permission away.
        let mut more = grants.clone();
        more.push(grant("zzz", &["ns-z"], &["nothing"], 0));
        if alone {
            prop_assert!(permission(&Grants::new(more), namespace, &b).is_permitted());
        }
    }
}
