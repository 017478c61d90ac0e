//! Operations: health, readiness and metrics on both binaries, and one trace per job.

use std::process::Command;
use std::time::{Duration, Instant};
use zoopipe_tests::fleet::*;
use zoopipe_tests::*;

#[test]
fn health_readiness_and_metrics_are_served_by_both_binaries() {
    let (grpc, coordinator_http, worker_http) = (free_port(), free_port(), free_port());
    let prefix = format!("/zoopipe-fleet-test/{}-{grpc}-ops", std::process::id());
    let http = format!("127.0.0.1:{coordinator_http}");
    let _coordinator = start_coordinator_with(grpc, &prefix, &etcd(), &["--http", &http], &[]);
    wait_leading(grpc);
    let url = format!("http://127.0.0.1:{grpc}");
    let worker_http_address = format!("127.0.0.1:{worker_http}");
    let _worker = start_worker(
        &url,
        "worker-ops",
        grpc,
        &["--http", &worker_http_address],
        &[],
    );
    wait_http(coordinator_http);
    wait_http(worker_http);
    let (code, body) = http_get(coordinator_http, "/healthz");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(coordinator_http, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("leader"), "{body}");
    // The worker is ready once registered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(worker_http, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "the worker never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // One job through, then the counters show it on both sides.
    let f = Fleet {
        url: url.clone(),
        port: grpc,
        prefix,
        coordinator: None,
        workers: vec![],
    };
    let job = users_job(1, 700);
    let id = job.submit(&f);
    let report = job.assert_exact(&f, &id);
    let rows = report["total_processed"].as_u64().unwrap();
    let (_, metrics) = http_get(coordinator_http, "/metrics");
    assert!(
        metrics.contains(&format!("zoopipe_rows_read_total {rows}")),
        "{metrics}"
    );
    assert!(metrics.contains("zoopipe_leader 1"), "{metrics}");
    assert!(
        metrics.contains("zoopipe_task_duration_seconds_bucket"),
        "{metrics}"
    );
    let (_, metrics) = http_get(worker_http, "/metrics");
    assert!(
        metrics.contains(&format!("zoopipe_rows_read_total {rows}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("zoopipe_task_attempts_total{kind=\"committed\"}"),
        "{metrics}"
    );
    // gRPC health (grpc.health.v1) on the coordinator's API port and the worker's ops port.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for port in [grpc, worker_http] {
        let status = rt.block_on(async {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let status = client
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .map(|r| r.into_inner().status)
                    .map_err(|s| s.message().to_string());
                if status == Ok(1) || Instant::now() > deadline {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        assert_eq!(status, Ok(1), "SERVING on port {port}");
    }
}

#[test]
fn one_job_is_one_trace_from_zoopipectl_through_the_coordinator_to_each_task() {
    let received = otlp::Received::default();
    let (endpoint, _receiver) = otlp::start(received.clone());
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let port = free_port();
    let prefix = format!("/zoopipe-fleet-test/{}-{port}-otel", std::process::id());
    let ops = ["--http", "127.0.0.1:0"];
    let _coordinator = start_coordinator_with(port, &prefix, &etcd(), &ops, &otel);
    wait_leading(port);
    let url = format!("http://127.0.0.1:{port}");
    let _worker = start_worker(&url, "worker-otel", port, &ops, &otel);
    let job = users_job(2, 600);
    let out = Command::new(zoopipectl())
        .args(["submit", "--input", &format!("s3://{}/in/", job.raw)])
        .args(["--output", &format!("s3://{}/users/", job.lake)])
        .args(["--schema", &repo_file("examples/users.schema.json")])
        .args([
            "--partition-size",
            "60KiB",
            "--coordinator",
            &url,
            "--wait",
            "--json",
        ])
        .envs(otel)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = report["partitions"]["total"].as_u64().unwrap() as usize;
    assert!(tasks >= 2, "{report:#}");
    // Wait for every task span, then walk each one's ancestry up to the submit span.
    let deadline = Instant::now() + Duration::from_secs(15);
    let spans = loop {
        let spans = received.lock().unwrap().clone();
        let task_spans = spans.iter().filter(|s| s.1 == "task").count();
        if task_spans >= tasks || Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let root = spans
        .iter()
        .find(|s| s.1 == "zoopipectl submit")
        .unwrap_or_else(|| panic!("no submit span among {spans:?}"));
    let task_spans: Vec<_> = spans.iter().filter(|s| s.1 == "task").collect();
    assert!(task_spans.len() >= tasks, "{spans:?}");
    for task in task_spans {
        assert!(task.0.contains("zoopipe-worker"), "{task:?}");
        assert_eq!(task.2, root.2, "same trace as the submit");
        let mut current = task;
        let mut hops = 0;
        while current.3 != root.3 {
            current = spans
                .iter()
                .find(|s| s.3 == current.4)
                .unwrap_or_else(|| panic!("broken ancestry at {current:?} in {spans:?}"));
            hops += 1;
            assert!(hops < 10);
        }
        assert!(
            hops >= 2,
            "task → coordinator's submit_job → zoopipectl submit"
        );
    }
    assert!(
        spans
            .iter()
            .any(|s| s.1 == "submit_job" && s.0.contains("zoopipe-coordinator") && s.4 == root.3),
        "{spans:?}"
    );
}

/// The port a process logged for its operations port (`serving /healthz ... listen=ADDR`).
fn logged_ops_port(name: &str, port: u16) -> u16 {
    let path = std::env::temp_dir().join(format!("zoopipe-{name}-{port}.log"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let found = log
            .lines()
            .filter(|l| l.contains("serving /healthz"))
            .find_map(|l| l.split("listen=").nth(1))
            .and_then(|a| a.trim().rsplit(':').next().map(str::to_string))
            .and_then(|p| {
                p.trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .ok()
            });
        if let Some(found) = found {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never served its operations port:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_workers_on_one_host_both_serve_health_without_flags() {
    let grpc = free_port();
    let prefix = format!("/zoopipe-fleet-test/{}-{grpc}-two", std::process::id());
    let coordinator_http = format!("127.0.0.1:{}", free_port());
    let _coordinator =
        start_coordinator_with(grpc, &prefix, &etcd(), &["--http", &coordinator_http], &[]);
    wait_leading(grpc);
    let url = format!("http://127.0.0.1:{grpc}");
    // No --http: the first may take the default port, the second must get a free one.
    let _a = start_worker(&url, "worker-a", grpc, &[], &[("RUST_LOG", "info")]);
    let _b = start_worker(&url, "worker-b", grpc, &[], &[("RUST_LOG", "info")]);
    let ports = [
        logged_ops_port("worker-a", grpc),
        logged_ops_port("worker-b", grpc),
    ];
    assert_ne!(ports[0], ports[1], "two workers, two operations ports");
    for port in ports {
        let deadline = Instant::now() + Duration::from_secs(10);
        while http_get(port, "/readyz").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "the worker on {port} never became ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
