//! The control plane: turn a job into tasks, run them (retrying what can be retried), check
//! that byte ranges met at record boundaries, and commit exactly one part per task.
//!
//! The embedded mode (`zoopipectl run`) uses this crate with in-process workers; the fleet
//! coordinator will drive the same scheduler and commit with remote workers and etcd state.

pub mod commit;
pub mod fleet;
mod merge;
pub mod runner;
pub mod scheduler;
pub mod state;

pub use runner::{RunOptions, new_job_id, run_job};
