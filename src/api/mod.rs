//! The custom resources (`binauthz.dev/v1alpha1`): `BinAuthzBinding` (spec, status, CRD
//! rules) and the tenancy grants `BinAuthzTenancy` with their index.
//!
//! The Rust types here are the single source of the CRD: `binauthz-operator crd` prints
//! what they derive, and `crds/` holds a committed copy that a test keeps in step. Every
//! validation rule exists twice, on purpose and tested against each other: in the schema
//! (OpenAPI constraints and CEL `x-kubernetes-validations`, enforced by the API server) and
//! in [`BinAuthzBindingSpec::validate`] (for `check`, which reads files without an API server). The string rules
//! are written once, in `patterns`, and both sides take them from there.

use std::time::Duration;

mod crd;
mod exception;
mod patterns;
mod spec;
mod status;
mod tenancy;
mod validate;

pub use crd::{
    crd, crd_files, crd_yaml, crds, crds_yaml, exception_crd, API_VERSION, KIND,
    UNOBSERVED_GENERATION,
};
pub use exception::{
    exception_from_value, BinAuthzException, BinAuthzExceptionSpec, BinAuthzExceptionStatus,
    ExceptionState, EXCEPTION_KIND, MAX_EXCEPTION_NAMES, MAX_EXCEPTION_REASON,
};
pub use spec::{
    BinAuthzBinding, BinAuthzBindingSpec, BreakglassMode, LabelOperator, LabelSelector,
    LabelSelectorRequirement, Mode, PolicyRef, ResourceKind, TargetSelector, Targets,
};
pub use status::{
    BinAuthzBindingStatus, Condition, EffectBasis, EffectState, FailureReason, OrgPolicyState,
    OrgPolicyStatus, PolicyCheck, PolicyCheckResult, Summary, TargetEffect, TargetState,
    TargetStatus, UnreadLocation, RECONCILE_REQUESTED_AT,
};
pub use tenancy::{
    glob_regex, BinAuthzTenancy, BinAuthzTenancyIndex, BinAuthzTenancyIndexSpec,
    BinAuthzTenancySpec, IndexedGrant, NamespaceRequirement, NamespaceSelector, PolicyGrant,
    TENANCY_INDEX_NAME, TENANCY_KIND,
};
pub use validate::{binding_from_value, grant_from_value, FieldError, ValidationErrors};

#[cfg(test)]
mod tests;

/// Shortest accepted `spec.interval`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// `spec.interval` when the binding does not say.
pub const DEFAULT_INTERVAL: &str = "10m";
/// Most entries in `status.targets`.
pub const MAX_STATUS_TARGETS: usize = 100;
/// Most names or excludes in one target selector.
pub const MAX_SELECTOR_NAMES: usize = 200;
/// Most entries in `spec.locations`.
pub const MAX_LOCATIONS: usize = 50;
/// Bounds of `spec.priority`.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
