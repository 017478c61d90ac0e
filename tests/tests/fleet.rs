//! The fleet with real processes: a coordinator, workers, etcd (started by scripts/test.sh) and
//! the S3 server; a clean job, and workers, the coordinator and etcd failing mid-job.

use std::process::Command;
use std::time::{Duration, Instant};
use zoopipe_tests::fleet::*;
use zoopipe_tests::*;

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
    // Error rows name their true lines, in ranges that do not start their file too (their
    // workers asked the coordinator for the lines before them, or the commit renumbered them).
    let lines: Vec<(String, u64)> = s3::list(&job.lake, "users/_errors/")
        .iter()
        .filter(|name| name.ends_with(".jsonl"))
        .flat_map(|name| {
            text(&s3::get(&job.lake, name))
                .lines()
                .map(|line| {
                    let row: serde_json::Value = serde_json::from_str(line).unwrap();
                    let source = row["source"].as_str().unwrap();
                    let file = source.rsplit('/').next().unwrap().to_string();
                    (file, row["line"].as_u64().unwrap())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: Vec<(String, u64)> = (0..4)
        .flat_map(|f| {
            (0..1500)
                .filter(move |j| (f * 1500 + j) % 7 == 3)
                .map(move |j| (format!("users-{f:02}.csv"), j as u64 + 2))
        })
        .collect();
    assert_eq!(lines, expected);
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
fn a_coordinator_killed_between_recording_a_result_and_answering_loses_nothing() {
    let mut f = fleet(2, 0);
    f.coordinator_with_env(&[("ZOOPIPE_FAULT_EXIT_AT", "complete-recorded")]);
    let job = users_job(3, 1500);
    let id = job.submit(&f);
    // The first completion is recorded in etcd, then the coordinator dies before answering.
    f.wait_coordinator_exit("a completion");
    // Its successor gets the same result again from the worker: acknowledged, not discarded.
    f.coordinator = Some(start_coordinator(f.port, &f.prefix));
    job.assert_exact(&f, &id);
    assert_eq!(wait_no_open_uploads(&job.lake), 0);
}

#[test]
fn a_coordinator_killed_while_planning_a_long_listing_is_replaced_and_plans_on() {
    // 2,500 small objects: the job starts with the tasks of its first listing pages and plans
    // the rest as it runs. The coordinator dies right after storing a chunk of tasks; its
    // successor hands them out, plans the rest from there, and every row lands once in order.
    let mut f = fleet(2, 0);
    f.coordinator_with_env(&[("ZOOPIPE_FAULT_EXIT_AT", "planned-stored")]);
    let input = s3::small_csvs(2500, 2);
    let args = input.command("submit", &["--coordinator", &f.url]);
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    f.wait_coordinator_exit("a stored chunk of planned tasks");
    f.coordinator = Some(start_coordinator(f.port, &f.prefix));
    let watched = run(&["watch", &id, "--coordinator", &f.url, "--json"]);
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    let report: serde_json::Value = serde_json::from_slice(&watched.stdout).unwrap();
    assert_eq!(report["state"], "succeeded", "{report:#}");
    assert_eq!(report["total_processed"], 5000, "{report:#}");
    assert_eq!(report["total_valid"], 5000, "every row valid: {report:#}");
    let log = std::fs::read_to_string(
        std::env::temp_dir().join(format!("zoopipe-coordinator-{}.log", f.port)),
    )
    .unwrap_or_default();
    assert!(log.contains("planning goes on"), "{log}");
    assert_eq!(
        s3::part_ids(&input.lake, "out/"),
        input.ids,
        "every row once, in order"
    );
    let tasks = report["partitions"]["total"].as_u64().unwrap() as usize;
    let parts = s3::list(&input.lake, "out/")
        .iter()
        .filter(|n| n.contains("/part-"))
        .count();
    assert_eq!(parts, tasks, "one part per task");
}

#[test]
fn a_task_whose_assignment_never_reached_its_worker_runs_again() {
    let mut f = fleet(2, 0);
    // The first answer to AcquireTask is lost after the claim: the worker, alive and beating,
    // keeps the claim's lease alive while it never runs the task.
    f.coordinator_with_env(&[("ZOOPIPE_FAULT_FAIL_ONCE_AT", "assign-answer")]);
    let job = users_job(3, 1500);
    let id = job.submit(&f);
    let status = wait_ended(&f, &id, Duration::from_secs(60));
    assert_eq!(status["state"], "succeeded", "{status:#}");
    let report = job.assert_exact(&f, &id);
    assert!(retried(&report), "the lost task ran again: {report:#}");
}

#[test]
fn a_claim_whose_answer_timed_out_is_read_back_and_the_task_runs() {
    let mut f = fleet(2, 0);
    // etcd applies the first claim but the coordinator never hears so: before the read-back,
    // the task went back to pending while its owner key lived on, and the job never ended.
    f.coordinator_with_env(&[("ZOOPIPE_FAULT_FAIL_ONCE_AT", "claim-answer")]);
    let job = users_job(3, 1500);
    let id = job.submit(&f);
    let status = wait_ended(&f, &id, Duration::from_secs(60));
    assert_eq!(status["state"], "succeeded", "{status:#}");
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
    assert!(
        report["message"]
            .as_str()
            .unwrap()
            .contains("nothing was committed"),
        "the report says what did not commit: {report:#}"
    );
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
        Some(3),
        "a cancelled job's exit code (130 is Ctrl-C)"
    );
    // Cancelling it again changes nothing, and says so.
    let again = run(&["cancel", &id, "--coordinator", &f.url]);
    assert!(
        text(&again.stdout).contains("cancelled"),
        "{}",
        text(&again.stdout)
    );
    // A job that ended otherwise is not reported as cancelled.
    let other = users_job(1, 100);
    let done = other.submit(&f);
    other.assert_exact(&f, &done);
    let late = run(&["cancel", &done, "--coordinator", &f.url]);
    assert_eq!(late.status.code(), Some(2), "{}", text(&late.stderr));
    assert!(
        text(&late.stderr).contains("had already ended (succeeded)"),
        "{}",
        text(&late.stderr)
    );
    assert!(!text(&late.stdout).contains("cancelled"));
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
    // SIGTERM while worker 0 is inside a task (each takes most of a second).
    let log = std::env::temp_dir().join(format!("zoopipe-worker0-{}.log", f.port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("running")) {
        assert!(Instant::now() < deadline, "worker 0 never started a task");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
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

#[test]
fn a_cancel_etcd_did_not_take_is_refused_and_a_recorded_one_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let etcd_url = format!("http://127.0.0.1:{client}");
    let etcd = start_etcd(data.path(), client, peer);
    let mut f = fleet_on(2, 200, &etcd_url);
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(700));
    drop(etcd); // SIGKILL: the cancel cannot be recorded
    let o = run(&["cancel", &id, "--coordinator", &f.url]);
    let message = text(&o.stderr);
    assert!(
        !o.status.success(),
        "a cancel etcd never took is not a success: {message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    let _etcd = start_etcd(data.path(), client, peer);
    // etcd is back: cancelling again works (after the coordinator leads again).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = run(&["cancel", &id, "--coordinator", &f.url]);
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cancel never went through: {}",
            text(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        wait_ended(&f, &id, Duration::from_secs(30))["state"],
        "cancelled"
    );
    // The cancel is in etcd: a new coordinator (reloading every job) still says so.
    drop(f.coordinator.take());
    f.coordinator = Some(start_coordinator_on(f.port, &f.prefix, &etcd_url));
    wait_leading(f.port);
    let status = wait_ended(&f, &id, Duration::from_secs(30));
    assert_eq!(status["state"], "cancelled", "{status:#}");
    assert_eq!(wait_no_open_uploads(&job.lake), 0);
}

#[test]
fn ended_jobs_past_the_retention_period_leave_etcd_and_their_output_stays() {
    let port = free_port();
    let prefix = format!(
        "/zoopipe-fleet-test/{}-{port}-retention",
        std::process::id()
    );
    let retention = ["--retention-days", "0.00002"]; // about 1.7 s
    let coordinator = start_coordinator_with(port, &prefix, &etcd(), &retention, &[]);
    wait_leading(port);
    let url = format!("http://127.0.0.1:{port}");
    let _worker = start_worker(&url, "worker-retention", port, &[], &[]);
    let mut f = Fleet {
        url: url.clone(),
        port,
        prefix: prefix.clone(),
        coordinator: Some(coordinator),
        workers: vec![],
    };
    let job = users_job(1, 300);
    let id = job.submit(&f);
    job.assert_exact(&f, &id);
    std::thread::sleep(Duration::from_secs(3));
    // A new leader reloads from etcd: the job is past its retention and removed.
    drop(f.coordinator.take());
    f.coordinator = Some(start_coordinator_with(
        port,
        &prefix,
        &etcd(),
        &retention,
        &[],
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = run(&["status", &id, "--coordinator", &url]);
        if o.status.code() == Some(2) && text(&o.stderr).contains("no job") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job stayed: {}",
            text(&o.stdout)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(output_ids(&job.lake), job.valid, "the output itself stays");
}

#[test]
fn a_job_whose_creation_answer_was_lost_is_read_back_and_runs_once() {
    let mut f = fleet(2, 0);
    // etcd stores the job but the coordinator never hears so: before the read-back the
    // submission failed while the stored job ran anyway, unclaimed, after the next reload.
    f.coordinator_with_env(&[("ZOOPIPE_FAULT_FAIL_ONCE_AT", "create-answer")]);
    let job = users_job(3, 1500);
    let id = job.submit(&f);
    let status = wait_ended(&f, &id, Duration::from_secs(60));
    assert_eq!(status["state"], "succeeded", "{status:#}");
    job.assert_exact(&f, &id);
}

#[test]
fn commit_steps_ride_out_an_etcd_blip_and_the_end_is_recorded() {
    // An etcd write of the commit fails once: entering Committing (before, the job stayed
    // committing forever and could not be cancelled), or recording the end (before, the
    // table said succeeded while etcd said committing, and a restart committed again).
    for point in ["job-state", "job-end"] {
        let mut f = fleet(2, 0);
        f.coordinator_with_env(&[("ZOOPIPE_FAULT_FAIL_ONCE_AT", point)]);
        let job = users_job(3, 1500);
        let id = job.submit(&f);
        let status = wait_ended(&f, &id, Duration::from_secs(60));
        assert_eq!(status["state"], "succeeded", "{point}: {status:#}");
        job.assert_exact(&f, &id);
        // What etcd holds says the same to a new coordinator.
        drop(f.coordinator.take());
        f.coordinator = Some(start_coordinator(f.port, &f.prefix));
        wait_leading(f.port);
        let status = wait_ended(&f, &id, Duration::from_secs(30));
        assert_eq!(status["state"], "succeeded", "{point}: {status:#}");
    }
}

#[test]
fn the_job_survives_etcd_paused_past_every_lease_and_a_slow_etcd() {
    let data = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let etcd = start_etcd(data.path(), client, peer);
    let f = fleet_on(2, 100, &format!("http://127.0.0.1:{client}"));
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(700));
    // Frozen for longer than the workers' and the leader's leases (2 s here).
    signal(&etcd, "STOP");
    std::thread::sleep(Duration::from_secs(5));
    signal(&etcd, "CONT");
    // Then slow: it answers only every other half second for a while.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(400));
        signal(&etcd, "STOP");
        std::thread::sleep(Duration::from_millis(400));
        signal(&etcd, "CONT");
    }
    job.assert_exact(&f, &id);
    assert_eq!(wait_no_open_uploads(&job.lake), 0);
}

#[test]
fn an_input_rewritten_while_the_job_runs_fails_it_naming_the_object_and_mixes_nothing() {
    // One worker, slow batches: the file's later ranges are read after it was rewritten (same
    // size, other rows). Before pinning, they read new bytes at old offsets and the job
    // succeeded with rows of two versions of the file.
    let f = fleet(1, 150);
    let job = users_job(1, 4000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(800));
    let key = "in/users-00.csv";
    let mut rewritten = s3::get(&job.raw, key);
    rewritten.reverse(); // same size, other bytes
    s3::put(&job.raw, key, rewritten);
    let status = wait_ended(&f, &id, Duration::from_secs(60));
    assert_eq!(status["state"], "failed", "{status:#}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("s3://{}/{key}", job.raw))
            && message.contains("changed since the job was planned"),
        "{message}"
    );
    // Nothing published, no upload left open.
    assert!(
        s3::list(&job.lake, "users/")
            .iter()
            .all(|k| !k.ends_with(".parquet"))
    );
    assert_eq!(wait_no_open_uploads(&job.lake), 0);
}
