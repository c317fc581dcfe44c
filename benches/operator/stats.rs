//! Summaries of repeated measurements: median with its range, nearest-rank percentiles.

use serde::Serialize;

/// The median of some runs with the smallest and largest value seen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// Middle value (mean of the two middle ones for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// How many values.
    pub runs: usize,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let sorted = sorted(values);
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            runs: n,
        })
    }

    /// `median (min–max)` with `decimals` digits, or only the median when all runs agree.
    pub fn show(&self, decimals: usize) -> String {
        let m = format!("{:.*}", decimals, self.median);
        let lo = format!("{:.*}", decimals, self.min);
        let hi = format!("{:.*}", decimals, self.max);
        if lo == hi {
            m
        } else {
            format!("{m} ({lo}–{hi})")
        }
    }
}

/// Nearest-rank percentile `p` (0–100) of `values`; `None` when there are none.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let sorted = sorted(values);
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}
