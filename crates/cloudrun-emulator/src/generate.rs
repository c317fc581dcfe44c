//! Deterministic generation of large estates for benchmarks and load tests.
//!
//! The same [`GenerateSpec`] always yields the same resources (names, labels, images,
//! Binary Authorization settings, creation order).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};

use super::seed::{ProjectSeed, RegionSeed, ResourceSeed, Seed};
use super::state::Kind;

/// What to generate: `count` resources spread over `projects` × `regions`, about 70%
/// services, 20% jobs and 10% worker pools, with labels `env` (prod/staging/dev), `team`
/// and `tier` (critical/standard).
///
/// A resource complies with `useDefault: true`; a fraction `driftRatio` drifts instead:
/// 60% of those carry no Binary Authorization at all, 20% `useDefault: false`, 20% the
/// project's `relaxed` named policy. Each generated project gets the platform policies
/// `strict` and `relaxed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateSpec {
    /// How many resources.
    pub count: usize,
    /// Seed of the pseudo-random choices.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Fraction of resources whose Binary Authorization drifts, in `[0, 1]`.
    #[serde(default = "default_drift_ratio")]
    pub drift_ratio: f64,
    /// Project ids; projects not already seeded get numbers 900000000001, 900000000002, ...
    #[serde(default = "default_projects")]
    pub projects: Vec<String>,
    /// Regions to spread over.
    #[serde(default = "default_regions")]
    pub regions: Vec<String>,
    /// Prefix of generated names (`svc-00001`, `job-00002`, `pool-00003`), to generate
    /// twice into one estate.
    #[serde(default)]
    pub name_prefix: String,
}

fn default_seed() -> u64 {
    1
}

fn default_drift_ratio() -> f64 {
    0.1
}

fn default_projects() -> Vec<String> {
    vec!["gen-project-1".into(), "gen-project-2".into()]
}

fn default_regions() -> Vec<String> {
    vec![
        "us-central1".into(),
        "europe-west1".into(),
        "asia-northeast1".into(),
    ]
}

impl GenerateSpec {
    /// `count` resources with every other setting at its default.
    pub fn new(count: usize) -> Self {
        GenerateSpec {
            count,
            seed: default_seed(),
            drift_ratio: default_drift_ratio(),
            projects: default_projects(),
            regions: default_regions(),
            name_prefix: String::new(),
        }
    }
}

/// Largest estate the generator builds.
const MAX_COUNT: usize = 1_000_000;

const TEAMS: &[&str] = &["payments", "search", "platform", "data", "web"];

/// The generated estate as a seed fragment, to merge into a seed. `known` maps project
/// ids already present to their numbers.
pub fn estate(spec: &GenerateSpec, known: &BTreeMap<String, String>) -> Result<Seed, String> {
    if spec.count > MAX_COUNT {
        return Err(format!(
            "count {} is above the maximum of {MAX_COUNT}",
            spec.count
        ));
    }
    if !(0.0..=1.0).contains(&spec.drift_ratio) {
        return Err(format!(
            "driftRatio must be between 0 and 1, got {}",
            spec.drift_ratio
        ));
    }
    if spec.projects.is_empty() || spec.regions.is_empty() {
        return Err("needs at least one project and one region".into());
    }
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut projects = BTreeMap::new();
    let mut next_number = 900_000_000_001u64;
    for id in &spec.projects {
        let number = match known.get(id) {
            Some(number) => number.clone(),
            None => loop {
                let candidate = next_number.to_string();
                next_number += 1;
                if !known.values().any(|n| *n == candidate) {
                    break candidate;
                }
            },
        };
        let policies = ["strict", "relaxed"]
            .into_iter()
            .map(|p| {
                let description = format!("Generated {p} policy");
                let body = json!({"description": description});
                (p.to_string(), body.as_object().cloned())
            })
            .collect();
        projects.insert(
            id.clone(),
            ProjectSeed {
                project_number: number,
                policies,
                regions: spec
                    .regions
                    .iter()
                    .map(|r| (r.clone(), Some(RegionSeed::default())))
                    .collect(),
                ..ProjectSeed::default()
            },
        );
    }
    for index in 1..=spec.count {
        let project_id = &spec.projects[rng.random_range(0..spec.projects.len())];
        let region = &spec.regions[rng.random_range(0..spec.regions.len())];
        let kind = match rng.random_range(0..10) {
            0..=6 => Kind::Service,
            7 | 8 => Kind::Job,
            _ => Kind::WorkerPool,
        };
        let short = match kind {
            Kind::Service => "svc",
            Kind::Job => "job",
            Kind::WorkerPool => "pool",
        };
        let name = format!("{}{short}-{index:05}", spec.name_prefix);
        let env = match rng.random_range(0..10) {
            0..=4 => "prod",
            5..=7 => "staging",
            _ => "dev",
        };
        let team = TEAMS[rng.random_range(0..TEAMS.len())];
        let tier = if rng.random_bool(0.3) {
            "critical"
        } else {
            "standard"
        };
        let image = format!(
            "us-docker.pkg.dev/{project_id}/{team}/{name}:{}.{}.{}",
            rng.random_range(1..6),
            rng.random_range(0..20),
            rng.random_range(0..10)
        );
        let binary_authorization = if rng.random_bool(spec.drift_ratio) {
            match rng.random_range(0..5) {
                0..=2 => None,
                3 => Some(json!({"useDefault": false})),
                _ => Some(json!({
                    "policy": format!("projects/{project_id}/platforms/cloudRun/policies/relaxed")
                })),
            }
        } else {
            Some(json!({"useDefault": true}))
        };
        let mut fields = Map::new();
        fields.insert(
            "labels".into(),
            json!({"env": env, "team": team, "tier": tier}),
        );
        if let Some(value) = binary_authorization {
            fields.insert("binaryAuthorization".into(), value);
        }
        let entry = ResourceSeed {
            name,
            image: Some(image),
            deploy_blocked: None,
            deleted: false,
            fields,
        };
        if let Some(Some(content)) = projects
            .get_mut(project_id)
            .and_then(|p: &mut ProjectSeed| p.regions.get_mut(region))
        {
            content.of_kind_mut(kind).push(entry);
        }
    }
    Ok(Seed {
        projects,
        generate: None,
    })
}

/// How many generated resources drift, for reports.
pub fn drifted(seed: &Seed) -> usize {
    seed.projects
        .values()
        .flat_map(|p| p.regions.values().flatten())
        .flat_map(|r| Kind::ALL.into_iter().flat_map(move |k| region_items(r, k)))
        .filter(|e| e.fields.get("binaryAuthorization") != Some(&json!({"useDefault": true})))
        .count()
}

fn region_items(region: &RegionSeed, kind: Kind) -> Vec<&ResourceSeed> {
    match kind {
        Kind::Service => region.services.iter().collect(),
        Kind::Job => region.jobs.iter().collect(),
        Kind::WorkerPool => region.worker_pools.iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_drifts_about_the_ratio() {
        let mut spec = GenerateSpec::new(2000);
        spec.drift_ratio = 0.25;
        let a = estate(&spec, &BTreeMap::new()).unwrap();
        let b = estate(&spec, &BTreeMap::new()).unwrap();
        assert_eq!(a, b);
        let drift = drifted(&a);
        assert!((400..=600).contains(&drift), "{drift} of 2000 drifted");
        spec.seed = 2;
        assert_ne!(a, estate(&spec, &BTreeMap::new()).unwrap());
    }

    #[test]
    fn known_projects_keep_their_numbers() {
        let mut spec = GenerateSpec::new(10);
        spec.projects = vec!["acme-prod".into(), "fresh-project".into()];
        let known = BTreeMap::from([("acme-prod".to_string(), "900000000001".to_string())]);
        let seed = estate(&spec, &known).unwrap();
        assert_eq!(seed.projects["acme-prod"].project_number, "900000000001");
        assert_eq!(
            seed.projects["fresh-project"].project_number,
            "900000000002"
        );
    }
}
