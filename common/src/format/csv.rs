//! CSV input: header detection, byte-range framing and a tolerant record reader.
//!
//! A byte range `[start, end)` owns the records that *start* inside it. A range that does not
//! begin the file skips to the first line start at or after `start`; it reads past `end` to
//! finish its last record. Each range reports where its first record began and where its last
//! one ended, so the planner can prove that neighbouring ranges met at a true record boundary —
//! a quoted newline that crossed a boundary shows up as a mismatch and the file is re-read whole.

use super::csv_scan::{RecordStart, Scanner};
use super::text::{FIRST_ROWS, TextColumns};
use super::{CsvOptions, Positions, Reject, SourceBatch, lossy_capped};
use crate::validate::{ErrorKind, FieldError};
use crate::{Error, Result};
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

/// Parse the header (or, without one, count the columns) from the first bytes of a file.
/// Returns the column names and the byte offset where data starts; `None` when `head` does not
/// yet hold one complete record and more bytes are needed. Read with the record scanner (its
/// csv-core reader reused per thread): a task of thousands of small objects reads a header
/// from each.
/// `Err`: the first record opens a quoted field that runs to the end of the input (a header
/// would swallow the whole file).
pub fn read_header(
    head: &[u8],
    at_eof: bool,
    opts: &CsvOptions,
) -> Result<Option<(Vec<String>, u64)>, &'static str> {
    // A byte-order mark is not part of the first field (it may come before a quote).
    let bom = if head.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut scanner = Scanner::new(&head[bom..], opts, bom as u64);
    match scanner.read_record() {
        // Open to the end of `head`: more of the file may close it, the file's end cannot.
        Ok(Some((_, true))) => {
            if at_eof {
                Err(UNTERMINATED_HEADER)
            } else {
                Ok(None)
            }
        }
        Ok(Some((count, _))) => {
            let end = scanner.here().offset;
            // The record is complete only if a terminator followed it (or the file ended).
            let complete = at_eof || (end as usize) < head.len() || head.ends_with(b"\n");
            if !complete {
                return Ok(None);
            }
            let names = if opts.header {
                (0..count)
                    .map(|i| {
                        let name = String::from_utf8_lossy(scanner.field(i))
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
                (1..=count).map(|i| format!("column_{i}")).collect()
            };
            Ok(Some((
                unique_names(names),
                if opts.header { end } else { 0 },
            )))
        }
        Ok(None) | Err(_) => Ok(at_eof.then(|| (Vec::new(), 0))),
    }
}

const UNTERMINATED_HEADER: &str =
    "the first line opens a quoted field that is never closed: it runs to the end of the file";

/// Repeated header names get `_2`, `_3`… so no column silently shadows another.
fn unique_names(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .map(|name| {
            let mut candidate = name.clone();
            let mut n = 2;
            while !seen.insert(candidate.clone()) {
                candidate = format!("{name}_{n}");
                n += 1;
            }
            candidate
        })
        .collect()
}

/// Skip from `start - 1` to the first line start at or after `start`. `reader` must be
/// positioned at `start - 1` (so a line end right before `start` counts). A line ends at `\n`
/// and, with `cr_ends_lines` (CSV, whose parser also ends records at a bare `\r`, as classic
/// Mac files and some spreadsheet exports do), at `\r` or `\r\n`. Returns the offset of that
/// line start, or `None` when the input ends first.
pub fn skip_to_line_start<R: BufRead>(
    reader: &mut R,
    start: u64,
    cr_ends_lines: bool,
) -> std::io::Result<Option<u64>> {
    let mut skipped = 0u64;
    // Find the first line end.
    let ended_with_cr = loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        let found = if cr_ends_lines {
            memchr::memchr2(b'\n', b'\r', buf)
        } else {
            memchr::memchr(b'\n', buf)
        };
        match found {
            Some(i) => {
                let cr = buf[i] == b'\r';
                reader.consume(i + 1);
                skipped += i as u64 + 1;
                break cr;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
                skipped += n as u64;
            }
        }
    };
    let next = reader.fill_buf()?;
    if next.is_empty() {
        // The line end was the last byte: no record starts in or after this range.
        return Ok(None);
    }
    if ended_with_cr && next[0] == b'\n' {
        // CRLF: the line starts after the pair.
        reader.consume(1);
        skipped += 1;
        if reader.fill_buf()?.is_empty() {
            return Ok(None);
        }
    }
    Ok(Some(start - 1 + skipped))
}

/// Reads records of one range into all-Utf8 batches.
pub struct CsvRecords<R: Read> {
    scanner: Scanner<R>,
    columns: Arc<[String]>,
    text: TextColumns,
    lines: Vec<u64>,
    rejects: Vec<Reject>,
    source: Arc<str>,
    /// Line number of the reader's first line, when known (otherwise lines count from the
    /// range's first record and the commit renumbers them).
    line_base: u64,
    /// Scanner line of the line numbered `line_base` (its first record, for ranges not at 0).
    first_line: Option<u64>,
    end: Option<u64>,
    skip_header: bool,
    batch_size: usize,
    outcome: RangeOutcome,
    done: bool,
}

impl<R: Read> CsvRecords<R> {
    /// `reader` starts at absolute offset `base`, which is line `line_base`; records starting
    /// at or after `end` are left to the next range. Ranges that do not start the file
    /// (`base > 0`) number lines from their first record, and report line counts from there.
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
        let mut scanner = Scanner::new(reader, opts, base);
        // A blank line in a single-column file is an empty value (after the header, if any).
        scanner.keep_blank_lines(!skip_header && columns.len() == 1);
        Self {
            scanner,
            columns,
            text,
            lines: Vec::with_capacity(batch_size.min(FIRST_ROWS)),
            rejects: Vec::new(),
            source,
            line_base,
            first_line: if base == 0 { Some(1) } else { None },
            end,
            skip_header,
            batch_size,
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
            non_strings: Vec::new(),
        }))
    }

    fn io(&self, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::InvalidData
            && e.get_ref().is_some_and(|i| !i.is::<Error>())
        {
            return Error::corrupt(self.source.to_string(), e);
        }
        Error::io(format!("reading {}", self.source), e)
    }

    fn read_one(&mut self) -> Result<()> {
        let start = match self.scanner.peek_start().map_err(|e| self.io(e))? {
            Some(start) => start,
            None => {
                let here = self.scanner.here();
                return {
                    self.finish(here);
                    Ok(())
                };
            }
        };
        if self.first_line.is_none() {
            self.first_line = Some(start.line);
            self.outcome.first_record = start.offset;
        }
        if self.end.is_some_and(|end| start.offset >= end) {
            // This record belongs to the next range: we end where it starts.
            return {
                self.finish(start);
                Ok(())
            };
        }
        if self.scanner.take_blank_line() {
            let line = self.line_base + start.line - self.first_line.unwrap_or(1);
            self.check_and_push(line, 1, 0, false);
            return Ok(());
        }
        let Some((count, unterminated)) = self.scanner.read_record().map_err(|e| self.io(e))?
        else {
            let here = self.scanner.here();
            return {
                self.finish(here);
                Ok(())
            };
        };
        if self.skip_header {
            self.skip_header = false;
            self.scanner.keep_blank_lines(self.columns.len() == 1);
            return Ok(());
        }
        let line = self.line_base + start.line - self.first_line.unwrap_or(1);
        let spans = self.scanner.here().line - start.line;
        self.check_and_push(line, count, spans, unterminated);
        Ok(())
    }

    fn finish(&mut self, at: RecordStart) {
        if self.first_line.is_none() {
            // No record starts in this range at all.
            self.outcome.first_record = at.offset;
        }
        self.outcome.end = at.offset;
        self.outcome.lines = at.line - self.first_line.unwrap_or(at.line);
        self.done = true;
    }

    fn check_and_push(&mut self, line: u64, count: usize, spans: u64, unterminated: bool) {
        let width = self.text.width();
        if unterminated {
            let message = format!(
                "unterminated quoted field: the record runs from line {line} over {spans} line(s) to the end of the input"
            );
            self.reject(line, count, None, ErrorKind::MalformedRecord, message);
            return;
        }
        if std::str::from_utf8(self.scanner.all_fields(count)).is_err() {
            let field = (0..count)
                .find(|i| std::str::from_utf8(self.scanner.field(*i)).is_err())
                .map(|i| self.column_name(i));
            let message = format!(
                "invalid UTF-8 in {}",
                field
                    .as_deref()
                    .map_or("record".to_string(), |f| format!("field '{f}'"))
            );
            self.reject(line, count, field, ErrorKind::MalformedRecord, message);
            return;
        }
        if count != width {
            // Like DuckDB's MISSING COLUMNS / TOO MANY COLUMNS; the record, not a field, is at fault.
            let kind = if count < width {
                ErrorKind::MissingColumn
            } else {
                ErrorKind::ExtraColumn
            };
            let field = None;
            let message = format!("expected {width} fields, found {count}");
            self.reject(line, count, field, kind, message);
            return;
        }
        for i in 0..count {
            let (start, end) = (
                if i == 0 { 0 } else { self.scanner.ends[i - 1] },
                self.scanner.ends[i],
            );
            self.text.push(i, &self.scanner.fields[start..end]);
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

    fn reject(
        &mut self,
        line: u64,
        count: usize,
        field: Option<String>,
        kind: ErrorKind,
        message: String,
    ) {
        let values = (0..count)
            .map(|i| {
                (
                    self.column_name(i),
                    String::from_utf8_lossy(self.scanner.field(i)).into_owned(),
                )
            })
            .collect();
        let mut raw = Vec::new();
        for i in 0..count {
            if i > 0 {
                raw.push(b',');
            }
            raw.extend_from_slice(self.scanner.field(i));
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
}

impl<R: Read> crate::format::BatchSource for CsvRecords<R> {
    fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        Self::next_batch(self)
    }

    fn outcome(&self) -> Option<RangeOutcome> {
        Some(Self::outcome(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(head: &[u8], at_eof: bool) -> Option<(Vec<String>, u64)> {
        read_header(head, at_eof, &CsvOptions::default()).unwrap()
    }

    #[test]
    fn header_names_and_where_data_starts() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(header(b"a,b\n1,2\n", false), Some((names(&["a", "b"]), 4)));
        // A byte-order mark before a quoted name, CRLF, blank and repeated names.
        assert_eq!(
            header(b"\xEF\xBB\xBF\"x y\",,x,x\r\n1,2,3,4\r\n", false),
            Some((names(&["x y", "column_2", "x", "x_2"]), 14))
        );
        // As the csv crate counts: a CRLF's `\n` is left to the next record's start.
        assert_eq!(header(b"a\r\n1\r\n", false), Some((names(&["a"]), 2)));
        // Blank lines before the header are skipped, and counted in the offset.
        assert_eq!(header(b"\n\na\n1\n", false), Some((names(&["a"]), 4)));
        // Not complete yet unless the file ends there.
        assert_eq!(header(b"a,b", false), None);
        assert_eq!(header(b"a,b", true), Some((names(&["a", "b"]), 3)));
        assert_eq!(header(b"", true), Some((Vec::new(), 0)));
        // A header whose quote never closes would swallow the file: refused.
        let opts = CsvOptions::default();
        assert_eq!(
            read_header(b"a,b,\"c\n1,2,3\n", true, &opts),
            Err(UNTERMINATED_HEADER)
        );
        // Until the input ends it may still close.
        assert_eq!(read_header(b"a,b,\"c\n1,2,3\n", false, &opts), Ok(None));
    }
}
