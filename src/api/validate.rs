//! Checks a binding against every CRD rule without an API server (for `check`), reporting
//! problems the way the API server names them.

use std::fmt;

use super::patterns::{
    Pattern, INTERVAL, K8S_LABEL_KEY, K8S_LABEL_VALUE, LABEL_KEY, LABEL_VALUE, LOCATION,
    NAMESPACE_NAME, NAME_GLOB, POLICY_NAME, PROJECT, PROJECT_GLOB,
};
use super::{
    BinAuthzBinding, BinAuthzBindingSpec, BinAuthzTenancy, BinAuthzTenancySpec, LabelOperator,
    LabelSelector, PolicyRef, TargetSelector, Targets, API_VERSION, KIND, MAX_LOCATIONS,
    MAX_SELECTOR_NAMES, MIN_INTERVAL, PRIORITY_RANGE, TENANCY_KIND,
};

/// A rule a binding breaks: the field (as the API server names it) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.locations[1]`.
    pub field: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every rule a binding breaks, in field order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<FieldError>);

impl BinAuthzBindingSpec {
    /// Checks every rule of the CRD (the same rules the API server enforces).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut v = Validator::default();
        v.spec(self);
        if v.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(v.errors))
        }
    }
}

impl BinAuthzBinding {
    /// Checks the metadata the API server requires and every rule of the spec.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut v = Validator::default();
        if self.metadata.name.as_deref().unwrap_or("").is_empty() {
            v.push(
                "metadata.name",
                "Required value: every binding needs a name",
            );
        }
        v.spec(&self.spec);
        if v.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(v.errors))
        }
    }
}

/// Reads one binding from a parsed manifest and checks every CRD rule, reporting problems
/// the way the API server names them (`spec.locations[1]: Duplicate value: ...`).
///
/// Type errors, unknown fields and missing required fields are found while reading (the
/// first one stops reading, as it does in the API server's decoder); rule violations are all
/// reported together.
pub fn binding_from_value(value: serde_json::Value) -> Result<BinAuthzBinding, ValidationErrors> {
    let api_version = value.get("apiVersion").and_then(|v| v.as_str());
    if api_version != Some(API_VERSION) {
        return Err(ValidationErrors(vec![FieldError {
            field: "apiVersion".into(),
            message: format!(
                "Unsupported value: {:?}: a {KIND} must have apiVersion {API_VERSION}",
                api_version.unwrap_or("")
            ),
        }]));
    }
    let binding: BinAuthzBinding = serde_path_to_error::deserialize(value)
        .map_err(|err| ValidationErrors(vec![serde_field_error(&err)]))?;
    binding.validate()?;
    Ok(binding)
}

impl BinAuthzTenancySpec {
    /// Checks every rule of the grant's CRD (the same rules the API server enforces).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut v = Validator::default();
        v.grant(self);
        if v.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(v.errors))
        }
    }
}

/// Reads one `BinAuthzTenancy` grant from a parsed manifest and checks every CRD rule, as
/// [`binding_from_value`] does for bindings.
pub fn grant_from_value(value: serde_json::Value) -> Result<BinAuthzTenancy, ValidationErrors> {
    let api_version = value.get("apiVersion").and_then(|v| v.as_str());
    if api_version != Some(API_VERSION) {
        return Err(ValidationErrors(vec![FieldError {
            field: "apiVersion".into(),
            message: format!(
                "Unsupported value: {:?}: a {TENANCY_KIND} must have apiVersion {API_VERSION}",
                api_version.unwrap_or("")
            ),
        }]));
    }
    let grant: BinAuthzTenancy = serde_path_to_error::deserialize(value)
        .map_err(|err| ValidationErrors(vec![serde_field_error(&err)]))?;
    let mut v = Validator::default();
    if grant.metadata.name.as_deref().unwrap_or("").is_empty() {
        v.push("metadata.name", "Required value: every grant needs a name");
    }
    v.grant(&grant.spec);
    if v.errors.is_empty() {
        Ok(grant)
    } else {
        Err(ValidationErrors(v.errors))
    }
}

/// Turns a serde error at a path into the API server's wording where one exists.
pub(super) fn serde_field_error(err: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = err.path().to_string();
    let at = |leaf: &str| {
        if path == "." {
            leaf.to_owned()
        } else {
            format!("{path}.{leaf}")
        }
    };
    let inner = err.inner().to_string();
    // serde's messages are stable: "missing field `x`", "unknown field `x`, expected ...",
    // "unknown variant `x`, expected ...", "invalid type: ...".
    let quoted = |text: &str| text.split('`').nth(1).unwrap_or("").to_owned();
    if let Some(rest) = inner.strip_prefix("missing field ") {
        return FieldError {
            field: at(&quoted(rest)),
            message: "Required value".into(),
        };
    }
    if inner.starts_with("unknown field ") {
        return FieldError {
            field: path,
            message: "field not declared in schema; check the spelling against `kubectl explain binauthzbinding.spec`".into(),
        };
    }
    if let Some(rest) = inner.strip_prefix("unknown variant ") {
        let supported: Vec<String> = rest
            .split('`')
            .skip(3)
            .step_by(2)
            .map(|v| format!("{v:?}"))
            .collect();
        return FieldError {
            field: path,
            message: format!(
                "Unsupported value: {:?}: supported values: {}",
                quoted(rest),
                supported.join(", ")
            ),
        };
    }
    let message = inner.split(" at line ").next().unwrap_or(&inner);
    let message = match message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.split_once(", expected "))
    {
        Some((got, want)) => {
            let want = match want {
                "i32" | "i64" | "u32" | "u64" => "an integer",
                other => other,
            };
            format!("Invalid value: {got}: must be {want}")
        }
        None => format!("Invalid value: {message}"),
    };
    FieldError {
        field: path,
        message,
    }
}

/// Collects field errors; each check mirrors one schema constraint or CEL rule.
#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn spec(&mut self, spec: &BinAuthzBindingSpec) {
        self.project(&spec.project);
        self.locations(&spec.locations);
        self.targets(&spec.targets);
        self.policy(&spec.policy);
        self.interval(&spec.interval);
        if !PRIORITY_RANGE.contains(&spec.priority) {
            self.push(
                "spec.priority",
                format!(
                    "Invalid value: {}: spec.priority should be between -1000 and 1000",
                    spec.priority
                ),
            );
        }
    }

    fn grant(&mut self, spec: &BinAuthzTenancySpec) {
        if spec.namespaces.is_empty() && spec.namespace_selector.is_none() {
            self.push("spec", "a grant needs namespaces or namespaceSelector");
        }
        self.list("spec.namespaces", &spec.namespaces, 0, 100, &NAMESPACE_NAME);
        if let Some(selector) = &spec.namespace_selector {
            let field = "spec.namespaceSelector";
            if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
                self.push(
                    field,
                    "namespaceSelector needs matchLabels or matchExpressions",
                );
            }
            if selector.match_labels.len() > 16 {
                self.push(
                    format!("{field}.matchLabels"),
                    format!(
                        "Too many: {}: must have at most 16 items",
                        selector.match_labels.len()
                    ),
                );
            }
            for (key, value) in &selector.match_labels {
                if key.len() > K8S_LABEL_KEY.max_len || !(K8S_LABEL_KEY.accepts)(key) {
                    self.push(
                        format!("{field}.matchLabels"),
                        "matchLabels keys must be Kubernetes label keys, e.g. team or example.com/team",
                    );
                }
                self.pattern(
                    &format!("{field}.matchLabels.{key}"),
                    value,
                    &K8S_LABEL_VALUE,
                );
            }
            if selector.match_expressions.len() > 8 {
                self.push(
                    format!("{field}.matchExpressions"),
                    format!(
                        "Too many: {}: must have at most 8 items",
                        selector.match_expressions.len()
                    ),
                );
            }
            for (i, req) in selector.match_expressions.iter().enumerate() {
                let item = format!("{field}.matchExpressions[{i}]");
                self.pattern(&format!("{item}.key"), &req.key, &K8S_LABEL_KEY);
                let wants_values = matches!(req.operator, LabelOperator::In | LabelOperator::NotIn);
                if wants_values == req.values.is_empty() {
                    self.push(
                        item.clone(),
                        "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                    );
                }
                self.list(
                    &format!("{item}.values"),
                    &req.values,
                    0,
                    32,
                    &K8S_LABEL_VALUE,
                );
            }
        }
        self.list("spec.projects", &spec.projects, 1, 100, &PROJECT_GLOB);
        if !PRIORITY_RANGE.contains(&spec.max_priority) {
            self.push(
                "spec.maxPriority",
                format!(
                    "Invalid value: {}: spec.maxPriority should be between -1000 and 1000",
                    spec.max_priority
                ),
            );
        }
        if let Some(policies) = &spec.policies {
            self.list("spec.policies.names", &policies.names, 0, 50, &POLICY_NAME);
        }
    }

    /// A list of strings: its length bounds, each item's pattern, no duplicates.
    fn list(&mut self, field: &str, items: &[String], min: usize, max: usize, pattern: &Pattern) {
        if items.len() < min {
            self.push(
                field,
                format!(
                    "Invalid value: {}: {field} should have at least {min} items",
                    items.len()
                ),
            );
        }
        if items.len() > max {
            self.push(
                field,
                format!("Too many: {}: must have at most {max} items", items.len()),
            );
        }
        for (i, item) in items.iter().enumerate() {
            let at = format!("{field}[{i}]");
            self.pattern(&at, item, pattern);
            if items[..i].contains(item) {
                self.push(at, format!("Duplicate value: {item:?}"));
            }
        }
    }

    /// The schema's `maxLength` and `pattern` for one string field.
    fn pattern(&mut self, field: &str, value: &str, pattern: &Pattern) {
        let Pattern {
            max_len,
            accepts,
            expected,
            ..
        } = *pattern;
        if value.chars().count() > max_len {
            self.push(
                field,
                format!("Too long: may not be more than {max_len} bytes ({expected})"),
            );
        } else if !accepts(value) {
            self.push(
                field,
                format!("Invalid value: {value:?}: should match {expected}"),
            );
        }
    }

    fn project(&mut self, project: &str) {
        self.pattern("spec.project", project, &PROJECT);
    }

    fn locations(&mut self, locations: &[String]) {
        if locations.is_empty() {
            self.push(
                "spec.locations",
                "Invalid value: 0: spec.locations should have at least 1 items; name a region or \"*\"",
            );
        }
        if locations.len() > MAX_LOCATIONS {
            self.push(
                "spec.locations",
                format!(
                    "Too many: {}: must have at most {MAX_LOCATIONS} items",
                    locations.len()
                ),
            );
        }
        for (i, location) in locations.iter().enumerate() {
            let field = format!("spec.locations[{i}]");
            self.pattern(&field, location, &LOCATION);
            if locations[..i].contains(location) {
                self.push(field, format!("Duplicate value: {location:?}"));
            }
        }
        if locations.iter().any(|l| l == "*") && locations.len() > 1 {
            self.push(
                "spec.locations",
                "'*' (every region) must be the only entry of locations",
            );
        }
    }

    fn targets(&mut self, targets: &Targets) {
        if targets.services.is_none() && targets.jobs.is_none() && targets.worker_pools.is_none() {
            self.push(
                "spec.targets",
                "targets must name at least one of services, jobs or workerPools",
            );
        }
        for (field, selector) in [
            ("spec.targets.services", &targets.services),
            ("spec.targets.jobs", &targets.jobs),
            ("spec.targets.workerPools", &targets.worker_pools),
        ] {
            if let Some(selector) = selector {
                self.selector(field, selector);
            }
        }
    }

    fn selector(&mut self, field: &str, selector: &TargetSelector) {
        if selector.names.is_none() && selector.label_selector.is_none() {
            self.push(
                field,
                "a target selector needs names or labelSelector; to match every resource say names: [\"*\"]",
            );
        }
        if let Some(names) = &selector.names {
            self.globs(&format!("{field}.names"), names, 1);
        }
        self.globs(&format!("{field}.exclude"), &selector.exclude, 0);
        if let Some(labels) = &selector.label_selector {
            self.label_selector(&format!("{field}.labelSelector"), labels);
        }
    }

    fn globs(&mut self, field: &str, globs: &[String], min: usize) {
        if globs.len() < min {
            self.push(
                field,
                format!("Invalid value: 0: {field} should have at least {min} items"),
            );
        }
        if globs.len() > MAX_SELECTOR_NAMES {
            self.push(
                field,
                format!(
                    "Too many: {}: must have at most {MAX_SELECTOR_NAMES} items",
                    globs.len()
                ),
            );
        }
        for (i, glob) in globs.iter().enumerate() {
            let item = format!("{field}[{i}]");
            self.pattern(&item, glob, &NAME_GLOB);
            if globs[..i].contains(glob) {
                self.push(item, format!("Duplicate value: {glob:?}"));
            }
        }
    }

    fn label_selector(&mut self, field: &str, selector: &LabelSelector) {
        if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
            self.push(
                field,
                "labelSelector needs matchLabels or matchExpressions; to match every resource say names: [\"*\"]",
            );
        }
        if selector.match_labels.len() > 32 {
            self.push(
                format!("{field}.matchLabels"),
                format!(
                    "Too many: {}: must have at most 32 items",
                    selector.match_labels.len()
                ),
            );
        }
        if selector
            .match_labels
            .keys()
            .any(|k| !(LABEL_KEY.accepts)(k))
        {
            self.push(
                format!("{field}.matchLabels"),
                "matchLabels keys must be Cloud Run label keys: a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'",
            );
        }
        for (key, value) in &selector.match_labels {
            self.label_value(&format!("{field}.matchLabels.{key}"), value);
        }
        if selector.match_expressions.len() > 16 {
            self.push(
                format!("{field}.matchExpressions"),
                format!(
                    "Too many: {}: must have at most 16 items",
                    selector.match_expressions.len()
                ),
            );
        }
        for (i, req) in selector.match_expressions.iter().enumerate() {
            let item = format!("{field}.matchExpressions[{i}]");
            self.pattern(&format!("{item}.key"), &req.key, &LABEL_KEY);
            let wants_values = matches!(req.operator, LabelOperator::In | LabelOperator::NotIn);
            if wants_values == req.values.is_empty() {
                self.push(
                    item.clone(),
                    "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                );
            }
            if req.values.len() > 32 {
                self.push(
                    format!("{item}.values"),
                    format!("Too many: {}: must have at most 32 items", req.values.len()),
                );
            }
            for (j, value) in req.values.iter().enumerate() {
                let value_field = format!("{item}.values[{j}]");
                self.label_value(&value_field, value);
                if req.values[..j].contains(value) {
                    self.push(value_field, format!("Duplicate value: {value:?}"));
                }
            }
        }
    }

    fn label_value(&mut self, field: &str, value: &str) {
        self.pattern(field, value, &LABEL_VALUE);
    }

    fn policy(&mut self, policy: &PolicyRef) {
        if policy.use_default.is_some() == policy.name.is_some() {
            self.push(
                "spec.policy",
                "policy needs exactly one of useDefault: true or name",
            );
        }
        if policy.use_default == Some(false) {
            self.push(
                "spec.policy.useDefault",
                "useDefault: false would disable Binary Authorization; set useDefault: true or name a policy",
            );
        }
        if let Some(name) = &policy.name {
            self.pattern("spec.policy.name", name, &POLICY_NAME);
        }
    }

    fn interval(&mut self, interval: &str) {
        self.pattern("spec.interval", interval, &INTERVAL);
        if (INTERVAL.accepts)(interval) && interval.len() <= INTERVAL.max_len {
            match crate::duration::parse(interval) {
                Ok(d) if d >= MIN_INTERVAL => {}
                _ => self.push("spec.interval", "interval must be at least 30s"),
            }
        }
    }
}
