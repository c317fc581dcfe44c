//! The resource JSON of a seed entry: every server-managed field (uid, generation, times,
//! etag, revisions, executions, conditions, routing) filled in when the seed leaves it out.

use super::*;

/// 2025-01-01T00:00:00Z: where default creation times start.
pub(super) fn default_epoch() -> Timestamp {
    Timestamp::from_second(1_735_689_600).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Fields whose misspelling (snake_case, wrong case) would otherwise pass through silently.
pub(super) const CHECKED_FIELDS: &[&str] = &[
    "binaryAuthorization",
    "labels",
    "annotations",
    "template",
    "createTime",
    "updateTime",
    "deleteTime",
    "terminalCondition",
    "conditions",
    "generation",
    "observedGeneration",
    "launchStage",
    "latestReadyRevision",
    "latestCreatedRevision",
    "deployBlocked",
];

pub(super) fn normalized(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The resource JSON of a seed entry, with every server-managed field filled in when
/// absent, and its creation time.
pub(super) fn build_body(
    kind: Kind,
    project: &str,
    number: &str,
    region: &str,
    entry: &ResourceSeed,
    default_created: Timestamp,
) -> Result<(Map<String, Value>, Timestamp), String> {
    let id = &entry.name;
    check_resource_id(id)?;
    let mut body = entry.fields.clone();
    check_spellings(&body)?;
    set_seed_image(kind, &mut body, entry)?;
    let name = format!(
        "projects/{project}/locations/{region}/{}/{id}",
        kind.collection()
    );
    body.insert("name".into(), Value::String(name.clone()));
    let times = fill_times(&mut body, default_created)?;
    // A blocked deploy made the second generation; the first is the one serving.
    let default_generation = if entry.deploy_blocked.is_some() { 2 } else { 1 };
    let generation = fill_generations(&mut body, default_generation)?;
    fill_authorship(&mut body, &name);
    if entry.deleted {
        fill_deletion(&mut body, times.updated);
    }
    let time = times.updated.to_string();
    let blocked_image = entry.deploy_blocked.as_ref().map(|b| b.image.as_str());
    match kind {
        Kind::Service | Kind::WorkerPool => {
            fill_revisions(&mut body, id, generation, blocked_image);
        }
        Kind::Job => fill_blocked_execution(&mut body, id, generation, blocked_image, &time),
    }
    if kind == Kind::Service {
        fill_service_routing(&mut body, id, number, region);
    }
    if kind == Kind::WorkerPool {
        fill_instance_splits(&mut body);
    }
    fill_conditions(&mut body, kind, blocked_image, &time);
    Ok((name_first(body), times.created))
}

/// Refuses a resource id Cloud Run would refuse.
pub(super) fn check_resource_id(id: &str) -> Result<(), String> {
    if is_resource_id(id) {
        Ok(())
    } else {
        Err(format!(
            "'{id}' is not a valid name: lowercase letters, digits and hyphens, starting with a \
             letter, not ending with a hyphen, at most 63 characters"
        ))
    }
}

/// Refuses a misspelling of a field that would otherwise pass through silently
/// ([`CHECKED_FIELDS`]).
pub(super) fn check_spellings(body: &Map<String, Value>) -> Result<(), String> {
    for key in body.keys() {
        if let Some(known) = CHECKED_FIELDS
            .iter()
            .find(|k| normalized(k) == normalized(key))
        {
            if key != known {
                return Err(format!(
                    "unknown field '{key}': Cloud Run spells it '{known}'"
                ));
            }
        }
    }
    Ok(())
}

/// Puts the entry's `image` (or, when its deploy was blocked, the refused image) into the
/// first container; the body must end up with an image somewhere.
pub(super) fn set_seed_image(
    kind: Kind,
    body: &mut Map<String, Value>,
    entry: &ResourceSeed,
) -> Result<(), String> {
    if let Some(image) = &entry.image {
        kind.set_image(body, image);
    }
    if let Some(blocked) = &entry.deploy_blocked {
        if body.contains_key("conditions") || body.contains_key("terminalCondition") {
            return Err(
                "give either deployBlocked or conditions/terminalCondition, not both".into(),
            );
        }
        kind.set_image(body, &blocked.image);
    }
    if kind.image(body).is_some() {
        return Ok(());
    }
    let hint = match misspellings(body, "image").as_slice() {
        [] => String::new(),
        keys => format!(
            " (unknown key `{}`: did you mean `image`?)",
            keys.join("`, `")
        ),
    };
    Err(format!(
        "needs an `image` (or a template with the image of its first container at {}){hint}",
        match kind {
            Kind::Job => "template.template.containers[0].image",
            _ => "template.containers[0].image",
        }
    ))
}

/// When a resource was created and last updated.
#[derive(Clone, Copy)]
pub(super) struct Times {
    pub(super) created: Timestamp,
    pub(super) updated: Timestamp,
}

/// `createTime` (default: `default_created`) and `updateTime` (default: the creation).
pub(super) fn fill_times(
    body: &mut Map<String, Value>,
    default_created: Timestamp,
) -> Result<Times, String> {
    let created = time_field(body, "createTime")?.unwrap_or(default_created);
    let updated = time_field(body, "updateTime")?.unwrap_or(created);
    body.insert("createTime".into(), Value::String(created.to_string()));
    body.insert("updateTime".into(), Value::String(updated.to_string()));
    Ok(Times { created, updated })
}

/// `generation` (default: `default_generation`, at least 1) and `observedGeneration`
/// (default: the generation), both as Cloud Run writes int64s: strings. Answers the
/// generation.
pub(super) fn fill_generations(
    body: &mut Map<String, Value>,
    default_generation: i64,
) -> Result<i64, String> {
    let generation = int_field(body, "generation")?.unwrap_or(default_generation);
    if generation < 1 {
        return Err(format!("generation must be at least 1, got {generation}"));
    }
    let observed = int_field(body, "observedGeneration")?.unwrap_or(generation);
    body.insert("generation".into(), Value::String(generation.to_string()));
    body.insert(
        "observedGeneration".into(),
        Value::String(observed.to_string()),
    );
    Ok(generation)
}

/// `uid` (derived from the name), `creator`, `launchStage` and `lastModifier` (the
/// creator), each when absent.
pub(super) fn fill_authorship(body: &mut Map<String, Value>, name: &str) {
    let defaults = [
        ("uid", Value::String(deterministic_uid(name))),
        ("creator", Value::String("deployer@example.com".into())),
        ("launchStage", Value::String("GA".into())),
    ];
    for (field, value) in defaults {
        body.entry(field).or_insert(value);
    }
    let creator = body.get("creator").cloned().unwrap_or(Value::Null);
    body.entry("lastModifier").or_insert(creator);
}

/// `deleteTime` (default: the last update) and `expireTime` (30 days later) of a deleted
/// resource, each when absent.
pub(super) fn fill_deletion(body: &mut Map<String, Value>, updated: Timestamp) {
    let deleted = body
        .entry("deleteTime")
        .or_insert_with(|| Value::String(updated.to_string()))
        .clone();
    let expire = deleted
        .as_str()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .unwrap_or(updated)
        + SignedDuration::from_hours(30 * 24);
    body.entry("expireTime")
        .or_insert(Value::String(expire.to_string()));
}

/// `latestCreatedRevision` (of this generation) and `latestReadyRevision` (the one before
/// when the deploy was blocked) of a service or worker pool, each when absent.
pub(super) fn fill_revisions(
    body: &mut Map<String, Value>,
    id: &str,
    generation: i64,
    blocked_image: Option<&str>,
) {
    let latest = state::revision_name(id, generation);
    let ready = if blocked_image.is_some() {
        state::revision_name(id, (generation - 1).max(1))
    } else {
        latest.clone()
    };
    body.entry("latestCreatedRevision")
        .or_insert(Value::String(latest));
    body.entry("latestReadyRevision")
        .or_insert(Value::String(ready));
}

/// A job whose deploy was blocked: its latest execution failed (unless the seed gives
/// one).
pub(super) fn fill_blocked_execution(
    body: &mut Map<String, Value>,
    id: &str,
    generation: i64,
    blocked_image: Option<&str>,
    time: &str,
) {
    if blocked_image.is_some() && !body.contains_key("latestCreatedExecution") {
        let execution = state::execution_name(id, generation);
        body.insert(
            "latestCreatedExecution".into(),
            json!({"name": execution, "createTime": time, "completionStatus": "EXECUTION_FAILED"}),
        );
        body.entry("executionCount").or_insert(json!(1));
    }
}

/// A worker pool's instances all on the latest revision (`instanceSplits` and
/// `instanceSplitStatuses`), each when absent.
pub(super) fn fill_instance_splits(body: &mut Map<String, Value>) {
    let latest = json!([{"type": "INSTANCE_SPLIT_ALLOCATION_TYPE_LATEST", "percent": 100}]);
    body.entry("instanceSplits").or_insert(latest.clone());
    body.entry("instanceSplitStatuses").or_insert(latest);
}

/// A service's `uri`, `urls` and all traffic to the latest revision, each when absent.
pub(super) fn fill_service_routing(
    body: &mut Map<String, Value>,
    id: &str,
    number: &str,
    region: &str,
) {
    let uri = format!("https://{id}-{number}.{region}.run.app");
    body.entry("uri").or_insert(Value::String(uri.clone()));
    body.entry("urls").or_insert(json!([uri]));
    let latest = json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]);
    body.entry("traffic").or_insert(latest.clone());
    body.entry("trafficStatuses").or_insert(latest);
}

/// Ready conditions, or those of a deploy Binary Authorization refused, unless the seed
/// gives conditions of its own.
pub(super) fn fill_conditions(
    body: &mut Map<String, Value>,
    kind: Kind,
    blocked_image: Option<&str>,
    time: &str,
) {
    if body.contains_key("terminalCondition") || body.contains_key("conditions") {
        return;
    }
    let blocked_revision = match kind {
        Kind::Job => body
            .get("latestCreatedExecution")
            .and_then(|e| e.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => body
            .get("latestCreatedRevision")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    match (blocked_image, blocked_revision) {
        (Some(image), Some(revision)) => {
            state::set_conditions(body, kind, Some((&revision, image)), time)
        }
        _ => state::set_conditions(body, kind, None, time),
    }
}

/// The body with `name` first, as Cloud Run answers it.
pub(super) fn name_first(mut body: Map<String, Value>) -> Map<String, Value> {
    let mut ordered = Map::with_capacity(body.len());
    if let Some(name) = body.remove("name") {
        ordered.insert("name".into(), name);
    }
    ordered.extend(body);
    ordered
}

/// An RFC 3339 time field; absent or null: `None`.
pub(super) fn time_field(
    body: &Map<String, Value>,
    field: &str,
) -> Result<Option<Timestamp>, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<Timestamp>()
            .map(Some)
            .map_err(|e| format!("{field} '{s}' is not an RFC 3339 time: {e}")),
        Some(other) => Err(format!("{field} must be an RFC 3339 string, got {other}")),
    }
}

/// An int64 field, as a string (Cloud Run's encoding) or a number; absent or null: `None`.
pub(super) fn int_field(body: &Map<String, Value>, field: &str) -> Result<Option<i64>, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{field} '{s}' is not an integer")),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{field} {n} is not an integer")),
        Some(other) => Err(format!("{field} must be an integer, got {other}")),
    }
}

/// A stable uid for a resource name (the same seed always yields the same uids).
pub(super) fn deterministic_uid(name: &str) -> String {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    let mut rng = StdRng::seed_from_u64(hasher.finish());
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}
