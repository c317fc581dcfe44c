//! CPU time and memory of a running process, read from /proc (Linux), once or sampled.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::emulator::now_seconds;

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// User + system CPU time so far, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size now, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size so far, in KiB (`VmHWM`).
    pub peak_rss_kib: u64,
}

/// Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Reads CPU time and memory of `pid`.
pub fn read(pid: u32, ticks_per_second: f64) -> Result<Reading> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(dir.join("status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(Reading {
        cpu_seconds: cpu_ticks(&stat)? as f64 / ticks_per_second,
        rss_kib: status_kib(&status, "VmRSS:")?,
        peak_rss_kib: status_kib(&status, "VmHWM:")?,
    })
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> Result<u64> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no command name in /proc/PID/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime field 15.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .context("short /proc/PID/stat")?
            .parse::<u64>()
            .with_context(|| format!("field {n} of /proc/PID/stat is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

fn status_kib(status: &str, key: &str) -> Result<u64> {
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(key) {
            let mut parts = rest.split_whitespace();
            let value = parts.next().context("empty /proc/PID/status line")?;
            return value
                .parse()
                .with_context(|| format!("{key} in /proc/PID/status is not a number"));
        }
    }
    bail!("no {key} in /proc/PID/status")
}

/// Readings of one process every 250 ms, in the background, until [`Sampler::stop`].
pub struct Sampler {
    samples: Arc<Mutex<Vec<(f64, Reading)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32, ticks_per_second: f64) -> Self {
        let samples: Arc<Mutex<Vec<(f64, Reading)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (samples, stop) = (Arc::clone(&samples), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(r) = read(pid, ticks_per_second) {
                        samples
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((now_seconds(), r));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        Self {
            samples,
            stop,
            task,
        }
    }

    /// Stops sampling; every (seconds since the epoch, reading) taken, in time order.
    pub async fn stop(self) -> Result<Vec<(f64, Reading)>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("the /proc sampler")?;
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(samples)
    }
}

/// CPU seconds at time `t`, interpolated between samples.
pub fn cpu_at(samples: &[(f64, Reading)], t: f64) -> Option<f64> {
    let i = samples.partition_point(|s| s.0 < t);
    if i == 0 || i == samples.len() {
        return None;
    }
    let (a, b) = (&samples[i - 1], &samples[i]);
    let f = (t - a.0) / (b.0 - a.0);
    Some(a.1.cpu_seconds + f * (b.1.cpu_seconds - a.1.cpu_seconds))
}
