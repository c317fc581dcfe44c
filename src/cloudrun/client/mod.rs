//! The Cloud Run Admin API v2 client: lists and reads services, jobs and worker pools, and
//! makes the one write the operator ever makes — setting Binary Authorization.
//!
//! # The remediation write
//!
//! Expected flow of [`CloudRunClient::remediate`]: read the resource (or take the one just
//! listed), decide with [`Remediation::is_satisfied_by`], and when it is not satisfied wait
//! for the region's write budget and a write slot, then make ONE `PATCH` carrying the
//! `etag` read, then follow the returned long-running operation. A job is read again
//! (`GET`) once the budget and slot are held, decided again on that copy, and that copy is
//! what is written.
//!
//! Guarantees:
//! - Nothing but `binaryAuthorization` is changed: services and worker pools are patched
//!   with `updateMask=binaryAuthorization` and a body holding only that field and the etag
//!   read (the listed one: a stale etag costs a re-read); jobs (no update mask in v2) are
//!   sent back exactly as read by the `GET` right before the write — never the listed copy
//!   — with only `binaryAuthorization` replaced. A deploy that lands between the list and
//!   the write is therefore kept even if Cloud Run did not check a job's etag; what remains
//!   is the one round trip between that `GET` and the `PATCH`. Server-managed fields
//!   (`generation`, `etag`, `updateTime`, `lastModifier`, ...) move as Cloud Run moves
//!   them.
//! - It never weakens: the written value comes from a [`crate::policy::DesiredPolicy`],
//!   which cannot express "disabled" — it is `useDefault: true` or a named policy.
//! - A concurrent change is never overwritten: the etag makes a stale write fail with 409
//!   ABORTED; the client then re-reads that one resource, decides again (the other writer
//!   may have fixed it, or deployed — its template survives since we only send what we
//!   read) and retries, at most `max_conflict_retries` times.
//! - No write when the resource already complies, is missing, or is being deleted.
//!
//! Caveats: the operation is followed for a bounded time (`:wait`, then polling `GET`);
//! when it has not finished by then the outcome is [`RemediationOutcome::Pending`] and the
//! next pass verifies. Enforcement is not retroactive: Cloud Run checks the policy at the
//! next deploy.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::auth::Auth;
use super::config::CloudRunConfig;
use super::error::{Error, Result};
use super::model::{masked_remediation_body, BinaryAuthorization, Resource};
use super::observe::{ApiMethod, CallObserver, NoopObserver};
use super::orgpolicy::OrgPolicyConstraint;
use super::ratelimit::{Budget, RateLimits, Ticket};
use crate::resource::{ObservedResource, Remediation, ResourceId, ResourceKind};

mod operations;
mod policy;
mod reads;
mod remediate;
#[cfg(test)]
mod tests;
mod transport;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("binauthz-operator/", env!("CARGO_PKG_VERSION"));

/// Longest interval between two polls of an operation.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Longest server-provided resource name quoted in an error.
const MAX_NAME_IN_ERROR: usize = 200;

/// Longest decoder message kept in an error (serde quotes offending values).
const MAX_DETAIL: usize = 300;

/// A resource as just read: the planner's view, and what a remediation needs of the wire
/// object it came from — not the whole object: a controller keeps thousands of these.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveResource {
    /// What the planner sees.
    pub observed: ObservedResource,
    wire: Wire,
}

/// What the one write of a remediation needs of the object read.
#[derive(Clone, Debug, PartialEq)]
enum Wire {
    /// Services and worker pools are written with `updateMask=binaryAuthorization`: the
    /// current setting and the etag are all it takes.
    Masked {
        etag: Option<String>,
        binary_authorization: Option<BinaryAuthorization>,
    },
    /// A job read with `GET`: written back whole, the object exactly as read, kept as
    /// compact JSON text (a small fraction of the memory of its decoded tree) and decoded
    /// only to write.
    Whole(Arc<str>),
    /// A job as listed: never written back (the write reads it again first), so nothing of
    /// the wire object is kept.
    ListedJob,
}

impl LiveResource {
    /// The resource `id` as Cloud Run returned it.
    ///
    /// # Errors
    /// When a job cannot be encoded again (it was decoded from JSON, so in practice never).
    pub fn new(id: ResourceId, resource: Resource) -> serde_json::Result<Self> {
        let observed = resource.observe(id);
        let wire = match observed.id.kind {
            ResourceKind::Service | ResourceKind::WorkerPool => Wire::Masked {
                etag: resource.etag,
                binary_authorization: resource.binary_authorization,
            },
            ResourceKind::Job => Wire::Whole(serde_json::to_string(&resource)?.into()),
        };
        Ok(Self { observed, wire })
    }

    /// A resource from a list page: like [`LiveResource::new`], except that a job keeps
    /// nothing of its wire object (it is read again before any write).
    fn listed(id: ResourceId, resource: Resource) -> serde_json::Result<Self> {
        if id.kind == ResourceKind::Job {
            return Ok(Self {
                observed: resource.observe(id),
                wire: Wire::ListedJob,
            });
        }
        Self::new(id, resource)
    }

    /// The body of the one write `remediation` makes to this resource as read: see
    /// [`Resource::remediation_body`]. Fails when the body cannot be encoded, or for a
    /// listed job (only a job just read is written back).
    fn remediation_body(&self, remediation: &Remediation) -> std::result::Result<Value, String> {
        let encode = |err: serde_json::Error| format!("cannot encode the request body: {err}");
        match &self.wire {
            Wire::Masked {
                etag,
                binary_authorization,
            } => {
                masked_remediation_body(binary_authorization.as_ref(), etag.as_deref(), remediation)
                    .map_err(encode)
            }
            Wire::Whole(text) => serde_json::from_str::<Resource>(text)
                .and_then(|r| r.remediation_body(self.observed.id.kind, remediation))
                .map_err(encode),
            Wire::ListedJob => Err("a listed job is never written back; read it first".into()),
        }
    }
}

/// Google's managed Cloud Run platform policy (built-in BCID checks): accepted in writes,
/// never readable by customers.
pub const BCID_MANAGED_POLICY: &str =
    "projects/bcid-cloud-run-policy/platforms/cloudRun/policies/bcidManagedPolicy";

/// What reading a named platform policy before writing it says
/// ([`CloudRunClient::policy_check`]).
#[derive(Clone, Debug)]
pub enum PolicyCheck {
    /// The policy was read.
    Exists,
    /// Binary Authorization answered 404 from a project the caller can read: the policy
    /// does not exist.
    NotFound,
    /// The read was refused (403): the policy may or may not exist. `error` says why
    /// ([`Error::failure`]: `PermissionDenied`, `ApiDisabled`, `VpcServiceControls`; its
    /// message names the permission or the API).
    Unverifiable {
        /// The refusal.
        error: Error,
    },
    /// Google's managed policy ([`BCID_MANAGED_POLICY`]): known, never read.
    GoogleManaged,
}

/// How a remediation ended (errors are [`Error`]s).
#[derive(Clone, Debug, PartialEq)]
pub enum RemediationOutcome {
    /// The write was made and its operation finished successfully. `resource` is the
    /// resource as the operation reported it, when it did.
    Applied {
        /// The resource after the change.
        resource: Option<Box<ObservedResource>>,
    },
    /// The resource already complied (possibly thanks to a concurrent writer): no write.
    AlreadySatisfied,
    /// The write was accepted but its operation had not finished by the deadline; the
    /// next pass verifies.
    Pending {
        /// The operation's name.
        operation: String,
    },
    /// `validateOnly`: Cloud Run accepted the write without applying it.
    Validated,
    /// The caller's guard said the write is no longer wanted (for the controller: another
    /// binding took the resource over since the pass planned it); nothing was written.
    Withdrawn,
}

/// Cloud Run Admin API v2 client. Cheap to clone (shared state); every clone shares the
/// throttle, caches and observer.
#[derive(Clone)]
pub struct CloudRunClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: CloudRunConfig,
    auth: Auth,
    limits: RateLimits,
    observer: Arc<dyn CallObserver>,
    regions: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    policies: Mutex<HashMap<String, (Instant, PolicyCheck)>>,
    org_policies: Mutex<HashMap<String, (Instant, OrgPolicyConstraint)>>,
    /// Creation times of revisions read, by full name (a revision never changes); names
    /// kept at their length (a controller remembers one per revision serving traffic).
    revisions: Mutex<HashMap<Box<str>, jiff::Timestamp>>,
}

impl fmt::Debug for CloudRunClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudRunClient")
            .field("cloud_run", &self.inner.config.cloud_run_base_url)
            .field("binauthz", &self.inner.config.binauthz_base_url)
            .field("orgpolicy", &self.inner.config.orgpolicy_base_url)
            .field("auth", &self.inner.auth)
            .field("limits", &self.inner.limits)
            .finish()
    }
}

/// One HTTP exchange, as [`CloudRunClient::execute`] performs it (with retries).
struct Call<'a> {
    method: ApiMethod,
    verb: reqwest::Method,
    url: String,
    query: Vec<(&'static str, String)>,
    body: Option<&'a Value>,
    /// `None` for calls outside Cloud Run's per-region quotas (Binary Authorization,
    /// Organization Policy).
    budget: Option<Budget>,
    /// The budget of the first attempt, when the caller already took it.
    prepaid: Option<Ticket>,
    project: &'a str,
    location: &'a str,
    /// The resource or collection acted on, for spans and errors.
    resource: String,
    timeout: Duration,
    /// Overall budget of all attempts, when tighter than the retry policy's.
    deadline: Option<Duration>,
}

impl Call<'_> {
    fn target(&self) -> String {
        format!("{} {}", self.method, self.resource)
    }
}

impl CloudRunClient {
    /// A client for `config`, without metrics. Finds Application Default Credentials
    /// unless the config points at an emulator; fails with [`Error::NoCredentials`] when
    /// there are none.
    pub async fn new(config: CloudRunConfig) -> Result<Self> {
        Self::with_observer(config, Arc::new(NoopObserver)).await
    }

    /// A client for `config` that reports every call to `observer`.
    pub async fn with_observer(
        config: CloudRunConfig,
        observer: Arc<dyn CallObserver>,
    ) -> Result<Self> {
        let auth = if config.google_credentials {
            Auth::application_default().await?
        } else {
            Auth::Emulator
        };
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|err| Error::InvalidConfig {
                field: "http client",
                detail: err.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                limits: RateLimits::new(&config.rate_limits, config.adaptive_rate),
                config,
                auth,
                observer,
                regions: Mutex::new(HashMap::new()),
                policies: Mutex::new(HashMap::new()),
                org_policies: Mutex::new(HashMap::new()),
                revisions: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration this client runs with.
    pub fn config(&self) -> &CloudRunConfig {
        &self.inner.config
    }
}
