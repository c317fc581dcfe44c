//! One Cloud Run resource as the API serves it, and its server-managed bookkeeping:
//! generation, etag, revisions and executions, conditions, the fields a change touched.

use super::*;

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
    pub(super) seq: u64,
    /// The JSON served, including server-managed fields.
    pub(super) body: Map<String, Value>,
    /// The version encoded in the etag: `updateTime` in microseconds since the epoch.
    pub(super) version: i64,
    pub(super) settling: Option<Settling>,
    /// Revisions (services, worker pools) known to the emulator, oldest first. Served by
    /// `revisions.get`; not part of the resource's JSON nor of a dump.
    pub(super) revisions: Vec<KnownRevision>,
}

/// A revision of a service or worker pool, as the emulator remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownRevision {
    /// Short name (`checkout-00003-kqz`).
    pub name: String,
    /// Its container image.
    pub image: String,
    /// `createTime` (RFC 3339).
    pub created: String,
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
            // The latest revision came with the resource's last change (a seed's deploy).
            let created = resource
                .body
                .get("updateTime")
                .and_then(Value::as_str)
                .map_or_else(|| created.to_string(), str::to_string);
            resource.revisions.push(KnownRevision {
                name: short_name(revision).to_string(),
                image: image.to_string(),
                created,
            });
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

    /// Records that revision `name` runs `image` (a seed's earlier revision, created with
    /// the resource).
    pub fn remember_revision(&mut self, name: &str, image: &str) {
        let name = short_name(name);
        if !self.revisions.iter().any(|r| r.name == name) {
            self.revisions.insert(
                0,
                KnownRevision {
                    name: name.to_string(),
                    image: image.to_string(),
                    created: self.created.to_string(),
                },
            );
        }
    }

    /// The image of a known revision.
    pub fn revision_image(&self, name: &str) -> Option<&str> {
        self.revision(name).map(|r| r.image.as_str())
    }

    /// A known revision, by short or full name.
    pub fn revision(&self, name: &str) -> Option<&KnownRevision> {
        let name = short_name(name);
        self.revisions.iter().find(|r| r.name == name)
    }

    /// The `Revision` JSON `revisions.get` serves: name, uid, generation, createTime,
    /// updateTime, the parent (`service` or `workerPool`) and the containers.
    pub fn render_revision(&self, name: &str) -> Option<Value> {
        let revision = self.revision(name)?;
        let parent = match self.kind {
            Kind::WorkerPool => "workerPool",
            _ => "service",
        };
        let mut hasher = DefaultHasher::new();
        (self.name(), &revision.name).hash(&mut hasher);
        let mut body = json!({
            "name": format!("{}/revisions/{}", self.name(), revision.name),
            "uid": format!("{:016x}", hasher.finish()),
            "generation": "1",
            "createTime": revision.created,
            "updateTime": revision.created,
            "containers": [{"image": revision.image}],
        });
        if let Some(object) = body.as_object_mut() {
            object.insert(parent.into(), Value::String(self.id.clone()));
        }
        Some(body)
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

    pub(super) fn etag_for(&self, version: i64) -> String {
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
    pub(super) fn roll_out(
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
                self.revisions.push(KnownRevision {
                    name: revision.clone(),
                    image: image.clone(),
                    created: time.to_string(),
                });
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

/// A condition `kind_of` in state `CONDITION_SUCCEEDED`.
pub(super) fn succeeded_condition(kind_of: &str, time: &str) -> Value {
    json!({"type": kind_of, "state": "CONDITION_SUCCEEDED", "lastTransitionTime": time})
}

/// A condition `kind_of` failed because Binary Authorization refused `image` of `revision`
/// (an execution for a job).
pub(super) fn unauthorized_condition(
    kind_of: &str,
    revision: &str,
    image: &str,
    time: &str,
) -> Value {
    json!({
        "type": kind_of,
        "state": "CONDITION_FAILED",
        "message": unauthorized_image_message(revision, image),
        "lastTransitionTime": time,
        "severity": "ERROR",
        "reason": "CONTAINER_IMAGE_UNAUTHORIZED",
    })
}

/// Sets `terminalCondition` and `conditions`: all succeeded, or the latest deploy refused
/// with `CONTAINER_IMAGE_UNAUTHORIZED` (`blocked = (revision or execution, image)`).
pub fn set_conditions(
    body: &mut Map<String, Value>,
    kind: Kind,
    blocked: Option<(&str, &str)>,
    time: &str,
) {
    let succeeded = |kind_of: &str| succeeded_condition(kind_of, time);
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
            let failed = |kind_of: &str| unauthorized_condition(kind_of, revision, image, time);
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

/// The last segment of a revision name (`projects/.../revisions/r` or `r`).
pub fn short_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
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
pub(super) fn suffix(seed: &impl Hash, len: usize) -> String {
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
pub(super) fn changed_fields(
    kind: Kind,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> Vec<String> {
    let mut out = Vec::new();
    let skip = |key: &str| kind.is_output_field(key);
    diff_objects(old, new, "", &skip, &mut out);
    out
}

pub(super) fn diff_objects(
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
