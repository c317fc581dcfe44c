//! The Binary Authorization settings the operator wants and the ones it sees, as types.
//!
//! A [`DesiredPolicy`] can only say "the project's default policy" or "this named platform
//! policy": there is no way to express "disabled", so no code path can ask Cloud Run to
//! switch Binary Authorization off. An [`ObservedPolicy`] is what a Cloud Run resource
//! carries right now, including "none" (absent, or `useDefault: false`).

use std::fmt;

/// Prefix of every Cloud Run platform policy name.
const POLICY_NAME_PREFIX: &str = "projects/";
const POLICY_NAME_INFIX: &str = "/platforms/cloudRun/policies/";

/// A syntactically valid Cloud Run platform policy name:
/// `projects/{project}/platforms/cloudRun/policies/{policy}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyName(String);

impl PolicyName {
    /// Parses a policy name; `None` when it does not have the platform policy shape.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(POLICY_NAME_PREFIX)?;
        let (project, policy) = rest.split_once(POLICY_NAME_INFIX)?;
        let segment_ok = |s: &str| !s.is_empty() && !s.contains('/');
        (segment_ok(project) && segment_ok(policy)).then(|| Self(name.to_owned()))
    }

    /// The full resource name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The project that holds the policy (may differ from the Cloud Run resource's).
    pub fn project(&self) -> &str {
        self.0[POLICY_NAME_PREFIX.len()..]
            .split_once('/')
            .map_or("", |(project, _)| project)
    }

    /// The policy id (last path segment).
    pub fn policy_id(&self) -> &str {
        self.0.rsplit_once('/').map_or("", |(_, id)| id)
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Binary Authorization policy a binding requires. It cannot express "disabled".
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DesiredPolicy {
    /// The project's default Binary Authorization policy (`useDefault: true`).
    ProjectDefault,
    /// A named Cloud Run platform policy (`policy: projects/.../policies/...`).
    Named(PolicyName),
}

impl DesiredPolicy {
    /// Whether a resource carrying `observed` complies with this desired policy.
    pub fn is_satisfied_by(&self, observed: &ObservedPolicy) -> bool {
        match (self, observed) {
            (Self::ProjectDefault, ObservedPolicy::ProjectDefault) => true,
            (Self::Named(want), ObservedPolicy::Named(have)) => want.as_str() == have,
            _ => false,
        }
    }
}

impl fmt::Display for DesiredPolicy {
    /// `default` or the policy name, as the status and reports spell it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProjectDefault => f.write_str("default"),
            Self::Named(name) => f.write_str(name.as_str()),
        }
    }
}

/// The Binary Authorization setting a Cloud Run resource carries right now.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObservedPolicy {
    /// Binary Authorization is off: the field is absent or `useDefault` is false.
    None,
    /// `useDefault: true`.
    ProjectDefault,
    /// `policy: <name>` (kept verbatim, even if malformed, so reports show what is there).
    Named(String),
}

impl fmt::Display for ObservedPolicy {
    /// `none`, `default` or the policy name, as the status and reports spell it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::ProjectDefault => f.write_str("default"),
            Self::Named(name) => f.write_str(name),
        }
    }
}

impl From<&DesiredPolicy> for ObservedPolicy {
    /// What a resource observes once the desired policy has been applied.
    fn from(desired: &DesiredPolicy) -> Self {
        match desired {
            DesiredPolicy::ProjectDefault => Self::ProjectDefault,
            DesiredPolicy::Named(name) => Self::Named(name.as_str().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_parse_only_the_platform_policy_shape() {
        let name = PolicyName::parse("projects/acme-sec/platforms/cloudRun/policies/strict")
            .expect("valid name");
        assert_eq!(name.project(), "acme-sec");
        assert_eq!(name.policy_id(), "strict");
        for bad in [
            "",
            "projects//platforms/cloudRun/policies/strict",
            "projects/p/platforms/cloudRun/policies/",
            "projects/p/platforms/gke/policies/strict",
            "projects/p/platforms/cloudRun/policies/a/b",
            "strict",
        ] {
            assert_eq!(PolicyName::parse(bad), None, "{bad:?} must not parse");
        }
    }

    #[test]
    fn compliance_needs_the_exact_policy() {
        let strict = PolicyName::parse("projects/p/platforms/cloudRun/policies/strict").unwrap();
        let named = DesiredPolicy::Named(strict.clone());
        assert!(named.is_satisfied_by(&ObservedPolicy::Named(strict.to_string())));
        assert!(!named.is_satisfied_by(&ObservedPolicy::ProjectDefault));
        assert!(!named.is_satisfied_by(&ObservedPolicy::None));
        assert!(!named.is_satisfied_by(&ObservedPolicy::Named(
            "projects/p/platforms/cloudRun/policies/lax".into()
        )));
        assert!(DesiredPolicy::ProjectDefault.is_satisfied_by(&ObservedPolicy::ProjectDefault));
        assert!(!DesiredPolicy::ProjectDefault.is_satisfied_by(&ObservedPolicy::None));
        assert_eq!(ObservedPolicy::None.to_string(), "none");
        assert_eq!(DesiredPolicy::ProjectDefault.to_string(), "default");
    }
}
