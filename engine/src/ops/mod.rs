//! Health, readiness and metrics, shared by the worker and coordinator binaries.

pub mod http;
pub mod metrics;

pub use metrics::METRICS;
