//! Status, conditions, target lists and transitions built from a plan.

use super::*;
use crate::api::{Summary, UnreadLocation, MAX_STATUS_TARGETS};
use crate::plan::messages::MAX_MESSAGE_CHARS;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn status_of<'r>(
    plan: &Plan<'r>,
    binding: &str,
    outcomes: &BTreeMap<ResourceId, WriteOutcome>,
    previous: Option<&BinAuthzBindingStatus>,
    now: Timestamp,
) -> StatusReport<'r> {
    plan.binding(&key(binding)).unwrap().status(&StatusInput {
        generation: Some(3),
        now,
        pass_failure: None,
        findings: None,
        outcomes,
        previous,
        history: None,
        breakglass: None,
        revisions: None,
    })
}

fn condition<'s>(status: &'s BinAuthzBindingStatus, type_: &str) -> &'s Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

fn outcome(resource: &ObservedResource, outcome: WriteOutcome) -> (ResourceId, WriteOutcome) {
    (resource.id.clone(), outcome)
}

fn failed(reason: FailureReason, message: &str) -> WriteOutcome {
    WriteOutcome::Failed(WriteFailure {
        reason,
        message: message.into(),
    })
}

#[test]
fn a_fully_compliant_binding_is_ready() {
    let estate = [
        service("us-central1", "a").policy_default(),
        service("us-central1", "b").policy_none(),
    ];
    let plan = run(&[binding("x")], &estate);
    let outcomes = BTreeMap::from([outcome(&estate[1], WriteOutcome::Succeeded)]);
    let report = status_of(&plan, "x", &outcomes, None, at(0));
    let s = &report.status;
    assert_eq!(report.ready, ReadyReason::Compliant);
    let ready = condition(s, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Compliant")
    );
    assert_eq!(
        ready.message,
        "2/2 targets comply; 1 remediated in this pass"
    );
    assert_eq!(ready.observed_generation, Some(3));
    assert_eq!(condition(s, "Reconciling").status, "False");
    assert_eq!(condition(s, "Stalled").status, "False");
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.policy.as_deref(), Some("default"));
    assert_eq!(s.last_sync_time.as_deref(), Some("2027-01-15T08:00:00Z"));
    assert_eq!(
        s.summary,
        Some(Summary {
            matched: 2,
            compliant: 2,
            remediated: 1,
            ..Summary::default()
        })
    );
    let b = &s.targets[0];
    assert_eq!((b.name.as_str(), b.state), ("b", TargetState::Remediated));
    // Fixed: it carries the desired policy now; the message keeps what it had.
    assert_eq!(
        (b.observed.as_str(), b.desired.as_str()),
        ("default", "default")
    );
    assert!(b.message.contains("(was none)"), "{}", b.message);
    assert_eq!(b.message, "set policy default (was none)");
    assert_eq!(s.targets[1].state, TargetState::Compliant);
}

#[test]
fn audit_drift_makes_ready_false_with_reason_drifted() {
    let estate = [service("us-central1", "a").policy_none()];
    let plan = run(&[binding("x").audit()], &estate);
    let report = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
    assert_eq!(report.ready, ReadyReason::Drifted);
    let ready = condition(&report.status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Drifted")
    );
    assert_eq!(
        ready.message,
        "1 of 1 targets drift from policy default (Audit mode: reported, not fixed)"
    );
    assert_eq!(
        condition(&report.status, "Reconciling").status,
        "False",
        "Audit writes nothing"
    );
    let stalled = condition(&report.status, "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.message.as_str()),
        ("True", ready.message.as_str()),
        "Audit mode never fixes drift: only a person does"
    );
    assert_eq!(report.status.targets[0].state, TargetState::Drifted);
    assert_eq!(report.status.summary.unwrap().drifted, 1);
}

#[test]
fn pending_remediations_are_drifted_and_reconciling() {
    let estate = [
        service("us-central1", "a").policy_none(),
        service("us-central1", "b").policy_none(),
    ];
    let plan = run(&[binding("x")], &estate);
    let outcomes = BTreeMap::from([outcome(&estate[0], WriteOutcome::Pending)]);
    let report = status_of(&plan, "x", &outcomes, None, at(0));
    assert_eq!(report.ready, ReadyReason::Drifted);
    let reconciling = condition(&report.status, "Reconciling");
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", REMEDIATION_IN_PROGRESS)
    );
    assert_eq!(
        reconciling.message, "2 remediation(s) in flight; the next pass verifies them",
        "no outcome = pending"
    );
    assert_eq!(report.status.summary.unwrap().drifted, 2);
    assert!(report.status.targets[0]
        .message
        .starts_with("fix in progress"));
}

#[test]
fn failures_pick_the_most_actionable_reason() {
    let estate = [
        service("us-central1", "a").policy_none(),
        service("us-central1", "b").policy_none(),
    ];
    let plan = run(&[binding("x")], &estate);
    let reason = |outcomes: Vec<(ResourceId, WriteOutcome)>| {
        let outcomes = outcomes.into_iter().collect();
        let report = status_of(&plan, "x", &outcomes, None, at(0));
        let stalled = condition(&report.status, "Stalled").status.clone();
        (report.ready, stalled)
    };
    assert_eq!(
        reason(vec![
            outcome(&estate[0], failed(FailureReason::Rejected, "bad")),
            outcome(&estate[1], WriteOutcome::Succeeded),
        ]),
        (ReadyReason::RemediationFailed, "False".to_owned())
    );
    assert_eq!(
        reason(vec![
            outcome(&estate[0], failed(FailureReason::Rejected, "bad")),
            outcome(
                &estate[1],
                failed(FailureReason::PermissionDenied, "denied")
            ),
        ]),
        (ReadyReason::PermissionDenied, "True".to_owned())
    );
    assert_eq!(
        reason(vec![outcome(
            &estate[1],
            failed(FailureReason::PolicyNotFound, "no such policy")
        )]),
        (ReadyReason::PolicyNotFound, "True".to_owned())
    );
    let outcomes = BTreeMap::from([outcome(
        &estate[1],
        failed(FailureReason::Rejected, "quota"),
    )]);
    let report = status_of(&plan, "x", &outcomes, None, at(0));
    assert_eq!(
        condition(&report.status, "Ready").message,
        "1 of 2 targets could not be fixed; first: Service us-central1/b (project acme-prod): quota; the next pass retries"
    );
    let failed_target = report
        .status
        .targets
        .iter()
        .find(|t| t.name == "b")
        .unwrap();
    assert_eq!(failed_target.state, TargetState::Failed);
    assert_eq!(
        failed_target.message,
        "setting policy default failed: rejected: quota"
    );
    assert_eq!(report.status.summary.unwrap().failed, 1);
}

#[test]
fn pass_failures_come_first() {
    let estate = [service("us-central1", "a").policy_default()];
    let plan = run(&[binding("x")], &estate);
    for (reason, want, stalled) in [
        (
            FailureReason::PermissionDenied,
            ReadyReason::PermissionDenied,
            "True",
        ),
        (FailureReason::ApiDisabled, ReadyReason::ApiDisabled, "True"),
        (
            FailureReason::VpcServiceControls,
            ReadyReason::VpcServiceControls,
            "True",
        ),
        (
            FailureReason::ProjectNotFoundOrForbidden,
            ReadyReason::ProjectNotFoundOrForbidden,
            "True",
        ),
        (
            FailureReason::PolicyNotFound,
            ReadyReason::PolicyNotFound,
            "True",
        ),
        (
            FailureReason::OrgPolicyConflict,
            ReadyReason::OrgPolicyConflict,
            "True",
        ),
        (
            FailureReason::CloudRunUnavailable,
            ReadyReason::CloudRunUnavailable,
            "False",
        ),
    ] {
        let failure = PassFailure {
            reason,
            message: "listing services in us-central1 failed; do this".into(),
        };
        let report = plan.binding(&key("x")).unwrap().status(&StatusInput {
            generation: Some(1),
            now: at(0),
            pass_failure: Some(&failure),
            findings: None,
            outcomes: &BTreeMap::new(),
            previous: None,
            history: None,
            breakglass: None,
            revisions: None,
        });
        assert_eq!(report.ready, want);
        let ready = condition(&report.status, "Ready");
        assert_eq!(ready.status, "False");
        // The failure's message is complete: shown as it is.
        assert_eq!(
            ready.message,
            "listing services in us-central1 failed; do this"
        );
        assert_eq!(
            condition(&report.status, "Stalled").status,
            stalled,
            "{reason}"
        );
    }
}

#[test]
fn access_problems_outrank_an_outage() {
    let estate = [service("us-central1", "a").policy_none()];
    let plan = run(&[binding("x")], &estate);
    let outage = PassFailure {
        reason: FailureReason::CloudRunUnavailable,
        message: "listing jobs in us-central1 timed out".into(),
    };
    let outcomes = BTreeMap::from([outcome(
        &estate[0],
        failed(
            FailureReason::PermissionDenied,
            "run.services.update denied; grant it",
        ),
    )]);
    let report = plan.binding(&key("x")).unwrap().status(&StatusInput {
        generation: Some(1),
        now: at(0),
        pass_failure: Some(&outage),
        findings: None,
        outcomes: &outcomes,
        previous: None,
        history: None,
        breakglass: None,
        revisions: None,
    });
    assert_eq!(report.ready, ReadyReason::PermissionDenied);
    assert_eq!(
        condition(&report.status, "Ready").message,
        "Service us-central1/a (project acme-prod): run.services.update denied; grant it"
    );
}

#[test]
fn unread_regions_fail_ready_but_the_others_are_reported() {
    let estate = [
        service("us-central1", "a").policy_default(),
        service("us-central1", "b").policy_none(),
    ];
    let plan = run(&[binding("x")], &estate);
    let unread = |location: &str, reason| UnreadLocation {
        location: location.into(),
        reason,
        message: format!("{location} refused"),
    };
    let findings = PassFindings {
        unread: vec![
            unread("asia-east1", FailureReason::CloudRunUnavailable),
            unread("me-west1", FailureReason::VpcServiceControls),
        ],
        ..PassFindings::default()
    };
    let report = plan.binding(&key("x")).unwrap().status(&StatusInput {
        generation: Some(1),
        now: at(0),
        pass_failure: None,
        findings: Some(&findings),
        outcomes: &BTreeMap::new(),
        previous: None,
        history: None,
        breakglass: None,
        revisions: None,
    });
    // The most actionable unread region names the reason; both are listed.
    assert_eq!(report.ready, ReadyReason::VpcServiceControls);
    let message = &condition(&report.status, "Ready").message;
    assert!(
        message.starts_with("2 region(s) could not be read, every other region is reconciled: me-west1: me-west1 refused (also asia-east1)"),
        "{message}"
    );
    assert_eq!(report.status.unread_locations, findings.unread);
    // The regions that were read are planned and reported as usual.
    let summary = report.status.summary.unwrap();
    assert_eq!((summary.matched, summary.drifted), (2, 1));
}

#[test]
fn conflicts_make_ready_false_and_stalled() {
    let estate = [service("us-central1", "a")];
    let plan = run(&[binding("x"), binding("y").policy("strict")], &estate);
    let report = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
    assert_eq!(report.ready, ReadyReason::Conflict);
    assert_eq!(condition(&report.status, "Stalled").status, "True");
    assert_eq!(
        condition(&report.status, "Ready").message,
        "1 of 1 targets are also claimed with a different policy by equal-priority binding(s) platform/y and are left untouched; align the policies or give one binding a higher spec.priority"
    );
    assert_eq!(report.status.targets[0].state, TargetState::Conflicted);
    assert_eq!(report.status.summary.unwrap().conflicted, 1);
}

#[test]
fn superseded_breakglass_and_blocked_deploys_keep_ready_true() {
    let estate = [
        service("us-central1", "bg")
            .policy_default()
            .breakglass("incident 42"),
        service("us-central1", "blocked")
            .policy_default()
            .deploy_blocked("Revision blocked-00002 uses image x not authorized"),
        service("us-central1", "theirs")
            .policy_named("strict")
            .deploy_blocked("nope"),
    ];
    let plan = run(
        &[
            binding("x").names(["bg", "blocked", "theirs"]),
            binding("y").policy("strict").priority(1).names(["theirs"]),
        ],
        &estate,
    );
    let report = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
    assert_eq!(report.ready, ReadyReason::Compliant);
    assert_eq!(
        condition(&report.status, "Ready").message,
        "2/2 targets comply; 1 under breakglass; 1 with a deploy blocked by Binary Authorization; 1 superseded by higher-priority bindings"
    );
    assert_eq!(
        report.status.summary,
        Some(Summary {
            matched: 3,
            compliant: 2,
            breakglass: 1,
            superseded: 1,
            deploy_blocked: 1,
            ..Summary::default()
        }),
        "the owner, not the superseded binding, reports a blocked deploy"
    );
    let blocked = report
        .status
        .targets
        .iter()
        .find(|t| t.name == "blocked")
        .unwrap();
    assert!(blocked.deploy_blocked);
    assert_eq!(blocked.state, TargetState::Compliant);
    assert_eq!(
        blocked.message,
        "latest deploy refused by Binary Authorization: Revision blocked-00002 uses image x not authorized"
    );
    let bg = report
        .status
        .targets
        .iter()
        .find(|t| t.name == "bg")
        .unwrap();
    assert_eq!(
        (bg.state, bg.message.as_str()),
        (
            TargetState::Breakglass,
            "breakglass justification: incident 42"
        )
    );
    let theirs = report
        .status
        .targets
        .iter()
        .find(|t| t.name == "theirs")
        .unwrap();
    assert_eq!(
        (theirs.state, theirs.deploy_blocked),
        (TargetState::Superseded, false)
    );
    assert_eq!(theirs.message, "owned by platform/y (priority 1)");
    let owner = status_of(&plan, "y", &BTreeMap::new(), None, at(0));
    assert_eq!(owner.status.summary.unwrap().deploy_blocked, 1);
    assert!(owner.transitions[0].newly_deploy_blocked);
}

#[test]
fn suspended_and_invalid_bindings_report_why_and_keep_the_last_summary() {
    let estate = [service("us-central1", "a")];
    let plan = run(&[binding("x")], &estate);
    let previous = status_of(&plan, "x", &BTreeMap::new(), None, at(0)).status;

    let plan = run(&[binding("x").suspended()], &estate);
    let report = status_of(&plan, "x", &BTreeMap::new(), Some(&previous), at(60));
    assert_eq!(report.ready, ReadyReason::Suspended);
    // No Ready condition, so that kstatus (Flux) reads the binding as settled; Reconciling
    // comes first and says why.
    assert!(
        report.status.conditions.iter().all(|c| c.type_ != "Ready"),
        "{:?}",
        report.status.conditions
    );
    let first = &report.status.conditions[0];
    assert_eq!(
        (
            first.type_.as_str(),
            first.status.as_str(),
            first.reason.as_str()
        ),
        ("Reconciling", "False", "Suspended")
    );
    assert!(
        first.message.starts_with("spec.suspend is true"),
        "{}",
        first.message
    );
    assert_eq!(condition(&report.status, "Stalled").status, "False");
    assert_eq!(report.status.summary, previous.summary);
    assert_eq!(report.status.last_sync_time, previous.last_sync_time);
    assert!(report.transitions.is_empty());

    let plan = run(&[binding("x").invalid()], &estate);
    let report = status_of(&plan, "x", &BTreeMap::new(), Some(&previous), at(60));
    assert_eq!(report.ready, ReadyReason::InvalidSpec);
    let ready = condition(&report.status, "Ready");
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("spec.locations"),
        "{}",
        ready.message
    );
    assert_eq!(condition(&report.status, "Stalled").status, "True");
}

#[test]
fn transition_times_move_only_when_status_or_state_changes() {
    let estate = [
        service("us-central1", "a").policy_none(),
        service("us-central1", "b").policy_default(),
    ];
    let plan = run(&[binding("x").audit()], &estate);
    let first = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
    assert_eq!(
        first.transitions.len(),
        2,
        "everything is new on the first pass"
    );
    assert_eq!(first.transitions[0].from, None);

    // Same picture later: nothing moves.
    let second = status_of(&plan, "x", &BTreeMap::new(), Some(&first.status), at(600));
    assert!(second.transitions.is_empty());
    assert_eq!(second.status.conditions, first.status.conditions);
    assert_eq!(second.status.targets, first.status.targets);
    assert_ne!(second.status.last_sync_time, first.status.last_sync_time);

    // The drifted resource is fixed by someone: Ready flips, its time moves, b's does not.
    let fixed = [estate[0].clone().policy_default(), estate[1].clone()];
    let plan = run(&[binding("x").audit()], &fixed);
    let third = status_of(&plan, "x", &BTreeMap::new(), Some(&second.status), at(1200));
    let ready = condition(&third.status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.last_transition_time.as_str()),
        ("True", "2027-01-15T08:20:00Z")
    );
    let reconciling = condition(&third.status, "Reconciling");
    assert_eq!(
        reconciling.last_transition_time, "2027-01-15T08:00:00Z",
        "status unchanged"
    );
    assert_eq!(third.transitions.len(), 1);
    assert_eq!(
        (third.transitions[0].from, third.transitions[0].to),
        (Some(TargetState::Drifted), TargetState::Compliant)
    );
    let b = third.status.targets.iter().find(|t| t.name == "b").unwrap();
    assert_eq!(
        b.last_transition_time.as_deref(),
        Some("2027-01-15T08:00:00Z")
    );

    // The complete in-memory history gives the same answer as the status.
    let again = plan.binding(&key("x")).unwrap().status(&StatusInput {
        generation: Some(3),
        now: at(1200),
        pass_failure: None,
        findings: None,
        outcomes: &BTreeMap::new(),
        previous: Some(&second.status),
        history: Some(&second.history),
        breakglass: None,
        revisions: None,
    });
    assert_eq!(again, third);
}

#[test]
fn the_target_list_is_bounded_and_puts_what_needs_attention_first() {
    let mut estate: Vec<ObservedResource> = (0..150)
        .map(|i| service("us-central1", &format!("svc-{i:03}")).policy_default())
        .collect();
    estate.push(service("europe-west1", "zz-drifted").policy_none());
    estate.push(service("us-central1", "aa-drifted").policy_none());
    estate.push(job("us-central1", "nightly").policy_none());
    estate.push(
        service("us-central1", "bg")
            .policy_default()
            .breakglass("incident"),
    );
    let plan = run(
        &[binding("x")
            .audit()
            .locations(["us-central1", "europe-west1"])
            .jobs(["*"])],
        &estate,
    );
    let report = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
    let s = &report.status;
    assert_eq!(s.targets.len(), MAX_STATUS_TARGETS);
    assert!(s.targets_truncated);
    assert_eq!(s.summary.unwrap().matched, 154);
    let head: Vec<(ResourceKind, &str, &str)> = s.targets[..5]
        .iter()
        .map(|t| (t.kind, t.location.as_str(), t.name.as_str()))
        .collect();
    assert_eq!(
        head,
        [
            (ResourceKind::Service, "europe-west1", "zz-drifted"),
            (ResourceKind::Service, "us-central1", "aa-drifted"),
            (ResourceKind::Job, "us-central1", "nightly"),
            (ResourceKind::Service, "us-central1", "bg"),
            (ResourceKind::Service, "us-central1", "svc-000"),
        ]
    );
    assert_eq!(report.history.len(), 154, "the history is complete");
    let full = plan.binding(&key("x")).unwrap().full_report(&StatusInput {
        generation: Some(3),
        now: at(0),
        pass_failure: None,
        findings: None,
        outcomes: &BTreeMap::new(),
        previous: None,
        history: None,
        breakglass: None,
        revisions: None,
    });
    assert_eq!(full.status.targets.len(), 154);
    assert!(!full.status.targets_truncated);
    assert_eq!(full.status.targets[..MAX_STATUS_TARGETS], s.targets[..]);
    // Both at once: the same status, and every target beside it.
    let input = StatusInput {
        generation: Some(3),
        now: at(0),
        pass_failure: None,
        findings: None,
        outcomes: &BTreeMap::new(),
        previous: None,
        history: None,
        breakglass: None,
        revisions: None,
    };
    let bp = plan.binding(&key("x")).unwrap();
    let (both, every) = bp.status_and_every_target(&input);
    assert_eq!(both.status, bp.status(&input).status);
    assert_eq!(every, full.status.targets);
}

#[test]
fn gone_resources_drop_out_of_the_status() {
    let estate = [service("us-central1", "a").policy_none()];
    let plan = run(&[binding("x")], &estate);
    let outcomes = BTreeMap::from([outcome(&estate[0], WriteOutcome::Gone)]);
    let report = status_of(&plan, "x", &outcomes, None, at(0));
    assert!(report.status.targets.is_empty());
    assert_eq!(report.status.summary.unwrap().matched, 0);
    assert_eq!(report.ready, ReadyReason::Compliant);
}

#[test]
fn long_messages_are_cut_to_the_crd_limit() {
    let estate = [service("us-central1", "a")
        .policy_default()
        .breakglass(&"é".repeat(2000))];
    let plan = run(&[binding("x")], &estate);
    let report = status_of(&plan, "x", &BTreeMap::new(), None, at(0));
    let message = &report.status.targets[0].message;
    assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
    assert!(message.ends_with('…'));
}

#[test]
fn changing_a_binding_rechecks_the_bindings_sharing_its_targets() {
    let estate = [
        service("us-central1", "pay-1"),
        service("us-central1", "web-1"),
        service("europe-west1", "web-2"),
    ];
    let pay = binding("pay").names(["pay-*"]);
    let web = binding("web").names(["web-*"]);
    let eu = binding("eu").locations(["europe-west1"]);
    let paused = binding("paused").suspended();
    let all = [pay.clone(), web.clone(), eu.clone(), paused.clone()];
    let inputs: Vec<BindingInput<'_>> = all.iter().map(TestBinding::input).collect();
    let affected = |changed: &str, old: Option<&BinAuthzBindingSpec>| {
        affected_bindings(&key(changed), old, &inputs, &estate)
            .into_iter()
            .map(|k| k.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(affected("pay", None), Vec::<String>::new());
    assert_eq!(
        affected("paused", None),
        ["pay", "web"],
        "a suspended binding still changes ownership"
    );
    // `pay` used to cover web-* everywhere: web and eu shared targets with it.
    let old = binding("pay").locations(["*"]).names(["web-*"]).spec;
    assert_eq!(affected("pay", Some(&old)), ["eu", "web"]);
    // A deleted binding: only its old spec counts.
    let gone = binding("gone").names(["web-1"]).spec;
    assert_eq!(affected("gone", Some(&gone)), ["web"]);
}
