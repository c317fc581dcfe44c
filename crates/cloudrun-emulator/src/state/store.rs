//! The whole estate: collections per (project, region, kind), reads, pages, writes.

use super::*;

/// One (project, region, kind) collection, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Collection {
    pub(super) items: Vec<Resource>,
    pub(super) index: HashMap<String, usize>,
}

impl Collection {
    /// Resources oldest first.
    pub fn items(&self) -> &[Resource] {
        &self.items
    }

    pub(super) fn reorder(&mut self) {
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
    pub(super) projects: BTreeMap<String, Project>,
    pub(super) numbers: HashMap<String, String>,
    pub(super) collections: HashMap<CollectionKey, Collection>,
    pub(super) operations: HashMap<String, Operation>,
    pub(super) audit: Vec<ChangeRecord>,
    pub(super) next_audit: u64,
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
    pub(super) fn policy(&self, name: &str) -> Option<&Map<String, Value>> {
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

pub(super) fn not_found_resource(kind: Kind, project: &str, location: &str, id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Resource '{id}' of kind '{}' in region '{location}' in project '{project}' does not exist.",
        kind.label()
    ))
}

pub(super) fn page_scope(
    project_id: &str,
    location: &str,
    kind: Kind,
    show_deleted: bool,
) -> String {
    format!(
        "{project_id}/{location}/{}/{show_deleted}",
        kind.collection()
    )
}

pub(super) fn encode_page_token(scope: &str, after_seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{after_seq}|{scope}"))
}

/// The position a page token continues from; 400 when it is not one of ours or was issued
/// for other list parameters.
pub(super) fn decode_page_token(token: &str, scope: &str) -> Result<u64, ApiError> {
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
