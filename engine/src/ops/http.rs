//! The operations port of both fleet binaries: HTTP `/healthz` (the process runs),
//! `/readyz` (it can do its job: a worker is registered, a coordinator reaches etcd — the body
//! says whether it leads) and `/metrics` (Prometheus), plus the gRPC health service
//! (`grpc.health.v1`) on the same port.

use super::metrics::METRICS;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// Readiness: (ready, one line of detail).
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = (bool, String)> + Send>> + Send + Sync>;

/// Serve until the process ends. Fails only if the port cannot be bound.
pub async fn serve(
    listen: SocketAddr,
    ready: ReadyCheck,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> std::io::Result<()> {
    let grpc = tonic::service::Routes::new(health)
        .prepare()
        .into_axum_router();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    let (ok, detail) = ready().await;
                    let code = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, format!("{detail}\n"))
                }
            }),
        )
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    METRICS.encode(),
                )
            }),
        )
        .merge(grpc);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, "serving /healthz /readyz /metrics");
    axum::serve(listener, app).await
}
