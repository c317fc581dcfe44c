//! What starts passes besides the controller's own schedule: the bindings watch (readiness,
//! re-checks of overlapping bindings, cleanup of deleted ones), the reconcile-now
//! annotation, and drift events' re-checks.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{predicates, watcher};
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::Context;
use crate::api::{BinAuthzBinding, BinAuthzBindingSpec, RECONCILE_REQUESTED_AT};
use crate::drift::Environment;
use crate::fleet::{inventory::SharedInventory, key_of};
use crate::plan::{affected_bindings, BindingInput, BindingKey};
use crate::telemetry::Metrics;

/// Longest retry delay of the bindings watch.
pub(super) const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How the bindings watch retries after an error: kube's exponential backoff, from 0.25 s
/// doubling to 2.5 s, each delay plus up to as much again at random — 0.25–0.5 s at first,
/// never above [`WATCH_BACKOFF_MAX`]. While the API server is away the watch reports an
/// error at least that often, so once it reports none for
/// [`crate::telemetry::WATCH_ERROR_GRACE`] it has reconnected (a resumed watch is silent
/// until something changes) and `/readyz` recovers within seconds of the API server's
/// return.
pub(crate) fn watch_backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(WATCH_BACKOFF_MAX / 20)
        .with_max_delay(WATCH_BACKOFF_MAX / 2)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// The annotation `kubectl apply` (client-side) keeps the whole applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the controller never reads from an object before the watch cache keeps it:
/// `managedFields` (with status written by server-side apply, an entry per status target:
/// 12.6 MiB of 1,000 bindings' cache in BENCHMARKS.md's scale run) and `kubectl apply`'s
/// copy of the applied object. Every write is a server-side apply of fields of its own, so
/// nothing written back ever carries the cached metadata.
pub(crate) fn trim_for_cache<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Watches binding events beside the reflector: readiness, re-checks of overlapping
/// bindings, and cleanup of deleted ones.
pub(super) struct Tap {
    ctx: Arc<Context>,
    triggers: mpsc::UnboundedSender<ObjectRef<BinAuthzBinding>>,
    /// The generation and spec last seen per binding.
    seen: HashMap<BindingKey, (Option<i64>, BinAuthzBindingSpec)>,
}

impl Tap {
    /// A tap that queues re-checks on `triggers`.
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
        event: &Result<watcher::Event<BinAuthzBinding>, watcher::Error>,
    ) {
        let health = &self.ctx.telemetry.health;
        let event = match event {
            Ok(event) => {
                health.watch_recovered();
                event
            }
            Err(err) => {
                warn!(error = %err, "watching bindings failed; retrying with backoff");
                health.watch_failed();
                return;
            }
        };
        match event {
            watcher::Event::Init => {}
            watcher::Event::InitApply(binding) => {
                self.seen.insert(
                    key_of(binding),
                    (binding.meta().generation, binding.spec.clone()),
                );
            }
            watcher::Event::InitDone => health.set_synced(),
            watcher::Event::Apply(binding) => {
                let key = key_of(binding);
                let now = (binding.meta().generation, binding.spec.clone());
                let old = self.seen.insert(key.clone(), now);
                let changed = old
                    .as_ref()
                    .is_none_or(|(g, _)| *g != binding.meta().generation);
                if changed {
                    self.recheck(
                        &key,
                        old.as_ref().map(|(_, spec)| spec),
                        Some(&binding.spec),
                    );
                }
            }
            watcher::Event::Delete(binding) => {
                let key = key_of(binding);
                let old = self.seen.remove(&key);
                self.recheck(&key, old.as_ref().map(|(_, spec)| spec), None);
                self.ctx.forget(&key);
                if let (Some(namespace), Some(uid)) = (
                    binding.metadata.namespace.clone(),
                    binding.metadata.uid.clone(),
                ) {
                    let ctx = Arc::clone(&self.ctx);
                    tokio::spawn(async move { ctx.forget_reports(&namespace, &uid).await });
                }
                let project = &binding.spec.project;
                if !self.seen.values().any(|(_, spec)| &spec.project == project) {
                    // No binding names the project any more: its coverage is nobody's.
                    self.ctx.telemetry.metrics.forget_project(project);
                }
            }
        }
    }

    /// Triggers a pass of every binding sharing resources with `changed`'s old or new
    /// spec, judged on the last resources listed for their projects.
    fn recheck(
        &self,
        changed: &BindingKey,
        old: Option<&BinAuthzBindingSpec>,
        new: Option<&BinAuthzBindingSpec>,
    ) {
        let projects: BTreeSet<&str> = old
            .into_iter()
            .chain(new)
            .map(|s| s.project.as_str())
            .collect();
        let resources: Vec<_> = projects
            .iter()
            .flat_map(|p| self.ctx.inventory.last_known(p))
            .collect();
        if resources.is_empty() {
            return;
        }
        let all = self.ctx.bindings.state();
        let tenancy = self.ctx.tenancy();
        let inputs: Vec<BindingInput<'_>> = all
            .iter()
            .filter(|b| projects.contains(b.spec.project.as_str()))
            .map(|b| crate::fleet::input(b, &tenancy))
            .collect();
        let affected =
            affected_bindings(changed, old, &inputs, resources.iter().map(|r| &r.observed));
        if !affected.is_empty() {
            // One line per change, not per pair: a flood of N overlapping bindings would
            // otherwise log N² lines.
            info!(changed = %changed, rechecks = affected.len(), "a binding changed; re-checking the bindings it shares resources with");
        }
        for other in affected {
            debug!(changed = %changed, recheck = %other, "re-checking an overlapping binding");
            let _ = self
                .triggers
                .unbounded_send(ObjectRef::new(&other.name).within(&other.namespace));
        }
    }
}

/// What starts a pass on a watch event: a new generation (spec change) or a new value of
/// the reconcile-now annotation. Status writes change neither.
pub(super) fn pass_trigger(binding: &BinAuthzBinding) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    predicates::generation(binding).hash(&mut hasher);
    binding
        .annotations()
        .get(RECONCILE_REQUESTED_AT)
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// The drift handler's view of the controller: the passes' inventory, watch cache, lease
/// and metrics; a re-check queues passes of the bindings that cover the resource.
pub(super) struct DriftEnv {
    pub(super) ctx: Arc<Context>,
    pub(super) triggers: mpsc::UnboundedSender<ObjectRef<BinAuthzBinding>>,
}

impl Environment for DriftEnv {
    fn inventory(&self) -> &SharedInventory {
        &self.ctx.inventory
    }

    fn bindings(&self) -> Vec<Arc<BinAuthzBinding>> {
        self.ctx.bindings.state()
    }

    fn tenancy(&self) -> crate::fleet::Tenancy {
        self.ctx.tenancy()
    }

    fn is_active(&self) -> bool {
        self.ctx.gates.may_write_any()
    }

    fn may_write(&self, project: &str) -> bool {
        self.ctx.gates.may_write(project)
    }

    fn metrics(&self) -> &Metrics {
        &self.ctx.telemetry.metrics
    }

    fn changed_by(&self, id: &crate::resource::ResourceId, principal: &str) {
        self.ctx.changed_by(id, principal);
    }

    fn exceptions(&self) -> crate::plan::Exceptions {
        super::exceptions::assess(&self.ctx, jiff::Timestamp::now())
    }

    fn rechecked(&self, bindings: &[BindingKey]) {
        for key in bindings {
            self.ctx.request_refresh(key);
            let _ = self
                .triggers
                .unbounded_send(ObjectRef::new(&key.name).within(&key.namespace));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;
    use serde_json::json;

    #[test]
    fn the_watch_cache_keeps_no_managed_fields_nor_kubectl_copy_but_every_other_annotation() {
        let mut binding: BinAuthzBinding = serde_json::from_value(json!({
            "apiVersion": "binauthz.dev/v1alpha1",
            "kind": "BinAuthzBinding",
            "metadata": {
                "name": "prod",
                "namespace": "platform",
                "generation": 3,
                "annotations": {
                    LAST_APPLIED: "{\"spec\":{\"project\":\"acme-prod\"}}",
                    RECONCILE_REQUESTED_AT: "2026-12-03T05:00:00Z",
                },
                "managedFields": [{
                    "manager": "binauthz-operator",
                    "operation": "Apply",
                    "subresource": "status",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:targets": {}}},
                }],
            },
            "spec": {
                "project": "acme-prod",
                "locations": ["us-central1"],
                "targets": {"services": {}},
                "policy": {"useDefault": true},
            },
            "status": {"observedGeneration": 3},
        }))
        .expect("a valid binding");
        let spec = binding.spec.clone();
        let status = binding.status.clone();

        trim_for_cache(&mut binding);

        assert!(binding.meta().managed_fields.is_none());
        assert_eq!(
            binding.annotations().keys().collect::<Vec<_>>(),
            [RECONCILE_REQUESTED_AT],
            "only kubectl's copy of the object goes"
        );
        assert_eq!(binding.meta().generation, Some(3));
        assert_eq!(binding.spec, spec);
        assert_eq!(binding.status, status);
    }
}
