//! Fault injection: latency, injected errors, connection resets, quotas, stale-etag races,
//! slow or failing operations, the token requirement and forbidden projects/resources.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::denials::ProjectAccess;
use super::google::{self, ApiError, Code};

/// Every fault the emulator can inject. The same JSON shape is read and written by the
/// admin API (`/_emulator/faults`); the command-line flags fill it in.
///
/// Rates are probabilities in `[0, 1]` rolled independently per call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API call (not admin calls), in milliseconds.
    pub latency_ms: u64,
    /// A uniformly random extra latency in `[0, latency_jitter_ms]`, per call.
    pub latency_jitter_ms: u64,
    /// Probability per HTTP status of answering an API call with that error instead
    /// (e.g. `{"503": 0.05, "429": 0.02}`); their sum is at most 1.
    pub error_rates: BTreeMap<u16, f64>,
    /// Probability of closing the connection (TCP reset) without any response.
    pub reset_rate: f64,
    /// Read calls (list, get, operations) allowed per minute per project and region; 429
    /// RESOURCE_EXHAUSTED beyond. `None`: unlimited.
    pub read_quota_per_minute: Option<u32>,
    /// Write calls (patch) allowed per minute per project and region; 429 beyond.
    pub write_quota_per_minute: Option<u32>,
    /// Probability that a simulated user deploy lands on a write's target just before the
    /// write, so a write carrying the etag it read fails with 409 ABORTED.
    pub stale_etag_rate: f64,
    /// Milliseconds until an operation returned by a write is done (0: done at once).
    pub operation_delay_ms: u64,
    /// Probability that a write's operation ends with an error (the resource is then left
    /// unchanged).
    pub operation_failure_rate: f64,
    /// Answer 401 UNAUTHENTICATED to calls without `Authorization: Bearer <token>`.
    pub require_token: bool,
    /// Projects (id or number), locations (`projects/P/locations/L`: every call in that
    /// region) or resource names answering 403 PERMISSION_DENIED; prefix an entry with
    /// `write:` to refuse only writes (`write:acme-prod`).
    pub forbidden: Vec<String>,
    /// Quotas of a kind of project, used for whichever of `readQuotaPerMinute` /
    /// `writeQuotaPerMinute` is not set (`newProject`: 600 reads and 30 writes per minute
    /// per project and region).
    pub quota_preset: Option<QuotaPreset>,
    /// A 429 also carries `QuotaFailure` and `RetryInfo` details (the emulator's earlier
    /// shape). Off: Google's usual shape, `ErrorInfo` and `Help` only.
    pub quota_retry_info: bool,
    /// How the caller sees a project (id or number): `apiDisabled`, `vpcServiceControls`
    /// or `notVisible` (403 variants); overrides the seed's `access`.
    pub project_access: BTreeMap<String, ProjectAccess>,
    /// Job PATCHes apply whatever etag they carry (whether the real UpdateJob checks it is
    /// unverified); services and worker pools still check theirs.
    pub job_etag_ignored: bool,
}

/// Quotas of a kind of project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum QuotaPreset {
    /// A new, low-usage project: 600 reads and 30 writes per minute per project and region
    /// (readings seen in the Cloud console).
    NewProject,
}

impl QuotaPreset {
    /// `(reads, writes)` per minute per project and region.
    pub fn limits(self) -> (u32, u32) {
        match self {
            QuotaPreset::NewProject => (600, 30),
        }
    }

    /// Parses the `--quota-preset` flag (`new-project`).
    pub fn parse(text: &str) -> Result<QuotaPreset, String> {
        match text {
            "new-project" | "newProject" => Ok(QuotaPreset::NewProject),
            other => Err(format!("unknown quota preset '{other}': use new-project")),
        }
    }
}

impl Default for Faults {
    /// No faults; a bearer token is required, like the real API.
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            latency_jitter_ms: 0,
            error_rates: BTreeMap::new(),
            reset_rate: 0.0,
            read_quota_per_minute: None,
            write_quota_per_minute: None,
            stale_etag_rate: 0.0,
            operation_delay_ms: 0,
            operation_failure_rate: 0.0,
            require_token: true,
            forbidden: Vec::new(),
            quota_preset: None,
            quota_retry_info: false,
            project_access: BTreeMap::new(),
            job_etag_ignored: false,
        }
    }
}

/// A fault configuration that cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultsError {
    /// A probability outside `[0, 1]`.
    #[error("{name} must be a probability between 0 and 1, got {value}")]
    RateOutOfRange {
        /// Which setting.
        name: String,
        /// The value given.
        value: f64,
    },
    /// An error rate for a status the emulator cannot answer.
    #[error("cannot inject HTTP status {0}: use one of 400, 401, 403, 404, 409, 429, 500, 501, 503, 504")]
    UnsupportedStatus(u16),
    /// Error rates adding up to more than 1.
    #[error("error rates add up to {0}, more than 1")]
    RatesExceedOne(f64),
    /// An `--error-rate` entry that is not `STATUS=RATE`.
    #[error("error rate '{0}' is not STATUS=RATE (e.g. 503=0.05,429=0.02)")]
    MalformedErrorRate(String),
    /// An empty forbidden entry.
    #[error("forbidden entry '{0}' names no project or resource")]
    EmptyForbidden(String),
}

impl Faults {
    /// Checks every rate and status.
    pub fn validate(&self) -> Result<(), FaultsError> {
        let rates = [
            ("resetRate", self.reset_rate),
            ("staleEtagRate", self.stale_etag_rate),
            ("operationFailureRate", self.operation_failure_rate),
        ];
        for (name, value) in rates {
            check_rate(name, value)?;
        }
        let mut total = 0.0;
        for (&status, &rate) in &self.error_rates {
            if Code::from_http(status).is_none() {
                return Err(FaultsError::UnsupportedStatus(status));
            }
            check_rate(&format!("errorRates.{status}"), rate)?;
            total += rate;
        }
        if total > 1.0 + 1e-9 {
            return Err(FaultsError::RatesExceedOne(total));
        }
        for entry in &self.forbidden {
            if entry.trim_start_matches("write:").is_empty() {
                return Err(FaultsError::EmptyForbidden(entry.clone()));
            }
        }
        Ok(())
    }

    /// The quota in force for reads or writes: the explicit one, else the preset's.
    pub fn quota(&self, access: Access) -> Option<u32> {
        let preset = self.quota_preset.map(QuotaPreset::limits);
        match access {
            Access::Read => self.read_quota_per_minute.or(preset.map(|(r, _)| r)),
            Access::Write => self.write_quota_per_minute.or(preset.map(|(_, w)| w)),
        }
    }

    /// How the `projectAccess` fault says the caller sees this project (id, number), if it
    /// says anything.
    pub fn access_to(&self, project: (&str, &str)) -> Option<ProjectAccess> {
        let (id, number) = project;
        self.project_access
            .get(id)
            .or_else(|| self.project_access.get(number))
            .copied()
    }

    /// The latency to add to one call: fixed plus uniform jitter.
    pub fn latency(&self) -> Duration {
        let jitter = if self.latency_jitter_ms > 0 {
            rand::rng().random_range(0..=self.latency_jitter_ms)
        } else {
            0
        };
        Duration::from_millis(self.latency_ms + jitter)
    }

    /// Rolls the injected-error dice: the HTTP status to answer with, if any.
    pub fn roll_error(&self) -> Option<u16> {
        if self.error_rates.is_empty() {
            return None;
        }
        let mut roll: f64 = rand::rng().random();
        for (&status, &rate) in &self.error_rates {
            if roll < rate {
                return Some(status);
            }
            roll -= rate;
        }
        None
    }

    /// Whether `forbidden` refuses a call on this project (id and number) and resource.
    pub fn is_forbidden(
        &self,
        access: Access,
        project: (&str, &str),
        resource: Option<&str>,
    ) -> bool {
        let (id, number) = project;
        self.forbidden.iter().any(|entry| {
            let (target, writes_only) = match entry.strip_prefix("write:") {
                Some(target) => (target, true),
                None => (entry.as_str(), false),
            };
            if writes_only && access != Access::Write {
                return false;
            }
            if target == id || target == number {
                return true;
            }
            // A resource name may carry the project id or number, on either side.
            let within = |name: &str| {
                let by_id = format!("projects/{id}/");
                let by_number = format!("projects/{number}/");
                name.strip_prefix(&by_id)
                    .or_else(|| name.strip_prefix(&by_number))
                    .map(str::to_string)
            };
            // An entry names the call's resource, or a location (or collection) holding it.
            let covers = |entry: &str, name: &str| {
                name == entry
                    || name
                        .strip_prefix(entry)
                        .is_some_and(|rest| rest.starts_with('/'))
            };
            resource.is_some_and(|name| {
                covers(target, name)
                    || within(target)
                        .is_some_and(|rest| within(name).is_some_and(|n| covers(&rest, &n)))
            })
        })
    }
}

fn check_rate(name: &str, value: f64) -> Result<(), FaultsError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(FaultsError::RateOutOfRange {
            name: name.to_string(),
            value,
        })
    }
}

/// Rolls a probability.
pub fn roll(probability: f64) -> bool {
    probability > 0.0 && rand::rng().random::<f64>() < probability
}

/// Parses `503=0.05,429=0.02` (the `--error-rate` flag).
pub fn parse_error_rates(text: &str) -> Result<BTreeMap<u16, f64>, FaultsError> {
    let mut rates = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let malformed = || FaultsError::MalformedErrorRate(entry.to_string());
        let (status, rate) = entry.split_once('=').ok_or_else(malformed)?;
        let status: u16 = status.trim().parse().map_err(|_| malformed())?;
        let rate: f64 = rate.trim().parse().map_err(|_| malformed())?;
        rates.insert(status, rate);
    }
    Ok(rates)
}

/// Whether a call reads or writes (quotas and `write:` forbidden entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// list, get, operations.
    Read,
    /// patch.
    Write,
}

impl Access {
    /// `(quota_metric, quota_limit, metric label)` as Cloud Run names them.
    fn metric(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Access::Read => (
                "run.googleapis.com/read_regional",
                "ReadPerMinutePerProjectRegion",
                "Read requests",
            ),
            Access::Write => (
                "run.googleapis.com/write_regional",
                "WritePerMinutePerProjectRegion",
                "Write requests",
            ),
        }
    }
}

/// One exceeded per-region quota, as the 429 reports it.
#[derive(Clone, Copy, Debug)]
pub struct QuotaExceeded<'a> {
    /// Reads or writes.
    pub access: Access,
    /// The consumer project's number.
    pub project_number: &'a str,
    /// The region (`quota_location`).
    pub region: &'a str,
    /// Calls per minute allowed (`quota_limit_value`).
    pub limit: u32,
    /// When the next call would be allowed (only said with `with_retry_info`).
    pub retry_after: Duration,
    /// Add `QuotaFailure` and `RetryInfo` details (not Google's usual shape).
    pub with_retry_info: bool,
}

/// The 429 RESOURCE_EXHAUSTED error of an exceeded per-region quota, as Cloud Run sends it:
/// `ErrorInfo` (`RATE_LIMIT_EXCEEDED`) and a `Help` link; with `with_retry_info` also
/// `QuotaFailure` and `RetryInfo`.
pub fn quota_error(quota: QuotaExceeded<'_>) -> ApiError {
    let QuotaExceeded {
        access,
        project_number,
        region,
        limit,
        retry_after,
        with_retry_info,
    } = quota;
    let (metric, limit_name, metric_label) = access.metric();
    let limit_label = format!("{metric_label} per minute per region");
    let message = format!(
        "Quota exceeded for quota metric '{metric_label}' and limit '{limit_label}' of service \
         'run.googleapis.com' for consumer 'project_number:{project_number}'."
    );
    let error = ApiError::new(Code::ResourceExhausted, message.clone())
        .with_detail(google::error_info(
            "RATE_LIMIT_EXCEEDED",
            "googleapis.com",
            json!({
                "quota_metric": metric,
                "quota_limit": limit_name,
                "quota_limit_value": limit.to_string(),
                "quota_location": region,
                "consumer": format!("projects/{project_number}"),
                "service": "run.googleapis.com",
            }),
        ))
        .with_detail(google::help(
            "Request a higher quota limit.",
            "https://cloud.google.com/docs/quotas/help/request_increase",
        ));
    if !with_retry_info {
        return error;
    }
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    error
        .with_detail(json!({
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"subject": format!("project_number:{project_number}"), "description": message}],
        }))
        .with_detail(google::retry_info(secs.max(1)))
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per (project, region, access): `limit` calls at once, refilled at
/// `limit` per minute.
#[derive(Debug, Default)]
pub struct Quotas {
    buckets: HashMap<(String, String, Access), Bucket>,
}

impl Quotas {
    /// Takes one call from the bucket, or says how long until one is available.
    pub fn take(
        &mut self,
        project: &str,
        region: &str,
        access: Access,
        limit_per_minute: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        let limit = f64::from(limit_per_minute);
        if limit_per_minute == 0 {
            return Err(Duration::from_secs(60));
        }
        let per_sec = limit / 60.0;
        let bucket = self
            .buckets
            .entry((project.to_string(), region.to_string(), access))
            .or_insert(Bucket {
                tokens: limit,
                last: now,
            });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(limit);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }

    /// Forgets all usage (after a reset or a quota change).
    pub fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rates_parse_and_validate() {
        let rates = parse_error_rates("503=0.05, 429=0.02").unwrap();
        assert_eq!(rates.get(&503), Some(&0.05));
        let faults = Faults {
            error_rates: rates,
            ..Faults::default()
        };
        assert_eq!(faults.validate(), Ok(()));
        assert!(matches!(
            parse_error_rates("503"),
            Err(FaultsError::MalformedErrorRate(_))
        ));
        let bad = Faults {
            error_rates: [(418, 0.1)].into(),
            ..Faults::default()
        };
        assert_eq!(bad.validate(), Err(FaultsError::UnsupportedStatus(418)));
        let too_much = Faults {
            error_rates: [(503, 0.7), (500, 0.6)].into(),
            ..Faults::default()
        };
        assert!(matches!(
            too_much.validate(),
            Err(FaultsError::RatesExceedOne(_))
        ));
    }

    #[test]
    fn quota_bucket_refuses_beyond_the_limit_then_refills() {
        let mut quotas = Quotas::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(quotas.take("p", "r", Access::Write, 3, start).is_ok());
        }
        let wait = quotas.take("p", "r", Access::Write, 3, start).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20));
        assert!(quotas.take("p", "r", Access::Read, 3, start).is_ok());
        assert!(quotas
            .take("p", "r", Access::Write, 3, start + Duration::from_secs(20))
            .is_ok());
    }

    #[test]
    fn forbidden_matches_project_id_number_and_resource_names() {
        let faults = Faults {
            forbidden: vec![
                "acme-prod".into(),
                "write:acme-staging".into(),
                "projects/345/locations/us-central1/services/a".into(),
            ],
            ..Faults::default()
        };
        assert!(faults.is_forbidden(Access::Read, ("acme-prod", "123"), None));
        assert!(!faults.is_forbidden(Access::Read, ("acme-staging", "234"), None));
        assert!(faults.is_forbidden(Access::Write, ("acme-staging", "234"), None));
        let name = "projects/acme-sec/locations/us-central1/services/a";
        assert!(faults.is_forbidden(Access::Read, ("acme-sec", "345"), Some(name)));
        let by_number = "projects/345/locations/us-central1/services/a";
        assert!(faults.is_forbidden(Access::Read, ("acme-sec", "345"), Some(by_number)));
        let other = "projects/acme-sec/locations/us-central1/services/b";
        assert!(!faults.is_forbidden(Access::Read, ("acme-sec", "345"), Some(other)));
        assert!(!faults.is_forbidden(Access::Read, ("acme-sec", "345"), None));

        let region = Faults {
            forbidden: vec!["projects/123/locations/asia-east1".into()],
            ..Faults::default()
        };
        let list = "projects/acme-prod/locations/asia-east1/services";
        assert!(region.is_forbidden(Access::Read, ("acme-prod", "123"), Some(list)));
        let other = "projects/acme-prod/locations/asia-east2/services";
        assert!(!region.is_forbidden(Access::Read, ("acme-prod", "123"), Some(other)));
        let longer = "projects/acme-prod/locations/asia-east10/services";
        assert!(!region.is_forbidden(Access::Read, ("acme-prod", "123"), Some(longer)));
    }
}
