//! `zoopipe-coordinator`: plans submitted jobs, hands tasks to workers, keeps task state in
//! etcd, and commits each job exactly once.

use anyhow::Context;
use clap::Parser;
use zoopipe_coordinator::fleet::{Fleet, JobApi, WorkerApi};
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
    let fleet = Fleet::new(state, args.lease_ttl);
    fleet.clone().watch_leases().await?;
    fleet.clone().reconcile();
    let jobs = fleet.recover().await?;
    tracing::info!(jobs, "state reloaded from etcd");
    tracing::info!(listen = %args.listen, "serving");
    tonic::transport::Server::builder()
        .add_service(JobServiceServer::new(JobApi(fleet.clone())))
        .add_service(WorkerServiceServer::new(WorkerApi(fleet)))
        .serve_with_shutdown(args.listen, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .with_context(|| format!("serving on {}", args.listen))
}
