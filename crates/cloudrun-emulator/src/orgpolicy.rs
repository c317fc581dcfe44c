//! The organization policy list constraint `constraints/run.allowedBinaryAuthorizationPolicies`:
//! its per-project value, the Org Policy API v2 effective-policy answer, and whether a
//! Cloud Run write's Binary Authorization value is allowed.
//!
//! Sources: the constraint's description in Google's list of organization policy
//! constraints (values `default` and policy names); the Org Policy API v2 reference
//! (`Policy{name, spec: PolicySpec{rules: [PolicyRule{values{allowedValues, deniedValues} |
//! allowAll | denyAll | enforce}]}}`; `getEffectivePolicy` answers without `etag` and names
//! the project by number). What an unset constraint answers and how a refused write is
//! worded are not published: see [`super::assumed`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

use super::assumed;
use super::google::{ApiError, Code};

/// The constraint's id, as the Org Policy API v2 names its policy.
pub const CONSTRAINT: &str = "run.allowedBinaryAuthorizationPolicies";

/// The constraint's value in one project, as its effective policy says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AllowedPolicies {
    /// No policy sets it: every value is allowed.
    #[default]
    NotSet,
    /// `allowAll: true`.
    AllowAll,
    /// `denyAll: true`.
    DenyAll,
    /// `values.allowedValues`: `default` and/or policy names.
    Values(Vec<String>),
}

impl AllowedPolicies {
    /// True when unset (the seed omits the key).
    pub fn is_not_set(&self) -> bool {
        *self == AllowedPolicies::NotSet
    }

    /// Checks the seed's values: `default` or `projects/P/platforms/cloudRun/policies/ID`.
    pub fn validate(&self) -> Result<(), String> {
        let AllowedPolicies::Values(values) = self else {
            return Ok(());
        };
        if values.is_empty() {
            return Err(
                "an empty list allows nothing: write denyAll, or leave the key out for \
                 'not set'"
                    .into(),
            );
        }
        for value in values {
            if value != "default" && policy_parts(value).is_none() {
                return Err(format!(
                    "'{value}' is neither 'default' nor a policy name \
                     (projects/PROJECT/platforms/cloudRun/policies/POLICY)"
                ));
            }
        }
        Ok(())
    }

    /// The `spec` of the effective policy.
    pub fn spec(&self) -> Value {
        match self {
            AllowedPolicies::NotSet => assumed::unset_list_constraint_spec(),
            AllowedPolicies::AllowAll => json!({"rules": [{"allowAll": true}]}),
            AllowedPolicies::DenyAll => json!({"rules": [{"denyAll": true}]}),
            AllowedPolicies::Values(values) => {
                json!({"rules": [{"values": {"allowedValues": values}}]})
            }
        }
    }

    /// Whether a resource may carry `value`. `same_policy` compares two policy names
    /// (a project may be named by id or number).
    pub fn allows(
        &self,
        value: &BinaryAuthorization,
        same_policy: impl Fn(&str, &str) -> bool,
    ) -> bool {
        match self {
            AllowedPolicies::NotSet | AllowedPolicies::AllowAll => true,
            AllowedPolicies::DenyAll => {
                *value == BinaryAuthorization::Disabled && !assumed::DENY_ALL_REFUSES_DISABLED
            }
            AllowedPolicies::Values(values) => match value {
                BinaryAuthorization::Disabled => false,
                BinaryAuthorization::Default => values.iter().any(|v| v == "default"),
                BinaryAuthorization::Policy(name) => values
                    .iter()
                    .any(|v| v != "default" && same_policy(v, name)),
            },
        }
    }
}

/// `(project, policy id)` of `projects/P/platforms/cloudRun/policies/ID`.
pub fn policy_parts(name: &str) -> Option<(&str, &str)> {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["projects", p, "platforms", "cloudRun", "policies", id]
            if !p.is_empty() && !id.is_empty() =>
        {
            Some((p, id))
        }
        _ => None,
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Wire {
    List(Vec<String>),
    Word(String),
}

impl Serialize for AllowedPolicies {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AllowedPolicies::NotSet => serializer.serialize_none(),
            AllowedPolicies::AllowAll => Wire::Word("allowAll".into()).serialize(serializer),
            AllowedPolicies::DenyAll => Wire::Word("denyAll".into()).serialize(serializer),
            AllowedPolicies::Values(values) => Wire::List(values.clone()).serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for AllowedPolicies {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Option::<Wire>::deserialize(deserializer)? {
            None => Ok(AllowedPolicies::NotSet),
            Some(Wire::List(values)) => Ok(AllowedPolicies::Values(values)),
            Some(Wire::Word(word)) => match word.as_str() {
                "allowAll" => Ok(AllowedPolicies::AllowAll),
                "denyAll" => Ok(AllowedPolicies::DenyAll),
                other => Err(serde::de::Error::custom(format!(
                    "'{other}' is not a value of allowedBinaryAuthorizationPolicies: give a list \
                     of values ([default, projects/P/platforms/cloudRun/policies/ID]), allowAll \
                     or denyAll"
                ))),
            },
        }
    }
}

/// A resource's Binary Authorization setting, as the constraint judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BinaryAuthorization {
    /// Absent, or `useDefault: false` without a policy.
    Disabled,
    /// `useDefault: true`: the project's default policy (constraint value `default`).
    Default,
    /// `policy`: a named platform policy.
    Policy(String),
}

impl BinaryAuthorization {
    /// The setting of a (validated) `binaryAuthorization` JSON value.
    pub fn of(value: Option<&Value>) -> BinaryAuthorization {
        let object = value.and_then(Value::as_object);
        let policy = object
            .and_then(|o| o.get("policy"))
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty());
        match policy {
            Some(policy) => BinaryAuthorization::Policy(policy.to_string()),
            None if object.and_then(|o| o.get("useDefault")) == Some(&Value::Bool(true)) => {
                BinaryAuthorization::Default
            }
            None => BinaryAuthorization::Disabled,
        }
    }

    /// How the constraint's values spell it (`default`, a policy name, or `none`).
    pub fn label(&self) -> &str {
        match self {
            BinaryAuthorization::Disabled => "none",
            BinaryAuthorization::Default => "default",
            BinaryAuthorization::Policy(name) => name,
        }
    }
}

/// The effective policy `getEffectivePolicy` answers for the constraint in a project.
pub fn effective_policy(project_number: &str, allowed: &AllowedPolicies) -> Value {
    let mut out = Map::new();
    out.insert(
        "name".into(),
        Value::String(format!("projects/{project_number}/policies/{CONSTRAINT}")),
    );
    out.insert("spec".into(), allowed.spec());
    Value::Object(out)
}

/// The error of a Cloud Run write the constraint refuses.
pub fn refused(project_number: &str, resource: &str, value: &BinaryAuthorization) -> ApiError {
    let message = assumed::org_policy_refusal_message(project_number, resource, value.label());
    ApiError::new(Code::FailedPrecondition, message.clone()).with_detail(json!({
        "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
        "violations": [{
            "type": format!("constraints/{CONSTRAINT}"),
            "subject": format!("projects/{project_number}"),
            "description": message,
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_allow_default_and_named_policies_but_never_disabled() {
        let strict = "projects/acme-sec/platforms/cloudRun/policies/strict";
        let allowed = AllowedPolicies::Values(vec!["default".into(), strict.into()]);
        let same = |a: &str, b: &str| a == b;
        assert!(allowed.allows(&BinaryAuthorization::Default, same));
        assert!(allowed.allows(&BinaryAuthorization::Policy(strict.into()), same));
        assert!(!allowed.allows(
            &BinaryAuthorization::Policy("projects/x/platforms/cloudRun/policies/y".into()),
            same
        ));
        assert!(!allowed.allows(&BinaryAuthorization::Disabled, same));
        assert!(AllowedPolicies::NotSet.allows(&BinaryAuthorization::Disabled, same));
        assert!(!AllowedPolicies::DenyAll.allows(&BinaryAuthorization::Default, same));
        assert_eq!(
            BinaryAuthorization::of(Some(&json!({"useDefault": true}))),
            BinaryAuthorization::Default
        );
        assert_eq!(
            BinaryAuthorization::of(Some(&json!({"useDefault": false}))),
            BinaryAuthorization::Disabled
        );
    }

    #[test]
    fn the_seed_spelling_round_trips() {
        for text in ["[default]", "allowAll", "denyAll"] {
            let parsed: AllowedPolicies = serde_yaml_ng::from_str(text).unwrap();
            let back = serde_yaml_ng::to_string(&parsed).unwrap();
            assert_eq!(
                serde_yaml_ng::from_str::<AllowedPolicies>(&back).unwrap(),
                parsed
            );
        }
        assert!(serde_yaml_ng::from_str::<AllowedPolicies>("everything").is_err());
        assert!(AllowedPolicies::Values(vec!["strict".into()])
            .validate()
            .is_err());
    }
}
