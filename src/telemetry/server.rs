//! The HTTP server for `/metrics`, `/healthz` and `/readyz`.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{Telemetry, TelemetryError};

/// Content type of `/metrics`.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `/metrics`, `/healthz` and `/readyz` routes.
pub fn router(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler))
        .with_state(telemetry)
}

async fn metrics_handler(State(t): State<Telemetry>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        t.metrics.encode(),
    )
        .into_response()
}

fn problems_response(problems: Vec<String>) -> Response {
    if problems.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let mut body = String::new();
        for p in problems {
            let _ = writeln!(body, "{p}");
        }
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn healthz_handler(State(t): State<Telemetry>) -> Response {
    problems_response(t.health.liveness_problems())
}

async fn readyz_handler(State(t): State<Telemetry>) -> Response {
    problems_response(t.health.readiness_problems())
}

/// Binds the telemetry server's address (separately from serving, so start-up can fail
/// early with a clear error).
///
/// # Errors
/// [`TelemetryError::Bind`] when the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, TelemetryError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| TelemetryError::Bind { addr, error })
}

/// Serves the telemetry routes until `shutdown` resolves.
///
/// # Errors
/// [`TelemetryError::Serve`] when the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: Telemetry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), TelemetryError> {
    axum::serve(listener, router(telemetry))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(TelemetryError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::tests::touched_metrics;
    use crate::telemetry::Health;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_server_answers_each_route() {
        let health = Health::new();
        let telemetry = Telemetry {
            metrics: Arc::new(touched_metrics()),
            health: health.clone(),
        };
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, telemetry, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::new();
        let get = |path: &str| {
            let http = http.clone();
            let url = format!("http://{addr}{path}");
            async move {
                let r = http.get(url).send().await.unwrap();
                let status = r.status().as_u16();
                let ct = r
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned());
                (status, ct, r.text().await.unwrap())
            }
        };
        let (status, ct, body) = get("/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(ct.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
        assert!(body.contains("binauthz_status_writes_total 1"));
        let (status, _, body) = get("/readyz").await;
        assert_eq!(status, 503);
        assert!(body.contains("CRD is not served"), "{body}");
        let (status, _, _) = get("/healthz").await;
        assert_eq!(status, 503);
        health.set_controller_running(true);
        health.set_crd_served(true);
        health.set_synced();
        assert_eq!(get("/healthz").await.0, 200);
        assert_eq!(get("/readyz").await.0, 200);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
