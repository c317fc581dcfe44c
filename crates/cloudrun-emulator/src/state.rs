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

/// One Cloud Run resource.
#[derive(Clone, Debug)]
pub struct Resource {
    /// Its kind.
    pub kind: Kind,
    /// Project id.
    pub project: String,
    /// Region.
    pub location: String,
    /// Last segment of the name.
    pub id: String,
    /// Creation time; orders the collection.
    pub created: Timestamp,
    /// Position in the collection, increasing with `created`.
    seq: u64,
    /// The JSON served, including server-managed fields.
    body: Map<String, Value>,
    /// The version encoded in the etag: `updateTime` in microseconds since the epoch.
    version: i64,
    settling: Option<Settling>,
    /// Revisions (services, worker pools) known to the emulator, oldest first: name and
    /// image. Not part of the served JSON nor of a dump.
    revisions: Vec<(String, String)>,
}

impl Resource {
    /// A resource from its stored JSON (bookkeeping already filled in by the caller).
    pub fn new(
        kind: Kind,
        project: &str,
        location: &str,
        id: &str,
        created: Timestamp,
        body: Map<String, Value>,
    ) -> Self {
        let version = body
            .get("updateTime")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .unwrap_or(created)
            .as_microsecond();
        let mut resource = Resource {
            kind,
            project: project.to_string(),
            location: location.to_string(),
            id: id.to_string(),
            created,
            seq: 0,
            body,
            version,
            settling: None,
            revisions: Vec::new(),
        };
        if let (Some(revision), Some(image)) = (
            resource
                .body
                .get("latestCreatedRevision")
                .and_then(Value::as_str),
            kind.image(&resource.body),
        ) {
            resource
                .revisions
                .push((revision.to_string(), image.to_string()));
        }
        let etag = resource.etag_for(version);
        resource.body.insert("etag".into(), Value::String(etag));
        resource
    }

    /// Full resource name, with the project id.
    pub fn name(&self) -> String {
        format!(
            "projects/{}/locations/{}/{}/{}",
            self.project,
            self.location,
            self.kind.collection(),
            self.id
        )
    }

    /// True once `deleteTime` is set: listed only with `showDeleted`.
    pub fn is_deleted(&self) -> bool {
        self.body.get("deleteTime").is_some_and(|v| !v.is_null())
    }

    /// The stored JSON, as a seed or dump would carry it.
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// Records that revision `name` runs `image` (a seed's earlier revision).
    pub fn remember_revision(&mut self, name: &str, image: &str) {
        if !self.revisions.iter().any(|(n, _)| n == name) {
            self.revisions
                .insert(0, (name.to_string(), image.to_string()));
        }
    }

    /// The image of a known revision.
    pub fn revision_image(&self, name: &str) -> Option<&str> {
        self.revisions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, image)| image.as_str())
    }

    /// The current etag version (microseconds of `updateTime`).
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The current generation.
    pub fn generation(&self) -> i64 {
        generation_of(&self.body)
    }

    /// The JSON the API serves now: while a change is settling, `reconciling` is true and
    /// `observedGeneration` still names the previous generation.
    pub fn render(&self, now: Instant) -> Map<String, Value> {
        let mut body = self.body.clone();
        if let Some(settling) = &self.settling {
            if now < settling.until {
                body.insert(
                    "observedGeneration".into(),
                    settling.observed_generation.clone(),
                );
                body.insert("reconciling".into(), Value::Bool(true));
            }
        }
        body
    }

    fn etag_for(&self, version: i64) -> String {
        format!(
            "\"{}/{}\"",
            URL_SAFE_NO_PAD.encode(version.to_string()),
            URL_SAFE_NO_PAD.encode(self.name())
        )
    }

    /// Replaces the user-visible fields with those of `next` (output fields of `next` are
    /// ignored), bumps the bookkeeping and returns the audit record; `None` when nothing
    /// changed.
    pub fn commit(
        &mut self,
        next: Map<String, Value>,
        actor: &Actor,
        options: &CommitOptions,
        now: Instant,
    ) -> Option<ChangeRecord> {
        let mut next = self.with_output_fields(next);
        let fields = changed_fields(self.kind, &self.body, &next);
        let template_changed = self.body.get("template") != next.get("template");
        // A write that changes nothing bumps nothing (see `assumed`).
        if fields.is_empty() && !options.force_new_revision && !options.refused {
            return None;
        }
        let previous_generation = self.generation();
        let generation = previous_generation + 1;
        let version = Timestamp::now().as_microsecond().max(self.version + 1);
        let time = Timestamp::from_microsecond(version)
            .unwrap_or_else(|_| Timestamp::now())
            .to_string();
        next.insert("generation".into(), Value::String(generation.to_string()));
        next.insert(
            "observedGeneration".into(),
            Value::String(generation.to_string()),
        );
        next.insert("updateTime".into(), Value::String(time.clone()));
        next.insert(
            "lastModifier".into(),
            Value::String(actor.principal.clone()),
        );
        next.remove("reconciling");
        if assumed::creates_revision(template_changed, options.force_new_revision)
            || options.refused
        {
            self.roll_out(&mut next, generation, options.refused, &time);
        }
        self.body = next;
        self.version = version;
        let etag = self.etag_for(version);
        self.body.insert("etag".into(), Value::String(etag));
        self.settling = (!options.settle_after.is_zero()).then(|| Settling {
            until: now + options.settle_after,
            observed_generation: Value::String(previous_generation.to_string()),
        });
        Some(ChangeRecord {
            seq: 0,
            time,
            resource: self.name(),
            collection: self.kind.collection().to_string(),
            by: actor.principal.clone(),
            client: actor.client.clone(),
            source: actor.source,
            method: actor.method.clone(),
            fields,
            generation,
        })
    }

    /// `next` with this resource's output fields (and only those) in place of its own.
    pub fn with_output_fields(&self, next: Map<String, Value>) -> Map<String, Value> {
        let mut merged: Map<String, Value> = next
            .into_iter()
            .filter(|(k, _)| !self.kind.is_output_field(k))
            .collect();
        for (key, value) in &self.body {
            if self.kind.is_output_field(key) {
                merged.insert(key.clone(), value.clone());
            }
        }
        merged
    }

    /// A new revision (services, worker pools) or execution (jobs) for a template change;
    /// when refused by Binary Authorization it never becomes ready.
    fn roll_out(
        &mut self,
        next: &mut Map<String, Value>,
        generation: i64,
        refused: bool,
        time: &str,
    ) {
        let image = self.kind.image(next).unwrap_or("").to_string();
        match self.kind {
            Kind::Service | Kind::WorkerPool => {
                let revision = revision_name(&self.id, generation);
                next.insert(
                    "latestCreatedRevision".into(),
                    Value::String(revision.clone()),
                );
                self.revisions.push((revision.clone(), image.clone()));
                if refused {
                    set_conditions(next, self.kind, Some((&revision, &image)), time);
                } else {
                    next.insert("latestReadyRevision".into(), Value::String(revision));
                    set_conditions(next, self.kind, None, time);
                }
            }
            Kind::Job => {
                if refused {
                    let execution = execution_name(&self.id, generation);
                    let count = next
                        .get("executionCount")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    next.insert("executionCount".into(), json!(count + 1));
                    next.insert(
                        "latestCreatedExecution".into(),
                        json!({"name": execution, "createTime": time,
                               "completionStatus": "EXECUTION_FAILED"}),
                    );
                    set_conditions(next, self.kind, Some((&execution, &image)), time);
                } else {
                    set_conditions(next, self.kind, None, time);
                }
            }
        }
    }
}

/// Cloud Run's message for a deploy refused by Binary Authorization.
pub fn unauthorized_image_message(revision: &str, image: &str) -> String {
    format!(
        "Revision {revision} uses an unauthorized container image. \
         Container image {image} is not authorized by policy."
    )
}

/// Sets `terminalCondition` and `conditions`: all succeeded, or the latest deploy refused
/// with `CONTAINER_IMAGE_UNAUTHORIZED` (`blocked = (revision or execution, image)`).
pub fn set_conditions(
    body: &mut Map<String, Value>,
    kind: Kind,
    blocked: Option<(&str, &str)>,
    time: &str,
) {
    let succeeded = |kind_of: &str| json!({"type": kind_of, "state": "CONDITION_SUCCEEDED", "lastTransitionTime": time});
    let (terminal, conditions) = match blocked {
        None => {
            let conditions = match kind {
                Kind::Service => vec![succeeded("RoutesReady"), succeeded("ConfigurationsReady")],
                Kind::WorkerPool => vec![succeeded("ConfigurationsReady")],
                Kind::Job => Vec::new(),
            };
            (succeeded("Ready"), conditions)
        }
        Some((revision, image)) => {
            let failed = |kind_of: &str| {
                json!({
                    "type": kind_of,
                    "state": "CONDITION_FAILED",
                    "message": unauthorized_image_message(revision, image),
                    "lastTransitionTime": time,
                    "severity": "ERROR",
                    "reason": "CONTAINER_IMAGE_UNAUTHORIZED",
                })
            };
            let conditions = match kind {
                Kind::Service => vec![succeeded("RoutesReady"), failed("ConfigurationsReady")],
                Kind::WorkerPool => vec![failed("ConfigurationsReady")],
                Kind::Job => vec![failed("ExecutionsReady")],
            };
            (failed("Ready"), conditions)
        }
    };
    body.insert("terminalCondition".into(), terminal);
    if conditions.is_empty() {
        body.remove("conditions");
    } else {
        body.insert("conditions".into(), Value::Array(conditions));
    }
}

/// `checkout-00003-kqz`: a revision name derived from the service and generation.
pub fn revision_name(id: &str, generation: i64) -> String {
    format!("{id}-{generation:05}-{}", suffix(&(id, generation), 3))
}

/// `nightly-billing-x7k2p`: an execution name derived from the job and generation.
pub fn execution_name(id: &str, generation: i64) -> String {
    format!("{id}-{}", suffix(&(id, generation, "execution"), 5))
}

/// A deterministic lowercase suffix of `len` letters and digits derived from `seed`.
fn suffix(seed: &impl Hash, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut hasher = DefaultHasher::new();
    seed.hash(&mut hasher);
    let mut bits = hasher.finish();
    (0..len)
        .map(|_| {
            let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char;
            bits /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// `generation` of a stored body (a JSON string, or a number in hand-written seeds).
pub fn generation_of(body: &Map<String, Value>) -> i64 {
    match body.get("generation") {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The version an etag encodes, if it is one of ours.
pub fn etag_version(etag: &str) -> Option<i64> {
    let inner = etag.trim_matches('"');
    let (version, _) = inner.split_once('/')?;
    let bytes = URL_SAFE_NO_PAD.decode(version).ok()?;
    String::from_utf8(bytes).ok()?.parse().ok()
}

/// Dotted paths of the user-visible fields that differ; objects are compared key by key,
/// arrays and scalars as a whole.
fn changed_fields(kind: Kind, old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let skip = |key: &str| kind.is_output_field(key);
    diff_objects(old, new, "", &skip, &mut out);
    out
}

fn diff_objects(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    prefix: &str,
    skip: &dyn Fn(&str) -> bool,
    out: &mut Vec<String>,
) {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        if skip(key) {
            continue;
        }
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (old.get(key), new.get(key)) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                diff_objects(a, b, &path, &|_| false, out)
            }
            (a, b) if a != b => out.push(path),
            _ => {}
        }
    }
}

/// A long-running operation returned by a write.
#[derive(Clone, Debug)]
pub struct Operation {
    /// `projects/{id}/locations/{l}/operations/{uuid}`.
    pub name: String,
    /// The kind of the resource written.
    pub kind: Kind,
    /// The resource as it was when the operation started.
    pub metadata: Map<String, Value>,
    /// When the operation is done.
    pub done_at: Instant,
    /// The resource after the change, or the error the operation ends with.
    pub outcome: Result<Map<String, Value>, ApiError>,
}

impl Operation {
    /// The Operation JSON as of `now`.
    pub fn render(&self, now: Instant) -> Value {
        let typed = |resource: &Map<String, Value>| {
            let mut out = Map::new();
            out.insert("@type".into(), Value::String(self.kind.type_url().into()));
            out.extend(resource.clone());
            Value::Object(out)
        };
        let mut op = Map::new();
        op.insert("name".into(), Value::String(self.name.clone()));
        op.insert("metadata".into(), typed(&self.metadata));
        let done = now >= self.done_at;
        op.insert("done".into(), Value::Bool(done));
        if done {
            match &self.outcome {
                Ok(resource) => {
                    op.insert("response".into(), typed(resource));
                }
                Err(error) => {
                    op.insert("error".into(), error.operation_error());
                }
            }
        }
        Value::Object(op)
    }
}

/// One (project, region, kind) collection, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Collection {
    items: Vec<Resource>,
    index: HashMap<String, usize>,
}

impl Collection {
    /// Resources oldest first.
    pub fn items(&self) -> &[Resource] {
        &self.items
    }

    fn reorder(&mut self) {
        self.items.sort_by_key(|item| item.created);
        self.index.clear();
        for (position, item) in self.items.iter_mut().enumerate() {
            item.seq = position as u64 + 1;
            self.index.insert(item.id.clone(), position);
        }
    }
}

/// Key of a collection: (project id, region, kind).
pub type CollectionKey = (String, String, Kind);

/// What page of a list to answer.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest<'a> {
    /// Largest number of items.
    pub page_size: usize,
    /// Continue after this token's position; `None`: the first page.
    pub token: Option<&'a str>,
    /// Include resources being deleted.
    pub show_deleted: bool,
}

/// A page of a list.
pub struct Page {
    /// Rendered resources, newest first.
    pub items: Vec<Value>,
    /// The token of the next page, when there is one.
    pub next_page_token: Option<String>,
}

/// The whole emulated estate.
#[derive(Clone, Debug, Default)]
pub struct Store {
    projects: BTreeMap<String, Project>,
    numbers: HashMap<String, String>,
    collections: HashMap<CollectionKey, Collection>,
    operations: HashMap<String, Operation>,
    audit: Vec<ChangeRecord>,
    next_audit: u64,
}

impl Store {
    /// Adds a project (replacing one with the same id).
    pub fn add_project(&mut self, project: Project) {
        self.numbers
            .insert(project.number.clone(), project.id.clone());
        self.projects.insert(project.id.clone(), project);
    }

    /// The project with this id or number.
    pub fn project(&self, id_or_number: &str) -> Option<&Project> {
        let id = self
            .numbers
            .get(id_or_number)
            .map(String::as_str)
            .unwrap_or(id_or_number);
        self.projects.get(id)
    }

    /// Mutable access to a project.
    pub fn project_mut(&mut self, id_or_number: &str) -> Option<&mut Project> {
        let id = self
            .numbers
            .get(id_or_number)
            .cloned()
            .unwrap_or_else(|| id_or_number.to_string());
        self.projects.get_mut(&id)
    }

    /// Every project, by id.
    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.projects.values()
    }

    /// The project, or 404.
    pub fn require_project(&self, id_or_number: &str) -> Result<&Project, ApiError> {
        self.project(id_or_number)
            .ok_or_else(|| ApiError::not_found(format!("Project '{id_or_number}' not found.")))
    }

    /// The project and a Cloud Run region (any region of the catalogue, or one the seed
    /// gives the project), or 403 / 404 / 400.
    pub fn require_location(&self, project: &str, location: &str) -> Result<&Project, ApiError> {
        let found = self.require_project(project)?;
        if !regions::is_catalogued(location) && !found.regions.iter().any(|r| r == location) {
            return Err(assumed::unknown_location_error(
                project,
                location,
                regions::is_region_name(location),
            ));
        }
        Ok(found)
    }

    /// Inserts a resource into its collection (call [`Store::reorder`] after a batch).
    /// Fails with the id when it is taken.
    pub fn insert(&mut self, resource: Resource) -> Result<(), String> {
        let key = (
            resource.project.clone(),
            resource.location.clone(),
            resource.kind,
        );
        let collection = self.collections.entry(key).or_default();
        if collection.index.contains_key(&resource.id) {
            return Err(resource.id);
        }
        collection
            .index
            .insert(resource.id.clone(), collection.items.len());
        collection.items.push(resource);
        Ok(())
    }

    /// Re-sorts every collection by creation time after a batch of inserts.
    pub fn reorder(&mut self) {
        for collection in self.collections.values_mut() {
            collection.reorder();
        }
    }

    /// The collection of this kind in this project (id) and region.
    pub fn collection(&self, project_id: &str, location: &str, kind: Kind) -> Option<&Collection> {
        self.collections
            .get(&(project_id.to_string(), location.to_string(), kind))
    }

    /// A resource, or 404 with Cloud Run's message.
    pub fn resource(
        &self,
        kind: Kind,
        project: &str,
        location: &str,
        id: &str,
    ) -> Result<&Resource, ApiError> {
        let project_id = self.require_location(project, location)?.id.clone();
        self.collections
            .get(&(project_id, location.to_string(), kind))
            .and_then(|c| c.index.get(id).map(|&i| &c.items[i]))
            .ok_or_else(|| not_found_resource(kind, project, location, id))
    }

    /// A resource for writing, or 404.
    pub fn resource_mut(
        &mut self,
        kind: Kind,
        project: &str,
        location: &str,
        id: &str,
    ) -> Result<&mut Resource, ApiError> {
        let project_id = self.require_location(project, location)?.id.clone();
        self.collections
            .get_mut(&(project_id, location.to_string(), kind))
            .and_then(|c| c.index.get(id).copied().map(|i| &mut c.items[i]))
            .ok_or_else(|| not_found_resource(kind, project, location, id))
    }

    /// Looks a resource up by its full name (project id or number).
    pub fn resource_by_name_mut(&mut self, name: &str) -> Result<&mut Resource, ApiError> {
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            ["projects", project, "locations", location, collection, id] => {
                let kind = Kind::from_collection(collection).ok_or_else(|| {
                    ApiError::invalid_field("name", format!("'{collection}' is not a Cloud Run collection"))
                })?;
                self.resource_mut(kind, project, location, id)
            }
            _ => Err(ApiError::invalid_field(
                "name",
                format!("'{name}' is not a resource name (projects/P/locations/L/services|jobs|workerPools/ID)"),
            )),
        }
    }

    /// One page of a collection, newest first, starting after the token's position.
    pub fn list(
        &self,
        kind: Kind,
        project: &str,
        location: &str,
        request: &PageRequest<'_>,
        now: Instant,
    ) -> Result<Page, ApiError> {
        let PageRequest {
            page_size,
            token,
            show_deleted,
        } = *request;
        let project_id = self.require_location(project, location)?.id.clone();
        let scope = page_scope(&project_id, location, kind, show_deleted);
        let before = match token {
            None => u64::MAX,
            Some(token) => decode_page_token(token, &scope)?,
        };
        let items = self
            .collection(&project_id, location, kind)
            .map(Collection::items)
            .unwrap_or(&[]);
        let end = items.partition_point(|r| r.seq < before);
        let mut page = Vec::with_capacity(page_size.min(end));
        let mut last_seq = None;
        let mut more = false;
        for resource in items[..end].iter().rev() {
            if resource.is_deleted() && !show_deleted {
                continue;
            }
            if page.len() == page_size {
                more = true;
                break;
            }
            page.push(Value::Object(resource.render(now)));
            last_seq = Some(resource.seq);
        }
        let next_page_token = match (more, last_seq) {
            (true, Some(seq)) => Some(encode_page_token(&scope, seq)),
            _ => None,
        };
        Ok(Page {
            items: page,
            next_page_token,
        })
    }

    /// Records a change in the audit log.
    pub fn record(&mut self, mut change: ChangeRecord) {
        self.next_audit += 1;
        change.seq = self.next_audit;
        self.audit.push(change);
    }

    /// Every change since the store was loaded, oldest first.
    pub fn audit(&self) -> &[ChangeRecord] {
        &self.audit
    }

    /// Stores an operation.
    pub fn add_operation(&mut self, operation: Operation) {
        self.operations.insert(operation.name.clone(), operation);
    }

    /// An operation by (project id or number, location, id), or 404.
    pub fn operation(
        &self,
        project: &str,
        location: &str,
        id: &str,
    ) -> Result<&Operation, ApiError> {
        let project_id = &self.require_location(project, location)?.id;
        let name = format!("projects/{project_id}/locations/{location}/operations/{id}");
        self.operations.get(&name).ok_or_else(|| {
            ApiError::not_found(format!(
                "Operation 'projects/{project}/locations/{location}/operations/{id}' not found."
            ))
        })
    }

    /// A Binary Authorization policy by name `projects/{p}/platforms/cloudRun/policies/{id}`
    /// (project id or number); Google's managed policy always exists.
    pub fn policy_exists(&self, name: &str) -> bool {
        name == BCID_MANAGED_POLICY || self.policy(name).is_some()
    }

    /// A seeded policy's JSON by name.
    fn policy(&self, name: &str) -> Option<&Map<String, Value>> {
        let (project, id) = orgpolicy::policy_parts(name)?;
        self.project(project)?.policies.get(id)
    }

    /// Whether two policy names name the same policy (a project by id or by number).
    pub fn same_policy(&self, a: &str, b: &str) -> bool {
        let canonical = |name: &str| match orgpolicy::policy_parts(name) {
            Some((project, id)) => {
                let project = self.project(project).map_or(project, |p| p.id.as_str());
                format!("projects/{project}/platforms/cloudRun/policies/{id}")
            }
            None => name.to_string(),
        };
        canonical(a) == canonical(b)
    }

    /// Whether Binary Authorization lets a resource of `project` with this setting run
    /// `image`: always when disabled; else when the policy's `authorizedImages` (the
    /// project's `defaultPolicyAuthorizedImages` for `useDefault`) match it, or when the
    /// policy lists none.
    pub fn image_authorized(
        &self,
        project: &str,
        setting: &BinaryAuthorization,
        image: &str,
    ) -> bool {
        let patterns: Option<Vec<String>> = match setting {
            BinaryAuthorization::Disabled => return true,
            BinaryAuthorization::Default => self
                .project(project)
                .and_then(|p| p.default_policy_authorized_images.clone()),
            BinaryAuthorization::Policy(name) if name == BCID_MANAGED_POLICY => {
                if assumed::BCID_POLICY_AUTHORIZES_EVERY_IMAGE {
                    return true;
                }
                Some(Vec::new())
            }
            BinaryAuthorization::Policy(name) => self
                .policy(name)
                .and_then(|p| p.get(AUTHORIZED_IMAGES))
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                }),
        };
        patterns.is_none_or(|patterns| {
            patterns
                .iter()
                .any(|pattern| assumed::image_matches(pattern, image))
        })
    }

    /// The organization policy's verdict on a resource of `project` carrying `value`
    /// after a write: `Err` (400) when `run.allowedBinaryAuthorizationPolicies` refuses it.
    pub fn check_org_policy(
        &self,
        project: &str,
        resource: &str,
        value: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(found) = self.project(project) else {
            return Ok(());
        };
        let setting = BinaryAuthorization::of(value);
        if found
            .allowed_policies
            .allows(&setting, |a, b| self.same_policy(a, b))
        {
            Ok(())
        } else {
            Err(orgpolicy::refused(&found.number, resource, &setting))
        }
    }
}

fn not_found_resource(kind: Kind, project: &str, location: &str, id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Resource '{id}' of kind '{}' in region '{location}' in project '{project}' does not exist.",
        kind.label()
    ))
}

fn page_scope(project_id: &str, location: &str, kind: Kind, show_deleted: bool) -> String {
    format!(
        "{project_id}/{location}/{}/{show_deleted}",
        kind.collection()
    )
}

fn encode_page_token(scope: &str, after_seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{after_seq}|{scope}"))
}

/// The position a page token continues from; 400 when it is not one of ours or was issued
/// for other list parameters.
fn decode_page_token(token: &str, scope: &str) -> Result<u64, ApiError> {
    let invalid = || ApiError::invalid_field("page_token", "The page token is invalid.");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (seq, token_scope) = text.split_once('|').ok_or_else(invalid)?;
    if token_scope != scope {
        return Err(ApiError::invalid_field(
            "page_token",
            "The page token was issued for a different list request; all other parameters must match.",
        ));
    }
    seq.parse().map_err(|_| invalid())
}

/// A token for the v1 locations list: the offset of the next item.
pub fn encode_offset_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("locations|{offset}"))
}

/// The offset a v1 locations page token continues from.
pub fn decode_offset_token(token: &str) -> Result<usize, ApiError> {
    let invalid = || ApiError::invalid_field("page_token", "The page token is invalid.");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix("locations|")
        .and_then(|n| n.parse().ok())
        .ok_or_else(invalid)
}

/// Checks a `binaryAuthorization` value against the API's rules: an object with at most
/// one of `useDefault`/`policy`, an existing named policy, and no breakglass
/// justification when Binary Authorization is disabled. `field` names it in errors.
pub fn validate_binary_authorization(
    value: Option<&Value>,
    store: &Store,
    field: &str,
) -> Result<(), ApiError> {
    let object = match value {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(object)) => object,
        Some(other) => {
            return Err(ApiError::invalid_field(
                field,
                format!("Invalid value at '{field}': expected an object, got {other}."),
            ))
        }
    };
    for key in object.keys() {
        if !matches!(
            key.as_str(),
            "useDefault" | "policy" | "breakglassJustification"
        ) {
            return Err(ApiError::invalid_payload(format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at '{field}': Cannot find field."
            )));
        }
    }
    let use_default = match object.get("useDefault") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(ApiError::invalid_field(
                &format!("{field}.useDefault"),
                format!("Invalid value at '{field}.use_default' (TYPE_BOOL), {other}"),
            ))
        }
    };
    let policy = match object.get("policy") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(ApiError::invalid_field(
                &format!("{field}.policy"),
                format!("Invalid value at '{field}.policy' (TYPE_STRING), {other}"),
            ))
        }
    };
    let breakglass = match object.get("breakglassJustification") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(ApiError::invalid_field(
                &format!("{field}.breakglassJustification"),
                format!(
                    "Invalid value at '{field}.breakglass_justification' (TYPE_STRING), {other}"
                ),
            ))
        }
    };
    if use_default.is_some() && policy.is_some() {
        return Err(ApiError::invalid_field(
            field,
            format!(
                "Invalid value at '{field}' (oneof), oneof field 'binauthz_method' is already set. \
                 Cannot set 'policy'"
            ),
        ));
    }
    if let Some(policy) = policy {
        let well_formed = matches!(
            policy.split('/').collect::<Vec<_>>().as_slice(),
            ["projects", p, "platforms", "cloudRun", "policies", id] if !p.is_empty() && !id.is_empty()
        );
        if !well_formed {
            return Err(ApiError::invalid_field(
                &format!("{field}.policy"),
                format!(
                    "Invalid policy name '{policy}': expected projects/PROJECT/platforms/cloudRun/policies/POLICY."
                ),
            ));
        }
        if !store.policy_exists(policy) {
            return Err(ApiError::invalid_field(
                &format!("{field}.policy"),
                assumed::unknown_policy_message(policy),
            ));
        }
    }
    let enabled = use_default == Some(true) || policy.is_some();
    if breakglass.is_some_and(|j| !j.is_empty()) && !assumed::breakglass_allowed(enabled) {
        return Err(ApiError::invalid_field(
            &format!("{field}.breakglassJustification"),
            "breakglassJustification must be empty when Binary Authorization is disabled \
             (useDefault is false or absent and no policy is set).",
        ));
    }
    Ok(())
}

/// A simulated user deploy (`gcloud run deploy`): what changes.
#[derive(Clone, Debug, Default)]
pub struct Deploy {
    /// The new image; `None` derives a new tag from the current image.
    pub image: Option<String>,
    /// `None`: Binary Authorization is kept; `Some(None)`: cleared; `Some(Some(v))`: set to `v`.
    pub binary_authorization: Option<Option<Value>>,
    /// Binary Authorization refuses the image: the new revision never becomes ready.
    pub refused: bool,
}

impl Store {
    /// Applies a simulated deploy to the resource `name` and records it in the audit log.
    /// A service or worker pool deploy whose image the resulting policy does not authorize
    /// (or any deploy with `refused`) is refused: the new revision never becomes ready. A
    /// job deploy always succeeds (its next execution is what fails), unless `refused`
    /// asks for a failed execution at once. Fails when the resource does not exist, or
    /// when `refused` is asked for a resource whose Binary Authorization would be disabled.
    pub fn deploy(
        &mut self,
        name: &str,
        deploy: Deploy,
        actor: &Actor,
        now: Instant,
    ) -> Result<Deployed, ApiError> {
        let resource = self.resource_by_name_mut(name)?;
        let kind = resource.kind;
        let project = resource.project.clone();
        let mut next = resource.body().clone();
        let image = match deploy.image {
            Some(image) => image,
            None => {
                let current = kind.image(&next).unwrap_or("image");
                let repository = current.split('@').next().unwrap_or(current);
                let repository = match repository.rsplit_once(':') {
                    Some((repo, tag)) if !tag.contains('/') => repo,
                    _ => repository,
                };
                format!("{repository}:deploy-{}", resource.generation() + 1)
            }
        };
        kind.set_image(&mut next, &image);
        match deploy.binary_authorization {
            None => {}
            Some(None) => {
                next.remove("binaryAuthorization");
            }
            Some(Some(value)) => {
                next.insert("binaryAuthorization".into(), value);
            }
        }
        let value = next.get("binaryAuthorization").cloned();
        validate_binary_authorization(value.as_ref(), self, "binaryAuthorization")?;
        let setting = BinaryAuthorization::of(value.as_ref());
        if deploy.refused && setting == BinaryAuthorization::Disabled {
            return Err(ApiError::new(
                Code::FailedPrecondition,
                format!(
                    "'{name}' has Binary Authorization disabled: a deploy cannot be refused by it."
                ),
            ));
        }
        let refused = deploy.refused
            || (kind != Kind::Job && !self.image_authorized(&project, &setting, &image));
        let options = CommitOptions {
            force_new_revision: true,
            refused,
            settle_after: Duration::ZERO,
        };
        let resource = self.resource_by_name_mut(name)?;
        let change = resource.commit(next, actor, &options, now);
        if let Some(change) = &change {
            self.record(change.clone());
        }
        Ok(Deployed {
            change: change.map(|mut c| {
                c.seq = self.next_audit;
                c
            }),
            refused,
        })
    }

    /// Sends all traffic of a service to one of its revisions (a traffic change or a
    /// rollback), recorded in the audit log. When the service's policy does not authorize
    /// the revision's image, the new `traffic` is kept but the previous revisions keep
    /// serving and the conditions say `CONTAINER_IMAGE_UNAUTHORIZED`.
    pub fn route_traffic(
        &mut self,
        name: &str,
        revision: &str,
        actor: &Actor,
        now: Instant,
    ) -> Result<Deployed, ApiError> {
        let resource = self.resource_by_name_mut(name)?;
        if resource.kind != Kind::Service {
            return Err(ApiError::invalid_field(
                "name",
                format!("'{name}' is not a service: traffic applies to services only."),
            ));
        }
        let image = resource
            .revision_image(revision)
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Revision '{revision}' of '{name}' is not known to the emulator (known: {}).",
                    resource
                        .revisions
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let project = resource.project.clone();
        let setting = BinaryAuthorization::of(resource.body().get("binaryAuthorization"));
        let authorized = self.image_authorized(&project, &setting, &image);
        let resource = self.resource_by_name_mut(name)?;
        let mut next = resource.body().clone();
        let traffic = json!([{
            "type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
            "revision": revision,
            "percent": 100,
        }]);
        next.insert("traffic".into(), traffic.clone());
        let change = resource.commit(next, actor, &CommitOptions::default(), now);
        let time = resource
            .body
            .get("updateTime")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if authorized {
            resource.body.insert("trafficStatuses".into(), traffic);
            set_conditions(&mut resource.body, Kind::Service, None, &time);
        } else {
            set_route_refused(&mut resource.body, revision, &image, &time);
        }
        if let Some(change) = &change {
            self.record(change.clone());
        }
        Ok(Deployed {
            change: change.map(|mut c| {
                c.seq = self.next_audit;
                c
            }),
            refused: !authorized,
        })
    }

    /// Runs a job once: a new execution, failed with `CONTAINER_IMAGE_UNAUTHORIZED` when
    /// the job's policy does not authorize its image. Not a change of the job (no new
    /// generation, not in the audit log). Answers the execution.
    pub fn execute(&mut self, name: &str, now_time: &str) -> Result<(Value, bool), ApiError> {
        let resource = self.resource_by_name_mut(name)?;
        if resource.kind != Kind::Job {
            return Err(ApiError::invalid_field(
                "name",
                format!("'{name}' is not a job: only jobs are executed."),
            ));
        }
        let image = resource
            .kind
            .image(resource.body())
            .unwrap_or("")
            .to_string();
        let project = resource.project.clone();
        let setting = BinaryAuthorization::of(resource.body().get("binaryAuthorization"));
        let authorized = self.image_authorized(&project, &setting, &image);
        let resource = self.resource_by_name_mut(name)?;
        let count = resource
            .body
            .get("executionCount")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        let execution = execution_name(&resource.id, 1000 + count);
        let status = if authorized {
            "EXECUTION_SUCCEEDED"
        } else {
            "EXECUTION_FAILED"
        };
        let record = json!({"name": execution, "createTime": now_time, "completionStatus": status});
        resource.body.insert("executionCount".into(), json!(count));
        resource
            .body
            .insert("latestCreatedExecution".into(), record.clone());
        let blocked = (!authorized).then_some((execution.as_str(), image.as_str()));
        set_conditions(&mut resource.body, Kind::Job, blocked, now_time);
        Ok((record, !authorized))
    }
    /// Sets (`Some`) or clears (`None`) a resource's `binaryAuthorization` as someone
    /// editing it by hand would, recording the change.
    pub fn set_binary_authorization(
        &mut self,
        name: &str,
        value: Option<Value>,
        actor: &Actor,
        now: Instant,
    ) -> Result<Option<ChangeRecord>, ApiError> {
        validate_binary_authorization(value.as_ref(), self, "binaryAuthorization")?;
        let resource = self.resource_by_name_mut(name)?;
        let mut next = resource.body().clone();
        match value {
            Some(value) if !value.is_null() => {
                next.insert("binaryAuthorization".into(), value);
            }
            _ => {
                next.remove("binaryAuthorization");
            }
        }
        let change = resource.commit(next, actor, &CommitOptions::default(), now);
        if let Some(change) = &change {
            self.record(change.clone());
        }
        Ok(change.map(|mut c| {
            c.seq = self.next_audit;
            c
        }))
    }
}

/// What a simulated deploy or traffic change did.
#[derive(Clone, Debug)]
pub struct Deployed {
    /// The change recorded (none when nothing changed).
    pub change: Option<ChangeRecord>,
    /// Binary Authorization refused it: the previous revision keeps serving.
    pub refused: bool,
}

/// Conditions of a service whose traffic change Binary Authorization refused.
fn set_route_refused(body: &mut Map<String, Value>, revision: &str, image: &str, time: &str) {
    let failed = |kind_of: &str| {
        json!({
            "type": kind_of,
            "state": "CONDITION_FAILED",
            "message": unauthorized_image_message(revision, image),
            "lastTransitionTime": time,
            "severity": "ERROR",
            "reason": "CONTAINER_IMAGE_UNAUTHORIZED",
        })
    };
    let succeeded = json!({"type": "ConfigurationsReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": time});
    body.insert("terminalCondition".into(), failed("Ready"));
    body.insert(
        "conditions".into(),
        Value::Array(vec![failed("RoutesReady"), succeeded]),
    );
}

/// A `ApiError` for a resource that is being deleted.
pub fn deleted_error(name: &str) -> ApiError {
    ApiError::new(
        Code::FailedPrecondition,
        format!("Resource '{name}' is being deleted and cannot be updated."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_round_trips_its_version() {
        let body = Map::new();
        let resource = Resource::new(
            Kind::Service,
            "p",
            "us-central1",
            "s",
            Timestamp::UNIX_EPOCH,
            body,
        );
        let etag = resource.body()["etag"].as_str().unwrap().to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        assert_eq!(etag_version(&etag), Some(resource.version()));
        assert_eq!(etag_version("garbage"), None);
    }

    #[test]
    fn changed_fields_are_leaf_paths_without_output_fields() {
        let old = json!({"generation": "1", "labels": {"a": "1"}, "binaryAuthorization": {"useDefault": true}});
        let new = json!({"generation": "2", "labels": {"a": "1"}, "binaryAuthorization": {"policy": "x"}});
        let fields = changed_fields(
            Kind::Service,
            old.as_object().unwrap(),
            new.as_object().unwrap(),
        );
        assert_eq!(
            fields,
            [
                "binaryAuthorization.policy",
                "binaryAuthorization.useDefault"
            ]
        );
    }

    #[test]
    fn set_image_creates_the_template_path_for_each_kind() {
        let mut body = Map::new();
        Kind::Job.set_image(&mut body, "img:1");
        assert_eq!(Kind::Job.image(&body), Some("img:1"));
        assert_eq!(
            body["template"]["template"]["containers"][0]["image"],
            "img:1"
        );
        let mut body = Map::new();
        Kind::Service.set_image(&mut body, "img:2");
        assert_eq!(body["template"]["containers"][0]["image"], "img:2");
    }
}
