//! The command line through the built binary, the way a CI job or a person runs it:
//! `check` and `validate` against the emulator (a subprocess, or embedded), the `emulator`
//! subcommand itself, `crd` (the CRD the code derives, and the shared binding corpus), and
//! the CI formats, shift-left `validate` and the GitHub Action (`output`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is how a test reports failure"
)]

#[path = "../support/mod.rs"]
mod support;

mod check;
mod crd;
mod emulator;
mod output;
