//! The control plane: turn a job into tasks, run them (retrying what can be retried), check
//! that byte ranges met at record boundaries, and commit exactly one part per task.
//!
//! The embedded mode (`zoopipectl run`) uses this crate with in-process workers; the fleet
//! coordinator (`fleet`) plans, leases and commits with the same code over etcd state, with one
//! elected leader among its replicas (`leader`).

pub mod api;
pub mod auth;
pub mod commit;
pub mod fleet;
pub mod flight;
pub(crate) mod forward;
pub mod leader;
mod merge;
mod merge_copy;
pub mod ops;
pub mod runner;
pub mod scheduler;
pub mod state;
pub mod tls;

pub use runner::{RunOptions, new_job_id, run_job};
