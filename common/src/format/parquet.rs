//! Parquet input by row groups (ranged GETs through an `AsyncFileReader` over object_store),
//! footer inspection for the planner, and row-group concatenation for single-file outputs.

use super::SourceBatch;
use super::parquet_compat;
use crate::storage::{Pin, ReadCounter, get_pinned, get_ranges_pinned};
use crate::{Error, Result};
use bytes::Bytes;
use futures::{FutureExt, StreamExt, future::BoxFuture};
use object_store::{ObjectStore, path::Path};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    FooterTail, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader,
};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use parquet::file::writer::SerializedFileWriter;
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::runtime::Handle;

/// One Parquet object read through ranged GETs.
pub struct ObjectFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    url: String,
    size: u64,
    counter: ReadCounter,
    pin: Pin,
}

impl ObjectFile {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        url: &crate::storage::ObjectUrl,
        size: u64,
        counter: ReadCounter,
    ) -> Self {
        Self {
            store,
            path: url.path(),
            url: url.to_string(),
            size,
            counter,
            pin: Pin::default(),
        }
    }

    /// Read the object only as `pin` names it (see `storage::Pin`).
    pub fn pinned(mut self, pin: Pin) -> Self {
        self.pin = pin;
        self
    }

    fn wrap(&self, e: object_store::Error) -> ParquetError {
        ParquetError::External(Box::new(Error::from_store(&self.url, e)))
    }

    /// A range past the end of the file comes from corrupt metadata (a page or column chunk
    /// offset that lies): fatal at once, never retried as if storage had failed.
    fn check(&self, range: &Range<u64>) -> parquet::errors::Result<()> {
        if range.start > range.end || range.end > self.size {
            return Err(ParquetError::External(Box::new(Error::corrupt(
                &self.url,
                format!(
                    "corrupt metadata: bytes {}..{} asked for in a file of {} bytes",
                    range.start, range.end, self.size
                ),
            ))));
        }
        Ok(())
    }
}

impl ObjectFile {
    /// The footer's Thrift bytes (`FileMetaData`), read by their length in the last 8 bytes.
    async fn footer(&mut self) -> parquet::errors::Result<Bytes> {
        let tail_start = self
            .size
            .checked_sub(8)
            .ok_or_else(|| ParquetError::General("shorter than a Parquet footer".to_string()))?;
        let tail = self.get_bytes(tail_start..self.size).await?;
        let tail: [u8; 8] = tail
            .as_ref()
            .try_into()
            .map_err(|_| ParquetError::General("short read of the footer".to_string()))?;
        let length = FooterTail::try_new(&tail)?.metadata_length() as u64;
        let start = tail_start.checked_sub(length).ok_or_else(|| {
            ParquetError::General(format!("footer of {length} bytes in a smaller file"))
        })?;
        self.get_bytes(start..tail_start).await
    }
}

impl AsyncFileReader for ObjectFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.check(&range)?;
            let bytes = get_pinned(self.store.as_ref(), &self.path, range, &self.pin)
                .await
                .map_err(|e| self.wrap(e))?;
            self.counter
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            Ok(bytes)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            for range in &ranges {
                self.check(range)?;
            }
            let parts = get_ranges_pinned(self.store.as_ref(), &self.path, &ranges, &self.pin)
                .await
                .map_err(|e| self.wrap(e))?;
            let total: usize = parts.iter().map(Bytes::len).sum();
            self.counter.fetch_add(total as u64, Ordering::Relaxed);
            Ok(parts)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let size = self.size;
        async move {
            let metadata = match ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(&mut *self, size)
                .await
            {
                Ok(metadata) => metadata,
                Err(refused) => {
                    // A writer bug the crate does not tolerate? Decode once more without it.
                    let footer = self.footer().await?;
                    let Some(cleaned) = parquet_compat::drop_mistyped_fields(&footer) else {
                        return Err(refused);
                    };
                    ParquetMetaDataReader::decode_metadata(&cleaned)?
                }
            };
            let data_end = self.size.saturating_sub(8);
            let (store, path, pin) = (self.store.clone(), self.path.clone(), self.pin.clone());
            let fetch = move |range: Range<u64>| {
                let (store, path, pin) = (store.clone(), path.clone(), pin.clone());
                async move {
                    get_pinned(store.as_ref(), &path, range, &pin)
                        .await
                        .map_err(|e| ParquetError::External(Box::new(e)))
                }
            };
            let metadata = parquet_compat::repair(metadata, data_end, fetch).await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// A Parquet failure on `url`: storage errors keep their type, the rest means a corrupt file.
pub fn parquet_error(url: &str, e: ParquetError) -> Error {
    match e {
        ParquetError::External(inner) => match inner.downcast::<Error>() {
            Ok(typed) => *typed,
            Err(other) => Error::corrupt(url, format!("not a readable Parquet file: {other}")),
        },
        other if other.to_string().contains("encrypted footer") => Error::config(format!(
            "{url}: an encrypted Parquet file (modular encryption), which is not read: decrypt \
             it first"
        )),
        other => Error::corrupt(url, format!("not a readable Parquet file: {other}")),
    }
}

/// Row count and compressed size of each row group, for planning.
pub async fn row_groups(file: &mut ObjectFile) -> Result<Vec<(u64, u64)>> {
    let url = file.url.clone();
    let metadata = file
        .get_metadata(None)
        .await
        .map_err(|e| parquet_error(&url, e))?;
    Ok(metadata
        .row_groups()
        .iter()
        .map(|rg| {
            (
                rg.num_rows().max(0) as u64,
                rg.compressed_size().max(0) as u64,
            )
        })
        .collect())
}

/// Reads a contiguous run of row groups of one file.
pub struct ParquetRows {
    runtime: Handle,
    stream: ParquetRecordBatchStream<ObjectFile>,
    source: Arc<str>,
    next_row: u64,
    /// Rows the selected row groups declare, and rows decoded so far: they must agree at the
    /// end, or rows went missing (or appeared) without a trace.
    declared: u64,
    decoded: u64,
    /// The row groups read, for messages.
    groups: Range<usize>,
}

impl ParquetRows {
    pub fn open(
        runtime: &Handle,
        file: ObjectFile,
        groups: Range<usize>,
        batch_size: usize,
    ) -> Result<Self> {
        let url = file.url.clone();
        let builder = runtime
            .block_on(ParquetRecordBatchStreamBuilder::new(file))
            .map_err(|e| parquet_error(&url, e))?;
        let metadata = builder.metadata().clone();
        let available = metadata.num_row_groups();
        if groups.end > available {
            return Err(Error::corrupt(
                &url,
                format!(
                    "has {available} row groups, the plan expected at least {}",
                    groups.end
                ),
            ));
        }
        let first_row: i64 = metadata.row_groups()[..groups.start]
            .iter()
            .map(|rg| rg.num_rows())
            .sum();
        let declared: i64 = metadata.row_groups()[groups.clone()]
            .iter()
            .map(|rg| rg.num_rows())
            .sum();
        let selected = groups.clone();
        let stream = builder
            .with_row_groups(groups.collect())
            .with_batch_size(batch_size)
            .build()
            .map_err(|e| parquet_error(&url, e))?;
        Ok(Self {
            runtime: runtime.clone(),
            stream,
            source: url.into(),
            next_row: first_row.max(0) as u64,
            declared: declared.max(0) as u64,
            decoded: 0,
            groups: selected,
        })
    }

    pub fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        match self.runtime.block_on(self.stream.next()) {
            None if self.decoded != self.declared => Err(Error::corrupt(
                &*self.source,
                format!(
                    "row groups {}..{} declare {} rows but {} were decoded: a damaged file, \
                     or a layout the Parquet reader does not take (e.g. a repeated column \
                     without a LIST annotation); nothing of it is written",
                    self.groups.start, self.groups.end, self.declared, self.decoded
                ),
            )),
            None => Ok(None),
            Some(Err(e)) => Err(match parquet_error(&self.source, e) {
                Error::Corrupt { url, message } => Error::Corrupt {
                    url,
                    message: format!(
                        "{message} (in row groups {}..{})",
                        self.groups.start, self.groups.end
                    ),
                },
                other => other,
            }),
            Some(Ok(batch)) => {
                self.decoded += batch.num_rows() as u64;
                Ok(Some(SourceBatch::numbered(
                    &self.source,
                    batch,
                    &mut self.next_row,
                )))
            }
        }
    }
}

/// Concatenate Parquet files with identical schemas into one, copying row groups' column
/// chunks byte for byte (no decode, no re-encode) under a single new footer.
pub fn concat<R: ChunkReader, W: Write + Send>(
    inputs: &[R],
    names: &[String],
    out: W,
) -> Result<W> {
    let context = |i: usize| names.get(i).cloned().unwrap_or_default();
    let mut parsed = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(input)
            .map_err(|e| parquet_error(&context(i), e))?;
        parsed.push(metadata);
    }
    let Some(first) = parsed.first() else {
        return Err(Error::config("nothing to concatenate"));
    };
    let schema = first.file_metadata().schema_descr().root_schema_ptr();
    for (i, metadata) in parsed.iter().enumerate().skip(1) {
        if metadata.file_metadata().schema() != first.file_metadata().schema() {
            return Err(Error::corrupt(
                context(i),
                "part schema differs from the first part",
            ));
        }
    }
    // Keep the Arrow schema (timestamp time zones, ...) that ArrowWriter stored in the footer.
    let props = WriterProperties::builder()
        .set_key_value_metadata(first.file_metadata().key_value_metadata().cloned())
        .build();
    let encode = |e: ParquetError| Error::Encode {
        context: "concatenating Parquet parts".into(),
        message: e.to_string(),
    };
    let mut writer = SerializedFileWriter::new(out, schema, Arc::new(props)).map_err(encode)?;
    for (input, metadata) in inputs.iter().zip(&parsed) {
        append_row_groups(&mut writer, input, metadata).map_err(encode)?;
    }
    writer.into_inner().map_err(encode)
}

/// Append every row group of a file (its column chunks read from `input`, byte for byte, and
/// its page indexes) to `writer`, which rewrites their offsets to their new places.
pub(crate) fn append_row_groups<R: ChunkReader, W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    input: &R,
    metadata: &ParquetMetaData,
) -> parquet::errors::Result<()> {
    let page_index = metadata.page_index();
    for (rg_idx, rg) in metadata.row_groups().iter().enumerate() {
        let mut rg_out = writer.next_row_group()?;
        for (col_idx, column) in rg.columns().iter().enumerate() {
            let result = ColumnCloseResult {
                bytes_written: column.compressed_size() as _,
                rows_written: rg.num_rows() as _,
                metadata: column.clone(),
                bloom_filter: None,
                column_index: page_index
                    .and_then(|pi| pi.column_index(rg_idx, col_idx))
                    .cloned(),
                offset_index: page_index
                    .and_then(|pi| pi.offset_index(rg_idx, col_idx))
                    .cloned(),
            };
            rg_out.append_column(input, result)?;
        }
        rg_out.close()?;
    }
    Ok(())
}

impl crate::format::BatchSource for ParquetRows {
    fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        Self::next_batch(self)
    }
}
