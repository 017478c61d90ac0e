//! Runs tasks on a fixed number of slots. A retryable failure runs the task again (up to the
//! job's `max_attempts`); a fatal one cancels the rest and fails the job.

use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use zoopipe_common::plan::Task;
use zoopipe_common::report::TaskResult;
use zoopipe_common::spec::JobConfig;
use zoopipe_common::{Error, Result};
use zoopipe_worker::{Progress, WorkerContext, process};

/// Every task's winning attempt, by task index.
pub type Outcomes = BTreeMap<u32, TaskResult>;

/// Why the tasks did not all succeed, with the attempts that did (to be aborted).
pub struct Failed {
    pub error: Error,
    pub task: Option<u32>,
    pub finished: Outcomes,
}

pub async fn run_tasks(
    ctx: &WorkerContext,
    job: Arc<JobConfig>,
    tasks: Vec<Task>,
    slots: usize,
) -> Result<Outcomes, Failed> {
    let max_attempts = job.spec.max_attempts;
    let mut running = futures::stream::iter(tasks)
        .map(|task| run_with_retries(ctx.clone(), job.clone(), task, max_attempts))
        .buffer_unordered(slots.max(1));
    let mut finished = Outcomes::new();
    let mut failure: Option<(Error, Option<u32>)> = None;
    while let Some((index, result)) = running.next().await {
        match result {
            Ok(outcome) => {
                Progress::add(&ctx.progress.tasks_done, 1);
                finished.insert(index, outcome);
            }
            Err(error) => {
                // The first real failure wins; the rest are the cancellation it caused.
                if failure.is_none() || matches!(failure, Some((Error::Cancelled, _))) {
                    ctx.cancel.store(true, Ordering::Relaxed);
                    failure = Some((error, Some(index)));
                }
            }
        }
    }
    match failure {
        None => Ok(finished),
        Some((error, task)) => Err(Failed {
            error,
            task,
            finished,
        }),
    }
}

async fn run_with_retries(
    ctx: WorkerContext,
    job: Arc<JobConfig>,
    task: Task,
    max_attempts: u32,
) -> (u32, Result<TaskResult>) {
    let index = task.index;
    let mut attempt = 1;
    loop {
        match process(ctx.clone(), job.clone(), task.clone(), attempt).await {
            Ok(outcome) => return (index, Ok(outcome)),
            Err(e)
                if e.is_retryable()
                    && attempt < max_attempts
                    && !ctx.cancel.load(Ordering::Relaxed) =>
            {
                tracing::warn!(task = index, attempt, error = %e, "task failed, retrying");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
            }
            Err(e) => return (index, Err(e)),
        }
    }
}
