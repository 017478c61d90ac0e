//! Live counters shared between running tasks and whoever shows progress.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Progress {
    pub rows_read: AtomicU64,
    pub rows_invalid: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Input bytes the plan covers (the bar's length).
    pub bytes_total: AtomicU64,
    pub tasks_total: AtomicU64,
    pub tasks_done: AtomicU64,
    /// Every task has run and the job is committing (publishing parts, writing the manifest).
    pub committing: std::sync::atomic::AtomicBool,
}

impl Progress {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
