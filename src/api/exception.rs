//! The `BinAuthzException` custom resource: a time-boxed exception that keeps named Cloud
//! Run resources from being remediated by the bindings of its namespace until it expires.
//!
//! Like the binding, every rule is written twice and tested against each other: in the
//! schema (enforced by the API server) and in [`BinAuthzExceptionSpec::validate`] (for
//! `check`). What depends on the operator's configuration — the longest exception it
//! honours (`--exception-max-duration`) — cannot be a CRD rule: the planner
//! ([`crate::plan::Exceptions`]) refuses such an exception and the status says why.

use std::fmt;

use jiff::Timestamp;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::patterns::{cel_string, Pattern, EXPIRES_AT, LOCATION, NAME_GLOB, PROJECT};
use super::validate::{serde_field_error, FieldError, ValidationErrors};
use super::{ResourceKind, API_VERSION};

/// The `kind` of exceptions.
pub const EXCEPTION_KIND: &str = "BinAuthzException";
/// Most names or globs in one exception.
pub const MAX_EXCEPTION_NAMES: usize = 50;
/// Longest `spec.reason`, in characters.
pub const MAX_EXCEPTION_REASON: usize = 512;

/// Names Cloud Run resources of one project, region and kind that the bindings of this
/// namespace report `Excepted` instead of remediating, for a stated reason, until
/// `expiresAt`. When it expires the operator enforces at once.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "binauthz.dev",
    version = "v1alpha1",
    kind = "BinAuthzException",
    doc = "A BinAuthzException keeps named Cloud Run resources from being remediated by the bindings of its namespace until it expires.",
    plural = "binauthzexceptions",
    singular = "binauthzexception",
    shortname = "baex",
    category = "binauthz",
    namespaced,
    status = "BinAuthzExceptionStatus",
    printcolumn = r#"{"name":"Project","type":"string","jsonPath":".spec.project","description":"Google Cloud project of the Cloud Run resources"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.kind","description":"Service, Job or WorkerPool"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".spec.expiresAt","description":"When the exception ends and the operator enforces"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state","description":"Active, Expired or Refused"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".spec.reason","description":"Why the exception was granted"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BinAuthzExceptionSpec {
    /// Google Cloud project of the excepted resources (as the bindings name it: id or
    /// number).
    #[schemars(regex(pattern = PROJECT.regex), length(max = PROJECT.max_len))]
    pub project: String,

    /// Cloud Run region of the excepted resources, e.g. `us-central1`, or `*` for every
    /// region.
    #[schemars(regex(pattern = LOCATION.regex), length(max = LOCATION.max_len))]
    pub location: String,

    /// Kind of the excepted resources: Service, Job or WorkerPool.
    pub kind: ResourceKind,

    /// Resource names or globs (`*` any run of characters, `?` one character). A bare `*`
    /// is refused: an exception names what it excepts. At most 50, no duplicates.
    #[schemars(length(min = 1, max = 50), inner(regex(pattern = NAME_GLOB.regex), length(max = NAME_GLOB.max_len)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = kube::core::Rule::new("!self.exists(n, n == '*')").message("names must not be '*': an exception names the resources it excepts"))]
    pub names: Vec<String>,

    /// Why the exception is granted (a ticket, an incident, who approved it). Shown in the
    /// excepted targets' status and events. 1-512 characters.
    #[schemars(length(min = 1, max = 512))]
    pub reason: String,

    /// When the exception ends, as an RFC 3339 time (`2026-12-31T18:00:00Z`). The
    /// operator enforces the bindings' policy on the named resources at that moment. At
    /// most `--exception-max-duration` (default 720h) after the exception's creation,
    /// or the operator refuses it.
    #[schemars(regex(pattern = EXPIRES_AT.regex), length(max = EXPIRES_AT.max_len))]
    // The pattern guard: the rule is evaluated even when the pattern refused the value.
    #[x_kube(validation = kube::core::Rule::new(format!("!self.matches({}) || timestamp(self) > timestamp('2000-01-01T00:00:00Z')", cel_string(EXPIRES_AT.regex))).message("expiresAt must be a valid RFC 3339 time such as 2026-12-31T18:00:00Z"))]
    pub expires_at: String,
}

/// Observed state of an exception, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BinAuthzExceptionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Active (honoured), Expired, or Refused (never honoured; the message says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ExceptionState>,
    /// For people: until when it is honoured, or why it is not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
}

/// Whether the operator honours an exception.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum ExceptionState {
    /// Honoured: the named resources are reported Excepted, not remediated.
    Active,
    /// Its time is over: the bindings enforce on the named resources.
    Expired,
    /// Never honoured: invalid, or longer than the operator allows.
    Refused,
}

impl fmt::Display for ExceptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl BinAuthzExceptionSpec {
    /// Checks every rule of the CRD (the same rules the API server enforces).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors: Vec<FieldError> = Vec::new();
        let push = |errors: &mut Vec<FieldError>, field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                message,
            })
        };
        let pattern = |errors: &mut Vec<FieldError>, field: &str, value: &str, p: &Pattern| {
            if let Some(message) = p.refuses(value) {
                push(errors, field, message);
            }
        };
        pattern(&mut errors, "spec.project", &self.project, &PROJECT);
        pattern(&mut errors, "spec.location", &self.location, &LOCATION);
        if self.names.is_empty() {
            push(
                &mut errors,
                "spec.names",
                "Invalid value: 0: spec.names in body should have at least 1 items".into(),
            );
        }
        if self.names.len() > MAX_EXCEPTION_NAMES {
            push(
                &mut errors,
                "spec.names",
                format!(
                    "Too many: {}: must have at most {MAX_EXCEPTION_NAMES} items",
                    self.names.len()
                ),
            );
        }
        for (i, name) in self.names.iter().enumerate() {
            pattern(&mut errors, &format!("spec.names[{i}]"), name, &NAME_GLOB);
            if self.names[..i].contains(name) {
                push(
                    &mut errors,
                    &format!("spec.names[{i}]"),
                    format!("Duplicate value: {name:?}"),
                );
            }
        }
        if self.names.iter().any(|n| n == "*") {
            push(
                &mut errors,
                "spec.names",
                "names must not be '*': an exception names the resources it excepts".into(),
            );
        }
        let reason_len = self.reason.chars().count();
        if reason_len == 0 {
            push(
                &mut errors,
                "spec.reason",
                "Invalid value: \"\": spec.reason in body should be at least 1 chars long".into(),
            );
        } else if reason_len > MAX_EXCEPTION_REASON {
            push(
                &mut errors,
                "spec.reason",
                format!("Too long: may not be more than {MAX_EXCEPTION_REASON} bytes"),
            );
        }
        if let Some(message) = EXPIRES_AT.refuses(&self.expires_at) {
            push(&mut errors, "spec.expiresAt", message);
        } else if self.expiry().is_none() {
            push(
                &mut errors,
                "spec.expiresAt",
                "expiresAt must be a valid RFC 3339 time such as 2026-12-31T18:00:00Z".into(),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }

    /// `spec.expiresAt` as a time; `None` when it is not one (`validate` refuses it).
    pub fn expiry(&self) -> Option<Timestamp> {
        self.expires_at.parse().ok()
    }
}

/// Reads one exception from a parsed manifest and checks every CRD rule, reporting
/// problems the way the API server names them.
pub fn exception_from_value(
    value: serde_json::Value,
) -> Result<BinAuthzException, ValidationErrors> {
    let api_version = value.get("apiVersion").and_then(|v| v.as_str());
    if api_version != Some(API_VERSION) {
        return Err(ValidationErrors(vec![FieldError {
            field: "apiVersion".into(),
            message: format!(
                "Unsupported value: {:?}: a {EXCEPTION_KIND} must have apiVersion {API_VERSION}",
                api_version.unwrap_or("")
            ),
        }]));
    }
    let exception: BinAuthzException = serde_path_to_error::deserialize(value)
        .map_err(|err| ValidationErrors(vec![serde_field_error(&err)]))?;
    let mut errors = Vec::new();
    if exception.metadata.name.as_deref().unwrap_or("").is_empty() {
        errors.push(FieldError {
            field: "metadata.name".into(),
            message: "Required value: every exception needs a name".into(),
        });
    }
    if let Err(ValidationErrors(spec)) = exception.spec.validate() {
        errors.extend(spec);
    }
    if errors.is_empty() {
        Ok(exception)
    } else {
        Err(ValidationErrors(errors))
    }
}
