//! Exceptions: which are honoured, what they except, and what the status counts.

use std::time::Duration;

use super::*;
use crate::api::{BinAuthzExceptionSpec, ExceptionState};

const HOUR: Duration = Duration::from_secs(3600);

fn t(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// Excepts service `names` in us-central1 of acme-prod until `expires`.
fn exception_spec(names: &[&str], expires: &str) -> BinAuthzExceptionSpec {
    BinAuthzExceptionSpec {
        project: PROJECT.into(),
        location: "us-central1".into(),
        kind: ResourceKind::Service,
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        reason: "INC-4711: vendor image awaiting attestation".into(),
        expires_at: expires.into(),
    }
}

fn input<'s>(namespace: &str, name: &str, spec: &'s BinAuthzExceptionSpec) -> ExceptionInput<'s> {
    ExceptionInput {
        key: ExceptionKey {
            namespace: namespace.into(),
            name: name.into(),
        },
        spec,
        created: Some(t("2026-12-01T00:00:00Z")),
    }
}

fn assess(inputs: &[ExceptionInput<'_>], now: &str) -> Exceptions {
    Exceptions::assess(inputs, t(now), 30 * 24 * HOUR)
}

fn run_with<'r>(
    bindings: &[TestBinding],
    exceptions: &Exceptions,
    resources: &'r [ObservedResource],
) -> Plan<'r> {
    let inputs: Vec<BindingInput<'_>> = bindings.iter().map(TestBinding::input).collect();
    plan_with_exceptions(&inputs, exceptions, resources).unwrap()
}

#[test]
fn an_active_exception_turns_a_write_into_excepted_and_nothing_is_written() {
    let spec = exception_spec(&["pay-*"], "2026-12-02T12:00:00Z");
    let exceptions = assess(
        &[input("platform", "hotfix", &spec)],
        "2026-12-02T11:00:00Z",
    );
    let resources = [
        service("us-central1", "pay-1"),
        service("us-central1", "shop"),
    ];
    let plan = run_with(&[binding("a")], &exceptions, &resources);
    match decision(&plan, "a", "pay-1") {
        Some(Decision::Excepted { by }) => {
            assert_eq!(by.key.to_string(), "platform/hotfix");
            assert_eq!(by.until, t("2026-12-02T12:00:00Z"));
        }
        other => panic!("pay-1 should be excepted, got {other:?}"),
    }
    assert_eq!(decision(&plan, "a", "shop"), Some(set_default(false)));
    let written: Vec<String> = plan
        .writes()
        .iter()
        .map(|w| w.resource.id.name.clone())
        .collect();
    assert_eq!(written, ["shop"]);
}

#[test]
fn at_the_expiry_moment_the_write_comes_back() {
    let spec = exception_spec(&["pay-1"], "2026-12-02T12:00:00Z");
    let inputs = [input("platform", "hotfix", &spec)];
    let resources = [service("us-central1", "pay-1")];
    let before = assess(&inputs, "2026-12-02T11:59:59.999Z");
    let plan = run_with(&[binding("a")], &before, &resources);
    assert!(matches!(
        decision(&plan, "a", "pay-1"),
        Some(Decision::Excepted { .. })
    ));
    let at = assess(&inputs, "2026-12-02T12:00:00Z");
    assert_eq!(
        at.standing(&ExceptionKey {
            namespace: "platform".into(),
            name: "hotfix".into()
        }),
        Some(&Standing::Expired {
            at: t("2026-12-02T12:00:00Z")
        })
    );
    let plan = run_with(&[binding("a")], &at, &resources);
    assert_eq!(decision(&plan, "a", "pay-1"), Some(set_default(false)));
}

#[test]
fn audit_drift_is_excepted_too_and_compliant_targets_stay_compliant() {
    let spec = exception_spec(&["pay-1", "pay-2"], "2026-12-02T12:00:00Z");
    let exceptions = assess(&[input("platform", "x", &spec)], "2026-12-02T11:00:00Z");
    let resources = [
        service("us-central1", "pay-1"),
        service("us-central1", "pay-2").policy_default(),
        service("us-central1", "pay-3")
            .policy_default()
            .breakglass("fire"),
    ];
    let plan = run_with(&[binding("a").audit()], &exceptions, &resources);
    assert!(matches!(
        decision(&plan, "a", "pay-1"),
        Some(Decision::Excepted { .. })
    ));
    assert_eq!(decision(&plan, "a", "pay-2"), Some(Decision::Compliant));
    assert_eq!(decision(&plan, "a", "pay-3"), Some(Decision::Breakglass));
}

#[test]
fn an_exception_applies_to_the_bindings_of_its_namespace_only() {
    let spec = exception_spec(&["pay-1"], "2026-12-02T12:00:00Z");
    let exceptions = assess(&[input("team-b", "x", &spec)], "2026-12-02T11:00:00Z");
    let resources = [service("us-central1", "pay-1")];
    let plan = run_with(&[binding("a")], &exceptions, &resources);
    assert_eq!(decision(&plan, "a", "pay-1"), Some(set_default(false)));
}

#[test]
fn project_kind_and_location_must_all_match() {
    let mut other_region = exception_spec(&["pay-1"], "2026-12-02T12:00:00Z");
    other_region.location = "europe-west1".into();
    let mut jobs = exception_spec(&["pay-1"], "2026-12-02T12:00:00Z");
    jobs.kind = ResourceKind::Job;
    let mut other_project = exception_spec(&["pay-1"], "2026-12-02T12:00:00Z");
    other_project.project = "acme-dev".into();
    let mut every_region = exception_spec(&["pay-2"], "2026-12-02T12:00:00Z");
    every_region.location = "*".into();
    let exceptions = assess(
        &[
            input("platform", "a", &other_region),
            input("platform", "b", &jobs),
            input("platform", "c", &other_project),
            input("platform", "d", &every_region),
        ],
        "2026-12-02T11:00:00Z",
    );
    let resources = [
        service("us-central1", "pay-1"),
        service("us-central1", "pay-2"),
    ];
    let plan = run_with(&[binding("a")], &exceptions, &resources);
    assert_eq!(decision(&plan, "a", "pay-1"), Some(set_default(false)));
    assert!(matches!(
        decision(&plan, "a", "pay-2"),
        Some(Decision::Excepted { .. })
    ));
}

#[test]
fn too_long_invalid_and_expired_exceptions_are_never_honoured() {
    let too_long = exception_spec(&["pay-1"], "2027-02-01T00:00:00Z");
    let mut invalid = exception_spec(&["*"], "2026-12-02T12:00:00Z");
    invalid.reason = String::new();
    let expired = exception_spec(&["pay-1"], "2026-12-02T10:00:00Z");
    let inputs = [
        input("platform", "long", &too_long),
        input("platform", "bad", &invalid),
        input("platform", "old", &expired),
    ];
    let exceptions = assess(&inputs, "2026-12-02T11:00:00Z");
    let states: Vec<(String, ExceptionState)> = exceptions
        .standings()
        .iter()
        .map(|(k, s)| (k.name.clone(), s.state()))
        .collect();
    assert_eq!(
        states,
        [
            ("bad".to_owned(), ExceptionState::Refused),
            ("long".to_owned(), ExceptionState::Refused),
            ("old".to_owned(), ExceptionState::Expired),
        ]
    );
    let messages: Vec<String> = exceptions
        .standings()
        .iter()
        .map(|(_, s)| s.message())
        .collect();
    assert!(messages[0].contains("spec.names"), "{}", messages[0]);
    assert!(messages[0].contains("spec.reason"), "{}", messages[0]);
    assert!(
        messages[1].contains("62d after the exception's creation, more than the 30d"),
        "{}",
        messages[1]
    );
    assert!(exceptions.is_empty());
    let resources = [service("us-central1", "pay-1")];
    let plan = run_with(&[binding("a")], &exceptions, &resources);
    assert_eq!(decision(&plan, "a", "pay-1"), Some(set_default(false)));
}

#[test]
fn a_file_without_creation_time_is_measured_from_now() {
    let spec = exception_spec(&["pay-1"], "2026-12-10T00:00:00Z");
    let mut file = input("platform", "x", &spec);
    file.created = None;
    let max = 7 * 24 * HOUR;
    let s = |now: &str| exception_standing(&spec, file.created, t(now), max).state();
    assert_eq!(s("2026-12-01T00:00:00Z"), ExceptionState::Refused);
    assert_eq!(s("2026-12-05T00:00:00Z"), ExceptionState::Active);
}

#[test]
fn the_next_expiry_is_the_earliest_active_one_of_the_namespace_and_project() {
    let soon = exception_spec(&["a"], "2026-12-02T12:00:00Z");
    let later = exception_spec(&["b"], "2026-12-03T12:00:00Z");
    let mut elsewhere = exception_spec(&["c"], "2026-12-02T11:30:00Z");
    elsewhere.project = "acme-dev".into();
    let gone = exception_spec(&["d"], "2026-12-02T10:00:00Z");
    let exceptions = assess(
        &[
            input("platform", "later", &later),
            input("platform", "soon", &soon),
            input("platform", "elsewhere", &elsewhere),
            input("platform", "gone", &gone),
            input("team-b", "other", &elsewhere),
        ],
        "2026-12-02T11:00:00Z",
    );
    assert_eq!(
        exceptions.next_expiry("platform", PROJECT),
        Some(t("2026-12-02T12:00:00Z"))
    );
    assert_eq!(exceptions.next_expiry("team-c", PROJECT), None);
}

#[test]
fn the_longest_covering_exception_is_reported() {
    let short = exception_spec(&["pay-*"], "2026-12-02T12:00:00Z");
    let long = exception_spec(&["pay-1"], "2026-12-04T12:00:00Z");
    let exceptions = assess(
        &[
            input("platform", "short", &short),
            input("platform", "long", &long),
        ],
        "2026-12-02T11:00:00Z",
    );
    let resources = [service("us-central1", "pay-1")];
    let plan = run_with(&[binding("a")], &exceptions, &resources);
    match decision(&plan, "a", "pay-1") {
        Some(Decision::Excepted { by }) => assert_eq!(by.key.name, "long"),
        other => panic!("expected Excepted, got {other:?}"),
    }
}

#[test]
fn the_status_counts_excepted_targets_and_stays_ready() {
    let spec = exception_spec(&["pay-1"], "2026-12-02T12:00:00Z");
    let exceptions = assess(
        &[input("platform", "hotfix", &spec)],
        "2026-12-02T11:00:00Z",
    );
    let resources = [
        service("us-central1", "pay-1"),
        service("us-central1", "shop").policy_default(),
    ];
    let plan = run_with(&[binding("a")], &exceptions, &resources);
    let report = plan.binding(&key("a")).unwrap().status(&StatusInput {
        generation: Some(1),
        now: t("2026-12-02T11:00:00Z"),
        pass_failure: None,
        findings: None,
        outcomes: &BTreeMap::new(),
        previous: None,
        history: None,
        breakglass: None,
        revisions: None,
    });
    let summary = report.status.summary.unwrap();
    assert_eq!(
        (
            summary.matched,
            summary.compliant,
            summary.excepted,
            summary.drifted
        ),
        (2, 1, 1, 0)
    );
    assert_eq!(report.ready, ReadyReason::Compliant);
    let entry = &report.status.targets[0];
    assert_eq!(entry.state, TargetState::Excepted);
    assert!(
        entry
            .message
            .contains("excepted by BinAuthzException platform/hotfix until 2026-12-02T12:00:00Z")
            && entry.message.contains("INC-4711"),
        "{}",
        entry.message
    );
    let ready = &report.status.conditions[0].message;
    assert!(
        ready.contains("1 excepted by a BinAuthzException"),
        "{ready}"
    );
}
