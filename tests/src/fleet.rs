//! Fleet test harness: real coordinator, worker and etcd processes on loopback, a users job on
//! the S3 server, and the independent readers and receivers the fleet tests check with.

use crate::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn bin(name: &str) -> PathBuf {
    zoopipectl().with_file_name(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn etcd() -> String {
    std::env::var("ZOOPIPE_TEST_ETCD")
        .expect("ZOOPIPE_TEST_ETCD is not set: run the tests with scripts/test.sh (it starts etcd)")
}

pub struct Fleet {
    pub url: String,
    pub port: u16,
    pub prefix: String,
    pub coordinator: Option<Proc>,
    pub workers: Vec<Proc>,
}

/// The log file of process `name` on `port`. Emptied the first time this test process opens
/// it (a file left by an earlier run on the same port must not answer `wait_leading`), appended
/// to after that (a coordinator restarted on its port continues its log).
pub fn log(name: &str, port: u16) -> std::fs::File {
    static OPENED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let file = format!("zoopipe-{name}-{port}.log");
    let first = {
        let mut opened = OPENED.lock().unwrap();
        let first = !opened.contains(&file);
        if first {
            opened.push(file.clone());
        }
        first
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(!first)
        .write(true)
        .truncate(first)
        .open(std::env::temp_dir().join(file))
        .unwrap()
}

pub fn start_coordinator(port: u16, prefix: &str) -> Proc {
    start_coordinator_on(port, prefix, &etcd())
}

pub fn start_coordinator_on(port: u16, prefix: &str, etcd: &str) -> Proc {
    start_coordinator_with(port, prefix, etcd, &[], &[])
}

/// A coordinator with extra flags and environment (logs to the usual file); waits until it
/// listens.
pub fn start_coordinator_with(
    port: u16,
    prefix: &str,
    etcd: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    let child = Command::new(bin("zoopipe-coordinator"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--etcd", etcd])
        .args(["--etcd-prefix", prefix, "--lease-ttl", "2"])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log("coordinator", port))
        .spawn()
        .expect("coordinator starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "coordinator did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(child)
}

impl Fleet {
    /// Replace the coordinator by one with extra environment (a fault point), on the same
    /// address and etcd prefix.
    pub fn coordinator_with_env(&mut self, env: &[(&str, &str)]) {
        drop(self.coordinator.take());
        self.coordinator = Some(start_coordinator_with(
            self.port,
            &self.prefix,
            &etcd(),
            &[],
            env,
        ));
    }

    /// Wait until the coordinator exits by itself (at a fault point); its exit status.
    pub fn wait_coordinator_exit(&mut self, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        let coordinator = self.coordinator.as_mut().expect("a coordinator runs");
        loop {
            if let Some(status) = coordinator.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the coordinator never got to {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL the coordinator, then start a new one on the same address and etcd prefix.
    pub fn restart_coordinator(&mut self, down_for: Duration) {
        drop(self.coordinator.take());
        std::thread::sleep(down_for);
        self.coordinator = Some(start_coordinator(self.port, &self.prefix));
    }
}

pub fn fleet(workers: usize, batch_delay_ms: u64) -> Fleet {
    fleet_on(workers, batch_delay_ms, &etcd())
}

pub fn fleet_on(workers: usize, batch_delay_ms: u64, etcd: &str) -> Fleet {
    fleet_with(workers, batch_delay_ms, etcd, &[])
}

pub fn fleet_with(workers: usize, batch_delay_ms: u64, etcd: &str, env: &[(&str, &str)]) -> Fleet {
    let port = free_port();
    let prefix = format!("/zoopipe-fleet-test/{}-{port}", std::process::id());
    let coordinator = start_coordinator_on(port, &prefix, etcd);
    let url = format!("http://127.0.0.1:{port}");
    let workers = (0..workers)
        .map(|i| {
            Proc(
                Command::new(bin("zoopipe-worker"))
                    .args([
                        "--coordinator",
                        &url,
                        "--slots",
                        "1",
                        "--id",
                        &format!("w{i}-{port}"),
                    ])
                    .env("ZOOPIPE_WORKER_BATCH_DELAY_MS", batch_delay_ms.to_string())
                    .envs(env.iter().copied())
                    .stdout(Stdio::null())
                    .stderr(log(&format!("worker{i}"), port))
                    .spawn()
                    .expect("worker starts"),
            )
        })
        .collect();
    Fleet {
        url,
        port,
        prefix,
        coordinator: Some(coordinator),
        workers,
    }
}

/// A users job on S3: `files` CSVs of `rows_each` rows, and what a clean run must produce.
pub struct UsersJob {
    pub raw: String,
    pub lake: String,
    pub valid: Vec<String>,
    pub invalid: usize,
}

pub fn users_job(files: usize, rows_each: usize) -> UsersJob {
    let raw = unique("raw");
    let lake = unique("lake");
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    let (rows, _) = users(files * rows_each);
    let mut valid = Vec::new();
    let mut invalid = 0;
    for (f, chunk) in rows.chunks(rows_each).enumerate() {
        s3::put(&raw, &format!("in/users-{f:02}.csv"), csv_bytes(chunk));
        for (j, r) in chunk.iter().enumerate() {
            if (f * rows_each + j) % 7 == 3 {
                invalid += 1
            } else {
                valid.push(r[0].clone())
            }
        }
    }
    UsersJob {
        raw,
        lake,
        valid,
        invalid,
    }
}

impl UsersJob {
    /// `zoopipectl submit` (without --wait): small batches and partitions, so tasks take a while.
    pub fn submit(&self, f: &Fleet) -> String {
        let out = run(&[
            "submit",
            "--input",
            &format!("s3://{}/in/", self.raw),
            "--output",
            &format!("s3://{}/users/", self.lake),
            "--schema",
            &repo_file("examples/users.schema.json"),
            "--batch-size",
            "250",
            "--partition-size",
            "120KiB",
            "--coordinator",
            &f.url,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    }

    /// `zoopipectl submit` of the same job to one object, `out/users.parquet`, at `url`
    /// (one or several comma-separated replicas).
    pub fn submit_single_file(&self, url: &str) -> String {
        let out = run(&[
            "submit",
            "--input",
            &format!("s3://{}/in/", self.raw),
            "--output",
            &format!("s3://{}/out/users.parquet", self.lake),
            "--schema",
            &repo_file("examples/users.schema.json"),
            "--partition-size",
            "100KiB",
            "--coordinator",
            url,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    }

    /// Follow the job to its end and check it produced exactly the clean run's output.
    pub fn assert_exact(&self, f: &Fleet, job: &str) -> serde_json::Value {
        let watched = run(&["watch", job, "--coordinator", &f.url, "--json"]);
        assert!(watched.status.success(), "{}", text(&watched.stderr));
        let report: serde_json::Value = serde_json::from_slice(&watched.stdout).unwrap();
        assert_eq!(report["state"], "succeeded", "{report:#}");
        assert_eq!(
            report["total_processed"],
            (self.valid.len() + self.invalid) as u64,
            "{report:#}"
        );
        assert_eq!(report["total_errors"], self.invalid as u64, "{report:#}");
        assert_eq!(
            output_ids(&self.lake),
            self.valid,
            "exactly the clean run's rows"
        );
        let names = s3::list(&self.lake, "users");
        let tasks = report["partitions"]["total"].as_u64().unwrap() as usize;
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("users/part-"))
                .count(),
            tasks,
            "one part per task: {names:?}"
        );
        report
    }
}

/// Poll `zoopipectl status` until the job has ended (bounded, unlike `watch`).
pub fn wait_ended(f: &Fleet, job: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let out = run(&["status", job, "--coordinator", &f.url, "--json"]);
        if let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && ["succeeded", "failed", "cancelled"]
                .contains(&status["state"].as_str().unwrap_or(""))
        {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} did not end within {within:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn retried(report: &serde_json::Value) -> bool {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["attempts"].as_u64().unwrap() > 1)
}

pub fn wait_no_open_uploads(bucket: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    while s3::open_uploads(bucket) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    s3::open_uploads(bucket)
}

pub fn output_ids(lake: &str) -> Vec<String> {
    let names = s3::list(lake, "users");
    assert!(names.contains(&"users/_SUCCESS".to_string()), "{names:?}");
    let batches: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("users/part-"))
        .flat_map(|n| {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::from(s3::get(lake, n)),
            )
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
        })
        .collect();
    column_text(&batches, "user_id")
}

/// A private etcd (this test stops and restarts it) on fixed ports and a kept data dir.
pub fn start_etcd(dir: &std::path::Path, client: u16, peer: u16) -> Proc {
    start_etcd_with(dir, client, peer, "http", &[])
}

/// A private etcd whose client URL has `scheme` (https with the TLS flags in `extra`).
pub fn start_etcd_with(
    dir: &std::path::Path,
    client: u16,
    peer: u16,
    scheme: &str,
    extra: &[&str],
) -> Proc {
    let child = Command::new("etcd")
        .args([
            "--name",
            "n1",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen-client-urls",
            &format!("{scheme}://127.0.0.1:{client}"),
            "--advertise-client-urls",
            &format!("{scheme}://127.0.0.1:{client}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-cluster",
            &format!("n1=http://127.0.0.1:{peer}"),
            "--heartbeat-interval",
            "10",
            "--election-timeout",
            "100",
            "--logger",
            "zap",
            "--log-level",
            "error",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd is installed (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        assert!(Instant::now() < deadline, "etcd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    Proc(child)
}

/// Wait until a coordinator's log says it leads.
pub fn wait_leading(port: u16) {
    let path = std::env::temp_dir().join(format!("zoopipe-coordinator-{port}.log"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.lines().any(|l| l.contains("leading")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "coordinator on {port} never led:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two coordinator replicas on one etcd prefix (the first leads), and workers and clients
/// that are given both URLs, as a Kubernetes Service would spread them.
pub fn replicated_fleet(workers: usize, batch_delay_ms: u64) -> (Fleet, Proc) {
    let (a, b) = (free_port(), free_port());
    let prefix = format!("/zoopipe-fleet-test/{}-{a}-ha", std::process::id());
    let leader = start_coordinator(a, &prefix);
    wait_leading(a);
    let standby = start_coordinator(b, &prefix);
    let url = format!("http://127.0.0.1:{a},http://127.0.0.1:{b}");
    let workers = (0..workers)
        .map(|i| {
            Proc(
                Command::new(bin("zoopipe-worker"))
                    .args(["--coordinator", &url, "--slots", "1"])
                    .args(["--id", &format!("w{i}-{a}")])
                    .env("ZOOPIPE_WORKER_BATCH_DELAY_MS", batch_delay_ms.to_string())
                    .stdout(Stdio::null())
                    .stderr(log(&format!("worker{i}"), a))
                    .spawn()
                    .expect("worker starts"),
            )
        })
        .collect();
    let fleet = Fleet {
        url,
        port: a,
        prefix,
        coordinator: Some(leader),
        workers,
    };
    (fleet, standby)
}

pub fn signal(process: &Proc, name: &str) {
    let pid = process.0.id().to_string();
    assert!(
        Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// GET over plain HTTP/1.1 (an independent client: no project code involved).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, response)
}

pub fn wait_http(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA, a server certificate for 127.0.0.1 and a worker client certificate, as PEM files.
pub fn certificates(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, sans) in [
        (
            "server",
            vec!["localhost".to_string(), "127.0.0.1".to_string()],
        ),
        ("worker", vec!["zoopipe-worker".to_string()]),
    ] {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(sans)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

pub mod otlp {
    //! An in-process OTLP/gRPC trace receiver: what the binaries export lands here.
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use std::sync::{Arc, Mutex};

    /// (service name, span name, trace id, span id, parent span id)
    pub type Received = Arc<Mutex<Vec<(String, String, Vec<u8>, Vec<u8>, Vec<u8>)>>>;

    struct Receiver(Received);

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let mut received = self.0.lock().unwrap();
            for resource in request.into_inner().resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| r.attributes.iter())
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref())
                    .map(|v| format!("{:?}", v.value))
                    .unwrap_or_default();
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        received.push((
                            service.clone(),
                            span.name,
                            span.trace_id,
                            span.span_id,
                            span.parent_span_id,
                        ));
                    }
                }
            }
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// Serve on a free port from a background runtime; returns the endpoint URL.
    pub fn start(received: Received) -> (String, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Receiver(received)))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (url, rt)
    }
}

/// A worker with one slot and extra flags and environment, logging to `zoopipe-NAME-PORT.log`.
pub fn start_worker(
    url: &str,
    name: &str,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    Proc(
        Command::new(bin("zoopipe-worker"))
            .args(["--coordinator", url, "--slots", "1"])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log(name, port))
            .spawn()
            .expect("worker starts"),
    )
}
