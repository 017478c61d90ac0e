//! Where a task's error rows go. Their line numbers must be the file's: a range that does not
//! start its file learns its first line only once the ranges before it are counted (by other
//! tasks, usually finishing about now). So such a task holds its error rows back (column-wise,
//! up to `HOLD_LIMIT`), asks for its line offset (`TaskContext::line_offsets`) and writes them
//! numbered, in their final part: nothing is rewritten at commit. Only when the offset is not
//! known in time (the limit is reached, or the ranges before are still running when it ends)
//! do they go to a staged part with range-relative numbers, which the commit renumbers.

use super::process::{LineOffset, TaskContext};
use std::time::{Duration, Instant};
use zoopipe_common::errors_out::{ErrorRows, ErrorWriter};
use zoopipe_common::format::Format;
use zoopipe_common::plan::{SplitKind, Task};
use zoopipe_common::report::PartInfo;
use zoopipe_common::spec::JobConfig;
use zoopipe_common::storage::{ObjectUrl, StagedWriter};
use zoopipe_common::{Error, Result};

/// Error rows one task may hold back while its line offset is unknown: about what its input
/// holds (a partition, within these bounds).
const HOLD_LIMIT: (u64, u64) = (16 << 20, 256 << 20);
/// Rows per row group of a staged Parquet error part.
const STAGED_ROW_GROUP: usize = 32 * 1024;
/// How often a finished task asks for its offset while waiting: first, and at the most.
const POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_millis(800);

enum State {
    /// The line offset is not known yet.
    Holding { held: Vec<ErrorRows>, bytes: usize },
    /// Writing (or about to write, on the first row) with these line numbers.
    Writing {
        writer: Option<ErrorWriter>,
        offset: u64,
        /// Range-relative numbers in a staged part: the commit renumbers them.
        relative: bool,
    },
}

pub struct ErrorSink<'a> {
    ctx: &'a TaskContext,
    job: &'a JobConfig,
    task: &'a Task,
    state: State,
    /// Rows held back, to write once the state is `Writing`.
    pending: Vec<ErrorRows>,
    rows: u64,
}

/// How the task's error rows ended up.
pub struct ErrorsWritten {
    pub part: Option<PartInfo>,
    /// Whether their line numbers still need the commit's offset.
    pub lines_relative: bool,
}

impl<'a> ErrorSink<'a> {
    pub fn new(ctx: &'a TaskContext, job: &'a JobConfig, task: &'a Task) -> Self {
        let state = if !lines_relative(task) {
            State::Writing {
                writer: None,
                offset: 0,
                relative: false,
            }
        } else if job.errors.single_file || ctx.line_offsets.is_none() {
            // One errors object is assembled at commit anyway: renumber there.
            State::Writing {
                writer: None,
                offset: 0,
                relative: true,
            }
        } else {
            State::Holding {
                held: Vec::new(),
                bytes: 0,
            }
        };
        Self {
            ctx,
            job,
            task,
            state,
            pending: Vec::new(),
            rows: 0,
        }
    }

    pub fn write(&mut self, rows: ErrorRows) -> Result<()> {
        if self.rows == 0 {
            // The first error rows: the ranges before are often counted already (this task
            // started when one ended). A task without error rows never asks.
            self.settle(Duration::ZERO, false);
        }
        self.rows += rows.len() as u64;
        if let State::Holding { held, bytes } = &mut self.state {
            *bytes += rows.memory_size();
            held.push(rows);
            if *bytes as u64
                > self
                    .job
                    .spec
                    .partition_size
                    .clamp(HOLD_LIMIT.0, HOLD_LIMIT.1)
            {
                self.settle(Duration::ZERO, true);
            }
            return self.flush();
        }
        self.write_now(&rows)
    }

    fn write_now(&mut self, rows: &ErrorRows) -> Result<()> {
        match &mut self.state {
            State::Holding { .. } => Err(Error::config(
                "internal: error rows written before their line offset was settled",
            )),
            State::Writing {
                writer,
                offset,
                relative,
            } => {
                let w = match writer {
                    Some(w) => w,
                    None => writer.insert(open(self.ctx, self.job, self.task, *relative)?),
                };
                w.write_rows(rows, *offset)
            }
        }
    }

    /// Write the rows held back, once the state is `Writing`.
    fn flush(&mut self) -> Result<()> {
        if matches!(self.state, State::Writing { .. }) {
            for rows in std::mem::take(&mut self.pending) {
                self.write_now(&rows)?;
            }
        }
        Ok(())
    }

    /// Finish the part. A task still holding rows waits a little for its offset (the task
    /// before it is usually finishing too): at most a fifth of the time it ran, 0.2–20 s.
    pub fn finish(mut self, started: Instant) -> Result<ErrorsWritten> {
        if let State::Holding { held, .. } = &self.state {
            if held.is_empty() {
                // Nothing to number: no part, and no reason to wait.
                return Ok(ErrorsWritten {
                    part: None,
                    lines_relative: false,
                });
            }
            let patience = started
                .elapsed()
                .div_f64(5.0)
                .clamp(Duration::from_millis(200), Duration::from_secs(20));
            self.settle(patience, true);
            if self.cancelled() {
                return Err(Error::Cancelled);
            }
        }
        self.flush()?;
        let State::Writing {
            writer, relative, ..
        } = self.state
        else {
            return Err(Error::config(
                "internal: error rows still held back at the end of the task",
            ));
        };
        let part = match writer {
            Some(w) => Some(PartInfo::new(w.finish()?, self.rows)),
            None => None,
        };
        Ok(ErrorsWritten {
            part,
            lines_relative: relative,
        })
    }

    /// Ask for the line offset (for up to `wait`); once known, write with it. `give_up`: if
    /// it is still unknown, fall back to range-relative numbers.
    fn settle(&mut self, wait: Duration, give_up: bool) {
        if !matches!(self.state, State::Holding { .. }) {
            return;
        }
        let offset = self.line_offset(wait);
        if offset.is_none() && !give_up {
            return;
        }
        if let State::Holding { held, .. } = &mut self.state {
            self.pending = std::mem::take(held);
        }
        match offset {
            Some(lines) => tracing::debug!(task = self.task.index, lines, "line offset known"),
            None => tracing::info!(
                task = self.task.index,
                "the ranges before this task are not counted yet: its error rows are renumbered at commit"
            ),
        }
        self.state = State::Writing {
            writer: None,
            offset: offset.unwrap_or(0),
            relative: offset.is_none(),
        };
    }

    /// The task's line offset, asked for until known or `wait` has passed (less often the
    /// longer it waits).
    fn line_offset(&self, wait: Duration) -> Option<u64> {
        let lookup = self.ctx.line_offsets.as_ref()?;
        if zoopipe_common::fault::unanswered("line-offset") {
            return None;
        }
        let deadline = Instant::now() + wait;
        let mut pause = POLL;
        loop {
            let answer = self
                .ctx
                .runtime
                .block_on(lookup(self.job.job_id.clone(), self.task.index));
            match answer {
                LineOffset::Known(lines) => return Some(lines),
                LineOffset::Never => return None,
                LineOffset::NotYet => {}
            }
            if Instant::now() >= deadline || self.cancelled() {
                return None;
            }
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    fn cancelled(&self) -> bool {
        self.ctx.cancel.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Whether a task's line numbers depend on ranges before it (a byte range not at its file's
/// start).
pub fn lines_relative(task: &Task) -> bool {
    task.splits
        .iter()
        .any(|s| matches!(s.kind, SplitKind::Bytes { start, .. } if start > 0))
}

/// Open the task's error part: its final part, or (numbers relative, or one errors object to
/// assemble) a part in the job's staging prefix for the commit.
fn open(ctx: &TaskContext, job: &JobConfig, task: &Task, relative: bool) -> Result<ErrorWriter> {
    let mut options = job.spec.write.clone();
    let (url, format): (ObjectUrl, Format) = if relative || job.errors.single_file {
        // Staged as JSONL (renumbered in its text at commit), or in the target's format when
        // that is columnar: its `line` column is then moved on by one kernel, where JSONL
        // read back into Parquet cost a JSON parse per row.
        let format = match job.errors.format {
            Format::Parquet | Format::Arrow => job.errors.format,
            _ => Format::Jsonl,
        };
        let url = job.errors.staging(&job.job_id).join(&format!(
            "errors-{:05}.{}",
            task.index,
            format.extension()
        ));
        // Read back a row group at a time at commit (error rows are wide): keep those small.
        options.row_group_size = options.row_group_size.min(STAGED_ROW_GROUP);
        (url, format)
    } else {
        (
            job.errors.part_url(&job.job_id, task.index),
            job.errors.format,
        )
    };
    let sink = StagedWriter::start(&ctx.runtime, &ctx.storage, &url)?;
    ctx.opened(&sink);
    ErrorWriter::new(format, sink, &options)
}
