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
    delimiter: u8,
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
            delimiter: opts.delimiter,
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
        let mut quotes = QuoteState::default();
        loop {
            self.fill()?;
            let input = &self.buf[self.pos..self.len];
            let (result, nin, out, end) =
                self.core
                    .read_record(input, &mut self.fields[nout..], &mut self.ends[nend..]);
            // One pass for both: line feeds number the lines, quotes tell whether the record
            // ends inside a quoted field.
            let mut newlines = 0;
            quotes.chunk_starts(&input[..nin], self.quote);
            for at in memchr::memchr3_iter(b'\n', b'\r', self.quote, &input[..nin]) {
                if input[at] == self.quote {
                    quotes.quote_at(&input[..nin], at, self.quote, self.delimiter);
                } else if self.ends_line(input, at) {
                    newlines += 1;
                }
            }
            quotes.chunk_ends(&input[..nin]);
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
                    let unterminated = self.eof && !self.escaped && quotes.in_quoted_field();
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

/// Whether a record's bytes, read chunk by chunk, are inside a quoted field, as csv-core reads
/// them: a quote opens a quoted field only at a field's start; inside one, `""` is a quote and
/// a lone quote closes it; any other quote is a literal character (`b"`). Counting quotes
/// alone would take a stray quote in the last record of a file without a final newline for
/// an unterminated field.
#[derive(Default)]
struct QuoteState {
    quoted: bool,
    /// Inside a quoted field, a chunk ended on a quote: the next byte decides (another quote:
    /// an escaped one; anything else: it closed the field).
    quote_ended_chunk: bool,
    /// The next quote is the second of a `""` pair at this offset of the chunk.
    pair_at: Option<usize>,
    /// The byte before the chunk (`None`: the record starts there).
    before: Option<u8>,
}

impl QuoteState {
    fn chunk_starts(&mut self, chunk: &[u8], quote: u8) {
        self.pair_at = None;
        if std::mem::take(&mut self.quote_ended_chunk) {
            match chunk.first() {
                Some(&b) if b == quote => self.pair_at = Some(0),
                Some(_) => self.quoted = false,
                None => self.quote_ended_chunk = true,
            }
        }
    }

    fn quote_at(&mut self, chunk: &[u8], at: usize, quote: u8, delimiter: u8) {
        if self.pair_at == Some(at) {
            self.pair_at = None;
            return;
        }
        if self.quoted {
            match chunk.get(at + 1) {
                Some(&b) if b == quote => self.pair_at = Some(at + 1),
                Some(_) => self.quoted = false,
                None => self.quote_ended_chunk = true,
            }
        } else {
            let before = if at == 0 {
                self.before
            } else {
                Some(chunk[at - 1])
            };
            // At a field's start: the record's, or right after a delimiter.
            self.quoted = before.is_none_or(|b| b == delimiter || b == b'\n' || b == b'\r');
        }
    }

    fn chunk_ends(&mut self, chunk: &[u8]) {
        if let Some(&last) = chunk.last() {
            self.before = Some(last);
        }
    }

    /// At the end of the input: whether the record is still inside a quoted field (a quote
    /// that ended the input closed it).
    fn in_quoted_field(&self) -> bool {
        self.quoted && !self.quote_ended_chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per read: every quote falls on a chunk's edge.
    struct ByteByByte<'a>(&'a [u8]);

    impl Read for ByteByByte<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            out[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }

    /// Whether the last record of `input` ends inside a quoted field, read whole and byte by byte.
    fn last_unterminated(input: &[u8]) -> (bool, bool) {
        fn last<R: Read>(mut scanner: Scanner<R>) -> bool {
            let mut last = None;
            while scanner.peek_start().unwrap().is_some() {
                last = scanner.read_record().unwrap().map(|(_, u)| u);
            }
            last.unwrap()
        }
        let opts = CsvOptions::default();
        (
            last(Scanner::new(input, &opts, 0)),
            last(Scanner::new(ByteByByte(input), &opts, 0)),
        )
    }

    #[test]
    fn only_an_open_quoted_field_is_unterminated() {
        // A stray quote in an unquoted field is a character, final newline or not.
        for stray in [
            &b"x,y\na,b\""[..],
            b"x,y\na\",b",
            b"x,y\na,\"b\"c\"",
            b"x,y\n\"a\",b\"c",
            b"x,y\na,\"b\"\"\"",
            b"x,y\na,\"\"",
            b"x,y\na,\"b\"",
        ] {
            let shown = String::from_utf8_lossy(stray);
            assert_eq!(last_unterminated(stray), (false, false), "{shown}");
        }
        for open in [
            &b"x,y\na,\"b"[..],
            b"x,y\na,\"b\"\"",
            b"x,y\n\"a\nb,c",
            b"x,y\na,\"b\nc\"\"d",
        ] {
            let shown = String::from_utf8_lossy(open);
            assert_eq!(last_unterminated(open), (true, true), "{shown}");
        }
    }
}
