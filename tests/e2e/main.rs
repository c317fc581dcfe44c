//! The operator end to end against a real kube-apiserver (one control plane shared by
//! every test here, each in its own namespace): the CRD and its CEL rules, deploy/, the
//! controller with its RBAC, start-up, drift events, the health Flux and Argo CD read, and
//! the kubectl plugin.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is how a test reports failure"
)]

#[path = "../support/mod.rs"]
mod support;

mod breakglass;
mod controller;
mod crd;
mod deploy;
mod drift_events;
mod effective;
mod exceptions;
mod flux_health;
mod helm;
mod kubectl_plugin;
mod monitoring;
mod policy_reports;
mod smoke;
mod startup;
mod tenancy;
