//! The fleet with real processes: a coordinator, three workers, etcd (started by
//! scripts/test.sh) and the S3 server; one clean job, and a worker killed with SIGKILL mid-task.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zoopipe_tests::*;

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin(name: &str) -> PathBuf {
    zoopipectl().with_file_name(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn etcd() -> String {
    std::env::var("ZOOPIPE_TEST_ETCD")
        .expect("ZOOPIPE_TEST_ETCD is not set: run the tests with scripts/test.sh (it starts etcd)")
}

struct Fleet {
    url: String,
    port: u16,
    prefix: String,
    coordinator: Option<Proc>,
    workers: Vec<Proc>,
}

fn log(name: &str, port: u16) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::temp_dir().join(format!("zoopipe-{name}-{port}.log")))
        .unwrap()
}

fn start_coordinator(port: u16, prefix: &str) -> Proc {
    start_coordinator_on(port, prefix, &etcd())
}

fn start_coordinator_on(port: u16, prefix: &str, etcd: &str) -> Proc {
    let child = Command::new(bin("zoopipe-coordinator"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--etcd",
            etcd,
            "--etcd-prefix",
            prefix,
            "--lease-ttl",
            "2",
        ])
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
    /// SIGKILL the coordinator, then start a new one on the same address and etcd prefix.
    fn restart_coordinator(&mut self, down_for: Duration) {
        drop(self.coordinator.take());
        std::thread::sleep(down_for);
        self.coordinator = Some(start_coordinator(self.port, &self.prefix));
    }
}

fn fleet(workers: usize, batch_delay_ms: u64) -> Fleet {
    fleet_on(workers, batch_delay_ms, &etcd())
}

fn fleet_on(workers: usize, batch_delay_ms: u64, etcd: &str) -> Fleet {
    fleet_with(workers, batch_delay_ms, etcd, &[])
}

fn fleet_with(workers: usize, batch_delay_ms: u64, etcd: &str, env: &[(&str, &str)]) -> Fleet {
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
struct UsersJob {
    raw: String,
    lake: String,
    valid: Vec<String>,
    invalid: usize,
}

fn users_job(files: usize, rows_each: usize) -> UsersJob {
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
    fn submit(&self, f: &Fleet) -> String {
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

    /// Follow the job to its end and check it produced exactly the clean run's output.
    fn assert_exact(&self, f: &Fleet, job: &str) -> serde_json::Value {
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

fn retried(report: &serde_json::Value) -> bool {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["attempts"].as_u64().unwrap() > 1)
}

fn wait_no_open_uploads(bucket: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    while s3::open_uploads(bucket) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    s3::open_uploads(bucket)
}

fn output_ids(lake: &str) -> Vec<String> {
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

#[test]
fn a_job_spreads_over_three_workers_and_commits_once() {
    let f = fleet(3, 0);
    let job = users_job(4, 1500);
    let out = run(&[
        "submit",
        "--input",
        &format!("s3://{}/in/*.csv", job.raw),
        "--output",
        &format!("s3://{}/users/", job.lake),
        "--schema",
        &repo_file("examples/users.schema.json"),
        "--partition-size",
        "48KiB",
        "--coordinator",
        &f.url,
        "--wait",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["state"], "succeeded");
    assert_eq!(
        report["total_processed"],
        (job.valid.len() + job.invalid) as u64
    );
    assert_eq!(report["total_errors"], job.invalid as u64);
    assert!(report["partitions"]["total"].as_u64().unwrap() >= 4);
    assert_eq!(output_ids(&job.lake), job.valid);
    assert_eq!(s3::open_uploads(&job.lake), 0);
    // Per-worker totals add up to the job's.
    let workers = report["workers"].as_object().unwrap();
    assert!(workers.len() >= 2, "work was spread: {workers:?}");
    let rows: u64 = workers
        .values()
        .map(|w| w["rows_read"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, report["total_processed"].as_u64().unwrap());
    let listed = run(&["list", "--coordinator", &f.url, "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(jobs[0]["job_id"], report["job_id"]);
}

#[test]
fn a_worker_killed_mid_task_loses_nothing_and_duplicates_nothing() {
    let mut f = fleet(3, 150);
    let job = users_job(6, 2000);
    let id = job.submit(&f);
    // Twelve tasks of ~0.6 s on three workers: every worker is inside one; kill one outright.
    std::thread::sleep(Duration::from_millis(900));
    drop(f.workers.remove(0)); // SIGKILL
    let report = job.assert_exact(&f, &id);
    assert!(
        report["partitions"]["total"].as_u64().unwrap() >= 12,
        "{report:#}"
    );
    assert!(
        retried(&report),
        "the killed worker's task ran again: {report:#}"
    );
    // The killed attempt reported its open multipart uploads in its heartbeats: the
    // coordinator aborted them when it requeued the task, so none lingers in the bucket.
    assert_eq!(
        wait_no_open_uploads(&job.lake),
        0,
        "the killed attempt's uploads were aborted"
    );
}

#[test]
fn a_coordinator_killed_mid_job_is_replaced_and_the_job_completes() {
    let mut f = fleet(2, 100);
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(700));
    f.restart_coordinator(Duration::from_millis(500));
    job.assert_exact(&f, &id);
}

#[test]
fn a_frozen_worker_past_its_lease_cannot_commit_and_its_parts_are_cleaned() {
    let f = fleet(2, 150);
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(500));
    let frozen = f.workers[0].0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &frozen])
            .status()
            .unwrap()
            .success()
    );
    // Well past the 2 s lease: its task is requeued and finished by the other worker.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        Command::new("kill")
            .args(["-CONT", &frozen])
            .status()
            .unwrap()
            .success()
    );
    job.assert_exact(&f, &id);
    // The woken worker's late result is refused and its uploads aborted by the coordinator.
    assert_eq!(
        wait_no_open_uploads(&job.lake),
        0,
        "the late attempt's parts were cleaned"
    );
}

#[test]
fn cancel_stops_the_running_tasks_and_commits_nothing() {
    let f = fleet(2, 200);
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(900));
    let cancelled = run(&["cancel", &id, "--coordinator", &f.url]);
    assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
    let status = run(&["report", &id, "--coordinator", &f.url, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["state"], "cancelled", "{report:#}");
    assert!(report["message"].as_str().unwrap().contains("cancel"));
    // Running tasks stop at their next batch and abort their uploads; nothing is published.
    assert_eq!(wait_no_open_uploads(&job.lake), 0);
    let names = s3::list(&job.lake, "users");
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("_SUCCESS") || n.contains("part-")),
        "{names:?}"
    );
    let watched = run(&["watch", &id, "--coordinator", &f.url]);
    assert_eq!(
        watched.status.code(),
        Some(130),
        "a cancelled job's exit code"
    );
}

/// A private etcd (this test stops and restarts it) on fixed ports and a kept data dir.
fn start_etcd(dir: &std::path::Path, client: u16, peer: u16) -> Proc {
    let child = Command::new("etcd")
        .args([
            "--name",
            "n1",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
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

#[test]
fn the_job_recovers_when_etcd_is_down_for_a_few_seconds() {
    let data = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let etcd = start_etcd(data.path(), client, peer);
    let f = fleet_on(2, 100, &format!("http://127.0.0.1:{client}"));
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(700));
    drop(etcd); // SIGKILL
    std::thread::sleep(Duration::from_secs(3));
    let _etcd = start_etcd(data.path(), client, peer);
    job.assert_exact(&f, &id);
}

#[test]
fn sigterm_drains_a_worker_and_hands_its_task_back() {
    let mut f = fleet_with(2, 200, &etcd(), &[("ZOOPIPE_DRAIN_GRACE", "0")]);
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(700));
    let mut leaving = f.workers.remove(0);
    let started = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &leaving.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(status) = leaving.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the worker did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a drained worker exits 0: {status}");
    let report = job.assert_exact(&f, &id);
    assert!(
        retried(&report),
        "the drained worker's task ran again: {report:#}"
    );
}

/// Wait until a coordinator's log says it leads.
fn wait_leading(port: u16) {
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
fn replicated_fleet(workers: usize, batch_delay_ms: u64) -> (Fleet, Proc) {
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

fn signal(process: &Proc, name: &str) {
    let pid = process.0.id().to_string();
    assert!(
        Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn a_rolling_restart_hands_leadership_to_the_standby_and_the_job_completes() {
    let (mut f, _standby) = replicated_fleet(2, 100);
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(700));
    // SIGTERM, as Kubernetes stops a pod: the leader resigns and the standby takes over.
    let mut leader = f.coordinator.take().unwrap();
    signal(&leader, "TERM");
    let started = Instant::now();
    while leader.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the coordinator did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    job.assert_exact(&f, &id);
}

#[test]
fn a_frozen_leader_is_deposed_and_cannot_write_when_it_wakes() {
    let (f, standby) = replicated_fleet(2, 100);
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(600));
    let leader = f.coordinator.as_ref().unwrap();
    signal(leader, "STOP");
    // Past the 2 s leader lease: the standby is elected and carries the job on.
    let standby_port: u16 = f.url.rsplit(':').next().unwrap().parse().unwrap();
    wait_leading(standby_port);
    signal(leader, "CONT");
    job.assert_exact(&f, &id);
    // The woken leader found its epoch gone and stepped down instead of writing.
    std::thread::sleep(Duration::from_secs(1));
    let log = std::fs::read_to_string(
        std::env::temp_dir().join(format!("zoopipe-coordinator-{}.log", f.port)),
    )
    .unwrap();
    assert!(
        log.contains("stepping down") || log.contains("no longer leading"),
        "{log}"
    );
    drop(standby);
}

#[test]
fn a_daily_job_runs_once_per_date_and_resumes_only_what_did_not_commit() {
    let f = fleet(1, 60);
    let (raw, lake) = (unique("raw"), unique("lake"));
    s3::create_bucket(&raw);
    s3::create_bucket(&lake);
    let (rows, _) = users(5 * 1500);
    let files: Vec<(String, Vec<u8>)> = rows
        .chunks(1500)
        .enumerate()
        .map(|(i, chunk)| (format!("in/2024-01-01/users-{i}.csv"), csv_bytes(chunk)))
        .collect();
    for (key, bytes) in &files {
        s3::put(&raw, key, bytes.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("daily.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: daily-users\ninputs: [\"s3://{raw}/in/${{date}}/*.csv\"]\n\
             output: s3://{lake}/users/date=${{date}}/\nschema: {}\nbatch_size: 250\n\
             partition_size: 100KiB\n",
            repo_file("examples/users.schema.json")
        ),
    )
    .unwrap();
    let submit = |extra: &[&str]| {
        let mut args = vec!["submit", spec.to_str().unwrap(), "--coordinator", &f.url];
        args.extend_from_slice(&["--var", "date=2024-01-01", "--wait", "--json"]);
        args.extend_from_slice(extra);
        run(&args)
    };
    // The last file vanishes after planning: its task fails and with it the first run.
    let submitted = std::thread::spawn({
        let submit_args = (spec.clone(), f.url.clone());
        move || {
            run(&[
                "submit",
                submit_args.0.to_str().unwrap(),
                "--coordinator",
                &submit_args.1,
                "--var",
                "date=2024-01-01",
                "--wait",
                "--json",
            ])
        }
    });
    std::thread::sleep(Duration::from_millis(400));
    let (last_key, last_bytes) = files.last().unwrap().clone();
    s3::delete(&raw, &last_key);
    let first = submitted.join().unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let failed: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert!(
        !s3::list(&lake, "users").iter().any(|n| n.contains("part-")),
        "a failed run publishes nothing"
    );
    // The file is back: the same submission resumes and runs only the uncommitted tasks.
    s3::put(&raw, &last_key, last_bytes);
    let second = submit(&[]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let message = text(&second.stderr);
    let (left, total) = message
        .split("resumed as job ")
        .nth(1)
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|rest| rest.split(" tasks left").next())
        .and_then(|counts| counts.split_once(" of "))
        .map(|(l, t)| (l.parse::<u64>().unwrap(), t.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("not resumed: {message}"));
    assert!(left >= 1 && left < total, "{message}");
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(report["state"], "succeeded", "{report:#}");
    assert_eq!(report["job_id"], failed["job_id"], "the same job, resumed");
    assert_eq!(report["total_processed"], rows.len() as u64, "{report:#}");
    let names = s3::list(&lake, "users/date=2024-01-01");
    assert!(names.iter().any(|n| n.ends_with("_SUCCESS")), "{names:?}");
    // Once succeeded, the same date is a no-op that prints the earlier report.
    let third = submit(&[]);
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert!(
        text(&third.stderr).contains("already succeeded"),
        "{}",
        text(&third.stderr)
    );
    let again: serde_json::Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(again["job_id"], report["job_id"]);
    assert_eq!(s3::list(&lake, "users/date=2024-01-01"), names);
}

/// GET over plain HTTP/1.1 (an independent client: no project code involved).
fn http_get(port: u16, path: &str) -> (u16, String) {
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

fn wait_http(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn health_readiness_and_metrics_are_served_by_both_binaries() {
    let (grpc, coordinator_http, worker_http) = (free_port(), free_port(), free_port());
    let prefix = format!("/zoopipe-fleet-test/{}-{grpc}-ops", std::process::id());
    let _coordinator = Proc(
        Command::new(bin("zoopipe-coordinator"))
            .args(["--listen", &format!("127.0.0.1:{grpc}"), "--etcd", &etcd()])
            .args(["--etcd-prefix", &prefix, "--lease-ttl", "2"])
            .args(["--http", &format!("127.0.0.1:{coordinator_http}")])
            .stdout(Stdio::null())
            .stderr(log("coordinator", grpc))
            .spawn()
            .unwrap(),
    );
    wait_leading(grpc);
    let url = format!("http://127.0.0.1:{grpc}");
    let _worker = Proc(
        Command::new(bin("zoopipe-worker"))
            .args(["--coordinator", &url, "--slots", "1"])
            .args(["--http", &format!("127.0.0.1:{worker_http}")])
            .stdout(Stdio::null())
            .stderr(log("worker-ops", grpc))
            .spawn()
            .unwrap(),
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

/// A CA, a server certificate for 127.0.0.1 and a worker client certificate, as PEM files.
fn certificates(dir: &std::path::Path) {
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

#[test]
fn tls_tokens_and_roles_guard_the_api_and_secrets_stay_out_of_logs() {
    const CLIENT_TOKEN: &str = "client-token-5f1c9e";
    const WORKER_TOKEN: &str = "worker-token-8a7d2b";
    const AWS_SECRET: &str = "aws-secret-3c6e0f91";
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    certificates(dir.path());
    std::fs::write(
        dir.path().join("tokens"),
        format!("# role per token\n{CLIENT_TOKEN} client\n{WORKER_TOKEN} worker\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("client-token"), format!("{CLIENT_TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("worker-token"), WORKER_TOKEN).unwrap();
    let port = free_port();
    let prefix = format!("/zoopipe-fleet-test/{}-{port}-tls", std::process::id());
    let secret_env = [("AWS_SECRET_ACCESS_KEY", AWS_SECRET), ("RUST_LOG", "debug")];
    let _coordinator = Proc(
        Command::new(bin("zoopipe-coordinator"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--etcd", &etcd()])
            .args([
                "--etcd-prefix",
                &prefix,
                "--lease-ttl",
                "2",
                "--http",
                "127.0.0.1:0",
            ])
            .args([
                "--tls-cert",
                &path("server.pem"),
                "--tls-key",
                &path("server.key"),
            ])
            .args([
                "--tls-client-ca",
                &path("ca.pem"),
                "--tokens-file",
                &path("tokens"),
            ])
            .envs(secret_env)
            .stdout(Stdio::null())
            .stderr(log("coordinator", port))
            .spawn()
            .unwrap(),
    );
    wait_leading(port);
    let url = format!("https://127.0.0.1:{port}");
    // Mutual TLS: the worker proves itself with its client certificate, no token.
    let _worker = Proc(
        Command::new(bin("zoopipe-worker"))
            .args([
                "--coordinator",
                &url,
                "--slots",
                "1",
                "--http",
                "127.0.0.1:0",
            ])
            .args([
                "--tls-ca",
                &path("ca.pem"),
                "--tls-cert",
                &path("worker.pem"),
            ])
            .args(["--tls-key", &path("worker.key")])
            .envs(secret_env)
            .stdout(Stdio::null())
            .stderr(log("worker-tls", port))
            .spawn()
            .unwrap(),
    );
    let job = users_job(1, 500);
    let submit = |token: Option<&str>, ca: bool, url: &str| {
        let mut args = vec![
            "submit".to_string(),
            "--input".into(),
            format!("s3://{}/in/", job.raw),
            "--output".into(),
            format!("s3://{}/users/", job.lake),
            "--schema".into(),
            repo_file("examples/users.schema.json"),
            "--coordinator".into(),
            url.to_string(),
            "--wait".into(),
            "--json".into(),
        ];
        if ca {
            args.extend(["--tls-ca".into(), path("ca.pem")]);
        }
        if let Some(t) = token {
            args.extend(["--token-file".into(), path(t)]);
        }
        let out = Command::new(zoopipectl())
            .args(&args)
            .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    // No token, a worker's token, no TLS: refused with one clear line each.
    let (code, _, err) = submit(None, true, &url);
    assert_ne!(code, Some(0));
    assert!(err.contains("bearer token is required"), "{err}");
    let (code, _, err) = submit(Some("worker-token"), true, &url);
    assert_ne!(code, Some(0));
    assert!(err.contains("cannot use the job API"), "{err}");
    let (code, _, err) = submit(
        Some("client-token"),
        false,
        &format!("http://127.0.0.1:{port}"),
    );
    assert_ne!(code, Some(0), "plain text to a TLS port");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The client's token over TLS: the job runs on the mTLS worker.
    let (code, out, err) = submit(Some("client-token"), true, &url);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["state"], "succeeded", "{report:#}");
    assert_eq!(report["total_processed"], 500);
    // Secrets never reach logs, reports or outputs.
    let mut seen = vec![out, err];
    for name in [format!("coordinator-{port}"), format!("worker-tls-{port}")] {
        let log = std::env::temp_dir().join(format!("zoopipe-{name}.log"));
        seen.push(std::fs::read_to_string(log).unwrap());
    }
    for key in s3::list(&job.lake, "users") {
        if key.ends_with(".json") || key.ends_with(".jsonl") {
            seen.push(String::from_utf8_lossy(&s3::get(&job.lake, &key)).into_owned());
        }
    }
    assert!(
        seen[2].contains("DEBUG"),
        "the coordinator logged at debug level"
    );
    for text in &seen {
        for secret in [CLIENT_TOKEN, WORKER_TOKEN, AWS_SECRET] {
            assert!(!text.contains(secret), "a secret leaked: {secret}");
        }
    }
}

mod otlp {
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
    let _coordinator = Proc(
        Command::new(bin("zoopipe-coordinator"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--etcd", &etcd()])
            .args([
                "--etcd-prefix",
                &prefix,
                "--lease-ttl",
                "2",
                "--http",
                "127.0.0.1:0",
            ])
            .envs(otel)
            .stdout(Stdio::null())
            .stderr(log("coordinator", port))
            .spawn()
            .unwrap(),
    );
    wait_leading(port);
    let url = format!("http://127.0.0.1:{port}");
    let _worker = Proc(
        Command::new(bin("zoopipe-worker"))
            .args([
                "--coordinator",
                &url,
                "--slots",
                "1",
                "--http",
                "127.0.0.1:0",
            ])
            .envs(otel)
            .stdout(Stdio::null())
            .stderr(log("worker-otel", port))
            .spawn()
            .unwrap(),
    );
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
