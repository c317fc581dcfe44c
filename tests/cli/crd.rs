//! The CRD as the code derives it: committed copy in step, descriptions everywhere, and the
//! shared corpus of valid and invalid bindings checked by `validate()`.
//!
//! The end-to-end suite sends the same corpus to a real kube-apiserver; both must agree.

use binauthz_operator::api;

use crate::support::kube::corpus;
use crate::support::repo;

#[test]
fn committed_crds_match_the_code() {
    let files = api::crd_files().expect("CRDs serialize");
    assert_eq!(
        files.len(),
        4,
        "bindings, exceptions, tenancy grants and their index"
    );
    assert_eq!(files[0].1, api::crd_yaml().expect("CRD serializes"));
    for (file, generated) in files {
        let path = format!("crds/{file}");
        let committed = std::fs::read_to_string(repo().join(&path)).unwrap_or_default();
        assert!(
            generated == committed,
            "{path} differs from the CRD the code derives; regenerate crds/ with `make crds` \
             (`cargo run -q -- crd --dir crds`) and commit the result"
        );
    }
}

#[test]
fn committed_exception_crd_matches_the_code() {
    let path = "crds/binauthzexceptions.binauthz.dev.yaml";
    let generated = api::crds_yaml(Some("binauthzexceptions.binauthz.dev"))
        .expect("CRD serializes")
        .expect("the exception CRD is one of the operator's");
    let committed = std::fs::read_to_string(repo().join(path)).unwrap_or_default();
    assert!(
        generated == committed,
        "{path} differs from the CRD the code derives; regenerate it with `make crds` and commit the result"
    );
    let copy = std::fs::read_to_string(repo().join("deploy").join(path)).unwrap_or_default();
    assert!(
        copy == committed,
        "deploy/{path} differs from {path}; run `make crds`"
    );
}

#[test]
fn deploy_base_carries_the_same_crds() {
    // kustomize refuses files outside deploy/, so the base holds a copy of each.
    for (file, _) in api::crd_files().expect("CRDs serialize") {
        let path = format!("crds/{file}");
        let copy = std::fs::read_to_string(repo().join("deploy").join(&path)).unwrap_or_default();
        let committed = std::fs::read_to_string(repo().join(&path)).unwrap_or_default();
        assert!(
            copy == committed,
            "deploy/{path} differs from {path}; run `make crds` and commit the result"
        );
    }
}

#[test]
fn every_schema_property_has_a_description() {
    let crd = serde_json::to_value(api::crd()).expect("CRD serializes");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut missing = Vec::new();
    let mut count = 0;
    walk(schema, "", &mut missing, &mut count);
    assert!(
        count > 40,
        "expected the whole spec and status, saw {count} properties"
    );
    assert!(
        missing.is_empty(),
        "schema properties without a description (add a doc comment): {missing:?}"
    );
}

fn walk(schema: &serde_json::Value, path: &str, missing: &mut Vec<String>, count: &mut usize) {
    if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, property) in properties {
            let here = format!("{path}.{name}");
            *count += 1;
            let described = property
                .get("description")
                .and_then(|d| d.as_str())
                .is_some_and(|d| d.trim().len() > 10);
            // apiVersion/kind/metadata are described by Kubernetes itself.
            let standard =
                path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&name.as_str());
            if !described && !standard {
                missing.push(here.clone());
            }
            walk(property, &here, missing, count);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(items, &format!("{path}[]"), missing, count);
    }
}

#[test]
fn every_list_and_string_in_the_spec_is_bounded() {
    // The API server estimates each CEL rule's cost from these bounds and refuses the CRD
    // when the estimate is too high; unbounded input is also a denial-of-service vector.
    let crd = serde_json::to_value(api::crd()).expect("CRD serializes");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut unbounded = Vec::new();
    bounds(spec, "spec", &mut unbounded);
    assert!(unbounded.is_empty(), "unbounded fields: {unbounded:?}");
}

fn bounds(schema: &serde_json::Value, path: &str, unbounded: &mut Vec<String>) {
    match schema.get("type").and_then(|t| t.as_str()) {
        Some("string") if schema.get("maxLength").is_none() && schema.get("enum").is_none() => {
            unbounded.push(path.to_owned())
        }
        Some("array") if schema.get("maxItems").is_none() => unbounded.push(path.to_owned()),
        Some("object")
            if schema.get("additionalProperties").is_some()
                && schema.get("maxProperties").is_none() =>
        {
            unbounded.push(path.to_owned())
        }
        _ => {}
    }
    if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, property) in properties {
            bounds(property, &format!("{path}.{name}"), unbounded);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(key).filter(|v| v.is_object()) {
            bounds(inner, &format!("{path}[]"), unbounded);
        }
    }
}

#[test]
fn valid_corpus_is_accepted() {
    let samples = corpus("valid");
    assert!(samples.len() >= 15, "at least 15 valid samples");
    for s in samples {
        if let Err(e) = api::binding_from_value(s.document) {
            panic!("{} should be valid, got: {e}", s.path.display());
        }
    }
}

#[test]
fn invalid_corpus_is_refused_naming_the_field() {
    let samples = corpus("invalid");
    assert!(samples.len() >= 30, "at least 30 invalid samples");
    for s in samples {
        assert!(
            !s.expect.is_empty(),
            "{} records no `# expect:` fragment",
            s.path.display()
        );
        let err = match api::binding_from_value(s.document) {
            Ok(_) => panic!("{} should be refused", s.path.display()),
            Err(e) => e.to_string(),
        };
        for fragment in &s.expect {
            assert!(
                err.contains(fragment.as_str()),
                "{}: error {err:?} lacks {fragment:?}",
                s.path.display()
            );
        }
    }
}
