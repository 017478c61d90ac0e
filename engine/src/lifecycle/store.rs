//! Where a job's durable state lives: the one seam between the lifecycle and its persistence.
//! `MemoryStore` (this crate) serves `zoopipectl run`; the coordinator's etcd store serves the
//! fleet. The lifecycle never learns which one it talks to.

use async_trait::async_trait;
use std::collections::BTreeMap;
use zoopipe_common::plan::Task;
use zoopipe_common::report::{JobReport, JobState, TaskResult};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time: worth a retry by the caller.
    #[error("{0}")]
    Unavailable(String),
    #[error("corrupt state at {key}: {message}")]
    Corrupt { key: String, message: String },
    #[error("job {0} already exists")]
    JobExists(String),
    /// Another coordinator leads now: this one must write nothing more.
    #[error("this coordinator is not the leader")]
    NotLeader,
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// A named job's name key, and the run it pointed at when the caller looked (`None`: none), so
/// two submissions of one daily job cannot both start.
pub struct NameClaim<'a> {
    pub key: &'a str,
    pub seen: Option<&'a str>,
}

/// How far a job's planning has stored its tasks, for a job whose tasks run while its inputs
/// are still being listed: every task below `next_task` is stored; `open`: more will follow.
/// A new leader ignores stored tasks at or past `next_task` (an append that did not finish)
/// and, while `open`, goes on planning from there. Jobs planned at once have none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Planned {
    pub next_task: u32,
    pub open: bool,
}

/// The durable side of the job table. Every write that decides who runs or commits a task is
/// conditional (a claim only on a task with no owner and no result; a result only from the
/// attempt that still owns the task), so the in-memory table can be rebuilt from it.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// The key a named job's runs are found under: its name and variables.
    fn name_key(&self, name: &str, vars: &BTreeMap<String, String>) -> String;
    /// The job id a name key points at.
    async fn job_for_name(&self, name_key: &str) -> StoreResult<Option<String>>;
    /// Store a new job (spec with the schema inline, and its planned tasks: all of them, or
    /// the first ones with `planned` open).
    async fn create_job(
        &self,
        job_id: &str,
        spec: &serde_json::Value,
        tasks: &[Task],
        name: Option<NameClaim<'_>>,
        planned: Option<Planned>,
    ) -> StoreResult<()>;
    /// More tasks of a job still being planned, then how far planning got (the tasks first:
    /// a store that has the mark has every task below it). Repeatable.
    async fn add_tasks(&self, job_id: &str, tasks: &[Task], planned: Planned) -> StoreResult<()>;
    /// Run an ended job again: its recorded results stay, its final report goes.
    async fn resume_job(&self, job_id: &str) -> StoreResult<()>;
    async fn set_job_state(&self, job_id: &str, state: JobState) -> StoreResult<()>;
    /// Claim a task for `worker` (under `lease`, 0 for none) as attempt `attempt`, of which
    /// `handed_back` were given back (kept, so a new leader goes on counting). The fencing
    /// token of the attempt, or `None` when the task already has an owner or a result.
    async fn claim(
        &self,
        job_id: &str,
        index: u32,
        worker: &str,
        attempt: u32,
        handed_back: u32,
        lease: i64,
    ) -> StoreResult<Option<u64>>;
    /// Record an attempt's result if, and only if, it still owns the task (or the very same
    /// result is already recorded: a re-send whose first answer was lost).
    async fn complete(&self, job_id: &str, token: u64, result: &TaskResult) -> StoreResult<bool>;
    /// Give a task back if the attempt still owns it.
    async fn release(&self, job_id: &str, index: u32, token: u64) -> StoreResult<bool>;
    /// A file re-read whole: the tasks of its ranges (`removed`, their results included) give
    /// way to `task`, which runs anew.
    async fn replace_tasks(&self, job_id: &str, removed: &[u32], task: &Task) -> StoreResult<()>;
    /// `Ok` while this process may still write the job's outputs (it still leads).
    /// Tasks read under a lost database snapshot: their owner keys and results go (a late
    /// result of theirs is refused); the tasks and their attempt counts stay.
    async fn reset_tasks(&self, job_id: &str, indexes: &[u32]) -> StoreResult<()>;
    /// An incremental named job's mark: the largest `since_column` value its last successful
    /// run exported (the next run reads rows above it).
    async fn mark(&self, name: &str) -> StoreResult<Option<String>>;
    async fn set_mark(&self, name: &str, value: &str) -> StoreResult<()>;
    async fn confirm_leading(&self) -> StoreResult<()>;
    /// Store an ended job's report and its final state together.
    async fn finish_job(&self, report: &JobReport) -> StoreResult<()>;
}

/// Retry a store write while the store is away (an etcd blip: no answer, or a timeout),
/// backing off from 200 ms to 5 s. Any other answer ends it at once: `NotLeader` (another
/// coordinator leads and will do this), a refusal, corrupt state. Only idempotent writes go
/// through here. A loop that outlives this replica's leadership is aborted with the job's
/// commit (`Lifecycle::clear`).
pub async fn persist<T, F, Fut>(what: &str, job_id: &str, mut write: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut wait = std::time::Duration::from_millis(200);
    loop {
        match write().await {
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(job = job_id, error = %e, "cannot record {what} yet; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
