//! The CustomResourceDefinition derived from the types, finished by hand where the derive
//! cannot say it.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, JSON,
};
use kube::CustomResourceExt;

use super::patterns::LABEL_VALUE;
use super::{BinAuthzBinding, BinAuthzException, BinAuthzTenancy, BinAuthzTenancyIndex};

/// The CustomResourceDefinition, derived from the types above and finished by hand where
/// the derive cannot say it:
/// - no `nullable: true` (kube marks every `Option` so): an explicit `null` must not pass
///   `has()` in the CEL rules, so absent is the only way to leave a field out;
/// - the `matchLabels` value constraints (schemars has no attribute for map values);
/// - the status's default, `{observedGeneration: -1}` ([`UNOBSERVED_GENERATION`]).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = finished(BinAuthzBinding::crd());
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|schema| schema.properties.as_mut())
            .and_then(|p| p.get_mut("status"));
        if let Some(status) = status {
            status.default = Some(JSON(serde_json::json!({
                "observedGeneration": UNOBSERVED_GENERATION
            })));
        }
    }
    crd
}

/// The `BinAuthzException` CustomResourceDefinition, derived from its types and finished
/// like the binding's (no `nullable: true`).
pub fn exception_crd() -> CustomResourceDefinition {
    finished(BinAuthzException::crd())
}

/// Every CRD of the operator, bindings first: what `binauthz-operator crd` prints and
/// `crds/` holds (one file per CRD, named after it). A new kind is one more entry.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        crd(),
        exception_crd(),
        finished(BinAuthzTenancy::crd()),
        finished(BinAuthzTenancyIndex::crd()),
    ]
}

/// The `observedGeneration` of the status the API server serves for a binding the operator
/// has not written yet (the CRD's default status): never a `metadata.generation`. kstatus
/// (Flux's health checks) reads a custom resource without status as Current, so without
/// this default a binding nobody has checked would pass Flux's `wait` at once; with it, it
/// reads InProgress until the operator's first status write. Flux's own resources default
/// their status the same way. The API server applies the default whenever it serves the
/// object; the operator's first write replaces it.
pub const UNOBSERVED_GENERATION: i64 = -1;

fn finish_schema(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    if let Some(properties) = schema.properties.as_mut() {
        for (name, property) in properties.iter_mut() {
            if name == "matchLabels" {
                if let Some(JSONSchemaPropsOrBool::Schema(values)) =
                    property.additional_properties.as_mut()
                {
                    values.pattern = Some(LABEL_VALUE.regex.to_owned());
                    values.max_length = i64::try_from(LABEL_VALUE.max_len).ok();
                }
            }
            finish_schema(property);
        }
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        finish_schema(items);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = schema.additional_properties.as_mut() {
        finish_schema(values);
    }
}

/// The CRD of bindings as YAML, exactly as `crds/` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&crd())
}

/// Each CRD as YAML with the file name `crds/` holds it under (`{plural}.{group}.yaml`).
pub fn crd_files() -> Result<Vec<(String, String)>, serde_yaml_ng::Error> {
    crds()
        .iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            Ok((format!("{name}.yaml"), serde_yaml_ng::to_string(crd)?))
        })
        .collect()
}

/// The operator's CRDs as YAML, separated by `---` (what `binauthz-operator crd` prints), or
/// only the one whose `metadata.name` is `name` (`crds/{name}.yaml` holds it). `Ok(None)`
/// when no CRD has that name.
pub fn crds_yaml(name: Option<&str>) -> Result<Option<String>, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in crds() {
        if name.is_some_and(|n| crd.metadata.name.as_deref() != Some(n)) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok((!out.is_empty()).then_some(out))
}

/// A derived CRD with the same finishing as the bindings' (no `nullable`, see [`crd`]).
fn finished(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            finish_schema(schema);
        }
    }
    crd
}

/// The `apiVersion` of bindings.
pub const API_VERSION: &str = "binauthz.dev/v1alpha1";
/// The `kind` of bindings.
pub const KIND: &str = "BinAuthzBinding";
