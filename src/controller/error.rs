//! The controller's errors: start-up failures for a person, and why a pass failed (each
//! with its typed source where there is one).

use crate::api::UnreadLocation;
use crate::error_line::kube_error_line;
use crate::plan::{BindingKey, PassFailure, PlanError, WriteFailure};
use crate::resource::ResourceId;
use crate::telemetry::TelemetryError;

use super::leader::LeaderError;
use super::PLURAL;

/// Everything that can go wrong in the controller. Display is one line for a person.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No kubeconfig and not in a cluster.
    #[error(
        "cannot load a Kubernetes configuration: {0} (set KUBECONFIG or run inside a cluster)"
    )]
    KubeConfig(String),
    /// The API server does not answer (or refuses the credentials).
    #[error("cannot reach the Kubernetes API server at {url}: {detail}")]
    ApiServerUnreachable {
        /// The server.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The CRD is not installed.
    #[error("the BinAuthzBinding CRD ({PLURAL}.binauthz.dev) is not installed: run `kubectl apply -f crds/binauthzbindings.binauthz.dev.yaml` or `binauthz-operator crd | kubectl apply -f -`")]
    CrdNotInstalled,
    /// Discovery failed for another reason.
    #[error("cannot check whether the BinAuthzBinding CRD is installed: {0}")]
    Discovery(String),
    /// Tenancy cannot be decided: the grants or the namespaces cannot be listed.
    #[error("cannot list {what}, which tenancy is decided from: {detail} (apply deploy/rbac.yaml: the operator's ClusterRole grants get/list/watch on binauthztenancies and namespaces)")]
    TenancyUnreadable {
        /// `BinAuthzTenancy grants` or `namespaces`.
        what: &'static str,
        /// The API server's answer.
        detail: String,
    },
    /// The Cloud Run client cannot be built (credentials, flags).
    #[error(transparent)]
    CloudRun(#[from] crate::cloudrun::Error),
    /// The telemetry server failed.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// Leader election could not start.
    #[error(transparent)]
    Leader(#[from] LeaderError),
    /// A status write failed (the pass is retried with backoff).
    #[error(
        "cannot write the status of binding {binding}: {}",
        kube_error_line(error)
    )]
    StatusWrite {
        /// The binding.
        binding: BindingKey,
        /// The API server's answer.
        error: Box<kube::Error>,
    },
    /// Cloud Run failed in a way worth retrying soon (the status already says so).
    #[error("binding {binding}: Cloud Run failed, retrying with backoff: {cause}")]
    CloudRunRetry {
        /// The binding.
        binding: BindingKey,
        /// What failed: the whole pass, one region, or one write.
        #[source]
        cause: Box<RetryCause>,
    },
    /// The planner refused its input (a bug: the watch cache holds unique bindings).
    #[error("planning failed: {0}")]
    Plan(#[from] PlanError),
    /// The plan has no entry for the binding it was made for (a bug).
    #[error("planning failed: binding {0} is missing from its plan")]
    NotPlanned(BindingKey),
    /// An active binding without a desired policy (a bug: such a spec is invalid).
    #[error("planning failed: binding {0} has no desired policy")]
    NoDesiredPolicy(BindingKey),
    /// The drift events subscriber cannot start (no credentials for Pub/Sub).
    #[error(transparent)]
    DriftEvents(#[from] crate::drift::pubsub::PubSubError),
}

impl Error {
    /// A stable CamelCase name of the variant, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::KubeConfig(_) => "KubeConfig",
            Self::ApiServerUnreachable { .. } => "ApiServerUnreachable",
            Self::CrdNotInstalled => "CrdNotInstalled",
            Self::Discovery(_) => "Discovery",
            Self::TenancyUnreadable { .. } => "TenancyUnreadable",
            Self::CloudRun(_) => "CloudRun",
            Self::Telemetry(_) => "Telemetry",
            Self::Leader(_) => "Leader",
            Self::StatusWrite { .. } => "StatusWrite",
            Self::CloudRunRetry { .. } => "CloudRunRetry",
            Self::Plan(_) | Self::NotPlanned(_) | Self::NoDesiredPolicy(_) => "Plan",
            Self::DriftEvents(_) => "DriftEvents",
        }
    }
}

/// The Cloud Run failure that makes a pass worth retrying soon, as the pass recorded it.
#[derive(Debug, thiserror::Error)]
pub enum RetryCause {
    /// Nothing could be read.
    #[error("{}", .0.message)]
    Pass(PassFailure),
    /// One region could not be read (the first of the unread ones).
    #[error("{}: {}", .0.location, .0.message)]
    Region(UnreadLocation),
    /// A write failed for a transient reason.
    #[error("{resource}: {}", failure.message)]
    Write {
        /// The resource written.
        resource: ResourceId,
        /// Why it failed.
        failure: WriteFailure,
    },
}
