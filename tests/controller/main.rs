//! The controller's reliability: restarts, failover, floods and fault soaks against the
//! in-process emulator and a real kube-apiserver, drift events against Google's Pub/Sub
//! emulator, and no credential in any output. RELIABILITY.md reports their figures.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is how a test reports failure"
)]

#[path = "../support/mod.rs"]
mod support;

mod drift_events;
mod fault_soak;
mod no_credential_leak;
mod resilience;
mod shards;
