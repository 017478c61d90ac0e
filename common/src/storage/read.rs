//! A blocking `std::io::Read` over ranged GETs, for the parsers (csv, JSON, decompressors) that
//! run on a blocking thread. A background task fetches the next chunks while the parser works,
//! so network and CPU overlap; the channel bound keeps memory at a few chunks per reader.

use crate::{Error, Result};
use bytes::Bytes;
use object_store::{ObjectStore, path::Path};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Bytes fetched from storage, shared with progress reporting.
pub type ReadCounter = Arc<AtomicU64>;

/// Chunk size inside the planned range: large GETs amortise request cost.
const RANGE_CHUNK: u64 = 8 * 1024 * 1024;
/// Chunk size past the planned end, where only the tail of one record is needed.
const TAIL_CHUNK: u64 = 64 * 1024;
/// Chunks fetched ahead of the parser.
const READ_AHEAD: usize = 2;

pub struct ObjectReader {
    rx: mpsc::Receiver<Result<Bytes>>,
    current: Bytes,
}

impl ObjectReader {
    /// Read `[start, size)` of an object; bytes up to `soft_end` are fetched in large chunks,
    /// the rest (needed only to finish the last record) in small ones and only on demand.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        runtime: &Handle,
        store: Arc<dyn ObjectStore>,
        path: Path,
        url: String,
        start: u64,
        soft_end: u64,
        size: u64,
        counter: ReadCounter,
        pin: super::Pin,
    ) -> Self {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        runtime.spawn(async move {
            let mut offset = start;
            while offset < size {
                let chunk = if offset < soft_end {
                    RANGE_CHUNK.min(soft_end - offset)
                } else {
                    TAIL_CHUNK
                };
                let end = (offset + chunk).min(size);
                let result = super::get_pinned(store.as_ref(), &path, offset..end, &pin)
                    .await
                    .map_err(|e| Error::from_store(&url, e));
                let failed = result.is_err();
                if let Ok(bytes) = &result {
                    counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                // The parser stopped reading (dropped us): stop fetching.
                if tx.send(result).await.is_err() || failed {
                    break;
                }
                offset = end;
            }
        });
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
