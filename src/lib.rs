//! binauthz-operator: keeps Google Cloud Run services, jobs and worker pools under Binary
//! Authorization, declared by `BinAuthzBinding` custom resources.
#![forbid(unsafe_code)]

pub mod api;
pub mod check;
pub mod cloudrun;
pub mod cloudrun_manifest;
pub mod controller;
pub mod drift;
pub mod duration;
pub mod error_line;
pub mod fleet;
pub mod kubectl;
pub mod manifests;
pub mod matching;
pub mod plan;
pub mod policy;
pub mod policyreport;
pub mod resource;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod validate;
