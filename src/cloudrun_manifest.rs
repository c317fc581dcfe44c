//! Reads the Cloud Run manifests teams keep beside their code into the planner's view of a resource.
//!
//! Three shapes are recognised (every other document is left to the caller):
//! - `apiVersion: serving.knative.dev/v1`, `kind: Service` and `apiVersion:
//!   run.googleapis.com/v1`, `kind: Job` — the YAML `gcloud run services|jobs describe
//!   --format export` writes and `gcloud run services|jobs replace` reads. Binary
//!   Authorization is the annotation `run.googleapis.com/binary-authorization` (`default`
//!   or a policy name) and the justification `run.googleapis.com/binary-authorization-breakglass`,
//!   both on the resource's own `metadata.annotations` — for services and jobs alike, never
//!   on the template (gcloud's `--binary-authorization` and `--breakglass` set them there).
//!   The project is `metadata.namespace` (id or number, as gcloud accepts either); the region
//!   is the label `cloud.googleapis.com/location`, which the export writes.
//! - A Cloud Run Admin API v2 resource (YAML or JSON, no `apiVersion`/`kind`), recognised by
//!   its `name`, `projects/{p}/locations/{l}/{services|jobs|workerPools}/{id}`, which places
//!   it; Binary Authorization is its `binaryAuthorization` field, read exactly as the client
//!   reads a live resource ([`crate::cloudrun::Resource`]).
//!
//! What a manifest does not say (a v1 manifest without namespace or location label) stays
//! unknown here: the caller decides what to assume.

use std::fmt;

use serde_json::Value;

use crate::cloudrun::Resource;
use crate::policy::ObservedPolicy;
use crate::resource::{Labels, ObservedResource, ResourceId, ResourceKind};

/// The v1 annotation holding the Binary Authorization policy: `default` or a policy name.
pub const POLICY_ANNOTATION: &str = "run.googleapis.com/binary-authorization";
/// The v1 annotation holding a breakglass justification.
pub const BREAKGLASS_ANNOTATION: &str = "run.googleapis.com/binary-authorization-breakglass";
/// The v1 label naming the region (written by `gcloud ... describe --format export`).
pub const LOCATION_LABEL: &str = "cloud.googleapis.com/location";
/// Label prefixes Cloud Run keeps for itself: never among a live resource's v2 labels, so
/// never matched by a binding's label selector.
const SYSTEM_LABEL_PREFIXES: [&str; 4] = [
    "run.googleapis.com/",
    "cloud.googleapis.com/",
    "serving.knative.dev/",
    "autoscaling.knative.dev/",
];

/// Which API's shape a manifest has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    /// `serving.knative.dev/v1` Service or `run.googleapis.com/v1` Job (gcloud export).
    V1,
    /// An Admin API v2 resource.
    V2,
}

/// A recognised Cloud Run manifest: what the planner needs, and what it leaves unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudRunManifest {
    /// Its shape.
    pub format: ManifestFormat,
    /// Service, Job or WorkerPool.
    pub kind: ResourceKind,
    /// Resource name.
    pub name: String,
    /// Project id or number, when the manifest says.
    pub project: Option<String>,
    /// Region, when the manifest says.
    pub location: Option<String>,
    /// User labels (Cloud Run's own prefixes left out, as the v2 API does).
    pub labels: Labels,
    /// The Binary Authorization setting a deploy from this manifest leaves on the resource.
    pub policy: ObservedPolicy,
    /// The breakglass justification it carries.
    pub breakglass: Option<String>,
}

impl CloudRunManifest {
    /// The key whose line locates the setting in the document: the annotation for v1, the
    /// field for v2 (either may be absent; the caller falls back to the document start).
    pub fn setting_field(&self) -> &'static str {
        match self.format {
            ManifestFormat::V1 => POLICY_ANNOTATION,
            ManifestFormat::V2 => "binaryAuthorization",
        }
    }

    /// The resource as the planner sees a live one, placed in `project` and `location`.
    pub fn observe(&self, project: &str, location: &str) -> ObservedResource {
        ObservedResource {
            id: ResourceId {
                kind: self.kind,
                project: project.to_owned(),
                location: location.to_owned(),
                name: self.name.clone(),
            },
            labels: self.labels.clone(),
            deleted: false,
            policy: self.policy.clone(),
            breakglass: self.breakglass.clone(),
            deploy_blocked: None,
            last_change: None,
            running: Default::default(),
        }
    }
}

impl fmt::Display for ManifestFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

/// Why a recognised Cloud Run manifest cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloudRunManifestError {
    /// No `metadata.name`.
    #[error("Cloud Run {kind} manifest without metadata.name; name the {kind}")]
    MissingName {
        /// Service or Job.
        kind: ResourceKind,
    },
    /// A field that must be a string (or a map of strings) is not.
    #[error("Cloud Run {kind} manifest: {field} must be a string")]
    NotAString {
        /// Service or Job.
        kind: ResourceKind,
        /// The field.
        field: String,
    },
    /// A v2 resource that does not have the v2 shape.
    #[error("Cloud Run v2 resource {name}: {detail}")]
    V2 {
        /// Its `name`.
        name: String,
        /// What does not fit.
        detail: String,
    },
}

/// Recognises a Cloud Run manifest: `None` for every other document, else the manifest or
/// why it cannot be read.
pub fn recognize(value: &Value) -> Option<Result<CloudRunManifest, CloudRunManifestError>> {
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let kind = value.get("kind").and_then(Value::as_str);
    match (api_version, kind) {
        (Some("serving.knative.dev/v1"), Some("Service")) => {
            Some(read_v1(value, ResourceKind::Service))
        }
        (Some("run.googleapis.com/v1"), Some("Job")) => Some(read_v1(value, ResourceKind::Job)),
        (None, None) => {
            let name = value.get("name").and_then(Value::as_str)?;
            crate::cloudrun::model::NameParts::parse(name)?;
            Some(read_v2(value, name))
        }
        _ => None,
    }
}

fn read_v1(value: &Value, kind: ResourceKind) -> Result<CloudRunManifest, CloudRunManifestError> {
    let metadata = value.get("metadata");
    let field = |key: &str| metadata.and_then(|m| m.get(key));
    let not_a_string = |field: String| CloudRunManifestError::NotAString { kind, field };
    let name = match field("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(CloudRunManifestError::MissingName { kind })
        }
        Some(_) => return Err(not_a_string("metadata.name".into())),
    };
    // gcloud accepts a project number unquoted in YAML, which reads as a number.
    let project = match field("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.clone()).filter(|p| !p.is_empty()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(not_a_string("metadata.namespace".into())),
    };
    let strings = |map: &str| -> Result<Vec<(String, String)>, CloudRunManifestError> {
        match field(map) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(entries)) => entries
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(not_a_string(format!("metadata.{map}[{k}]"))),
                })
                .collect(),
            Some(_) => Err(not_a_string(format!("metadata.{map}"))),
        }
    };
    let labels = strings("labels")?;
    let annotations = strings("annotations")?;
    let annotation = |key: &str| {
        annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let policy = match annotation(POLICY_ANNOTATION) {
        None => ObservedPolicy::None,
        Some("default") => ObservedPolicy::ProjectDefault,
        Some(name) => ObservedPolicy::Named(name.to_owned()),
    };
    let location = labels
        .iter()
        .find(|(k, _)| k == LOCATION_LABEL)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty());
    Ok(CloudRunManifest {
        format: ManifestFormat::V1,
        kind,
        name,
        project,
        location,
        labels: user_labels(labels),
        policy,
        breakglass: annotation(BREAKGLASS_ANNOTATION).map(str::to_owned),
    })
}

fn read_v2(value: &Value, name: &str) -> Result<CloudRunManifest, CloudRunManifestError> {
    let resource: Resource =
        serde_json::from_value(value.clone()).map_err(|e| CloudRunManifestError::V2 {
            name: name.to_owned(),
            detail: e.to_string(),
        })?;
    let parts = resource
        .name_parts()
        .ok_or_else(|| CloudRunManifestError::V2 {
            name: name.to_owned(),
            detail: "not a service, job or worker pool name".into(),
        })?;
    let observed = resource.observe(ResourceId {
        kind: parts.kind,
        project: parts.project.to_owned(),
        location: parts.location.to_owned(),
        name: parts.id.to_owned(),
    });
    Ok(CloudRunManifest {
        format: ManifestFormat::V2,
        kind: parts.kind,
        name: parts.id.to_owned(),
        project: Some(parts.project.to_owned()),
        location: Some(parts.location.to_owned()),
        labels: user_labels(
            observed
                .labels
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        ),
        policy: observed.policy,
        breakglass: observed.breakglass,
    })
}

fn user_labels(labels: impl IntoIterator<Item = (String, String)>) -> Labels {
    labels
        .into_iter()
        .filter(|(k, _)| !SYSTEM_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    /// As `gcloud run services describe --format export` writes it (abridged).
    const EXPORTED_SERVICE: &str = "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/binary-authorization: default
    run.googleapis.com/binary-authorization-breakglass: incident-42
    run.googleapis.com/ingress: all
  labels:
    cloud.googleapis.com/location: us-central1
    env: prod
  name: checkout
  namespace: '123456789012'
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/maxScale: '100'
    spec:
      containers:
      - image: us-docker.pkg.dev/acme/app/checkout:1.2
";

    #[test]
    fn an_exported_v1_service_is_placed_by_namespace_and_location_label() {
        let m = recognize(&yaml(EXPORTED_SERVICE)).unwrap().unwrap();
        assert_eq!(m.format, ManifestFormat::V1);
        assert_eq!(m.kind, ResourceKind::Service);
        assert_eq!(m.name, "checkout");
        assert_eq!(m.project.as_deref(), Some("123456789012"));
        assert_eq!(m.location.as_deref(), Some("us-central1"));
        assert_eq!(m.policy, ObservedPolicy::ProjectDefault);
        assert_eq!(m.breakglass.as_deref(), Some("incident-42"));
        // Cloud Run's own labels are not user labels.
        assert_eq!(m.labels.iter().collect::<Vec<_>>(), [("env", "prod")]);
    }

    #[test]
    fn a_v1_job_without_annotation_carries_none_and_leaves_placement_unknown() {
        let m = recognize(&yaml(
            "apiVersion: run.googleapis.com/v1\nkind: Job\nmetadata:\n  name: nightly\n  namespace: 42\n  annotations:\n    run.googleapis.com/binary-authorization: projects/p/platforms/cloudRun/policies/strict\n",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(m.kind, ResourceKind::Job);
        assert_eq!(m.project.as_deref(), Some("42"));
        assert_eq!(m.location, None);
        assert_eq!(
            m.policy,
            ObservedPolicy::Named("projects/p/platforms/cloudRun/policies/strict".into())
        );
        let bare = recognize(&yaml(
            "apiVersion: run.googleapis.com/v1\nkind: Job\nmetadata: {name: j}\n",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(bare.policy, ObservedPolicy::None);
        assert_eq!(bare.project, None);
    }

    #[test]
    fn a_v2_resource_is_recognised_by_its_name_and_read_like_a_live_one() {
        let m = recognize(&serde_json::json!({
            "name": "projects/acme-prod/locations/europe-west1/workerPools/pool",
            "labels": {"tier": "critical"},
            "binaryAuthorization": {"policy": "projects/p/platforms/cloudRun/policies/strict",
                                    "breakglassJustification": "b"},
            "template": {"containers": [{"image": "x"}]}
        }))
        .unwrap()
        .unwrap();
        assert_eq!(m.format, ManifestFormat::V2);
        assert_eq!(m.kind, ResourceKind::WorkerPool);
        assert_eq!(m.name, "pool");
        assert_eq!(m.project.as_deref(), Some("acme-prod"));
        assert_eq!(m.location.as_deref(), Some("europe-west1"));
        assert_eq!(m.breakglass.as_deref(), Some("b"));
        let off = recognize(&serde_json::json!({
            "name": "projects/p/locations/us-central1/jobs/j",
            "binaryAuthorization": {"useDefault": false}
        }))
        .unwrap()
        .unwrap();
        assert_eq!(off.policy, ObservedPolicy::None);
    }

    #[test]
    fn other_documents_are_not_recognised_and_broken_ones_say_why() {
        for other in [
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}),
            serde_json::json!({"name": "not/a/resource"}),
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
            serde_json::json!(["a list"]),
        ] {
            assert_eq!(recognize(&other), None, "{other}");
        }
        let nameless = recognize(&yaml(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {}\n",
        ))
        .unwrap()
        .unwrap_err();
        assert_eq!(
            nameless.to_string(),
            "Cloud Run Service manifest without metadata.name; name the Service"
        );
        let bad = recognize(&yaml(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\n  annotations:\n    run.googleapis.com/binary-authorization: [default]\n",
        ))
        .unwrap()
        .unwrap_err();
        assert_eq!(
            bad.to_string(),
            "Cloud Run Service manifest: metadata.annotations[run.googleapis.com/binary-authorization] must be a string"
        );
        let v2 = recognize(&serde_json::json!({
            "name": "projects/p/locations/l/services/s", "labels": "x"
        }))
        .unwrap()
        .unwrap_err();
        assert!(
            v2.to_string()
                .starts_with("Cloud Run v2 resource projects/p/locations/l/services/s: "),
            "{v2}"
        );
    }
}
