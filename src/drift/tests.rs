use serde_json::{json, Value};

use super::auditlog::Entry;
use super::*;
use crate::resource::ResourceKind;
use crate::testing;

/// A binding over acme-prod/us-central1 services named `check*` (see [`testing::binding`]).
fn binding(name: &str, overrides: Value) -> Arc<BinAuthzBinding> {
    let mut spec = json!({"targets": {"services": {"names": ["check*"]}}});
    for (k, v) in overrides.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    Arc::new(testing::binding(name, spec))
}

fn fixture(name: &str) -> Entry {
    let path = format!(
        "{}/tests/fixtures/auditlog/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Entry::from_json(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_covered_write_by_a_person_is_rechecked() {
    let id = judge(
        &fixture("v2-update-service-first.json"),
        &DriftConfig::default(),
        &[binding("prod", json!({}))],
    )
    .unwrap();
    assert_eq!(id.kind, ResourceKind::Service);
    assert_eq!(id.name, "checkout");
}

#[test]
fn failed_calls_own_writes_and_other_methods_are_ignored() {
    let bindings = [binding("prod", json!({}))];
    let config = DriftConfig::default();
    assert_eq!(
        judge(
            &fixture("v2-update-service-failed.json"),
            &config,
            &bindings
        ),
        Err(DriftIgnored::FailedCall)
    );
    assert_eq!(
        judge(
            &fixture("v2-update-service-by-operator.json"),
            &config,
            &bindings
        ),
        Err(DriftIgnored::OwnWrite)
    );
    assert_eq!(
        judge(&fixture("v2-delete-service.json"), &config, &bindings),
        Err(DriftIgnored::NotAWrite)
    );
}

#[test]
fn an_ignored_principal_is_the_operators_own_write_whatever_its_user_agent() {
    let bindings = [binding("prod", json!({}))];
    let config = DriftConfig {
        ignore_principals: vec!["dev@acme.example".into()],
    };
    assert_eq!(
        judge(&fixture("v2-update-service-first.json"), &config, &bindings),
        Err(DriftIgnored::OwnWrite)
    );
    // A user agent merely containing the product name is not the operator's.
    let mut entry = fixture("v2-update-service-first.json");
    entry.user_agent = Some("my-binauthz-operator/2 gcloud".into());
    assert!(judge(&entry, &DriftConfig::default(), &bindings).is_ok());
}

#[test]
fn resources_no_active_binding_could_match_are_uncovered() {
    let entry = fixture("v2-update-service-first.json");
    let config = DriftConfig::default();
    for (why, bindings) in [
        ("no binding", vec![]),
        (
            "another project",
            vec![binding("p", json!({"project": "acme-dev"}))],
        ),
        (
            "another region",
            vec![binding("p", json!({"locations": ["europe-west1"]}))],
        ),
        (
            "another kind",
            vec![binding("p", json!({"targets": {"jobs": {"names": ["*"]}}}))],
        ),
        (
            "another name",
            vec![binding(
                "p",
                json!({"targets": {"services": {"names": ["payments-*"]}}}),
            )],
        ),
        (
            "excluded",
            vec![binding(
                "p",
                json!({"targets": {"services": {"names": ["*"], "exclude": ["checkout"]}}}),
            )],
        ),
        ("suspended", vec![binding("p", json!({"suspend": true}))]),
    ] {
        assert_eq!(
            judge(&entry, &config, &bindings),
            Err(DriftIgnored::Uncovered),
            "{why}"
        );
    }
    // Any region, or a label selector (labels are only known after the read): covered.
    for extra in [
        json!({"locations": ["*"]}),
        json!({"targets": {"services": {"labelSelector": {"matchLabels": {"env": "prod"}}}}}),
    ] {
        assert!(
            judge(&entry, &config, &[binding("p", extra.clone())]).is_ok(),
            "{extra}"
        );
    }
}

#[test]
fn dedupe_lets_each_id_through_once() {
    let mut dedupe = Dedupe::default();
    assert!(dedupe.first("m/1"));
    assert!(!dedupe.first("m/1"));
    assert!(dedupe.first("m/2"));
    assert!(dedupe.first("o/1"));
    assert!(!dedupe.first("o/1"));
}

#[test]
fn dedupe_stays_bounded() {
    let mut dedupe = Dedupe::default();
    for i in 0..(DEDUPE_CAPACITY + 10) {
        assert!(dedupe.first(&format!("m/{i}")));
    }
    assert!(dedupe.seen.len() <= DEDUPE_CAPACITY);
    // The newest are still remembered.
    assert!(!dedupe.first(&format!("m/{}", DEDUPE_CAPACITY + 9)));
}

#[test]
fn the_two_entries_of_one_operation_share_an_id() {
    let first = fixture("v2-update-service-first.json");
    let last = fixture("v2-update-service-last.json");
    let (a, b) = (first.operation.unwrap(), last.operation.unwrap());
    assert_eq!(a.id, b.id);
    assert!(a.first && b.last);
    assert_eq!(first.resource, last.resource);
}

#[test]
fn a_new_message_reusing_an_old_id_is_not_a_redelivery() {
    let delivery = |id: &str, published: &str| Received {
        ack_id: format!("ack-{id}-{published}"),
        message_id: id.to_string(),
        publish_time: published.to_string(),
        data: Ok(Vec::new()),
    };
    let mut dedupe = Dedupe::default();
    let first = delivery("1", "2026-12-02T13:46:40.100Z");
    assert!(dedupe.first(&redelivery_key(&first)));
    // Pub/Sub delivers the same message again: same id, same publish time.
    let again = delivery("1", "2026-12-02T13:46:40.100Z");
    assert!(!dedupe.first(&redelivery_key(&again)));
    // A restarted emulator counts ids from 1 again: a new message, handled.
    let after_restart = delivery("1", "2026-12-02T13:47:20.900Z");
    assert!(dedupe.first(&redelivery_key(&after_restart)));
}
