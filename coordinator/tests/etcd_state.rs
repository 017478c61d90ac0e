//! The etcd state layer against a real etcd (started by scripts/test.sh): claims, fencing
//! tokens, lease expiry and the requeue signal, and a clear error when etcd is down.

use std::time::{Duration, Instant};
use zoopipe_common::format::{Compression, Format};
use zoopipe_common::plan::{Split, SplitKind, Task};
use zoopipe_common::report::{JobState, TaskResult};
use zoopipe_coordinator::leader::{Campaign, LeaderInfo, try_lead};
use zoopipe_coordinator::state::{EtcdState, StateError};

fn endpoint() -> String {
    std::env::var("ZOOPIPE_TEST_ETCD")
        .expect("ZOOPIPE_TEST_ETCD is not set: run the tests with scripts/test.sh (it starts etcd)")
}

fn prefix(name: &str) -> String {
    format!(
        "/zoopipe-test/{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}

/// A state handle that won the election on its prefix (every write needs the epoch).
async fn leading(prefix: &str, id: &str) -> (EtcdState, i64) {
    let state = EtcdState::connect(&[endpoint()], prefix).await.unwrap();
    let me = LeaderInfo {
        id: id.into(),
        address: format!("http://{id}:7070"),
    };
    match try_lead(&state, &me, 30).await.unwrap() {
        Campaign::Won { lease, epoch } => {
            state.set_epoch(epoch);
            (state, lease)
        }
        Campaign::Lost(other) => panic!("{id} lost the election to {other:?}"),
    }
}

fn tasks(n: u32) -> Vec<Task> {
    (0..n)
        .map(|index| Task {
            index,
            splits: vec![Split {
                url: format!("s3://raw/{index}.csv"),
                size: 10,
                format: Format::Csv,
                compression: Compression::None,
                columns: Some(vec!["a".into()]),
                kind: SplitKind::Whole,
                pin: Default::default(),
            }],
        })
        .collect()
}

fn result(index: u32, attempt: u32) -> TaskResult {
    TaskResult {
        index,
        attempt,
        rows_read: 5,
        rows_valid: 4,
        rows_invalid: 1,
        ..TaskResult::default()
    }
}

#[tokio::test]
async fn only_the_current_owner_can_commit_a_task() {
    let (state, _) = leading(&prefix("fencing"), "c1").await;
    let spec = serde_json::json!({"inputs": ["s3://raw/"], "output": "s3://lake/out/"});
    state
        .create_job("j1", &spec, &tasks(2), None, None)
        .await
        .unwrap();
    assert!(matches!(
        state.create_job("j1", &spec, &tasks(2), None, None).await,
        Err(StateError::JobExists(_))
    ));

    let lease = state.register_worker("w1", 10).await.unwrap();
    let token = state
        .claim("j1", 0, "w1", 1, 0, lease)
        .await
        .unwrap()
        .expect("first claim wins");
    assert_eq!(
        state.claim("j1", 0, "w2", 1, 0, lease).await.unwrap(),
        None,
        "a task has one owner"
    );
    assert!(
        !state
            .complete("j1", 0, token + 1, &result(0, 1))
            .await
            .unwrap(),
        "wrong token refused"
    );
    assert!(state.complete("j1", 0, token, &result(0, 1)).await.unwrap());
    assert_eq!(
        state.claim("j1", 0, "w2", 2, 0, lease).await.unwrap(),
        None,
        "a committed task is never claimed again"
    );
    assert!(
        state.complete("j1", 0, token, &result(0, 1)).await.unwrap(),
        "the recorded result sent again (its answer was lost) is acknowledged"
    );
    assert!(
        !state.complete("j1", 0, token, &result(0, 2)).await.unwrap(),
        "another result for a recorded task is refused"
    );
    let mut other_parts = result(0, 1);
    other_parts.rows_read = 6;
    other_parts.error_part = Some(zoopipe_common::report::PartInfo {
        url: "file:///tmp/x".into(),
        bytes: 1,
        staged: zoopipe_common::storage::StagedObject::Temp {
            url: "file:///tmp/x".into(),
            temp: "file:///tmp/.x".into(),
            bytes: 1,
            crc32: 0,
        },
        rows: 1,
    });
    assert!(
        !state.complete("j1", 0, token, &other_parts).await.unwrap(),
        "the same attempt with other parts is refused"
    );

    // A released attempt can be claimed again, with a newer token.
    let t1 = state
        .claim("j1", 1, "w1", 1, 0, lease)
        .await
        .unwrap()
        .unwrap();
    assert!(state.release("j1", 1, t1).await.unwrap());
    let t2 = state
        .claim("j1", 1, "w1", 2, 1, lease)
        .await
        .unwrap()
        .unwrap();
    assert!(t2 > t1);

    state
        .set_job_state("j1", JobState::Committing)
        .await
        .unwrap();
    let jobs = state.load_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(
        (job.job_id.as_str(), job.state),
        ("j1", JobState::Committing)
    );
    assert_eq!(job.tasks.len(), 2);
    assert_eq!(job.results.get(&0), Some(&result(0, 1)));
    // Attempt counts outlive the owner keys: a new leader goes on counting.
    assert_eq!(
        job.attempts.get(&1).copied(),
        Some(zoopipe_coordinator::state::Attempts {
            attempt: 2,
            handed_back: 1
        })
    );
    let owner = &job.owners[&1];
    assert_eq!(
        (owner.worker.as_str(), owner.attempt, owner.token),
        ("w1", 2, t2)
    );
}

#[tokio::test]
async fn an_expired_lease_requeues_the_task_and_fences_the_late_attempt() {
    let (state, _) = leading(&prefix("lease"), "c1").await;
    state
        .create_job("j2", &serde_json::json!({}), &tasks(1), None, None)
        .await
        .unwrap();
    let mut lost = state.watch_lost_owners().await.unwrap();
    let lease = state.register_worker("frozen", 1).await.unwrap();
    let stale = state
        .claim("j2", 0, "frozen", 1, 0, lease)
        .await
        .unwrap()
        .unwrap();
    assert!(state.keep_alive(lease).await.unwrap());

    // No more heartbeats: the lease expires and the owner key goes with it.
    let started = Instant::now();
    let (job, index, token) = tokio::time::timeout(Duration::from_secs(10), lost.recv())
        .await
        .expect("requeue signal")
        .unwrap();
    assert_eq!((job.as_str(), index), ("j2", 0));
    // The event names the attempt that was lost: its fencing token.
    assert_eq!(token, Some(stale));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(!state.keep_alive(lease).await.unwrap(), "the lease is gone");

    let other = state.register_worker("healthy", 10).await.unwrap();
    let fresh = state
        .claim("j2", 0, "healthy", 2, 0, other)
        .await
        .unwrap()
        .expect("requeued task is claimable");
    // The frozen worker wakes up and reports: refused.
    assert!(!state.complete("j2", 0, stale, &result(0, 1)).await.unwrap());
    assert!(state.complete("j2", 0, fresh, &result(0, 2)).await.unwrap());
}

#[tokio::test]
async fn an_unreachable_etcd_is_one_clear_error() {
    let started = Instant::now();
    let err = EtcdState::connect(&["http://127.0.0.1:9".to_string()], "/x")
        .await
        .err()
        .expect("must fail");
    assert!(
        err.to_string()
            .starts_with("etcd at http://127.0.0.1:9 is unreachable"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_deposed_leader_cannot_write() {
    let prefix = prefix("epoch");
    let (old, lease) = leading(&prefix, "old").await;
    let spec = serde_json::json!({"inputs": ["s3://raw/"], "output": "s3://lake/out/"});
    old.create_job("j1", &spec, &tasks(1), None, None)
        .await
        .unwrap();
    // The old leader's lease ends (as when it froze past its TTL); a new leader is elected.
    let mut client = etcd_client::Client::connect([endpoint()], None)
        .await
        .unwrap();
    client.lease_revoke(lease).await.unwrap();
    let (new, _) = leading(&prefix, "new").await;
    assert!(new.epoch() > old.epoch());
    // The old one still believes it leads: every write it tries is refused by etcd.
    assert!(matches!(
        old.create_job("j2", &spec, &tasks(1), None, None).await,
        Err(StateError::NotLeader)
    ));
    assert_eq!(old.epoch(), 0, "it knows it was deposed");
    new.create_job("j2", &spec, &tasks(1), None, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_claims_and_completions_commit_together_and_stay_fenced() {
    let (state, _) = leading(&prefix("batch"), "c1").await;
    state
        .create_job("j", &serde_json::json!({}), &tasks(40), None, None)
        .await
        .unwrap();
    let lease = state.register_worker("w", 30).await.unwrap();
    // 40 claims at once (they share transactions): every one wins, each task once.
    let claims =
        futures::future::join_all((0..40).map(|i| state.claim("j", i, "w", 1, 0, lease))).await;
    let tokens: Vec<u64> = claims.into_iter().map(|c| c.unwrap().unwrap()).collect();
    let again =
        futures::future::join_all((0..40).map(|i| state.claim("j", i, "w", 2, 0, lease))).await;
    assert!(
        again.iter().all(|c| matches!(c, Ok(None))),
        "no task is claimed twice"
    );
    // Completions at once, one of them with a wrong token: only that one is refused.
    let results: Vec<TaskResult> = (0..40).map(|i| result(i, 1)).collect();
    let done = futures::future::join_all((0..40u32).map(|i| {
        let token = if i == 7 {
            tokens[7] + 1_000_000
        } else {
            tokens[i as usize]
        };
        state.complete("j", i, token, &results[i as usize])
    }))
    .await;
    for (i, accepted) in done.into_iter().enumerate() {
        assert_eq!(accepted.unwrap(), i != 7, "task {i}");
    }
    assert!(
        state
            .complete("j", 7, tokens[7], &results[7])
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_job_planned_as_it_runs_stores_how_far_planning_got_after_its_tasks() {
    use zoopipe_engine::lifecycle::Planned;
    let (state, _) = leading(&prefix("planned"), "c1").await;
    let open = |next_task| Planned {
        next_task,
        open: true,
    };
    let all = tasks(250);
    state
        .create_job("j", &serde_json::json!({}), &all[..3], None, Some(open(3)))
        .await
        .unwrap();
    // More than one transaction's worth of tasks, then the mark.
    state.add_tasks("j", &all[3..210], open(210)).await.unwrap();
    let job = state.load_jobs().await.unwrap().remove(0);
    assert_eq!(job.planned, Some(open(210)));
    assert_eq!(job.tasks.len(), 210);
    assert_eq!(
        job.tasks.keys().copied().collect::<Vec<_>>(),
        (0..210).collect::<Vec<_>>()
    );
    // Tasks past the mark (an append whose mark never came: the coordinator died between)
    // are not the job's; planning numbers them anew. The last chunk closes planning.
    state
        .add_tasks("j", &all[210..240], open(210))
        .await
        .unwrap();
    let job = state.load_jobs().await.unwrap().remove(0);
    assert_eq!(job.tasks.len(), 210);
    let closed = Planned {
        next_task: 250,
        open: false,
    };
    state.add_tasks("j", &all[240..], closed).await.unwrap();
    let job = state.load_jobs().await.unwrap().remove(0);
    assert_eq!(job.planned, Some(closed));
    assert_eq!(job.tasks.len(), 250);
    // A job planned at once has no mark.
    state
        .create_job("k", &serde_json::json!({}), &all[..2], None, None)
        .await
        .unwrap();
    let jobs = state.load_jobs().await.unwrap();
    assert_eq!(jobs.iter().find(|j| j.job_id == "k").unwrap().planned, None);
}

#[tokio::test]
async fn a_resumed_job_can_claim_tasks_an_ended_run_still_owned() {
    // A task that finished as its job was cancelled left its owner key under the worker's
    // live lease: resuming the (named) job must free it, or the task is never claimed again.
    let (state, _) = leading(&prefix("resume-owners"), "c1").await;
    let spec = serde_json::json!({"inputs": ["s3://raw/"], "output": "s3://lake/out/"});
    state
        .create_job("j1", &spec, &tasks(2), None, None)
        .await
        .unwrap();
    let lease = state.register_worker("w1", 30).await.unwrap();
    let old = state
        .claim("j1", 1, "w1", 1, 0, lease)
        .await
        .unwrap()
        .expect("claimed");
    state
        .set_job_state("j1", JobState::Cancelled)
        .await
        .unwrap();
    state.resume_job("j1").await.unwrap();
    let new = state
        .claim("j1", 1, "w1", 2, 0, lease)
        .await
        .unwrap()
        .expect("the resumed run claims the task");
    assert_ne!(new, old);
    assert!(
        !state.complete("j1", 1, old, &result(1, 1)).await.unwrap(),
        "the ended run's attempt cannot record a result"
    );
    assert!(state.complete("j1", 1, new, &result(1, 2)).await.unwrap());
}
