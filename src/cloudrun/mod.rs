//! Cloud Run Admin API v2 client: reads the fleet cheaply and writes only Binary
//! Authorization, safely.
//!
//! - [`CloudRunClient`] lists and reads services, jobs and worker pools, lists a project's
//!   regions, checks that a named platform policy exists, and remediates
//!   ([`CloudRunClient::remediate`]) — the only write, whose guarantees are documented in
//!   [`client`].
//! - [`CloudRunArgs`] are the command-line flags (`--cloud-run-endpoint`, rates, timeouts)
//!   the `controller` and `check` subcommands flatten into theirs.
//! - [`Error`] classifies every failure; [`CallObserver`] receives metrics hooks.
//!
//! The wire facts it follows are in `shared/cloudrun-api.md`; the operator-facing
//! documentation (auth, endpoints, quotas, IAM permissions) is `docs/cloudrun-client.md`.

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod model;
pub mod observe;
pub mod ratelimit;
pub mod retry;

pub use client::{CloudRunClient, LiveResource, RemediationOutcome, USER_AGENT};
pub use config::{CloudRunArgs, CloudRunConfig, OperationPolicy};
pub use error::{ApiError, Code, DisabledApi, Error, Failure, Result, ORG_POLICY_CONSTRAINT};
pub use model::Resource;
pub use observe::{ApiMethod, CallObserver, CallStatus, NoopObserver};
pub use ratelimit::{RateLimitConfig, Throttle};
pub use retry::RetryPolicy;
