//! The Cloud Run emulator as a client sees it over HTTP: the Admin API v2 and v1 surface,
//! the admin endpoints, faults, the real service's behaviours, and the audit log it
//! publishes to Google's Pub/Sub emulator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is how a test reports failure"
)]

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod api;
mod auditlog;
mod effect;
mod faults;
mod real_service;
