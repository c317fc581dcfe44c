//! Writing a binding's PolicyReports (`--policy-reports`; the content is
//! `crate::policyreport`'s). Written only when their content changed: the last content
//! written per binding is remembered (a hash), and after a restart the reports in the
//! cluster are read once and compared. A failure is logged and counted, never fails the
//! pass: the next pass tries again.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::{Api, Client};
use tracing::{debug, info_span, warn, Instrument};

use crate::error_line::kube_error_line;
use crate::policyreport::{
    BindingRef, Page, ReportContent, BINDING_UID_LABEL, GROUP, KIND, MANAGED_BY, PLURAL, VERSION,
};
use crate::telemetry::{Metrics, PolicyReportWrite};

const FIELD_MANAGER: &str = "binauthz-operator";

/// The PolicyReport writer: remembers what it last wrote per binding (by uid).
#[derive(Debug, Default)]
pub struct PolicyReports {
    written: Mutex<HashMap<String, u64>>,
}

fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

fn fingerprint(pages: &[Page]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in pages {
        p.name.hash(&mut h);
        // Serializing plain data cannot fail; an empty string still changes the hash.
        serde_json::to_string(&p.content)
            .unwrap_or_default()
            .hash(&mut h);
    }
    h.finish()
}

impl PolicyReports {
    /// A writer that has written nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the binding's reports in the cluster say `pages`: writes the pages whose
    /// content differs, deletes pages it no longer has. Nothing is sent when `pages` is
    /// what this writer last wrote for the binding.
    pub async fn sync(
        &self,
        client: &Client,
        metrics: &Metrics,
        binding: &BindingRef<'_>,
        pages: &[Page],
    ) {
        let print = fingerprint(pages);
        if self.remembered(binding.uid) == Some(print) {
            return;
        }
        let span = info_span!("policy_reports", binding = %format_args!("{}/{}", binding.namespace, binding.name));
        let ok = self
            .write(client, metrics, binding, pages)
            .instrument(span)
            .await;
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if ok {
            written.insert(binding.uid.to_owned(), print);
        } else {
            written.remove(binding.uid);
        }
    }

    fn remembered(&self, uid: &str) -> Option<u64> {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uid)
            .copied()
    }

    async fn write(
        &self,
        client: &Client,
        metrics: &Metrics,
        binding: &BindingRef<'_>,
        pages: &[Page],
    ) -> bool {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), binding.namespace, &api_resource());
        let existing = match api.list(&by_binding(binding.uid)).await {
            Ok(list) => list.items,
            Err(err) => {
                metrics.policy_report(PolicyReportWrite::Failed);
                warn!(error = %kube_error_line(&err), "cannot list the binding's PolicyReports (is the wgpolicyk8s.io CRD installed?); retrying at the next pass");
                return false;
            }
        };
        let mut ok = true;
        for page in pages {
            let current = existing
                .iter()
                .find(|o| o.metadata.name.as_deref() == Some(page.name.as_str()));
            if current.is_some_and(|o| same_content(o, &page.content)) {
                continue;
            }
            let object = report_object(binding, page);
            let params = PatchParams::apply(FIELD_MANAGER).force();
            match api.patch(&page.name, &params, &Patch::Apply(&object)).await {
                Ok(_) => {
                    metrics.policy_report(PolicyReportWrite::Written);
                    debug!(report = %page.name, results = page.content.results.len(), "wrote a PolicyReport");
                }
                Err(err) => {
                    ok = false;
                    metrics.policy_report(PolicyReportWrite::Failed);
                    warn!(report = %page.name, error = %kube_error_line(&err), "cannot write a PolicyReport; retrying at the next pass");
                }
            }
        }
        for stale in existing.iter().filter_map(|o| o.metadata.name.as_deref()) {
            if pages.iter().any(|p| p.name == stale) {
                continue;
            }
            ok &= delete(&api, metrics, stale).await;
        }
        ok
    }

    /// Deletes a deleted binding's reports (their owner reference has the garbage
    /// collector do the same; this is immediate) and forgets the binding.
    pub async fn forget(&self, client: &Client, metrics: &Metrics, namespace: &str, uid: &str) {
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(uid);
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &api_resource());
        match api.list(&by_binding(uid)).await {
            Ok(list) => {
                for name in list.items.iter().filter_map(|o| o.metadata.name.as_deref()) {
                    delete(&api, metrics, name).await;
                }
            }
            Err(err) => {
                debug!(error = %kube_error_line(&err), "cannot list a deleted binding's PolicyReports; the garbage collector removes them");
            }
        }
    }
}

fn by_binding(uid: &str) -> ListParams {
    ListParams::default().labels(&format!("{BINDING_UID_LABEL}={uid}"))
}

async fn delete(api: &Api<DynamicObject>, metrics: &Metrics, name: &str) -> bool {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            metrics.policy_report(PolicyReportWrite::Deleted);
            true
        }
        Err(kube::Error::Api(status)) if status.code == 404 => true,
        Err(err) => {
            metrics.policy_report(PolicyReportWrite::Failed);
            warn!(report = name, error = %kube_error_line(&err), "cannot delete a PolicyReport");
            false
        }
    }
}

/// Whether the report in the cluster already says `content`.
fn same_content(object: &DynamicObject, content: &ReportContent) -> bool {
    serde_json::from_value::<ReportContent>(object.data.clone()).is_ok_and(|c| &c == content)
}

/// The whole object, for server-side apply.
fn report_object(binding: &BindingRef<'_>, page: &Page) -> serde_json::Value {
    let owner = OwnerReference {
        api_version: "binauthz.dev/v1alpha1".to_owned(),
        kind: "BinAuthzBinding".to_owned(),
        name: binding.name.to_owned(),
        uid: binding.uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    serde_json::json!({
        "apiVersion": crate::policyreport::API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": page.name,
            "namespace": binding.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                BINDING_UID_LABEL: binding.uid,
            },
            "ownerReferences": [owner],
        },
        "scope": page.content.scope,
        "summary": page.content.summary,
        "results": page.content.results,
    })
}
