//! A task's small whole objects fetched ahead, a few at a time, while the earlier ones are
//! parsed: thousands of 4 KB objects cost a request's latency each, and one after the other
//! that latency, not parsing, would set the pace. Objects are still read (and so written) in
//! the task's order; only their GETs overlap. Each GET is pinned like any other read.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use tokio::task::JoinHandle;
use zoopipe_common::format::Format;
use zoopipe_common::plan::{SMALL_OBJECT, Split, SplitKind, split_url};
use zoopipe_common::storage::{ReadCounter, Storage, get_pinned};
use zoopipe_common::{Error, Result};

/// How far ahead: this many objects, and at most this many bytes, are in flight or waiting.
/// A real store answers a small GET in 20-50 ms, so the window, not parsing, sets the pace:
/// behind a 25 ms proxy on loopback, 10,000 objects of 4 KB took 11.5 s with 16 ahead and
/// 6.4 s with 64 (then the CPUs were busy).
const AHEAD_OBJECTS: usize = 64;
const AHEAD_BYTES: u64 = 32 * 1024 * 1024;

pub struct Prefetch<'t> {
    splits: &'t [Split],
    /// Parquet/Arrow objects up to this size are whole files (one split), see `small_whole`.
    whole_file: u64,
    storage: Storage,
    runtime: tokio::runtime::Handle,
    counter: ReadCounter,
    /// Fetches started, by split index, in order.
    pending: VecDeque<(usize, u64, JoinHandle<Result<Bytes>>)>,
    /// The next split index to consider starting.
    next: usize,
}

impl<'t> Prefetch<'t> {
    /// `partition_size`: the job's; planning never cuts a Parquet or Arrow file up to that
    /// size into several splits.
    pub fn new(
        splits: &'t [Split],
        partition_size: u64,
        storage: Storage,
        runtime: tokio::runtime::Handle,
        counter: ReadCounter,
    ) -> Self {
        Self {
            splits,
            whole_file: partition_size.min(SMALL_OBJECT),
            storage,
            runtime,
            counter,
            pending: VecDeque::new(),
            next: 0,
        }
    }

    /// The whole content of split `index` when it is one of the small objects fetched ahead;
    /// `None`: read it the usual way. Starts the fetches that follow it.
    pub fn take(&mut self, index: usize) -> Option<Result<Bytes>> {
        self.next = self.next.max(index);
        self.fill(index);
        match self.pending.front() {
            Some((i, _, _)) if *i == index => {}
            _ => return None,
        }
        let (_, _, handle) = self.pending.pop_front()?;
        self.fill(index + 1);
        let fetched = self.runtime.block_on(handle).unwrap_or_else(|e| {
            Err(Error::Io {
                context: format!("fetching {}", self.splits[index].url),
                source: std::io::Error::other(e.to_string()),
            })
        });
        if let Ok(bytes) = &fetched {
            self.counter
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        Some(fetched)
    }

    /// Start fetches from `from` (the split being read now) on while the window has room.
    fn fill(&mut self, from: usize) {
        self.next = self.next.max(from);
        while self.next < self.splits.len() && self.pending.len() < AHEAD_OBJECTS {
            let split = &self.splits[self.next];
            if !small_whole(split, self.whole_file) {
                if self.next == from {
                    // Streamed now: the window may run past it.
                    self.next += 1;
                    continue;
                }
                // Streamed at its turn: nothing past it is fetched before then.
                break;
            }
            let ahead: u64 = self.pending.iter().map(|(_, size, _)| size).sum();
            if !self.pending.is_empty() && ahead + split.size > AHEAD_BYTES {
                break;
            }
            let handle = self.spawn(split);
            self.pending.push_back((self.next, split.size, handle));
            self.next += 1;
        }
    }

    fn spawn(&self, split: &Split) -> JoinHandle<Result<Bytes>> {
        let (storage, split) = (self.storage.clone(), split.clone());
        self.runtime.spawn(async move {
            let url = split_url(&split)?;
            let store = storage.store(&url)?;
            get_pinned(store.as_ref(), &url.path(), 0..split.size, &split.pin)
                .await
                .map_err(|e| Error::from_store(&split.url, e))
        })
    }
}

impl Drop for Prefetch<'_> {
    fn drop(&mut self) {
        for (_, _, handle) in self.pending.drain(..) {
            handle.abort();
        }
    }
}

/// A whole object small enough to hold in memory: CSV/JSONL read whole, or a Parquet or
/// Arrow file no bigger than `whole_file` (planning keeps such a file in one split, so its
/// split reads all of it).
fn small_whole(split: &Split, whole_file: u64) -> bool {
    let limit = match (split.format, &split.kind) {
        (Format::Csv | Format::Jsonl, SplitKind::Whole) => SMALL_OBJECT,
        (Format::Parquet, SplitKind::RowGroups { start: 0, .. })
        | (Format::Arrow, SplitKind::Batches { start: 0, .. }) => whole_file,
        _ => 0,
    };
    split.size > 0 && split.size <= limit
}
