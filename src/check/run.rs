//! One `check` run: passes that read Cloud Run through the shared inventory and plan every binding, and the fixes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::cloudrun::LiveResource;
use crate::fleet::effect::read_revisions;
use crate::fleet::inventory::SharedInventory;
use crate::fleet::read::{read_binding, BindingRead};
use crate::fleet::remediate::{remediate_all, WriteRequest, Written};
use crate::manifests::{LoadedBinding, LoadedException};
use crate::plan::{
    self, BindingInput, BindingKey, ExceptionInput, ExceptionKey, Exceptions, PassFailure,
    RevisionTimes,
};
use crate::policy::DesiredPolicy;
use crate::resource::{ObservedResource, Remediation, ResourceId};

use super::report::Change;

/// Shared state of one `check` run.
pub(super) struct Checker {
    /// Every read goes through it, as in the controller: bindings that need the same list
    /// share it.
    pub(super) inventory: SharedInventory,
    pub(super) bindings: Vec<LoadedBinding>,
    /// The exceptions of the files, honoured like the controller honours them.
    pub(super) exceptions: Vec<LoadedException>,
    /// `--exception-max-duration`.
    pub(super) exception_max: std::time::Duration,
    /// The grants read with the bindings (none: tenancy is off).
    pub(super) tenancy: crate::fleet::Tenancy,
    pub(super) interactive: bool,
}

/// What one read-and-plan pass saw.
pub(super) struct Pass {
    /// Every resource listed, by id.
    pub(super) live: BTreeMap<ResourceId, Arc<LiveResource>>,
    /// What each active binding's reads produced.
    pub(super) reads: BTreeMap<BindingKey, BindingRead>,
    /// Creation times of the revisions receiving traffic of complying targets.
    pub(super) revisions: RevisionTimes,
}

impl Pass {
    pub(super) fn failure(&self, key: &BindingKey) -> Option<&PassFailure> {
        self.reads.get(key).and_then(|r| r.failure.as_ref())
    }
}

impl Checker {
    pub(super) fn key(binding: &LoadedBinding) -> BindingKey {
        BindingKey::new(
            binding
                .binding
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            binding.binding.metadata.name.clone().unwrap_or_default(),
        )
    }

    /// Reads everything the bindings need from Cloud Run, on lists started now, through
    /// the same reader as the controller's passes ([`read_binding`]).
    pub(super) async fn pass(&self) -> Pass {
        let not_before = Instant::now();
        let reads: Vec<(BindingKey, BindingRead)> =
            futures::future::join_all(self.active().map(|b| async move {
                let read = read_binding(&self.inventory, &b.binding.spec, not_before).await;
                (Self::key(b), read)
            }))
            .await;
        let mut live = BTreeMap::new();
        for (_, read) in &reads {
            for list in &read.lists {
                for r in list.iter() {
                    live.insert(r.observed.id.clone(), Arc::clone(r));
                }
            }
        }
        // Whether each complying target's policy is in effect: its serving revisions'
        // creation times, read as the controller reads them.
        let inputs = self.inputs();
        let revisions = match plan::plan(&inputs, live.values().map(|l| &l.observed)) {
            Ok(planned) => {
                read_revisions(
                    self.inventory.client(),
                    inputs.iter().filter_map(|i| planned.binding(&i.key)),
                )
                .await
            }
            Err(_) => RevisionTimes::default(),
        };
        Pass {
            live,
            reads: reads.into_iter().collect(),
            revisions,
        }
    }

    /// The bindings that read Cloud Run: not suspended, and permitted by the grants.
    pub(super) fn active(&self) -> impl Iterator<Item = &LoadedBinding> {
        self.bindings.iter().filter(|b| {
            !b.binding.spec.suspend
                && self
                    .tenancy
                    .permission(&Self::key(b).namespace, &b.binding.spec)
                    .is_permitted()
        })
    }

    /// Every binding, as the planner takes them, with what the grants say of it.
    pub(super) fn inputs(&self) -> Vec<BindingInput<'_>> {
        self.bindings
            .iter()
            .map(|b| {
                let key = Self::key(b);
                let permission = self.tenancy.permission(&key.namespace, &b.binding.spec);
                BindingInput {
                    key,
                    spec: &b.binding.spec,
                    permission,
                }
            })
            .collect()
    }

    /// The exceptions of the files, assessed at `now` (an exception without
    /// creationTimestamp is measured from `now`).
    pub(super) fn exceptions(&self, now: jiff::Timestamp) -> Exceptions {
        let inputs: Vec<ExceptionInput<'_>> = self
            .exceptions
            .iter()
            .map(|e| ExceptionInput {
                key: ExceptionKey {
                    namespace: e
                        .exception
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    name: e.exception.metadata.name.clone().unwrap_or_default(),
                },
                spec: &e.exception.spec,
                created: e
                    .exception
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0),
            })
            .collect();
        Exceptions::assess(&inputs, now, self.exception_max)
    }

    /// Applies every remediation of the pass owned by an Enforce binding whose reads allow
    /// writing, through the controller's writer; returns what was done, in resource order.
    pub(super) async fn fix(&self, pass: &Pass) -> Vec<Change> {
        let inputs = self.inputs();
        let exceptions = self.exceptions(jiff::Timestamp::now());
        let Ok(plan) = plan::plan_with_exceptions(
            &inputs,
            &exceptions,
            pass.live.values().map(|l| &l.observed),
        ) else {
            return Vec::new();
        };
        let requests: Vec<WriteRequest<'_>> = plan
            .writes()
            .into_iter()
            .filter(|w| {
                w.bindings
                    .iter()
                    .any(|b| pass.reads.get(b).is_some_and(BindingRead::may_write))
            })
            .filter_map(|w| {
                let listed = pass.live.get(&w.resource.id)?;
                Some(WriteRequest {
                    resource: w.resource,
                    remediation: w.remediation,
                    listed: Some(listed.as_ref()),
                })
            })
            .collect();
        if requests.is_empty() {
            return Vec::new();
        }
        let wanted: BTreeMap<ResourceId, (Arc<LiveResource>, DesiredPolicy)> = requests
            .iter()
            .filter_map(|r| {
                let live = pass.live.get(&r.resource.id)?;
                Some((
                    r.resource.id.clone(),
                    (Arc::clone(live), r.remediation.desired.clone()),
                ))
            })
            .collect();
        let progress = self.interactive.then(|| Progress::new(requests.len()));
        // The bindings of a check never change while it runs: every planned write stays
        // wanted (the controller re-plans here, because its bindings can change).
        let still_wanted = |_: &ObservedResource, _: &Remediation| true;
        let may_write = || true;
        let done = |id: &ResourceId, _: &Written| {
            if let Some(p) = &progress {
                p.tick(id);
            }
        };
        let written =
            remediate_all(&self.inventory, requests, &still_wanted, &may_write, &done).await;
        if let Some(p) = progress {
            p.finish();
        }
        let mut changes: Vec<Change> = written
            .into_iter()
            .filter_map(|(id, w)| {
                let (live, desired) = wanted.get(&id)?;
                Some(Change::new(live, desired, w?))
            })
            .collect();
        changes.sort_by(|a, b| a.id.cmp(&b.id));
        changes
    }
}

/// A progress line on stderr for long fixes (terminals only).
pub(super) struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    pub(super) fn new(total: usize) -> Self {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("fixing {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self { bar }
    }

    pub(super) fn tick(&self, id: &ResourceId) {
        self.bar.set_message(format!("{} {}", id.kind, id.name));
        self.bar.inc(1);
    }

    pub(super) fn finish(self) {
        self.bar.finish_and_clear();
    }
}
