//! Properties of the planner over generated bindings and estates.

use super::*;
use crate::api::{
    LabelOperator, LabelSelector, LabelSelectorRequirement, PolicyRef, TargetSelector,
};
use crate::policy::ObservedPolicy;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

const NAMES: [&str; 7] = ["pay-1", "pay-2", "pay-eu", "web", "web-1", "api", "batch-9"];
const GLOBS: [&str; 8] = [
    "*", "pay-*", "pay-?", "web", "web-*", "api", "*-1", "b?tch-*",
];
const LOCATIONS: [&str; 3] = ["us-central1", "europe-west1", "asia-east1"];
const PROJECTS: [&str; 2] = [PROJECT, "acme-dev"];

fn observed_policy() -> impl Strategy<Value = ObservedPolicy> {
    prop_oneof![
        Just(ObservedPolicy::None),
        Just(ObservedPolicy::ProjectDefault),
        Just(ObservedPolicy::Named(policy_name("strict"))),
        Just(ObservedPolicy::Named(policy_name("lax"))),
    ]
}

fn label_pairs() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        proptest::option::of(select(vec!["prod", "dev"])),
        proptest::option::of(select(vec!["critical", "web"])),
    )
        .prop_map(|(env, tier)| {
            let mut labels = BTreeMap::new();
            if let Some(env) = env {
                labels.insert("env".to_owned(), env.to_owned());
            }
            if let Some(tier) = tier {
                labels.insert("tier".to_owned(), tier.to_owned());
            }
            labels
        })
}

fn resource() -> impl Strategy<Value = ObservedResource> {
    (
        select(ResourceKind::ALL.to_vec()),
        select(PROJECTS.to_vec()),
        select(LOCATIONS.to_vec()),
        select(NAMES.to_vec()),
        label_pairs(),
        prop::bool::weighted(0.1),
        observed_policy(),
        proptest::option::weighted(0.3, Just("incident 42".to_owned())),
        proptest::option::weighted(0.2, Just("image not authorized".to_owned())),
    )
        .prop_map(
            |(kind, project, location, name, labels, deleted, policy, breakglass, blocked)| {
                ObservedResource {
                    id: ResourceId {
                        kind,
                        project: project.into(),
                        location: location.into(),
                        name: name.into(),
                    },
                    labels: labels.into(),
                    deleted,
                    policy,
                    breakglass,
                    deploy_blocked: blocked,
                    last_change: None,
                    running: Default::default(),
                }
            },
        )
}

fn label_selector() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        Just(LabelSelector {
            match_labels: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
            match_expressions: Vec::new(),
        }),
        (
            select(vec![
                LabelOperator::In,
                LabelOperator::NotIn,
                LabelOperator::Exists,
                LabelOperator::DoesNotExist
            ]),
            select(vec!["env", "tier"]),
        )
            .prop_map(|(operator, key)| LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![LabelSelectorRequirement {
                    key: key.to_owned(),
                    operator,
                    values: match operator {
                        LabelOperator::In | LabelOperator::NotIn => {
                            vec!["prod".to_owned(), "critical".to_owned()]
                        }
                        _ => Vec::new(),
                    },
                }],
            }),
    ]
}

fn selector() -> impl Strategy<Value = TargetSelector> {
    (
        proptest::option::of(subsequence(GLOBS.to_vec(), 1..=3)),
        proptest::option::weighted(0.3, label_selector()),
        subsequence(GLOBS[1..].to_vec(), 0..=1),
    )
        .prop_map(|(names, labels, exclude)| {
            let to_strings = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect();
            let names: Option<Vec<String>> = names.map(to_strings);
            TargetSelector {
                names: if names.is_none() && labels.is_none() {
                    Some(vec!["*".to_owned()])
                } else {
                    names
                },
                label_selector: labels,
                exclude: to_strings(exclude),
            }
        })
}

fn spec() -> impl Strategy<Value = BinAuthzBindingSpec> {
    (
        select(PROJECTS.to_vec()),
        prop_oneof![
            1 => Just(vec!["*"]),
            3 => subsequence(LOCATIONS.to_vec(), 1..=2),
        ],
        (
            proptest::option::of(selector()),
            proptest::option::of(selector()),
            proptest::option::weighted(0.3, selector()),
        ),
        select(vec![None, Some("strict"), Some("lax")]),
        (
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.3),
            -1i32..=1,
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.05),
        ),
    )
        .prop_map(
            |(
                project,
                locations,
                (services, jobs, pools),
                policy,
                (audit, clear, priority, suspend, invalid),
            )| {
                let mut spec = binding("x").spec;
                spec.project = project.into();
                spec.locations = locations.into_iter().map(str::to_owned).collect();
                spec.targets.services = services;
                spec.targets.jobs = jobs;
                spec.targets.worker_pools = pools;
                if spec.targets.services.is_none()
                    && spec.targets.jobs.is_none()
                    && spec.targets.worker_pools.is_none()
                {
                    spec.targets.jobs = Some(TargetSelector {
                        names: Some(vec!["*".into()]),
                        ..TargetSelector::default()
                    });
                }
                if let Some(id) = policy {
                    spec.policy = PolicyRef {
                        use_default: None,
                        name: Some(policy_name(id)),
                    };
                }
                spec.mode = if audit { Mode::Audit } else { Mode::Enforce };
                spec.breakglass = if clear {
                    BreakglassMode::Clear
                } else {
                    BreakglassMode::Allow
                };
                spec.priority = priority;
                spec.suspend = suspend;
                if invalid {
                    spec.locations.clear();
                }
                spec
            },
        )
}

fn bindings() -> impl Strategy<Value = Vec<TestBinding>> {
    prop::collection::vec(spec(), 0..6).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| TestBinding {
                key: BindingKey::new(
                    if i % 2 == 0 { "team-a" } else { "team-b" },
                    format!("b{i}"),
                ),
                spec,
                // Every third binding is refused by the tenancy grants: the properties
                // hold with refused bindings among the others.
                permission: if i % 3 == 2 {
                    Permission::NotPermitted(Refusal::Namespace {
                        namespace: "team-a".into(),
                    })
                } else {
                    Permission::Open
                },
            })
            .collect()
    })
}

fn estate() -> impl Strategy<Value = Vec<ObservedResource>> {
    prop::collection::vec(resource(), 0..40)
}

/// The estate as the planner sees it: live resources, and of two listings of one id
/// the one that sorts first by (policy, justification, blocked deploy, labels).
fn canonical(estate: &[ObservedResource]) -> BTreeMap<&ResourceId, &ObservedResource> {
    let mut seen: BTreeMap<&ResourceId, &ObservedResource> = BTreeMap::new();
    for r in estate.iter().filter(|r| !r.deleted) {
        let key = |r: &ObservedResource| {
            (
                r.policy.clone(),
                r.breakglass.clone(),
                r.deploy_blocked.clone(),
                r.labels.clone(),
            )
        };
        let kept = seen.entry(&r.id).or_insert(r);
        if key(r) < key(kept) {
            *kept = r;
        }
    }
    seen
}

/// The estate as Cloud Run lists it: each resource once (the copy the planner keeps).
/// Properties about applying writes use it: with two differing copies of one id, a
/// write changes which copy is canonical, which no real listing can produce.
fn listed_once(estate: &[ObservedResource]) -> Vec<ObservedResource> {
    canonical(estate).into_values().cloned().collect()
}

fn inputs(bindings: &[TestBinding]) -> Vec<BindingInput<'_>> {
    bindings.iter().map(TestBinding::input).collect()
}

/// What Cloud Run holds after a write (every listed copy of the resource).
fn apply(resources: &mut [ObservedResource], id: &ResourceId, remediation: &Remediation) {
    for r in resources.iter_mut().filter(|r| &r.id == id) {
        r.policy = ObservedPolicy::from(&remediation.desired);
        if remediation.breakglass == BreakglassChange::Clear {
            r.breakglass = None;
        }
    }
}

fn owned_writes(plan: &Plan<'_>) -> Vec<(ResourceId, Remediation)> {
    plan.writes()
        .into_iter()
        .map(|w| (w.resource.id.clone(), w.remediation))
        .collect()
}

fn any_remediation(plan: &Plan<'_>) -> bool {
    plan.bindings().any(|b| b.remediations().next().is_some())
}

proptest! {
    #[test]
    fn targets_are_exactly_what_the_bindings_match(bindings in bindings(), estate in estate()) {
        let plan = plan(&inputs(&bindings), &estate).unwrap();
        for b in &bindings {
            let planned: Vec<&ResourceId> = plan.binding(&b.key).unwrap().targets().iter().map(|t| &t.resource.id).collect();
            let want: Vec<&ResourceId> = if matches!(b.input().activity(), Activity::Active(_)) {
                let m = BindingMatcher::new(&b.spec);
                canonical(&estate).into_values().filter(|r| m.matches(r)).map(|r| &r.id).collect()
            } else {
                Vec::new()
            };
            prop_assert_eq!(planned, want, "binding {}", b.key);
        }
    }

    #[test]
    fn no_write_touches_a_resource_no_binding_matches(bindings in bindings(), estate in estate()) {
        let plan = plan(&inputs(&bindings), &estate).unwrap();
        for write in plan.writes() {
            prop_assert!(!write.resource.deleted);
            prop_assert!(!write.bindings.is_empty());
            for key in &write.bindings {
                let b = bindings.iter().find(|b| &b.key == key).unwrap();
                prop_assert!(!b.spec.suspend && b.spec.mode == Mode::Enforce);
                prop_assert!(BindingMatcher::new(&b.spec).matches(write.resource));
                prop_assert_eq!(Some(write.remediation.desired.clone()), b.spec.desired_policy());
            }
        }
    }

    #[test]
    fn writes_never_weaken(bindings in bindings(), mut estate in estate()) {
        let before = estate.clone();
        let plan = plan(&inputs(&bindings), &before).unwrap();
        for (id, remediation) in owned_writes(&plan) {
            prop_assert_ne!(ObservedPolicy::from(&remediation.desired), ObservedPolicy::None);
            apply(&mut estate, &id, &remediation);
        }
        for (old, new) in before.iter().zip(&estate) {
            if old.policy != ObservedPolicy::None {
                prop_assert_ne!(&new.policy, &ObservedPolicy::None, "{} lost its policy", old.id);
            }
            if old.breakglass.is_none() {
                prop_assert!(new.breakglass.is_none(), "a justification appeared on {}", old.id);
            }
        }
    }

    #[test]
    fn planning_again_after_the_writes_asks_for_nothing(bindings in bindings(), estate in estate()) {
        let mut estate = listed_once(&estate);
        let first = plan(&inputs(&bindings), &estate).unwrap();
        let writes = owned_writes(&first);
        drop(first);
        for (id, remediation) in &writes {
            apply(&mut estate, id, remediation);
        }
        let second = plan(&inputs(&bindings), &estate).unwrap();
        prop_assert!(!any_remediation(&second), "{:?}", owned_writes(&second));
    }

    #[test]
    fn bindings_passing_one_by_one_never_write_in_a_cycle(
        bindings in bindings(),
        estate in estate(),
        order in Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
    ) {
        // As the controller runs it: each binding's pass re-plans everything and applies
        // only its own remediations, in some order; after one full round nothing is left.
        let mut estate = listed_once(&estate);
        let order: Vec<&TestBinding> = order.iter().filter_map(|&i| bindings.get(i)).collect();
        for round in 0..2 {
            for b in &order {
                let plan = plan(&inputs(&bindings), &estate).unwrap();
                let mine: Vec<(ResourceId, Remediation)> = plan
                    .binding(&b.key)
                    .unwrap()
                    .remediations()
                    .map(|(r, rem)| (r.id.clone(), rem.clone()))
                    .collect();
                drop(plan);
                prop_assert!(round == 0 || mine.is_empty(), "round {round}: {} still writes {mine:?}", b.key);
                for (id, remediation) in &mine {
                    apply(&mut estate, id, remediation);
                }
            }
        }
    }

    #[test]
    fn the_outcome_does_not_depend_on_input_order(
        (bindings, shuffled_bindings) in bindings().prop_flat_map(|b| (Just(b.clone()), Just(b).prop_shuffle())),
        (estate, shuffled_estate) in estate().prop_flat_map(|e| (Just(e.clone()), Just(e).prop_shuffle())),
    ) {
        let one = plan(&inputs(&bindings), &estate).unwrap();
        let two = plan(&inputs(&shuffled_bindings), &shuffled_estate).unwrap();
        prop_assert_eq!(&one, &two);
        let input = StatusInput {
            generation: Some(1),
            now: Timestamp::UNIX_EPOCH,
            pass_failure: None,
            findings: None,
            outcomes: &BTreeMap::new(),
            previous: None,
            history: None,
            breakglass: None,
            revisions: None,
        };
        for (a, b) in one.bindings().zip(two.bindings()) {
            prop_assert_eq!(a.status(&input), b.status(&input));
        }
        let affected_one: Vec<_> = bindings.iter().map(|b| affected_bindings(&b.key, None, &inputs(&bindings), &estate)).collect();
        let affected_two: Vec<_> = bindings.iter().map(|b| affected_bindings(&b.key, None, &inputs(&shuffled_bindings), &shuffled_estate)).collect();
        prop_assert_eq!(affected_one, affected_two);
    }

    #[test]
    fn summaries_add_up_whatever_the_outcomes(
        bindings in bindings(),
        estate in estate(),
        outcomes in prop::collection::vec(0u8..4, 40),
    ) {
        let plan = plan(&inputs(&bindings), &estate).unwrap();
        let outcomes: BTreeMap<ResourceId, WriteOutcome> = estate
            .iter()
            .zip(outcomes)
            .map(|(r, o)| {
                let outcome = match o {
                    0 => WriteOutcome::Succeeded,
                    1 => WriteOutcome::Pending,
                    2 => WriteOutcome::Gone,
                    _ => WriteOutcome::Failed(WriteFailure {
                        reason: FailureReason::Rejected,
                        message: "no".into(),
                    }),
                };
                (r.id.clone(), outcome)
            })
            .collect();
        for b in plan.bindings() {
            let report = b.status(&StatusInput {
                generation: Some(1),
                now: Timestamp::UNIX_EPOCH,
                pass_failure: None,
                findings: None,
                outcomes: &outcomes,
                previous: None,
                history: None,
                breakglass: None,
                revisions: None,
            });
            let Some(s) = report.status.summary else {
                prop_assert!(!matches!(b.activity(), Activity::Active(_)));
                continue;
            };
            prop_assert_eq!(s.matched, s.compliant + s.drifted + s.superseded + s.conflicted + s.failed);
            // A remediated resource may keep its justification: both, not disjoint.
            prop_assert!(s.remediated <= s.compliant && s.breakglass <= s.compliant);
            prop_assert_eq!(s.matched as usize, report.status.targets.len());
            prop_assert_eq!(report.ready == ReadyReason::Compliant, s.drifted + s.conflicted + s.failed == 0);
        }
    }
}
