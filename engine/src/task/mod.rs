//! Task execution, the data plane: one attempt of one task reads only its splits (ranged
//! GETs), validates, and streams one output part and at most one error part, left staged
//! (invisible) for the commit. The fleet worker and the embedded runner both call `attempt`.

mod batch;
mod errors;
mod prefetch;
mod process;
mod progress;
mod source;

pub use process::{LineOffset, LineOffsets, TaskContext, discard, process, process_blocking};
pub use progress::Progress;

use crate::lifecycle::{Assignment, FailureKind};
use tracing::Instrument;
use zoopipe_common::Error;
use zoopipe_common::report::TaskResult;

/// How one attempt ended.
pub enum AttemptOutcome {
    Completed(Box<TaskResult>),
    Failed { kind: FailureKind, error: Error },
}

/// Run one assigned attempt in a `task` span (a child of the job's trace), and classify how it
/// ended. `handing_back`: the runner is shutting down, so a cancelled attempt is given back
/// rather than failed.
pub async fn attempt(
    ctx: TaskContext,
    assignment: &Assignment,
    handing_back: impl Fn() -> bool,
) -> AttemptOutcome {
    let span = tracing::info_span!(
        "task",
        job = assignment.job_id.as_str(),
        index = assignment.task.index,
        attempt = assignment.attempt
    );
    if let Some(parent) = &assignment.config.spec.trace_parent {
        zoopipe_common::logging::set_parent(&span, parent);
    }
    let outcome = process(
        ctx,
        assignment.config.clone(),
        assignment.task.clone(),
        assignment.attempt,
    )
    .instrument(span)
    .await;
    match outcome {
        Ok(result) => AttemptOutcome::Completed(Box::new(result)),
        Err(Error::Cancelled) if handing_back() => AttemptOutcome::Failed {
            kind: FailureKind::HandedBack,
            error: Error::Cancelled,
        },
        Err(error) => AttemptOutcome::Failed {
            kind: FailureKind::of(&error),
            error,
        },
    }
}
