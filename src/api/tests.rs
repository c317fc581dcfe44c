//! Tests of the binding types and of the hand validator against the schema.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde_json::{json, Value};

use super::*;

/// The `spec` schema of the CRD exactly as `binauthz-operator crd` prints it.
fn printed_spec_schema() -> Value {
    let crd: Value = serde_yaml_ng::from_str(&crd_yaml().unwrap()).unwrap();
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .unwrap()
        .clone()
}

/// The regular expression inside a CEL rule's `matches('...')`, unescaped.
fn cel_pattern(rule: &str) -> String {
    let start = rule.find("matches('").unwrap() + "matches('".len();
    let end = start + rule[start..].find("')").unwrap();
    rule[start..end].replace(r"\\", r"\")
}

/// The first CEL rule of a schema that calls `matches()`.
fn matches_rule(schema: &Value) -> String {
    schema["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .find(|r| r.contains("matches('"))
        .unwrap()
        .to_owned()
}

/// A valid spec, to put one value at a time into.
fn valid_spec() -> BinAuthzBindingSpec {
    serde_json::from_value(json!({
        "project": "acme-prod", "locations": ["us-central1"],
        "targets": {"services": {"names": ["*"]}}, "policy": {"useDefault": true}
    }))
    .unwrap()
}

fn services(spec: &mut BinAuthzBindingSpec) -> &mut TargetSelector {
    spec.targets.services.as_mut().unwrap()
}

fn with_labels(spec: &mut BinAuthzBindingSpec, selector: LabelSelector) {
    services(spec).label_selector = Some(selector);
}

fn requirement(key: &str, operator: LabelOperator, values: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![LabelSelectorRequirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }],
    }
}

fn labels(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::from([(key.to_owned(), value.to_owned())]),
        match_expressions: Vec::new(),
    }
}

/// One string field of the spec under a schema pattern.
struct Field {
    /// Where the field's schema sits under `spec` (a JSON pointer).
    schema: &'static str,
    /// Whether the pattern is a CEL `matches()` rule on that schema (map keys) rather than
    /// its `pattern`.
    cel: bool,
    /// The field as the validator names it.
    path: &'static str,
    /// Puts a value into a valid spec.
    place: fn(&mut BinAuthzBindingSpec, &str),
    /// Values and whether the API server accepts them.
    examples: Vec<(String, bool)>,
}

fn examples(items: &[(&str, bool)]) -> Vec<(String, bool)> {
    items.iter().map(|(s, ok)| ((*s).to_owned(), *ok)).collect()
}

fn label_keys() -> Vec<(String, bool)> {
    let mut keys = examples(&[
        ("tier", true),
        ("a", true),
        ("team_1-x", true),
        ("Tier", false),
        ("1tier", false),
        ("_tier", false),
        ("t.x", false),
        ("", false),
    ]);
    keys.push(("k".repeat(63), true));
    keys.push(("k".repeat(64), false));
    keys
}

fn label_values() -> Vec<(String, bool)> {
    let mut values = examples(&[
        ("gold", true),
        ("", true),
        ("1_a-b", true),
        ("Gold", false),
        ("a b", false),
        ("a.b", false),
    ]);
    values.push(("v".repeat(63), true));
    values.push(("v".repeat(64), false));
    values
}

fn name_globs() -> Vec<(String, bool)> {
    let mut globs = examples(&[
        ("pay-*", true),
        ("a?c", true),
        ("*", true),
        ("Pay", false),
        ("pay_1", false),
        ("", false),
    ]);
    globs.push(("g".repeat(63), true));
    globs.push(("g".repeat(64), false));
    globs
}

fn fields() -> Vec<Field> {
    vec![
        Field {
            schema: "/properties/project",
            cel: false,
            path: "spec.project",
            place: |spec, v| spec.project = v.to_owned(),
            examples: examples(&[
                ("acme-prod", true),
                ("a12345", true),
                ("acme", false),
                ("acme-", false),
                ("Acme-prod", false),
                ("acme_prod", false),
                ("", false),
                ("123456789012", true),
                ("123456789012345678901", false),
                ("a23456789012345678901234567890", true),
                ("a234567890123456789012345678901", false),
            ]),
        },
        Field {
            schema: "/properties/locations/items",
            cel: false,
            path: "spec.locations[0]",
            place: |spec, v| spec.locations = vec![v.to_owned()],
            examples: examples(&[
                ("us-central1", true),
                ("europe-west12", true),
                ("*", true),
                ("us-central", false),
                ("uscentral1", false),
                ("us-central1a", false),
                ("US-central1", false),
                ("us-central1-", false),
                ("**", false),
            ]),
        },
        Field {
            schema: "/properties/targets/properties/services/properties/names/items",
            cel: false,
            path: "spec.targets.services.names[0]",
            place: |spec, v| services(spec).names = Some(vec![v.to_owned()]),
            examples: name_globs(),
        },
        Field {
            schema: "/properties/targets/properties/services/properties/exclude/items",
            cel: false,
            path: "spec.targets.services.exclude[0]",
            place: |spec, v| services(spec).exclude = vec![v.to_owned()],
            examples: name_globs(),
        },
        Field {
            schema: "/properties/policy/properties/name",
            cel: false,
            path: "spec.policy.name",
            place: |spec, v| {
                spec.policy = PolicyRef {
                    use_default: None,
                    name: Some(v.to_owned()),
                }
            },
            examples: examples(&[
                ("projects/acme-sec/platforms/cloudRun/policies/strict", true),
                ("projects/123/platforms/cloudRun/policies/a.b", true),
                ("projects//platforms/cloudRun/policies/strict", false),
                ("projects/acme-sec/platforms/cloudRun/policies/", false),
                ("projects/acme-sec/platforms/gke/policies/strict", false),
                ("projects/a/b/platforms/cloudRun/policies/strict", false),
                ("projects/acme-sec/platforms/cloudRun/policies/a/b", false),
                ("strict", false),
            ]),
        },
        Field {
            schema: "/properties/interval",
            cel: false,
            path: "spec.interval",
            place: |spec, v| spec.interval = v.to_owned(),
            examples: examples(&[
                ("10m", true),
                ("1h30m", true),
                ("1.5h", true),
                ("90s", true),
                ("10", false),
                ("m", false),
                ("1.h", false),
                ("10 m", false),
                ("-10m", false),
            ]),
        },
        Field {
            schema: "/properties/targets/properties/services/properties/labelSelector/properties/matchExpressions/items/properties/key",
            cel: false,
            path: "spec.targets.services.labelSelector.matchExpressions[0].key",
            place: |spec, v| with_labels(spec, requirement(v, LabelOperator::Exists, &[])),
            examples: label_keys(),
        },
        Field {
            schema: "/properties/targets/properties/services/properties/labelSelector/properties/matchExpressions/items/properties/values/items",
            cel: false,
            path: "spec.targets.services.labelSelector.matchExpressions[0].values[0]",
            place: |spec, v| with_labels(spec, requirement("tier", LabelOperator::In, &[v])),
            examples: label_values(),
        },
        Field {
            schema: "/properties/targets/properties/services/properties/labelSelector/properties/matchLabels/additionalProperties",
            cel: false,
            path: "spec.targets.services.labelSelector.matchLabels.tier",
            place: |spec, v| with_labels(spec, labels("tier", v)),
            examples: label_values(),
        },
        Field {
            schema: "/properties/targets/properties/services/properties/labelSelector/properties/matchLabels",
            cel: true,
            path: "spec.targets.services.labelSelector.matchLabels",
            place: |spec, v| with_labels(spec, labels(v, "gold")),
            examples: label_keys(),
        },
    ]
}

#[test]
fn hand_written_checks_agree_with_the_schema_patterns() {
    // Every string pattern of the printed CRD is compiled and evaluated, together with its
    // maxLength, on the same examples as the hand validator: a drift on either side fails.
    // The end-to-end suite checks the schema side against a real API server.
    let spec_schema = printed_spec_schema();
    for field in fields() {
        let schema = spec_schema.pointer(field.schema).unwrap();
        let (pattern, max_len) = if field.cel {
            (cel_pattern(&matches_rule(schema)), None)
        } else {
            let pattern = schema["pattern"].as_str().unwrap().to_owned();
            (pattern, Some(schema["maxLength"].as_u64().unwrap()))
        };
        let regex = Regex::new(&pattern).unwrap();
        for (value, ok) in &field.examples {
            let fits = max_len.is_none_or(|max| value.chars().count() as u64 <= max);
            let schema_accepts = fits && regex.is_match(value);
            assert_eq!(
                schema_accepts, *ok,
                "schema of {}: {pattern} on {value:?}",
                field.path
            );
            let mut spec = valid_spec();
            (field.place)(&mut spec, value);
            let refused = spec
                .validate()
                .err()
                .is_some_and(|e| e.0.iter().any(|f| f.field == field.path));
            assert_eq!(
                !refused,
                *ok,
                "validator on {}: {value:?} ({:?})",
                field.path,
                spec.validate()
            );
        }
    }
}

#[test]
fn the_interval_floor_rule_guards_with_the_interval_pattern() {
    let spec_schema = printed_spec_schema();
    let interval = spec_schema.pointer("/properties/interval").unwrap();
    assert_eq!(
        cel_pattern(&matches_rule(interval)),
        interval["pattern"].as_str().unwrap()
    );
}

#[test]
fn interval_has_a_floor_and_a_default() {
    let spec: BinAuthzBindingSpec = serde_json::from_value(serde_json::json!({
        "project": "acme-prod", "locations": ["us-central1"],
        "targets": {"services": {"names": ["*"]}}, "policy": {"useDefault": true}
    }))
    .unwrap();
    assert_eq!(spec.interval(), Duration::from_secs(600));
    assert_eq!(spec.mode, Mode::Enforce);
    assert_eq!(spec.breakglass, BreakglassMode::Allow);
    assert!(spec.validate().is_ok());
    let mut short = spec.clone();
    short.interval = "29s".into();
    let err = short.validate().unwrap_err();
    assert_eq!(err.0[0].field, "spec.interval");
    assert!(err.to_string().contains("at least 30s"));
    short.interval = "1m30s".into();
    assert_eq!(short.interval(), Duration::from_secs(90));
}

#[test]
fn desired_policy_never_means_disabled() {
    let disabled = PolicyRef {
        use_default: Some(false),
        name: None,
    };
    assert_eq!(disabled.desired(), None);
    let both = PolicyRef {
        use_default: Some(true),
        name: Some("projects/p/platforms/cloudRun/policies/x".into()),
    };
    assert_eq!(both.desired(), None);
}

/// A valid exception spec, to change one field at a time.
fn valid_exception() -> BinAuthzExceptionSpec {
    serde_json::from_value(json!({
        "project": "acme-prod", "location": "us-central1", "kind": "Service",
        "names": ["checkout", "pay-*"], "reason": "INC-4711",
        "expiresAt": "2026-12-31T18:00:00Z"
    }))
    .unwrap()
}

#[test]
fn exception_expiry_pattern_and_validator_agree() {
    let crd = serde_json::to_value(exception_crd()).unwrap();
    let schema = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/expiresAt")
        .unwrap();
    let regex = Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
    assert_eq!(
        cel_pattern(&matches_rule(schema)),
        schema["pattern"].as_str().unwrap()
    );
    for (text, valid) in [
        ("2026-12-31T18:00:00Z", true),
        ("2026-12-31T18:00:00.123Z", true),
        ("2026-12-31T18:00:00+02:00", true),
        ("2026-12-31T18:00:00-05:30", true),
        ("2026-12-31 18:00:00Z", false),
        ("2026-12-31T18:00Z", false),
        ("2026-12-31T18:00:00", false),
        ("2026-12-31T18:00:00.Z", false),
        ("2026-12-31T18:00:00.1234567890Z", false),
        ("2026-12-31T18:00:00+0200", false),
        ("tomorrow", false),
    ] {
        assert_eq!(regex.is_match(text), valid, "schema on {text}");
        let mut spec = valid_exception();
        spec.expires_at = text.into();
        assert_eq!(spec.validate().is_ok(), valid, "validator on {text}");
    }
}

#[test]
fn exception_rules_are_checked_like_the_api_server_checks_them() {
    assert_eq!(valid_exception().validate(), Ok(()));
    let fields = |edit: fn(&mut BinAuthzExceptionSpec)| {
        let mut spec = valid_exception();
        edit(&mut spec);
        spec.validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(|s| s.names = vec!["*".into()]), ["spec.names"]);
    assert_eq!(fields(|s| s.names.clear()), ["spec.names"]);
    assert_eq!(
        fields(|s| s.names = vec!["a".into(), "a".into()]),
        ["spec.names[1]"]
    );
    assert_eq!(fields(|s| s.names = vec!["Pay".into()]), ["spec.names[0]"]);
    assert_eq!(fields(|s| s.reason.clear()), ["spec.reason"]);
    assert_eq!(fields(|s| s.reason = "x".repeat(513)), ["spec.reason"]);
    assert_eq!(fields(|s| s.location = "moon".into()), ["spec.location"]);
    assert_eq!(fields(|s| s.project = "Acme".into()), ["spec.project"]);
    // The shape holds, the time does not: the CEL rule's twin.
    assert_eq!(
        fields(|s| s.expires_at = "2026-13-45T18:00:00Z".into()),
        ["spec.expiresAt"]
    );
}

#[test]
fn exception_manifests_are_read_with_the_api_servers_words() {
    let ok = exception_from_value(json!({
        "apiVersion": API_VERSION, "kind": EXCEPTION_KIND,
        "metadata": {"name": "hotfix", "namespace": "platform"},
        "spec": serde_json::to_value(valid_exception()).unwrap()
    }));
    assert!(ok.is_ok(), "{ok:?}");
    let unknown = exception_from_value(json!({
        "apiVersion": API_VERSION, "kind": EXCEPTION_KIND,
        "metadata": {"name": "hotfix"},
        "spec": {"project": "acme-prod", "location": "us-central1", "kind": "Service",
                 "names": ["a"], "reason": "r", "expiresAt": "2026-12-31T18:00:00Z", "until": "x"}
    }))
    .unwrap_err();
    assert_eq!(unknown.0[0].field, "spec.until");
    let wrong_version =
        exception_from_value(json!({"apiVersion": "binauthz.dev/v1", "kind": EXCEPTION_KIND}))
            .unwrap_err();
    assert_eq!(wrong_version.0[0].field, "apiVersion");
}

#[test]
fn the_grant_patterns_agree_with_their_predicates() {
    use super::patterns::{Pattern, K8S_LABEL_KEY, K8S_LABEL_VALUE, NAMESPACE_NAME, PROJECT_GLOB};
    let long = "a".repeat(64);
    let cases: [(&Pattern, Vec<&str>); 4] = [
        (
            &NAMESPACE_NAME,
            vec!["team-a", "a", "0x", "-a", "a-", "A", "a.b", "", &long],
        ),
        (
            &PROJECT_GLOB,
            vec![
                "acme-*",
                "123456789012",
                "acme-?",
                "*",
                "Acme",
                "acme_x",
                "",
            ],
        ),
        (
            &K8S_LABEL_KEY,
            vec![
                "team",
                "example.com/team",
                "a.b/c_d.E",
                "/team",
                "example.com/",
                "-x",
                "a/b/c",
                "",
            ],
        ),
        (
            &K8S_LABEL_VALUE,
            vec!["", "payments", "Prod_1.x", "-x", "x-", "a b", &long],
        ),
    ];
    for (pattern, examples) in cases {
        let regex = Regex::new(pattern.regex).unwrap();
        for value in examples {
            let fits = value.chars().count() <= pattern.max_len;
            assert_eq!(
                fits && regex.is_match(value),
                fits && (pattern.accepts)(value),
                "{} on {value:?}",
                pattern.regex
            );
        }
    }
}

proptest::proptest! {
    /// The admission policy matches the index's regular expressions where the operator
    /// matches the grant's globs: both must say the same of every project and policy name.
    #[test]
    fn index_regexes_match_what_the_globs_match(
        glob in "[a-c*?./-]{1,8}",
        name in "[a-c./-]{0,8}",
    ) {
        let regex = Regex::new(&super::glob_regex(&glob)).unwrap();
        proptest::prop_assert_eq!(regex.is_match(&name), crate::matching::Glob::new(&glob).matches(&name));
    }
}

#[test]
fn the_index_lists_every_grant_sorted_with_every_field_spelled_out() {
    use super::{BinAuthzTenancyIndexSpec, BinAuthzTenancySpec, PolicyGrant};
    let open = BinAuthzTenancySpec {
        namespaces: vec!["team-b".into()],
        namespace_selector: None,
        projects: vec!["acme-*".into()],
        max_priority: 5,
        policies: None,
    };
    let default_only = BinAuthzTenancySpec {
        policies: Some(PolicyGrant { names: Vec::new() }),
        ..open.clone()
    };
    let index = BinAuthzTenancyIndexSpec::of([("z", &open), ("a", &default_only)]);
    let names: Vec<&str> = index.grants.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["a", "z"]);
    assert!(!index.grants[0].any_policy && index.grants[0].policies.is_empty());
    assert!(index.grants[1].any_policy);
    assert_eq!(index.grants[1].projects, ["^acme-.*$"]);
    let json = serde_json::to_value(&index).unwrap();
    for field in [
        "namespaces",
        "byLabels",
        "matchLabels",
        "matchExpressions",
        "projects",
        "maxPriority",
        "anyPolicy",
        "policies",
    ] {
        assert!(
            json["grants"][0].get(field).is_some(),
            "{field} missing: {json}"
        );
    }
}
