//! Admin Activity audit log entries for Cloud Run writes, published to a Pub/Sub topic the
//! way a Cloud Logging sink delivers them: one message per `LogEntry`, its JSON base64 in
//! `data`, attribute `logging.googleapis.com/timestamp`.
//!
//! Every successful write makes entries: API PATCHes (v2 `UpdateService`, `UpdateJob`,
//! `UpdateWorkerPool`, long-running: a first entry at the call and a last one when the
//! operation is done) and the admin API's drift, deploy and traffic changes, which stand
//! for users' gcloud or console writes (v1 `ReplaceService`, `ReplaceJob`,
//! `ReplaceWorkerPool`: one entry) or Terraform-like v2 writes (two entries), as the admin
//! call asks. Refused calls (4xx) and `validateOnly` calls make none.
//!
//! Publishing never blocks or fails a write: entries go through a channel to a background
//! task that posts them in batches to `POST v1/{topic}:publish` on the Pub/Sub emulator
//! (`PUBSUB_EMULATOR_HOST`, plain HTTP). A failed publish is logged and counted, and its
//! entries are dropped (a real sink retries; the operator's periodic re-check is the
//! backstop for lost events either way).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::assumed;
use super::google::Code;
use super::state::Kind;

/// Why the audit log settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    /// `--audit-log-topic` is not a Pub/Sub topic name.
    #[error("--audit-log-topic '{name}': {reason} (expected projects/PROJECT/topics/TOPIC, names of 3+ characters)")]
    Topic {
        /// What was given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A topic was given but no Pub/Sub emulator address.
    #[error("--audit-log-topic {topic} needs the Pub/Sub emulator's address: set PUBSUB_EMULATOR_HOST or --pubsub-emulator-host (HOST:PORT, e.g. 127.0.0.1:8085; scripts/pubsub-emulator.sh start prints it)")]
    MissingHost {
        /// The topic.
        topic: String,
    },
    /// The Pub/Sub emulator address is not HOST:PORT.
    #[error("--pubsub-emulator-host / PUBSUB_EMULATOR_HOST '{host}' is not HOST:PORT (e.g. 127.0.0.1:8085)")]
    Host {
        /// What was given.
        host: String,
    },
    /// The HTTP client cannot be built.
    #[error("cannot build the Pub/Sub HTTP client: {0}")]
    Client(String),
}

/// A Pub/Sub topic, `projects/PROJECT/topics/TOPIC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicName {
    /// The project id.
    pub project: String,
    /// The topic id.
    pub topic: String,
}

impl FromStr for TopicName {
    type Err = AuditLogError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| AuditLogError::Topic {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        let ["projects", project, "topics", topic] = name.split('/').collect::<Vec<_>>()[..] else {
            return Err(bad("not a topic name"));
        };
        if project.is_empty() {
            return Err(bad("the project is empty"));
        }
        // Pub/Sub's rule for topic ids: 3-255 characters, starting with a letter, of
        // letters, digits and - _ . ~ + %; not starting with "goog".
        let valid_char = |c: char| c.is_ascii_alphanumeric() || "-_.~+%".contains(c);
        if topic.len() < 3 || topic.len() > 255 {
            return Err(bad("the topic id must have 3 to 255 characters"));
        }
        if !topic.starts_with(|c: char| c.is_ascii_alphabetic()) || !topic.chars().all(valid_char) {
            return Err(bad(
                "the topic id must start with a letter and hold only letters, digits and - _ . ~ + %",
            ));
        }
        if topic.starts_with("goog") {
            return Err(bad("a topic id must not start with 'goog'"));
        }
        Ok(TopicName {
            project: project.to_string(),
            topic: topic.to_string(),
        })
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "projects/{}/topics/{}", self.project, self.topic)
    }
}

/// Where audit log entries go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditLogConfig {
    /// The topic a Logging sink would publish to.
    pub topic: TopicName,
    /// The Pub/Sub emulator, `HOST:PORT` (the `PUBSUB_EMULATOR_HOST` convention).
    pub pubsub_host: String,
}

impl AuditLogConfig {
    /// Checks the topic and the emulator address (`http://` in front is tolerated).
    pub fn new(topic: &str, pubsub_host: &str) -> Result<AuditLogConfig, AuditLogError> {
        let topic: TopicName = topic.trim().parse()?;
        let host = pubsub_host.trim();
        let host = host.strip_prefix("http://").unwrap_or(host);
        let host = host.strip_suffix('/').unwrap_or(host);
        let valid = host
            .rsplit_once(':')
            .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(AuditLogError::Host {
                host: pubsub_host.to_string(),
            });
        }
        Ok(AuditLogConfig {
            topic,
            pubsub_host: host.to_string(),
        })
    }

    /// The publish URL, `http://HOST:PORT/v1/projects/P/topics/T:publish`.
    pub fn publish_url(&self) -> String {
        format!("http://{}/v1/{}:publish", self.pubsub_host, self.topic)
    }
}

/// Which Cloud Run API a write came through; decides the entry's `methodName`,
/// `resourceName` and whether the call is long-running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    /// The Knative-style v1 API gcloud and the console use: `ReplaceService`, one entry.
    #[default]
    V1,
    /// The v2 API: `UpdateService`, a long-running call with a first and a last entry.
    V2,
}

impl ApiVersion {
    /// Parses `"v1"` or `"v2"`.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        match text {
            "v1" => Some(ApiVersion::V1),
            "v2" => Some(ApiVersion::V2),
            _ => None,
        }
    }
}

/// What the publisher did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditLogStats {
    /// Entries made (each is one Pub/Sub message).
    pub entries: u64,
    /// Entries Pub/Sub accepted.
    pub published: u64,
    /// Entries dropped because publishing failed (Pub/Sub down, refused, timed out).
    pub failed: u64,
}

/// How a long-running call ended, for its last entry.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// Done; the resource as the operation's `response`.
    Done(Map<String, Value>),
    /// Failed with this code and message.
    Failed(Code, String),
}

/// One successful write to put in the audit log.
#[derive(Clone, Debug)]
pub(crate) struct AuditedWrite {
    pub kind: Kind,
    /// Project id.
    pub project: String,
    pub location: String,
    pub id: String,
    pub api: ApiVersion,
    pub principal: String,
    pub user_agent: String,
    pub caller_ip: String,
    /// v1 calls: the resource after the write (the single entry's `response` is left out:
    /// v1 answers a Knative-shaped resource the emulator does not model).
    /// v2 calls: the operation's name, when it is done and how it ends.
    pub operation: Option<LongRunning>,
}

/// The operation of a v2 write.
#[derive(Clone, Debug)]
pub(crate) struct LongRunning {
    pub name: String,
    pub done_at: Instant,
    pub outcome: Outcome,
}

/// Which entry of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The only entry of a v1 call.
    Single,
    /// The entry at the call of a long-running method.
    First,
    /// The entry when its operation is done.
    Last,
}

impl AuditedWrite {
    fn method_name(&self) -> String {
        let (v, service, verb, noun) = match (self.api, self.kind) {
            (ApiVersion::V2, Kind::Service) => ("v2", "Services", "Update", "Service"),
            (ApiVersion::V2, Kind::Job) => ("v2", "Jobs", "Update", "Job"),
            (ApiVersion::V2, Kind::WorkerPool) => ("v2", "WorkerPools", "Update", "WorkerPool"),
            (ApiVersion::V1, Kind::Service) => ("v1", "Services", "Replace", "Service"),
            (ApiVersion::V1, Kind::Job) => ("v1", "Jobs", "Replace", "Job"),
            (ApiVersion::V1, Kind::WorkerPool) => ("v1", "WorkerPools", "Replace", "WorkerPool"),
        };
        format!("google.cloud.run.{v}.{service}.{verb}{noun}")
    }

    fn resource_name(&self) -> String {
        match self.api {
            ApiVersion::V2 => format!(
                "projects/{}/locations/{}/{}/{}",
                self.project,
                self.location,
                self.kind.collection(),
                self.id
            ),
            ApiVersion::V1 => format!(
                "namespaces/{}/{}/{}",
                self.project,
                assumed::v1_collection(self.kind),
                self.id
            ),
        }
    }

    fn monitored_resource(&self) -> Value {
        let (kind, name_label) = match self.kind {
            Kind::Service => ("cloud_run_revision", "service_name"),
            Kind::Job => ("cloud_run_job", "job_name"),
            Kind::WorkerPool => ("cloud_run_worker_pool", "worker_pool_name"),
        };
        let mut labels = Map::new();
        labels.insert("project_id".into(), json!(self.project));
        labels.insert("location".into(), json!(self.location));
        labels.insert(name_label.into(), json!(self.id));
        if self.kind == Kind::Service {
            // Service-level calls leave the revision labels empty, as Google's entries do.
            labels.insert("configuration_name".into(), json!(""));
            labels.insert("revision_name".into(), json!(""));
        }
        json!({"type": kind, "labels": labels})
    }

    fn request(&self) -> Value {
        let name = format!(
            "projects/{}/locations/{}/{}/{}",
            self.project,
            self.location,
            self.kind.collection(),
            self.id
        );
        match self.api {
            ApiVersion::V2 => {
                let (type_name, field) = match self.kind {
                    Kind::Service => ("UpdateServiceRequest", "service"),
                    Kind::Job => ("UpdateJobRequest", "job"),
                    Kind::WorkerPool => ("UpdateWorkerPoolRequest", "workerPool"),
                };
                json!({
                    "@type": format!("type.googleapis.com/google.cloud.run.v2.{type_name}"),
                    field: {"name": name},
                })
            }
            ApiVersion::V1 => {
                let type_name = match self.kind {
                    Kind::Service => "ReplaceServiceRequest",
                    Kind::Job => "ReplaceJobRequest",
                    Kind::WorkerPool => "ReplaceWorkerPoolRequest",
                };
                json!({
                    "@type": format!("type.googleapis.com/google.cloud.run.v1.{type_name}"),
                    "name": name,
                    "region": self.location,
                })
            }
        }
    }

    /// The `LogEntry` of one phase of this call, at `time`.
    fn entry(&self, phase: Phase, time: Timestamp) -> Value {
        let resource_name = self.resource_name();
        let time_text = time.to_string();
        let mut payload = Map::new();
        payload.insert(
            "@type".into(),
            json!("type.googleapis.com/google.cloud.audit.AuditLog"),
        );
        let failure = match (&self.operation, phase) {
            (Some(op), Phase::Last) => match &op.outcome {
                Outcome::Failed(code, message) => Some((*code, message.clone())),
                Outcome::Done(_) => None,
            },
            _ => None,
        };
        match (&failure, self.api) {
            (Some((code, message)), _) => {
                payload.insert(
                    "status".into(),
                    json!({"code": code.number(), "message": message}),
                );
            }
            (None, ApiVersion::V2) => {
                payload.insert("status".into(), json!({}));
            }
            (None, ApiVersion::V1) => {}
        }
        payload.insert(
            "authenticationInfo".into(),
            json!({"principalEmail": self.principal}),
        );
        payload.insert(
            "requestMetadata".into(),
            json!({
                "callerIp": self.caller_ip,
                "callerSuppliedUserAgent": self.user_agent,
                "requestAttributes": {"time": time_text, "auth": {}},
                "destinationAttributes": {},
            }),
        );
        payload.insert("serviceName".into(), json!("run.googleapis.com"));
        payload.insert("methodName".into(), json!(self.method_name()));
        payload.insert(
            "authorizationInfo".into(),
            json!([{
                "resource": resource_name,
                "permission": format!("run.{}.update", self.kind.permission_noun()),
                "granted": true,
                "resourceAttributes": {},
                "permissionType": "ADMIN_WRITE",
            }]),
        );
        payload.insert("resourceName".into(), json!(resource_name));
        match phase {
            Phase::Single | Phase::First => {
                payload.insert("request".into(), self.request());
            }
            Phase::Last => {
                if let Some(LongRunning {
                    outcome: Outcome::Done(resource),
                    ..
                }) = &self.operation
                {
                    let mut response = Map::new();
                    response.insert("@type".into(), json!(self.kind.type_url()));
                    response.extend(resource.clone());
                    payload.insert("response".into(), Value::Object(response));
                }
            }
        }
        payload.insert(
            "resourceLocation".into(),
            json!({"currentLocations": [self.location]}),
        );

        let mut entry = Map::new();
        entry.insert("protoPayload".into(), Value::Object(payload));
        entry.insert("insertId".into(), json!(insert_id()));
        entry.insert("resource".into(), self.monitored_resource());
        entry.insert("timestamp".into(), json!(time_text));
        entry.insert(
            "severity".into(),
            json!(if failure.is_some() { "ERROR" } else { "NOTICE" }),
        );
        entry.insert(
            "logName".into(),
            json!(format!(
                "projects/{}/logs/cloudaudit.googleapis.com%2Factivity",
                self.project
            )),
        );
        if let Some(op) = &self.operation {
            let mut operation = Map::new();
            operation.insert("id".into(), json!(op.name));
            operation.insert("producer".into(), json!("run.googleapis.com"));
            match phase {
                Phase::First => operation.insert("first".into(), json!(true)),
                Phase::Last => operation.insert("last".into(), json!(true)),
                Phase::Single => None,
            };
            entry.insert("operation".into(), Value::Object(operation));
        }
        let received = time
            .checked_add(assumed::AUDIT_LOG_RECEIVE_DELAY)
            .unwrap_or(time);
        entry.insert("receiveTimestamp".into(), json!(received.to_string()));
        Value::Object(entry)
    }
}

/// A random `insertId` like Google's (lowercase letters and digits).
fn insert_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..12)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

/// One Pub/Sub message as a sink publishes it.
fn message(entry: &Value) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(entry.to_string());
    let timestamp = entry.get("timestamp").cloned().unwrap_or(Value::Null);
    json!({"data": data, "attributes": {"logging.googleapis.com/timestamp": timestamp}})
}

#[derive(Default)]
struct Stats {
    entries: AtomicU64,
    published: AtomicU64,
    failed: AtomicU64,
}

/// The publisher: hands entries to a background task that posts them to Pub/Sub.
pub(crate) struct AuditLog {
    config: AuditLogConfig,
    queue: mpsc::UnboundedSender<Value>,
    stats: Arc<Stats>,
}

/// Most messages in one publish call (Pub/Sub allows 1,000).
const BATCH: usize = 100;

impl AuditLog {
    /// Starts the background publisher on the current runtime; it stops with `shutdown`.
    pub fn start(
        config: AuditLogConfig,
        shutdown: CancellationToken,
    ) -> Result<AuditLog, AuditLogError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|err| AuditLogError::Client(err.to_string()))?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        tokio::spawn(publish_loop(
            client,
            config.publish_url(),
            receiver,
            stats.clone(),
            shutdown,
        ));
        Ok(AuditLog {
            config,
            queue,
            stats,
        })
    }

    /// The topic entries go to.
    pub fn config(&self) -> &AuditLogConfig {
        &self.config
    }

    /// What was published so far.
    pub fn stats(&self) -> AuditLogStats {
        AuditLogStats {
            entries: self.stats.entries.load(Ordering::Relaxed),
            published: self.stats.published.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
        }
    }

    fn send(queue: &mpsc::UnboundedSender<Value>, stats: &Stats, entry: Value) {
        stats.entries.fetch_add(1, Ordering::Relaxed);
        if queue.send(entry).is_err() {
            // The publisher stopped (the emulator is shutting down).
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Puts a successful write in the audit log: one entry for a v1 call; a first entry now
    /// and a last one when the operation is done for a v2 call. Never blocks.
    pub fn record(&self, write: AuditedWrite) {
        let now = Timestamp::now();
        let Some(operation) = &write.operation else {
            Self::send(&self.queue, &self.stats, write.entry(Phase::Single, now));
            return;
        };
        Self::send(&self.queue, &self.stats, write.entry(Phase::First, now));
        let done_at = operation.done_at;
        if done_at <= Instant::now() {
            Self::send(&self.queue, &self.stats, write.entry(Phase::Last, now));
            return;
        }
        let queue = self.queue.clone();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(done_at.into()).await;
            Self::send(&queue, &stats, write.entry(Phase::Last, Timestamp::now()));
        });
    }
}

async fn publish_loop(
    client: reqwest::Client,
    url: String,
    mut receiver: mpsc::UnboundedReceiver<Value>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            n = receiver.recv_many(&mut batch, BATCH) => n,
        };
        if received == 0 {
            return;
        }
        let count = batch.len() as u64;
        let body = json!({"messages": batch.iter().map(message).collect::<Vec<_>>()});
        let span = tracing::debug_span!("pubsub.publish", url = %url, messages = count);
        let result = async {
            let response = client.post(&url).json(&body).send().await?;
            response.error_for_status().map(drop)
        };
        let result = tracing::Instrument::instrument(result, span).await;
        match result {
            Ok(()) => {
                stats.published.fetch_add(count, Ordering::Relaxed);
            }
            Err(err) => {
                let failed = stats.failed.fetch_add(count, Ordering::Relaxed) + count;
                tracing::warn!(
                    %url,
                    error = %err,
                    dropped = count,
                    failed_total = failed,
                    "emulator: cannot publish audit log entries to Pub/Sub; dropped (the write itself succeeded)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(api: ApiVersion, kind: Kind) -> AuditedWrite {
        AuditedWrite {
            kind,
            project: "acme-prod".into(),
            location: "us-central1".into(),
            id: "checkout".into(),
            api,
            principal: "alice@example.com".into(),
            user_agent: "ua/1".into(),
            caller_ip: "127.0.0.1".into(),
            operation: (api == ApiVersion::V2).then(|| LongRunning {
                name: "projects/acme-prod/locations/us-central1/operations/x".into(),
                done_at: Instant::now(),
                outcome: Outcome::Failed(Code::Internal, "boom".into()),
            }),
        }
    }

    #[test]
    fn topic_names_follow_pubsub_rules() {
        let topic: TopicName = "projects/p1/topics/run-audit".parse().unwrap();
        assert_eq!(topic.to_string(), "projects/p1/topics/run-audit");
        for bad in [
            "projects/p1/topics/t",
            "topics/run-audit",
            "projects//topics/abc",
            "projects/p1/topics/1abc",
            "projects/p1/topics/goog-x",
            "projects/p1/subscriptions/abc",
        ] {
            let err = bad.parse::<TopicName>().unwrap_err().to_string();
            assert!(
                err.contains(bad) && err.contains("projects/PROJECT/topics/TOPIC"),
                "{err}"
            );
        }
        assert!(AuditLogConfig::new("projects/p1/topics/abc", "localhost").is_err());
        assert_eq!(
            AuditLogConfig::new("projects/p1/topics/abc", "http://127.0.0.1:8085/")
                .unwrap()
                .publish_url(),
            "http://127.0.0.1:8085/v1/projects/p1/topics/abc:publish"
        );
    }

    #[test]
    fn v1_and_v2_entries_name_the_resource_their_way() {
        let time = Timestamp::now();
        let v1 = write(ApiVersion::V1, Kind::Job).entry(Phase::Single, time);
        assert_eq!(
            v1["protoPayload"]["methodName"],
            "google.cloud.run.v1.Jobs.ReplaceJob"
        );
        assert_eq!(
            v1["protoPayload"]["resourceName"],
            "namespaces/acme-prod/jobs/checkout"
        );
        assert_eq!(v1["resource"]["type"], "cloud_run_job");
        assert_eq!(v1["resource"]["labels"]["job_name"], "checkout");
        assert!(v1.get("operation").is_none());
        assert!(v1["protoPayload"].get("status").is_none());

        let w = write(ApiVersion::V2, Kind::WorkerPool);
        let first = w.entry(Phase::First, time);
        let last = w.entry(Phase::Last, time);
        assert_eq!(
            first["protoPayload"]["methodName"],
            "google.cloud.run.v2.WorkerPools.UpdateWorkerPool"
        );
        assert_eq!(
            first["protoPayload"]["resourceName"],
            "projects/acme-prod/locations/us-central1/workerPools/checkout"
        );
        assert_eq!(first["operation"]["first"], true);
        assert_eq!(first["severity"], "NOTICE");
        assert_eq!(last["operation"]["last"], true);
        assert_eq!(last["protoPayload"]["status"]["code"], 13);
        assert_eq!(last["severity"], "ERROR");
        assert_eq!(last["resource"]["labels"]["worker_pool_name"], "checkout");
    }

    #[test]
    fn messages_carry_the_entry_base64_and_its_timestamp() {
        let entry = json!({"timestamp": "2026-01-01T00:00:00Z", "x": 1});
        let msg = message(&entry);
        let data = base64::engine::general_purpose::STANDARD
            .decode(msg["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&data).unwrap(), entry);
        assert_eq!(
            msg["attributes"]["logging.googleapis.com/timestamp"],
            "2026-01-01T00:00:00Z"
        );
    }
}
