//! The one support tree of the integration tests: each test binary includes it with
//! `#[path = "../support/mod.rs"] mod support;` and uses the parts it needs.
//!
//! - [`envtest`]: a real kube-apiserver + etcd shared by the tests of one binary.
//! - [`process`]: the operator binary as subprocesses (controller, emulator).
//! - [`pubsub`]: Google's Pub/Sub emulator.
//! - [`emulator`]: the Cloud Run emulator in-process, spoken to over raw HTTP.
//! - [`reliability`]: generated faulty estates, simulated users, and the verdicts on the
//!   emulator's final state and audit log (the reliability suites).
//! - [`proxy`]: proxies in front of the operator (tagging, partitioning) and log dirs.
//! - [`kube`]: Kubernetes objects and kubeconfigs the tests build.
//! - [`metrics`], [`wait`], [`net`]: reading `/metrics`, waiting for a condition, ports.
//! - [`gotool`]: upstream Go tools (kstatus, promtool, helm, the promql helper).
#![allow(dead_code, unused_imports)] // each binary uses a different subset

pub mod emulator;
pub mod envtest;
pub mod gotool;
pub mod kube;
pub mod metrics;
pub mod net;
pub mod process;
pub mod proxy;
pub mod pubsub;
pub mod reliability;
pub mod wait;

/// The repository root (the operator crate's manifest directory).
pub fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
