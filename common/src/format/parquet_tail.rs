//! Parquet parts concatenated byte for byte, for assembly inside S3: the merged file is the
//! magic, then every part's column chunks exactly as they are, then a new tail (page indexes
//! and footer) whose offsets point at the chunks' new places. Only the tail is ours to write;
//! the chunks are copied by the store without passing through this process.
//!
//! The tail comes from parquet's own `SerializedFileWriter`: it is fed every column chunk as
//! zeros of the right length (it only counts them) and rewrites offsets, page locations and
//! row-group metadata itself. A sink keeps the bytes it writes after the chunks.

use super::parquet::{ObjectFile, append_row_groups, parquet_error};
use crate::{Error, Result};
use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::writer::SerializedFileWriter;
use std::io::{Read, Write};
use std::ops::Range;
use std::sync::Arc;

const MAGIC: &[u8] = b"PAR1";

/// A part's footer and where its column chunks lie.
pub struct PartLayout {
    url: String,
    metadata: ParquetMetaData,
    /// The column chunks, one contiguous run: `4..end of the last chunk`.
    pub chunks: Range<u64>,
}

/// Read a part's footer and page index (ranged GETs). `Ok(None)` when its chunks are not one
/// contiguous run right after the magic (then it cannot be concatenated byte for byte).
pub async fn part_layout(
    file: &mut ObjectFile,
    url: &str,
    size: u64,
) -> Result<Option<PartLayout>> {
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .with_prefetch_hint(Some(64 * 1024))
        .load_and_finish(file, size)
        .await
        .map_err(|e| parquet_error(url, e))?;
    let mut next = MAGIC.len() as u64;
    for rg in metadata.row_groups() {
        for column in rg.columns() {
            let (start, len) = column.byte_range();
            if start != next {
                return Ok(None);
            }
            next = start + len;
        }
    }
    Ok(Some(PartLayout {
        url: url.to_string(),
        metadata,
        chunks: MAGIC.len() as u64..next,
    }))
}

/// The tail of the file made of the magic followed by every part's chunks in order: page
/// indexes, footer, footer length and magic.
pub fn concatenated_tail(parts: &[PartLayout]) -> Result<Bytes> {
    let Some(first) = parts.first() else {
        return Err(Error::config("nothing to concatenate"));
    };
    let file_metadata = first.metadata.file_metadata();
    for part in &parts[1..] {
        if part.metadata.file_metadata().schema() != file_metadata.schema() {
            return Err(Error::corrupt(
                &part.url,
                "part schema differs from the first part",
            ));
        }
    }
    let chunks_end = MAGIC.len() as u64
        + parts
            .iter()
            .map(|p| p.chunks.end - p.chunks.start)
            .sum::<u64>();
    // Keep the Arrow schema (time zones, ...) that ArrowWriter stored in the footer.
    let props = WriterProperties::builder()
        .set_key_value_metadata(file_metadata.key_value_metadata().cloned())
        .build();
    let encode = |e: ParquetError| Error::Encode {
        context: "rebuilding the Parquet footer".into(),
        message: e.to_string(),
    };
    let sink = TailSink {
        position: 0,
        keep_from: chunks_end,
        tail: Vec::new(),
    };
    let schema = file_metadata.schema_descr().root_schema_ptr();
    let mut writer = SerializedFileWriter::new(sink, schema, Arc::new(props)).map_err(encode)?;
    for part in parts {
        append_row_groups(&mut writer, &Zeros, &part.metadata).map_err(encode)?;
    }
    // The writer must have laid the chunks out exactly as the copies will.
    if writer.bytes_written() as u64 != chunks_end {
        return Err(Error::Encode {
            context: "rebuilding the Parquet footer".into(),
            message: format!(
                "chunks end at {} in the rebuilt file, {chunks_end} in the copies",
                writer.bytes_written()
            ),
        });
    }
    let sink = writer.into_inner().map_err(encode)?;
    Ok(Bytes::from(sink.tail))
}

/// Every column chunk's bytes, as far as the footer writer is concerned.
struct Zeros;

impl Length for Zeros {
    fn len(&self) -> u64 {
        u64::MAX
    }
}

impl ChunkReader for Zeros {
    type T = std::io::Repeat;

    fn get_read(&self, _start: u64) -> parquet::errors::Result<Self::T> {
        Ok(std::io::repeat(0))
    }

    fn get_bytes(&self, _start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut zeros = vec![0; length];
        std::io::repeat(0).read_exact(&mut zeros)?;
        Ok(Bytes::from(zeros))
    }
}

/// Counts what the writer writes and keeps only what comes after the chunks.
struct TailSink {
    position: u64,
    keep_from: u64,
    tail: Vec<u8>,
}

impl Write for TailSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let end = self.position + buf.len() as u64;
        if end > self.keep_from {
            let skip = self.keep_from.saturating_sub(self.position) as usize;
            self.tail.extend_from_slice(&buf[skip..]);
        }
        self.position = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
    };

    fn part(first: i64, rows: i64) -> Bytes {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ids = Int64Array::from_iter_values(first..first + rows);
        let names = StringArray::from_iter_values((first..first + rows).map(|i| format!("n{i}")));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(names)]).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(700))
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(50)
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        Bytes::from(out)
    }

    fn layout(bytes: &Bytes, name: &str) -> PartLayout {
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(bytes)
            .unwrap();
        let end = metadata
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .map(|c| c.byte_range().0 + c.byte_range().1)
            .max()
            .unwrap();
        PartLayout {
            url: name.into(),
            metadata,
            chunks: 4..end,
        }
    }

    #[test]
    fn chunks_copied_as_they_are_under_the_rebuilt_tail_read_back() {
        let parts = [part(0, 1000), part(1000, 1), part(1001, 2500)];
        let layouts: Vec<_> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| layout(p, &format!("p{i}")))
            .collect();
        let tail = concatenated_tail(&layouts).unwrap();
        let mut merged = MAGIC.to_vec();
        for (bytes, layout) in parts.iter().zip(&layouts) {
            merged.extend_from_slice(
                &bytes[layout.chunks.start as usize..layout.chunks.end as usize],
            );
        }
        merged.extend_from_slice(&tail);
        let merged = Bytes::from(merged);
        let read = |selection: Option<RowSelection>| {
            let options =
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
            let mut builder =
                ParquetRecordBatchReaderBuilder::try_new_with_options(merged.clone(), options)
                    .unwrap();
            if let Some(selection) = selection {
                builder = builder.with_row_selection(selection);
            }
            ids(builder.build().unwrap())
        };
        assert_eq!(read(None), (0..3501).collect::<Vec<_>>());
        // Skipping rows goes through the offset index: its page locations must be right.
        let skip = RowSelection::from(vec![RowSelector::skip(1500), RowSelector::select(2001)]);
        assert_eq!(read(Some(skip)), (1500..3501).collect::<Vec<_>>());
    }

    fn ids(reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader) -> Vec<i64> {
        let mut ids = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            ids.extend(column.values().iter().copied());
        }
        ids
    }
}
