//! Two coordinator replicas: the standby takes over when the leader stops (rolling restart) or
//! freezes, and a deposed leader cannot write.

use std::time::{Duration, Instant};
use zoopipe_tests::fleet::*;

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
