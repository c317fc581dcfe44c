//! The seed format (YAML or JSON): projects → regions → services, jobs and worker pools.
//!
//! ```yaml
//! projects:
//!   acme-prod:
//!     projectNumber: 123456789012
//!     policies:                      # Binary Authorization platform policies (id → JSON)
//!       legacy: {description: "pre-2024 policy"}
//!     regions:
//!       us-central1:
//!         services:
//!           - name: checkout
//!             image: us-docker.pkg.dev/acme-prod/shop/checkout:1.4.2
//!             labels: {env: prod, team: payments}
//!             binaryAuthorization: {useDefault: true}
//!         jobs: [...]
//!         workerPools: [...]
//! generate: {count: 1000, seed: 7, driftRatio: 0.2}   # optional, see GenerateSpec
//! ```
//!
//! Each resource has a `name` (the id), an `image` (first container) and optionally
//! `deployBlocked: {image}` (its latest deploy was refused by Binary Authorization) and
//! `deleted: true`. Every other key is a Cloud Run v2 field and is served verbatim
//! (`labels`, `binaryAuthorization`, `template`, `annotations`, `conditions`, ...); the
//! server-managed fields (`uid`, `generation`, `createTime`, `etag`, revisions, conditions,
//! `uri`, ...) are filled in when absent. A dump of the state (`/_emulator/state`) is a seed.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

use crate::denials::ProjectAccess;
use crate::generate::{self, GenerateSpec};
use crate::orgpolicy::AllowedPolicies;
use crate::regions;
use crate::state::{
    self, validate_binary_authorization, Kind, Project, Resource, Store, AUTHORIZED_IMAGES,
};
use crate::EmulatorError;

mod body;
use body::*;

/// A whole estate to load: projects and, optionally, generated resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    /// Projects by id.
    #[serde(default)]
    pub projects: BTreeMap<String, ProjectSeed>,
    /// Resources to generate on top of the projects above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSpec>,
}

/// One project of a seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectSeed {
    /// The project number (digits; a YAML number or string). Addresses the same project as
    /// its id.
    #[serde(deserialize_with = "project_number")]
    pub project_number: String,
    /// Binary Authorization platform policies of this project, by id; each value is served
    /// verbatim (plus its `name`) by `GET v1/projects/{p}/platforms/cloudRun/policies/{id}`,
    /// except the emulator-only key `authorizedImages` (image patterns the policy
    /// authorizes; absent: every image).
    #[serde(default)]
    pub policies: BTreeMap<String, Option<Map<String, Value>>>,
    /// Cloud Run regions of the project and what runs in each.
    #[serde(default)]
    pub regions: BTreeMap<String, Option<RegionSeed>>,
    /// How the caller sees the project: `granted` (default), `apiDisabled`,
    /// `vpcServiceControls` or `notVisible` (each a 403 of its own).
    #[serde(default, skip_serializing_if = "ProjectAccess::is_granted")]
    pub access: ProjectAccess,
    /// Whether the caller may read this project's Binary Authorization policies (default
    /// true; false: every policy read answers 403, whether the policy exists or not).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub policies_readable: bool,
    /// Image patterns the project's default policy (`useDefault: true`) authorizes
    /// (`*` within a path segment, `**` across); absent: every image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_policy_authorized_images: Option<Vec<String>>,
    /// The organization policy constraint `run.allowedBinaryAuthorizationPolicies` in
    /// force in this project: a list of allowed values (`default`, policy names),
    /// `allowAll` or `denyAll`; absent: not set.
    #[serde(default, skip_serializing_if = "AllowedPolicies::is_not_set")]
    pub allowed_binary_authorization_policies: AllowedPolicies,
    /// Whether the caller may read this project's organization policies (default true;
    /// false: `getEffectivePolicy` answers 403).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub org_policy_readable: bool,
}

impl Default for ProjectSeed {
    /// No number yet, no policies, no regions, default access.
    fn default() -> Self {
        ProjectSeed {
            project_number: String::new(),
            policies: BTreeMap::new(),
            regions: BTreeMap::new(),
            access: ProjectAccess::Granted,
            policies_readable: true,
            default_policy_authorized_images: None,
            allowed_binary_authorization_policies: AllowedPolicies::NotSet,
            org_policy_readable: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// What runs in one region.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegionSeed {
    /// Services, oldest first unless `createTime` says otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ResourceSeed>,
    /// Jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<ResourceSeed>,
    /// Worker pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub worker_pools: Vec<ResourceSeed>,
}

impl RegionSeed {
    fn of_kind(&self, kind: Kind) -> &[ResourceSeed] {
        match kind {
            Kind::Service => &self.services,
            Kind::Job => &self.jobs,
            Kind::WorkerPool => &self.worker_pools,
        }
    }

    /// The resources of one kind, for building a seed.
    pub fn of_kind_mut(&mut self, kind: Kind) -> &mut Vec<ResourceSeed> {
        match kind {
            Kind::Service => &mut self.services,
            Kind::Job => &mut self.jobs,
            Kind::WorkerPool => &mut self.worker_pools,
        }
    }
}

/// One service, job or worker pool.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSeed {
    /// The resource id (last segment of its name).
    pub name: String,
    /// Image of the first container (`template.containers[0].image`, or
    /// `template.template.containers[0].image` for a job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The latest deploy, of this image, was refused by Binary Authorization: the previous
    /// revision keeps serving and the conditions carry `CONTAINER_IMAGE_UNAUTHORIZED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_blocked: Option<DeployBlocked>,
    /// The resource is being deleted (listed only with `showDeleted`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Every other Cloud Run field, served verbatim.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// The keys of a seed resource that are the emulator's own (every other key is a Cloud Run
/// field).
const RESOURCE_SEED_KEYS: &[&str] = &["name", "image", "deployBlocked", "deleted"];

impl<'de> Deserialize<'de> for ResourceSeed {
    /// Like a derived implementation with `fields` flattened, but a missing `name` (or a
    /// misspelt seed key) names the keys that look like a misspelling of it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = Map::<String, Value>::deserialize(deserializer)?;
        let name = match fields.remove("name") {
            Some(Value::String(name)) => name,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`name` must be a string (the resource id), got {other}"
                )))
            }
            None => {
                let hint = match misspellings(&fields, "name").as_slice() {
                    [] => String::new(),
                    keys => format!(
                        " (unknown key {}: did you mean `name`?)",
                        keys.iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                return Err(D::Error::custom(format!("missing field `name`{hint}")));
            }
        };
        let image = match fields.remove("image") {
            None | Some(Value::Null) => None,
            Some(Value::String(image)) => Some(image),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "resource '{name}': `image` must be a string, got {other}"
                )))
            }
        };
        let deploy_blocked =
            match fields.remove("deployBlocked") {
                None | Some(Value::Null) => None,
                Some(value) => Some(serde_json::from_value(value).map_err(|e| {
                    D::Error::custom(format!("resource '{name}': deployBlocked: {e}"))
                })?),
            };
        let deleted = match fields.remove("deleted") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(deleted)) => deleted,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "resource '{name}': `deleted` must be true or false, got {other}"
                )))
            }
        };
        Ok(ResourceSeed {
            name,
            image,
            deploy_blocked,
            deleted,
            fields,
        })
    }
}

/// Keys of `fields` that look like a misspelling of the seed key `wanted` (one or two
/// letters off, or the same letters in another case or with `_`/`-`), and are not another
/// seed key.
fn misspellings(fields: &Map<String, Value>, wanted: &str) -> Vec<String> {
    fields
        .keys()
        .filter(|key| !RESOURCE_SEED_KEYS.contains(&key.as_str()))
        .filter(|key| {
            normalized(key) == normalized(wanted) || edit_distance(&key.to_lowercase(), wanted) <= 2
        })
        .cloned()
        .collect()
}

/// Levenshtein distance, for short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

/// A deploy refused by Binary Authorization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployBlocked {
    /// The unattested image of the refused deploy.
    pub image: String,
}

fn project_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(u64),
        Text(String),
    }
    Ok(match Number::deserialize(deserializer)? {
        Number::Int(n) => n.to_string(),
        Number::Text(s) => s,
    })
}

impl Seed {
    /// Parses a seed from YAML (JSON is YAML too).
    pub fn from_yaml_str(text: &str) -> Result<Seed, serde_yaml_ng::Error> {
        serde_yaml_ng::from_str(text)
    }

    /// Reads and parses a seed file; the error names the file and the offending field.
    pub fn from_file(path: &Path) -> Result<Seed, EmulatorError> {
        let text = std::fs::read_to_string(path).map_err(|err| EmulatorError::Seed {
            path: path.display().to_string(),
            message: format!("cannot read it: {err}"),
        })?;
        let seed = Seed::from_yaml_str(&text).map_err(|err| EmulatorError::Seed {
            path: path.display().to_string(),
            message: err.to_string(),
        })?;
        // Load it once so every mistake is reported now, with the file's name.
        load(&seed).map_err(|err| EmulatorError::Seed {
            path: path.display().to_string(),
            message: err.to_string(),
        })?;
        Ok(seed)
    }

    /// Adds `other`'s projects, policies, regions and resources to this seed.
    pub fn merge(&mut self, other: Seed) {
        for (id, project) in other.projects {
            match self.projects.get_mut(&id) {
                None => {
                    self.projects.insert(id, project);
                }
                Some(mine) => {
                    for (policy, body) in project.policies {
                        mine.policies.entry(policy).or_insert(body);
                    }
                    for (region, content) in project.regions {
                        let entry = mine.regions.entry(region).or_insert(None);
                        let Some(content) = content else { continue };
                        let mine = entry.get_or_insert_with(RegionSeed::default);
                        for kind in Kind::ALL {
                            mine.of_kind_mut(kind)
                                .extend(content.of_kind(kind).iter().cloned());
                        }
                    }
                }
            }
        }
    }
}

/// A seed that cannot be loaded: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct SeedError {
    /// `projects.acme-prod.regions.us-central1.services[2] (checkout)`.
    pub location: String,
    /// What is wrong and what to do.
    pub message: String,
}

fn seed_error(location: impl Into<String>, message: impl Into<String>) -> SeedError {
    SeedError {
        location: location.into(),
        message: message.into(),
    }
}

/// A store holding exactly `seed` (and its `generate` section).
pub fn load(seed: &Seed) -> Result<Store, SeedError> {
    let mut store = Store::default();
    add(&mut store, seed)?;
    Ok(store)
}

/// Adds `seed` (and its `generate` section) to `store`. On error the store is unchanged.
pub fn add(store: &mut Store, seed: &Seed) -> Result<(), SeedError> {
    let mut seed = seed.clone();
    if let Some(spec) = seed.generate.take() {
        let known: BTreeMap<String, String> = store
            .projects()
            .map(|p| (p.id.clone(), p.number.clone()))
            .chain(
                seed.projects
                    .iter()
                    .map(|(id, p)| (id.clone(), p.project_number.clone())),
            )
            .collect();
        let generated = generate::estate(&spec, &known).map_err(|m| seed_error("generate", m))?;
        seed.merge(generated);
    }
    let mut next = store.clone();
    add_projects(&mut next, &seed)?;
    add_resources(&mut next, &seed)?;
    next.reorder();
    *store = next;
    Ok(())
}

fn add_projects(store: &mut Store, seed: &Seed) -> Result<(), SeedError> {
    for (id, project) in &seed.projects {
        let at = format!("projects.{id}");
        if !is_project_id(id) {
            return Err(seed_error(
                at,
                "a project id is 6 to 30 lowercase letters, digits or hyphens, starting with a letter",
            ));
        }
        let number = &project.project_number;
        if number.is_empty() || number.len() > 20 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(seed_error(
                format!("{at}.projectNumber"),
                format!("'{number}' is not a project number (digits only)"),
            ));
        }
        if let Some(other) = store.project(number) {
            if other.id != *id {
                return Err(seed_error(
                    format!("{at}.projectNumber"),
                    format!("number {number} already belongs to project '{}'", other.id),
                ));
            }
        }
        let mut policies = BTreeMap::new();
        for (policy, body) in &project.policies {
            if !is_policy_id(policy) {
                return Err(seed_error(
                    format!("{at}.policies.{policy}"),
                    "a policy id is letters, digits, '-' or '_'",
                ));
            }
            let body = body.clone().unwrap_or_default();
            match body.get(AUTHORIZED_IMAGES) {
                None => {}
                Some(Value::Array(list)) if list.iter().all(Value::is_string) => {}
                Some(_) => {
                    return Err(seed_error(
                        format!("{at}.policies.{policy}.{AUTHORIZED_IMAGES}"),
                        "a list of image patterns, like [\"us-docker.pkg.dev/acme/**\"]",
                    ))
                }
            }
            policies.insert(policy.clone(), body);
        }
        project
            .allowed_binary_authorization_policies
            .validate()
            .map_err(|m| seed_error(format!("{at}.allowedBinaryAuthorizationPolicies"), m))?;
        let mut regions = Vec::new();
        for region in project.regions.keys() {
            if !regions::is_region_name(region) {
                return Err(seed_error(
                    format!("{at}.regions.{region}"),
                    "not a Cloud Run region name (like us-central1)",
                ));
            }
            regions.push(region.clone());
        }
        match store.project_mut(id) {
            Some(existing) => {
                if existing.number != *number {
                    return Err(seed_error(
                        format!("{at}.projectNumber"),
                        format!("project '{id}' already has number {}", existing.number),
                    ));
                }
                for region in regions {
                    if !existing.regions.contains(&region) {
                        existing.regions.push(region);
                    }
                }
                existing.policies.extend(policies);
                settle_project(existing, project);
            }
            None => {
                let mut new = Project::new(id, number);
                new.regions = regions;
                new.policies = policies;
                settle_project(&mut new, project);
                store.add_project(new);
            }
        }
    }
    Ok(())
}

/// The project-level settings of a seed entry (a later seed of the same project replaces
/// the ones it sets to something other than the default).
fn settle_project(project: &mut Project, seed: &ProjectSeed) {
    if !seed.access.is_granted() {
        project.access = seed.access;
    }
    project.policies_readable &= seed.policies_readable;
    project.org_policy_readable &= seed.org_policy_readable;
    if seed.default_policy_authorized_images.is_some() {
        project.default_policy_authorized_images = seed.default_policy_authorized_images.clone();
    }
    if !seed.allowed_binary_authorization_policies.is_not_set() {
        project.allowed_policies = seed.allowed_binary_authorization_policies.clone();
    }
}

fn add_resources(store: &mut Store, seed: &Seed) -> Result<(), SeedError> {
    // Default creation times: after everything already stored, one minute apart in file
    // order, so the first resource of a seed is the oldest.
    let mut clock = store
        .projects()
        .flat_map(|p| {
            p.regions
                .iter()
                .flat_map(move |r| Kind::ALL.map(|k| (p.id.clone(), r.clone(), k)))
        })
        .filter_map(|(p, r, k)| {
            store
                .collection(&p, &r, k)
                .and_then(|c| c.items().last())
                .map(|x| x.created)
        })
        .max()
        .map_or(default_epoch(), |latest| {
            latest + SignedDuration::from_mins(1)
        });
    for (project_id, project) in &seed.projects {
        let number = project.project_number.clone();
        for (region, content) in &project.regions {
            let Some(content) = content else { continue };
            for kind in Kind::ALL {
                for (index, entry) in content.of_kind(kind).iter().enumerate() {
                    let at = format!(
                        "projects.{project_id}.regions.{region}.{}[{index}] ({})",
                        kind.collection(),
                        entry.name
                    );
                    let (body, created) =
                        build_body(kind, project_id, &number, region, entry, clock)
                            .map_err(|m| seed_error(&at, m))?;
                    validate_binary_authorization(
                        body.get("binaryAuthorization"),
                        store,
                        "binaryAuthorization",
                    )
                    .map_err(|e| seed_error(&at, e.message))?;
                    let mut resource =
                        Resource::new(kind, project_id, region, &entry.name, created, body);
                    if let (Some(image), true) = (&entry.image, entry.deploy_blocked.is_some()) {
                        if let Some(ready) = resource
                            .body()
                            .get("latestReadyRevision")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                        {
                            resource.remember_revision(&ready, image);
                        }
                    }
                    store.insert(resource).map_err(|_| {
                        seed_error(
                            &at,
                            format!(
                                "a {} named '{}' already exists in {region}",
                                kind.singular(),
                                entry.name
                            ),
                        )
                    })?;
                    clock += SignedDuration::from_mins(1);
                }
            }
        }
    }
    Ok(())
}

/// The estate as a seed: loading it yields the same resources (a dump round-trips).
pub fn dump(store: &Store) -> Seed {
    let mut projects = BTreeMap::new();
    for project in store.projects() {
        let mut regions = BTreeMap::new();
        for region in &project.regions {
            let mut content = RegionSeed::default();
            for kind in Kind::ALL {
                let Some(collection) = store.collection(&project.id, region, kind) else {
                    continue;
                };
                for resource in collection.items() {
                    let mut fields = resource.body().clone();
                    fields.remove("name");
                    content.of_kind_mut(kind).push(ResourceSeed {
                        name: resource.id.clone(),
                        image: None,
                        deploy_blocked: None,
                        deleted: false,
                        fields,
                    });
                }
            }
            regions.insert(region.clone(), Some(content));
        }
        projects.insert(
            project.id.clone(),
            ProjectSeed {
                project_number: project.number.clone(),
                policies: project
                    .policies
                    .iter()
                    .map(|(id, body)| (id.clone(), Some(body.clone())))
                    .collect(),
                regions,
                access: project.access,
                policies_readable: project.policies_readable,
                default_policy_authorized_images: project.default_policy_authorized_images.clone(),
                allowed_binary_authorization_policies: project.allowed_policies.clone(),
                org_policy_readable: project.org_policy_readable,
            },
        );
    }
    Seed {
        projects,
        generate: None,
    }
}

fn is_project_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (6..=30).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.last().is_some_and(|b| *b != b'-')
}

fn is_policy_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_resource_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.last().is_some_and(|b| *b != b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
projects:
  acme-prod:
    projectNumber: 123456789012
    policies: {strict: {description: "strict"}}
    regions:
      us-central1:
        services:
          - name: checkout
            image: img:1
            labels: {env: prod}
            binaryAuthorization: {policy: projects/acme-prod/platforms/cloudRun/policies/strict}
            customField: {kept: true}
        jobs:
          - name: nightly
            image: job:1
"#;

    #[test]
    fn a_seed_loads_and_a_dump_round_trips() {
        let seed = Seed::from_yaml_str(SMALL).unwrap();
        let store = load(&seed).unwrap();
        let dumped = dump(&store);
        let reloaded = dump(&load(&dumped).unwrap());
        assert_eq!(dumped, reloaded);
        let checkout = &dumped.projects["acme-prod"].regions["us-central1"]
            .as_ref()
            .unwrap()
            .services[0];
        assert_eq!(checkout.fields["customField"], json!({"kept": true}));
        assert_eq!(checkout.fields["generation"], json!("1"));
    }

    #[test]
    fn seed_mistakes_name_the_resource() {
        let typo = SMALL.replace(
            "binaryAuthorization: {policy",
            "binary_authorization: {policy",
        );
        let err = load(&Seed::from_yaml_str(&typo).unwrap()).unwrap_err();
        assert_eq!(
            err.location,
            "projects.acme-prod.regions.us-central1.services[0] (checkout)"
        );
        assert!(
            err.message.contains("binaryAuthorization"),
            "{}",
            err.message
        );

        let unknown = SMALL.replace("policies/strict}", "policies/nope}");
        let err = load(&Seed::from_yaml_str(&unknown).unwrap()).unwrap_err();
        assert!(err.message.contains("policies/nope"), "{}", err.message);

        let no_image = SMALL.replace("image: job:1", "labels: {}");
        let err = load(&Seed::from_yaml_str(&no_image).unwrap()).unwrap_err();
        assert!(
            err.location.contains("jobs[0] (nightly)"),
            "{}",
            err.location
        );
    }

    #[test]
    fn a_misspelt_seed_key_is_named_in_the_error() {
        let typo = SMALL.replace("- name: checkout", "- nme: checkout");
        let err = Seed::from_yaml_str(&typo).unwrap_err().to_string();
        assert!(err.contains("missing field `name`"), "{err}");
        assert!(err.contains("unknown key `nme`"), "{err}");
        assert!(err.contains("did you mean `name`?"), "{err}");

        let image = SMALL.replace("image: job:1", "imgae: job:1");
        let err = load(&Seed::from_yaml_str(&image).unwrap()).unwrap_err();
        assert!(
            err.message
                .contains("unknown key `imgae`: did you mean `image`?"),
            "{}",
            err.message
        );
        // A key unlike `name` is not blamed.
        let other = SMALL.replace("- name: checkout", "- title: checkout");
        let err = Seed::from_yaml_str(&other).unwrap_err().to_string();
        assert!(
            err.contains("missing field `name`") && !err.contains("title"),
            "{err}"
        );
    }

    #[test]
    fn project_settings_load_check_and_round_trip() {
        let text = r#"
projects:
  acme-prod:
    projectNumber: 123456789012
    access: vpcServiceControls
    policiesReadable: false
    orgPolicyReadable: false
    defaultPolicyAuthorizedImages: ["us-docker.pkg.dev/acme-prod/**"]
    allowedBinaryAuthorizationPolicies: [default]
    policies:
      strict: {authorizedImages: ["a/**"]}
"#;
        let seed = Seed::from_yaml_str(text).unwrap();
        let dumped = dump(&load(&seed).unwrap());
        assert_eq!(
            dumped.projects["acme-prod"].access,
            ProjectAccess::VpcServiceControls
        );
        assert_eq!(dump(&load(&dumped).unwrap()), dumped);
        assert_eq!(
            dumped.projects["acme-prod"].allowed_binary_authorization_policies,
            AllowedPolicies::Values(vec!["default".into()])
        );
        let bad = text.replace("[default]", "[strict]");
        let err = load(&Seed::from_yaml_str(&bad).unwrap()).unwrap_err();
        assert_eq!(
            err.location,
            "projects.acme-prod.allowedBinaryAuthorizationPolicies"
        );
        let bad = text.replace(r#"["a/**"]"#, "yes");
        let err = load(&Seed::from_yaml_str(&bad).unwrap()).unwrap_err();
        assert_eq!(
            err.location,
            "projects.acme-prod.policies.strict.authorizedImages"
        );
        assert!(Seed::from_yaml_str(&text.replace("vpcServiceControls", "vpc")).is_err());
    }

    #[test]
    fn region_and_project_names_are_checked() {
        assert!(is_project_id("acme-prod") && !is_project_id("Acme") && !is_project_id("ab"));
    }
}
