//! `zoopipe-coordinator`: plans submitted jobs, hands tasks to workers, keeps task state in
//! etcd, and commits each job exactly once.

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use clap::Parser;
use tonic::service::interceptor::InterceptedService;
use zoopipe_coordinator::api::{JobApi, WorkerApi};
use zoopipe_coordinator::auth::{Auth, Role};
use zoopipe_coordinator::fleet::Fleet;
use zoopipe_coordinator::tls::{EtcdTlsFiles, TlsFiles};

/// Largest request accepted on the job and worker APIs (a spec with its inline schema).
const MAX_REQUEST_BYTES: usize = 4 << 20;
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
    /// CA (PEM) that signed etcd's certificate (https:// endpoints; default: the system roots).
    #[arg(long, env = "ZOOPIPE_ETCD_CA", value_name = "FILE")]
    etcd_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for etcd's --client-cert-auth.
    #[arg(
        long,
        env = "ZOOPIPE_ETCD_CERT",
        value_name = "FILE",
        requires = "etcd_key"
    )]
    etcd_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(
        long,
        env = "ZOOPIPE_ETCD_KEY",
        value_name = "FILE",
        requires = "etcd_cert"
    )]
    etcd_key: Option<std::path::PathBuf>,
    /// Key prefix in etcd.
    #[arg(long, default_value = "/zoopipe", env = "ZOOPIPE_ETCD_PREFIX")]
    etcd_prefix: String,
    /// Worker lease TTL in seconds: a worker silent this long loses its tasks.
    #[arg(long, default_value_t = 10, env = "ZOOPIPE_LEASE_TTL")]
    lease_ttl: i64,
    /// Days an ended job stays in etcd (status, report, `errors`, a named job's no-op
    /// resubmission); older ones are removed, so etcd and a failover's reload stay bounded.
    #[arg(long, default_value_t = 7.0, env = "ZOOPIPE_RETENTION_DAYS")]
    retention_days: f64,
    /// This replica's name in the leader election (default: host name and process id).
    #[arg(long, env = "ZOOPIPE_ID")]
    id: Option<String>,
    /// The URL other replicas reach this one's gRPC port at, to forward calls while it leads
    /// (default: http://<listen address>, or http://<host name>:<port> when listening on all
    /// interfaces; on Kubernetes set it from the pod IP).
    #[arg(long, env = "ZOOPIPE_ADVERTISE")]
    advertise: Option<String>,
    /// TLS certificate (PEM) of the gRPC port; with --tls-key, the port serves only TLS.
    #[arg(
        long,
        env = "ZOOPIPE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(
        long,
        env = "ZOOPIPE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<std::path::PathBuf>,
    /// CA (PEM) whose client certificates identify workers (mutual TLS).
    #[arg(
        long,
        env = "ZOOPIPE_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<std::path::PathBuf>,
    /// CA (PEM) to verify the other replicas with when forwarding to the leader.
    #[arg(long, env = "ZOOPIPE_TLS_CA", value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Name the other replicas' certificates carry (they are dialled at their advertised
    /// address, e.g. a pod IP), e.g. the Service name.
    #[arg(long, env = "ZOOPIPE_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// Bearer tokens, one per line: `<token> client|worker`. Without it the API is open.
    #[arg(long, env = "ZOOPIPE_TOKENS_FILE", value_name = "FILE")]
    tokens_file: Option<std::path::PathBuf>,
    /// Address of the operations port: /healthz, /readyz, /metrics and gRPC health. Default
    /// 0.0.0.0:9090; when that port is taken (several replicas on one host) a free port is
    /// used and logged. A port given here is used as given.
    #[arg(long = "http", env = "ZOOPIPE_HTTP_LISTEN")]
    http: Option<std::net::SocketAddr>,
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
    let telemetry = zoopipe_common::logging::init("info", "zoopipe-coordinator");
    zoopipe_common::storage::install_tls_provider();
    let code = match serve(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    };
    telemetry.shutdown().await;
    code
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let tls = TlsFiles {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        client_ca: args.tls_client_ca.clone(),
        ca: args.tls_ca.clone(),
        server_name: args.tls_server_name.clone(),
    };
    let server_tls = tls.server()?;
    let forward_tls = tls.client()?;
    let auth = match &args.tokens_file {
        Some(path) => Auth::from_file(path, args.tls_client_ca.is_some())?,
        None => {
            tracing::warn!("no --tokens-file: the job and worker APIs accept every caller");
            Auth::open()
        }
    };
    let etcd_tls = EtcdTlsFiles {
        ca: args.etcd_ca.clone(),
        cert: args.etcd_cert.clone(),
        key: args.etcd_key.clone(),
    }
    .client(&args.etcd)?;
    let state = EtcdState::connect_with_tls(&args.etcd, &args.etcd_prefix, etcd_tls).await?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
    let address = args.advertise.clone().unwrap_or_else(|| {
        let scheme = if tls.enabled() { "https" } else { "http" };
        if args.listen.ip().is_unspecified() {
            format!("{scheme}://{}:{}", host_name(), args.listen.port())
        } else {
            format!("{scheme}://{}", args.listen)
        }
    });
    let me = LeaderInfo { id, address };
    tracing::info!(
        id = me.id,
        address = me.address,
        "joining the leader election"
    );
    let flight = ErrorsFlight::new(state.clone());
    let fleet = Fleet::new(state, args.lease_ttl, me, forward_tls);
    fleet.set_retention(std::time::Duration::from_secs_f64(
        args.retention_days.max(0.0) * 86_400.0,
    ));
    fleet.clone().watch_leases().await?;
    fleet.clone().reconcile();
    tokio::spawn(fleet.clone().campaign());
    let (health, health_service) = tonic_health::server::health_reporter();
    zoopipe_coordinator::ops::spawn_refresh(fleet.clone(), health);
    let ready = zoopipe_coordinator::ops::ready_check(fleet.clone());
    let ops_service = health_service.clone();
    let (http, fallback) = match args.http {
        Some(given) => (given, false),
        None => (
            std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9090),
            true,
        ),
    };
    let listener = zoopipe_engine::ops::http::bind(http, fallback)
        .await
        .with_context(|| format!("cannot serve the operations port on {http}"))?;
    tokio::spawn(async move {
        if let Err(e) = zoopipe_engine::ops::http::serve(listener, ready, ops_service).await {
            tracing::warn!(error = %e, "the operations port stopped");
        }
    });
    tracing::info!(listen = %args.listen, "serving");
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let resigning = fleet.clone();
    let mut server = tonic::transport::Server::builder();
    if let Some(config) = server_tls {
        server = server
            .tls_config(config)
            .context("TLS settings of the gRPC port")?;
    }
    // One submission is bounded (spec with its inline schema), so a bad client cannot make
    // the coordinator buffer without limit.
    let jobs =
        JobServiceServer::new(JobApi(fleet.clone())).max_decoding_message_size(MAX_REQUEST_BYTES);
    let workers =
        WorkerServiceServer::new(WorkerApi(fleet)).max_decoding_message_size(MAX_REQUEST_BYTES);
    server
        .add_service(health_service)
        .add_service(InterceptedService::new(jobs, auth.require(Role::Client)))
        .add_service(InterceptedService::new(workers, auth.require(Role::Worker)))
        .add_service(InterceptedService::new(
            FlightServiceServer::new(flight),
            auth.require(Role::Client),
        ))
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            resigning.resign().await;
        })
        .await
        .with_context(|| format!("serving on {}", args.listen))
}
