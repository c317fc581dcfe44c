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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, field, info, info_span, warn, Instrument};

use super::auth::Auth;
use super::config::CloudRunConfig;
use super::error::{clip, ApiError, Code, Error, Result};
use super::model::{
    json_values_at_most, masked_remediation_body, BinaryAuthorization, ListPage, LocationsPage,
    Operation, Resource,
};
use super::observe::{ApiMethod, CallObserver, CallStatus, NoopObserver};
use super::orgpolicy::{EffectivePolicy, OrgPolicyConstraint, ALLOWED_BINAUTHZ_POLICIES};
use super::ratelimit::{Budget, QuotaSignal, RateChange, RateLimits, Throttle, Ticket};
use crate::policy::PolicyName;
use crate::resource::{ObservedResource, Remediation, ResourceId, ResourceKind};

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
        resource: Option<ObservedResource>,
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
            }),
        })
    }

    /// The configuration this client runs with.
    pub fn config(&self) -> &CloudRunConfig {
        &self.inner.config
    }

    /// Lists the resources of `kind` in (project, location), one page (`pageSize` 100) per
    /// stream item, following `nextPageToken` to the end. Deleted resources are not listed.
    /// The stream ends after the first error.
    pub fn list(
        &self,
        project: &str,
        location: &str,
        kind: ResourceKind,
    ) -> BoxStream<'static, Result<Vec<LiveResource>>> {
        let client = self.clone();
        let scope = Arc::new((project.to_owned(), location.to_owned()));
        let tokens = PageTokens::new(self.inner.config.max_list_pages);
        stream::try_unfold((Some(String::new()), tokens), move |(token, mut tokens)| {
            let client = client.clone();
            let scope = Arc::clone(&scope);
            async move {
                let Some(token) = token else {
                    return Ok(None);
                };
                let (project, location) = &*scope;
                let (items, next) = client.list_page(project, location, kind, &token).await?;
                let next = tokens.follow(next).map_err(|detail| Error::Decode {
                    target: format!(
                        "{} projects/{project}/locations/{location}",
                        ApiMethod::list(kind)
                    ),
                    detail,
                })?;
                Ok(Some((items, (next, tokens))))
            }
        })
        .boxed()
    }

    /// Every resource of `kind` in (project, location): [`CloudRunClient::list`], collected.
    pub async fn list_all(
        &self,
        project: &str,
        location: &str,
        kind: ResourceKind,
    ) -> Result<Vec<LiveResource>> {
        let pages: Vec<Vec<LiveResource>> =
            self.list(project, location, kind).try_collect().await?;
        Ok(pages.into_iter().flatten().collect())
    }

    async fn list_page(
        &self,
        project: &str,
        location: &str,
        kind: ResourceKind,
        token: &str,
    ) -> Result<(Vec<LiveResource>, Option<String>)> {
        let parent = format!("projects/{project}/locations/{location}");
        check_segments(
            || format!("{} {parent}", ApiMethod::list(kind)),
            &[("project", project), ("location", location)],
        )?;
        let mut query = vec![("pageSize", self.inner.config.page_size.to_string())];
        if !token.is_empty() {
            query.push(("pageToken", token.to_owned()));
        }
        let call = Call {
            method: ApiMethod::list(kind),
            verb: reqwest::Method::GET,
            url: format!(
                "{}/v2/{parent}/{}",
                self.inner.config.cloud_run_base_url,
                kind.collection()
            ),
            query,
            body: None,
            budget: Some(Budget::Read),
            prepaid: None,
            project,
            location,
            resource: parent,
            timeout: self.inner.config.request_timeout,
            deadline: None,
        };
        let target = call.target();
        let page: ListPage = self.execute(call).await?;
        let items = page
            .items
            .into_iter()
            .map(|item| {
                let resource: Resource = serde_json::from_str(item.get()).map_err(|err| {
                    #[derive(Deserialize)]
                    struct Named {
                        name: String,
                    }
                    let name = serde_json::from_str::<Named>(item.get())
                        .map_or_else(|_| "(unnamed)".to_owned(), |n| n.name);
                    Error::Decode {
                        target: target.clone(),
                        detail: format!(
                            "resource {} is malformed: {}",
                            clip(&name, MAX_NAME_IN_ERROR),
                            clip(&err.to_string(), MAX_DETAIL)
                        ),
                    }
                })?;
                let id = match resource.name_parts() {
                    Some(parts) if parts.kind == kind => ResourceId {
                        kind,
                        project: project.to_owned(),
                        location: location.to_owned(),
                        name: parts.id.to_owned(),
                    },
                    _ => {
                        return Err(Error::Decode {
                            target: target.clone(),
                            detail: format!(
                                "listed resource name {:?} is not a {kind} name",
                                clip(&resource.name, MAX_NAME_IN_ERROR)
                            ),
                        })
                    }
                };
                LiveResource::listed(id, resource).map_err(|err| Error::Decode {
                    target: target.clone(),
                    detail: format!("cannot keep the listed resource: {err}"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((items, page.next_page_token))
    }

    /// Reads one resource. A missing one is [`Error::NotFound`].
    pub async fn get(&self, id: &ResourceId) -> Result<LiveResource> {
        let name = id.resource_name();
        check_id(ApiMethod::get(id.kind), id)?;
        let resource: Resource = self
            .execute(Call {
                method: ApiMethod::get(id.kind),
                verb: reqwest::Method::GET,
                url: format!("{}/v2/{name}", self.inner.config.cloud_run_base_url),
                query: Vec::new(),
                body: None,
                budget: Some(Budget::Read),
                prepaid: None,
                project: &id.project,
                location: &id.location,
                resource: name,
                timeout: self.inner.config.request_timeout,
                deadline: None,
            })
            .await?;
        LiveResource::new(id.clone(), resource).map_err(|err| Error::Decode {
            target: format!("{} {}", ApiMethod::get(id.kind), id.resource_name()),
            detail: format!("cannot keep the resource read: {err}"),
        })
    }

    /// The Cloud Run regions of `project` (v1 locations list), sorted; cached for
    /// `regions_ttl`.
    pub async fn regions(&self, project: &str) -> Result<Vec<String>> {
        let ttl = self.inner.config.regions_ttl;
        if let Some((at, regions)) = lock(&self.inner.regions).get(project) {
            if at.elapsed() < ttl {
                return Ok(regions.clone());
            }
        }
        let parent = format!("projects/{project}");
        check_segments(
            || format!("{} {parent}", ApiMethod::ListLocations),
            &[("project", project)],
        )?;
        let mut regions = BTreeSet::new();
        let mut token = String::new();
        let mut tokens = PageTokens::new(self.inner.config.max_list_pages);
        loop {
            let mut query = vec![("pageSize", "100".to_owned())];
            if !token.is_empty() {
                query.push(("pageToken", token.clone()));
            }
            let page: LocationsPage = self
                .execute(Call {
                    method: ApiMethod::ListLocations,
                    verb: reqwest::Method::GET,
                    url: format!(
                        "{}/v1/{parent}/locations",
                        self.inner.config.cloud_run_base_url
                    ),
                    query,
                    body: None,
                    budget: Some(Budget::Read),
                    prepaid: None,
                    project,
                    location: "global",
                    resource: parent.clone(),
                    timeout: self.inner.config.request_timeout,
                    deadline: None,
                })
                .await?;
            regions.extend(
                page.locations
                    .iter()
                    .filter_map(|l| l.region())
                    .map(str::to_owned),
            );
            let next = tokens
                .follow(page.next_page_token)
                .map_err(|detail| Error::Decode {
                    target: format!("{} {parent}", ApiMethod::ListLocations),
                    detail,
                })?;
            match next {
                Some(next) => token = next,
                None => break,
            }
        }
        let regions: Vec<String> = regions.into_iter().collect();
        lock(&self.inner.regions).insert(project.to_owned(), (Instant::now(), regions.clone()));
        Ok(regions)
    }

    /// Whether the named Cloud Run platform policy exists (Binary Authorization API):
    /// [`CloudRunClient::policy_check`] as a yes/no — Google's managed policy counts as
    /// existing, and a policy that cannot be verified is the error that says why.
    pub async fn policy_exists(&self, policy: &PolicyName) -> Result<bool> {
        match self.policy_check(policy).await? {
            PolicyCheck::Exists | PolicyCheck::GoogleManaged => Ok(true),
            PolicyCheck::NotFound => Ok(false),
            PolicyCheck::Unverifiable { error } => Err(error),
        }
    }

    /// What can be known about the named Cloud Run platform policy before writing it
    /// (Binary Authorization API `GET v1/{policy}`); cached for `policy_ttl`, whichever the
    /// answer:
    /// - Google's managed policy ([`BCID_MANAGED_POLICY`]) is never read (customers cannot):
    ///   [`PolicyCheck::GoogleManaged`];
    /// - 200: [`PolicyCheck::Exists`]; 404: [`PolicyCheck::NotFound`];
    /// - 403: [`PolicyCheck::Unverifiable`] carrying the error — Binary Authorization
    ///   answers 403 for a policy in a project the caller may not read, whether or not it
    ///   exists ("... (or resource may not exist)"), so the write may still be right. Every
    ///   403 counts (a missing permission, the API disabled, a VPC Service Controls
    ///   perimeter); [`Error::failure`] of the carried error tells which.
    ///
    /// # Errors
    /// Any other failure (after retries), e.g. the API unreachable or credentials refused.
    pub async fn policy_check(&self, policy: &PolicyName) -> Result<PolicyCheck> {
        if policy.as_str() == BCID_MANAGED_POLICY {
            return Ok(PolicyCheck::GoogleManaged);
        }
        let ttl = self.inner.config.policy_ttl;
        if let Some((at, check)) = lock(&self.inner.policies).get(policy.as_str()) {
            if at.elapsed() < ttl {
                return Ok(check.clone());
            }
        }
        let result: Result<Value> = self
            .execute(Call {
                method: ApiMethod::GetPlatformPolicy,
                verb: reqwest::Method::GET,
                url: format!(
                    "{}/v1/{}",
                    self.inner.config.binauthz_base_url,
                    policy.as_str()
                ),
                query: Vec::new(),
                body: None,
                budget: None,
                prepaid: None,
                project: policy.project(),
                location: "global",
                resource: policy.as_str().to_owned(),
                timeout: self.inner.config.request_timeout,
                deadline: None,
            })
            .await;
        let check = match result {
            Ok(_) => PolicyCheck::Exists,
            Err(err) if err.is_not_found() => PolicyCheck::NotFound,
            Err(err) if err.is_permission_denied() => {
                info!(policy = %policy, error = %err, "cannot read the policy; it cannot be verified");
                PolicyCheck::Unverifiable { error: err }
            }
            Err(err) => return Err(err),
        };
        lock(&self.inner.policies)
            .insert(policy.as_str().to_owned(), (Instant::now(), check.clone()));
        Ok(check)
    }

    /// The effective organization policy constraint
    /// `constraints/run.allowedBinaryAuthorizationPolicies` of `project` (Organization
    /// Policy API v2 `getEffectivePolicy`, see [`super::orgpolicy`]); cached for
    /// `orgpolicy_ttl`. Errors are not cached.
    ///
    /// # Errors
    /// As every call: 403 (no `orgpolicy.policy.get`, or the API disabled) is
    /// [`Error::PermissionDenied`] — callers proceed and let the write's answer decide.
    pub async fn effective_org_policy(&self, project: &str) -> Result<OrgPolicyConstraint> {
        let ttl = self.inner.config.orgpolicy_ttl;
        if let Some((at, constraint)) = lock(&self.inner.org_policies).get(project) {
            if at.elapsed() < ttl {
                return Ok(constraint.clone());
            }
        }
        let name = format!("projects/{project}/policies/{ALLOWED_BINAUTHZ_POLICIES}");
        check_segments(
            || format!("{} {name}", ApiMethod::GetEffectiveOrgPolicy),
            &[("project", project)],
        )?;
        let policy: EffectivePolicy = self
            .execute(Call {
                method: ApiMethod::GetEffectiveOrgPolicy,
                verb: reqwest::Method::GET,
                url: format!(
                    "{}/v2/{name}:getEffectivePolicy",
                    self.inner.config.orgpolicy_base_url
                ),
                query: Vec::new(),
                body: None,
                budget: None,
                prepaid: None,
                project,
                location: "global",
                resource: name,
                timeout: self.inner.config.request_timeout,
                deadline: None,
            })
            .await?;
        let constraint = OrgPolicyConstraint::from_effective(&policy);
        debug!(%project, %constraint, "organization policy read");
        lock(&self.inner.org_policies)
            .insert(project.to_owned(), (Instant::now(), constraint.clone()));
        Ok(constraint)
    }

    /// Reads the resource and, unless it already complies, applies `remediation` with one
    /// write (see the module docs for the guarantees).
    pub async fn remediate(
        &self,
        id: &ResourceId,
        remediation: &Remediation,
    ) -> Result<RemediationOutcome> {
        self.remediate_from(id, None, remediation, false, &|_: &ObservedResource| true)
            .await
    }

    /// Like [`CloudRunClient::remediate`], starting from the resource just listed (its etag
    /// is sent; a stale one costs a re-read).
    pub async fn remediate_listed(
        &self,
        current: &LiveResource,
        remediation: &Remediation,
    ) -> Result<RemediationOutcome> {
        self.remediate_listed_while(current, remediation, &|_: &ObservedResource| true)
            .await
    }

    /// Like [`CloudRunClient::remediate_listed`], asking `still_wanted` before every write
    /// attempt, with the resource as just read (after a stale etag too): when it answers
    /// false nothing is written and the outcome is [`RemediationOutcome::Withdrawn`]. A
    /// concurrent writer always changes the etag, so a decision made before its write is
    /// re-checked against the world after it.
    pub async fn remediate_listed_while(
        &self,
        current: &LiveResource,
        remediation: &Remediation,
        still_wanted: &(dyn Fn(&ObservedResource) -> bool + Send + Sync),
    ) -> Result<RemediationOutcome> {
        self.remediate_from(
            &current.observed.id,
            Some(current.clone()),
            remediation,
            false,
            still_wanted,
        )
        .await
    }

    /// Asks Cloud Run to validate the write `remediate` would make (`validateOnly=true`),
    /// without applying it: [`RemediationOutcome::Validated`] or the error Cloud Run
    /// reports (e.g. a policy that does not exist).
    pub async fn validate_remediation(
        &self,
        id: &ResourceId,
        remediation: &Remediation,
    ) -> Result<RemediationOutcome> {
        self.remediate_from(id, None, remediation, true, &|_: &ObservedResource| true)
            .await
    }

    async fn remediate_from(
        &self,
        id: &ResourceId,
        current: Option<LiveResource>,
        remediation: &Remediation,
        validate_only: bool,
        still_wanted: &(dyn Fn(&ObservedResource) -> bool + Send + Sync),
    ) -> Result<RemediationOutcome> {
        let span = info_span!(
            "cloudrun_remediate",
            kind = %id.kind,
            project = %id.project,
            location = %id.location,
            resource = %id.name,
            desired = %remediation.desired,
            breakglass = ?remediation.breakglass,
            validate_only,
        );
        async move {
            check_id(ApiMethod::update(id.kind), id)?;
            let mut conflicts = 0;
            let mut slot: Option<OwnedSemaphorePermit> = None;
            let mut prepaid: Option<Ticket> = None;
            // The copy in hand, and whether it was read while this call held its write
            // slot: a job is only ever written back from such a copy.
            let mut current = current.map(|listed| (listed, false));
            loop {
                let (live, fresh) = match current.take() {
                    Some(read) => read,
                    None => (self.get(id).await?, slot.is_some()),
                };
                if live.observed.deleted {
                    return Err(Error::from_api(ApiError::local(
                        format!("{} {}", ApiMethod::update(id.kind), id.resource_name()),
                        Code::NotFound,
                        "the resource is being deleted",
                    )));
                }
                if remediation.is_satisfied_by(&live.observed) {
                    debug!(observed = %live.observed.policy, "already compliant; no write");
                    return Ok(RemediationOutcome::AlreadySatisfied);
                }
                if !still_wanted(&live.observed) {
                    debug!("the caller no longer wants this write; nothing written");
                    return Ok(RemediationOutcome::Withdrawn);
                }
                // The region's write budget first, then a global write slot: a write
                // waiting for one region's budget must not hold a slot that writes to
                // other regions could use.
                if slot.is_none() {
                    prepaid = Some(
                        self.take_budget(Budget::Write, &id.project, &id.location)
                            .await,
                    );
                    slot = Some(self.write_slot(id).await?);
                }
                if id.kind == ResourceKind::Job && !fresh {
                    // A job is written back whole: read it right before the write, so a
                    // deploy that landed since the list (or since the wait for budget) is
                    // what is written back, whether or not Cloud Run enforces the etag.
                    debug!("reading the job right before writing it whole");
                    continue;
                }
                let body = live
                    .remediation_body(remediation)
                    .map_err(|detail| Error::Decode {
                        target: format!("{} {}", ApiMethod::update(id.kind), id.resource_name()),
                        detail,
                    })?;
                match self.patch(id, &body, validate_only, prepaid.take()).await {
                    Ok(operation) => return self.finish(id, operation, validate_only).await,
                    Err(err) if err.is_conflict() && conflicts < self.inner.config.max_conflict_retries => {
                        conflicts += 1;
                        self.inner.observer.conflict(id.kind);
                        info!(conflicts, error = %err, "resource changed since it was read; re-reading");
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Waits for one call's worth of `budget` in (project, location), reporting the wait.
    async fn take_budget(&self, budget: Budget, project: &str, location: &str) -> Ticket {
        let (ticket, waited) = self.inner.limits.acquire(budget, project, location).await;
        if !waited.is_zero() {
            let throttle = match budget {
                Budget::Read => Throttle::ReadRate,
                Budget::Write => Throttle::WriteRate,
            };
            self.inner.observer.throttled(throttle, waited);
        }
        ticket
    }

    fn report_rate(&self, change: Option<RateChange>, project: &str, location: &str) {
        if let Some(RateChange { budget, per_minute }) = change {
            self.inner
                .observer
                .rate_changed(budget, project, location, per_minute);
        }
    }

    /// The effective rate, per minute, at which this client sends `budget` requests to
    /// (project, location) right now: the configured rate, lowered by 429s and recovering
    /// (see [`super::ratelimit`]).
    pub fn effective_rate(&self, budget: Budget, project: &str, location: &str) -> f64 {
        self.inner.limits.effective_rate(budget, project, location)
    }

    async fn write_slot(&self, id: &ResourceId) -> Result<OwnedSemaphorePermit> {
        let (permit, waited) = self.inner.limits.write_slot().await.ok_or_else(|| {
            Error::from_api(ApiError::local(
                format!("{} {}", ApiMethod::update(id.kind), id.resource_name()),
                Code::Internal,
                "the client's write slots are closed",
            ))
        })?;
        if !waited.is_zero() {
            self.inner
                .observer
                .throttled(Throttle::WriteConcurrency, waited);
        }
        Ok(permit)
    }

    /// Sends the write; `prepaid` when the caller already took its write budget.
    async fn patch(
        &self,
        id: &ResourceId,
        body: &Value,
        validate_only: bool,
        prepaid: Option<Ticket>,
    ) -> Result<Operation> {
        let name = id.resource_name();
        let mut query = Vec::new();
        if id.kind != ResourceKind::Job {
            query.push(("updateMask", "binaryAuthorization".to_owned()));
        }
        if validate_only {
            query.push(("validateOnly", "true".to_owned()));
        }
        self.execute(Call {
            method: ApiMethod::update(id.kind),
            verb: reqwest::Method::PATCH,
            url: format!("{}/v2/{name}", self.inner.config.cloud_run_base_url),
            query,
            body: Some(body),
            budget: Some(Budget::Write),
            prepaid,
            project: &id.project,
            location: &id.location,
            resource: name,
            timeout: self.inner.config.request_timeout,
            deadline: None,
        })
        .await
    }

    async fn finish(
        &self,
        id: &ResourceId,
        operation: Operation,
        validate_only: bool,
    ) -> Result<RemediationOutcome> {
        let operation = if validate_only {
            operation
        } else {
            self.follow(id, operation).await?
        };
        if let Some(error) = &operation.error {
            let target = format!("{} {}", ApiMethod::update(id.kind), id.resource_name());
            return Err(Error::OperationFailed {
                operation: operation.name.clone(),
                error: Box::new(ApiError::from_operation_status(target, error)),
            });
        }
        if validate_only {
            return Ok(RemediationOutcome::Validated);
        }
        if !operation.done {
            info!(operation = %operation.name, "operation not finished by the deadline; verifying next pass");
            return Ok(RemediationOutcome::Pending {
                operation: operation.name,
            });
        }
        let resource = operation
            .response
            .and_then(|response| serde_json::from_value::<Resource>(response).ok())
            .map(|resource| resource.observe(id.clone()));
        info!("remediated");
        Ok(RemediationOutcome::Applied { resource })
    }

    /// Follows `operation` until it is done or the operation deadline passes: one `:wait`,
    /// then `GET` at growing intervals. Returns the last state seen.
    async fn follow(&self, id: &ResourceId, mut operation: Operation) -> Result<Operation> {
        let followable = operation.name.starts_with("projects/")
            && !operation.name.contains(['?', '#'])
            && !operation.name.split('/').any(|s| s == "..");
        if operation.done || !followable {
            return Ok(operation);
        }
        let policy = self.inner.config.operation;
        let started = Instant::now();
        let remaining = || policy.deadline.saturating_sub(started.elapsed());

        let wait = policy.wait_timeout.min(remaining());
        if !wait.is_zero() {
            match self
                .wait_operation(id, &operation.name, wait, remaining())
                .await
            {
                Ok(waited) if waited.done => return Ok(waited),
                Ok(waited) => operation = waited,
                // `:wait` is best effort; polling decides.
                Err(err) => debug!(error = %err, "operation wait failed; polling instead"),
            }
        }
        let mut interval = policy.poll_interval;
        loop {
            let left = remaining();
            if left.is_zero() {
                return Ok(operation);
            }
            tokio::time::sleep(interval.min(left)).await;
            match self.get_operation(id, &operation.name, remaining()).await {
                Ok(polled) if polled.done => return Ok(polled),
                Ok(polled) => operation = polled,
                // The write was accepted; losing track of it is not a failure of the write.
                Err(err) if err.is_retryable() => {
                    warn!(error = %err, "cannot read the operation; verifying next pass");
                    return Ok(operation);
                }
                Err(err) => return Err(err),
            }
            interval = (interval * 2).min(MAX_POLL_INTERVAL);
        }
    }

    async fn wait_operation(
        &self,
        id: &ResourceId,
        name: &str,
        wait: Duration,
        deadline: Duration,
    ) -> Result<Operation> {
        let body = json!({ "timeout": proto_duration(wait) });
        self.execute(Call {
            method: ApiMethod::WaitOperation,
            verb: reqwest::Method::POST,
            url: format!("{}/v2/{name}:wait", self.inner.config.cloud_run_base_url),
            query: Vec::new(),
            body: Some(&body),
            budget: Some(Budget::Read),
            prepaid: None,
            project: &id.project,
            location: &id.location,
            resource: name.to_owned(),
            timeout: self.inner.config.request_timeout + wait,
            deadline: Some(deadline),
        })
        .await
    }

    async fn get_operation(
        &self,
        id: &ResourceId,
        name: &str,
        deadline: Duration,
    ) -> Result<Operation> {
        self.execute(Call {
            method: ApiMethod::GetOperation,
            verb: reqwest::Method::GET,
            url: format!("{}/v2/{name}", self.inner.config.cloud_run_base_url),
            query: Vec::new(),
            body: None,
            budget: Some(Budget::Read),
            prepaid: None,
            project: &id.project,
            location: &id.location,
            resource: name.to_owned(),
            timeout: self.inner.config.request_timeout,
            deadline: Some(deadline),
        })
        .await
    }

    /// Performs `call` with throttling, retries (see [`super::retry`]), a tracing span and
    /// the observer's hooks.
    async fn execute<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        let span = info_span!(
            "cloudrun_call",
            method = call.method.as_str(),
            project = call.project,
            location = call.location,
            resource = %call.resource,
            status = field::Empty,
            attempts = field::Empty,
        );
        let observer = &self.inner.observer;
        async {
            let mut policy = self.inner.config.retry;
            if let Some(deadline) = call.deadline {
                policy.deadline = policy.deadline.min(deadline);
            }
            let mut retrier = policy.start();
            let mut prepaid = call.prepaid;
            loop {
                let ticket = match (call.budget, prepaid.take()) {
                    (Some(_), Some(ticket)) => Some(ticket),
                    (Some(budget), None) => {
                        Some(self.take_budget(budget, call.project, call.location).await)
                    }
                    (None, _) => None,
                };
                let started = Instant::now();
                let result = self.send::<T>(&call).await;
                let status = CallStatus::of(&result);
                observer.call(call.method, status, started.elapsed());
                let span = tracing::Span::current();
                span.record("status", status.as_str());
                span.record("attempts", retrier.attempts());
                let err = match result {
                    Ok(value) => {
                        if let Some(ticket) = ticket {
                            let change =
                                self.inner
                                    .limits
                                    .succeeded(ticket, call.project, call.location);
                            self.report_rate(change, call.project, call.location);
                        }
                        return Ok(value);
                    }
                    Err(err) => err,
                };
                if let Some(signal) = QuotaSignal::of(&err, call.budget) {
                    let change =
                        self.inner
                            .limits
                            .exceeded(signal, ticket, call.project, call.location);
                    if let Some(RateChange { budget, per_minute }) = change {
                        warn!(
                            direction = budget.as_str(),
                            per_minute,
                            "Cloud Run quota exceeded; lowering this project and region's rate"
                        );
                    }
                    self.report_rate(change, call.project, call.location);
                }
                match retrier.next_delay(&err) {
                    Some(delay) => {
                        observer.retry(call.method, err.reason(), delay);
                        warn!(
                            attempt = retrier.attempts() - 1,
                            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            error = %err,
                            "Cloud Run call failed; retrying"
                        );
                        tokio::time::sleep(delay).await;
                    }
                    None => {
                        debug!(error = %err, "Cloud Run call failed");
                        return Err(err);
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// One HTTP attempt.
    async fn send<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T> {
        let authorization = self.inner.auth.header().await?;
        let mut request = self
            .inner
            .http
            .request(call.verb.clone(), &call.url)
            .header(AUTHORIZATION, authorization)
            .timeout(call.timeout);
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = call.body {
            request = request.json(body);
        }
        let failed = |err: reqwest::Error| {
            if err.is_timeout() {
                Error::Timeout {
                    target: call.target(),
                    after: call.timeout,
                }
            } else {
                Error::transport(call.target(), &err)
            }
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limits = &self.inner.config;
        let too_large = |what: String| Error::Decode {
            target: call.target(),
            detail: what,
        };
        // Read at most `max_response_bytes`: a successful answer beyond is refused, an
        // error answer is classified from the part read (its status decides anyway).
        let max = limits.max_response_bytes;
        let mut bytes = Vec::new();
        let mut truncated = response
            .content_length()
            .is_some_and(|len| len > max as u64);
        while !truncated {
            let Some(chunk) = response.chunk().await.map_err(failed)? else {
                break;
            };
            if bytes.len() + chunk.len() > max {
                let room = max - bytes.len();
                bytes.extend_from_slice(&chunk[..room]);
                truncated = true;
            } else {
                bytes.extend_from_slice(&chunk);
            }
        }
        if status.is_success() {
            if truncated {
                return Err(too_large(format!(
                    "the answer is larger than {max} bytes; refusing it"
                )));
            }
            if !json_values_at_most(&bytes, limits.max_response_values) {
                return Err(too_large(format!(
                    "the answer holds more than {} JSON values; refusing it",
                    limits.max_response_values
                )));
            }
            serde_json::from_slice(&bytes).map_err(|err| Error::Decode {
                target: call.target(),
                detail: clip(&err.to_string(), MAX_DETAIL),
            })
        } else {
            // An envelope too big to decode safely is read as text: its start and the
            // HTTP status classify it.
            let body: &[u8] = if truncated && bytes.is_empty() {
                b"(the error body is larger than the client reads)"
            } else if truncated || !json_values_at_most(&bytes, limits.max_response_values) {
                &bytes[..bytes.len().min(1024)]
            } else {
                &bytes
            };
            Err(Error::from_api(ApiError::from_http(
                call.target(),
                status.as_u16(),
                retry_after.as_deref(),
                body,
            )))
        }
    }
}

/// The page tokens one list has followed.
struct PageTokens {
    /// Hashes of the tokens returned so far (a hostile token can be large).
    seen: HashSet<u64>,
    pages: u32,
    max_pages: u32,
}

impl PageTokens {
    fn new(max_pages: u32) -> Self {
        Self {
            seen: HashSet::new(),
            pages: 0,
            max_pages,
        }
    }

    /// After a page answered `next`: the token of the page to read next, `None` at the end,
    /// or why the list cannot go on — the server returned a token it had returned before
    /// (the list would loop forever) or more pages than any Cloud Run list has.
    fn follow(&mut self, next: Option<String>) -> std::result::Result<Option<String>, String> {
        self.pages += 1;
        let Some(next) = next.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        next.hash(&mut hasher);
        if !self.seen.insert(hasher.finish()) {
            return Err(
                "the server returned the same page token twice (the list would loop forever)"
                    .into(),
            );
        }
        if self.pages >= self.max_pages {
            return Err(format!(
                "the list goes on beyond {} pages; refusing to follow more",
                self.max_pages
            ));
        }
        Ok(Some(next))
    }
}

/// A `google.protobuf.Duration` JSON value: `10s`, `2.500000000s`.
fn proto_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
    }
}

/// Refuses a project, location or resource id that cannot be a path segment of a Google
/// resource name (project ids may be domain-scoped: `example.com:proj`).
fn check_segments(target: impl Fn() -> String, segments: &[(&str, &str)]) -> Result<()> {
    for (what, value) in segments {
        let valid = !value.bytes().all(|b| b == b'.')
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !valid {
            return Err(Error::from_api(ApiError::local(
                target(),
                Code::InvalidArgument,
                format!("{what} {value:?} is not a valid Google resource id"),
            )));
        }
    }
    Ok(())
}

fn check_id(method: ApiMethod, id: &ResourceId) -> Result<()> {
    check_segments(
        || format!("{method} {}", id.resource_name()),
        &[
            ("project", &id.project),
            ("location", &id.location),
            ("resource", &id.name),
        ],
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_would_break_the_url_are_refused() {
        let target = || "GetService x".to_owned();
        assert!(check_segments(target, &[("project", "example.com:acme-prod")]).is_ok());
        assert!(check_segments(target, &[("project", "123456789")]).is_ok());
        for bad in ["", ".", "..", "a/b", "a?b", "a b", "..%2f"] {
            let err = check_segments(target, &[("resource", bad)]).unwrap_err();
            assert_eq!(err.reason(), "InvalidArgument", "{bad:?}");
            assert!(err
                .to_string()
                .contains("is not a valid Google resource id"));
        }
    }

    #[test]
    fn wait_timeouts_are_protobuf_durations() {
        assert_eq!(proto_duration(Duration::from_secs(10)), "10s");
        assert_eq!(proto_duration(Duration::from_millis(2500)), "2.500000000s");
    }

    #[test]
    fn the_user_agent_names_the_operator_and_its_version() {
        assert_eq!(
            USER_AGENT,
            format!("binauthz-operator/{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
