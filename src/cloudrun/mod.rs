//! Cloud Run Admin API v2 client: reads the fleet cheaply and writes only Binary
//! Authorization, safely.
//!
//! - [`CloudRunClient`] lists and reads services, jobs and worker pools, lists a project's
//!   regions, checks a named platform policy ([`PolicyCheck`]), reads a project's
//!   organization policy constraint ([`OrgPolicyConstraint`], in [`orgpolicy`]), and
//!   remediates ([`CloudRunClient::remediate`]) — the only write, whose guarantees are
//!   documented in [`client`]. Its throttle adapts to the quota Cloud Run enforces
//!   ([`ratelimit`]).
//! - [`CloudRunArgs`] are the command-line flags (`--cloud-run-endpoint`, rates, timeouts)
//!   the `controller` and `check` subcommands flatten into theirs.
//! - [`Error`] classifies every failure; [`CallObserver`] receives metrics hooks.
//!
//! The wire facts it follows are Google's published API descriptions (Cloud Run Admin API
//! v2, Binary Authorization v1, Organization Policy v2); the operator-facing documentation
//! (auth, endpoints, quotas, IAM permissions) is `docs/cloudrun-client.md`.

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod model;
pub mod observe;
pub mod orgpolicy;
pub mod ratelimit;
pub mod retry;

pub use client::{
    CloudRunClient, LiveResource, PolicyCheck, RemediationOutcome, BCID_MANAGED_POLICY, USER_AGENT,
};
pub use config::{CloudRunArgs, CloudRunConfig, OperationPolicy};
pub use error::{ApiError, Code, DisabledApi, Error, Failure, Result, ORG_POLICY_CONSTRAINT};
pub use model::Resource;
pub use observe::{ApiMethod, CallObserver, CallStatus, NoopObserver};
pub use orgpolicy::{AllowedBinauthzValue, OrgPolicyConstraint};
pub use ratelimit::{AdaptivePolicy, Budget, RateLimitConfig, Throttle};
pub use retry::RetryPolicy;
