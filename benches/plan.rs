//! Benchmarks the planner: 10,000 Cloud Run resources against 100 bindings (target < 50 ms).
//!
//! The estate: 4 projects × 5 regions × 500 resources (60% services, 30% jobs, 10% worker
//! pools) of 8 teams, 10% drifted, some breakglass and blocked deploys. The 100 bindings,
//! 25 per project, overlap the way platform teams write them: a low-priority catch-all,
//! per-team globs, label selectors for critical tiers at a higher priority, exact-name
//! lists, and audit bindings whose globs have no literal prefix (full scans).
//!
//! A second case measures the worst shape: 100 catch-all bindings over one project's
//! 10,000 resources (one million binding × resource pairs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup: a failed unwrap, expect or panic aborts the run, which is its report"
)]

use std::collections::BTreeMap;
use std::hint::black_box;

use binauthz_operator::api::{
    BinAuthzBindingSpec, BreakglassMode, LabelOperator, LabelSelector, LabelSelectorRequirement,
    Mode, PolicyRef, ResourceKind, TargetSelector, Targets,
};
use binauthz_operator::plan::{plan, BindingInput, BindingKey, Permission, PlanError, StatusInput};
use binauthz_operator::policy::ObservedPolicy;
use binauthz_operator::resource::{ObservedResource, ResourceId};
use criterion::{criterion_group, criterion_main, Criterion};

const PROJECTS: [&str; 4] = ["acme-prod", "acme-stage", "acme-data", "acme-edge"];
const LOCATIONS: [&str; 5] = [
    "us-central1",
    "us-east1",
    "europe-west1",
    "europe-west4",
    "asia-east1",
];
const TEAMS: [&str; 8] = ["pay", "web", "api", "data", "ml", "search", "auth", "mail"];
const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";

fn estate(projects: &[&str], per_location: usize) -> Vec<ObservedResource> {
    let mut out = Vec::new();
    for project in projects {
        for location in LOCATIONS {
            for i in 0..per_location {
                let team = TEAMS[i % TEAMS.len()];
                let kind = match i % 10 {
                    0..=5 => ResourceKind::Service,
                    6..=8 => ResourceKind::Job,
                    _ => ResourceKind::WorkerPool,
                };
                let labels = BTreeMap::from([
                    ("team".to_owned(), team.to_owned()),
                    ("env".to_owned(), "prod".to_owned()),
                    (
                        "tier".to_owned(),
                        if i % 5 == 0 { "critical" } else { "standard" }.to_owned(),
                    ),
                ]);
                let policy = match i % 20 {
                    0 | 1 => ObservedPolicy::None,
                    2 => ObservedPolicy::Named(STRICT.to_owned()),
                    _ => ObservedPolicy::ProjectDefault,
                };
                out.push(ObservedResource {
                    id: ResourceId {
                        kind,
                        project: (*project).to_owned(),
                        location: location.to_owned(),
                        name: format!("{team}-svc-{i}"),
                    },
                    labels: labels.into(),
                    deleted: i % 50 == 49,
                    policy,
                    breakglass: (i % 40 == 3).then(|| "incident 4711".to_owned()),
                    deploy_blocked: (i % 97 == 0).then(|| "image not authorized".to_owned()),
                    last_change: None,
                    running: Default::default(),
                });
            }
        }
    }
    out
}

fn selector(names: Option<Vec<String>>, labels: Option<LabelSelector>) -> Option<TargetSelector> {
    Some(TargetSelector {
        names,
        label_selector: labels,
        exclude: vec!["*-svc-7".to_owned()],
    })
}

fn spec(project: &str, targets: Targets, priority: i32, strict: bool) -> BinAuthzBindingSpec {
    BinAuthzBindingSpec {
        project: project.to_owned(),
        locations: vec!["*".to_owned()],
        targets,
        policy: if strict {
            PolicyRef {
                use_default: None,
                name: Some(STRICT.to_owned()),
            }
        } else {
            PolicyRef {
                use_default: Some(true),
                name: None,
            }
        },
        mode: Mode::Enforce,
        breakglass: BreakglassMode::Allow,
        interval: "10m".to_owned(),
        priority,
        suspend: false,
    }
}

fn realistic_bindings() -> Vec<(BindingKey, BinAuthzBindingSpec)> {
    let mut out = Vec::new();
    for project in PROJECTS {
        let ns = project.trim_start_matches("acme-");
        let key = |name: String| BindingKey::new(ns, name);
        let all = Some(vec!["*".to_owned()]);
        out.push((
            key("baseline".into()),
            spec(
                project,
                Targets {
                    services: selector(all.clone(), None),
                    jobs: selector(all.clone(), None),
                    worker_pools: selector(all, None),
                },
                -10,
                false,
            ),
        ));
        for team in TEAMS {
            let names = Some(vec![format!("{team}-*")]);
            out.push((
                key(format!("{team}-glob")),
                spec(
                    project,
                    Targets {
                        services: selector(names.clone(), None),
                        jobs: selector(names, None),
                        worker_pools: None,
                    },
                    0,
                    false,
                ),
            ));
            let critical = LabelSelector {
                match_labels: BTreeMap::from([("team".to_owned(), team.to_owned())]),
                match_expressions: vec![LabelSelectorRequirement {
                    key: "tier".to_owned(),
                    operator: LabelOperator::In,
                    values: vec!["critical".to_owned()],
                }],
            };
            out.push((
                key(format!("{team}-critical")),
                spec(
                    project,
                    Targets {
                        services: selector(None, Some(critical.clone())),
                        jobs: None,
                        worker_pools: selector(None, Some(critical)),
                    },
                    10,
                    true,
                ),
            ));
        }
        for list in 0..4 {
            let names = (0..20)
                .map(|n| {
                    let i = list * 100 + n * 5;
                    format!("{}-svc-{i}", TEAMS[i % TEAMS.len()])
                })
                .collect();
            let mut s = spec(
                project,
                Targets {
                    services: selector(Some(names), None),
                    ..Targets::default()
                },
                5,
                false,
            );
            s.locations = vec![LOCATIONS[list].to_owned(), LOCATIONS[list + 1].to_owned()];
            out.push((key(format!("exact-{list}")), s));
        }
        for (n, glob) in ["*-svc-1?", "*-svc-2??", "*-4?", "*-9"]
            .into_iter()
            .enumerate()
        {
            let mut s = spec(
                project,
                Targets {
                    services: selector(Some(vec![glob.to_owned()]), None),
                    jobs: selector(Some(vec![glob.to_owned()]), None),
                    worker_pools: None,
                },
                0,
                false,
            );
            s.mode = Mode::Audit;
            out.push((key(format!("audit-{n}")), s));
        }
    }
    out
}

fn catch_all_bindings() -> Vec<(BindingKey, BinAuthzBindingSpec)> {
    (0..100)
        .map(|i| {
            let all = Some(vec!["*".to_owned()]);
            let targets = Targets {
                services: selector(all.clone(), None),
                jobs: selector(all.clone(), None),
                worker_pools: selector(all, None),
            };
            // Ten priority levels, the top one owning everything.
            (
                BindingKey::new("platform", format!("all-{i:03}")),
                spec("acme-prod", targets, i % 10, false),
            )
        })
        .collect()
}

fn bench_case(
    c: &mut Criterion,
    name: &str,
    sample_size: usize,
    bindings: &[(BindingKey, BinAuthzBindingSpec)],
    resources: &[ObservedResource],
) {
    let inputs: Vec<BindingInput<'_>> = bindings
        .iter()
        .map(|(key, spec)| BindingInput {
            key: key.clone(),
            spec,
            permission: Permission::Open,
        })
        .collect();
    assert_eq!(bindings.len(), 100);
    assert_eq!(resources.len(), 10_000);
    let mut group = c.benchmark_group(name);
    group.sample_size(sample_size);
    let outcomes = BTreeMap::new();
    group.bench_function("plan", |b| {
        b.iter(|| plan(black_box(&inputs), black_box(resources)))
    });
    let status_input = |previous, history| StatusInput {
        generation: Some(1),
        now: jiff::Timestamp::UNIX_EPOCH,
        pass_failure: None,
        findings: None,
        outcomes: &outcomes,
        previous,
        history,
        breakglass: None,
        revisions: None,
    };
    group.bench_function("plan+status-first-pass", |b| {
        b.iter(|| {
            let p = plan(black_box(&inputs), black_box(resources))?;
            let statuses: Vec<_> = p
                .bindings()
                .map(|bp| bp.status(&status_input(None, None)).status)
                .collect();
            Ok::<_, PlanError>(statuses)
        })
    });
    // The steady state of the controller: the previous pass's status and history at hand.
    let first = plan(&inputs, resources).expect("unique bindings");
    let reports: Vec<_> = first
        .bindings()
        .map(|bp| bp.status(&status_input(None, None)))
        .collect();
    group.bench_function("plan+status-steady", |b| {
        b.iter(|| {
            let p = plan(black_box(&inputs), black_box(resources))?;
            let statuses: Vec<_> = p
                .bindings()
                .zip(&reports)
                .map(|(bp, before)| {
                    let input = status_input(Some(&before.status), Some(&before.history));
                    bp.status(&input).status
                })
                .collect();
            Ok::<_, PlanError>(statuses)
        })
    });
    group.finish();
}

fn planner(c: &mut Criterion) {
    let resources = estate(&PROJECTS, 500);
    bench_case(
        c,
        "10k-resources-100-bindings",
        100,
        &realistic_bindings(),
        &resources,
    );
    let one_project = estate(&["acme-prod"], 2_000);
    bench_case(
        c,
        "10k-resources-100-catch-alls",
        10,
        &catch_all_bindings(),
        &one_project,
    );
}

criterion_group!(benches, planner);
criterion_main!(benches);
