//! Configuration of the Cloud Run client: command-line flags (with environment fallbacks)
//! and the validated settings built from them.
//!
//! The controller and `check` subcommands flatten [`CloudRunArgs`] into their own flags
//! and build a client from [`CloudRunArgs::config`].

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use reqwest::Url;

use super::error::{Error, Result};
use super::ratelimit::{AdaptivePolicy, RateLimitConfig};
use super::retry::RetryPolicy;

/// Cloud Run Admin API base URL.
pub const CLOUD_RUN_BASE_URL: &str = "https://run.googleapis.com";
/// Binary Authorization API base URL.
pub const BINAUTHZ_BASE_URL: &str = "https://binaryauthorization.googleapis.com";
/// Organization Policy API base URL.
pub const ORGPOLICY_BASE_URL: &str = "https://orgpolicy.googleapis.com";

/// Cloud Run client flags, shared by `controller` and `check`.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct CloudRunArgs {
    /// Cloud Run Admin API endpoint to use instead of Google's, e.g. an emulator:
    /// `http://127.0.0.1:8787` or `127.0.0.1:8787`. With it, no Google credentials are
    /// needed (a placeholder token is sent) and Binary Authorization and Organization Policy
    /// calls go to the same endpoint unless --binauthz-endpoint / --orgpolicy-endpoint say
    /// otherwise.
    #[arg(long, env = "CLOUD_RUN_EMULATOR_HOST", value_name = "URL")]
    pub cloud_run_endpoint: Option<String>,

    /// Binary Authorization API endpoint to use instead of Google's (or of
    /// --cloud-run-endpoint).
    #[arg(long, env = "BINAUTHZ_ENDPOINT", value_name = "URL")]
    pub binauthz_endpoint: Option<String>,

    /// Organization Policy API endpoint to use instead of Google's (or of
    /// --cloud-run-endpoint).
    #[arg(long, env = "ORGPOLICY_ENDPOINT", value_name = "URL")]
    pub orgpolicy_endpoint: Option<String>,

    /// Cloud Run read requests per minute per project and region (client-side budget;
    /// keep it at or below the project's "Read requests per minute per region" quota; a 429
    /// lowers it for that project and region, and it recovers slowly).
    #[arg(long, env = "CLOUD_RUN_READ_RATE", value_name = "PER_MINUTE", default_value_t = RateLimitConfig::default().reads_per_minute)]
    pub read_rate: NonZeroU32,

    /// Cloud Run write requests per minute per project and region (client-side budget;
    /// keep it at or below the project's "Write requests per minute per region" quota; a
    /// 429 lowers it for that project and region, and it recovers slowly).
    #[arg(long, env = "CLOUD_RUN_WRITE_RATE", value_name = "PER_MINUTE", default_value_t = RateLimitConfig::default().writes_per_minute)]
    pub write_rate: NonZeroU32,

    /// Remediations in flight at once, across all projects and regions.
    #[arg(long, env = "CLOUD_RUN_MAX_CONCURRENT_WRITES", value_name = "N", default_value_t = RateLimitConfig::default().max_concurrent_writes)]
    pub max_concurrent_writes: NonZeroUsize,

    /// Authenticate with Google Application Default Credentials even though
    /// --cloud-run-endpoint is set: for a Private Service Connect endpoint of Google's
    /// APIs (e.g. `https://run-myendpoint.p.googleapis.com`) rather than an emulator.
    #[arg(long, env = "CLOUD_RUN_GOOGLE_CREDENTIALS")]
    pub google_credentials: bool,

    /// Timeout of one HTTP request to Cloud Run (e.g. `30s`, `1m`).
    #[arg(long, env = "CLOUD_RUN_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = crate::duration::parse)]
    pub request_timeout: Duration,
}

impl Default for CloudRunArgs {
    fn default() -> Self {
        let rates = RateLimitConfig::default();
        Self {
            cloud_run_endpoint: None,
            binauthz_endpoint: None,
            orgpolicy_endpoint: None,
            read_rate: rates.reads_per_minute,
            write_rate: rates.writes_per_minute,
            max_concurrent_writes: rates.max_concurrent_writes,
            google_credentials: false,
            request_timeout: CloudRunConfig::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl CloudRunArgs {
    /// The client configuration these flags describe; an unusable endpoint is an
    /// [`Error::InvalidConfig`] naming the flag.
    pub fn config(&self) -> Result<CloudRunConfig> {
        let Self {
            cloud_run_endpoint,
            binauthz_endpoint,
            orgpolicy_endpoint,
            read_rate,
            write_rate,
            max_concurrent_writes,
            google_credentials,
            request_timeout,
        } = self;
        let mut config = match non_empty(cloud_run_endpoint) {
            Some(url) => CloudRunConfig::emulator(&parse_endpoint("--cloud-run-endpoint", url)?),
            None => CloudRunConfig::default(),
        };
        if let Some(url) = non_empty(binauthz_endpoint) {
            config.binauthz_base_url = parse_endpoint("--binauthz-endpoint", url)?;
        }
        if let Some(url) = non_empty(orgpolicy_endpoint) {
            config.orgpolicy_base_url = parse_endpoint("--orgpolicy-endpoint", url)?;
        }
        if *google_credentials {
            config.google_credentials = true;
        }
        config.rate_limits = RateLimitConfig {
            reads_per_minute: *read_rate,
            writes_per_minute: *write_rate,
            max_concurrent_writes: *max_concurrent_writes,
        };
        if request_timeout.is_zero() {
            return Err(Error::InvalidConfig {
                field: "--request-timeout",
                detail: "must be more than zero".into(),
            });
        }
        config.request_timeout = *request_timeout;
        Ok(config)
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Parses `http://host:port[/prefix]` or `host:port` (then `http://`), without a trailing
/// slash.
pub fn parse_endpoint(field: &'static str, text: &str) -> Result<String> {
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|err| Error::InvalidConfig {
        field,
        detail: format!(
            "{text:?} is not a URL ({err}); expected e.g. http://127.0.0.1:8787 or 127.0.0.1:8787"
        ),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::InvalidConfig {
            field,
            detail: format!("{text:?} must be an http:// or https:// URL with a host"),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::InvalidConfig {
            field,
            detail: format!("{text:?} must not have a query or fragment"),
        });
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// How long a remediation follows its long-running operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperationPolicy {
    /// The `timeout` asked of the one `:wait` call.
    pub wait_timeout: Duration,
    /// Total time spent following an operation (`:wait`, then polling with `GET`) before
    /// reporting it pending.
    pub deadline: Duration,
    /// First interval between two polls (doubles up to 5 s).
    pub poll_interval: Duration,
}

impl Default for OperationPolicy {
    /// `:wait` for 10 s, then poll every 1 s, 2 s, 4 s, 5 s ... up to 60 s in all.
    fn default() -> Self {
        Self {
            wait_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Everything the client needs to know; [`Default`] is Google's endpoints with
/// production-safe settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudRunConfig {
    /// Base URL of the Cloud Run Admin API (no trailing slash).
    pub cloud_run_base_url: String,
    /// Base URL of the Binary Authorization API (no trailing slash).
    pub binauthz_base_url: String,
    /// Base URL of the Organization Policy API (no trailing slash).
    pub orgpolicy_base_url: String,
    /// True to authenticate with Application Default Credentials; false sends a
    /// placeholder token (emulators).
    pub google_credentials: bool,
    /// Client-side throttle.
    pub rate_limits: RateLimitConfig,
    /// How the throttle's rates adapt to 429s.
    pub adaptive_rate: AdaptivePolicy,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Retries of failed calls.
    pub retry: RetryPolicy,
    /// Following a write's long-running operation.
    pub operation: OperationPolicy,
    /// How many times a remediation re-reads and re-writes after losing an etag race.
    pub max_conflict_retries: u32,
    /// `pageSize` of list calls.
    pub page_size: u32,
    /// Most pages one list follows (Cloud Run holds at most 1,000 resources of a kind per
    /// project and region: 10 pages of 100). A server that keeps answering new page
    /// tokens gets a [`Error::Decode`] instead of an endless list.
    pub max_list_pages: u32,
    /// Largest response body read, in bytes; a larger answer is refused (a successful one
    /// as [`Error::Decode`]; an error answer is classified from its HTTP status alone).
    /// A page of 100 resources is typically 0.1–0.5 MB.
    pub max_response_bytes: usize,
    /// Most JSON values (objects, arrays, strings, numbers, ...) one response may hold,
    /// checked before it is decoded: decoded JSON takes up to ~40 times its size in
    /// memory, so this bounds what a pathological body (`[0,0,0,...]`) can cost. A page of
    /// 100 real resources holds some 10–30 thousand.
    pub max_response_values: usize,
    /// How long the regions of a project are cached.
    pub regions_ttl: Duration,
    /// How long a policy read is cached (exists, missing, or unverifiable).
    pub policy_ttl: Duration,
    /// How long a project's effective organization policy constraint is cached.
    pub orgpolicy_ttl: Duration,
}

impl CloudRunConfig {
    /// Per-request timeout when none is configured.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// A configuration talking to an emulator at `base_url` for every API (Cloud Run, Binary
    /// Authorization, Organization Policy), without Google credentials.
    pub fn emulator(base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/').to_owned();
        Self {
            cloud_run_base_url: base.clone(),
            binauthz_base_url: base.clone(),
            orgpolicy_base_url: base,
            google_credentials: false,
            ..Self::default()
        }
    }
}

impl Default for CloudRunConfig {
    fn default() -> Self {
        Self {
            cloud_run_base_url: CLOUD_RUN_BASE_URL.into(),
            binauthz_base_url: BINAUTHZ_BASE_URL.into(),
            orgpolicy_base_url: ORGPOLICY_BASE_URL.into(),
            google_credentials: true,
            rate_limits: RateLimitConfig::default(),
            adaptive_rate: AdaptivePolicy::default(),
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            operation: OperationPolicy::default(),
            max_conflict_retries: 3,
            page_size: 100,
            max_list_pages: 1_000,
            max_response_bytes: 16 * 1024 * 1024,
            max_response_values: 1_000_000,
            regions_ttl: Duration::from_secs(3600),
            policy_ttl: Duration::from_secs(300),
            orgpolicy_ttl: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        cloud_run: CloudRunArgs,
    }

    #[test]
    fn defaults_talk_to_google_with_credentials() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        // The environment of the test run may set CLOUD_RUN_EMULATOR_HOST; compare what
        // does not depend on it.
        assert_eq!(cli.cloud_run.read_rate.get(), 600);
        assert_eq!(cli.cloud_run.write_rate.get(), 30);
        assert_eq!(cli.cloud_run.max_concurrent_writes.get(), 8);
        assert_eq!(cli.cloud_run.request_timeout, Duration::from_secs(30));
        let config = CloudRunArgs::default().config().unwrap();
        assert_eq!(config.cloud_run_base_url, CLOUD_RUN_BASE_URL);
        assert_eq!(config.binauthz_base_url, BINAUTHZ_BASE_URL);
        assert_eq!(config.orgpolicy_base_url, ORGPOLICY_BASE_URL);
        assert!(config.google_credentials);
    }

    #[test]
    fn an_emulator_endpoint_serves_both_apis_without_credentials() {
        let cli = Cli::try_parse_from([
            "x",
            "--cloud-run-endpoint",
            "127.0.0.1:8787",
            "--write-rate",
            "10",
            "--request-timeout",
            "1m30s",
        ])
        .unwrap();
        let config = cli.cloud_run.config().unwrap();
        assert_eq!(config.cloud_run_base_url, "http://127.0.0.1:8787");
        assert_eq!(config.binauthz_base_url, "http://127.0.0.1:8787");
        assert_eq!(config.orgpolicy_base_url, "http://127.0.0.1:8787");
        assert!(!config.google_credentials);
        assert_eq!(config.rate_limits.writes_per_minute.get(), 10);
        assert_eq!(config.request_timeout, Duration::from_secs(90));

        let args = CloudRunArgs {
            cloud_run_endpoint: Some("http://localhost:9000/".into()),
            binauthz_endpoint: Some("https://binauthz.internal.example".into()),
            orgpolicy_endpoint: Some("127.0.0.1:9100".into()),
            ..CloudRunArgs::default()
        };
        let config = args.config().unwrap();
        assert_eq!(config.cloud_run_base_url, "http://localhost:9000");
        assert_eq!(
            config.binauthz_base_url,
            "https://binauthz.internal.example"
        );
        assert_eq!(config.orgpolicy_base_url, "http://127.0.0.1:9100");
    }

    #[test]
    fn a_private_endpoint_can_use_google_credentials() {
        let cli = Cli::try_parse_from([
            "x",
            "--cloud-run-endpoint",
            "https://run-psc.p.googleapis.com",
            "--google-credentials",
        ])
        .unwrap();
        let config = cli.cloud_run.config().unwrap();
        assert_eq!(
            config.cloud_run_base_url,
            "https://run-psc.p.googleapis.com"
        );
        assert!(config.google_credentials);
    }

    #[test]
    fn bad_flags_get_one_line_errors_naming_the_flag() {
        let args = CloudRunArgs {
            cloud_run_endpoint: Some("ftp://x".into()),
            ..CloudRunArgs::default()
        };
        let err = args.config().unwrap_err().to_string();
        assert!(err.contains("--cloud-run-endpoint"), "{err}");
        assert!(!err.contains('\n'));
        assert!(Cli::try_parse_from(["x", "--write-rate", "0"]).is_err());
        let bad_orgpolicy = CloudRunArgs {
            orgpolicy_endpoint: Some("ftp://x".into()),
            ..CloudRunArgs::default()
        };
        let err = bad_orgpolicy.config().unwrap_err().to_string();
        assert!(err.contains("--orgpolicy-endpoint"), "{err}");
        assert!(Cli::try_parse_from(["x", "--request-timeout", "soon"]).is_err());
        assert!(Cli::try_parse_from(["x", "--request-timeout", "-5s"]).is_err());
        assert!(Cli::try_parse_from(["x", "--request-timeout", "500ms"]).is_ok());
        // Empty environment values count as unset.
        let blank = CloudRunArgs {
            cloud_run_endpoint: Some("  ".into()),
            ..CloudRunArgs::default()
        };
        assert!(blank.config().unwrap().google_credentials);
    }
}
