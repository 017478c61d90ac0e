//! A CSV record scanner on csv-core that knows exactly where each record starts.
//!
//! The `csv` crate reports a record's position as where the previous read stopped, which can be
//! inside a CRLF or before blank lines. Range boundaries must compare true record starts, so
//! this scanner skips line terminators itself before each record and counts lines as it goes.

use super::CsvOptions;
use csv_core::{ReadRecordResult, Reader, ReaderBuilder};
use std::io::Read;

const BUFFER: usize = 256 * 1024;
/// The buffer starts this small and doubles (up to `BUFFER`) while reads fill it: a task of
/// thousands of 4 KB objects makes a scanner for each, and fresh 256 KiB buffers were page
/// faults and page zeroing, not parsing.
const FIRST_BUFFER: usize = 8 * 1024;
/// A record larger than this is refused: memory stays bounded even when an unterminated quote
/// would otherwise swallow the rest of a huge file into one field.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// Where a record began (absolute byte offset, line relative to the scanner's start).
#[derive(Clone, Copy, Debug)]
pub struct RecordStart {
    pub offset: u64,
    pub line: u64,
}

pub struct Scanner<R: Read> {
    core: Reader,
    dialect: Dialect,
    src: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    eof: bool,
    /// Absolute offset of `buf[pos]`.
    offset: u64,
    /// Line number (1-based from the start) of `buf[pos]`.
    line: u64,
    /// Fields of the last record: concatenated bytes and end offsets.
    pub fields: Vec<u8>,
    pub ends: Vec<usize>,
    quote: u8,
    escaped: bool,
    /// Whether the last byte consumed was `\r`: a `\n` right after it ends no further line.
    after_cr: bool,
    /// Whether a blank line is a record (one empty field) instead of being skipped. In a
    /// single-column file a blank line is an empty value, as DuckDB and Python's `csv` read it.
    keep_blank_lines: bool,
}

type Dialect = (u8, u8, Option<u8>);

thread_local! {
    /// csv-core readers given back by dropped scanners, by dialect (see `core_reader`).
    static SPARE: std::cell::RefCell<Vec<(Dialect, Reader)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A csv-core reader for `opts`. Building its state machine costs as much as parsing a
/// small object (a tenth of a run over thousands of 4 KB objects), so a dropped scanner gives
/// its reader back to its thread and the next scanner of that dialect resets and reuses it.
/// (Not cloned: csv-core's `Clone` for its DFA copies only part of the tables.)
fn core_reader(opts: &CsvOptions) -> (Dialect, Reader) {
    let dialect = (opts.delimiter, opts.quote, opts.escape);
    let spare = SPARE.with_borrow_mut(|spare| {
        let at = spare.iter().position(|(d, _)| *d == dialect)?;
        Some(spare.swap_remove(at).1)
    });
    let reader = match spare {
        Some(mut reader) => {
            reader.reset();
            reader
        }
        None => ReaderBuilder::new()
            .delimiter(opts.delimiter)
            .quote(opts.quote)
            .double_quote(opts.escape.is_none())
            .escape(opts.escape)
            .build(),
    };
    (dialect, reader)
}

impl<R: Read> Drop for Scanner<R> {
    fn drop(&mut self) {
        let reader = std::mem::take(&mut self.core);
        // Not while the thread is being torn down (its locals may be gone already).
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            // A few dialects at most are in use on a thread at once.
            if spare.len() < 4 {
                spare.push((self.dialect, reader));
            }
        });
    }
}

impl<R: Read> Scanner<R> {
    pub fn new(src: R, opts: &CsvOptions, base: u64) -> Self {
        let (dialect, core) = core_reader(opts);
        Self {
            core,
            dialect,
            src,
            buf: vec![0; FIRST_BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            eof: false,
            offset: base,
            line: 1,
            fields: vec![0; 4096],
            ends: vec![0; 64],
            quote: opts.quote,
            escaped: opts.escape.is_some(),
            after_cr: false,
            keep_blank_lines: false,
        }
    }

    /// From now on, blank lines are records of one empty field (see `take_blank_line`).
    pub fn keep_blank_lines(&mut self, keep: bool) {
        self.keep_blank_lines = keep;
    }

    /// Current absolute offset and line (the start of whatever comes next).
    pub fn here(&self) -> RecordStart {
        RecordStart {
            offset: self.offset,
            line: self.line,
        }
    }

    fn fill(&mut self) -> std::io::Result<()> {
        if self.pos < self.len || self.eof {
            return Ok(());
        }
        if self.len == self.buf.len() && self.buf.len() < BUFFER {
            // The last read filled the buffer (all of it consumed now): a bigger input.
            self.buf = vec![0; self.buf.len() * 2].into_boxed_slice();
        }
        self.pos = 0;
        self.len = loop {
            match self.src.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if self.len == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Consume `n` bytes that hold `newlines` line ends.
    fn advance(&mut self, n: usize, newlines: u64) {
        if n > 0 {
            self.after_cr = self.buf[self.pos + n - 1] == b'\r';
        }
        self.line += newlines;
        self.offset += n as u64;
        self.pos += n;
    }

    /// Whether the line-end byte at `at` of `bytes` (about to be consumed from the current
    /// position) ends a line: `\n`, `\r\n` (once) and a bare `\r` (classic Mac files) all do.
    fn ends_line(&self, bytes: &[u8], at: usize) -> bool {
        match bytes[at] {
            b'\r' => true,
            b'\n' => {
                !(if at == 0 {
                    self.after_cr
                } else {
                    bytes[at - 1] == b'\r'
                })
            }
            _ => false,
        }
    }

    /// Skip blank lines (unless they are records) and leftover terminators; the true start of
    /// the next record, or `None` at the end of the input.
    pub fn peek_start(&mut self) -> std::io::Result<Option<RecordStart>> {
        loop {
            self.fill()?;
            if self.eof {
                return Ok(None);
            }
            let rest = &self.buf[self.pos..self.len];
            if self.keep_blank_lines {
                // The parser consumed the previous record's terminator; only the `\n` of a
                // CRLF pair may be left over. Any other line end starts a blank record.
                if rest[0] == b'\n' && self.after_cr {
                    self.advance(1, 0);
                    continue;
                }
                return Ok(Some(self.here()));
            }
            let skip = rest
                .iter()
                .take_while(|b| **b == b'\n' || **b == b'\r')
                .count();
            let newlines = (0..skip).filter(|at| self.ends_line(rest, *at)).count() as u64;
            self.advance(skip, newlines);
            if self.pos < self.len {
                return Ok(Some(self.here()));
            }
        }
    }

    /// With blank lines kept, consume the blank line at the current position (after
    /// `peek_start`) and return true; false when a non-blank record starts here.
    pub fn take_blank_line(&mut self) -> bool {
        if !self.keep_blank_lines || self.pos >= self.len {
            return false;
        }
        match self.buf[self.pos] {
            b'\r' | b'\n' => {
                self.advance(1, 1);
                // The record: one empty field.
                self.ends[0] = 0;
                true
            }
            _ => false,
        }
    }

    /// Read the record at the current position into `fields`/`ends`; returns the number of
    /// fields and whether it is an unterminated quoted field that swallowed the rest of the input.
    pub fn read_record(&mut self) -> std::io::Result<Option<(usize, bool)>> {
        let (mut nout, mut nend) = (0, 0);
        let mut quotes = 0u64;
        loop {
            self.fill()?;
            let input = &self.buf[self.pos..self.len];
            let (result, nin, out, end) =
                self.core
                    .read_record(input, &mut self.fields[nout..], &mut self.ends[nend..]);
            // One pass for both: line feeds number the lines, quotes reveal an unterminated field.
            let mut newlines = 0;
            for at in memchr::memchr3_iter(b'\n', b'\r', self.quote, &input[..nin]) {
                if input[at] == self.quote {
                    quotes += 1;
                } else if self.ends_line(input, at) {
                    newlines += 1;
                }
            }
            self.advance(nin, newlines);
            nout += out;
            nend += end;
            match result {
                ReadRecordResult::InputEmpty => {
                    if self.eof {
                        continue; // csv-core needs one call with empty input to finish
                    }
                }
                ReadRecordResult::OutputFull => {
                    if self.fields.len() >= MAX_RECORD_BYTES {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "a record starting near line {} is larger than {} MiB (an unterminated quote?)",
                                self.line,
                                MAX_RECORD_BYTES >> 20
                            ),
                        ));
                    }
                    let grown = self.fields.len() * 2;
                    self.fields.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    let unterminated = self.eof && !self.escaped && quotes % 2 == 1;
                    return Ok(Some((nend, unterminated)));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }

    /// Field `i` of the last record.
    pub fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.fields[start..self.ends[i]]
    }

    /// All field bytes of the last record, back to back.
    pub fn all_fields(&self, count: usize) -> &[u8] {
        &self.fields[..if count == 0 { 0 } else { self.ends[count - 1] }]
    }
}
