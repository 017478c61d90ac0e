//! ZooPipe Fleet data plane, shared by the embedded runner, the coordinator and the workers.
//!
//! Nothing here talks to etcd or serves gRPC: this crate turns URLs into object stores,
//! reads and writes the supported formats as Arrow record batches, compiles JSON Schema into
//! column-at-a-time validators, splits inputs into tasks, and defines the counters that add up
//! into a job report.

pub mod error;
pub mod errors_out;
pub mod fault;
pub mod format;
pub mod logging;
pub mod plan;
pub mod quiet_panic;
pub mod report;
pub mod schema;
pub mod spec;
pub mod spec_vars;
pub mod sql;
pub mod storage;
pub mod validate;

pub use error::{Error, Result};
