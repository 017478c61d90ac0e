//! Opens the right reader for one split and feeds its batches to a callback.

use super::process::TaskContext;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use zoopipe_common::format::csv::{CsvRecords, RangeOutcome, skip_to_line_start};
use zoopipe_common::format::ipc::IpcRows;
use zoopipe_common::format::json::{JsonLines, read_array};
use zoopipe_common::format::parquet::{ObjectFile, ParquetRows};
use zoopipe_common::format::{Format, SourceBatch};
use zoopipe_common::plan::{Split, SplitKind, open_decoder, split_url};
use zoopipe_common::report::RangeReport;
use zoopipe_common::spec::JobConfig;
use zoopipe_common::storage::{ObjectReader, ReadCounter};
use zoopipe_common::{Error, Result};

const READ_BUFFER: usize = 256 * 1024;

/// Read one split; byte-range splits also report how their records lined up.
pub fn read_split(
    ctx: &TaskContext,
    job: &JobConfig,
    split: &Split,
    counter: &ReadCounter,
    emit: &mut dyn FnMut(SourceBatch) -> Result<()>,
) -> Result<Option<RangeReport>> {
    let url = split_url(split)?;
    let store = ctx.storage.store(&url)?;
    let source: Arc<str> = split.url.as_str().into();
    let columns: Arc<[String]> = split.columns.clone().unwrap_or_default().into();
    let batch_size = job.spec.batch_size;
    let csv = &job.spec.csv;
    let open = |start: u64, soft_end: u64| {
        ObjectReader::spawn(
            &ctx.runtime,
            store.clone(),
            url.path(),
            split.url.clone(),
            start,
            soft_end,
            split.size,
            counter.clone(),
        )
    };
    match (split.format, &split.kind) {
        (Format::Csv | Format::Jsonl, SplitKind::Bytes { start, end }) => {
            let (start, end) = (*start, *end);
            let mut reader =
                BufReader::with_capacity(READ_BUFFER, open(start.saturating_sub(1), end));
            let base = if start == 0 {
                0
            } else {
                let found = skip_to_line_start(&mut reader, start)
                    .map_err(|e| Error::io(format!("reading {}", split.url), e))?;
                match found {
                    Some(base) => base,
                    None => {
                        let outcome = RangeOutcome {
                            first_record: split.size,
                            end: split.size,
                            lines: 0,
                        };
                        return Ok(Some(RangeReport {
                            url: split.url.clone(),
                            start,
                            end,
                            outcome,
                        }));
                    }
                }
            };
            let outcome = if split.format == Format::Csv {
                let skip_header = start == 0 && csv.header;
                let mut records = CsvRecords::new(
                    reader,
                    csv,
                    columns,
                    source,
                    base,
                    1,
                    Some(end),
                    skip_header,
                    batch_size,
                );
                while let Some(batch) = records.next_batch()? {
                    emit(batch)?;
                }
                records.outcome()
            } else {
                let mut lines =
                    JsonLines::new(reader, columns, source, base, 1, Some(end), batch_size);
                while let Some(batch) = lines.next_batch()? {
                    emit(batch)?;
                }
                lines.outcome()
            };
            Ok(Some(RangeReport {
                url: split.url.clone(),
                start,
                end,
                outcome,
            }))
        }
        (Format::Csv | Format::Jsonl, SplitKind::Whole) => {
            let decoded = open_decoder(open(0, split.size), split.compression);
            let mut reader = BufReader::with_capacity(READ_BUFFER, decoded);
            if split.format == Format::Csv {
                let mut records = CsvRecords::new(
                    reader, csv, columns, source, 0, 1, None, csv.header, batch_size,
                );
                while let Some(batch) = records.next_batch()? {
                    emit(batch)?;
                }
            } else if starts_with_bracket(&mut reader, &split.url)? {
                read_array(reader, columns, source, batch_size, emit)?;
            } else {
                let mut lines = JsonLines::new(reader, columns, source, 0, 1, None, batch_size);
                while let Some(batch) = lines.next_batch()? {
                    emit(batch)?;
                }
            }
            Ok(None)
        }
        (Format::Parquet, SplitKind::RowGroups { start, end }) => {
            let file = ObjectFile::new(store.clone(), &url, split.size, counter.clone());
            let mut rows = ParquetRows::open(&ctx.runtime, file, *start..*end, batch_size)?;
            while let Some(batch) = rows.next_batch()? {
                emit(batch)?;
            }
            Ok(None)
        }
        (
            Format::Arrow,
            SplitKind::Batches {
                start,
                end,
                first_row,
            },
        ) => {
            let mut rows = IpcRows::open(
                &ctx.runtime,
                store.clone(),
                &url,
                split.size,
                *start..*end,
                *first_row,
                counter.clone(),
            )?;
            while let Some(batch) = rows.next_batch()? {
                emit(batch)?;
            }
            Ok(None)
        }
        (format, kind) => Err(Error::config(format!(
            "{}: a {format} input cannot be read as {kind:?}",
            split.url
        ))),
    }
}

/// Whether a JSON input is an array (`[`) rather than JSON lines, without consuming it.
fn starts_with_bracket<R: BufRead>(reader: &mut R, url: &str) -> Result<bool> {
    loop {
        let buf = reader
            .fill_buf()
            .map_err(|e| Error::io(format!("reading {url}"), e))?;
        if buf.is_empty() {
            return Ok(false);
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let first = buf[i];
                reader.consume(i);
                return Ok(first == b'[');
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}
