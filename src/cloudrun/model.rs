//! The Cloud Run Admin API v2 wire model: the fields the operator reads, every other field
//! kept verbatim.
//!
//! Field names and encodings follow Google's discovery documents
//! (`run_v2_messages.py` in the Google Cloud SDK). Guarantees:
//! - Every JSON field a type does not model is kept in its `other` map and serialized back
//!   unchanged, so a resource read and written back (the job read-modify-write) loses
//!   nothing. Modelled fields are `Option`s so absent stays absent.
//! - int64 fields are JSON strings on the wire ([`Int64`]); numbers are accepted too.
//! - Enum fields keep the raw value ([`EnumValue`]: a name, or a number under
//!   `$alt=json;enum-encoding=int`), so an enum value this client has never heard of
//!   parses and round-trips.
//! - [`BinaryAuthorization::for_remediation`] can only produce `useDefault: true` or a
//!   non-empty `policy`: the value the operator writes never disables Binary Authorization.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::policy::{DesiredPolicy, ObservedPolicy};
use crate::resource::{BreakglassChange, ObservedResource, Remediation, ResourceId, ResourceKind};

/// An int64 field: Google's JSON encodes it as a string (`"generation": "3"`); a number is
/// accepted when reading. Always written as a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Int64(pub i64);

impl Serialize for Int64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(i64),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(n) => Ok(Self(n)),
            Repr::Text(text) => text
                .parse()
                .map(Self)
                .map_err(|_| serde::de::Error::custom(format!("invalid int64 {text:?}"))),
        }
    }
}

impl fmt::Display for Int64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The raw value of an enum field: its name, or its number (with
/// `enum-encoding=int`). Serialized back exactly as read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnumValue {
    /// E.g. `"CONDITION_FAILED"`.
    Name(String),
    /// E.g. `3`.
    Number(i64),
}

impl EnumValue {
    /// Whether this is the value `name`, whose number in the enum is `number`.
    pub fn is(&self, name: &str, number: i64) -> bool {
        match self {
            Self::Name(n) => n == name,
            Self::Number(n) => *n == number,
        }
    }
}

/// Looks an [`EnumValue`] up in a `(variant, name, number)` table of a proto enum.
fn lookup<T: Copy>(table: &[(T, &'static str, i64)], value: &EnumValue) -> Option<T> {
    table
        .iter()
        .find(|(_, name, number)| value.is(name, *number))
        .map(|(variant, _, _)| *variant)
}

/// `Condition.State` (google/cloud/run/v2/condition.proto).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionState {
    /// 0 `STATE_UNSPECIFIED`.
    Unspecified,
    /// 1 `CONDITION_PENDING`.
    Pending,
    /// 2 `CONDITION_RECONCILING`.
    Reconciling,
    /// 3 `CONDITION_FAILED`.
    Failed,
    /// 4 `CONDITION_SUCCEEDED`.
    Succeeded,
}

impl ConditionState {
    const TABLE: [(Self, &'static str, i64); 5] = [
        (Self::Unspecified, "STATE_UNSPECIFIED", 0),
        (Self::Pending, "CONDITION_PENDING", 1),
        (Self::Reconciling, "CONDITION_RECONCILING", 2),
        (Self::Failed, "CONDITION_FAILED", 3),
        (Self::Succeeded, "CONDITION_SUCCEEDED", 4),
    ];

    /// The state a wire value (name or number) stands for; `None` for one this client does
    /// not know.
    pub fn of(value: &EnumValue) -> Option<Self> {
        lookup(&Self::TABLE, value)
    }
}

/// `Condition.CommonReason` (google/cloud/run/v2/condition.proto): the `reason` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommonReason {
    /// 0 `COMMON_REASON_UNDEFINED`.
    Undefined,
    /// 1 `UNKNOWN`.
    Unknown,
    /// 2 `ROUTE_MISSING` (older revisions of the proto).
    RouteMissing,
    /// 3 `REVISION_FAILED`.
    RevisionFailed,
    /// 4 `PROGRESS_DEADLINE_EXCEEDED`.
    ProgressDeadlineExceeded,
    /// 5 `BUILD_STEP_FAILED` (older revisions of the proto).
    BuildStepFailed,
    /// 6 `CONTAINER_MISSING`: the image path is wrong.
    ContainerMissing,
    /// 7 `CONTAINER_PERMISSION_DENIED`: no permission to pull the image.
    ContainerPermissionDenied,
    /// 8 `CONTAINER_IMAGE_UNAUTHORIZED`: the image is not authorized by policy.
    ContainerImageUnauthorized,
    /// 9 `CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED`: the policy check failed.
    ContainerImageAuthorizationCheckFailed,
    /// 10 `ENCRYPTION_KEY_PERMISSION_DENIED`.
    EncryptionKeyPermissionDenied,
    /// 11 `ENCRYPTION_KEY_CHECK_FAILED`.
    EncryptionKeyCheckFailed,
    /// 12 `SECRETS_ACCESS_CHECK_FAILED`.
    SecretsAccessCheckFailed,
    /// 13 `WAITING_FOR_OPERATION`.
    WaitingForOperation,
    /// 14 `IMMEDIATE_RETRY`.
    ImmediateRetry,
    /// 15 `POSTPONED_RETRY`.
    PostponedRetry,
    /// 16 `INTERNAL`.
    Internal,
}

impl CommonReason {
    const TABLE: [(Self, &'static str, i64); 17] = [
        (Self::Undefined, "COMMON_REASON_UNDEFINED", 0),
        (Self::Unknown, "UNKNOWN", 1),
        (Self::RouteMissing, "ROUTE_MISSING", 2),
        (Self::RevisionFailed, "REVISION_FAILED", 3),
        (
            Self::ProgressDeadlineExceeded,
            "PROGRESS_DEADLINE_EXCEEDED",
            4,
        ),
        (Self::BuildStepFailed, "BUILD_STEP_FAILED", 5),
        (Self::ContainerMissing, "CONTAINER_MISSING", 6),
        (
            Self::ContainerPermissionDenied,
            "CONTAINER_PERMISSION_DENIED",
            7,
        ),
        (
            Self::ContainerImageUnauthorized,
            "CONTAINER_IMAGE_UNAUTHORIZED",
            8,
        ),
        (
            Self::ContainerImageAuthorizationCheckFailed,
            "CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED",
            9,
        ),
        (
            Self::EncryptionKeyPermissionDenied,
            "ENCRYPTION_KEY_PERMISSION_DENIED",
            10,
        ),
        (
            Self::EncryptionKeyCheckFailed,
            "ENCRYPTION_KEY_CHECK_FAILED",
            11,
        ),
        (
            Self::SecretsAccessCheckFailed,
            "SECRETS_ACCESS_CHECK_FAILED",
            12,
        ),
        (Self::WaitingForOperation, "WAITING_FOR_OPERATION", 13),
        (Self::ImmediateRetry, "IMMEDIATE_RETRY", 14),
        (Self::PostponedRetry, "POSTPONED_RETRY", 15),
        (Self::Internal, "INTERNAL", 16),
    ];

    /// The reason a wire value (name or number) stands for; `None` for one this client
    /// does not know.
    pub fn of(value: &EnumValue) -> Option<Self> {
        lookup(&Self::TABLE, value)
    }

    /// The proto name, e.g. `CONTAINER_IMAGE_UNAUTHORIZED`.
    pub fn as_str(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(variant, _, _)| *variant == self)
            .map_or("COMMON_REASON_UNDEFINED", |(_, name, _)| name)
    }

    /// Binary Authorization refused the image (8 or 9).
    pub fn is_image_unauthorized(self) -> bool {
        matches!(
            self,
            Self::ContainerImageUnauthorized | Self::ContainerImageAuthorizationCheckFailed
        )
    }
}

/// `Condition.RevisionReason` (google/cloud/run/v2/condition.proto): `revisionReason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevisionReason {
    /// 0 `REVISION_REASON_UNDEFINED`.
    Undefined,
    /// 1 `PENDING`.
    Pending,
    /// 2 `RESERVE`.
    Reserve,
    /// 3 `RETIRED`.
    Retired,
    /// 4 `RETIRING`.
    Retiring,
    /// 5 `RECREATING`.
    Recreating,
    /// 6 `HEALTH_CHECK_CONTAINER_ERROR`.
    HealthCheckContainerError,
    /// 7 `CUSTOMIZED_PATH_RESPONSE_PENDING`.
    CustomizedPathResponsePending,
    /// 8 `MIN_INSTANCES_NOT_PROVISIONED`.
    MinInstancesNotProvisioned,
    /// 9 `ACTIVE_REVISION_LIMIT_REACHED`.
    ActiveRevisionLimitReached,
    /// 10 `NO_DEPLOYMENT`.
    NoDeployment,
    /// 11 `HEALTH_CHECK_SKIPPED`.
    HealthCheckSkipped,
    /// 12 `MIN_INSTANCES_WARMING`.
    MinInstancesWarming,
}

impl RevisionReason {
    const TABLE: [(Self, &'static str, i64); 13] = [
        (Self::Undefined, "REVISION_REASON_UNDEFINED", 0),
        (Self::Pending, "PENDING", 1),
        (Self::Reserve, "RESERVE", 2),
        (Self::Retired, "RETIRED", 3),
        (Self::Retiring, "RETIRING", 4),
        (Self::Recreating, "RECREATING", 5),
        (
            Self::HealthCheckContainerError,
            "HEALTH_CHECK_CONTAINER_ERROR",
            6,
        ),
        (
            Self::CustomizedPathResponsePending,
            "CUSTOMIZED_PATH_RESPONSE_PENDING",
            7,
        ),
        (
            Self::MinInstancesNotProvisioned,
            "MIN_INSTANCES_NOT_PROVISIONED",
            8,
        ),
        (
            Self::ActiveRevisionLimitReached,
            "ACTIVE_REVISION_LIMIT_REACHED",
            9,
        ),
        (Self::NoDeployment, "NO_DEPLOYMENT", 10),
        (Self::HealthCheckSkipped, "HEALTH_CHECK_SKIPPED", 11),
        (Self::MinInstancesWarming, "MIN_INSTANCES_WARMING", 12),
    ];

    /// The reason a wire value (name or number) stands for.
    pub fn of(value: &EnumValue) -> Option<Self> {
        lookup(&Self::TABLE, value)
    }
}

/// `Condition.ExecutionReason` (google/cloud/run/v2/condition.proto): `executionReason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecutionReason {
    /// 0 `EXECUTION_REASON_UNDEFINED`.
    Undefined,
    /// 1 `JOB_STATUS_SERVICE_POLLING_ERROR`.
    JobStatusServicePollingError,
    /// 2 `NON_ZERO_EXIT_CODE`.
    NonZeroExitCode,
    /// 3 `CANCELLED`.
    Cancelled,
    /// 4 `CANCELLING`.
    Cancelling,
    /// 5 `DELETED`.
    Deleted,
    /// 6 `DELAYED_START_PENDING`.
    DelayedStartPending,
}

impl ExecutionReason {
    const TABLE: [(Self, &'static str, i64); 7] = [
        (Self::Undefined, "EXECUTION_REASON_UNDEFINED", 0),
        (
            Self::JobStatusServicePollingError,
            "JOB_STATUS_SERVICE_POLLING_ERROR",
            1,
        ),
        (Self::NonZeroExitCode, "NON_ZERO_EXIT_CODE", 2),
        (Self::Cancelled, "CANCELLED", 3),
        (Self::Cancelling, "CANCELLING", 4),
        (Self::Deleted, "DELETED", 5),
        (Self::DelayedStartPending, "DELAYED_START_PENDING", 6),
    ];

    /// The reason a wire value (name or number) stands for.
    pub fn of(value: &EnumValue) -> Option<Self> {
        lookup(&Self::TABLE, value)
    }
}

/// `GoogleCloudRunV2Condition`: a status condition of a resource. Enum fields keep their
/// wire value (name, or number under `enum-encoding=int`); the typed accessors read both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// E.g. `Ready`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub condition_type: Option<String>,
    /// `CONDITION_PENDING|CONDITION_RECONCILING|CONDITION_FAILED|CONDITION_SUCCEEDED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<EnumValue>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The common (service-level) reason, e.g. `CONTAINER_IMAGE_UNAUTHORIZED` (8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EnumValue>,
    /// The revision reason (a member of the same oneof as `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_reason: Option<EnumValue>,
    /// The execution reason (a member of the same oneof as `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_reason: Option<EnumValue>,
    /// Every other field (`lastTransitionTime`, `severity`, ...).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Condition {
    /// Its state, when known.
    pub fn condition_state(&self) -> Option<ConditionState> {
        self.state.as_ref().and_then(ConditionState::of)
    }

    /// Its common reason, when set and known.
    pub fn common_reason(&self) -> Option<CommonReason> {
        self.reason.as_ref().and_then(CommonReason::of)
    }

    /// Its revision reason, when set and known.
    pub fn revision_reason(&self) -> Option<RevisionReason> {
        self.revision_reason.as_ref().and_then(RevisionReason::of)
    }

    /// Its execution reason, when set and known.
    pub fn execution_reason(&self) -> Option<ExecutionReason> {
        self.execution_reason.as_ref().and_then(ExecutionReason::of)
    }

    /// The condition says the latest deploy was refused by Binary Authorization: reason
    /// `CONTAINER_IMAGE_UNAUTHORIZED` (8) or `CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED`
    /// (9), by name or number, in a state other than `CONDITION_SUCCEEDED` (4).
    pub fn blocks_deploy(&self) -> bool {
        let refused = self
            .common_reason()
            .is_some_and(CommonReason::is_image_unauthorized);
        refused && self.condition_state() != Some(ConditionState::Succeeded)
    }
}

/// `GoogleCloudRunV2BinaryAuthorization`. `useDefault` and `policy` are a oneof.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BinaryAuthorization {
    /// If present, deploys use breakglass with this justification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakglass_justification: Option<String>,
    /// `true`: the project's default policy; `false`: Binary Authorization disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default: Option<bool>,
    /// A named platform policy, `projects/{p}/platforms/cloudRun/policies/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Fields this client does not know, kept.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl BinaryAuthorization {
    /// The policy this setting enforces: a non-empty `policy` names one; otherwise
    /// `useDefault: true` is the project default; anything else is none.
    pub fn observed_policy(&self) -> ObservedPolicy {
        match (&self.policy, self.use_default) {
            (Some(policy), _) if !policy.is_empty() => ObservedPolicy::Named(policy.clone()),
            (_, Some(true)) => ObservedPolicy::ProjectDefault,
            _ => ObservedPolicy::None,
        }
    }

    /// The breakglass justification, if a non-empty one is set.
    pub fn breakglass(&self) -> Option<&str> {
        self.breakglass_justification
            .as_deref()
            .filter(|j| !j.is_empty())
    }

    /// The value a remediation writes over `current`: the desired policy (`useDefault:
    /// true` or `policy: <name>`, nothing else of the oneof), the breakglass justification
    /// kept verbatim or removed as the remediation says, and any field this client does not
    /// know kept as it was.
    pub fn for_remediation(current: Option<&Self>, remediation: &Remediation) -> Self {
        let (use_default, policy) = match &remediation.desired {
            DesiredPolicy::ProjectDefault => (Some(true), None),
            DesiredPolicy::Named(name) => (None, Some(name.as_str().to_owned())),
        };
        let breakglass_justification = match remediation.breakglass {
            BreakglassChange::Keep => current.and_then(|c| c.breakglass_justification.clone()),
            BreakglassChange::Clear => None,
        };
        Self {
            breakglass_justification,
            use_default,
            policy,
            other: current.map(|c| c.other.clone()).unwrap_or_default(),
        }
    }
}

/// A Cloud Run Service, Job or WorkerPool (`GoogleCloudRunV2Service` / `Job` /
/// `WorkerPool`): the common fields the operator uses, and everything else verbatim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// `projects/{p}/locations/{l}/{services|jobs|workerPools}/{id}`.
    pub name: String,
    /// Server-assigned unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Bumped by every change of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Int64>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<Int64>,
    /// Cloud Run labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Opaque version, sent back with a write for optimistic concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// True while Cloud Run is still reconciling a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciling: Option<bool>,
    /// Status conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// The condition summarizing the last reconciliation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_condition: Option<Condition>,
    /// Set while the resource is being deleted (listed with `showDeleted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_time: Option<String>,
    /// The Binary Authorization setting; absent means disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_authorization: Option<BinaryAuthorization>,
    /// Every other field (`template`, `annotations`, `createTime`, `updateTime`,
    /// `lastModifier`, `traffic`, `scaling`, `latestReadyRevision`, ...), kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Resource {
    /// The Binary Authorization policy it enforces.
    pub fn observed_policy(&self) -> ObservedPolicy {
        self.binary_authorization
            .as_ref()
            .map_or(ObservedPolicy::None, BinaryAuthorization::observed_policy)
    }

    /// Cloud Run's message when its latest deploy was refused by Binary Authorization (the
    /// terminal condition first, then the other conditions).
    pub fn deploy_blocked(&self) -> Option<String> {
        self.terminal_condition
            .iter()
            .chain(self.conditions.iter().flatten())
            .find(|c| c.blocks_deploy())
            .map(|c| {
                c.message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| {
                        "the latest deploy was refused by Binary Authorization".into()
                    })
            })
    }

    /// The container images of its template (`template.containers[].image`; for jobs
    /// `template.template.containers[].image`).
    pub fn images(&self) -> Vec<&str> {
        let template = self.other.get("template");
        let containers = template
            .and_then(|t| t.get("containers"))
            .or_else(|| template.and_then(|t| t.pointer("/template/containers")));
        containers
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("image").and_then(Value::as_str))
            .collect()
    }

    /// The plain-data view the planner works on, for the resource `id` (built from the
    /// request, so the project is spelled as the binding spells it).
    pub fn observe(&self, id: ResourceId) -> ObservedResource {
        ObservedResource {
            id,
            labels: self
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            deleted: self.delete_time.as_deref().is_some_and(|t| !t.is_empty()),
            policy: self.observed_policy(),
            breakglass: self
                .binary_authorization
                .as_ref()
                .and_then(BinaryAuthorization::breakglass)
                .map(str::to_owned),
            deploy_blocked: self.deploy_blocked(),
        }
    }

    /// The body of the one write a remediation makes to this resource (as read), for a
    /// resource of `kind`:
    /// - services and worker pools (sent with `updateMask=binaryAuthorization`): only
    ///   `binaryAuthorization` and the `etag` read;
    /// - jobs (v2 has no update mask for jobs): this whole object, exactly as read — etag
    ///   included — with only `binaryAuthorization` replaced.
    pub fn remediation_body(
        &self,
        kind: ResourceKind,
        remediation: &Remediation,
    ) -> serde_json::Result<Value> {
        match kind {
            ResourceKind::Service | ResourceKind::WorkerPool => masked_remediation_body(
                self.binary_authorization.as_ref(),
                self.etag.as_deref(),
                remediation,
            ),
            ResourceKind::Job => {
                let mut whole = self.clone();
                whole.binary_authorization = Some(BinaryAuthorization::for_remediation(
                    self.binary_authorization.as_ref(),
                    remediation,
                ));
                serde_json::to_value(whole)
            }
        }
    }

    /// The resource id segment and kind of its `name`, checked against the collection.
    pub fn name_parts(&self) -> Option<NameParts<'_>> {
        NameParts::parse(&self.name)
    }
}

/// The body of a remediation sent with `updateMask=binaryAuthorization` (services and
/// worker pools): the new `binaryAuthorization` computed from the `current` one, and the
/// `etag` read.
pub fn masked_remediation_body(
    current: Option<&BinaryAuthorization>,
    etag: Option<&str>,
    remediation: &Remediation,
) -> serde_json::Result<Value> {
    let mut body = Map::new();
    body.insert(
        "binaryAuthorization".into(),
        serde_json::to_value(BinaryAuthorization::for_remediation(current, remediation))?,
    );
    if let Some(etag) = etag {
        body.insert("etag".into(), Value::String(etag.to_owned()));
    }
    Ok(Value::Object(body))
}

/// The segments of a v2 resource name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameParts<'a> {
    /// Project id or number.
    pub project: &'a str,
    /// Region.
    pub location: &'a str,
    /// Kind, from the collection segment.
    pub kind: ResourceKind,
    /// Resource id.
    pub id: &'a str,
}

impl<'a> NameParts<'a> {
    /// Parses `projects/{p}/locations/{l}/{services|jobs|workerPools}/{id}`.
    pub fn parse(name: &'a str) -> Option<Self> {
        let mut segments = name.split('/');
        let (Some("projects"), Some(project), Some("locations"), Some(location)) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return None;
        };
        let collection = segments.next()?;
        let id = segments.next()?;
        if segments.next().is_some() || [project, location, id].iter().any(|s| s.is_empty()) {
            return None;
        }
        let kind = ResourceKind::ALL
            .into_iter()
            .find(|k| k.collection() == collection)?;
        Some(Self {
            project,
            location,
            kind,
            id,
        })
    }
}

/// One page of a list call: `{"services"|"jobs"|"workerPools": [...], "nextPageToken"}`.
/// Items stay JSON text until each is decoded — one at a time, so a page never exists as
/// a hundred decoded trees at once, and a bad item can be named.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPage {
    /// The resources, whichever the collection.
    #[serde(default, alias = "services", alias = "jobs", alias = "workerPools")]
    pub items: Vec<Box<serde_json::value::RawValue>>,
    /// Absent or empty on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// One page of the v1 locations list.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationsPage {
    /// The locations.
    #[serde(default)]
    pub locations: Vec<Location>,
    /// Absent or empty on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A location (`{"name", "locationId", "displayName", "labels", "metadata"}`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// The region, e.g. `us-central1`.
    #[serde(default)]
    pub location_id: String,
    /// `projects/{p}/locations/{region}`.
    #[serde(default)]
    pub name: String,
}

impl Location {
    /// The region: `locationId`, else the last segment of `name`.
    pub fn region(&self) -> Option<&str> {
        Some(self.location_id.as_str())
            .filter(|id| !id.is_empty())
            .or_else(|| self.name.rsplit('/').next().filter(|id| !id.is_empty()))
    }
}

/// `google.longrunning.Operation`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Operation {
    /// `projects/{p}/locations/{l}/operations/{id}`.
    #[serde(default)]
    pub name: String,
    /// True when finished (then `error` or `response` is set).
    #[serde(default)]
    pub done: bool,
    /// The `google.rpc.Status` of a failed operation (`code` is a number).
    #[serde(default)]
    pub error: Option<Value>,
    /// The resource after the change, with an `@type`.
    #[serde(default)]
    pub response: Option<Value>,
}

/// Whether the JSON text `bytes` holds at most `max` values (every object, array, key-less
/// scalar and array element counts one; object keys do not), counted without building
/// them. Text that is not JSON counts as within budget: the decoder reports it.
///
/// Decoded JSON takes up to ~40 times its text in memory (`[0,0,0,...]`: 2 bytes of text,
/// 72 of `Value` each), so the client checks this before decoding a response.
pub fn json_values_at_most(bytes: &[u8], max: usize) -> bool {
    use std::cell::Cell;

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    struct Count<'a> {
        seen: &'a Cell<usize>,
        max: usize,
    }

    impl Count<'_> {
        fn one<E: de::Error>(&self) -> Result<(), E> {
            let seen = self.seen.get() + 1;
            self.seen.set(seen);
            if seen > self.max {
                Err(E::custom("too many JSON values"))
            } else {
                Ok(())
            }
        }

        fn nested(&self) -> Count<'_> {
            Count {
                seen: self.seen,
                max: self.max,
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Count<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Count<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            self.one()
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            self.one()
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            self.one()
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            self.one()
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            self.one()
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.one()
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.one()?;
            while seq.next_element_seed(self.nested())?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.one()?;
            while map.next_key::<IgnoredAny>()?.is_some() {
                map.next_value_seed(self.nested())?;
            }
            Ok(())
        }
    }

    let seen = Cell::new(0);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let counted = Count { seen: &seen, max }.deserialize(&mut deserializer);
    counted.is_ok() || seen.get() <= max
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyName;
    use serde_json::json;

    /// A service as `GET v2/projects/acme-prod/locations/us-central1/services/checkout`
    /// answers it, with fields the model does not name.
    pub(crate) fn service_json() -> Value {
        json!({
            "name": "projects/acme-prod/locations/us-central1/services/checkout",
            "uid": "2b4e7c61-6f1a-4d3b-9f55-0c2b8e1d7a90",
            "generation": "7",
            "labels": {"env": "prod", "team": "payments"},
            "annotations": {"run.googleapis.com/ingress-status": "all"},
            "createTime": "2026-01-02T03:04:05.123456Z",
            "updateTime": "2026-11-01T10:00:00.000001Z",
            "creator": "dev@acme.example",
            "lastModifier": "ci@acme-prod.iam.gserviceaccount.com",
            "client": "gcloud",
            "clientVersion": "520.0.0",
            "ingress": "INGRESS_TRAFFIC_ALL",
            "launchStage": "GA",
            "binaryAuthorization": {"useDefault": true, "breakglassJustification": "INC-4411 hotfix"},
            "template": {
                "revision": "checkout-00007-xyz",
                "labels": {"env": "prod"},
                "scaling": {"minInstanceCount": 1, "maxInstanceCount": 100},
                "timeout": "300s",
                "serviceAccount": "checkout@acme-prod.iam.gserviceaccount.com",
                "containers": [{
                    "name": "app",
                    "image": "us-docker.pkg.dev/acme-prod/apps/checkout@sha256:4f1d",
                    "ports": [{"name": "http1", "containerPort": 8080}],
                    "env": [{"name": "MODE", "value": "prod"}],
                    "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": true, "startupCpuBoost": true}
                }],
                "maxInstanceRequestConcurrency": 80,
                "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2"
            },
            "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
            "observedGeneration": "7",
            "terminalCondition": {
                "type": "Ready", "state": "CONDITION_SUCCEEDED",
                "lastTransitionTime": "2026-11-01T10:00:05.5Z"
            },
            "conditions": [
                {"type": "RoutesReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": "2026-11-01T10:00:05.5Z"},
                {"type": "ConfigurationsReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": "2026-11-01T10:00:04Z"}
            ],
            "latestReadyRevision": "projects/acme-prod/locations/us-central1/services/checkout/revisions/checkout-00007-xyz",
            "latestCreatedRevision": "projects/acme-prod/locations/us-central1/services/checkout/revisions/checkout-00007-xyz",
            "trafficStatuses": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
            "uri": "https://checkout-abc123-uc.a.run.app",
            "urls": ["https://checkout-123456789.us-central1.run.app"],
            "satisfiesPzs": false,
            "someFieldFromTheFuture": {"nested": [1, 2.5, null, "x"]},
            "etag": "\"CJnwr7gGEJD5gN8B/cHJvamVjdHMvYWNtZS1wcm9kL2xvY2F0aW9ucy91cy1jZW50cmFsMS9zZXJ2aWNlcy9jaGVja291dA\""
        })
    }

    /// A job whose last deploy was refused by Binary Authorization, with int enums.
    fn blocked_job_json() -> Value {
        json!({
            "name": "projects/acme-prod/locations/europe-west1/jobs/nightly-export",
            "generation": 12,
            "labels": {"tier": "batch"},
            "etag": "\"job-etag-12\"",
            "template": {
                "parallelism": 2,
                "taskCount": 4,
                "template": {
                    "containers": [{"image": "europe-docker.pkg.dev/acme-prod/jobs/export:2.3.1"}],
                    "maxRetries": 3,
                    "timeout": "600s"
                }
            },
            "terminalCondition": {
                "type": "Ready",
                "state": 3,
                "reason": 8,
                "message": "Revision nightly-export-00012 uses an unauthorized container image. Container image europe-docker.pkg.dev/acme-prod/jobs/export:2.3.1 is not authorized by policy."
            },
            "executionCount": 41,
            "latestCreatedExecution": {"name": "nightly-export-abcde", "createTime": "2026-11-27T02:00:00Z"}
        })
    }

    fn named(name: &str) -> DesiredPolicy {
        DesiredPolicy::Named(PolicyName::parse(name).unwrap())
    }

    #[test]
    fn resources_round_trip_every_field() {
        for fixture in [service_json(), blocked_job_json()] {
            let resource: Resource = serde_json::from_value(fixture.clone()).unwrap();
            let mut back = serde_json::to_value(&resource).unwrap();
            // The only normalization: int64 numbers are written as strings.
            if let Some(g) = fixture.get("generation").and_then(Value::as_i64) {
                assert_eq!(back["generation"], json!(g.to_string()));
                back["generation"] = json!(g);
            }
            assert_eq!(back, fixture);
        }
    }

    #[test]
    fn int64_fields_are_strings_on_the_wire() {
        let resource: Resource = serde_json::from_value(service_json()).unwrap();
        assert_eq!(resource.generation, Some(Int64(7)));
        assert_eq!(resource.observed_generation, Some(Int64(7)));
        assert_eq!(serde_json::to_value(Int64(42)).unwrap(), json!("42"));
        assert!(serde_json::from_value::<Int64>(json!("nope")).is_err());
    }

    #[test]
    fn a_service_is_observed_with_policy_labels_and_breakglass() {
        let resource: Resource = serde_json::from_value(service_json()).unwrap();
        let parts = resource.name_parts().unwrap();
        assert_eq!(parts.kind, ResourceKind::Service);
        assert_eq!(parts.id, "checkout");
        let id = ResourceId {
            kind: parts.kind,
            project: "acme-prod".into(),
            location: "us-central1".into(),
            name: parts.id.into(),
        };
        let observed = resource.observe(id.clone());
        assert_eq!(observed.id, id);
        assert_eq!(observed.policy, ObservedPolicy::ProjectDefault);
        assert_eq!(observed.breakglass.as_deref(), Some("INC-4411 hotfix"));
        assert_eq!(observed.labels.get("team"), Some("payments"));
        assert!(!observed.deleted);
        assert_eq!(observed.deploy_blocked, None);
        assert_eq!(
            resource.images(),
            vec!["us-docker.pkg.dev/acme-prod/apps/checkout@sha256:4f1d"]
        );
    }

    #[test]
    fn a_refused_deploy_is_reported_with_cloud_runs_message_even_with_int_enums() {
        let resource: Resource = serde_json::from_value(blocked_job_json()).unwrap();
        let message = resource.deploy_blocked().unwrap();
        assert!(message.contains("is not authorized by policy"), "{message}");
        assert_eq!(resource.observed_policy(), ObservedPolicy::None);
        assert_eq!(
            resource.images(),
            vec!["europe-docker.pkg.dev/acme-prod/jobs/export:2.3.1"]
        );

        let mut by_name = blocked_job_json();
        by_name["terminalCondition"]["reason"] =
            json!("CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED");
        by_name["terminalCondition"]["state"] = json!("CONDITION_FAILED");
        let resource: Resource = serde_json::from_value(by_name.clone()).unwrap();
        assert!(resource.deploy_blocked().is_some());

        // A later successful reconciliation is not a blocked deploy.
        by_name["terminalCondition"]["state"] = json!("CONDITION_SUCCEEDED");
        let resource: Resource = serde_json::from_value(by_name).unwrap();
        assert_eq!(resource.deploy_blocked(), None);
    }

    #[test]
    fn condition_reasons_read_by_name_and_by_number_as_in_condition_proto() {
        // (name, number, blocks a deploy)
        let cases = [
            ("CONTAINER_MISSING", 6, false),
            ("CONTAINER_PERMISSION_DENIED", 7, false),
            ("CONTAINER_IMAGE_UNAUTHORIZED", 8, true),
            ("CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED", 9, true),
            ("ENCRYPTION_KEY_PERMISSION_DENIED", 10, false),
            ("REVISION_FAILED", 3, false),
        ];
        for (name, number, blocks) in cases {
            for (reason, state) in [
                (json!(name), json!("CONDITION_FAILED")),
                (json!(number), json!(3)),
            ] {
                let condition: Condition = serde_json::from_value(
                    json!({"type": "Ready", "state": state, "reason": reason}),
                )
                .unwrap();
                let typed = condition.common_reason().unwrap();
                assert_eq!(typed.as_str(), name, "{reason}");
                assert_eq!(condition.condition_state(), Some(ConditionState::Failed));
                assert_eq!(condition.blocks_deploy(), blocks, "{reason}");
            }
        }
        for (name, number) in CommonReason::TABLE.iter().map(|(_, n, i)| (*n, *i)) {
            assert_eq!(
                CommonReason::of(&EnumValue::Name(name.into())),
                CommonReason::of(&EnumValue::Number(number)),
                "{name}"
            );
        }
        let revision: Condition = serde_json::from_value(
            json!({"type": "Active", "state": "CONDITION_SUCCEEDED", "revisionReason": 3}),
        )
        .unwrap();
        assert_eq!(revision.revision_reason(), Some(RevisionReason::Retired));
        assert_eq!(revision.common_reason(), None);
        let execution: Condition = serde_json::from_value(
            json!({"type": "Completed", "state": 3, "executionReason": "NON_ZERO_EXIT_CODE"}),
        )
        .unwrap();
        assert_eq!(
            execution.execution_reason(),
            Some(ExecutionReason::NonZeroExitCode)
        );
        assert_eq!(
            ExecutionReason::of(&EnumValue::Number(6)),
            Some(ExecutionReason::DelayedStartPending)
        );
        // Typed fields still round-trip exactly.
        let back = serde_json::to_value(&execution).unwrap();
        assert_eq!(
            back,
            json!({"type": "Completed", "state": 3, "executionReason": "NON_ZERO_EXIT_CODE"})
        );
    }

    #[test]
    fn unknown_enum_values_parse() {
        let mut job = blocked_job_json();
        job["terminalCondition"]["reason"] = json!("A_REASON_FROM_2030");
        job["terminalCondition"]["state"] = json!(77);
        let resource: Resource = serde_json::from_value(job).unwrap();
        assert_eq!(resource.deploy_blocked(), None);
    }

    #[test]
    fn binary_authorization_states_map_to_observed_policies() {
        let cases = [
            (json!({}), ObservedPolicy::None),
            (json!({"useDefault": false}), ObservedPolicy::None),
            (json!({"useDefault": true}), ObservedPolicy::ProjectDefault),
            (json!({"policy": ""}), ObservedPolicy::None),
            (
                json!({"policy": "projects/sec/platforms/cloudRun/policies/strict"}),
                ObservedPolicy::Named("projects/sec/platforms/cloudRun/policies/strict".into()),
            ),
        ];
        for (value, want) in cases {
            let ba: BinaryAuthorization = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(ba.observed_policy(), want, "{value}");
        }
        let mut service = service_json();
        service
            .as_object_mut()
            .unwrap()
            .remove("binaryAuthorization");
        let resource: Resource = serde_json::from_value(service).unwrap();
        assert_eq!(resource.observed_policy(), ObservedPolicy::None);
        let empty: BinaryAuthorization =
            serde_json::from_value(json!({"useDefault": true, "breakglassJustification": ""}))
                .unwrap();
        assert_eq!(empty.breakglass(), None);
    }

    #[test]
    fn deleted_resources_are_marked() {
        let mut service = service_json();
        service["deleteTime"] = json!("2026-11-28T09:00:00Z");
        let resource: Resource = serde_json::from_value(service).unwrap();
        let parts = resource.name_parts().unwrap();
        let observed = resource.observe(ResourceId {
            kind: parts.kind,
            project: "p".into(),
            location: "l".into(),
            name: parts.id.into(),
        });
        assert!(observed.deleted);
    }

    #[test]
    fn remediation_values_keep_or_clear_breakglass_and_keep_unknown_fields() {
        let current: BinaryAuthorization = serde_json::from_value(json!({
            "useDefault": false, "breakglassJustification": "INC-1 (verbatim: ünïcode, \"quotes\")", "future": 1
        }))
        .unwrap();
        let keep = Remediation {
            desired: DesiredPolicy::ProjectDefault,
            breakglass: BreakglassChange::Keep,
        };
        assert_eq!(
            serde_json::to_value(BinaryAuthorization::for_remediation(Some(&current), &keep))
                .unwrap(),
            json!({"useDefault": true, "breakglassJustification": "INC-1 (verbatim: ünïcode, \"quotes\")", "future": 1})
        );
        let clear = Remediation {
            desired: named("projects/sec/platforms/cloudRun/policies/strict"),
            breakglass: BreakglassChange::Clear,
        };
        assert_eq!(
            serde_json::to_value(BinaryAuthorization::for_remediation(Some(&current), &clear))
                .unwrap(),
            json!({"policy": "projects/sec/platforms/cloudRun/policies/strict", "future": 1})
        );
        assert_eq!(
            serde_json::to_value(BinaryAuthorization::for_remediation(None, &keep)).unwrap(),
            json!({"useDefault": true})
        );
    }

    #[test]
    fn a_service_patch_carries_only_binary_authorization_and_the_etag() {
        let resource: Resource = serde_json::from_value(service_json()).unwrap();
        let remediation = Remediation {
            desired: named("projects/sec/platforms/cloudRun/policies/strict"),
            breakglass: BreakglassChange::Keep,
        };
        for kind in [ResourceKind::Service, ResourceKind::WorkerPool] {
            let body = resource.remediation_body(kind, &remediation).unwrap();
            assert_eq!(
                body,
                json!({
                    "binaryAuthorization": {
                        "policy": "projects/sec/platforms/cloudRun/policies/strict",
                        "breakglassJustification": "INC-4411 hotfix"
                    },
                    "etag": service_json()["etag"]
                })
            );
        }
    }

    #[test]
    fn a_job_patch_is_the_whole_job_with_only_binary_authorization_changed() {
        let original = blocked_job_json();
        let resource: Resource = serde_json::from_value(original.clone()).unwrap();
        let remediation = Remediation {
            desired: DesiredPolicy::ProjectDefault,
            breakglass: BreakglassChange::Clear,
        };
        let mut body = resource
            .remediation_body(ResourceKind::Job, &remediation)
            .unwrap();
        assert_eq!(body["binaryAuthorization"], json!({"useDefault": true}));
        assert_eq!(body["etag"], original["etag"]);
        let object = body.as_object_mut().unwrap();
        object.remove("binaryAuthorization");
        object.insert("generation".into(), json!(12));
        assert_eq!(body, original);
    }

    #[test]
    fn names_parse_only_v2_resource_names() {
        let wp = NameParts::parse("projects/123456/locations/us-east1/workerPools/queue").unwrap();
        assert_eq!(wp.kind, ResourceKind::WorkerPool);
        assert_eq!(wp.project, "123456");
        for bad in [
            "",
            "projects/p/locations/l/services",
            "projects/p/locations/l/revisions/r",
            "projects/p/locations/l/services/s/revisions/r",
            "namespaces/p/services/s",
            "projects//locations/l/services/s",
        ] {
            assert_eq!(NameParts::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn list_pages_read_every_collection_key() {
        for key in ["services", "jobs", "workerPools"] {
            let page: ListPage = serde_json::from_str(
                &json!({key: [service_json()], "nextPageToken": "t2"}).to_string(),
            )
            .unwrap();
            assert_eq!(page.items.len(), 1, "{key}");
            assert_eq!(page.next_page_token.as_deref(), Some("t2"));
        }
        let last: ListPage = serde_json::from_str("{}").unwrap();
        assert!(last.items.is_empty() && last.next_page_token.is_none());
    }

    #[test]
    fn json_values_are_counted_without_decoding() {
        let page = json!({"services": [service_json(), blocked_job_json()], "nextPageToken": "t"});
        let text = page.to_string();
        let values = |v: &Value| -> usize {
            fn count(v: &Value) -> usize {
                1 + match v {
                    Value::Array(a) => a.iter().map(count).sum(),
                    Value::Object(o) => o.values().map(count).sum(),
                    _ => 0,
                }
            }
            count(v)
        };
        let n = values(&page);
        assert!(json_values_at_most(text.as_bytes(), n));
        assert!(!json_values_at_most(text.as_bytes(), n - 1));
        assert!(!json_values_at_most(b"[0,0,0,0,0]", 5));
        assert!(json_values_at_most(b"[0,0,0,0,0]", 6));
        // Not JSON, or truncated within budget: left to the decoder to report.
        assert!(json_values_at_most(b"<html>", 1));
        assert!(json_values_at_most(b"{\"services\": [1, 2", 10));
    }

    #[test]
    fn locations_yield_their_region() {
        let page: LocationsPage = serde_json::from_value(json!({"locations": [
            {"name": "projects/p/locations/us-central1", "locationId": "us-central1", "displayName": "Iowa"},
            {"name": "projects/p/locations/europe-west1"}
        ]}))
        .unwrap();
        let regions: Vec<_> = page.locations.iter().filter_map(Location::region).collect();
        assert_eq!(regions, ["us-central1", "europe-west1"]);
    }

    mod never_weakens {
        use super::*;
        use proptest::prelude::*;

        fn arb_current() -> impl Strategy<Value = Option<BinaryAuthorization>> {
            proptest::option::of(
                (
                    proptest::option::of(".{0,12}"),
                    proptest::option::of(any::<bool>()),
                    proptest::option::of(
                        "(|projects/[a-z]{1,5}/platforms/cloudRun/policies/[a-z]{1,5})",
                    ),
                )
                    .prop_map(|(breakglass_justification, use_default, policy)| {
                        BinaryAuthorization {
                            breakglass_justification,
                            use_default,
                            policy,
                            other: Map::new(),
                        }
                    }),
            )
        }

        fn arb_remediation() -> impl Strategy<Value = Remediation> {
            (
                prop_oneof![
                    Just(DesiredPolicy::ProjectDefault),
                    "[a-z]{1,8}".prop_map(|p| named(&format!(
                        "projects/sec/platforms/cloudRun/policies/{p}"
                    ))),
                ],
                prop_oneof![Just(BreakglassChange::Keep), Just(BreakglassChange::Clear)],
            )
                .prop_map(|(desired, breakglass)| Remediation {
                    desired,
                    breakglass,
                })
        }

        proptest! {
            #[test]
            fn the_written_value_enforces_the_desired_policy(current in arb_current(), remediation in arb_remediation()) {
                let written = BinaryAuthorization::for_remediation(current.as_ref(), &remediation);
                let json = serde_json::to_value(&written).unwrap();
                // Exactly one member of the oneof, never a disabling one.
                prop_assert_ne!(json.get("useDefault"), Some(&json!(false)));
                match &remediation.desired {
                    DesiredPolicy::ProjectDefault => {
                        prop_assert_eq!(json.get("useDefault"), Some(&json!(true)));
                        prop_assert!(json.get("policy").is_none());
                    }
                    DesiredPolicy::Named(name) => {
                        prop_assert_eq!(json.get("policy"), Some(&json!(name.as_str())));
                        prop_assert!(json.get("useDefault").is_none());
                    }
                }
                prop_assert_eq!(ObservedPolicy::from(&remediation.desired), written.observed_policy());
                // Breakglass: kept verbatim or removed, as asked.
                let want = match remediation.breakglass {
                    BreakglassChange::Keep => current.as_ref().and_then(|c| c.breakglass_justification.clone()),
                    BreakglassChange::Clear => None,
                };
                prop_assert_eq!(written.breakglass_justification, want);
            }
        }
    }
}
