//! The organization policy constraint that says which Binary Authorization settings Cloud
//! Run accepts in a project, `constraints/run.allowedBinaryAuthorizationPolicies`, read
//! from the Organization Policy API v2 and typed.
//!
//! The read is `GET v2/projects/{project}/policies/run.allowedBinaryAuthorizationPolicies:getEffectivePolicy`
//! (permission `orgpolicy.policy.get`), which answers the policy in force after
//! inheritance: `{name, spec: {rules: [...]}}`, each rule one of `{values: {allowedValues,
//! deniedValues}}`, `{allowAll: true}`, `{denyAll: true}` or `{enforce}` (boolean
//! constraints only). The values of this list constraint are `default` (the project's
//! default policy: `useDefault: true`) and platform policy names, optionally prefixed
//! `is:`. [`CloudRunClient::effective_org_policy`](super::CloudRunClient::effective_org_policy)
//! reads it, cached per project.
//!
//! Caveat: rules with a `condition` (they apply only to resources carrying certain tags)
//! are not evaluated — the operator cannot see tags — so they neither allow nor forbid
//! here; Cloud Run's answer to the write decides for such resources.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::policy::{DesiredPolicy, PolicyName};

/// The constraint's name in Organization Policy API v2 policy names.
pub const ALLOWED_BINAUTHZ_POLICIES: &str = "run.allowedBinaryAuthorizationPolicies";

/// One value of the constraint: what a Cloud Run resource's `binaryAuthorization` may say.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AllowedBinauthzValue {
    /// `default`: the project's default policy (`useDefault: true`).
    Default,
    /// A named platform policy.
    Policy(PolicyName),
}

impl AllowedBinauthzValue {
    /// Parses a constraint value (`default`, a policy name, either optionally prefixed
    /// `is:`); `None` for anything else (e.g. an `under:` hierarchy value, meaningless for
    /// this constraint).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let value = value.strip_prefix("is:").unwrap_or(value);
        if value == "default" {
            return Some(Self::Default);
        }
        PolicyName::parse(value).map(Self::Policy)
    }

    /// Whether this value is the setting `desired` writes.
    pub fn matches(&self, desired: &DesiredPolicy) -> bool {
        match (self, desired) {
            (Self::Default, DesiredPolicy::ProjectDefault) => true,
            (Self::Policy(allowed), DesiredPolicy::Named(name)) => allowed == name,
            _ => false,
        }
    }
}

impl fmt::Display for AllowedBinauthzValue {
    /// `default` or the policy name, as the constraint spells them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Policy(name) => f.write_str(name.as_str()),
        }
    }
}

/// The effective state of `constraints/run.allowedBinaryAuthorizationPolicies` in a project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrgPolicyConstraint {
    /// No policy sets it (or it is reset to Google's default): Cloud Run accepts any
    /// setting, including none — the preventive control is off.
    NotSet,
    /// `allowAll`: any setting is accepted.
    AllowAll,
    /// `denyAll`: no Binary Authorization setting is accepted.
    DenyAll,
    /// Only these values are accepted (`allowedValues`, less any `deniedValues`). Empty
    /// when none of the allowed values is one the operator could write.
    Allowed {
        /// The accepted values, sorted.
        values: Vec<AllowedBinauthzValue>,
    },
    /// Every value but these is accepted (`deniedValues` only).
    Denied {
        /// The refused values, sorted.
        values: Vec<AllowedBinauthzValue>,
    },
}

impl OrgPolicyConstraint {
    /// Whether Cloud Run accepts writing `desired` under this constraint.
    pub fn allows(&self, desired: &DesiredPolicy) -> bool {
        match self {
            Self::NotSet | Self::AllowAll => true,
            Self::DenyAll => false,
            Self::Allowed { values } => values.iter().any(|v| v.matches(desired)),
            Self::Denied { values } => !values.iter().any(|v| v.matches(desired)),
        }
    }

    /// Whether the constraint restricts anything (a security team wants to see when it
    /// does not: the preventive control is off).
    pub fn is_enforced(&self) -> bool {
        !matches!(self, Self::NotSet | Self::AllowAll)
    }

    /// The constraint an effective policy (as `getEffectivePolicy` answers it) describes.
    /// Unconditional rules only (see the module docs); `denyAll` wins over `allowAll`,
    /// which wins over value lists; value lists of several rules are merged.
    pub fn from_effective(policy: &EffectivePolicy) -> Self {
        let Some(spec) = &policy.spec else {
            return Self::NotSet;
        };
        if spec.reset == Some(true) {
            return Self::NotSet;
        }
        let rules: Vec<&PolicyRule> = spec
            .rules
            .iter()
            .filter(|r| r.condition.is_none())
            .collect();
        if rules.iter().any(|r| r.deny_all == Some(true)) {
            return Self::DenyAll;
        }
        if rules.iter().any(|r| r.allow_all == Some(true)) {
            return Self::AllowAll;
        }
        let mut listed_allowed = false;
        let mut allowed = BTreeSet::new();
        let mut denied = BTreeSet::new();
        for values in rules.iter().filter_map(|r| r.values.as_ref()) {
            listed_allowed |= !values.allowed_values.is_empty();
            allowed.extend(
                values
                    .allowed_values
                    .iter()
                    .filter_map(|v| AllowedBinauthzValue::parse(v)),
            );
            denied.extend(
                values
                    .denied_values
                    .iter()
                    .filter_map(|v| AllowedBinauthzValue::parse(v)),
            );
        }
        if listed_allowed {
            Self::Allowed {
                values: allowed.difference(&denied).cloned().collect(),
            }
        } else if !denied.is_empty() {
            Self::Denied {
                values: denied.into_iter().collect(),
            }
        } else {
            Self::NotSet
        }
    }
}

impl fmt::Display for OrgPolicyConstraint {
    /// `not set`, `allow all`, `deny all`, `allowed: default, projects/...`,
    /// `denied: ...` — for status messages and reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, label: &str, values: &[AllowedBinauthzValue]| {
            write!(f, "{label}: ")?;
            if values.is_empty() {
                return f.write_str("(none the operator can write)");
            }
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{value}")?;
            }
            Ok(())
        };
        match self {
            Self::NotSet => f.write_str("not set"),
            Self::AllowAll => f.write_str("allow all"),
            Self::DenyAll => f.write_str("deny all"),
            Self::Allowed { values } => list(f, "allowed", values),
            Self::Denied { values } => list(f, "denied", values),
        }
    }
}

/// `google.cloud.orgpolicy.v2.Policy` as `getEffectivePolicy` answers it (the fields read).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectivePolicy {
    /// `projects/{project}/policies/{constraint}`.
    #[serde(default)]
    pub name: String,
    /// The rules in force; absent when nothing is set.
    #[serde(default)]
    pub spec: Option<PolicySpec>,
}

/// `PolicySpec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// The rules.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// True: the constraint is reset to Google's default behaviour (not set).
    #[serde(default)]
    pub reset: Option<bool>,
}

/// `PolicySpec.PolicyRule`: one of `values`, `allowAll`, `denyAll`, `enforce`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Allowed and denied values of a list constraint.
    #[serde(default)]
    pub values: Option<StringValues>,
    /// Every value allowed.
    #[serde(default)]
    pub allow_all: Option<bool>,
    /// Every value denied.
    #[serde(default)]
    pub deny_all: Option<bool>,
    /// Boolean constraints only; meaningless for this list constraint.
    #[serde(default)]
    pub enforce: Option<bool>,
    /// A tag condition (`google.type.Expr`): the rule applies to tagged resources only.
    #[serde(default)]
    pub condition: Option<Value>,
}

/// `PolicyRule.StringValues`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StringValues {
    /// Values allowed.
    #[serde(default)]
    pub allowed_values: Vec<String>,
    /// Values denied.
    #[serde(default)]
    pub denied_values: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BCID: &str =
        "projects/bcid-cloud-run-policy/platforms/cloudRun/policies/bcidManagedPolicy";

    fn constraint(answer: Value) -> OrgPolicyConstraint {
        let policy: EffectivePolicy = serde_json::from_value(answer).unwrap();
        OrgPolicyConstraint::from_effective(&policy)
    }

    fn named(name: &str) -> DesiredPolicy {
        DesiredPolicy::Named(PolicyName::parse(name).unwrap())
    }

    fn name() -> String {
        format!("projects/123/policies/{ALLOWED_BINAUTHZ_POLICIES}")
    }

    #[test]
    fn a_pinned_managed_policy_allows_only_it() {
        let c = constraint(json!({"name": name(), "spec": {"rules": [
            {"values": {"allowedValues": [format!("is:{BCID}")]}}
        ]}}));
        assert_eq!(
            c,
            OrgPolicyConstraint::Allowed {
                values: vec![AllowedBinauthzValue::Policy(
                    PolicyName::parse(BCID).unwrap()
                )]
            }
        );
        assert!(c.allows(&named(BCID)));
        assert!(!c.allows(&DesiredPolicy::ProjectDefault));
        assert!(!c.allows(&named(
            "projects/acme-sec/platforms/cloudRun/policies/strict"
        )));
        assert!(c.is_enforced());
        assert_eq!(c.to_string(), format!("allowed: {BCID}"));
    }

    #[test]
    fn default_and_denied_values_combine() {
        let strict = "projects/acme-sec/platforms/cloudRun/policies/strict";
        let c = constraint(json!({"name": name(), "spec": {"rules": [
            {"values": {"allowedValues": ["default", strict], "deniedValues": [strict]}}
        ]}}));
        assert_eq!(
            c,
            OrgPolicyConstraint::Allowed {
                values: vec![AllowedBinauthzValue::Default]
            }
        );
        assert!(c.allows(&DesiredPolicy::ProjectDefault));
        assert!(!c.allows(&named(strict)));

        let c = constraint(json!({"name": name(), "spec": {"rules": [
            {"values": {"deniedValues": ["default"]}}
        ]}}));
        assert!(!c.allows(&DesiredPolicy::ProjectDefault));
        assert!(c.allows(&named(strict)));
        assert_eq!(c.to_string(), "denied: default");
    }

    #[test]
    fn nothing_set_allow_all_and_deny_all() {
        for answer in [
            json!({"name": name()}),
            json!({"name": name(), "spec": {}}),
            json!({"name": name(), "spec": {"rules": []}}),
            json!({"name": name(), "spec": {"reset": true, "rules": [{"denyAll": true}]}}),
            json!({"name": name(), "spec": {"rules": [{"enforce": true}]}}),
        ] {
            let c = constraint(answer.clone());
            assert_eq!(c, OrgPolicyConstraint::NotSet, "{answer}");
            assert!(c.allows(&DesiredPolicy::ProjectDefault));
            assert!(!c.is_enforced());
        }
        let all = constraint(json!({"spec": {"rules": [{"allowAll": true}]}}));
        assert_eq!(all, OrgPolicyConstraint::AllowAll);
        assert!(all.allows(&named(BCID)));
        let none = constraint(json!({"spec": {"rules": [{"allowAll": true}, {"denyAll": true}]}}));
        assert_eq!(none, OrgPolicyConstraint::DenyAll);
        assert!(!none.allows(&DesiredPolicy::ProjectDefault));
        assert!(none.is_enforced());
    }

    #[test]
    fn conditional_rules_and_foreign_values_are_ignored() {
        let c = constraint(json!({"spec": {"rules": [
            {"denyAll": true, "condition": {"expression": "resource.matchTag('123/env', 'dev')"}},
            {"values": {"allowedValues": ["under:folders/1", "default"]}}
        ]}}));
        assert_eq!(
            c,
            OrgPolicyConstraint::Allowed {
                values: vec![AllowedBinauthzValue::Default]
            }
        );
        // Allowed values none of which the operator can write: nothing it writes is allowed.
        let c = constraint(json!({"spec": {"rules": [
            {"values": {"allowedValues": ["under:folders/1"]}}
        ]}}));
        assert_eq!(c, OrgPolicyConstraint::Allowed { values: vec![] });
        assert!(!c.allows(&DesiredPolicy::ProjectDefault));
        assert_eq!(c.to_string(), "allowed: (none the operator can write)");
    }
}
