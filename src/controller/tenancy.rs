//! Tenancy in the controller: watches of the `BinAuthzTenancy` grants and of namespace
//! labels feeding every pass's [`fleet::Tenancy`], re-checks of the bindings a grant or
//! label change permits or refuses, and the grants' index the admission policy reads.
//!
//! # Guarantees
//! - No pass runs before both watches have synced ([`TenancyWatch::ready`]): a pass never
//!   mistakes "not read yet" for "no grant".
//! - When a grant or a namespace's labels change, every binding whose permission changed
//!   gets a pass at once, and so do the bindings sharing resources with it (a binding
//!   refused now releases its resources to the next owner in that pass).
//! - Only the leader writes the index; it writes only when the grants changed (a failed
//!   write is retried every minute).
//!
//! # Caveats
//! - Without the `BinAuthzTenancy` CRD (an install older than tenancy) the controller runs
//!   with tenancy off and says so once. With the CRD but without the permission to list
//!   grants or namespaces it stops at start-up, saying which RBAC to apply.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info, warn};

use super::triggers::watch_backoff;
use super::{kube_error_line, Context, Error, CONTROLLER_NAME, GROUP_VERSION};
use crate::api::{
    BinAuthzBinding, BinAuthzTenancy, BinAuthzTenancyIndex, BinAuthzTenancyIndexSpec,
    TENANCY_INDEX_NAME,
};
use crate::fleet::{self, key_of, Tenancy};
use crate::plan::{affected_bindings, Grant, Grants, Permission};

/// The plural of grants.
const GRANTS_PLURAL: &str = "binauthztenancies";

/// The watch caches tenancy is decided from.
#[derive(Clone)]
pub(crate) struct TenancyWatch {
    /// The grants (`None`: the CRD is not installed; tenancy is off).
    grants: Option<Store<BinAuthzTenancy>>,
    /// Every namespace's metadata (for label selectors).
    namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
}

impl TenancyWatch {
    /// Tenancy off: no grants read (tests of the controller that predate grants).
    pub(crate) fn off() -> Self {
        Self {
            grants: None,
            namespaces: None,
        }
    }

    /// Whether grants are read (their CRD is installed).
    pub(crate) fn is_on(&self) -> bool {
        self.grants.is_some()
    }

    /// The grants and namespace labels as they are now.
    pub(crate) fn now(&self) -> Tenancy {
        let grants = self
            .grants
            .as_ref()
            .map_or_else(Grants::default, |store| grants_of(&store.state()));
        let namespaces = self.namespaces.clone();
        Tenancy {
            grants,
            labels: Arc::new(move |name: &str| {
                let store = namespaces.as_ref()?;
                let ns = store.get(&ObjectRef::new(name))?;
                Some(ns.labels().clone())
            }),
        }
    }

    /// Resolves once both watches have listed everything once.
    pub(crate) async fn ready(&self) {
        if let Some(grants) = &self.grants {
            let _ = grants.wait_until_ready().await;
        }
        if let Some(namespaces) = &self.namespaces {
            let _ = namespaces.wait_until_ready().await;
        }
    }
}

/// The planner's grants from the watched objects.
pub(crate) fn grants_of(objects: &[Arc<BinAuthzTenancy>]) -> Grants {
    Grants::new(objects.iter().map(|g| Grant {
        name: g.name_any(),
        spec: g.spec.clone(),
    }))
}

/// Whether the API server serves the grants (`BinAuthzTenancy` CRD installed).
pub(super) async fn grants_served(client: &Client) -> Result<bool, Error> {
    match client.list_api_group_resources(GROUP_VERSION).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == GRANTS_PLURAL)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(err) => Err(Error::Discovery(kube_error_line(&err))),
    }
}

/// A change that may move permissions: the grants, or a namespace's labels.
#[derive(Clone, Debug)]
pub(super) enum TenancyChange {
    /// Some grant was created, changed or deleted (or the grants were listed).
    Grants,
    /// A namespace's labels changed; these were its labels before.
    Namespace {
        /// The namespace.
        name: String,
        /// Its labels before the change.
        old_labels: BTreeMap<String, String>,
    },
    /// This replica took over the lease (it writes the index now), or the periodic
    /// retry of an index write that failed.
    Leading,
}

/// How often a failed index write is retried (a write happens only when the index differs
/// from the one last written).
const INDEX_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts the grant and namespace watches (the grants only when their CRD is served);
/// returns the caches and a stream of changes after the first full list.
pub(super) async fn watch_tenancy(
    kube: &Client,
) -> Result<
    (
        TenancyWatch,
        impl Stream<Item = TenancyChange> + Send + 'static,
    ),
    Error,
> {
    let (changes, changed) = mpsc::unbounded();
    if !grants_served(kube).await? {
        warn!("the BinAuthzTenancy CRD is not installed: tenancy is off, every namespace may bind any project; install crds/ to use grants");
        return Ok((TenancyWatch::off(), changed));
    }
    // A pass waits for both watches to sync: without the permission to list, it would wait
    // for ever. Say so at start-up instead.
    let probe = kube::api::ListParams::default().limit(1);
    Api::<BinAuthzTenancy>::all(kube.clone())
        .list(&probe)
        .await
        .map_err(|err| Error::TenancyUnreadable {
            what: "BinAuthzTenancy grants",
            detail: kube_error_line(&err),
        })?;
    Api::<PartialObjectMeta<Namespace>>::all(kube.clone())
        .list_metadata(&probe)
        .await
        .map_err(|err| Error::TenancyUnreadable {
            what: "namespaces",
            detail: kube_error_line(&err),
        })?;
    let (grants, grants_writer) = reflector::store();
    let grant_changes = changes.clone();
    let grants_stream = watcher(
        Api::<BinAuthzTenancy>::all(kube.clone()),
        watcher::Config::default(),
    )
    .backoff(watch_backoff())
    .reflect(grants_writer)
    .for_each(move |event| {
        match &event {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                let _ = grant_changes.unbounded_send(TenancyChange::Grants);
            }
            Ok(_) => {}
            Err(err) => {
                warn!(error = %err, "watching BinAuthzTenancy grants failed; retrying with backoff")
            }
        }
        std::future::ready(())
    });
    tokio::spawn(grants_stream);

    let (namespaces, namespaces_writer) = reflector::store();
    let mut labels_seen: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let namespace_stream = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(kube.clone()),
        watcher::Config::default(),
    )
    .backoff(watch_backoff())
    .reflect(namespaces_writer)
    .for_each(move |event| {
        match &event {
            Ok(watcher::Event::Apply(ns)) => {
                let name = ns.name_any();
                let labels = ns.labels().clone();
                if let Some(old_labels) = labels_seen.insert(name.clone(), labels.clone()) {
                    if old_labels != labels {
                        let _ =
                            changes.unbounded_send(TenancyChange::Namespace { name, old_labels });
                    }
                }
            }
            Ok(watcher::Event::InitApply(ns)) => {
                labels_seen.insert(ns.name_any(), ns.labels().clone());
            }
            Ok(watcher::Event::Delete(ns)) => {
                labels_seen.remove(&ns.name_any());
            }
            Ok(_) => {}
            Err(err) => warn!(error = %err, "watching namespaces failed; retrying with backoff"),
        }
        std::future::ready(())
    });
    tokio::spawn(namespace_stream);

    let watch = TenancyWatch {
        grants: Some(grants),
        namespaces: Some(namespaces),
    };
    Ok((watch, changed))
}

/// Follows tenancy changes: says once whether grants are in force, re-checks the bindings
/// whose permission changed (and those sharing resources with them), and, on the leader,
/// writes the grants' index.
pub(super) async fn follow_tenancy(
    ctx: Arc<Context>,
    changes: impl Stream<Item = TenancyChange> + Send + 'static,
    triggers: mpsc::UnboundedSender<ObjectRef<BinAuthzBinding>>,
) {
    let mut said: Option<bool> = None;
    let mut old_grants = Grants::default();
    let mut written: Option<BinAuthzTenancyIndexSpec> = None;
    let leading = ctx.gates.acquired().map(|()| TenancyChange::Leading);
    let retries = futures::stream::unfold((), |()| async {
        tokio::time::sleep(INDEX_RETRY).await;
        Some((TenancyChange::Leading, ()))
    });
    let mut events = std::pin::pin!(futures::stream::select(
        changes,
        futures::stream::select(leading, retries)
    ));
    while let Some(change) = events.next().await {
        let tenancy = ctx.tenancy();
        let on = !tenancy.grants.is_empty();
        if said != Some(on) {
            if on {
                info!(grants = tenancy.grants.iter().count(), "BinAuthzTenancy grants are in force: a binding acts only where a grant allows it");
            } else {
                info!("no BinAuthzTenancy grant: every namespace may bind any project at any priority (create a grant to restrict this)");
            }
            said = Some(on);
        }
        let all = ctx.bindings.state();
        let moved: Vec<&Arc<BinAuthzBinding>> = match &change {
            TenancyChange::Grants => {
                let before = Tenancy {
                    grants: std::mem::replace(&mut old_grants, tenancy.grants.clone()),
                    labels: Arc::clone(&tenancy.labels),
                };
                all.iter()
                    .filter(|b| {
                        let ns = b.namespace().unwrap_or_default();
                        before.permission(&ns, &b.spec) != tenancy.permission(&ns, &b.spec)
                    })
                    .collect()
            }
            TenancyChange::Namespace { name, old_labels } => all
                .iter()
                .filter(|b| b.namespace().as_deref() == Some(name.as_str()))
                .filter(|b| {
                    let before = if tenancy.grants.is_empty() {
                        Permission::Open
                    } else {
                        tenancy.grants.permission(
                            crate::plan::Namespace {
                                name,
                                labels: old_labels,
                            },
                            &b.spec,
                        )
                    };
                    before != tenancy.permission(name, &b.spec)
                })
                .collect(),
            TenancyChange::Leading => Vec::new(),
        };
        recheck(&ctx, &tenancy, &all, &moved, &triggers);
        if ctx.gates.may_write_cluster() && ctx.tenancy.is_on() {
            let index = BinAuthzTenancyIndexSpec::of(
                tenancy.grants.iter().map(|g| (g.name.as_str(), &g.spec)),
            );
            if written.as_ref() != Some(&index) {
                match write_index(&ctx.kube, &index).await {
                    Ok(()) => written = Some(index),
                    Err(err) => {
                        warn!(error = %kube_error_line(&err), "cannot write the BinAuthzTenancyIndex the admission policy reads; retrying on the next change")
                    }
                }
            }
        } else {
            written = None;
        }
    }
}

/// Queues a pass of every binding in `moved` (its permission changed) and of the bindings
/// sharing resources with it.
fn recheck(
    ctx: &Context,
    tenancy: &Tenancy,
    all: &[Arc<BinAuthzBinding>],
    moved: &[&Arc<BinAuthzBinding>],
    triggers: &mpsc::UnboundedSender<ObjectRef<BinAuthzBinding>>,
) {
    if moved.is_empty() {
        return;
    }
    info!(bindings = moved.len(), "tenancy changed what some bindings may do; re-checking them and the bindings they share resources with");
    for binding in moved {
        let key = key_of(binding);
        let _ = triggers.unbounded_send(ObjectRef::new(&key.name).within(&key.namespace));
        let resources = ctx.inventory.last_known(&binding.spec.project);
        let inputs = fleet::project_inputs(all, &binding.spec.project, tenancy);
        for other in affected_bindings(&key, None, &inputs, resources.iter().map(|r| &r.observed)) {
            debug!(changed = %key, recheck = %other, "re-checking a binding after a tenancy change");
            let _ = triggers.unbounded_send(ObjectRef::new(&other.name).within(&other.namespace));
        }
    }
}

/// Writes the grants' index with server-side apply (one object, [`TENANCY_INDEX_NAME`]).
async fn write_index(kube: &Client, index: &BinAuthzTenancyIndexSpec) -> Result<(), kube::Error> {
    let api: Api<BinAuthzTenancyIndex> = Api::all(kube.clone());
    let object = BinAuthzTenancyIndex::new(TENANCY_INDEX_NAME, index.clone());
    let mut value = serde_json::to_value(&object).map_err(kube::Error::SerdeError)?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), GROUP_VERSION.into());
        map.insert("kind".into(), "BinAuthzTenancyIndex".into());
    }
    api.patch(
        TENANCY_INDEX_NAME,
        &PatchParams::apply(CONTROLLER_NAME).force(),
        &Patch::Apply(value),
    )
    .await?;
    info!(
        grants = index.grants.len(),
        "wrote the BinAuthzTenancyIndex the admission policy reads"
    );
    Ok(())
}
