//! What the scenarios run on: binding sets the way platform teams write them, seeds, and
//! what the planner makes of an estate (matched resources, needed writes, the list bound).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use binauthz_operator::api::{
    BinAuthzBinding, BinAuthzBindingSpec, BreakglassMode, LabelOperator, LabelSelector,
    LabelSelectorRequirement, Mode, PolicyRef, ResourceKind, TargetSelector, Targets,
};
use binauthz_operator::fleet;
use binauthz_operator::plan::{self, BindingInput, BindingKey, Decision};
use binauthz_operator::policy::ObservedPolicy;
use binauthz_operator::resource::{BreakglassChange, ObservedResource, Remediation, ResourceId};
use cloudrun_emulator::{ProjectSeed, RegionSeed, ResourceSeed, Seed};
use serde_json::{json, Map, Value};

/// Cloud Run's list page size, as the client asks for it.
pub const PAGE_SIZE: usize = 100;

/// Teams and envs of the emulator's generated estates.
const TEAMS: [&str; 5] = ["payments", "search", "platform", "data", "web"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

fn names(globs: &[&str]) -> Option<TargetSelector> {
    Some(TargetSelector {
        names: Some(globs.iter().map(|g| (*g).to_string()).collect()),
        ..TargetSelector::default()
    })
}

fn labels(key: &str, value: &str) -> Option<TargetSelector> {
    Some(TargetSelector {
        label_selector: Some(LabelSelector {
            match_labels: BTreeMap::from([(key.to_string(), value.to_string())]),
            match_expressions: Vec::new(),
        }),
        ..TargetSelector::default()
    })
}

fn binding(namespace: &str, name: String, spec: BinAuthzBindingSpec) -> BinAuthzBinding {
    let mut b = BinAuthzBinding::new(&name, spec);
    b.metadata.namespace = Some(namespace.to_string());
    b
}

fn spec(
    project: &str,
    locations: &[String],
    targets: Targets,
    priority: i32,
    interval: &str,
) -> BinAuthzBindingSpec {
    BinAuthzBindingSpec {
        project: project.to_string(),
        locations: locations.to_vec(),
        targets,
        policy: PolicyRef {
            use_default: Some(true),
            name: None,
        },
        mode: Mode::Enforce,
        breakglass: BreakglassMode::Allow,
        interval: interval.to_string(),
        priority,
        suspend: false,
    }
}

/// `count` Enforce bindings over one project, all asking for the project's default policy
/// (so the only extra read a named policy costs — its existence check — stays out of the
/// list bound): a catch-all over every kind, per-team and per-env label selectors, a
/// critical-tier requirement, name-suffix globs per kind (some over half the regions), and
/// exact name lists, at different priorities. Names start with `prefix`.
pub fn bindings(
    namespace: &str,
    prefix: &str,
    project: &str,
    regions: &[String],
    count: usize,
    interval: &str,
) -> Vec<BinAuthzBinding> {
    let half: Vec<String> = regions
        .iter()
        .take(regions.len().div_ceil(2))
        .cloned()
        .collect();
    let mut items: Vec<(String, Vec<String>, Targets, i32)> = Vec::with_capacity(count);
    let push = |items: &mut Vec<(String, Vec<String>, Targets, i32)>,
                name: String,
                locations: &[String],
                targets: Targets,
                priority: i32| {
        if items.len() < count {
            items.push((name, locations.to_vec(), targets, priority));
        }
    };
    push(
        &mut items,
        "all".into(),
        regions,
        Targets {
            services: names(&["*"]),
            jobs: names(&["*"]),
            worker_pools: names(&["*"]),
        },
        0,
    );
    for team in TEAMS {
        push(
            &mut items,
            format!("team-{team}"),
            regions,
            Targets {
                services: labels("team", team),
                jobs: labels("team", team),
                worker_pools: None,
            },
            10,
        );
    }
    for env in ENVS {
        push(
            &mut items,
            format!("env-{env}"),
            regions,
            Targets {
                services: labels("env", env),
                jobs: None,
                worker_pools: labels("env", env),
            },
            5,
        );
    }
    let critical = TargetSelector {
        label_selector: Some(LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: LabelOperator::In,
                values: vec!["critical".into()],
            }],
        }),
        ..TargetSelector::default()
    };
    push(
        &mut items,
        "tier-critical".into(),
        regions,
        Targets {
            services: Some(critical.clone()),
            jobs: Some(critical.clone()),
            worker_pools: Some(critical),
        },
        20,
    );
    // Suffix globs: `svc-*3` matches a tenth of the services, and so on.
    let mut round = 0usize;
    while items.len() < count && round < 10 {
        for (kind, short) in [("svc", 0), ("job", 1), ("pool", 2)] {
            let glob = format!("{kind}-*{round}");
            let selector = names(&[glob.as_str()]);
            let targets = match short {
                0 => Targets {
                    services: selector,
                    ..Targets::default()
                },
                1 => Targets {
                    jobs: selector,
                    ..Targets::default()
                },
                _ => Targets {
                    worker_pools: selector,
                    ..Targets::default()
                },
            };
            let locations = if round.is_multiple_of(2) {
                regions
            } else {
                &half
            };
            push(
                &mut items,
                format!("{kind}-ends-{round}"),
                locations,
                targets,
                1,
            );
        }
        round += 1;
    }
    // Exact name lists of 40 services each, owned at the highest priority.
    let mut block = 0usize;
    while items.len() < count {
        let list: Vec<String> = (1..=40)
            .map(|i| format!("svc-{:05}", block * 40 + i))
            .collect();
        let refs: Vec<&str> = list.iter().map(String::as_str).collect();
        push(
            &mut items,
            format!("svc-list-{block}"),
            regions,
            Targets {
                services: names(&refs),
                ..Targets::default()
            },
            30,
        );
        block += 1;
    }
    items
        .into_iter()
        .enumerate()
        .map(|(n, (name, locations, targets, priority))| {
            binding(
                namespace,
                format!("{prefix}{n:03}-{name}"),
                spec(project, &locations, targets, priority, interval),
            )
        })
        .collect()
}

/// One binding over every service of one region (scenario 2).
pub fn one_region_binding(namespace: &str, project: &str, region: &str) -> BinAuthzBinding {
    binding(
        namespace,
        "all-services".into(),
        spec(
            project,
            &[region.to_string()],
            Targets {
                services: names(&["*"]),
                ..Targets::default()
            },
            0,
            "30s",
        ),
    )
}

/// Writes bindings as one multi-document YAML file (what `check -f` reads).
pub fn write_manifests(path: &Path, bindings: &[BinAuthzBinding]) -> Result<()> {
    let mut text = String::new();
    for b in bindings {
        text.push_str("---\n");
        text.push_str(&serde_yaml_ng::to_string(b).context("encoding a binding")?);
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `d` services without Binary Authorization in one region of one project.
pub fn drifted_services_seed(project: &str, number: &str, region: &str, d: usize) -> Seed {
    let services = (1..=d)
        .map(|i| {
            let mut fields = Map::new();
            fields.insert("labels".into(), json!({"env": "prod", "team": "web"}));
            ResourceSeed {
                name: format!("svc-{i:05}"),
                image: Some(format!("us-docker.pkg.dev/{project}/web/svc-{i:05}:1.0.0")),
                deploy_blocked: None,
                deleted: false,
                fields,
            }
        })
        .collect();
    Seed {
        projects: BTreeMap::from([(
            project.to_string(),
            ProjectSeed {
                project_number: number.to_string(),
                policies: BTreeMap::new(),
                regions: BTreeMap::from([(
                    region.to_string(),
                    Some(RegionSeed {
                        services,
                        ..RegionSeed::default()
                    }),
                )]),
                ..ProjectSeed::default()
            },
        )]),
        generate: None,
    }
}

fn kind_items(region: &RegionSeed, kind: ResourceKind) -> &[ResourceSeed] {
    match kind {
        ResourceKind::Service => &region.services,
        ResourceKind::Job => &region.jobs,
        ResourceKind::WorkerPool => &region.worker_pools,
    }
}

/// Every resource of `project` in the estate, as the planner sees it.
pub fn observed(seed: &Seed, project: &str) -> Vec<ObservedResource> {
    let mut out = Vec::new();
    let Some(p) = seed.projects.get(project) else {
        return out;
    };
    for (location, region) in &p.regions {
        let Some(region) = region else { continue };
        for kind in ResourceKind::ALL {
            for item in kind_items(region, kind) {
                let labels = item
                    .fields
                    .get("labels")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(ObservedResource {
                    id: ResourceId {
                        kind,
                        project: project.to_string(),
                        location: location.clone(),
                        name: item.name.clone(),
                    },
                    labels,
                    deleted: item.deleted,
                    policy: policy_of(item.fields.get("binaryAuthorization")),
                    breakglass: None,
                    deploy_blocked: None,
                    last_change: None,
                    running: Default::default(),
                });
            }
        }
    }
    out
}

fn policy_of(value: Option<&Value>) -> ObservedPolicy {
    match value {
        Some(v) if v.get("useDefault") == Some(&Value::Bool(true)) => {
            ObservedPolicy::ProjectDefault
        }
        Some(v) => match v.get("policy").and_then(Value::as_str) {
            Some(name) => ObservedPolicy::Named(name.to_string()),
            None => ObservedPolicy::None,
        },
        None => ObservedPolicy::None,
    }
}

/// Full resource names of `project`'s resources (for the admin drift route).
/// The regions of `project` in the emulator's estate.
pub fn regions(seed: &Seed, project: &str) -> Vec<String> {
    seed.projects
        .get(project)
        .map(|p| p.regions.keys().cloned().collect())
        .unwrap_or_default()
}

pub fn resource_names(seed: &Seed, project: &str) -> Vec<String> {
    observed(seed, project)
        .into_iter()
        .filter(|r| !r.deleted)
        .map(|r| r.id.resource_name())
        .collect()
}

/// The least any reader can do to see every resource of `project`: one page per 100
/// resources of each (region, kind) collection — Σ ceil(n / page size).
pub fn list_bound(seed: &Seed, project: &str) -> u64 {
    let mut per_collection: BTreeMap<(String, ResourceKind), usize> = BTreeMap::new();
    for r in observed(seed, project).into_iter().filter(|r| !r.deleted) {
        *per_collection
            .entry((r.id.location.clone(), r.id.kind))
            .or_default() += 1;
    }
    per_collection
        .values()
        .map(|n| n.div_ceil(PAGE_SIZE) as u64)
        .sum()
}

/// The bindings as the planner takes them (no tenancy grants).
pub fn inputs(bindings: &[BinAuthzBinding]) -> Vec<BindingInput<'_>> {
    let open = fleet::Tenancy::open();
    bindings.iter().map(|b| fleet::input(b, &open)).collect()
}

/// What the bindings ask of an estate.
pub struct Intent {
    /// Every matched resource with the write its owner would make if it drifted (what a
    /// per-resource reconciler holds, one object per resource).
    pub desired: BTreeMap<ResourceId, Remediation>,
    /// Resources that need a write now.
    pub writes: BTreeSet<ResourceId>,
}

/// Plans `bindings` over `resources` with the operator's planner.
pub fn intent(bindings: &[BinAuthzBinding], resources: &[ObservedResource]) -> Result<Intent> {
    let inputs = inputs(bindings);
    let specs: BTreeMap<BindingKey, &BinAuthzBindingSpec> =
        inputs.iter().map(|i| (i.key.clone(), i.spec)).collect();
    let planned = plan::plan(&inputs, resources).context("planning the bench bindings")?;
    let mut desired = BTreeMap::new();
    for bp in planned.bindings() {
        let Some(spec) = specs.get(bp.key()) else {
            continue;
        };
        let Some(policy) = spec.desired_policy() else {
            continue;
        };
        let remediation = Remediation {
            desired: policy,
            breakglass: match spec.breakglass {
                BreakglassMode::Allow => BreakglassChange::Keep,
                BreakglassMode::Clear => BreakglassChange::Clear,
            },
        };
        for t in bp.targets() {
            let owns = matches!(
                t.decision,
                Decision::Compliant | Decision::Remediate(_) | Decision::Breakglass
            );
            if owns {
                desired.insert(t.resource.id.clone(), remediation.clone());
            }
        }
    }
    let writes = planned
        .writes()
        .into_iter()
        .map(|w| w.resource.id.clone())
        .collect();
    Ok(Intent { desired, writes })
}
