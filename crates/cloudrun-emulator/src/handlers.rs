//! The methods themselves: list, get, patch (with its long-running operation), operations
//! get/wait, v1 locations and Binary Authorization platform policies.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::assumed;
use super::auditlog::{ApiVersion, AuditedWrite, LongRunning, Outcome};
use super::faults::{self, Faults};
use super::google::{ApiError, Code};
use super::orgpolicy::{self, BinaryAuthorization};
use super::regions;
use super::routes::{permission_denied, Caller, Params, Route};
use super::state::{
    deleted_error, etag_version, unauthorized_image_message, validate_binary_authorization, Actor,
    ChangeSource, CommitOptions, Deploy, Kind, Operation, PageRequest, Store, AUTHORIZED_IMAGES,
    BCID_MANAGED_POLICY,
};
use super::{lock, Shared};

/// Runs one parsed, authorized call.
pub async fn handle(
    shared: &Shared,
    faults: &Faults,
    caller: &Caller,
    route: &Route,
    params: &Params,
    body: &[u8],
) -> Result<Value, ApiError> {
    let now = Instant::now();
    match route {
        Route::List {
            kind,
            project,
            location,
        } => list(&lock(&shared.store), *kind, project, location, params, now),
        Route::Get {
            kind,
            project,
            location,
            id,
        } => {
            let store = lock(&shared.store);
            Ok(Value::Object(
                store.resource(*kind, project, location, id)?.render(now),
            ))
        }
        Route::GetRevision {
            kind,
            project,
            location,
            id,
            revision,
        } => {
            let store = lock(&shared.store);
            let parent = store.resource(*kind, project, location, id)?;
            parent.render_revision(revision).ok_or_else(|| {
                ApiError::not_found(format!(
                    "Resource '{revision}' of kind 'REVISION' in region '{location}' in project '{project}' does not exist."
                ))
            })
        }
        Route::Patch {
            kind,
            project,
            location,
            id,
        } => {
            let request = PatchRequest::parse(*kind, params, body)?;
            let (operation, audited) = patch(
                &mut lock(&shared.store),
                faults,
                caller,
                (*kind, project, location, id),
                request,
                now,
            )?;
            if let (Some(log), Some(write)) = (&shared.audit_log, audited) {
                log.record(write);
            }
            Ok(operation)
        }
        Route::GetOperation {
            project,
            location,
            id,
        } => Ok(lock(&shared.store)
            .operation(project, location, id)?
            .render(now)),
        Route::WaitOperation {
            project,
            location,
            id,
        } => {
            let timeout = wait_timeout(body)?;
            let done_at = lock(&shared.store)
                .operation(project, location, id)?
                .done_at;
            let until = done_at.min(now + timeout);
            tokio::time::sleep_until(until.into()).await;
            Ok(lock(&shared.store)
                .operation(project, location, id)?
                .render(Instant::now()))
        }
        Route::ListLocations { project } => locations(&lock(&shared.store), project, params),
        Route::GetPolicy { project, id } => {
            let store = lock(&shared.store);
            let found = store.require_project(project)?;
            let name = format!("projects/{}/platforms/cloudRun/policies/{id}", found.id);
            // Google's managed policy is never readable; in a project whose policies the
            // caller may not read, existing or not, the answer is the same 403.
            if name == BCID_MANAGED_POLICY || !found.policies_readable {
                return Err(permission_denied(route));
            }
            let policy = found.policies.get(id).ok_or_else(|| {
                ApiError::not_found(format!(
                    "Platform policy 'projects/{project}/platforms/cloudRun/policies/{id}' not found."
                ))
            })?;
            let mut out = Map::new();
            out.insert("name".into(), Value::String(name));
            out.extend(
                policy
                    .iter()
                    .filter(|(key, _)| key.as_str() != AUTHORIZED_IMAGES)
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            Ok(Value::Object(out))
        }
        Route::GetEffectivePolicy {
            project,
            constraint,
        } => {
            let store = lock(&shared.store);
            let found = store.require_project(project)?;
            if !found.org_policy_readable {
                return Err(permission_denied(route));
            }
            if constraint != orgpolicy::CONSTRAINT {
                return Err(ApiError::new(
                    Code::Unimplemented,
                    format!(
                        "The emulator serves only the constraint {} (asked: {constraint}).",
                        orgpolicy::CONSTRAINT
                    ),
                ));
            }
            Ok(orgpolicy::effective_policy(
                &found.number,
                &found.allowed_policies,
            ))
        }
    }
}

fn list(
    store: &Store,
    kind: Kind,
    project: &str,
    location: &str,
    params: &Params,
    now: Instant,
) -> Result<Value, ApiError> {
    let page_size = match usize::try_from(params.page_size) {
        Ok(0) | Err(_) => assumed::DEFAULT_PAGE_SIZE,
        Ok(n) => n.min(assumed::MAX_PAGE_SIZE),
    };
    let request = PageRequest {
        page_size,
        token: params.page_token.as_deref(),
        show_deleted: params.show_deleted,
    };
    let page = store.list(kind, project, location, &request, now)?;
    // Like Google's JSON encoding, an empty list and a missing token are omitted.
    let mut out = Map::new();
    if !page.items.is_empty() {
        out.insert(kind.collection().into(), Value::Array(page.items));
    }
    if let Some(token) = page.next_page_token {
        out.insert("nextPageToken".into(), Value::String(token));
    }
    Ok(Value::Object(out))
}

fn locations(store: &Store, project: &str, params: &Params) -> Result<Value, ApiError> {
    if let Some(filter) = &params.filter {
        return Err(ApiError::new(
            Code::Unimplemented,
            format!("The emulator does not implement location filters (filter '{filter}')."),
        ));
    }
    let found = store.require_project(project)?;
    // The whole catalogue, plus any region the seed gives the project that it lacks.
    let mut all: Vec<&str> = regions::CATALOGUE.iter().map(|(r, _)| *r).collect();
    for region in &found.regions {
        if !regions::is_catalogued(region) {
            all.push(region);
        }
    }
    if assumed::LOCATIONS_SORTED_BY_ID {
        all.sort_unstable();
    }
    let page_size = match usize::try_from(params.page_size) {
        Ok(0) | Err(_) => assumed::MAX_LOCATIONS_PAGE_SIZE,
        Ok(n) => n.min(assumed::MAX_LOCATIONS_PAGE_SIZE),
    };
    let start = match &params.page_token {
        None => 0,
        Some(token) => super::state::decode_offset_token(token)?,
    };
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(page_size)
        .map(|region| {
            json!({
                "name": format!("projects/{project}/locations/{region}"),
                "locationId": region,
                "displayName": regions::display_name(region),
                "labels": {
                    "cloud.googleapis.com/region": region,
                    "run.googleapis.com/supportsPzs": assumed::LOCATION_SUPPORTS_PZS,
                },
            })
        })
        .collect();
    let mut out = Map::new();
    let next = start + page.len();
    if !page.is_empty() {
        out.insert("locations".into(), Value::Array(page));
    }
    if next < all.len() {
        out.insert(
            "nextPageToken".into(),
            Value::String(super::state::encode_offset_token(next)),
        );
    }
    Ok(Value::Object(out))
}

/// `{"timeout": "10s"}` (protobuf Duration JSON); absent or empty body: the longest wait.
fn wait_timeout(body: &[u8]) -> Result<Duration, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(assumed::MAX_OPERATION_WAIT);
    }
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        ApiError::invalid_payload(format!("Invalid JSON payload received. {err}"))
    })?;
    let Value::Object(object) = value else {
        return Err(ApiError::invalid_payload(
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    let mut timeout = assumed::MAX_OPERATION_WAIT;
    for (key, value) in object {
        if key != "timeout" {
            return Err(ApiError::invalid_payload(format!(
                "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
            )));
        }
        let parsed = value.as_str().and_then(parse_duration).ok_or_else(|| {
            ApiError::invalid_field(
                "timeout",
                format!("Invalid duration {value}: expected a string like \"10s\" or \"0.5s\"."),
            )
        })?;
        timeout = parsed.min(assumed::MAX_OPERATION_WAIT);
    }
    Ok(timeout)
}

/// A protobuf Duration in JSON: decimal seconds followed by `s`.
fn parse_duration(text: &str) -> Option<Duration> {
    let secs: f64 = text.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// How a write changes the resource.
enum Change {
    /// Only the fields in the update mask (`binaryAuthorization`) are taken from the body.
    Masked,
    /// The whole resource is replaced by the body (output fields kept).
    Replace,
}

/// A parsed PATCH.
struct PatchRequest {
    change: Change,
    body: Map<String, Value>,
    validate_only: bool,
    allow_missing: bool,
    force_new_revision: bool,
}

impl PatchRequest {
    fn parse(kind: Kind, params: &Params, body: &[u8]) -> Result<PatchRequest, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|err| {
            ApiError::invalid_payload(format!("Invalid JSON payload received. {err}"))
        })?;
        let Value::Object(mut body) = value else {
            return Err(ApiError::invalid_payload(format!(
                "Invalid JSON payload received. Expected a {} object.",
                kind.singular()
            )));
        };
        normalize_binary_authorization(&mut body, kind)?;
        let change = match &params.update_mask {
            None if assumed::MISSING_UPDATE_MASK_REPLACES_WHOLE_RESOURCE => Change::Replace,
            None => Change::Masked,
            Some(mask) => {
                for path in mask.split(',').map(str::trim) {
                    if !matches!(path, "binaryAuthorization" | "binary_authorization") {
                        return Err(ApiError::invalid_field(
                            "update_mask",
                            format!(
                                "Invalid update mask path '{path}': the emulator updates only \
                                 'binaryAuthorization' (or 'binary_authorization')."
                            ),
                        ));
                    }
                }
                Change::Masked
            }
        };
        Ok(PatchRequest {
            change,
            body,
            validate_only: params.validate_only,
            allow_missing: params.allow_missing,
            force_new_revision: params.force_new_revision,
        })
    }
}

/// Google's JSON parser accepts a field by its JSON name or its proto name: rename the
/// proto spellings of `binaryAuthorization` and its fields, so a client sending either is
/// understood as the real API would understand it. Both spellings at once is 400.
fn normalize_binary_authorization(
    body: &mut Map<String, Value>,
    kind: Kind,
) -> Result<(), ApiError> {
    fn rename(
        object: &mut Map<String, Value>,
        proto: &str,
        json: &str,
        at: &str,
    ) -> Result<(), ApiError> {
        if let Some(value) = object.remove(proto) {
            if object.contains_key(json) {
                return Err(ApiError::invalid_payload(format!(
                    "Invalid JSON payload received. Field '{at}{json}' is given twice (as '{json}' and '{proto}')."
                )));
            }
            object.insert(json.to_string(), value);
        }
        Ok(())
    }
    let at = format!("{}.", kind.singular());
    rename(body, "binary_authorization", "binaryAuthorization", &at)?;
    if let Some(Value::Object(inner)) = body.get_mut("binaryAuthorization") {
        let at = format!("{at}binaryAuthorization.");
        rename(inner, "use_default", "useDefault", &at)?;
        rename(
            inner,
            "breakglass_justification",
            "breakglassJustification",
            &at,
        )?;
    }
    Ok(())
}

/// Applies a PATCH and returns its operation, and what the audit log records of it (nothing
/// for `validateOnly`).
fn patch(
    store: &mut Store,
    faults: &Faults,
    caller: &Caller,
    (kind, project, location, id): (Kind, &str, &str, &str),
    request: PatchRequest,
    now: Instant,
) -> Result<(Value, Option<AuditedWrite>), ApiError> {
    let missing = store.resource(kind, project, location, id).is_err();
    if missing && request.allow_missing {
        store.require_location(project, location)?;
        return Err(ApiError::new(
            Code::Unimplemented,
            "The emulator does not create resources (allowMissing=true on a missing resource).",
        ));
    }
    let resource = store.resource(kind, project, location, id)?;
    let name = resource.name();
    if resource.is_deleted() {
        return Err(deleted_error(&name));
    }
    if !request.validate_only && faults::roll(faults.stale_etag_rate) {
        let race = Actor {
            principal: "deployer@example.com".into(),
            client: "emulator".into(),
            source: ChangeSource::Race,
            method: "race.deploy".into(),
        };
        store.deploy(&name, Deploy::default(), &race, now)?;
    }
    let resource = store.resource(kind, project, location, id)?;
    let body_etag = request.body.get("etag").and_then(Value::as_str);
    let etag_ignored = kind == Kind::Job && faults.job_etag_ignored;
    if !etag_ignored && assumed::etag_checked(body_etag) {
        let given = body_etag.unwrap_or_default();
        if etag_version(given) != Some(resource.version()) {
            let specified =
                etag_version(given).map_or_else(|| given.to_string(), |v| v.to_string());
            return Err(ApiError::new(
                Code::Aborted,
                format!(
                    "Conflict for resource '{id}': version '{specified}' was specified but current version is '{}'.",
                    resource.version()
                ),
            ));
        }
    }
    let next = match request.change {
        Change::Masked => {
            let mut next = resource.body().clone();
            match request.body.get("binaryAuthorization") {
                Some(value) if !value.is_null() => {
                    next.insert("binaryAuthorization".into(), value.clone());
                }
                _ => {
                    next.remove("binaryAuthorization");
                }
            }
            next
        }
        Change::Replace => {
            let next = resource.with_output_fields(request.body);
            if !next.get("template").is_some_and(Value::is_object) {
                return Err(ApiError::invalid_field(
                    &format!("{}.template", kind.singular()),
                    format!(
                        "template is required: send the whole {} as read.",
                        kind.singular()
                    ),
                ));
            }
            next
        }
    };
    validate_binary_authorization(
        next.get("binaryAuthorization"),
        store,
        &format!("{}.binaryAuthorization", kind.singular()),
    )?;
    store.check_org_policy(project, &name, next.get("binaryAuthorization"))?;
    // A new revision of a service or worker pool whose image the policy does not
    // authorize is refused (a job update always succeeds; its next execution fails).
    let template_changed = resource.body().get("template") != next.get("template");
    let deploys = kind != Kind::Job && (template_changed || request.force_new_revision);
    let unauthorized_image = match kind.image(&next) {
        Some(image)
            if deploys
                && !store.image_authorized(
                    &resource.project,
                    &BinaryAuthorization::of(next.get("binaryAuthorization")),
                    image,
                ) =>
        {
            Some(image.to_string())
        }
        _ => None,
    };

    let delay = Duration::from_millis(faults.operation_delay_ms);
    let operation_id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let project_id = store.require_project(project)?.id.clone();
    let operation_name =
        format!("projects/{project_id}/locations/{location}/operations/{operation_id}");
    let actor = Actor {
        principal: caller.principal.clone(),
        client: caller.tag.clone(),
        source: ChangeSource::Api,
        method: format!("{}.patch", kind.collection()),
    };
    let options = CommitOptions {
        force_new_revision: request.force_new_revision,
        refused: unauthorized_image.is_some(),
        settle_after: delay,
    };
    let resource = store.resource_mut(kind, project, location, id)?;
    let operation = if request.validate_only {
        let mut preview = resource.clone();
        preview.commit(next, &actor, &CommitOptions::default(), now);
        Operation {
            name: operation_name,
            kind,
            metadata: preview.render(now),
            done_at: now,
            outcome: Ok(preview.render(now)),
        }
    } else if faults::roll(faults.operation_failure_rate) {
        Operation {
            name: operation_name,
            kind,
            metadata: resource.render(now),
            done_at: now + delay,
            outcome: Err(ApiError::new(
                Code::Internal,
                format!("Updating {} '{id}' failed; the resource was left unchanged (injected failure).", kind.singular()),
            )),
        }
    } else {
        let change = resource.commit(next, &actor, &options, now);
        let outcome = match &unauthorized_image {
            None => Ok(resource.render(now + delay)),
            Some(image) => {
                let revision = resource
                    .body()
                    .get("latestCreatedRevision")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Err(ApiError::new(
                    assumed::UNAUTHORIZED_DEPLOY_CODE,
                    unauthorized_image_message(revision, image),
                ))
            }
        };
        let operation = Operation {
            name: operation_name,
            kind,
            metadata: resource.render(now),
            done_at: now + delay,
            outcome,
        };
        if let Some(change) = change {
            store.record(change);
        }
        operation
    };
    let rendered = operation.render(now);
    let audited = (!request.validate_only).then(|| AuditedWrite {
        kind,
        project: project_id,
        location: location.to_string(),
        id: id.to_string(),
        api: ApiVersion::V2,
        principal: caller.principal.clone(),
        user_agent: caller.user_agent.clone(),
        caller_ip: caller.ip.clone(),
        operation: Some(LongRunning {
            name: operation.name.clone(),
            done_at: operation.done_at,
            outcome: match &operation.outcome {
                Ok(resource) => Outcome::Done(resource.clone()),
                Err(error) => Outcome::Failed(error.code, error.message.clone()),
            },
        }),
    });
    store.add_operation(operation);
    Ok((rendered, audited))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_field_names_mean_the_same_field() {
        let mut body =
            json!({"binary_authorization": {"use_default": true, "breakglass_justification": "x"}})
                .as_object()
                .cloned()
                .unwrap();
        normalize_binary_authorization(&mut body, Kind::Service).unwrap();
        assert_eq!(
            Value::Object(body),
            json!({"binaryAuthorization": {"useDefault": true, "breakglassJustification": "x"}})
        );
        let mut twice = json!({"binary_authorization": {}, "binaryAuthorization": {}})
            .as_object()
            .cloned()
            .unwrap();
        assert!(normalize_binary_authorization(&mut twice, Kind::Job).is_err());
    }

    #[test]
    fn wait_timeouts_are_protobuf_durations() {
        assert_eq!(
            wait_timeout(br#"{"timeout":"1.5s"}"#).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(wait_timeout(b"").unwrap(), assumed::MAX_OPERATION_WAIT);
        assert!(wait_timeout(br#"{"timeout":"10"}"#).is_err());
        assert!(wait_timeout(br#"{"deadline":"10s"}"#).is_err());
    }
}
