//! The Cloud Run emulator as a separate process, and its admin API: the source of truth of
//! every figure (request log, counters, audit log).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cloudrun_emulator::{ChangeRecord, ChangeSource, Counters, RequestRecord, Seed};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `binauthz-operator emulator` process (killed when dropped).
pub struct Emulator {
    child: Child,
    url: String,
    http: reqwest::Client,
}

/// How a Cloud Run call is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallClass {
    /// services/jobs/workerPools list: what the lower bound counts.
    List,
    /// Reading one resource.
    Get,
    /// `operations.get` or `operations.wait`: following a write.
    Poll,
    /// Any other read (locations, platform policies).
    OtherRead,
    /// A patch.
    Write,
}

impl CallClass {
    /// The class of an emulator method name (`services.list`, `jobs.patch`, ...).
    pub fn of(method: &str) -> Self {
        match method.rsplit('.').next() {
            Some("list") if !method.starts_with("locations") => Self::List,
            Some("get") if method.starts_with("operations") => Self::Poll,
            Some("wait") => Self::Poll,
            Some("get") if !method.starts_with("platformPolicies") => Self::Get,
            Some("patch") => Self::Write,
            _ => Self::OtherRead,
        }
    }
}

/// Calls counted by class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallTally {
    /// List pages.
    pub lists: u64,
    /// Single-resource reads.
    pub gets: u64,
    /// Operation polls (`operations.get`, `operations.wait`).
    pub polls: u64,
    /// Other reads (locations, policies).
    pub other_reads: u64,
    /// Patches.
    pub writes: u64,
    /// Answers with HTTP 429.
    pub throttled: u64,
}

impl CallTally {
    /// Every read: what Cloud Run's read quota counts.
    pub fn reads(&self) -> u64 {
        self.lists + self.gets + self.polls + self.other_reads
    }

    /// Adds one call.
    pub fn add(&mut self, method: &str, code: u16, count: u64) {
        match CallClass::of(method) {
            CallClass::List => self.lists += count,
            CallClass::Get => self.gets += count,
            CallClass::Poll => self.polls += count,
            CallClass::OtherRead => self.other_reads += count,
            CallClass::Write => self.writes += count,
        }
        if code == 429 {
            self.throttled += count;
        }
    }

    /// The tally of some logged requests.
    pub fn of_requests<'a>(requests: impl IntoIterator<Item = &'a RequestRecord>) -> Self {
        let mut tally = Self::default();
        for r in requests {
            tally.add(&r.method, r.code, 1);
        }
        tally
    }

    /// The tally of the emulator's counters.
    pub fn of_counters(counters: &Counters) -> Self {
        let mut tally = Self::default();
        for c in &counters.calls {
            tally.add(&c.method, c.code, c.count);
        }
        tally
    }
}

#[derive(Deserialize)]
struct Requests {
    requests: Vec<RequestRecord>,
}

#[derive(Deserialize)]
struct Changes {
    changes: Vec<ChangeRecord>,
}

#[derive(Deserialize)]
struct DriftAnswer {
    change: Option<ChangeRecord>,
}

impl Emulator {
    /// Starts `bin emulator --listen 127.0.0.1:0 ARGS...`, its stderr going to `log`, and
    /// waits for the `listening on URL` line.
    pub async fn spawn(bin: &Path, args: &[String], log: &Path) -> Result<Self> {
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(bin)
            .arg("emulator")
            .args(["--listen", "127.0.0.1:0", "--request-log-limit", "2000000"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} emulator", bin.display()))?;
        let stdout = child.stdout.take().context("emulator stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .context("the emulator did not say where it listens within 120 s")??;
        let url = match first
            .as_deref()
            .and_then(|l| l.strip_prefix("listening on "))
        {
            Some(url) => url.trim().to_string(),
            None => bail!(
                "the emulator did not start (first line {first:?}; see {})",
                log.display()
            ),
        };
        // Keep draining stdout so the emulator never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            url,
            http: reqwest::Client::new(),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self
            .http
            .get(format!("{}/_emulator/{path}", self.url))
            .send()
            .await
            .with_context(|| format!("GET /_emulator/{path}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "GET /_emulator/{path}: {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        response
            .json()
            .await
            .with_context(|| format!("decoding GET /_emulator/{path}"))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .http
            .post(format!("{}/_emulator/{path}", self.url))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST /_emulator/{path}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "POST /_emulator/{path}: {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        response
            .json()
            .await
            .with_context(|| format!("decoding POST /_emulator/{path}"))
    }

    /// Exact call counters since the last reset.
    pub async fn counters(&self) -> Result<Counters> {
        self.get("counters").await
    }

    /// Logged requests with `seq > since`.
    pub async fn requests_since(&self, since: u64) -> Result<Vec<RequestRecord>> {
        Ok(self
            .get::<Requests>(&format!("requests?since={since}"))
            .await?
            .requests)
    }

    /// Audit log entries with `seq > since`.
    pub async fn audit_since(&self, since: u64) -> Result<Vec<ChangeRecord>> {
        Ok(self
            .get::<Changes>(&format!("audit?since={since}"))
            .await?
            .changes)
    }

    /// Changes made through the Cloud Run API (the subject's fixes) with `seq > since`.
    pub async fn api_changes_since(&self, since: u64) -> Result<Vec<ChangeRecord>> {
        Ok(self
            .audit_since(since)
            .await?
            .into_iter()
            .filter(|c| c.source == ChangeSource::Api)
            .collect())
    }

    /// Someone clears the Binary Authorization of resource `name` (full name).
    pub async fn clear_binary_authorization(&self, name: &str) -> Result<ChangeRecord> {
        self.clear_binary_authorization_through(name, None).await
    }

    /// The same through Cloud Run's API version `api` (`"v1"`: gcloud's Replace call, `"v2"`:
    /// an Update operation), which shapes the audit log entry the emulator publishes.
    pub async fn clear_binary_authorization_through(
        &self,
        name: &str,
        api: Option<&str>,
    ) -> Result<ChangeRecord> {
        let answer = self
            .post(
                "drift",
                &json!({
                    "name": name,
                    "binaryAuthorization": null,
                    "by": "bench@example.com",
                    "apiVersion": api,
                }),
            )
            .await?;
        serde_json::from_value::<DriftAnswer>(answer)
            .context("decoding the drift answer")?
            .change
            .with_context(|| format!("drifting {name} changed nothing (was it compliant?)"))
    }

    /// The whole estate, in the seed format.
    pub async fn state(&self) -> Result<Seed> {
        self.get("state").await
    }

    /// Back to the seed last loaded (or to `seed`); clears the logs, counters and quotas.
    pub async fn reset(&self, seed: Option<&Seed>) -> Result<()> {
        let body = match seed {
            Some(seed) => serde_json::to_value(seed).context("encoding the seed")?,
            None => json!({}),
        };
        self.post("reset", &body).await.map(drop)
    }

    /// Adds generated resources (a `GenerateSpec` as JSON).
    pub async fn generate(&self, spec: &Value) -> Result<()> {
        self.post("generate", spec).await.map(drop)
    }

    /// Stops the process.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await.context("stopping the emulator")
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time from the emulator.
pub fn epoch_seconds(rfc3339: &str) -> Result<f64> {
    let t: jiff::Timestamp = rfc3339
        .parse()
        .with_context(|| format!("{rfc3339:?} is not an RFC 3339 time"))?;
    Ok(t.as_nanosecond() as f64 / 1e9)
}

/// Seconds since the Unix epoch, now.
pub fn now_seconds() -> f64 {
    jiff::Timestamp::now().as_nanosecond() as f64 / 1e9
}
