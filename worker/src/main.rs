//! `zoopipe-worker`: a stateless worker. It pulls tasks from the coordinator, reads its
//! partitions straight from storage, validates, and writes part files; SIGTERM drains it.

use clap::Parser;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zoopipe_common::storage::Storage;
use zoopipe_engine::args::CoordinatorArgs;
use zoopipe_engine::ops::http::ReadyCheck;
use zoopipe_engine::task::TaskContext;
use zoopipe_worker::fleet::{Drain, WorkerOptions, run};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "zoopipe-worker", version, about = "ZooPipe Fleet worker")]
struct Args {
    #[command(flatten)]
    coordinator: CoordinatorArgs,
    /// Tasks run at once (default: number of cores).
    #[arg(long, env = "ZOOPIPE_SLOTS")]
    slots: Option<usize>,
    /// Worker id (default: host name and process id).
    #[arg(long, env = "ZOOPIPE_WORKER_ID")]
    id: Option<String>,
    /// On SIGTERM, seconds the running tasks may take to finish before they are handed back.
    #[arg(long, default_value_t = 30, env = "ZOOPIPE_DRAIN_GRACE")]
    grace: u64,
    /// Address of the operations port: /healthz, /readyz, /metrics and gRPC health. Default
    /// 0.0.0.0:9091; when that port is taken (several workers on one host) a free port is used
    /// and logged. A port given here is used as given.
    #[arg(long = "http", env = "ZOOPIPE_HTTP_LISTEN")]
    http: Option<std::net::SocketAddr>,
}

/// The worker's operations port unless told otherwise (the coordinator's is 9090).
const DEFAULT_HTTP: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9091);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    zoopipe_engine::alloc::tune();
    let telemetry = zoopipe_common::logging::init("info", "zoopipe-worker");
    zoopipe_proto::client::set_trace_injector(zoopipe_common::logging::inject_headers);
    zoopipe_common::storage::install_tls_provider();
    let args = Args::parse();
    let channel = match args.coordinator.connect() {
        Ok(channel) => channel,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let client = zoopipe_proto::v1::worker_service_client::WorkerServiceClient::new(channel);
    let ctx = TaskContext::new(Storage::new());
    let slots = args
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let worker_id = args.id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "worker".into());
        format!("{}-{}", host.trim(), std::process::id())
    });
    let drain = Arc::new(Drain::default());
    let signal = drain.clone();
    tokio::spawn(async move {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            tracing::info!("SIGTERM: draining");
            signal.request();
        }
    });
    let registered = Arc::new(AtomicBool::new(false));
    let (health, health_service) = tonic_health::server::health_reporter();
    // gRPC health follows registration, as /readyz does.
    tokio::spawn({
        let registered = registered.clone();
        async move {
            loop {
                let status = if registered.load(Ordering::Relaxed) {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                health.set_service_status("", status).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let ready: ReadyCheck = {
        let registered = registered.clone();
        Arc::new(move || {
            let ok = registered.load(Ordering::Relaxed);
            Box::pin(async move {
                let detail = if ok {
                    "registered"
                } else {
                    "not registered with a coordinator"
                };
                (ok, detail.to_string())
            })
        })
    };
    // Several workers on one host: the first takes the default port, the others a free one
    // (logged), so every worker has health checks and metrics.
    let (listen, fallback) = match args.http {
        Some(given) => (given, false),
        None => (DEFAULT_HTTP, true),
    };
    let listener = match zoopipe_engine::ops::http::bind(listen, fallback).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot serve the operations port on {listen}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    tokio::spawn(async move {
        if let Err(e) = zoopipe_engine::ops::http::serve(listener, ready, health_service).await {
            tracing::warn!(error = %e, "the operations port stopped");
        }
    });
    let options = WorkerOptions {
        registered,
        worker_id,
        slots,
        grace: Duration::from_secs(args.grace),
    };
    run(client, ctx, options, drain).await;
    telemetry.shutdown().await;
    std::process::ExitCode::SUCCESS
}
