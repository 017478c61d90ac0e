//! Opens the right reader for one split and feeds its batches to a callback.

use super::process::TaskContext;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use zoopipe_common::format::csv::{CsvRecords, RangeOutcome, skip_to_line_start};
use zoopipe_common::format::ipc::IpcRows;
use zoopipe_common::format::json::{self, JsonLines, read_array};
use zoopipe_common::format::parquet::{ObjectFile, ParquetRows};
use zoopipe_common::format::{BatchSource, Compression, Format, SourceBatch};
use zoopipe_common::plan::{Split, SplitKind, open_decoder, split_url};
use zoopipe_common::report::RangeReport;
use zoopipe_common::spec::JobConfig;
use zoopipe_common::sql::{CopyRows, Database};
use zoopipe_common::storage::{ObjectReader, ObjectUrl, Pin, ReadCounter};
use zoopipe_common::{Error, Result};

const READ_BUFFER: usize = 256 * 1024;

/// Read one split through its format's `BatchSource` (`fetched`: its whole content, fetched
/// ahead); byte-range splits also report how their records lined up.
pub fn read_split(
    ctx: &TaskContext,
    job: &JobConfig,
    split: &Split,
    fetched: Option<bytes::Bytes>,
    counter: &ReadCounter,
    emit: &mut dyn FnMut(SourceBatch) -> Result<()>,
) -> Result<Option<RangeReport>> {
    if let SplitKind::Sql(slice) = &split.kind {
        let database = Database::parse(&split.url)?;
        let source: Arc<str> = format!("{} {}", database.shown(), slice.relation).into();
        let mut rows = CopyRows::open(
            &ctx.runtime,
            database,
            slice,
            source,
            job.spec.batch_size,
            counter.clone(),
        )?;
        while let Some(batch) = rows.next_batch()? {
            emit(batch)?;
        }
        return Ok(None);
    }
    let url = split_url(split)?;
    // A small Parquet or Arrow object fetched ahead is read by range from memory: its GET was
    // pinned, and its bytes counted, when it was fetched.
    let (store, counter, pin) = match (&fetched, split.format) {
        (Some(bytes), Format::Parquet | Format::Arrow) => (
            in_memory(ctx, &url, bytes.clone())?,
            ReadCounter::default(),
            Pin::default(),
        ),
        _ => (ctx.storage.store(&url)?, counter.clone(), split.pin.clone()),
    };
    let source: Arc<str> = split.url.as_str().into();
    let columns: Arc<[String]> = split.columns.clone().unwrap_or_default().into();
    let targets = json::targets(&columns, job.schema.as_deref());
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
            pin.clone(),
        )
    };
    let mut reader: Box<dyn BatchSource + '_> = match (split.format, &split.kind) {
        (Format::Csv | Format::Jsonl, SplitKind::Bytes { start, end }) => {
            let (start, end) = (*start, *end);
            let mut reader =
                BufReader::with_capacity(READ_BUFFER, open(start.saturating_sub(1), end));
            let base = if start == 0 {
                skip_bom(&mut reader, split)?
            } else {
                let cr_ends_lines = split.format == Format::Csv;
                let found = skip_to_line_start(&mut reader, start, cr_ends_lines)
                    .map_err(|e| Error::io(format!("reading {}", split.url), e))?;
                let Some(base) = found else {
                    // No record starts in this range: it owns none.
                    let outcome = RangeOutcome {
                        first_record: split.size,
                        end: split.size,
                        lines: 0,
                    };
                    return Ok(Some(range_report(split, outcome)));
                };
                base
            };
            if split.format == Format::Csv {
                let skip_header = start == 0 && csv.header;
                Box::new(CsvRecords::new(
                    reader,
                    csv,
                    columns,
                    source,
                    base,
                    1,
                    Some(end),
                    skip_header,
                    batch_size,
                ))
            } else {
                Box::new(
                    JsonLines::new(reader, columns, source, base, 1, Some(end), batch_size)
                        .with_targets(targets),
                )
            }
        }
        (Format::Csv | Format::Jsonl, SplitKind::Whole) => {
            // A small object fetched ahead (`prefetch`) is read from memory.
            // In memory already: a buffer the object's size, not a fresh 256 KiB one each.
            let (raw, buffer): (Box<dyn std::io::Read + Send>, usize) = match fetched {
                Some(bytes) if split.compression == Compression::None => {
                    let buffer = (bytes.len() + 1).clamp(8 * 1024, READ_BUFFER);
                    (Box::new(std::io::Cursor::new(bytes)), buffer)
                }
                Some(bytes) => (Box::new(std::io::Cursor::new(bytes)), READ_BUFFER),
                None => (Box::new(open(0, split.size)), READ_BUFFER),
            };
            let decoded = open_decoder(raw, split.compression);
            let mut reader = BufReader::with_capacity(buffer, decoded);
            let base = skip_bom(&mut reader, split)?;
            if split.format == Format::Csv && split.columns.is_none() && csv.header {
                // Planned without reading it: the header comes from the object itself.
                let (columns, reader) = header_of(reader, base, csv, split)?;
                Box::new(CsvRecords::new(
                    reader, csv, columns, source, base, 1, None, csv.header, batch_size,
                ))
            } else if split.format == Format::Csv {
                Box::new(CsvRecords::new(
                    reader, csv, columns, source, base, 1, None, csv.header, batch_size,
                ))
            } else if json::may_be_array(&split.url) && is_json_document(&mut reader, &split.url)? {
                read_array(reader, columns, targets, source, batch_size, emit)?;
                return Ok(None);
            } else {
                Box::new(
                    JsonLines::new(reader, columns, source, base, 1, None, batch_size)
                        .with_targets(targets),
                )
            }
        }
        (Format::Parquet, SplitKind::RowGroups { start, end }) => {
            let file = ObjectFile::new(store.clone(), &url, split.size, counter.clone())
                .pinned(pin.clone());
            Box::new(ParquetRows::open(
                &ctx.runtime,
                file,
                *start..*end,
                batch_size,
            )?)
        }
        (
            Format::Arrow,
            SplitKind::Batches {
                start,
                end,
                first_row,
            },
        ) => Box::new(IpcRows::open(
            &ctx.runtime,
            store.clone(),
            &url,
            split.size,
            *start..*end,
            *first_row,
            counter.clone(),
            &pin,
        )?),
        (format, kind) => {
            return Err(Error::config(format!(
                "{}: a {format} input cannot be read as {kind:?}",
                split.url
            )));
        }
    };
    while let Some(batch) = reader.next_batch()? {
        emit(batch)?;
    }
    Ok(match (&split.kind, reader.outcome()) {
        (SplitKind::Bytes { .. }, Some(outcome)) => Some(range_report(split, outcome)),
        _ => None,
    })
}

/// One object held in memory behind the `ObjectStore` interface, at its own path.
fn in_memory(
    ctx: &TaskContext,
    url: &ObjectUrl,
    bytes: bytes::Bytes,
) -> Result<Arc<dyn ObjectStore>> {
    let store = InMemory::new();
    ctx.runtime
        .block_on(store.put(&url.path(), bytes.into()))
        .map_err(|e| Error::from_store(&url.to_string(), e))?;
    Ok(Arc::new(store))
}

fn range_report(split: &Split, outcome: RangeOutcome) -> RangeReport {
    let (start, end) = match split.kind {
        SplitKind::Bytes { start, end } => (start, end),
        _ => (0, split.size),
    };
    RangeReport {
        url: split.url.clone(),
        start,
        end,
        outcome,
    }
}

/// Skip a UTF-8 byte order mark at the start of a text file (spreadsheet exports and Windows
/// tools write one); the byte offset of what follows.
fn skip_bom<R: BufRead>(reader: &mut R, split: &Split) -> Result<u64> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let head = reader
        .fill_buf()
        .map_err(|e| Error::io(format!("reading {}", split.url), e))?;
    if head.starts_with(BOM) {
        reader.consume(BOM.len());
        return Ok(BOM.len() as u64);
    }
    Ok(0)
}

/// The longest header line read from an object itself (as planning reads them).
const MAX_HEADER: usize = 64 * 1024 * 1024;

/// The header names of a CSV object planned without reading it, read from the object (after
/// any byte-order mark), and a reader that starts where `reader` did: the bytes read for the
/// header are replayed before the rest.
fn header_of<R: BufRead + Send>(
    mut reader: R,
    base: u64,
    csv: &zoopipe_common::format::CsvOptions,
    split: &Split,
) -> Result<(Arc<[String]>, impl BufRead + Send)> {
    let plain = split.compression == Compression::None;
    let mut head = Vec::new();
    let names = loop {
        let more = reader
            .fill_buf()
            .map_err(|e| Error::io(format!("reading {}", split.url), e))?;
        let ended = more.is_empty();
        head.extend_from_slice(more);
        let n = more.len();
        reader.consume(n);
        let at_eof = ended || (plain && base + head.len() as u64 >= split.size);
        if let Some((names, _)) = zoopipe_common::format::csv::read_header(&head, at_eof, csv)
            .map_err(|why| Error::corrupt(split.url.clone(), why))?
        {
            break names;
        }
        if at_eof || head.len() > MAX_HEADER {
            return Err(Error::corrupt(
                split.url.clone(),
                "the first record is longer than 64 MiB",
            ));
        }
    };
    // Both halves buffer already: no fresh buffer per object (a task may read thousands).
    Ok((
        names.into(),
        std::io::Read::chain(std::io::Cursor::new(head), reader),
    ))
}

/// Whether a `.json` input is one document (`json::is_document`) rather than JSON lines,
/// without consuming it.
fn is_json_document<R: BufRead>(reader: &mut R, url: &str) -> Result<bool> {
    loop {
        let buf = reader
            .fill_buf()
            .map_err(|e| Error::io(format!("reading {url}"), e))?;
        if buf.is_empty() {
            return Ok(false);
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                reader.consume(i);
                let buf = reader
                    .fill_buf()
                    .map_err(|e| Error::io(format!("reading {url}"), e))?;
                return Ok(json::is_document(buf));
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}
