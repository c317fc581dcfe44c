//! A service, job or worker pool as read, its `binaryAuthorization`, and the body of the one write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Condition, Int64, NameParts};
use crate::policy::{DesiredPolicy, ObservedPolicy};
use crate::resource::{
    BreakglassChange, LastChange, ObservedResource, Remediation, ResourceId, ResourceKind, Running,
    Workload,
};

/// `GoogleCloudRunV2BinaryAuthorization`. `useDefault` and `policy` are a oneof.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BinaryAuthorization {
    /// If present, deploys use breakglass with this justification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakglass_justification: Option<String>,
    /// `true`: the project's default policy; `false`: Binary Authorization disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default: Option<bool>,
    /// A named platform policy, `projects/{p}/platforms/cloudRun/policies/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Fields this client does not know, kept.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl BinaryAuthorization {
    /// The policy this setting enforces: a non-empty `policy` names one; otherwise
    /// `useDefault: true` is the project default; anything else is none.
    pub fn observed_policy(&self) -> ObservedPolicy {
        match (&self.policy, self.use_default) {
            (Some(policy), _) if !policy.is_empty() => ObservedPolicy::Named(policy.clone()),
            (_, Some(true)) => ObservedPolicy::ProjectDefault,
            _ => ObservedPolicy::None,
        }
    }

    /// The breakglass justification, if a non-empty one is set.
    pub fn breakglass(&self) -> Option<&str> {
        self.breakglass_justification
            .as_deref()
            .filter(|j| !j.is_empty())
    }

    /// The value a remediation writes over `current`: the desired policy (`useDefault:
    /// true` or `policy: <name>`, nothing else of the oneof), the breakglass justification
    /// kept verbatim or removed as the remediation says, and any field this client does not
    /// know kept as it was.
    pub fn for_remediation(current: Option<&Self>, remediation: &Remediation) -> Self {
        let (use_default, policy) = match &remediation.desired {
            DesiredPolicy::ProjectDefault => (Some(true), None),
            DesiredPolicy::Named(name) => (None, Some(name.as_str().to_owned())),
        };
        let breakglass_justification = match remediation.breakglass {
            BreakglassChange::Keep => current.and_then(|c| c.breakglass_justification.clone()),
            BreakglassChange::Clear => None,
        };
        Self {
            breakglass_justification,
            use_default,
            policy,
            other: current.map(|c| c.other.clone()).unwrap_or_default(),
        }
    }
}

/// A Cloud Run Service, Job or WorkerPool (`GoogleCloudRunV2Service` / `Job` /
/// `WorkerPool`): the common fields the operator uses, and everything else verbatim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// `projects/{p}/locations/{l}/{services|jobs|workerPools}/{id}`.
    pub name: String,
    /// Server-assigned unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Bumped by every change of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Int64>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<Int64>,
    /// Cloud Run labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Opaque version, sent back with a write for optimistic concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// True while Cloud Run is still reconciling a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciling: Option<bool>,
    /// Status conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// The condition summarizing the last reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_condition: Option<Condition>,
    /// Set while the resource is being deleted (listed with `showDeleted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_time: Option<String>,
    /// The Binary Authorization setting; absent means disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_authorization: Option<BinaryAuthorization>,
    /// Every other field (`template`, `annotations`, `createTime`, `updateTime`,
    /// `lastModifier`, `traffic`, `scaling`, `latestReadyRevision`, ...), kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Resource {
    /// The Binary Authorization policy it enforces.
    pub fn observed_policy(&self) -> ObservedPolicy {
        self.binary_authorization
            .as_ref()
            .map_or(ObservedPolicy::None, BinaryAuthorization::observed_policy)
    }

    /// Cloud Run's message when its latest deploy was refused by Binary Authorization (the
    /// terminal condition first, then the other conditions).
    pub fn deploy_blocked(&self) -> Option<String> {
        self.terminal_condition
            .iter()
            .chain(self.conditions.iter().flatten())
            .find(|c| c.blocks_deploy())
            .map(|c| {
                c.message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| {
                        "the latest deploy was refused by Binary Authorization".into()
                    })
            })
    }

    /// The container images of its template (`template.containers[].image`; for jobs
    /// `template.template.containers[].image`).
    pub fn images(&self) -> Vec<&str> {
        let template = self.other.get("template");
        let containers = template
            .and_then(|t| t.get("containers"))
            .or_else(|| template.and_then(|t| t.pointer("/template/containers")));
        containers
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("image").and_then(Value::as_str))
            .collect()
    }

    /// The plain-data view the planner works on, for the resource `id` (built from the
    /// request, so the project is spelled as the binding spells it).
    pub fn observe(&self, id: ResourceId) -> ObservedResource {
        let id_kind = id.kind;
        ObservedResource {
            id,
            labels: self
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            deleted: self.delete_time.as_deref().is_some_and(|t| !t.is_empty()),
            policy: self.observed_policy(),
            breakglass: self
                .binary_authorization
                .as_ref()
                .and_then(BinaryAuthorization::breakglass)
                .map(str::to_owned),
            deploy_blocked: self.deploy_blocked(),
            running: self.running(id_kind),
            last_change: self
                .binary_authorization
                .as_ref()
                .and_then(BinaryAuthorization::breakglass)
                .map(|_| Box::new(self.last_change())),
        }
    }

    /// `lastModifier` and `updateTime` (both kept verbatim among the other fields).
    pub fn last_change(&self) -> LastChange {
        let text = |key: &str| self.other.get(key).and_then(Value::as_str);
        LastChange {
            by: text("lastModifier")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            at: text("updateTime").and_then(|t| t.parse().ok()),
        }
    }

    /// What it runs, from its own fields: `updateTime`; for services `trafficStatuses`,
    /// for worker pools `instanceSplitStatuses` (entries with a percent above 0; one that
    /// follows the latest revision, or names none, means `latestReadyRevision`); for jobs
    /// `latestCreatedExecution.createTime`.
    pub fn running(&self, kind: ResourceKind) -> Running {
        let time = |v: Option<&Value>| v.and_then(Value::as_str).and_then(|t| t.parse().ok());
        let changed = time(self.other.get("updateTime"));
        let workload = match kind {
            ResourceKind::Job => match self.other.get("latestCreatedExecution") {
                None | Some(Value::Null) => Workload::Execution(None),
                Some(execution) => match time(execution.get("createTime")) {
                    Some(created) => Workload::Execution(Some(created)),
                    None => Workload::Unknown,
                },
            },
            ResourceKind::Service => self.serving("trafficStatuses"),
            ResourceKind::WorkerPool => self.serving("instanceSplitStatuses"),
        };
        Running { changed, workload }
    }

    /// The revisions a status list (`trafficStatuses`, `instanceSplitStatuses`) sends
    /// traffic or instances to, by short name.
    fn serving(&self, field: &str) -> Workload {
        let Some(entries) = self.other.get(field).and_then(Value::as_array) else {
            return Workload::Unknown;
        };
        let short = |name: &str| name.rsplit('/').next().unwrap_or(name).to_owned();
        let latest = self
            .other
            .get("latestReadyRevision")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(short);
        let mut revisions: Vec<String> = Vec::new();
        for entry in entries {
            let percent = match entry.get("percent") {
                Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
                Some(Value::String(s)) => s.parse().unwrap_or(0.0),
                _ => 0.0,
            };
            if percent <= 0.0 {
                continue;
            }
            let named = entry
                .get("revision")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(short);
            match named.or_else(|| latest.clone()) {
                Some(revision) => revisions.push(revision),
                None => return Workload::Unknown,
            }
        }
        revisions.sort();
        revisions.dedup();
        Workload::Revisions(revisions.into_iter().map(String::into_boxed_str).collect())
    }

    /// The body of the one write a remediation makes to this resource (as read), for a
    /// resource of `kind`:
    /// - services and worker pools (sent with `updateMask=binaryAuthorization`): only
    ///   `binaryAuthorization` and the `etag` read;
    /// - jobs (v2 has no update mask for jobs): this whole object, exactly as read — etag
    ///   included — with only `binaryAuthorization` replaced.
    pub fn remediation_body(
        &self,
        kind: ResourceKind,
        remediation: &Remediation,
    ) -> serde_json::Result<Value> {
        match kind {
            ResourceKind::Service | ResourceKind::WorkerPool => masked_remediation_body(
                self.binary_authorization.as_ref(),
                self.etag.as_deref(),
                remediation,
            ),
            ResourceKind::Job => {
                let mut whole = self.clone();
                whole.binary_authorization = Some(BinaryAuthorization::for_remediation(
                    self.binary_authorization.as_ref(),
                    remediation,
                ));
                serde_json::to_value(whole)
            }
        }
    }

    /// The resource id segment and kind of its `name`, checked against the collection.
    pub fn name_parts(&self) -> Option<NameParts<'_>> {
        NameParts::parse(&self.name)
    }
}

/// The body of a remediation sent with `updateMask=binaryAuthorization` (services and
/// worker pools): the new `binaryAuthorization` computed from the `current` one, and the
/// `etag` read.
pub fn masked_remediation_body(
    current: Option<&BinaryAuthorization>,
    etag: Option<&str>,
    remediation: &Remediation,
) -> serde_json::Result<Value> {
    let mut body = Map::new();
    body.insert(
        "binaryAuthorization".into(),
        serde_json::to_value(BinaryAuthorization::for_remediation(current, remediation))?,
    );
    if let Some(etag) = etag {
        body.insert("etag".into(), Value::String(etag.to_owned()));
    }
    Ok(Value::Object(body))
}
