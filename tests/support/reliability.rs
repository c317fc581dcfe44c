//! Shared pieces of the reliability suites: the faulty estate, simulated user deploys, and
//! the checks run on the emulator's final state and audit log (converged, nothing but
//! `binaryAuthorization` changed by the operator, every user deploy intact, no write cycle).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudrun_emulator::{
    ChangeRecord, ChangeSource, EmulatorConfig, EmulatorHandle, Faults, GenerateSpec, Seed,
};
use serde_json::{json, Value};

use super::process::OperatorConfig;

/// The generated projects and regions (the emulator's defaults, spelled out).
pub const PROJECTS: [&str; 2] = ["gen-project-1", "gen-project-2"];
pub const REGIONS: [&str; 3] = ["us-central1", "europe-west1", "asia-northeast1"];

/// An env var as a number, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Every fault of issue 7 at once: 5% 503, 2% 429 (with RetryInfo), 1% connection resets,
/// 2% stale-etag races, 1% failing operations, latency spikes (uniform jitter up to
/// `jitter_ms`, operations taking 100 ms), and Cloud Run's default per-region quotas.
pub fn all_faults(jitter_ms: u64) -> Faults {
    Faults {
        latency_ms: 1,
        latency_jitter_ms: jitter_ms,
        error_rates: BTreeMap::from([(503, 0.05), (429, 0.02)]),
        reset_rate: 0.01,
        read_quota_per_minute: Some(1_000),
        write_quota_per_minute: Some(60),
        stale_etag_rate: 0.02,
        operation_delay_ms: 100,
        operation_failure_rate: 0.01,
        ..Faults::default()
    }
}

/// An emulator with `count` generated resources, `drift` of them drifted, and `faults`.
pub async fn faulty_estate(count: usize, drift: f64, faults: Faults) -> EmulatorHandle {
    let mut spec = GenerateSpec::new(count);
    spec.seed = 7;
    spec.drift_ratio = drift;
    spec.projects = PROJECTS.iter().map(|p| p.to_string()).collect();
    spec.regions = REGIONS.iter().map(|r| r.to_string()).collect();
    cloudrun_emulator::start(EmulatorConfig {
        seed: Seed {
            generate: Some(spec),
            ..Seed::default()
        },
        faults,
        request_log_limit: 1_000_000,
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts")
}

/// Bindings (one per project, every kind, `useDefault: true`) covering the whole estate.
/// The first project uses `locations: ["*"]` (the locations API), the second lists them.
pub fn bindings_yaml(namespace: &str, interval: &str) -> String {
    let mut out = String::new();
    for (i, project) in PROJECTS.iter().enumerate() {
        let locations = if i == 0 {
            "[\"*\"]".to_owned()
        } else {
            format!("[{}]", REGIONS.join(", "))
        };
        let _ = write!(
            out,
            "---\napiVersion: binauthz.dev/v1alpha1\nkind: BinAuthzBinding\n\
             metadata: {{name: estate-{i}, namespace: {namespace}}}\n\
             spec:\n  project: {project}\n  locations: {locations}\n  \
             targets:\n    services: {{names: [\"*\"]}}\n    jobs: {{names: [\"*\"]}}\n    workerPools: {{names: [\"*\"]}}\n  \
             policy: {{useDefault: true}}\n  interval: {interval}\n"
        );
    }
    out
}

/// One resource as the emulator holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    pub binary_authorization: Value,
    pub template: Value,
    pub labels: Value,
    /// Every user-visible field but `binaryAuthorization` (server-managed ones removed).
    pub user_fields: Value,
}

impl Held {
    pub fn complies(&self) -> bool {
        self.binary_authorization == json!({"useDefault": true})
    }
}

/// Fields Cloud Run moves itself (never a user's or the operator's doing).
const SERVER_FIELDS: &[&str] = &[
    "etag",
    "generation",
    "observedGeneration",
    "updateTime",
    "lastModifier",
    "latestCreatedRevision",
    "latestReadyRevision",
    "conditions",
    "terminalCondition",
    "trafficStatuses",
    "reconciling",
    "executionCount",
    "latestCreatedExecution",
];

/// The estate by full resource name.
pub fn estate(handle: &EmulatorHandle) -> BTreeMap<String, Held> {
    let seed = serde_json::to_value(handle.state()).expect("the state serializes");
    let mut out = BTreeMap::new();
    for (project, p) in seed["projects"].as_object().into_iter().flatten() {
        for (region, r) in p["regions"].as_object().into_iter().flatten() {
            for collection in ["services", "jobs", "workerPools"] {
                for item in r[collection].as_array().into_iter().flatten() {
                    let name = format!(
                        "projects/{project}/locations/{region}/{collection}/{}",
                        item["name"].as_str().unwrap_or_default()
                    );
                    let mut user_fields = item.clone();
                    if let Some(map) = user_fields.as_object_mut() {
                        map.remove("binaryAuthorization");
                        for field in SERVER_FIELDS {
                            map.remove(*field);
                        }
                    }
                    out.insert(
                        name,
                        Held {
                            binary_authorization: item
                                .get("binaryAuthorization")
                                .cloned()
                                .unwrap_or(Value::Null),
                            template: item.get("template").cloned().unwrap_or(Value::Null),
                            labels: item.get("labels").cloned().unwrap_or(Value::Null),
                            user_fields,
                        },
                    );
                }
            }
        }
    }
    out
}

/// How many resources do not carry `useDefault: true`.
pub fn drifted(handle: &EmulatorHandle) -> usize {
    estate(handle).values().filter(|h| !h.complies()).count()
}

/// One simulated user deploy, as the emulator answered it.
#[derive(Clone, Debug)]
pub struct UserDeploy {
    pub resource: String,
    pub image: String,
    /// The audit sequence number of the deploy.
    pub seq: u64,
    pub template: Value,
    pub labels: Value,
}

/// Simulated users: each deploy pushes a new image and clears Binary Authorization (as
/// `gcloud run deploy --clear-binary-authorization` would).
#[derive(Clone)]
pub struct Users {
    url: String,
    http: reqwest::Client,
    pub deploys: Arc<Mutex<Vec<UserDeploy>>>,
    /// Resources whose Binary Authorization someone cleared (without deploying).
    pub drifts: Arc<Mutex<Vec<String>>>,
}

impl Users {
    pub fn new(handle: &EmulatorHandle) -> Self {
        Self {
            url: handle.url(),
            http: reqwest::Client::new(),
            deploys: Arc::new(Mutex::new(Vec::new())),
            drifts: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Someone clears the resource's Binary Authorization (`gcloud run services update
    /// --clear-binary-authorization`).
    pub async fn drift(&self, resource: &str) {
        let answer: Value = self
            .http
            .post(format!("{}/_emulator/drift", self.url))
            .json(&json!({"name": resource, "binaryAuthorization": null, "by": "dev@example.com"}))
            .send()
            .await
            .expect("the admin API answers")
            .json()
            .await
            .expect("a JSON answer");
        assert!(
            answer["resource"].is_object(),
            "drift of {resource} failed: {answer}"
        );
        self.drifts.lock().unwrap().push(resource.to_owned());
    }

    pub fn drifted(&self) -> Vec<String> {
        self.drifts.lock().unwrap().clone()
    }

    pub async fn deploy(&self, resource: &str, n: usize) {
        let image = format!("europe-docker.pkg.dev/users/app/{}:user-{n}", n % 7);
        let answer: Value = self
            .http
            .post(format!("{}/_emulator/deploy", self.url))
            .json(&json!({"name": resource, "image": image, "binaryAuthorization": null, "by": "dev@example.com"}))
            .send()
            .await
            .expect("the admin API answers")
            .json()
            .await
            .expect("a JSON answer");
        let deployed = &answer["resource"];
        assert!(
            deployed.is_object(),
            "deploy of {resource} failed: {answer}"
        );
        self.deploys.lock().unwrap().push(UserDeploy {
            resource: resource.to_owned(),
            image,
            seq: answer["change"]["seq"].as_u64().unwrap_or(0),
            template: deployed["template"].clone(),
            labels: deployed["labels"].clone(),
        });
    }

    /// Deploys `count` resources, one every `every`, half of them among `preferred` (the
    /// drifted ones the operator is about to write, so deploys race its writes).
    pub async fn deploy_many(
        &self,
        all: &[String],
        preferred: &[String],
        count: usize,
        every: Duration,
        first: usize,
    ) {
        for i in 0..count {
            let pool = if i % 2 == 0 && !preferred.is_empty() {
                preferred
            } else {
                all
            };
            // A fixed stride over the pool: deterministic, spread, no repeats in a run.
            let resource = &pool[(i * 7919 + first) % pool.len()];
            self.deploy(resource, first + i).await;
            tokio::time::sleep(every).await;
        }
    }

    pub fn all(&self) -> Vec<UserDeploy> {
        self.deploys.lock().unwrap().clone()
    }
}

/// What the final state and the audit log prove.
#[derive(Debug, Default)]
pub struct Verdict {
    pub resources: usize,
    pub drifted_at_start: usize,
    pub drifted_at_end: usize,
    pub operator_changes: usize,
    /// Operator changes that touched a field other than `binaryAuthorization`.
    pub foreign_field_changes: Vec<String>,
    pub user_deploys: usize,
    pub race_deploys: usize,
    /// User deploys whose image, template or labels were not intact at the end.
    pub deploys_lost: Vec<String>,
    /// Resources whose user fields changed without any user deploy.
    pub untouched_changed: Vec<String>,
    /// Resources the operator changed more often than they needed fixing.
    pub write_cycles: Vec<String>,
    /// Most operator changes to one resource.
    pub max_changes_per_resource: usize,
}

impl Verdict {
    pub fn assert_all(&self) {
        assert_eq!(self.drifted_at_end, 0, "not converged: {self:#?}");
        assert!(
            self.foreign_field_changes.is_empty(),
            "the operator changed other fields: {:#?}",
            self.foreign_field_changes
        );
        assert!(
            self.deploys_lost.is_empty(),
            "user deploys lost: {:#?}",
            self.deploys_lost
        );
        assert!(
            self.untouched_changed.is_empty(),
            "resources changed beyond Binary Authorization: {:#?}",
            self.untouched_changed
        );
        assert!(
            self.write_cycles.is_empty(),
            "write cycles: {:#?}",
            self.write_cycles
        );
    }
}

/// Checks the end state against the start, the users' deploys and drifts and the audit
/// log, counting only API changes made by callers whose tag starts with `operator_tag`.
pub fn verify(
    start: &BTreeMap<String, Held>,
    end: &BTreeMap<String, Held>,
    users: &Users,
    audit: &[ChangeRecord],
    operator_tag: &str,
) -> Verdict {
    let deploys = &users.all()[..];
    let drifts = users.drifted();
    let mut v = Verdict {
        resources: end.len(),
        drifted_at_start: start.values().filter(|h| !h.complies()).count(),
        drifted_at_end: end.values().filter(|h| !h.complies()).count(),
        user_deploys: deploys.len(),
        ..Verdict::default()
    };
    let operator =
        |c: &ChangeRecord| c.source == ChangeSource::Api && c.client.starts_with(operator_tag);
    let mut per_resource: BTreeMap<&str, usize> = BTreeMap::new();
    for change in audit.iter().filter(|c| operator(c)) {
        v.operator_changes += 1;
        *per_resource.entry(&change.resource).or_default() += 1;
        if change
            .fields
            .iter()
            .any(|f| f != "binaryAuthorization" && !f.starts_with("binaryAuthorization."))
        {
            v.foreign_field_changes.push(format!(
                "{} {:?} by {}",
                change.resource, change.fields, change.client
            ));
        }
    }
    v.max_changes_per_resource = per_resource.values().copied().max().unwrap_or(0);
    v.race_deploys = audit
        .iter()
        .filter(|c| c.source == ChangeSource::Race)
        .count();

    // Each user deploy survives unless a later user (or race) deploy replaced it.
    let mut last: BTreeMap<&str, &UserDeploy> = BTreeMap::new();
    for deploy in deploys {
        last.insert(&deploy.resource, deploy);
    }
    for (resource, deploy) in &last {
        let Some(now) = end.get(*resource) else {
            v.deploys_lost.push(format!("{resource}: gone"));
            continue;
        };
        let raced_after = audit.iter().any(|c| {
            c.resource == *resource && c.source == ChangeSource::Race && c.seq > deploy.seq
        });
        if now.labels != deploy.labels {
            v.deploys_lost.push(format!(
                "{resource}: labels {} != {}",
                now.labels, deploy.labels
            ));
        }
        if !raced_after && now.template != deploy.template {
            v.deploys_lost.push(format!(
                "{resource}: template {} != deployed {}",
                now.template, deploy.template
            ));
        }
        if !now.template.to_string().contains(&deploy.image) && !raced_after {
            v.deploys_lost
                .push(format!("{resource}: image {} gone", deploy.image));
        }
    }
    // Resources nobody deployed keep every user field they started with (race deploys
    // change the image, which the emulator itself chose).
    let deployed: BTreeSet<&str> = deploys.iter().map(|d| d.resource.as_str()).collect();
    for (resource, before) in start {
        let raced = audit
            .iter()
            .any(|c| c.resource == *resource && c.source == ChangeSource::Race);
        if deployed.contains(resource.as_str()) || raced {
            continue;
        }
        match end.get(resource) {
            Some(after) if after.user_fields == before.user_fields => {}
            Some(after) => v.untouched_changed.push(format!(
                "{resource}: {} -> {}",
                before.user_fields, after.user_fields
            )),
            None => v.untouched_changed.push(format!("{resource}: gone")),
        }
    }
    // No write cycle: a resource is written at most once per time it needed fixing (it
    // drifted at the start, or a user deploy cleared it).
    for (resource, changes) in &per_resource {
        let needed = usize::from(start.get(*resource).is_some_and(|h| !h.complies()))
            + deploys.iter().filter(|d| d.resource == *resource).count()
            + drifts.iter().filter(|d| d == resource).count();
        if *changes > needed {
            v.write_cycles.push(format!(
                "{resource}: {changes} operator changes for {needed} needed"
            ));
        }
    }
    v
}

/// Emulator calls by status code, e.g. `{"503": 52, "0": 9}` (0 = connection reset).
pub fn calls_by_code(handle: &EmulatorHandle) -> BTreeMap<u16, u64> {
    let mut out = BTreeMap::new();
    for call in handle.counters(None).calls {
        *out.entry(call.code).or_default() += call.count;
    }
    out
}

/// Where figures of a run are written (`target/reliability/NAME.json`), for RELIABILITY.md.
pub fn write_figures(name: &str, figures: &Value) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
    let _ = std::fs::create_dir_all(&dir);
    let text = serde_json::to_string_pretty(figures).unwrap_or_default();
    let _ = std::fs::write(dir.join(format!("{name}.json")), &text);
    // Straight to stderr: libtest captures eprintln! of passing tests.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{name}: {text}");
}

/// How the reliability suites start a replica: `op-a` watching `namespace` (also the
/// Lease's namespace), its log in `log_dir`.
pub fn operator_config(
    kubeconfig: &std::path::Path,
    namespace: &str,
    cloud_run: &str,
    log_dir: &std::path::Path,
) -> OperatorConfig {
    OperatorConfig::new(kubeconfig, cloud_run)
        .namespace(namespace)
        .identity("op-a")
        .log_dir(log_dir)
}
