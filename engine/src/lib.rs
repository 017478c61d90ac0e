//! The job engine, shared by every binary: task execution (`task`, the data plane), the one
//! job lifecycle (`lifecycle`: plan, hand out, retry, re-read, gate, commit, report) over a
//! `JobStore`, the commit itself (`commit`, `merge`), the embedded runner of `zoopipectl run`
//! (`embedded`), the operations port both fleet binaries serve (`ops`), and the flags more than
//! one binary takes (`args`).

pub mod alloc;
pub mod args;
pub mod commit;
pub mod embedded;
pub mod lifecycle;
mod merge;
mod merge_copy;
pub mod ops;
pub mod ownership;
pub mod task;

pub use embedded::{RunOptions, run_job};
pub use lifecycle::new_job_id;
