//! Reads one Admin Activity audit log entry (a Logging `LogEntry` as JSON, as a sink
//! delivers it to Pub/Sub) into what the drift handler needs: which Cloud Run resource was
//! written, by whom, with which method, whether it succeeded, and when.
//!
//! # Guarantees
//! - The resource comes from `resource.type` and `resource.labels` (`project_id`,
//!   `location`, `service_name` / `job_name` / `worker_pool_name`), which are the same for
//!   v1 and v2 calls; `protoPayload.request` (which may be truncated) is never read.
//! - Only the methods of [`WriteMethod`] are Cloud Run writes worth a re-check; any other
//!   method is [`Entry::write`] `None`.
//! - A malformed entry is an [`EntryError`] naming the field, never a panic.

use jiff::Timestamp;
use serde::Deserialize;

use crate::resource::{ResourceId, ResourceKind};

/// A Cloud Run write an entry can record: the v2 and v1 Create/Update/Replace methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteMethod {
    /// `google.cloud.run.v2.Services.CreateService`
    V2CreateService,
    /// `google.cloud.run.v2.Services.UpdateService`
    V2UpdateService,
    /// `google.cloud.run.v2.Jobs.CreateJob`
    V2CreateJob,
    /// `google.cloud.run.v2.Jobs.UpdateJob`
    V2UpdateJob,
    /// `google.cloud.run.v2.WorkerPools.CreateWorkerPool`
    V2CreateWorkerPool,
    /// `google.cloud.run.v2.WorkerPools.UpdateWorkerPool`
    V2UpdateWorkerPool,
    /// `google.cloud.run.v1.Services.CreateService`
    V1CreateService,
    /// `google.cloud.run.v1.Services.ReplaceService`
    V1ReplaceService,
    /// `google.cloud.run.v1.Jobs.CreateJob`
    V1CreateJob,
    /// `google.cloud.run.v1.Jobs.ReplaceJob`
    V1ReplaceJob,
    /// `google.cloud.run.v1.WorkerPools.ReplaceWorkerPool`
    V1ReplaceWorkerPool,
}

impl WriteMethod {
    /// Every method, for docs and tests.
    pub const ALL: [Self; 11] = [
        Self::V2CreateService,
        Self::V2UpdateService,
        Self::V2CreateJob,
        Self::V2UpdateJob,
        Self::V2CreateWorkerPool,
        Self::V2UpdateWorkerPool,
        Self::V1CreateService,
        Self::V1ReplaceService,
        Self::V1CreateJob,
        Self::V1ReplaceJob,
        Self::V1ReplaceWorkerPool,
    ];

    /// The audit log's `protoPayload.methodName`.
    pub fn name(self) -> &'static str {
        match self {
            Self::V2CreateService => "google.cloud.run.v2.Services.CreateService",
            Self::V2UpdateService => "google.cloud.run.v2.Services.UpdateService",
            Self::V2CreateJob => "google.cloud.run.v2.Jobs.CreateJob",
            Self::V2UpdateJob => "google.cloud.run.v2.Jobs.UpdateJob",
            Self::V2CreateWorkerPool => "google.cloud.run.v2.WorkerPools.CreateWorkerPool",
            Self::V2UpdateWorkerPool => "google.cloud.run.v2.WorkerPools.UpdateWorkerPool",
            Self::V1CreateService => "google.cloud.run.v1.Services.CreateService",
            Self::V1ReplaceService => "google.cloud.run.v1.Services.ReplaceService",
            Self::V1CreateJob => "google.cloud.run.v1.Jobs.CreateJob",
            Self::V1ReplaceJob => "google.cloud.run.v1.Jobs.ReplaceJob",
            Self::V1ReplaceWorkerPool => "google.cloud.run.v1.WorkerPools.ReplaceWorkerPool",
        }
    }

    /// The method named `name`, if it is one of these writes.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The kind of resource the method writes.
    pub fn kind(self) -> ResourceKind {
        match self {
            Self::V2CreateService
            | Self::V2UpdateService
            | Self::V1CreateService
            | Self::V1ReplaceService => ResourceKind::Service,
            Self::V2CreateJob | Self::V2UpdateJob | Self::V1CreateJob | Self::V1ReplaceJob => {
                ResourceKind::Job
            }
            Self::V2CreateWorkerPool | Self::V2UpdateWorkerPool | Self::V1ReplaceWorkerPool => {
                ResourceKind::WorkerPool
            }
        }
    }
}

/// The long-running operation an entry belongs to (a call logs a first and a last entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationRef {
    /// `operation.id`, shared by the entries of one call.
    pub id: String,
    /// `operation.first`.
    pub first: bool,
    /// `operation.last`.
    pub last: bool,
}

/// One audit log entry, as far as the drift handler reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `insertId`.
    pub insert_id: String,
    /// `timestamp`: when the call happened.
    pub timestamp: Timestamp,
    /// `protoPayload.methodName`.
    pub method_name: String,
    /// The write, when the method is one of [`WriteMethod`].
    pub write: Option<WriteMethod>,
    /// The resource written, from `resource.labels` (None for a method that is not a
    /// watched write, or a resource type of another kind).
    pub resource: Option<ResourceId>,
    /// `protoPayload.status.code` (0 or absent: success).
    pub status_code: i32,
    /// `protoPayload.authenticationInfo.principalEmail`.
    pub principal: Option<String>,
    /// `protoPayload.requestMetadata.callerSuppliedUserAgent`.
    pub user_agent: Option<String>,
    /// `operation`, for a long-running call.
    pub operation: Option<OperationRef>,
}

/// Why an entry cannot be read. Display is one line naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    /// Not JSON, or a field of the wrong type.
    #[error("the message is not an audit log entry (LogEntry JSON): {0}")]
    NotJson(String),
    /// A field the handler needs is missing.
    #[error("audit log entry {insert_id}: field {field} is missing")]
    Missing {
        /// The entry's `insertId` (or `?`).
        insert_id: String,
        /// The field.
        field: &'static str,
    },
    /// A field holds something the handler cannot use.
    #[error("audit log entry {insert_id}: field {field} is invalid: {detail}")]
    Invalid {
        /// The entry's `insertId` (or `?`).
        insert_id: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    #[serde(default)]
    insert_id: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    resource: Option<RawResource>,
    #[serde(default)]
    proto_payload: Option<RawPayload>,
    #[serde(default)]
    operation: Option<RawOperation>,
}

#[derive(Deserialize)]
struct RawResource {
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPayload {
    #[serde(default)]
    method_name: Option<String>,
    #[serde(default)]
    status: Option<RawStatus>,
    #[serde(default)]
    authentication_info: Option<RawAuthentication>,
    #[serde(default)]
    request_metadata: Option<RawRequestMetadata>,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    code: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthentication {
    #[serde(default)]
    principal_email: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequestMetadata {
    #[serde(default)]
    caller_supplied_user_agent: Option<String>,
}

#[derive(Deserialize)]
struct RawOperation {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    first: bool,
    #[serde(default)]
    last: bool,
}

/// The label naming the resource for each monitored resource type.
fn resource_label(kind: ResourceKind) -> (&'static str, &'static str) {
    match kind {
        ResourceKind::Service => ("cloud_run_revision", "service_name"),
        ResourceKind::Job => ("cloud_run_job", "job_name"),
        ResourceKind::WorkerPool => ("cloud_run_worker_pool", "worker_pool_name"),
    }
}

impl Entry {
    /// Reads a `LogEntry` from its JSON text (the Pub/Sub message's decoded `data`).
    ///
    /// # Errors
    /// [`EntryError`] when it is not JSON, lacks `timestamp` or `protoPayload.methodName`,
    /// or (for a watched write) lacks the resource labels that name the resource.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EntryError> {
        let raw: RawEntry = serde_json::from_slice(bytes).map_err(|err| {
            let mut text = err.to_string();
            text.truncate(200);
            EntryError::NotJson(text)
        })?;
        let insert_id = raw.insert_id.unwrap_or_else(|| "?".to_owned());
        let missing = |field| EntryError::Missing {
            insert_id: insert_id.clone(),
            field,
        };
        let timestamp = raw
            .timestamp
            .as_deref()
            .ok_or_else(|| missing("timestamp"))?
            .parse::<Timestamp>()
            .map_err(|err| EntryError::Invalid {
                insert_id: insert_id.clone(),
                field: "timestamp",
                detail: err.to_string(),
            })?;
        let payload = raw.proto_payload.ok_or_else(|| missing("protoPayload"))?;
        let method_name = payload
            .method_name
            .ok_or_else(|| missing("protoPayload.methodName"))?;
        let write = WriteMethod::from_name(&method_name);
        let resource = match write {
            None => None,
            Some(method) => {
                let res = raw.resource.ok_or_else(|| missing("resource"))?;
                let (type_, name_label) = resource_label(method.kind());
                if res.type_.as_deref() != Some(type_) {
                    return Err(EntryError::Invalid {
                        insert_id,
                        field: "resource.type",
                        detail: format!(
                            "{} for {method_name} (expected {type_})",
                            res.type_.as_deref().unwrap_or("(none)")
                        ),
                    });
                }
                let label = |name: &'static str, field: &'static str| {
                    res.labels
                        .get(name)
                        .filter(|v| !v.is_empty())
                        .cloned()
                        .ok_or_else(|| missing(field))
                };
                Some(ResourceId {
                    kind: method.kind(),
                    project: label("project_id", "resource.labels.project_id")?,
                    location: label("location", "resource.labels.location")?,
                    name: label(name_label, name_field(method.kind()))?,
                })
            }
        };
        Ok(Self {
            insert_id,
            timestamp,
            method_name,
            write,
            resource,
            status_code: payload.status.and_then(|s| s.code).unwrap_or(0),
            principal: payload.authentication_info.and_then(|a| a.principal_email),
            user_agent: payload
                .request_metadata
                .and_then(|m| m.caller_supplied_user_agent),
            operation: raw.operation.and_then(|o| {
                Some(OperationRef {
                    id: o.id.filter(|id| !id.is_empty())?,
                    first: o.first,
                    last: o.last,
                })
            }),
        })
    }
}

fn name_field(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Service => "resource.labels.service_name",
        ResourceKind::Job => "resource.labels.job_name",
        ResourceKind::WorkerPool => "resource.labels.worker_pool_name",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/auditlog/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn a_v2_update_of_a_service_names_the_service_from_its_labels() {
        let entry = Entry::from_json(&fixture("v2-update-service-first.json")).unwrap();
        assert_eq!(entry.write, Some(WriteMethod::V2UpdateService));
        let id = entry.resource.unwrap();
        assert_eq!(
            (
                id.kind,
                id.project.as_str(),
                id.location.as_str(),
                id.name.as_str()
            ),
            (
                ResourceKind::Service,
                "acme-prod",
                "us-central1",
                "checkout"
            )
        );
        assert_eq!(entry.status_code, 0);
        let op = entry.operation.unwrap();
        assert!(op.first && !op.last);
        assert_eq!(entry.principal.as_deref(), Some("dev@acme.example"));
        assert_eq!(
            entry.timestamp,
            "2026-12-02T08:00:01.123456Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn v1_replaces_of_services_jobs_and_worker_pools_are_keyed_like_v2() {
        for (file, method, kind, name) in [
            (
                "v1-replace-service.json",
                WriteMethod::V1ReplaceService,
                ResourceKind::Service,
                "checkout",
            ),
            (
                "v1-replace-job.json",
                WriteMethod::V1ReplaceJob,
                ResourceKind::Job,
                "nightly",
            ),
            (
                "v1-replace-worker-pool.json",
                WriteMethod::V1ReplaceWorkerPool,
                ResourceKind::WorkerPool,
                "queue",
            ),
        ] {
            let entry = Entry::from_json(&fixture(file)).unwrap();
            assert_eq!(entry.write, Some(method), "{file}");
            let id = entry.resource.unwrap();
            assert_eq!((id.kind, id.name.as_str()), (kind, name), "{file}");
            assert_eq!(id.location, "europe-west1", "{file}");
        }
    }

    #[test]
    fn v2_jobs_and_worker_pools_and_the_operators_own_write_parse() {
        let job = Entry::from_json(&fixture("v2-create-job.json")).unwrap();
        assert_eq!(job.write, Some(WriteMethod::V2CreateJob));
        assert_eq!(job.resource.unwrap().kind, ResourceKind::Job);
        let pool = Entry::from_json(&fixture("v2-update-worker-pool.json")).unwrap();
        assert_eq!(pool.write, Some(WriteMethod::V2UpdateWorkerPool));
        assert_eq!(pool.resource.unwrap().name, "queue");
        let own = Entry::from_json(&fixture("v2-update-service-by-operator.json")).unwrap();
        assert!(own.user_agent.unwrap().starts_with(
            crate::cloudrun::client::USER_AGENT
                .split('/')
                .next()
                .unwrap()
        ));
    }

    #[test]
    fn a_failed_call_carries_its_status_code() {
        let entry = Entry::from_json(&fixture("v2-update-service-failed.json")).unwrap();
        assert_eq!(entry.status_code, 7);
    }

    #[test]
    fn other_methods_are_read_but_name_no_resource() {
        let entry = Entry::from_json(&fixture("v2-delete-service.json")).unwrap();
        assert_eq!(entry.write, None);
        assert_eq!(entry.resource, None);
    }

    #[test]
    fn malformed_entries_say_which_field() {
        let err = Entry::from_json(b"not json").unwrap_err();
        assert!(matches!(err, EntryError::NotJson(_)), "{err}");
        let err = Entry::from_json(br#"{"insertId":"x1","timestamp":"2026-12-02T08:00:00Z","protoPayload":{"methodName":"google.cloud.run.v2.Services.UpdateService"},"resource":{"type":"cloud_run_revision","labels":{"project_id":"p","location":"l"}}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "audit log entry x1: field resource.labels.service_name is missing"
        );
        let err = Entry::from_json(
            br#"{"insertId":"x2","timestamp":"yesterday","protoPayload":{"methodName":"m"}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("field timestamp is invalid"),
            "{err}"
        );
        let err = Entry::from_json(br#"{"insertId":"x3","timestamp":"2026-12-02T08:00:00Z","protoPayload":{"methodName":"google.cloud.run.v2.Jobs.UpdateJob"},"resource":{"type":"cloud_run_revision","labels":{}}}"#).unwrap_err();
        assert!(err.to_string().contains("resource.type"), "{err}");
    }
}
