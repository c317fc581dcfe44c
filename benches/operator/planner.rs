//! Scenario 5 — the planner: reads what `cargo bench --bench plan` (criterion) measured.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::stats::Spread;

/// The criterion benchmarks of benches/plan.rs, in report order.
pub const BENCHES: [&str; 6] = [
    "10k-resources-100-bindings/plan",
    "10k-resources-100-bindings/plan+status-first-pass",
    "10k-resources-100-bindings/plan+status-steady",
    "10k-resources-100-catch-alls/plan",
    "10k-resources-100-catch-alls/plan+status-first-pass",
    "10k-resources-100-catch-alls/plan+status-steady",
];

/// The planner's target: 10,000 resources × 100 bindings.
pub const TARGET_MS: f64 = 50.0;

/// One criterion benchmark.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bench {
    /// Criterion id.
    pub id: String,
    /// Milliseconds per iteration over criterion's samples.
    pub ms: Spread,
    /// Median over the target.
    pub ratio: f64,
    /// When criterion wrote it (RFC 3339).
    pub measured_at: String,
}

/// Scenario 5's results.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannerResult {
    /// Each benchmark found.
    pub benches: Vec<Bench>,
}

#[derive(Deserialize)]
struct Sample {
    iters: Vec<f64>,
    times: Vec<f64>,
}

/// Reads `criterion_dir/<id>/new/sample.json` of each benchmark; `None` when criterion has
/// not run.
pub fn read(criterion_dir: &Path) -> Result<Option<PlannerResult>> {
    let mut benches = Vec::new();
    for id in BENCHES {
        let path = criterion_dir.join(id).join("new/sample.json");
        if !path.exists() {
            continue;
        }
        let sample: Sample = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("decoding {}", path.display()))?;
        let per_iter: Vec<f64> = sample
            .times
            .iter()
            .zip(&sample.iters)
            .filter(|(_, n)| **n > 0.0)
            .map(|(t, n)| t / n / 1e6)
            .collect();
        let Some(ms) = Spread::of(&per_iter) else {
            continue;
        };
        let modified = std::fs::metadata(&path)?.modified()?;
        let measured_at = jiff::Timestamp::try_from(modified)
            .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
            .unwrap_or_default();
        benches.push(Bench {
            id: id.to_string(),
            ratio: ms.median / TARGET_MS,
            ms,
            measured_at,
        });
    }
    Ok((!benches.is_empty()).then_some(PlannerResult { benches }))
}
