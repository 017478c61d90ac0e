//! CSV input: header detection, byte-range framing and a tolerant record reader.
//!
//! A byte range `[start, end)` owns the records that *start* inside it. A range that does not
//! begin the file skips to the first line start at or after `start`; it reads past `end` to
//! finish its last record. Each range reports where its first record began and where its last
//! one ended, so the planner can prove that neighbouring ranges met at a true record boundary —
//! a quoted newline that crossed a boundary shows up as a mismatch and the file is re-read whole.

use super::text::TextColumns;
use super::{CsvOptions, Positions, Reject, SourceBatch, lossy_capped};
use crate::validate::{ErrorKind, FieldError};
use crate::{Error, Result};
use csv::{ByteRecord, ReaderBuilder};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read};
use std::sync::Arc;

/// How one range actually lined up with the file's records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeOutcome {
    /// Absolute offset of the first record this range read (or where it would have been).
    pub first_record: u64,
    /// Absolute offset just past the last record this range read.
    pub end: u64,
    /// Newlines between `first_record` and `end`, to number the next range's lines.
    pub lines: u64,
}

pub(crate) fn reader_builder(opts: &CsvOptions) -> ReaderBuilder {
    let mut b = ReaderBuilder::new();
    b.has_headers(false)
        .flexible(true)
        .delimiter(opts.delimiter)
        .quote(opts.quote)
        .double_quote(opts.escape.is_none())
        .escape(opts.escape);
    b
}

/// Parse the header (or, without one, count the columns) from the first bytes of a file.
/// Returns the column names and the byte offset where data starts; `None` when `head` does not
/// yet hold one complete record and more bytes are needed.
pub fn read_header(head: &[u8], at_eof: bool, opts: &CsvOptions) -> Option<(Vec<String>, u64)> {
    let mut reader = reader_builder(opts).from_reader(head);
    let mut record = ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => {
            let end = reader.position().byte();
            // The record is complete only if a terminator followed it (or the file ended).
            let complete = at_eof || (end as usize) < head.len() || head.ends_with(b"\n");
            if !complete {
                return None;
            }
            let names = if opts.header {
                record
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let name = String::from_utf8_lossy(f)
                            .trim_start_matches('\u{feff}')
                            .trim()
                            .to_string();
                        if name.is_empty() {
                            format!("column_{}", i + 1)
                        } else {
                            name
                        }
                    })
                    .collect()
            } else {
                (1..=record.len()).map(|i| format!("column_{i}")).collect()
            };
            Some((names, if opts.header { end } else { 0 }))
        }
        Ok(false) => at_eof.then(|| (Vec::new(), 0)),
        Err(_) => at_eof.then(|| (Vec::new(), 0)),
    }
}

/// Skip from `start - 1` to the first line start at or after `start`. `reader` must be
/// positioned at `start - 1` (so a newline right before `start` counts). Returns the offset of
/// that line start, or `None` when the input ends first.
pub fn skip_to_line_start<R: BufRead>(reader: &mut R, start: u64) -> std::io::Result<Option<u64>> {
    let skipped = reader.skip_until(b'\n')? as u64;
    if skipped == 0 {
        return Ok(None);
    }
    if reader.fill_buf()?.is_empty() {
        // The newline was the last byte: no record starts in or after this range.
        return Ok(None);
    }
    Ok(Some(start - 1 + skipped))
}

/// Reads records of one range into all-Utf8 batches.
pub struct CsvRecords<R: Read> {
    reader: csv::Reader<R>,
    columns: Arc<[String]>,
    text: TextColumns,
    lines: Vec<u64>,
    rejects: Vec<Reject>,
    source: Arc<str>,
    /// Absolute offset of the reader's first byte.
    base: u64,
    /// Line number of the reader's first line.
    line_base: u64,
    end: Option<u64>,
    skip_header: bool,
    batch_size: usize,
    record: ByteRecord,
    outcome: RangeOutcome,
    done: bool,
}

impl<R: Read> CsvRecords<R> {
    /// `reader` starts at absolute offset `base`, which is line `line_base`; records starting
    /// at or after `end` are left to the next range.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        reader: R,
        opts: &CsvOptions,
        columns: Arc<[String]>,
        source: Arc<str>,
        base: u64,
        line_base: u64,
        end: Option<u64>,
        skip_header: bool,
        batch_size: usize,
    ) -> Self {
        let text = TextColumns::new(&columns, batch_size);
        Self {
            reader: reader_builder(opts).buffer_capacity(256 * 1024).from_reader(reader),
            columns,
            text,
            lines: Vec::with_capacity(batch_size),
            rejects: Vec::new(),
            source,
            base,
            line_base,
            end,
            skip_header,
            batch_size,
            record: ByteRecord::new(),
            outcome: RangeOutcome {
                first_record: base,
                end: base,
                lines: 0,
            },
            done: false,
        }
    }

    /// Where this range's records began and ended (complete once the reader is exhausted).
    pub fn outcome(&self) -> RangeOutcome {
        self.outcome
    }

    pub fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        while !self.done && !self.text.is_full(self.batch_size) {
            self.read_one()?;
        }
        if self.text.rows() == 0 && self.rejects.is_empty() {
            return Ok(None);
        }
        Ok(Some(SourceBatch {
            source: self.source.clone(),
            batch: self.text.finish(),
            positions: Positions::Lines(std::mem::take(&mut self.lines)),
            rejects: std::mem::take(&mut self.rejects),
            extra_keys: Vec::new(),
        }))
    }

    fn read_one(&mut self) -> Result<()> {
        let more = match self.reader.read_byte_record(&mut self.record) {
            Ok(more) => more,
            Err(e) => return self.read_error(e),
        };
        let pos = self.record.position().cloned();
        let (start_byte, start_line) = pos
            .as_ref()
            .map(|p| (p.byte(), p.line()))
            .unwrap_or_else(|| (self.reader.position().byte(), self.reader.position().line()));
        let absolute = self.base + start_byte;
        if !more || self.end.is_some_and(|end| absolute >= end) {
            // This record (if any) belongs to the next range: we end where it starts.
            let at = if more {
                (absolute, start_line)
            } else {
                (self.base + self.reader.position().byte(), self.reader.position().line())
            };
            self.outcome.end = at.0;
            self.outcome.lines = at.1.saturating_sub(1);
            self.done = true;
            return Ok(());
        }
        if self.skip_header {
            self.skip_header = false;
            return Ok(());
        }
        let line = self.line_base + start_line - 1;
        let next_line = self.reader.position().line();
        self.check_and_push(line, next_line.saturating_sub(start_line));
        Ok(())
    }

    fn check_and_push(&mut self, line: u64, spans: u64) {
        let width = self.text.width();
        let record = &self.record;
        if std::str::from_utf8(record.as_slice()).is_err() {
            let field = record
                .iter()
                .position(|f| std::str::from_utf8(f).is_err())
                .map(|i| self.column_name(i));
            let message = format!(
                "invalid UTF-8 in {}",
                field.as_deref().map_or("record".to_string(), |f| format!("field '{f}'"))
            );
            self.reject(line, field, ErrorKind::MalformedRecord, message);
            return;
        }
        if record.len() != width {
            let (kind, message) = if spans > 1 && record.len() < width {
                (
                    ErrorKind::MalformedRecord,
                    format!("unbalanced quotes: record spans {spans} lines and has {} of {width} fields", record.len()),
                )
            } else if record.len() < width {
                (
                    ErrorKind::MissingColumn,
                    format!("expected {width} fields, found {}", record.len()),
                )
            } else {
                (
                    ErrorKind::ExtraColumn,
                    format!("expected {width} fields, found {}", record.len()),
                )
            };
            let field = if record.len() < width {
                Some(self.column_name(record.len()))
            } else {
                None
            };
            self.reject(line, field, kind, message);
            return;
        }
        for (i, field) in record.iter().enumerate() {
            self.text.push(i, field);
        }
        self.text.end_row();
        self.lines.push(line);
    }

    fn column_name(&self, i: usize) -> String {
        self.columns
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("column_{}", i + 1))
    }

    fn reject(&mut self, line: u64, field: Option<String>, kind: ErrorKind, message: String) {
        let values = self
            .record
            .iter()
            .enumerate()
            .map(|(i, f)| (self.column_name(i), String::from_utf8_lossy(f).into_owned()))
            .collect();
        let mut raw = Vec::new();
        for (i, f) in self.record.iter().enumerate() {
            if i > 0 {
                raw.push(b',');
            }
            raw.extend_from_slice(f);
        }
        self.rejects.push(Reject {
            position: line,
            values,
            raw: lossy_capped(&raw),
            error: FieldError {
                field,
                kind,
                message,
            },
        });
    }

    fn read_error(&self, e: csv::Error) -> Result<()> {
        let source = self.source.to_string();
        match e.into_kind() {
            csv::ErrorKind::Io(io) => Err(Error::io(format!("reading {source}"), io)),
            other => Err(Error::corrupt(source, format!("{other:?}"))),
        }
    }
}

/// Read all rows of a whole CSV held in memory (tests and samples).
pub fn read_all(bytes: &[u8], opts: &CsvOptions, batch_size: usize) -> Result<(Vec<String>, Vec<SourceBatch>)> {
    let Some((columns, _)) = read_header(bytes, true, opts) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut records = CsvRecords::new(
        bytes,
        opts,
        columns.clone().into(),
        "memory".into(),
        0,
        1,
        None,
        opts.header,
        batch_size,
    );
    let mut out = Vec::new();
    while let Some(b) = records.next_batch()? {
        out.push(b);
    }
    Ok((columns, out))
}
