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

/// A valid binding (8 lines).
const VALID_BINDING: &str = "apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata: {name: ok, namespace: platform}
spec:
  project: acme-prod
  locations: [us-central1]
  targets: {services: {names: ['*']}}
  policy: {useDefault: true}
";

/// A binding with two problems: `*` among other locations (line 6), `useDefault: false`
/// (line 9).
const INVALID_BINDING: &str = "apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata: {name: disabled}
spec:
  project: acme-prod
  locations: [us-central1, '*']
  targets: {services: {names: ['*']}}
  policy:
    useDefault: false
";
