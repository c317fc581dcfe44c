//! Builders of the test objects the unit tests of every module share.

use serde_json::{json, Value};

use crate::api::{BinAuthzBinding, BinAuthzBindingSpec};

/// A spec over every service of acme-prod/us-central1 with the project's default policy,
/// with the top-level fields of `overrides` replacing its own.
pub(crate) fn spec(overrides: Value) -> BinAuthzBindingSpec {
    serde_json::from_value(spec_json(overrides)).expect("a valid spec")
}

/// A binding named `name` in namespace `team`, generation 1, uid `uid-{name}`, with
/// [`spec`]`(overrides)`.
pub(crate) fn binding(name: &str, overrides: Value) -> BinAuthzBinding {
    serde_json::from_value(json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "BinAuthzBinding",
        "metadata": {"name": name, "namespace": "team", "generation": 1, "uid": format!("uid-{name}")},
        "spec": spec_json(overrides),
    }))
    .expect("a valid binding")
}

fn spec_json(overrides: Value) -> Value {
    let mut spec = json!({
        "project": "acme-prod",
        "locations": ["us-central1"],
        "targets": {"services": {"names": ["*"]}},
        "policy": {"useDefault": true},
    });
    for (k, v) in overrides.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    spec
}
