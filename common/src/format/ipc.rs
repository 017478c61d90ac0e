//! Arrow IPC file input by record batches: the footer lists every batch's byte block, so a
//! task fetches exactly its blocks (plus the dictionaries) with ranged GETs.

use super::SourceBatch;
use crate::storage::{ObjectUrl, Pin, ReadCounter, get_pinned};
use crate::{Error, Result};
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::{
    Block, MetadataVersion, convert::try_fb_to_schema, root_as_footer, root_as_message,
};
use object_store::{ObjectStore, path::Path};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::runtime::Handle;

/// What the footer says: schema, dictionary blocks and record batch blocks.
pub struct IpcFooter {
    pub schema: SchemaRef,
    version: MetadataVersion,
    dictionaries: Vec<Block>,
    pub batches: Vec<Block>,
}

fn block_range(block: &Block) -> Range<u64> {
    let start = block.offset().max(0) as u64;
    start..start + block.metaDataLength().max(0) as u64 + block.bodyLength().max(0) as u64
}

/// Bytes of one block, for planning.
pub fn block_len(block: &Block) -> u64 {
    let r = block_range(block);
    r.end - r.start
}

fn bad(url: &str, e: impl std::fmt::Display) -> Error {
    Error::corrupt(url, format!("not a readable Arrow IPC file: {e}"))
}

async fn fetch(
    store: &dyn ObjectStore,
    path: &Path,
    url: &str,
    range: Range<u64>,
    counter: &ReadCounter,
    pin: &Pin,
) -> Result<bytes::Bytes> {
    let bytes = get_pinned(store, path, range, pin)
        .await
        .map_err(|e| Error::from_store(url, e))?;
    counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(bytes)
}

pub async fn read_footer(
    store: &dyn ObjectStore,
    url: &ObjectUrl,
    size: u64,
    counter: &ReadCounter,
    pin: &Pin,
) -> Result<IpcFooter> {
    let (path, name) = (url.path(), url.to_string());
    if size < 18 {
        return Err(bad(&name, "file too short"));
    }
    let tail = fetch(store, &path, &name, size - 10..size, counter, pin).await?;
    let tail: [u8; 10] = tail[..].try_into().map_err(|_| bad(&name, "short read"))?;
    let footer_len = match read_footer_length(tail) {
        Ok(len) => len as u64,
        Err(e) => {
            // The stream format (`.arrows`) has no footer: say so rather than "corrupt".
            let head = fetch(store, &path, &name, 0..8, counter, pin).await?;
            if head.starts_with(&[0xFF, 0xFF, 0xFF, 0xFF]) {
                return Err(Error::config(format!(
                    "{name}: an Arrow IPC stream, not the Arrow IPC file format this reads (its \
                     record batches are found through the file's footer): write it with \
                     pyarrow.ipc.new_file, or convert it to Parquet"
                )));
            }
            return Err(bad(&name, e));
        }
    };
    if footer_len + 10 > size {
        return Err(bad(&name, "footer length exceeds the file"));
    }
    let footer_bytes = fetch(
        store,
        &path,
        &name,
        size - 10 - footer_len..size - 10,
        counter,
        pin,
    )
    .await?;
    let footer = root_as_footer(&footer_bytes).map_err(|e| bad(&name, e))?;
    let schema = footer
        .schema()
        .ok_or_else(|| bad(&name, "footer has no schema"))?;
    // Its buffers would be read as little-endian values: wrong numbers, silently.
    if schema.endianness() == arrow::ipc::Endianness::Big {
        return Err(Error::config(format!(
            "{name}: a big-endian Arrow IPC file, which is not read (rewrite it little-endian, \
             e.g. pyarrow.ipc.new_file(...) on this machine)"
        )));
    }
    let footer = IpcFooter {
        schema: Arc::new(try_fb_to_schema(schema).map_err(|e| bad(&name, e))?),
        version: footer.version(),
        dictionaries: footer
            .dictionaries()
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default(),
        batches: footer
            .recordBatches()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default(),
    };
    // Blocks the footer places outside the data (before the footer) mean a corrupt file.
    let data_end = size - 10 - footer_len;
    let blocks = footer.dictionaries.iter().chain(&footer.batches);
    // Summed wide: huge fields must not wrap around into a range that looks inside.
    let end = |b: &Block| {
        i128::from(b.offset()) + i128::from(b.metaDataLength()) + i128::from(b.bodyLength())
    };
    if let Some(block) = blocks.into_iter().find(|b| {
        b.offset() < 0
            || b.metaDataLength() < 0
            || b.bodyLength() < 0
            || end(b) > i128::from(data_end)
    }) {
        return Err(bad(
            &name,
            format!(
                "its footer places a block at bytes {}..{}, outside the {data_end} bytes of data \
                 (a damaged or truncated file)",
                block.offset(),
                end(block)
            ),
        ));
    }
    Ok(footer)
}

/// Run arrow's IPC decoder, which can panic on damaged bytes instead of returning an error:
/// such a panic is the file's fault, reported as corrupt (never retried), without the panic
/// hook's noise.
fn decode_guarded<T>(
    name: &str,
    decode: impl FnOnce() -> std::result::Result<T, arrow::error::ArrowError>,
) -> Result<T> {
    match crate::quiet_panic::catch(decode) {
        Ok(result) => result.map_err(|e| bad(name, e)),
        Err(message) => Err(bad(name, format!("damaged data ({message})"))),
    }
}

/// Row count of every record batch, read from the message headers only (one coalesced fetch).
pub async fn batch_rows(
    store: &dyn ObjectStore,
    url: &ObjectUrl,
    footer: &IpcFooter,
    counter: &ReadCounter,
) -> Result<Vec<u64>> {
    let name = url.to_string();
    let ranges: Vec<Range<u64>> = footer
        .batches
        .iter()
        .map(|b| {
            let start = b.offset().max(0) as u64;
            start..start + b.metaDataLength().max(0) as u64
        })
        .collect();
    let headers = store
        .get_ranges(&url.path(), &ranges)
        .await
        .map_err(|e| Error::from_store(&name, e))?;
    headers
        .iter()
        .map(|h| {
            counter.fetch_add(h.len() as u64, Ordering::Relaxed);
            // Encapsulated message: optional 0xFFFFFFFF continuation, i32 length, flatbuffer.
            let body = if h.len() >= 8 && h[..4] == [0xff; 4] {
                &h[8..]
            } else {
                h.get(4..).unwrap_or(&[])
            };
            let message = root_as_message(body).map_err(|e| bad(&name, e))?;
            let batch = message
                .header_as_record_batch()
                .ok_or_else(|| bad(&name, "block is not a record batch"))?;
            Ok(batch.length().max(0) as u64)
        })
        .collect()
}

/// Reads a contiguous run of record batches of one file.
pub struct IpcRows {
    runtime: Handle,
    store: Arc<dyn ObjectStore>,
    path: Path,
    source: Arc<str>,
    decoder: FileDecoder,
    blocks: std::vec::IntoIter<Block>,
    next_row: u64,
    counter: ReadCounter,
    pin: Pin,
}

impl IpcRows {
    /// `first_row` is the file-wide index of the first row of batch `batches.start`.
    #[allow(clippy::too_many_arguments)] // where, which batches, and how to read: all needed
    pub fn open(
        runtime: &Handle,
        store: Arc<dyn ObjectStore>,
        url: &ObjectUrl,
        size: u64,
        batches: Range<usize>,
        first_row: u64,
        counter: ReadCounter,
        pin: &Pin,
    ) -> Result<Self> {
        let name = url.to_string();
        let footer = runtime.block_on(read_footer(store.as_ref(), url, size, &counter, pin))?;
        if batches.end > footer.batches.len() {
            return Err(bad(
                &name,
                format!(
                    "has {} record batches, the plan expected {}",
                    footer.batches.len(),
                    batches.end
                ),
            ));
        }
        let mut decoder = FileDecoder::new(footer.schema.clone(), footer.version);
        for block in &footer.dictionaries {
            let bytes = runtime.block_on(fetch(
                store.as_ref(),
                &url.path(),
                &name,
                block_range(block),
                &counter,
                pin,
            ))?;
            decode_guarded(&name, || {
                decoder.read_dictionary(block, &Buffer::from(bytes))
            })?;
        }
        let blocks: Vec<Block> = footer.batches[batches].to_vec();
        Ok(Self {
            runtime: runtime.clone(),
            store,
            path: url.path(),
            source: name.into(),
            decoder,
            blocks: blocks.into_iter(),
            next_row: first_row,
            counter,
            pin: pin.clone(),
        })
    }

    pub fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        let Some(block) = self.blocks.next() else {
            return Ok(None);
        };
        let bytes = self.runtime.block_on(fetch(
            self.store.as_ref(),
            &self.path,
            &self.source,
            block_range(&block),
            &self.counter,
            &self.pin,
        ))?;
        let decoder = &self.decoder;
        let batch = decode_guarded(&self.source, || {
            decoder.read_record_batch(&block, &Buffer::from(bytes))
        })?
        .ok_or_else(|| bad(&self.source, "empty record batch block"))?;
        Ok(Some(SourceBatch::numbered(
            &self.source,
            batch,
            &mut self.next_row,
        )))
    }
}

impl crate::format::BatchSource for IpcRows {
    fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        Self::next_batch(self)
    }
}
