//! `BinAuthzException`s in the controller: their watch (a cache the passes plan with, and
//! re-checks of the bindings an exception change concerns), their status and events, and
//! the moment each one expires.
//!
//! # Expected flow
//! 1. The watch caches every exception; a new generation or a deletion queues a pass of
//!    every binding of the exception's namespace and project.
//! 2. A binding's pass plans with the exceptions as they stand at that moment
//!    ([`crate::plan::Exceptions`]) and is requeued for the earliest expiry among the
//!    active exceptions of its namespace and project, so the pass that enforces starts
//!    at the expiry, not at the next tick.
//! 3. Each exception's own reconcile writes its status (Active, Expired, Refused and why)
//!    and an event when that changes, and comes back at its expiry to say Expired.
//!
//! # Guarantees
//! - An exception that is invalid, longer than `--exception-max-duration` or expired is
//!   never honoured, and its status and a Warning (or, for an expiry, Normal) event say so.
//! - Only the lease holder writes statuses and events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{store::Writer, ObjectRef};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::triggers::{trim_for_cache, watch_backoff};
use super::Context;
use crate::api::{
    BinAuthzBinding, BinAuthzException, BinAuthzExceptionStatus, ExceptionState, API_VERSION,
    EXCEPTION_KIND,
};
use crate::plan::{exception_standing, ExceptionInput, ExceptionKey, Exceptions, Standing};

/// The status field manager of exceptions.
const FIELD_MANAGER: &str = "binauthz-operator";

/// A pass that starts this close before an exception of its binding expires waits for the
/// expiry (the controller's debounce delays every requeue by a second, so the pass for an
/// expiry is requeued that much earlier and may start a little before it).
pub(crate) const EXPIRY_WAIT: Duration = Duration::from_secs(2);

/// `namespace/name` of an exception.
pub(crate) fn exception_key(exception: &BinAuthzException) -> ExceptionKey {
    ExceptionKey {
        namespace: exception.namespace().unwrap_or_default(),
        name: exception.name_any(),
    }
}

/// Every cached exception assessed at `now`.
pub(crate) fn assess(ctx: &Context, now: Timestamp) -> Exceptions {
    let all = ctx.exceptions.state();
    let inputs: Vec<ExceptionInput<'_>> = all
        .iter()
        .map(|e| ExceptionInput {
            key: exception_key(e),
            spec: &e.spec,
            created: e.metadata.creation_timestamp.as_ref().map(|t| t.0),
        })
        .collect();
    Exceptions::assess(&inputs, now, ctx.exception_max)
}

/// How long until the next pass of a binding in `namespace` for `project` must start for
/// an expiry (requeued [`super::DEBOUNCE`] early: the controller adds it back).
pub(crate) fn until_next_expiry(
    exceptions: &Exceptions,
    namespace: &str,
    project: &str,
    now: Timestamp,
) -> Option<Duration> {
    let at = exceptions.next_expiry(namespace, project)?;
    let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(wait.saturating_sub(super::DEBOUNCE))
}

/// Waits for an expiry among the exceptions of `namespace`/`project` due within
/// [`EXPIRY_WAIT`], so the pass plans after it.
pub(crate) async fn wait_for_imminent_expiry(ctx: &Context, namespace: &str, project: &str) {
    let now = Timestamp::now();
    let Some(at) = assess(ctx, now).next_expiry(namespace, project) else {
        return;
    };
    let Ok(wait) = Duration::try_from(at.duration_since(now)) else {
        return;
    };
    if wait <= EXPIRY_WAIT {
        debug!(
            wait_ms = wait.as_millis() as u64,
            "an exception expires in a moment; planning after it"
        );
        // A millisecond past the expiry: `now >= expiresAt` then holds for certain.
        tokio::time::sleep(wait + Duration::from_millis(1)).await;
    }
}

/// Watches exception events beside the reflector: queues a pass of every binding of the
/// namespace and project an exception names when it appears, changes or goes.
pub(super) struct ExceptionTap {
    ctx: Arc<Context>,
    triggers: mpsc::UnboundedSender<ObjectRef<BinAuthzBinding>>,
    /// The generation last seen per exception.
    seen: HashMap<ExceptionKey, Option<i64>>,
}

impl ExceptionTap {
    pub(super) fn new(
        ctx: &Arc<Context>,
        triggers: mpsc::UnboundedSender<ObjectRef<BinAuthzBinding>>,
    ) -> Self {
        Self {
            ctx: Arc::clone(ctx),
            triggers,
            seen: HashMap::new(),
        }
    }

    pub(super) fn observe(
        &mut self,
        event: &Result<watcher::Event<BinAuthzException>, watcher::Error>,
    ) {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                warn!(error = %err, "watching exceptions failed; retrying with backoff");
                return;
            }
        };
        match event {
            watcher::Event::Init | watcher::Event::InitDone => {}
            watcher::Event::InitApply(exception) => {
                self.seen
                    .insert(exception_key(exception), exception.meta().generation);
            }
            watcher::Event::Apply(exception) => {
                let key = exception_key(exception);
                let old = self.seen.insert(key, exception.meta().generation);
                if old != Some(exception.meta().generation) {
                    self.recheck(exception);
                }
            }
            watcher::Event::Delete(exception) => {
                self.seen.remove(&exception_key(exception));
                self.recheck(exception);
            }
        }
    }

    /// Queues a pass of every binding of the exception's namespace and project.
    fn recheck(&self, exception: &BinAuthzException) {
        let namespace = exception.namespace().unwrap_or_default();
        let mut queued = 0usize;
        for binding in self.ctx.bindings.state() {
            if binding.namespace().as_deref() == Some(namespace.as_str())
                && binding.spec.project == exception.spec.project
            {
                queued += 1;
                let _ = self
                    .triggers
                    .unbounded_send(ObjectRef::from_obj(binding.as_ref()));
            }
        }
        if queued > 0 {
            info!(exception = %exception_key(exception), rechecks = queued, "an exception changed; re-checking the bindings of its namespace and project");
        }
    }
}

/// The exceptions watch (in `namespace`, or every namespace) feeding the reflector and the
/// tap; yields the exceptions whose generation changed.
pub(super) fn watch_exceptions(
    kube: &Client,
    namespace: Option<&str>,
    writer: Writer<BinAuthzException>,
    mut tap: ExceptionTap,
) -> impl Stream<Item = Result<BinAuthzException, watcher::Error>> + Send + 'static {
    let api: Api<BinAuthzException> = match namespace {
        Some(ns) => Api::namespaced(kube.clone(), ns),
        None => Api::all(kube.clone()),
    };
    watcher(api, watcher::Config::default())
        .backoff(watch_backoff())
        .modify(trim_for_cache)
        .reflect(writer)
        .inspect(move |event| tap.observe(event))
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default())
}

/// Why an exception's status or event could not be written.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write the status of exception {exception}: {}",
    crate::error_line::kube_error_line(error)
)]
pub struct ExceptionStatusError {
    /// The exception.
    exception: ExceptionKey,
    /// The API server's answer.
    error: Box<kube::Error>,
}

/// Writes an exception's status (and an event when its state changes); comes back at its
/// expiry.
///
/// # Errors
/// [`ExceptionStatusError`] when the status cannot be written (retried with backoff).
pub(super) async fn reconcile_exception(
    exception: Arc<BinAuthzException>,
    ctx: Arc<Context>,
) -> Result<Action, ExceptionStatusError> {
    let key = exception_key(&exception);
    let now = Timestamp::now();
    let created = exception.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let standing = exception_standing(&exception.spec, created, now, ctx.exception_max);
    let requeue = match &standing {
        Standing::Active { until } => {
            Action::requeue(Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO))
        }
        _ => Action::await_change(),
    };
    if !ctx.gates.may_write_cluster() {
        return Ok(requeue);
    }
    let status = BinAuthzExceptionStatus {
        observed_generation: exception.meta().generation,
        state: Some(standing.state()),
        message: standing.message(),
    };
    let previous = exception.status.as_ref();
    if previous == Some(&status) {
        return Ok(requeue);
    }
    let api: Api<BinAuthzException> = Api::namespaced(ctx.kube.clone(), &key.namespace);
    let body = json!({"apiVersion": API_VERSION, "kind": EXCEPTION_KIND, "status": status});
    api.patch_status(
        &exception.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(|error| ExceptionStatusError {
        exception: key.clone(),
        error: Box::new(error),
    })?;
    ctx.telemetry.metrics.status_written();
    if previous.and_then(|p| p.state) != status.state {
        info!(exception = %key, state = %standing.state(), "{}", status.message);
        publish(&exception, &ctx, &standing).await;
    }
    Ok(requeue)
}

/// After a failed status write: retry soon.
pub(super) fn exception_error_policy(
    _exception: Arc<BinAuthzException>,
    err: &ExceptionStatusError,
    _ctx: Arc<Context>,
) -> Action {
    warn!(error = %err, "exception status not written; retrying");
    Action::requeue(super::BACKOFF_BASE)
}

/// The event of an exception's new state.
async fn publish(exception: &BinAuthzException, ctx: &Context, standing: &Standing) {
    let (type_, reason) = match standing.state() {
        ExceptionState::Active => (EventType::Normal, "ExceptionActive"),
        ExceptionState::Expired => (EventType::Normal, "ExceptionExpired"),
        ExceptionState::Refused => (EventType::Warning, "ExceptionRefused"),
    };
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(crate::cloudrun::error::clip(&standing.message(), 1000)),
        action: "Check".to_owned(),
        secondary: None,
    };
    let recorder = Recorder::new(ctx.kube.clone(), ctx.reporter.clone());
    let result = recorder.publish(&event, &exception.object_ref(&())).await;
    ctx.telemetry.metrics.event(result.is_ok());
    if let Err(err) = result {
        warn!(reason, error = %err, "could not publish an event");
    }
}
