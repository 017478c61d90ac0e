//! `process(task)`: one attempt of one task, start to finish, and `TaskContext`, what it needs
//! from its surroundings.

use super::batch::{count_errors, route};
use super::errors::ErrorSink;
use super::prefetch::Prefetch;
use super::progress::Progress;
use super::source::read_split;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::runtime::Handle;
use zoopipe_common::format::write::PartWriter;
use zoopipe_common::plan::Task;
use zoopipe_common::report::{PartInfo, TaskResult};
use zoopipe_common::spec::JobConfig;
use zoopipe_common::storage::{ReadCounter, StagedWriter, Storage};
use zoopipe_common::{Error, Result};

/// What a task needs from its surroundings.
#[derive(Clone)]
pub struct TaskContext {
    pub storage: Storage,
    pub runtime: Handle,
    pub progress: Arc<Progress>,
    /// Set to stop every running task at its next batch.
    pub cancel: Arc<AtomicBool>,
    /// Pause after each batch (`common::fault::batch_delay`; zero unless asked for).
    pub batch_delay: std::time::Duration,
    /// Multipart uploads the task opened, as (url, upload id): fleet workers report them in
    /// heartbeats so the coordinator can abort them should this process die.
    pub opened: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// Woken when an upload opens, so the fleet worker reports it at once rather than at the
    /// next regular heartbeat (a worker killed in between would leave it unknown).
    pub upload_opened: Arc<tokio::sync::Notify>,
    /// Where a task whose byte range does not start its file asks for its line offset (see
    /// `task::errors`); `None`: its error rows are always renumbered at commit.
    pub line_offsets: Option<LineOffsets>,
}

/// `(job id, task index)` → the lines of the file before the task's first range, once every
/// range before it is counted (`Lifecycle::line_offset`; over gRPC for fleet workers).
pub type LineOffsets =
    Arc<dyn Fn(String, u32) -> futures::future::BoxFuture<'static, LineOffset> + Send + Sync>;

/// An answer to "which line does my range start after?".
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LineOffset {
    Known(u64),
    /// The ranges before it are not all counted yet.
    NotYet,
    /// Nobody will say (a coordinator without the call): renumber at commit.
    Never,
}

impl From<Option<u64>> for LineOffset {
    fn from(known: Option<u64>) -> Self {
        known.map_or(LineOffset::NotYet, LineOffset::Known)
    }
}

impl TaskContext {
    /// A context on the current runtime with fresh counters and no cancellation.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            runtime: Handle::current(),
            progress: Arc::new(Progress::default()),
            cancel: Arc::new(AtomicBool::new(false)),
            batch_delay: zoopipe_common::fault::batch_delay(),
            opened: Default::default(),
            upload_opened: Default::default(),
            line_offsets: None,
        }
    }

    pub(super) fn opened(&self, sink: &StagedWriter) {
        if let (Some(upload), Ok(mut opened)) = (sink.open_upload(), self.opened.lock()) {
            opened.push(upload);
            self.upload_opened.notify_one();
        }
    }
}

/// Discard an attempt's unpublished parts (a failed job, or a superseded attempt).
pub async fn discard(storage: &Storage, result: &TaskResult) {
    for staged in result.staged() {
        if let Err(e) = staged.discard(storage).await {
            tracing::warn!(url = staged.url(), error = %e, "could not discard a staged part");
        }
    }
}

/// Run `process` on a blocking thread (parsing and encoding are CPU-bound).
pub async fn process(
    ctx: TaskContext,
    job: Arc<JobConfig>,
    task: Task,
    attempt: u32,
) -> Result<TaskResult> {
    tokio::task::spawn_blocking(move || process_blocking(&ctx, &job, &task, attempt))
        .await
        .map_err(|e| Error::Io {
            context: format!("task {}", task_index_of(&e)),
            source: std::io::Error::other(e.to_string()),
        })?
}

fn task_index_of(e: &tokio::task::JoinError) -> String {
    if e.is_panic() {
        "panicked".into()
    } else {
        "was cancelled".into()
    }
}

pub fn process_blocking(
    ctx: &TaskContext,
    job: &JobConfig,
    task: &Task,
    attempt: u32,
) -> Result<TaskResult> {
    let started = Instant::now();
    if zoopipe_common::fault::fail_task(task.index) {
        return Err(Error::Transient {
            url: format!("task {}", task.index),
            message: "ZOOPIPE_FAULT_FAIL_TASK: this task always fails".into(),
        });
    }
    let schema = job
        .schema
        .clone()
        .ok_or_else(|| Error::config("the job has no schema: plan it first"))?;
    let out_url = job.output.part_url(&job.job_id, task.index);
    let sink = StagedWriter::start(&ctx.runtime, &ctx.storage, &out_url)?;
    ctx.opened(&sink);
    let mut output = PartWriter::new(
        job.output.format,
        schema.arrow_schema(),
        sink,
        &job.spec.write,
    )?;
    let mut errors = ErrorSink::new(ctx, job, task);
    let mut result = TaskResult {
        index: task.index,
        attempt,
        ..TaskResult::default()
    };
    let counter = ReadCounter::default();
    let mut reported_bytes = 0;
    let mut on_batch = |batch| -> Result<()> {
        if ctx.cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        if !ctx.batch_delay.is_zero() {
            std::thread::sleep(ctx.batch_delay);
        }
        let routed = route(&schema, batch)?;
        if routed.valid.num_rows() > 0 {
            output.write(&routed.valid)?;
        }
        result.rows_read += routed.rows_read;
        result.rows_valid += routed.valid.num_rows() as u64;
        let invalid = routed.errors.len() as u64;
        result.rows_invalid += invalid;
        if !routed.errors.is_empty() {
            count_errors(
                &routed.errors,
                &mut result.errors_by_field,
                &mut result.errors_by_type,
            );
            errors.write(routed.errors)?;
        }
        Progress::add(&ctx.progress.rows_read, routed.rows_read);
        Progress::add(&ctx.progress.rows_invalid, invalid);
        let bytes = counter.load(Ordering::Relaxed);
        Progress::add(&ctx.progress.bytes_read, bytes - reported_bytes);
        reported_bytes = bytes;
        Ok(())
    };
    let mut prefetch = Prefetch::new(
        &task.splits,
        job.spec.partition_size,
        ctx.storage.clone(),
        ctx.runtime.clone(),
        counter.clone(),
    );
    for (i, split) in task.splits.iter().enumerate() {
        let fetched = prefetch.take(i).transpose()?;
        if let Some(range) = read_split(ctx, job, split, fetched, &counter, &mut on_batch)? {
            result.ranges.push(range);
        }
    }
    drop(prefetch);
    let bytes = counter.load(Ordering::Relaxed);
    Progress::add(&ctx.progress.bytes_read, bytes - reported_bytes);
    // Error rows first: they may still wait for their line offset, and a task stopped then
    // must not leave a finished output part that nobody discards (an unfinished writer aborts
    // its upload when dropped).
    let written = errors.finish(started)?;
    let output = match output.finish() {
        Ok(staged) => PartInfo::new(staged, result.rows_valid),
        Err(e) => {
            if let Some(part) = &written.part
                && let Err(discarded) = ctx.runtime.block_on(part.staged.discard(&ctx.storage))
            {
                tracing::warn!(url = part.url, error = %discarded, "could not discard an error part");
            }
            return Err(e);
        }
    };
    result.error_lines_relative = written.lines_relative;
    let errors = written.part;
    result.bytes_read = bytes;
    result.bytes_written = output.bytes + errors.as_ref().map_or(0, |e| e.bytes);
    result.duration_s = started.elapsed().as_secs_f64();
    result.output = Some(output);
    result.error_part = errors;
    Ok(result)
}
