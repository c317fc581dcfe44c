//! The emulated estate: projects, regions, policies, resources (as JSON) and their bookkeeping.
//!
//! Resources are kept as the JSON objects the API serves, so every field the emulator does
//! not model round-trips unchanged. Server-managed fields (`generation`, `etag`,
//! `updateTime`, revisions, conditions, ...) are maintained here, on every change, the same
//! way for API writes and for simulated deploys.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::assumed;
use super::denials::ProjectAccess;
use super::google::{ApiError, Code};
use super::orgpolicy::{self, AllowedPolicies, BinaryAuthorization};
use super::regions;

/// Google's managed Binary Authorization policy (build provenance from Google's build
/// service), which hardened organisations pin and no customer can read.
pub const BCID_MANAGED_POLICY: &str =
    "projects/bcid-cloud-run-policy/platforms/cloudRun/policies/bcidManagedPolicy";

/// The emulator-only key of a seeded policy listing the images it authorizes (never served).
pub const AUTHORIZED_IMAGES: &str = "authorizedImages";

/// The three Cloud Run resource kinds the emulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `services`.
    Service,
    /// `jobs`.
    Job,
    /// `workerPools`.
    WorkerPool,
}

/// Output-only fields common to every kind: kept from the stored resource on a write,
/// never reported as a user change.
const COMMON_OUTPUT_FIELDS: &[&str] = &[
    "name",
    "uid",
    "generation",
    "observedGeneration",
    "createTime",
    "updateTime",
    "deleteTime",
    "expireTime",
    "creator",
    "lastModifier",
    "reconciling",
    "conditions",
    "terminalCondition",
    "etag",
    "satisfiesPzs",
];
const SERVICE_OUTPUT_FIELDS: &[&str] = &[
    "latestReadyRevision",
    "latestCreatedRevision",
    "trafficStatuses",
    "uri",
    "urls",
    "threatDetectionEnabled",
    "instanceSplitStatuses",
];
const JOB_OUTPUT_FIELDS: &[&str] = &["executionCount", "latestCreatedExecution"];

impl Kind {
    /// Every kind, in listing order.
    pub const ALL: [Kind; 3] = [Kind::Service, Kind::Job, Kind::WorkerPool];

    /// The collection segment of a resource name and the key of a list response.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::Job => "jobs",
            Kind::WorkerPool => "workerPools",
        }
    }

    /// The kind for a collection segment.
    pub fn from_collection(segment: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.collection() == segment)
    }

    /// The `@type` of the resource inside an operation.
    pub fn type_url(self) -> &'static str {
        match self {
            Kind::Service => "type.googleapis.com/google.cloud.run.v2.Service",
            Kind::Job => "type.googleapis.com/google.cloud.run.v2.Job",
            Kind::WorkerPool => "type.googleapis.com/google.cloud.run.v2.WorkerPool",
        }
    }

    /// How Cloud Run names the kind in a NOT_FOUND message.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Service => "SERVICE",
            Kind::Job => "JOB",
            Kind::WorkerPool => "WORKER_POOL",
        }
    }

    /// The request-body field name in validation messages (`service.template`).
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Job => "job",
            Kind::WorkerPool => "worker_pool",
        }
    }

    /// The IAM permission noun (`run.services.get`, `run.workerpools.update`).
    pub fn permission_noun(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::Job => "jobs",
            Kind::WorkerPool => "workerpools",
        }
    }

    /// Whether `field` is a server-managed output field of this kind.
    pub fn is_output_field(self, field: &str) -> bool {
        COMMON_OUTPUT_FIELDS.contains(&field)
            || match self {
                Kind::Service | Kind::WorkerPool => SERVICE_OUTPUT_FIELDS.contains(&field),
                Kind::Job => JOB_OUTPUT_FIELDS.contains(&field),
            }
    }

    /// The JSON path of the container list: `template.containers` for services and worker
    /// pools, `template.template.containers` for jobs.
    fn container_path(self) -> &'static [&'static str] {
        match self {
            Kind::Service | Kind::WorkerPool => &["template", "containers"],
            Kind::Job => &["template", "template", "containers"],
        }
    }

    /// The image of the first container, if any.
    pub fn image(self, body: &Map<String, Value>) -> Option<&str> {
        let (last, parents) = self.container_path().split_last()?;
        let mut object = body;
        for key in parents {
            object = object.get(*key)?.as_object()?;
        }
        object
            .get(*last)?
            .as_array()?
            .first()?
            .get("image")?
            .as_str()
    }

    /// Sets the image of the first container, creating the template path as needed.
    pub fn set_image(self, body: &mut Map<String, Value>, image: &str) {
        let mut object = body;
        let path = self.container_path();
        for key in &path[..path.len() - 1] {
            let entry = object.entry(key.to_string()).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            let Value::Object(next) = entry else { return };
            object = next;
        }
        let containers = object
            .entry(path[path.len() - 1].to_string())
            .or_insert_with(|| json!([]));
        if !containers.is_array() {
            *containers = json!([]);
        }
        let Value::Array(containers) = containers else {
            return;
        };
        if containers.is_empty() {
            containers.push(json!({}));
        }
        match &mut containers[0] {
            Value::Object(first) => {
                first.insert("image".into(), Value::String(image.to_string()));
            }
            other => *other = json!({ "image": image }),
        }
    }
}

/// A project: its id, number, Cloud Run regions and Binary Authorization platform policies.
#[derive(Clone, Debug)]
pub struct Project {
    /// Project id (`acme-prod`).
    pub id: String,
    /// Project number, all digits.
    pub number: String,
    /// Cloud Run regions, in listing order.
    pub regions: Vec<String>,
    /// Platform policies by id; the JSON is served as stored plus its `name` (without the
    /// emulator-only `authorizedImages`).
    pub policies: BTreeMap<String, Map<String, Value>>,
    /// How the caller sees the project (403 variants).
    pub access: ProjectAccess,
    /// Whether the caller may read the project's Binary Authorization policies.
    pub policies_readable: bool,
    /// Image patterns the project's default policy authorizes; `None`: every image.
    pub default_policy_authorized_images: Option<Vec<String>>,
    /// The organization policy constraint `run.allowedBinaryAuthorizationPolicies`.
    pub allowed_policies: AllowedPolicies,
    /// Whether the caller may read the project's organization policies.
    pub org_policy_readable: bool,
}

impl Project {
    /// A project with default settings and no policies.
    pub fn new(id: &str, number: &str) -> Project {
        Project {
            id: id.to_string(),
            number: number.to_string(),
            regions: Vec::new(),
            policies: BTreeMap::new(),
            access: ProjectAccess::Granted,
            policies_readable: true,
            default_policy_authorized_images: None,
            allowed_policies: AllowedPolicies::NotSet,
            org_policy_readable: true,
        }
    }
}

/// Who made a change, for `lastModifier` and the audit log.
#[derive(Clone, Debug)]
pub struct Actor {
    /// Email recorded as `lastModifier`.
    pub principal: String,
    /// The caller tag (`x-emulator-client` or User-Agent).
    pub client: String,
    /// What kind of caller made the change.
    pub source: ChangeSource,
    /// The method (`services.patch`, `admin.drift`, `race.deploy`, ...).
    pub method: String,
}

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeSource {
    /// A write through the Cloud Run API.
    Api,
    /// The admin API (simulated drift or deploy).
    Admin,
    /// A simulated deploy injected between a client's read and its write (stale-etag fault).
    Race,
}

/// One change applied to a resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    /// Increasing sequence number.
    pub seq: u64,
    /// When, RFC 3339.
    pub time: String,
    /// Full resource name.
    pub resource: String,
    /// `services`, `jobs` or `workerPools`.
    pub collection: String,
    /// The principal recorded as `lastModifier`.
    pub by: String,
    /// The caller tag.
    pub client: String,
    /// API, admin or race.
    pub source: ChangeSource,
    /// The method that made it.
    pub method: String,
    /// Dotted paths of the user-visible fields that changed (arrays count as one field);
    /// server-managed output fields are never listed.
    pub fields: Vec<String>,
    /// The resource generation after the change.
    pub generation: i64,
}

/// How a change ends: applied with a new revision, refused by Binary Authorization, ...
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// Create a revision even without a template change (`forceNewRevision`).
    pub force_new_revision: bool,
    /// The deploy's image is refused by Binary Authorization: the new revision is created
    /// but never becomes ready, the previous one keeps serving.
    pub refused: bool,
    /// The change settles (observedGeneration catches up, reconciling ends) after this.
    pub settle_after: Duration,
}

#[derive(Clone, Debug)]
struct Settling {
    until: Instant,
    observed_generation: Value,
}

mod authorization;
mod deploy;
mod operation;
mod resource;
mod store;
#[cfg(test)]
mod tests;

pub use authorization::*;
pub use deploy::*;
pub use operation::*;
pub use resource::*;
pub use store::*;
