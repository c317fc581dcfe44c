//! The API's rules for a `binaryAuthorization` value.

use super::*;

/// Checks a `binaryAuthorization` value against the API's rules: an object with at most
/// one of `useDefault`/`policy`, an existing named policy, and no breakglass
/// justification when Binary Authorization is disabled. `field` names it in errors.
pub fn validate_binary_authorization(
    value: Option<&Value>,
    store: &Store,
    field: &str,
) -> Result<(), ApiError> {
    let object = match value {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(object)) => object,
        Some(other) => {
            return Err(ApiError::invalid_field(
                field,
                format!("Invalid value at '{field}': expected an object, got {other}."),
            ))
        }
    };
    for key in object.keys() {
        if !matches!(
            key.as_str(),
            "useDefault" | "policy" | "breakglassJustification"
        ) {
            return Err(ApiError::invalid_payload(format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at '{field}': Cannot find field."
            )));
        }
    }
    let use_default = match object.get("useDefault") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(ApiError::invalid_field(
                &format!("{field}.useDefault"),
                format!("Invalid value at '{field}.use_default' (TYPE_BOOL), {other}"),
            ))
        }
    };
    let policy = match object.get("policy") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(ApiError::invalid_field(
                &format!("{field}.policy"),
                format!("Invalid value at '{field}.policy' (TYPE_STRING), {other}"),
            ))
        }
    };
    let breakglass = match object.get("breakglassJustification") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(ApiError::invalid_field(
                &format!("{field}.breakglassJustification"),
                format!(
                    "Invalid value at '{field}.breakglass_justification' (TYPE_STRING), {other}"
                ),
            ))
        }
    };
    if use_default.is_some() && policy.is_some() {
        return Err(ApiError::invalid_field(
            field,
            format!(
                "Invalid value at '{field}' (oneof), oneof field 'binauthz_method' is already set. \
                 Cannot set 'policy'"
            ),
        ));
    }
    if let Some(policy) = policy {
        let well_formed = matches!(
            policy.split('/').collect::<Vec<_>>().as_slice(),
            ["projects", p, "platforms", "cloudRun", "policies", id] if !p.is_empty() && !id.is_empty()
        );
        if !well_formed {
            return Err(ApiError::invalid_field(
                &format!("{field}.policy"),
                format!(
                    "Invalid policy name '{policy}': expected projects/PROJECT/platforms/cloudRun/policies/POLICY."
                ),
            ));
        }
        if !store.policy_exists(policy) {
            return Err(ApiError::invalid_field(
                &format!("{field}.policy"),
                assumed::unknown_policy_message(policy),
            ));
        }
    }
    let enabled = use_default == Some(true) || policy.is_some();
    if breakglass.is_some_and(|j| !j.is_empty()) && !assumed::breakglass_allowed(enabled) {
        return Err(ApiError::invalid_field(
            &format!("{field}.breakglassJustification"),
            "breakglassJustification must be empty when Binary Authorization is disabled \
             (useDefault is false or absent and no policy is set).",
        ));
    }
    Ok(())
}
