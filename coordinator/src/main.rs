//! `zoopipe-coordinator`: plans submitted jobs, hands tasks to workers, keeps task state in
//! etcd, and commits each job exactly once.

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use clap::Parser;
use zoopipe_coordinator::fleet::{Fleet, JobApi, WorkerApi};
use zoopipe_coordinator::flight::ErrorsFlight;
use zoopipe_coordinator::leader::LeaderInfo;
use zoopipe_coordinator::state::EtcdState;
use zoopipe_proto::v1::job_service_server::JobServiceServer;
use zoopipe_proto::v1::worker_service_server::WorkerServiceServer;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "zoopipe-coordinator",
    version,
    about = "ZooPipe Fleet coordinator"
)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "0.0.0.0:7070", env = "ZOOPIPE_LISTEN")]
    listen: std::net::SocketAddr,
    /// etcd endpoints (comma-separated).
    #[arg(
        long,
        default_value = "http://127.0.0.1:2379",
        env = "ZOOPIPE_ETCD",
        value_delimiter = ','
    )]
    etcd: Vec<String>,
    /// Key prefix in etcd.
    #[arg(long, default_value = "/zoopipe", env = "ZOOPIPE_ETCD_PREFIX")]
    etcd_prefix: String,
    /// Worker lease TTL in seconds: a worker silent this long loses its tasks.
    #[arg(long, default_value_t = 10, env = "ZOOPIPE_LEASE_TTL")]
    lease_ttl: i64,
    /// This replica's name in the leader election (default: host name and process id).
    #[arg(long, env = "ZOOPIPE_ID")]
    id: Option<String>,
    /// The URL other replicas reach this one's gRPC port at, to forward calls while it leads
    /// (default: http://<listen address>, or http://<host name>:<port> when listening on all
    /// interfaces; on Kubernetes set it from the pod IP).
    #[arg(long, env = "ZOOPIPE_ADVERTISE")]
    advertise: Option<String>,
    /// Address of the operations port: /healthz, /readyz, /metrics and gRPC health.
    #[arg(
        long = "http",
        default_value = "0.0.0.0:9090",
        env = "ZOOPIPE_HTTP_LISTEN"
    )]
    http: std::net::SocketAddr,
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// SIGINT or SIGTERM (Kubernetes stops pods with SIGTERM).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    zoopipe_common::logging::init("info");
    zoopipe_common::storage::install_tls_provider();
    match serve(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let state = EtcdState::connect(&args.etcd, &args.etcd_prefix).await?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
    let address = args.advertise.clone().unwrap_or_else(|| {
        if args.listen.ip().is_unspecified() {
            format!("http://{}:{}", host_name(), args.listen.port())
        } else {
            format!("http://{}", args.listen)
        }
    });
    let me = LeaderInfo { id, address };
    tracing::info!(
        id = me.id,
        address = me.address,
        "joining the leader election"
    );
    let flight = ErrorsFlight::new(state.clone());
    let fleet = Fleet::new(state, args.lease_ttl, me);
    fleet.clone().watch_leases().await?;
    fleet.clone().reconcile();
    tokio::spawn(fleet.clone().campaign());
    let (health, health_service) = tonic_health::server::health_reporter();
    zoopipe_coordinator::ops::spawn_refresh(fleet.clone(), health);
    let ready = zoopipe_coordinator::ops::ready_check(fleet.clone());
    let ops_service = health_service.clone();
    let http = args.http;
    tokio::spawn(async move {
        if let Err(e) = zoopipe_worker::ops::http::serve(http, ready, ops_service).await {
            tracing::warn!(listen = %http, error = %e, "no /healthz, /readyz, /metrics: cannot serve the operations port");
        }
    });
    tracing::info!(listen = %args.listen, "serving");
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let resigning = fleet.clone();
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(JobServiceServer::new(JobApi(fleet.clone())))
        .add_service(WorkerServiceServer::new(WorkerApi(fleet)))
        .add_service(FlightServiceServer::new(flight))
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            resigning.resign().await;
        })
        .await
        .with_context(|| format!("serving on {}", args.listen))
}
