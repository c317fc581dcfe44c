//! Simulated users: deploys and traffic changes, as `gcloud run deploy` makes them.

use super::*;

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
                        .map(|r| r.name.as_str())
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
pub(super) fn set_route_refused(
    body: &mut Map<String, Value>,
    revision: &str,
    image: &str,
    time: &str,
) {
    let failed = |kind_of: &str| unauthorized_condition(kind_of, revision, image, time);
    body.insert("terminalCondition".into(), failed("Ready"));
    body.insert(
        "conditions".into(),
        Value::Array(vec![
            failed("RoutesReady"),
            succeeded_condition("ConfigurationsReady", time),
        ]),
    );
}

/// A `ApiError` for a resource that is being deleted.
pub fn deleted_error(name: &str) -> ApiError {
    ApiError::new(
        Code::FailedPrecondition,
        format!("Resource '{name}' is being deleted and cannot be updated."),
    )
}
