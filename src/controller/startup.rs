//! Start-up and shutdown steps of the controller: the cluster check, this replica's
//! identity, the signals that stop it.

use kube::Client;
use rand::Rng;
use tracing::{info, warn};

use super::{kube_error_line, Error, CONTROLLER_NAME, GROUP_VERSION, PLURAL};

/// Resolves on SIGTERM or SIGINT.
pub(super) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the controller");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received: shutting down"),
        () = terminate => info!("SIGTERM received: shutting down"),
    }
}

/// Checks the API server answers and serves the CRD.
pub(super) async fn check_cluster(client: &Client, url: &str) -> Result<(), Error> {
    client
        .apiserver_version()
        .await
        .map_err(|err| Error::ApiServerUnreachable {
            url: url.to_owned(),
            detail: kube_error_line(&err),
        })?;
    crd_served(client)
        .await?
        .then_some(())
        .ok_or(Error::CrdNotInstalled)
}

/// Whether discovery lists the bindings resource. The API server answers discovery of a
/// group/version it does not serve with a plain-text `404 page not found`, not a Status
/// (kube keeps only the HTTP code), so the code decides.
pub(super) async fn crd_served(client: &Client) -> Result<bool, Error> {
    match client.list_api_group_resources(GROUP_VERSION).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == PLURAL)),
        Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 404 => Ok(false),
        Err(err) => Err(Error::Discovery(kube_error_line(&err))),
    }
}

/// This replica's identity: `$POD_NAME`, else `$HOSTNAME`, else a random name.
pub(super) fn identity() -> String {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    from_env("POD_NAME")
        .or_else(|| from_env("HOSTNAME"))
        .unwrap_or_else(|| {
            let suffix: u32 = rand::rng().random();
            format!("{CONTROLLER_NAME}-{suffix:08x}")
        })
}
