//! `zoopipectl run`: the one lifecycle in this process, over the in-memory job store, with
//! local task runners in place of fleet workers (as Ballista's standalone mode runs the real
//! scheduler with an in-process executor).

use crate::lifecycle::{Lifecycle, MemoryStore, SubmitError};
use crate::task::{AttemptOutcome, Progress, TaskContext, attempt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zoopipe_common::Result;
use zoopipe_common::report::JobReport;
use zoopipe_common::spec::JobSpec;

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Tasks run at once.
    pub workers: usize,
    /// Set (e.g. on Ctrl-C) to cancel the job: running tasks stop, nothing is committed.
    pub interrupt: Arc<AtomicBool>,
}

/// The name local task runners claim tasks under.
const LOCAL: &str = "local";

/// Run a job on this machine. `Err` means it could not start (bad spec, schema, input or
/// output); a job that started always returns its report, whose `state` says how it ended.
pub async fn run_job(
    mut ctx: TaskContext,
    mut spec: JobSpec,
    options: RunOptions,
) -> Result<JobReport> {
    // Every local runner gets a task when the input is big enough.
    spec.min_tasks.get_or_insert(options.workers.max(1) as u32);
    let lifecycle = Lifecycle::new(Arc::new(MemoryStore::default()), ctx.storage.clone());
    let lines = lifecycle.clone();
    ctx.line_offsets = Some(Arc::new(move |job, index| {
        let lines = lines.clone();
        Box::pin(async move { lines.line_offset(&job, index).await.into() })
    }));
    let progress = ctx.progress.clone();
    lifecycle.on_commit(move |_| progress.committing.store(true, Ordering::Relaxed));
    // Totals grow as tasks are planned: at submit, and as a long listing goes on.
    let progress = ctx.progress.clone();
    lifecycle.on_planned(move |_, tasks, bytes| {
        Progress::add(&progress.tasks_total, tasks);
        Progress::add(&progress.bytes_total, bytes);
    });
    let submitted = lifecycle.submit(spec, false).await.map_err(|e| match e {
        SubmitError::Invalid(e) | SubmitError::Precondition(e) => e,
        other => zoopipe_common::Error::config(other.to_string()),
    })?;
    let job_id = submitted.job_id;
    tracing::info!(job = %job_id, tasks = submitted.tasks, "planned");
    let runners: Vec<_> = (0..options.workers.max(1))
        .map(|_| tokio::spawn(run_tasks(lifecycle.clone(), ctx.clone(), job_id.clone())))
        .collect();
    let watcher = tokio::spawn(cancel_on_request(
        lifecycle.clone(),
        options.interrupt.clone(),
        ctx.clone(),
        job_id.clone(),
    ));
    let report = lifecycle.wait_ended(&job_id).await;
    watcher.abort();
    // Runners still busy belong to a job that ended (failed or cancelled): stop them.
    ctx.cancel.store(true, Ordering::Relaxed);
    for runner in runners {
        let _ = runner.await;
    }
    // Stopped attempts abort their uploads in the background: let that finish before exit.
    zoopipe_common::storage::wait_for_aborts(Duration::from_secs(30)).await;
    report.ok_or_else(|| zoopipe_common::Error::config("the job vanished from its own table"))
}

/// One local slot: take a task, run it, report how it went; until the job ends.
async fn run_tasks(lifecycle: Arc<Lifecycle>, ctx: TaskContext, job_id: String) {
    loop {
        let waiting = lifecycle.work_notified();
        let assignments = match lifecycle.take_tasks(LOCAL, 0, 1).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a task");
                Vec::new()
            }
        };
        if assignments.is_empty() {
            if lifecycle
                .report(&job_id)
                .await
                .is_none_or(|r| r.state.ended())
            {
                return;
            }
            // Woken when a task is requeued, a backoff ends or the job ends.
            let _ = tokio::time::timeout(Duration::from_secs(1), waiting).await;
            continue;
        }
        for assignment in assignments {
            let index = assignment.task.index;
            match attempt(ctx.clone(), &assignment, || false).await {
                AttemptOutcome::Completed(result) => {
                    if let Err(e) = lifecycle.complete(&job_id, assignment.token, *result).await {
                        tracing::warn!(error = %e, "cannot record a result");
                    }
                    Progress::add(&ctx.progress.tasks_done, 1);
                }
                AttemptOutcome::Failed { kind, error } => {
                    let failed = lifecycle
                        .fail(&job_id, index, assignment.token, kind, error.to_string())
                        .await;
                    if let Err(e) = failed {
                        tracing::warn!(error = %e, "cannot record a failed attempt");
                    }
                }
            }
        }
    }
}

/// An interrupt cancels the job through the lifecycle first (so it ends as cancelled, with
/// nothing committed), then stops the running tasks.
async fn cancel_on_request(
    lifecycle: Arc<Lifecycle>,
    interrupt: Arc<AtomicBool>,
    ctx: TaskContext,
    job_id: String,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if interrupt.load(Ordering::Relaxed) {
            if let Err(e) = lifecycle.cancel(&job_id).await {
                tracing::warn!(error = %e, "cannot cancel");
            }
            ctx.cancel.store(true, Ordering::Relaxed);
            return;
        }
    }
}
