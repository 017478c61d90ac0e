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

/// Bind the operations port. With `fallback`, a port already taken (another worker on the
/// same host) gives way to a free one on the same address, and the line logged says which.
pub async fn bind(listen: SocketAddr, fallback: bool) -> std::io::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(listen).await {
        Err(e) if fallback && e.kind() == std::io::ErrorKind::AddrInUse => {
            let free = SocketAddr::new(listen.ip(), 0);
            let listener = tokio::net::TcpListener::bind(free).await?;
            tracing::info!(
                taken = %listen,
                listen = %listener.local_addr()?,
                "the default operations port is taken (another process on this host?): using a free one"
            );
            Ok(listener)
        }
        other => other,
    }
}

/// Serve until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
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
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, "serving /healthz /readyz /metrics");
    axum::serve(listener, app).await
}
