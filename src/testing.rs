//! Builders of the test objects the unit tests, the integration tests and the benchmarks
//! share (compiled for `cargo test` and with the `testing` feature, which the package's
//! own dev-dependency on itself turns on; no release build has it).

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test support: an object that does not deserialize is a broken test, said at once"
)]

use serde_json::{json, Value};

use crate::api::{BinAuthzBinding, BinAuthzBindingSpec};

/// A spec over every service of acme-prod/us-central1 with the project's default policy,
/// with the top-level fields of `overrides` replacing its own.
pub fn spec(overrides: Value) -> BinAuthzBindingSpec {
    serde_json::from_value(spec_json(overrides)).expect("a valid spec")
}

/// A binding as a watch cache holds it: named `name` in namespace `team`, generation 1,
/// uid `uid-{name}`, with [`spec`]`(overrides)`.
pub fn binding(name: &str, overrides: Value) -> BinAuthzBinding {
    serde_json::from_value(json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "BinAuthzBinding",
        "metadata": {"name": name, "namespace": "team", "generation": 1, "uid": format!("uid-{name}")},
        "spec": spec_json(overrides),
    }))
    .expect("a valid binding")
}

/// A binding to create through the API server: only its name (the API it is created
/// through gives the namespace; the server the uid and generation) and exactly `spec`.
pub fn new_binding(name: &str, spec: Value) -> BinAuthzBinding {
    serde_json::from_value(json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "BinAuthzBinding",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("binding {name}: {e}"))
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
