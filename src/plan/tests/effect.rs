//! Enabled versus effective, and coverage: decided from what the resources carry.

use super::*;
use crate::api::{EffectBasis, EffectState, TargetEffect};
use crate::resource::{Running, Workload};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

/// Serves `revisions` and was last changed at `changed`.
fn serving(r: ObservedResource, changed: i64, revisions: &[&str]) -> ObservedResource {
    r.edit(|r| {
        r.running = Running {
            changed: Some(at(changed)),
            workload: Workload::Revisions(revisions.iter().map(|n| (*n).into()).collect()),
        }
    })
}

fn ran(r: ObservedResource, changed: i64, execution: Option<i64>) -> ObservedResource {
    r.edit(|r| {
        r.running = Running {
            changed: Some(at(changed)),
            workload: Workload::Execution(execution.map(at)),
        }
    })
}

fn times(entries: &[(&ObservedResource, &str, i64)]) -> RevisionTimes {
    RevisionTimes(
        entries
            .iter()
            .map(|(r, name, t)| (revision_name(&r.id, name), Ok(at(*t))))
            .collect(),
    )
}

fn report<'r>(
    plan: &Plan<'r>,
    outcomes: &BTreeMap<ResourceId, WriteOutcome>,
    previous: Option<&BinAuthzBindingStatus>,
    revisions: Option<&RevisionTimes>,
    now: Timestamp,
) -> StatusReport<'r> {
    plan.binding(&key("a")).unwrap().status(&StatusInput {
        generation: Some(1),
        now,
        pass_failure: None,
        findings: None,
        outcomes,
        previous,
        history: None,
        revisions,
        breakglass: None,
    })
}

fn effect_of(report: &StatusReport<'_>, name: &str) -> Option<TargetEffect> {
    report
        .status
        .targets
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| t.effect.clone())
}

#[test]
fn a_revision_created_at_or_after_the_last_change_is_effective() {
    let r = serving(
        service("us-central1", "pay").policy_default(),
        100,
        &["pay-00002"],
    );
    let e = effect(
        &r,
        PolicySet::NoLaterThan(at(100)),
        &times(&[(&r, "pay-00002", 100)]),
    );
    assert_eq!(e.state, EffectState::Effective);
    assert_eq!(e.basis, EffectBasis::UpdateTime);
}

#[test]
fn a_revision_older_than_the_last_change_is_not_effective_until_the_next_deploy() {
    let r = serving(
        service("us-central1", "pay").policy_default(),
        100,
        &["pay-00001", "pay-00002"],
    );
    let t = times(&[(&r, "pay-00001", 10), (&r, "pay-00002", 150)]);
    let e = effect(&r, PolicySet::NoLaterThan(at(100)), &t);
    assert_eq!(e.state, EffectState::NotEffective);
    assert!(e.message.contains("pay-00001"), "{}", e.message);
    assert!(!e.message.contains("pay-00002"), "{}", e.message);
    assert!(e.message.contains("next deploy"), "{}", e.message);
    assert!(
        e.message.contains("Cloud Run keeps no record"),
        "{}",
        e.message
    );
    assert_eq!(e.policy_set_time.as_deref(), Some("2027-01-15T08:01:40Z"));
}

#[test]
fn the_operators_own_write_time_beats_the_last_change() {
    // Set by the operator at 50, then a label change at 100: a revision created at 70 was
    // checked.
    let r = serving(
        service("us-central1", "pay").policy_default(),
        100,
        &["pay-00002"],
    );
    let t = times(&[(&r, "pay-00002", 70)]);
    assert_eq!(
        effect(&r, PolicySet::ByOperator(at(50)), &t).state,
        EffectState::Effective
    );
    assert_eq!(
        effect(&r, PolicySet::NoLaterThan(at(100)), &t).state,
        EffectState::NotEffective
    );
}

#[test]
fn jobs_need_no_revision_read_and_a_job_that_never_ran_is_effective() {
    let never = ran(job("us-central1", "nightly").policy_default(), 100, None);
    let before = ran(
        job("us-central1", "nightly").policy_default(),
        100,
        Some(40),
    );
    let after = ran(
        job("us-central1", "nightly").policy_default(),
        100,
        Some(140),
    );
    assert!(revisions_to_read(&before).is_empty());
    let none = RevisionTimes::default();
    let set = PolicySet::NoLaterThan(at(100));
    assert_eq!(effect(&never, set, &none).state, EffectState::Effective);
    let e = effect(&before, set, &none);
    assert_eq!(e.state, EffectState::NotEffective);
    assert!(e.message.contains("next run"), "{}", e.message);
    assert_eq!(effect(&after, set, &none).state, EffectState::Effective);
}

#[test]
fn an_unreadable_revision_or_silent_resource_is_unknown() {
    let r = serving(
        service("us-central1", "pay").policy_default(),
        100,
        &["pay-00001"],
    );
    let failed = RevisionTimes(
        [(
            revision_name(&r.id, "pay-00001"),
            Err("Permission 'run.revisions.get' denied".to_owned()),
        )]
        .into(),
    );
    let e = effect(&r, PolicySet::NoLaterThan(at(100)), &failed);
    assert_eq!(e.state, EffectState::Unknown);
    assert!(e.message.contains("run.revisions.get"), "{}", e.message);
    let silent = service("us-central1", "pay").policy_default();
    assert_eq!(
        effect(&silent, PolicySet::Unknown, &RevisionTimes::default()).state,
        EffectState::Unknown
    );
}

#[test]
fn a_target_remediated_in_this_pass_is_not_effective_without_any_read() {
    let resources = [serving(service("us-central1", "pay"), 10, &["pay-00001"])];
    let plan = run(&[binding("a")], &resources);
    let outcomes = BTreeMap::from([(resources[0].id.clone(), WriteOutcome::Succeeded)]);
    let none = RevisionTimes::default();
    let r = report(&plan, &outcomes, None, Some(&none), at(200));
    let e = effect_of(&r, "pay").unwrap();
    assert_eq!(e.state, EffectState::NotEffective);
    assert_eq!(e.basis, EffectBasis::Remediation);
    assert_eq!(r.status.summary.unwrap().not_effective, 1);
    assert!(e.message.contains("next deploy"), "{}", e.message);
}

#[test]
fn the_remediation_time_is_remembered_through_the_status_until_a_deploy_makes_it_effective() {
    // Pass 1 remediates at 200.
    let before = [serving(service("us-central1", "pay"), 10, &["pay-00001"])];
    let plan = run(&[binding("a")], &before);
    let outcomes = BTreeMap::from([(before[0].id.clone(), WriteOutcome::Succeeded)]);
    let none = RevisionTimes::default();
    let first = report(&plan, &outcomes, None, Some(&none), at(200)).status;

    // Pass 2: compliant, the old revision still serves (last change 200, the write).
    let still = [serving(
        service("us-central1", "pay").policy_default(),
        200,
        &["pay-00001"],
    )];
    let plan = run(&[binding("a")], &still);
    let t = times(&[(&still[0], "pay-00001", 10)]);
    let second = report(&plan, &BTreeMap::new(), Some(&first), Some(&t), at(300));
    let e = effect_of(&second, "pay").unwrap();
    assert_eq!(
        (e.state, e.basis),
        (EffectState::NotEffective, EffectBasis::Remediation)
    );
    assert_eq!(e.policy_set_time.as_deref(), Some("2027-01-15T08:03:20Z"));
    assert_eq!(second.status.summary.unwrap().not_effective, 1);
    // Not effective targets are listed before plain compliant ones.
    assert_eq!(second.status.targets[0].name, "pay");

    // Pass 3: a deploy at 400 created pay-00002, which takes all traffic.
    let deployed = [serving(
        service("us-central1", "pay").policy_default(),
        400,
        &["pay-00002"],
    )];
    let plan = run(&[binding("a")], &deployed);
    let t = times(&[(&deployed[0], "pay-00002", 400)]);
    let third = report(
        &plan,
        &BTreeMap::new(),
        Some(&second.status),
        Some(&t),
        at(500),
    );
    let e = effect_of(&third, "pay").unwrap();
    assert_eq!(
        (e.state, e.basis),
        (EffectState::Effective, EffectBasis::Remediation)
    );
    assert_eq!(third.status.summary.unwrap().not_effective, 0);
}

#[test]
fn only_targets_carrying_the_policy_say_whether_it_is_in_effect_and_only_when_asked() {
    let resources = [
        serving(service("us-central1", "drifted"), 10, &["drifted-1"]),
        serving(service("us-central1", "ok").policy_default(), 10, &["ok-1"]),
    ];
    let plan = run(&[binding("a").audit()], &resources);
    let t = times(&[(&resources[1], "ok-1", 10)]);
    let asked = report(&plan, &BTreeMap::new(), None, Some(&t), at(100));
    assert_eq!(effect_of(&asked, "drifted"), None);
    assert_eq!(
        effect_of(&asked, "ok").unwrap().state,
        EffectState::Effective
    );
    let silent = report(&plan, &BTreeMap::new(), None, None, at(100));
    assert_eq!(effect_of(&silent, "ok"), None);
    assert_eq!(silent.status.summary.unwrap().not_effective, 0);
}

#[test]
fn coverage_lists_what_no_binding_matches_in_the_projects_bindings_name() {
    let resources = [
        service("us-central1", "pay-1"),
        service("us-central1", "web"),
        service("us-central1", "old").deleted(),
        service("us-central1", "elsewhere").project("acme-dev"),
        job("us-central1", "nightly"),
    ];
    let bindings = [
        binding("a").names(["pay-*"]),
        binding("b").no_services().jobs(["night*"]).suspended(),
    ];
    let inputs: Vec<BindingInput<'_>> = bindings.iter().map(TestBinding::input).collect();
    let c = coverage(PROJECT, &inputs, &resources);
    assert_eq!(c.of(ResourceKind::Service).count, 1);
    assert_eq!(c.of(ResourceKind::Service).first, vec!["us-central1/web"]);
    // A suspended binding still declares what it names.
    assert_eq!(c.of(ResourceKind::Job).count, 0);
    assert_eq!(c.total_uncovered(), 1);
    assert_eq!(c.listed, [2, 1, 0]);
    assert_eq!(c.kinds, vec![ResourceKind::Service, ResourceKind::Job]);
}

#[test]
fn coverage_names_at_most_the_first_few() {
    let resources: Vec<ObservedResource> = (0..(UNCOVERED_NAMES + 5))
        .map(|i| service("us-central1", &format!("svc-{i:03}")))
        .collect();
    let bindings = [binding("a").names(["nothing-*"])];
    let inputs: Vec<BindingInput<'_>> = bindings.iter().map(TestBinding::input).collect();
    let c = coverage(PROJECT, &inputs, &resources);
    let u = c.of(ResourceKind::Service);
    assert_eq!(u.count, UNCOVERED_NAMES + 5);
    assert_eq!(u.first.len(), UNCOVERED_NAMES);
    assert_eq!(u.first[0], "us-central1/svc-000");
}

#[test]
fn a_message_naming_many_revisions_stays_within_the_crds_limit() {
    let names: Vec<String> = (0..200).map(|i| format!("pay-{i:05}-abcdefgh")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let r = serving(service("us-central1", "pay").policy_default(), 100, &refs);
    let e = effect(
        &r,
        PolicySet::JustWritten(at(100)),
        &RevisionTimes::default(),
    );
    assert_eq!(e.state, EffectState::NotEffective);
    assert!(e.message.chars().count() <= 1024, "{}", e.message.len());
}
