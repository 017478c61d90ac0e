//! The embedded mode end to end: check the output, plan, run the tasks on local slots, re-read
//! files whose ranges did not line up, commit, report.

use crate::commit::{
    check_inputs_outside_output, check_output_free, commit, error_rate_exceeded, write_report,
};
use crate::scheduler::{Failed, Outcomes, run_tasks};
use chrono::Utc;
use std::sync::Arc;
use std::time::Instant;
use zoopipe_common::plan::{Plan, Split, SplitKind, Task, misaligned_files, plan_job};
use zoopipe_common::report::{JobReport, JobState};
use zoopipe_common::spec::{JobConfig, JobSpec};
use zoopipe_common::{Error, Result};
use zoopipe_worker::{Progress, WorkerContext, discard};

#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Tasks run at once.
    pub workers: usize,
}

pub fn new_job_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", Utc::now().format("%Y%m%d-%H%M%S"), &id[..8])
}

/// Run a job on this machine. `Err` means it could not start (bad spec, schema, input or
/// output); a job that started always returns its report, whose `state` says how it ended.
pub async fn run_job(ctx: WorkerContext, spec: JobSpec, options: RunOptions) -> Result<JobReport> {
    let started = Instant::now();
    let started_at = Utc::now().to_rfc3339();
    let mut job = JobConfig::new(new_job_id(), spec)?;
    check_output_free(&ctx.storage, &job).await?;
    let plan = plan_job(&ctx.storage, &mut job).await?;
    check_inputs_outside_output(&job, &plan.inputs)?;
    let job = Arc::new(job);
    let mut report = JobReport::new(&job.job_id);
    report.started_at = started_at;
    report.inputs = plan.inputs.iter().map(|i| i.url.to_string()).collect();
    report.partitions.total = plan.tasks.len() as u64;
    report.state = JobState::Running;
    Progress::add(&ctx.progress.tasks_total, plan.tasks.len() as u64);
    Progress::add(
        &ctx.progress.bytes_total,
        plan.inputs.iter().map(|i| i.size).sum(),
    );
    tracing::info!(job = %job.job_id, tasks = plan.tasks.len(), inputs = plan.inputs.len(), "planned");

    let finish = |mut report: JobReport| {
        report.duration_s = started.elapsed().as_secs_f64();
        report.items_per_second = if report.duration_s > 0.0 {
            report.total_processed as f64 / report.duration_s
        } else {
            0.0
        };
        report.finished_at = Utc::now().to_rfc3339();
        report
    };

    let outcomes = match run_all(&ctx, &job, &plan, options.workers).await {
        Ok(outcomes) => outcomes,
        Err(failed) => {
            let message = match failed.task {
                Some(task) => format!("task {task} failed: {}", failed.error),
                None => failed.error.to_string(),
            };
            for result in failed.finished.values() {
                discard(&ctx.storage, result).await;
            }
            report.state = if matches!(failed.error, Error::Cancelled) {
                JobState::Cancelled
            } else {
                JobState::Failed
            };
            report.partitions.failed = 1;
            report.message = Some(message);
            let report = finish(report);
            write_report(&ctx.storage, &job, &report).await.ok();
            return Ok(report);
        }
    };
    if let Some(message) = error_rate_exceeded(&job, &outcomes) {
        for result in outcomes.values() {
            report.add(result);
            discard(&ctx.storage, result).await;
        }
        report.state = JobState::Failed;
        report.partitions.succeeded = outcomes.len() as u64;
        report.message = Some(message);
        let report = finish(report);
        write_report(&ctx.storage, &job, &report).await.ok();
        return Ok(report);
    }
    // Re-read files replace their ranges' tasks: count what actually ran.
    report.partitions.total = outcomes.len() as u64;
    report.state = JobState::Committing;
    let mut report = match commit(&ctx, &job, outcomes, report).await {
        Ok(report) => report,
        Err((e, mut report)) => {
            report.state = JobState::Failed;
            report.message = Some(format!("commit failed: {e}"));
            let report = finish(report);
            write_report(&ctx.storage, &job, &report).await.ok();
            return Ok(report);
        }
    };
    report.state = JobState::Succeeded;
    let report = finish(report);
    crate::commit::publish(&ctx.storage, &job, &report).await?;
    Ok(report)
}

/// Run every task; then re-read whole any CSV whose byte ranges did not meet at record
/// boundaries (quoted newlines across a split) and replace those ranges' results.
async fn run_all(
    ctx: &WorkerContext,
    job: &Arc<JobConfig>,
    plan: &Plan,
    slots: usize,
) -> Result<Outcomes, Failed> {
    let mut outcomes = run_tasks(ctx, job.clone(), plan.tasks.clone(), slots).await?;
    let ranges: Vec<_> = outcomes.values().flat_map(|r| r.ranges.clone()).collect();
    let bad = misaligned_files(&ranges);
    if bad.is_empty() {
        return Ok(outcomes);
    }
    let mut rereads = Vec::new();
    for url in &bad {
        tracing::warn!(%url, "quoted newlines cross a partition boundary; reading the file whole");
        let owners: Vec<u32> = plan
            .tasks
            .iter()
            .filter(|t| t.splits.iter().any(|s| &s.url == url))
            .map(|t| t.index)
            .collect();
        let Some(first) = owners.first().and_then(|i| plan.tasks.get(*i as usize)) else {
            continue;
        };
        let template: &Split = &first.splits[0];
        for index in &owners {
            if let Some(result) = outcomes.remove(index) {
                discard(&ctx.storage, &result).await;
            }
        }
        rereads.push(Task {
            index: first.index,
            splits: vec![Split {
                kind: SplitKind::Whole,
                ..template.clone()
            }],
        });
    }
    let redone = run_tasks(ctx, job.clone(), rereads, slots)
        .await
        .map_err(|mut failed| {
            failed.finished.append(&mut outcomes);
            failed
        })?;
    outcomes.extend(redone);
    Ok(outcomes)
}
