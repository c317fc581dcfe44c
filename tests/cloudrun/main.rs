//! The Cloud Run client: against the emulator over loopback HTTP, and against hostile
//! servers that answer garbage, slowly or hugely.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is how a test reports failure"
)]

#[path = "../support/mod.rs"]
mod support;

mod client;
mod hostile;
