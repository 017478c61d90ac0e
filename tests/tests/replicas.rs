//! Two coordinator replicas: the standby takes over when the leader stops (rolling restart) or
//! freezes, and a deposed leader cannot write.

use std::time::{Duration, Instant};
use zoopipe_tests::fleet::*;
use zoopipe_tests::{run, text};

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
    // A resigning replica never campaigns again (it once re-won while shutting down, and the
    // next leader waited a lease TTL).
    let log = std::fs::read_to_string(
        std::env::temp_dir().join(format!("zoopipe-coordinator-{}.log", f.port)),
    )
    .unwrap_or_default();
    if let Some((_, after)) = log.split_once("resigned leadership") {
        assert!(!after.contains("elected leader"), "{log}");
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
fn a_leader_frozen_mid_commit_wakes_to_find_the_commit_done_and_writes_nothing() {
    let (a, b) = (free_port(), free_port());
    let prefix = format!(
        "/zoopipe-fleet-test/{}-{a}-frozen-commit",
        std::process::id()
    );
    // The leader freezes itself once it has assembled the single-file output.
    let leader = start_coordinator_with(
        a,
        &prefix,
        &etcd(),
        &[],
        &[("ZOOPIPE_FAULT_STOP_AT", "commit-assembled")],
    );
    wait_leading(a);
    let _standby = start_coordinator(b, &prefix);
    let url = format!("http://127.0.0.1:{a},http://127.0.0.1:{b}");
    let _workers: Vec<_> = (0..2)
        .map(|i| start_worker(&url, &format!("worker{i}"), a, &[], &[]))
        .collect();
    let job = users_job(3, 1500);
    let id = job.submit_single_file(&url);

    // The leader stops itself in the middle of the commit; the standby takes over, commits
    // again from etcd and finishes.
    let stat = format!("/proc/{}/stat", leader.0.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") T ")) {
        assert!(
            Instant::now() < deadline,
            "the leader never reached its commit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let watched = zoopipe_tests::run(&["watch", &id, "--coordinator", &url, "--json"]);
    assert!(
        watched.status.success(),
        "{}",
        zoopipe_tests::text(&watched.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&watched.stdout).unwrap();
    assert_eq!(report["state"], "succeeded", "{report:#}");

    // Woken, the old leader finds the staging gone and its commit failing, and must not write
    // that failure over the finished job's report.
    signal(&leader, "CONT");
    let log_path = std::env::temp_dir().join(format!("zoopipe-coordinator-{a}.log"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        // Either it steps down and stops its commit, or its commit finds it no longer leads,
        // or (were it not to check) it ends its commit and fails to record that in etcd:
        // wait for whichever comes.
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("nothing written")
            || log.contains("no longer leading")
            || log.contains("could not record the job's end")
        {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "the woken leader never ended its commit:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stored: serde_json::Value = serde_json::from_slice(&zoopipe_tests::s3::get(
        &job.lake,
        "out/_users.parquet.report.json",
    ))
    .unwrap();
    assert_eq!(stored["state"], "succeeded", "{stored:#}");
    let names = zoopipe_tests::s3::list(&job.lake, "out/");
    assert!(
        names.contains(&"out/_users.parquet.SUCCESS".to_string()),
        "{names:?}"
    );
    let rows = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(zoopipe_tests::s3::get(&job.lake, "out/users.parquet")),
    )
    .unwrap()
    .build()
    .unwrap()
    .map(|b| b.unwrap().num_rows())
    .sum::<usize>();
    assert_eq!(rows, job.valid.len());
    assert!(
        log.contains("nothing written") || log.contains("no longer leading"),
        "{log}"
    );
}

#[test]
fn a_client_call_during_a_failover_waits_for_the_next_leader() {
    // The leader killed: the standby, asked right away, still takes the dead replica for the
    // leader; it holds the call until the next leader (itself) answers, instead of failing.
    let (f, _standby) = replicated_fleet(2, 100);
    let job = users_job(4, 2000);
    let id = job.submit(&f);
    std::thread::sleep(Duration::from_millis(500));
    signal(f.coordinator.as_ref().unwrap(), "KILL");
    let standby_only = f.url.split(',').nth(1).unwrap().to_string();
    let status = run(&["status", &id, "--coordinator", &standby_only]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    job.assert_exact(&f, &id);
}
