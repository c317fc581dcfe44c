//! Conditions of a resource, revision or execution, and their state and reason enums.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::values::lookup;
use super::EnumValue;

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
    pub(super) const TABLE: [(Self, &'static str, i64); 5] = [
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
    pub(super) const TABLE: [(Self, &'static str, i64); 17] = [
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
    pub(super) const TABLE: [(Self, &'static str, i64); 13] = [
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
    pub(super) const TABLE: [(Self, &'static str, i64); 7] = [
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
