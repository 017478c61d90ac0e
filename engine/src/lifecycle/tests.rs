//! The lifecycle's task bookkeeping against the embedded store, on a real local job.

use super::*;

/// A lifecycle with one submitted job of one task (a small local CSV).
async fn one_task_job(dir: &std::path::Path) -> (Arc<Lifecycle>, String) {
    let input = dir.join("in.csv");
    std::fs::write(&input, "id,name\n1,a\n2,b\n").unwrap();
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "input": input.to_string_lossy(),
        "output": format!("{}/", dir.join("out").to_string_lossy()),
        "format": "jsonl",
    }))
    .unwrap();
    let lifecycle = Lifecycle::new(Arc::new(MemoryStore::default()), Storage::new());
    let submitted = lifecycle.submit(spec, false).await.unwrap();
    assert_eq!(submitted.tasks, 1);
    (lifecycle, submitted.job_id)
}

#[tokio::test]
async fn a_late_lost_event_for_an_earlier_attempt_does_not_requeue_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let (lifecycle, job) = one_task_job(dir.path()).await;
    let first = lifecycle.take_tasks("w1", 0, 1).await.unwrap().remove(0);
    // Handed back (a draining worker): runs again at once, no attempt counted.
    lifecycle
        .fail(
            &job,
            0,
            first.token,
            FailureKind::HandedBack,
            "drain".into(),
        )
        .await
        .unwrap();
    let second = lifecycle.take_tasks("w2", 0, 1).await.unwrap().remove(0);
    assert_ne!(first.token, second.token);
    // The deletion of the first attempt's owner key arrives only now.
    lifecycle.lost(&job, 0, Some(first.token), "late").await;
    let running = lifecycle.running().await;
    assert_eq!(running.len(), 1, "the second attempt still runs");
    assert_eq!(running[0].3, second.token);
    // About the running attempt itself, the same word requeues it.
    lifecycle.lost(&job, 0, Some(second.token), "lost").await;
    assert!(lifecycle.running().await.is_empty());
}

#[tokio::test]
async fn hand_backs_do_not_use_up_attempts_and_a_poison_task_fails_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (lifecycle, job) = one_task_job(dir.path()).await;
    for _ in 0..5 {
        let a = lifecycle.take_tasks("w", 0, 1).await.unwrap().remove(0);
        lifecycle
            .fail(&job, 0, a.token, FailureKind::HandedBack, "drain".into())
            .await
            .unwrap();
    }
    assert!(!lifecycle.report(&job).await.unwrap().state.ended());
    // Four failed attempts (the default budget) fail the job.
    for _ in 0..4 {
        let a = loop {
            // Failed attempts back off before they run again.
            if let Some(a) = lifecycle.take_tasks("w", 0, 1).await.unwrap().pop() {
                break a;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        lifecycle
            .fail(&job, 0, a.token, FailureKind::Transient, "timeout".into())
            .await
            .unwrap();
    }
    let report = lifecycle.wait_ended(&job).await.unwrap();
    assert_eq!(report.state, JobState::Failed);
    let message = report.message.unwrap();
    assert!(message.contains("in.csv"), "{message}");
    assert!(message.contains("after 4 attempts"), "{message}");
}

#[tokio::test]
async fn an_output_that_a_long_listing_would_reach_is_refused_at_submit() {
    // 2,500 small objects under memory://…/data/ (planned as the job runs, past two rounds of
    // 1 MiB partitions), and an --overwrite output under that very prefix that holds a part of
    // an earlier run: the listing would reach it only after the job started, so it is refused
    // now, naming it. A hidden object there (`_SUCCESS`) is no input, and does not count.
    use object_store::{ObjectStoreExt, PutPayload};
    let storage = Storage::new();
    let root = zoopipe_common::storage::ObjectUrl::parse("memory://listing-reach/").unwrap();
    let store = storage.store(&root).unwrap();
    for i in 0..2500 {
        let key = format!("data/a-{i:05}.csv");
        store
            .put(&key.as_str().into(), PutPayload::from_static(b"id\n1\n"))
            .await
            .unwrap();
    }
    store
        .put(&"data/out/_SUCCESS".into(), PutPayload::from_static(b""))
        .await
        .unwrap();
    let spec = |output: &str| -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "input": "memory://listing-reach/data/",
            "output": output,
            "format": "jsonl",
            "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "partition_size": "1MiB",
            "overwrite": true,
        }))
        .unwrap()
    };
    let lifecycle = Lifecycle::new(Arc::new(MemoryStore::default()), storage.clone());
    let submitted = lifecycle
        .submit(spec("memory://listing-reach/data/out/"), false)
        .await
        .unwrap();
    assert!(submitted.planning, "planned as it runs");
    lifecycle.cancel(&submitted.job_id).await.unwrap();
    lifecycle.wait_ended(&submitted.job_id).await;

    store
        .put(
            &"data/out/part-00000.jsonl".into(),
            PutPayload::from_static(b"{}\n"),
        )
        .await
        .unwrap();
    let lifecycle = Lifecycle::new(Arc::new(MemoryStore::default()), storage);
    let Err(refused) = lifecycle
        .submit(spec("memory://listing-reach/data/out/"), false)
        .await
    else {
        panic!("an output the listing would reach was accepted");
    };
    let message = refused.to_string();
    assert!(
        message.contains("data/out/part-00000.jsonl is inside the output"),
        "{message}"
    );
}

/// The embedded store, with `finish_job` held until the test lets it through: a cancel then
/// waits on the store while the job's last task finishes.
struct SlowFinish {
    inner: MemoryStore,
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl JobStore for SlowFinish {
    fn name_key(&self, name: &str, vars: &BTreeMap<String, String>) -> String {
        self.inner.name_key(name, vars)
    }
    async fn job_for_name(&self, key: &str) -> StoreResult<Option<String>> {
        self.inner.job_for_name(key).await
    }
    async fn create_job(
        &self,
        job_id: &str,
        spec: &serde_json::Value,
        tasks: &[Task],
        name: Option<NameClaim<'_>>,
        planned: Option<Planned>,
    ) -> StoreResult<()> {
        self.inner
            .create_job(job_id, spec, tasks, name, planned)
            .await
    }
    async fn add_tasks(&self, job_id: &str, tasks: &[Task], planned: Planned) -> StoreResult<()> {
        self.inner.add_tasks(job_id, tasks, planned).await
    }
    async fn resume_job(&self, job_id: &str) -> StoreResult<()> {
        self.inner.resume_job(job_id).await
    }
    async fn set_job_state(&self, job_id: &str, state: JobState) -> StoreResult<()> {
        self.inner.set_job_state(job_id, state).await
    }
    async fn claim(
        &self,
        job_id: &str,
        index: u32,
        worker: &str,
        attempt: u32,
        handed_back: u32,
        lease: i64,
    ) -> StoreResult<Option<u64>> {
        self.inner
            .claim(job_id, index, worker, attempt, handed_back, lease)
            .await
    }
    async fn complete(&self, job_id: &str, token: u64, result: &TaskResult) -> StoreResult<bool> {
        self.inner.complete(job_id, token, result).await
    }
    async fn release(&self, job_id: &str, index: u32, token: u64) -> StoreResult<bool> {
        self.inner.release(job_id, index, token).await
    }
    async fn replace_tasks(&self, job_id: &str, removed: &[u32], task: &Task) -> StoreResult<()> {
        self.inner.replace_tasks(job_id, removed, task).await
    }
    async fn reset_tasks(&self, job_id: &str, indexes: &[u32]) -> StoreResult<()> {
        self.inner.reset_tasks(job_id, indexes).await
    }
    async fn mark(&self, name: &str) -> StoreResult<Option<String>> {
        self.inner.mark(name).await
    }
    async fn set_mark(&self, name: &str, value: &str) -> StoreResult<()> {
        self.inner.set_mark(name, value).await
    }
    async fn confirm_leading(&self) -> StoreResult<()> {
        self.inner.confirm_leading().await
    }
    async fn finish_job(&self, report: &JobReport) -> StoreResult<()> {
        let _pass = self.gate.acquire().await;
        self.inner.finish_job(report).await
    }
}

#[tokio::test]
async fn a_cancel_answered_cancelled_is_never_followed_by_a_commit() {
    // The last task finishes while the cancel is being recorded: the job must not commit
    // (the cancel answers "cancelled"), and nothing is published.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "id\n1\n").unwrap();
    let out = dir.path().join("out");
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "input": input.to_string_lossy(),
        "output": format!("{}/", out.to_string_lossy()),
        "format": "jsonl",
    }))
    .unwrap();
    let store = Arc::new(SlowFinish {
        inner: MemoryStore::default(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let lifecycle = Lifecycle::new(store.clone(), Storage::new());
    let job = lifecycle.submit(spec, false).await.unwrap().job_id;
    let attempt = lifecycle.take_tasks("w", 0, 1).await.unwrap().remove(0);
    let cancel = tokio::spawn({
        let lifecycle = lifecycle.clone();
        let job = job.clone();
        async move { lifecycle.cancel(&job).await }
    });
    while lifecycle.jobs.lock().await[&job].cancelling == 0 {
        tokio::task::yield_now().await;
    }
    let result = TaskResult {
        index: 0,
        attempt: attempt.attempt,
        ..TaskResult::default()
    };
    lifecycle
        .complete(&job, attempt.token, result)
        .await
        .unwrap();
    assert_eq!(
        lifecycle.report(&job).await.unwrap().state,
        JobState::Running,
        "no commit while the cancel is recorded"
    );
    store.gate.add_permits(100);
    assert_eq!(cancel.await.unwrap().unwrap(), JobState::Cancelled);
    let report = lifecycle.wait_ended(&job).await.unwrap();
    assert_eq!(report.state, JobState::Cancelled);
    assert!(!out.join("_SUCCESS").exists(), "a cancelled job published");
}

#[tokio::test]
async fn an_output_inside_a_running_jobs_output_is_refused() {
    // An --overwrite commit into out/ would remove out/inner/'s parts (and a reader of out/
    // would take them for its own): outputs of running jobs are kept apart.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "id\n1\n").unwrap();
    let spec = |output: &str| -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "input": input.to_string_lossy(),
            "output": format!("{}/{output}", dir.path().to_string_lossy()),
            "format": "jsonl",
            "overwrite": true,
        }))
        .unwrap()
    };
    let lifecycle = Lifecycle::new(Arc::new(MemoryStore::default()), Storage::new());
    lifecycle.submit(spec("out/inner/"), false).await.unwrap();
    // Also a running job's own error prefix (out/inner/_errors/), which no marker claims.
    for nested in ["out/", "out/inner/deeper/", "out/inner/_errors/"] {
        let Err(refused) = lifecycle.submit(spec(nested), false).await else {
            panic!("{nested} was accepted beside a running job's out/inner/");
        };
        assert!(refused.to_string().contains("lie one inside"), "{refused}");
    }
    lifecycle.submit(spec("elsewhere/"), false).await.unwrap();
}

#[tokio::test]
async fn a_new_leader_removes_the_claim_an_ended_job_left_behind() {
    // The old leader recorded a cancel but died (or lost S3) before removing the job's output
    // claim: every later job into that output would be refused. The next leader tidies up.
    let dir = tempfile::tempdir().unwrap();
    let (first, job) = one_task_job(dir.path()).await;
    let marker = dir.path().join("out").join(crate::ownership::OWNER);
    assert!(marker.exists(), "the running job claims its output");
    let mut entry = {
        let jobs = first.jobs.lock().await;
        let running = &jobs[&job];
        JobEntry::new(
            running.config.clone(),
            BTreeMap::new(),
            running.report.clone(),
        )
    };
    entry.report.state = JobState::Cancelled;
    let next = Lifecycle::new(Arc::new(MemoryStore::default()), Storage::new());
    next.load(vec![(entry, false)]).await;
    let report = tokio::time::timeout(std::time::Duration::from_secs(10), next.wait_ended(&job))
        .await
        .expect("the tidying up ends")
        .unwrap();
    assert_eq!(report.state, JobState::Cancelled);
    assert!(!marker.exists(), "the ended job's claim is gone");
}

#[tokio::test]
async fn a_job_being_submitted_keeps_a_nested_output_out_too() {
    // Two nested submits at the same moment: the first is not in the table yet while it plans
    // and claims, but its outputs are reserved until its submit ends.
    let dir = tempfile::tempdir().unwrap();
    let config = |id: &str, output: &str| {
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "input": dir.path().join("in.csv").to_string_lossy(),
            "output": format!("{}/{output}", dir.path().to_string_lossy()),
        }))
        .unwrap();
        JobConfig::new(id.into(), spec).unwrap()
    };
    let lifecycle = Lifecycle::new(Arc::new(MemoryStore::default()), Storage::new());
    let first = lifecycle
        .check_not_nested(&config("a", "out/"))
        .await
        .unwrap();
    assert!(
        lifecycle
            .check_not_nested(&config("b", "out/day=1/"))
            .await
            .is_err()
    );
    drop(first);
    lifecycle
        .check_not_nested(&config("b", "out/day=1/"))
        .await
        .unwrap();
}
