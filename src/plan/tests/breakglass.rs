//! Breakglass owners and ages: first seen from Cloud Run's lastModifier/updateTime,
//! remembered while the justification stays, overdue once.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::resource::LastChange;

const HOUR: Duration = Duration::from_secs(3600);

fn t(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn under_breakglass(why: &str, by: &str, at: &str) -> ObservedResource {
    service("us-central1", "pay-1")
        .policy_default()
        .breakglass(why)
        .edit(|r| {
            r.last_change = Some(Box::new(LastChange {
                by: Some(by.into()),
                at: Some(t(at)),
            }))
        })
}

#[test]
fn the_owner_is_the_change_that_set_the_justification_and_is_remembered() {
    let first = under_breakglass("INC-1", "alice@acme.dev", "2026-12-01T08:00:00Z");
    let none = HashMap::new();
    let update = BreakglassLedger::default().update(
        [&first],
        &none,
        t("2026-12-01T09:00:00Z"),
        Some(24 * HOUR),
    );
    let owner = update.ledger.get(&first.id).unwrap();
    assert_eq!(owner.by.as_deref(), Some("alice@acme.dev"));
    assert_eq!(owner.since, t("2026-12-01T08:00:00Z"));
    assert_eq!(update.ledger.max_age(t("2026-12-01T09:00:00Z")), HOUR);
    assert!(update.newly_overdue.is_empty());

    // A later deploy by someone else keeps the justification: the owner stays.
    let later = under_breakglass("INC-1", "bob@acme.dev", "2026-12-01T20:00:00Z");
    let again = update
        .ledger
        .update([&later], &none, t("2026-12-01T21:00:00Z"), Some(24 * HOUR));
    assert_eq!(
        again.ledger.get(&later.id).unwrap().by.as_deref(),
        Some("alice@acme.dev")
    );

    // A new justification has a new owner.
    let changed = under_breakglass("INC-2", "bob@acme.dev", "2026-12-01T22:00:00Z");
    let third = again.ledger.update(
        [&changed],
        &none,
        t("2026-12-01T23:00:00Z"),
        Some(24 * HOUR),
    );
    let owner = third.ledger.get(&changed.id).unwrap();
    assert_eq!(owner.by.as_deref(), Some("bob@acme.dev"));
    assert_eq!(owner.since, t("2026-12-01T22:00:00Z"));
}

#[test]
fn overdue_is_reported_once_and_a_known_principal_wins() {
    let r = under_breakglass("INC-1", "alice@acme.dev", "2026-12-01T08:00:00Z");
    let principals = HashMap::from([(r.id.clone(), "carol@acme.dev".to_owned())]);
    let first = BreakglassLedger::default().update(
        [&r],
        &principals,
        t("2026-12-02T09:00:00Z"),
        Some(24 * HOUR),
    );
    assert_eq!(first.newly_overdue, std::slice::from_ref(&r.id));
    assert_eq!(
        first.ledger.get(&r.id).unwrap().by.as_deref(),
        Some("carol@acme.dev")
    );
    let second = first.ledger.update(
        [&r],
        &HashMap::new(),
        t("2026-12-02T10:00:00Z"),
        Some(24 * HOUR),
    );
    assert!(second.newly_overdue.is_empty());
    // Gone from breakglass: forgotten.
    let third = second.ledger.update(
        std::iter::empty(),
        &HashMap::new(),
        t("2026-12-02T11:00:00Z"),
        Some(24 * HOUR),
    );
    assert!(third.ledger.is_empty());
    assert_eq!(
        third.ledger.max_age(t("2026-12-02T11:00:00Z")),
        Duration::ZERO
    );
}

#[test]
fn the_status_shows_who_and_since_when_for_breakglass_targets() {
    let r = under_breakglass("INC-1", "alice@acme.dev", "2026-12-01T08:00:00Z");
    let resources = [r];
    let plan = run(&[binding("a")], &resources);
    let bp = plan.binding(&key("a")).unwrap();
    let ledger = BreakglassLedger::default()
        .update(
            bp.targets().iter().map(|t| t.resource),
            &HashMap::new(),
            t("2026-12-01T09:00:00Z"),
            None,
        )
        .ledger;
    let report = bp.status(&StatusInput {
        generation: Some(1),
        now: t("2026-12-01T09:00:00Z"),
        pass_failure: None,
        findings: None,
        outcomes: &BTreeMap::new(),
        previous: None,
        history: None,
        breakglass: Some(&ledger),
        revisions: None,
    });
    let entry = &report.status.targets[0];
    assert_eq!(entry.state, TargetState::Breakglass);
    assert_eq!(entry.breakglass_by.as_deref(), Some("alice@acme.dev"));
    assert_eq!(
        entry.breakglass_since.as_deref(),
        Some("2026-12-01T08:00:00Z")
    );
    // A new leader reads it back from the status.
    let restored =
        BreakglassLedger::from_status(&report.status, PROJECT, t("2026-12-01T10:00:00Z"), None);
    let owner = restored.get(&resources[0].id).unwrap();
    assert_eq!(owner.by.as_deref(), Some("alice@acme.dev"));
    assert_eq!(owner.since, t("2026-12-01T08:00:00Z"));
}
