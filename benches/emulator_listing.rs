//! How fast the emulator lists: 10,000 services read page by page (100 pages of 100) over
//! loopback HTTP, the way a client follows `nextPageToken`. Run with
//! `cargo bench --bench emulator_listing`; the figures go to docs/emulator.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup: a failed unwrap, expect or panic aborts the run, which is its report"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cloudrun_emulator::{
    EmulatorConfig, GenerateSpec, ProjectSeed, RegionSeed, ResourceSeed, Seed,
};
use serde_json::{json, Map, Value};

const RESOURCES: usize = 10_000;
const RUNS: usize = 7;

/// One project and region holding `count` services, each with labels and Binary Authorization.
fn one_collection(count: usize) -> Seed {
    let services = (0..count)
        .map(|i| {
            let mut fields = Map::new();
            fields.insert(
                "labels".into(),
                json!({"env": "prod", "team": "bench", "tier": "standard"}),
            );
            fields.insert("binaryAuthorization".into(), json!({"useDefault": true}));
            ResourceSeed {
                name: format!("svc-{i:05}"),
                image: Some(format!(
                    "us-docker.pkg.dev/bench-project/apps/svc-{i:05}:1.0.{i}"
                )),
                deploy_blocked: None,
                deleted: false,
                fields,
            }
        })
        .collect();
    let region = RegionSeed {
        services,
        ..RegionSeed::default()
    };
    let project = ProjectSeed {
        project_number: "900000000099".into(),
        policies: BTreeMap::new(),
        regions: BTreeMap::from([("us-central1".to_string(), Some(region))]),
        ..ProjectSeed::default()
    };
    Seed {
        projects: BTreeMap::from([("bench-project".to_string(), project)]),
        generate: None,
    }
}

/// Lists every item of `collections` page by page; returns (items, pages, bytes).
async fn list_all(
    http: &reqwest::Client,
    base: &str,
    collections: &[String],
    extra: &str,
) -> (usize, usize, usize) {
    let (mut items, mut pages, mut bytes) = (0, 0, 0);
    for collection in collections {
        let key = collection
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut token = String::new();
        loop {
            let body = http
                .get(format!(
                    "{base}/v2/{collection}?pageSize=100&pageToken={token}{extra}"
                ))
                .bearer_auth("bench")
                .send()
                .await
                .expect("list call")
                .bytes()
                .await
                .expect("list body");
            bytes += body.len();
            pages += 1;
            let page: Value = serde_json::from_slice(&body).expect("JSON page");
            items += page[&key].as_array().map_or(0, Vec::len);
            match page["nextPageToken"].as_str() {
                Some(next) => token = next.to_string(),
                None => break,
            }
        }
    }
    (items, pages, bytes)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn measure(label: &str, seed: Seed, collections: Vec<String>) {
    let loading = Instant::now();
    let handle = cloudrun_emulator::start(EmulatorConfig {
        seed,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let load_time = loading.elapsed();
    let http = reqwest::Client::new();
    let base = handle.url();
    for (variant, extra) in [
        ("compact (prettyPrint=false)", "&prettyPrint=false"),
        ("default (pretty)", ""),
    ] {
        let mut samples = Vec::new();
        let mut shape = (0, 0, 0);
        for _ in 0..RUNS {
            let started = Instant::now();
            shape = list_all(&http, &base, &collections, extra).await;
            samples.push(started.elapsed());
        }
        let (items, pages, bytes) = shape;
        assert_eq!(items, RESOURCES, "every resource listed");
        let best = *samples.iter().min().expect("runs");
        let typical = median(samples);
        println!(
            "{label}, {variant}: {items} resources in {pages} pages ({:.1} MB): median {:.0} ms, best {:.0} ms, {:.2} ms per page; seed load {:.0} ms",
            bytes as f64 / 1e6,
            typical.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e3,
            typical.as_secs_f64() * 1e3 / pages as f64,
            load_time.as_secs_f64() * 1e3,
        );
    }
    handle.shutdown().await;
}

#[tokio::main]
async fn main() {
    measure(
        "one collection",
        one_collection(RESOURCES),
        vec!["projects/bench-project/locations/us-central1/services".to_string()],
    )
    .await;

    let spec = GenerateSpec::new(RESOURCES);
    let mut collections = Vec::new();
    for project in &spec.projects {
        for region in &spec.regions {
            for kind in ["services", "jobs", "workerPools"] {
                collections.push(format!("projects/{project}/locations/{region}/{kind}"));
            }
        }
    }
    let generated = Seed {
        projects: BTreeMap::new(),
        generate: Some(spec),
    };
    measure(
        "generated estate (2 projects x 3 regions x 3 kinds)",
        generated,
        collections,
    )
    .await;
}
