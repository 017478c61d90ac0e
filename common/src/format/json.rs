//! JSON input: newline-delimited objects (split by byte ranges like CSV, a line never contains
//! a raw newline so every newline is a record boundary) and JSON arrays of objects (streamed
//! element by element, not split).

use super::text::{FIRST_ROWS, TextColumns};
use super::{Positions, Reject, SourceBatch, lossy_capped};
use crate::validate::{ErrorKind, FieldError};
use crate::{Error, Result};
use serde_json::Value;
use std::io::{BufRead, Read};
use std::sync::Arc;

use super::csv::RangeOutcome;
use super::json_row::{KeyIndex, RowScratch, Slot};

/// Longest JSON line accepted.
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Maps JSON keys to columns and fills all-Utf8 batches.
struct ObjectRows {
    index: KeyIndex,
    text: TextColumns,
    extra_keys: Vec<(usize, Vec<String>)>,
    non_strings: Vec<(usize, usize)>,
    scratch: Vec<bool>,
    row: RowScratch,
}

impl ObjectRows {
    fn new(columns: Arc<[String]>, batch_size: usize) -> Self {
        let index = KeyIndex::new(&columns);
        let text = TextColumns::new(&columns, batch_size);
        let scratch = vec![false; columns.len()];
        Self {
            index,
            text,
            extra_keys: Vec::new(),
            non_strings: Vec::new(),
            scratch,
            row: RowScratch::new(columns.len()),
        }
    }

    /// Push one JSON line that is an object, parsed without building a `Value`; `false`
    /// (nothing pushed) for anything else, which `push` after a full parse then handles.
    fn push_line(&mut self, text: &[u8]) -> bool {
        if !self.row.parse(text, &mut self.index) {
            return false;
        }
        for (col, slot) in self.row.slots.iter().enumerate() {
            match slot {
                Slot::Absent | Slot::Null => self.text.push_null(col),
                Slot::Empty => self.text.push_empty(col),
                Slot::Text(range) => self.text.push(col, &self.row.bytes[range.clone()]),
                Slot::NotText(range) => {
                    self.non_strings.push((self.text.rows(), col));
                    self.text.push(col, &self.row.bytes[range.clone()]);
                }
            }
        }
        if !self.row.extras.is_empty() {
            self.extra_keys
                .push((self.text.rows(), std::mem::take(&mut self.row.extras)));
        }
        self.text.end_row();
        true
    }

    /// Push one object as a row. Scalars become their text; nested values their JSON text.
    fn push(&mut self, object: &serde_json::Map<String, Value>) {
        self.scratch.iter_mut().for_each(|s| *s = false);
        let mut extras = Vec::new();
        for (key, value) in object {
            let Some(col) = self.index.get(key) else {
                extras.push(key.clone());
                continue;
            };
            if self.scratch[col] {
                continue;
            }
            self.scratch[col] = true;
            let target = self.row.targets.get(col).copied().unwrap_or_default();
            if target == Target::Text && !matches!(value, Value::Null | Value::String(_)) {
                self.non_strings.push((self.text.rows(), col));
            }
            match value {
                Value::Null => self.text.push_null(col),
                Value::String(s) => {
                    let target = self.row.targets.get(col).copied().unwrap_or_default();
                    if s.is_empty() && target != Target::Nested {
                        self.text.push_empty(col);
                    } else {
                        let mut text = Vec::with_capacity(s.len() + 2);
                        target.string_text(s, &mut text);
                        self.text.push(col, &text);
                    }
                }
                Value::Bool(b) => {
                    let target = self.row.targets.get(col).copied().unwrap_or_default();
                    self.text.push(col, target.bool_text(*b).as_bytes())
                }
                Value::Number(n) => {
                    let target = self.row.targets.get(col).copied().unwrap_or_default();
                    match n
                        .as_f64()
                        .filter(|_| n.is_f64())
                        .and_then(|f| target.float_text(f))
                    {
                        Some(text) => self.text.push(col, text.as_bytes()),
                        None => self.text.push(col, n.to_string().as_bytes()),
                    }
                }
                nested => self.text.push(col, nested.to_string().as_bytes()),
            }
        }
        // Columns absent from this object are null, in column order.
        for col in 0..self.scratch.len() {
            if !self.scratch[col] {
                self.push_missing(col);
            }
        }
        if !extras.is_empty() {
            self.extra_keys.push((self.text.rows(), extras));
        }
        self.text.end_row();
    }

    fn push_missing(&mut self, col: usize) {
        self.text.push_null(col);
    }

    fn take(
        &mut self,
        source: &Arc<str>,
        positions: Positions,
        rejects: Vec<Reject>,
    ) -> SourceBatch {
        SourceBatch {
            source: source.clone(),
            batch: self.text.finish(),
            positions,
            rejects,
            extra_keys: std::mem::take(&mut self.extra_keys),
            non_strings: std::mem::take(&mut self.non_strings),
        }
    }
}

/// Reads the JSON lines of one range (see the CSV module for the range rules).
pub struct JsonLines<R: BufRead> {
    reader: R,
    rows: ObjectRows,
    lines: Vec<u64>,
    rejects: Vec<Reject>,
    source: Arc<str>,
    /// Absolute offset and line number of the next unread byte.
    offset: u64,
    line: u64,
    end: Option<u64>,
    batch_size: usize,
    buf: Vec<u8>,
    outcome: RangeOutcome,
    first_line: u64,
    done: bool,
}

/// What a column holds in the job's schema, for the JSON values pydantic's JSON mode takes
/// across types: `true` in a number field is 1, `1.0` in a boolean field is true, and a string
/// in a list, model or dict field is a string (a type error), not the JSON text it may hold.
/// (A CSV cell "true" or "1.0" stays text, which pydantic refuses there; a CSV cell of a list
/// holds its JSON text.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    #[default]
    Other,
    Number,
    Bool,
    Nested,
    /// A string field (`str`, `EmailStr`, `UUID`, a `Literal` of strings, …): a number, boolean,
    /// list or object there fails the row, as pydantic's JSON mode refuses it.
    Text,
}

impl Target {
    /// A field's target, by its type alone: pydantic takes `true` for `Literal[1]` and an
    /// `IntEnum` too (checked against pydantic 2.12).
    pub fn of(field: &crate::schema::FieldSpec) -> Self {
        use arrow::datatypes::DataType;
        let data_type = &field.data_type;
        if data_type.is_integer() || data_type.is_floating() {
            Target::Number
        } else if *data_type == DataType::Boolean {
            Target::Bool
        } else if data_type.is_nested() {
            Target::Nested
        } else if matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            Target::Text
        } else {
            Target::Other
        }
    }

    /// A JSON boolean's text in such a column.
    pub(crate) fn bool_text(self, value: bool) -> &'static str {
        match (value, self) {
            (true, Target::Number) => "1",
            (false, Target::Number) => "0",
            (true, _) => "true",
            (false, _) => "false",
        }
    }

    /// A JSON string's cell text: its JSON form (quoted) in a nested column, else as it is.
    pub(crate) fn string_text(self, value: &str, out: &mut Vec<u8>) {
        if self == Target::Nested {
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, value);
        } else {
            out.extend_from_slice(value.as_bytes());
        }
    }

    /// A JSON float's text when the column reads it otherwise (`1.0` in a boolean is `1`).
    pub(crate) fn float_text(self, value: f64) -> Option<&'static str> {
        match self {
            Target::Bool if value == 1.0 => Some("1"),
            Target::Bool if value == 0.0 => Some("0"),
            _ => None,
        }
    }
}

/// What each of `columns` holds in `schema` (see [`Target`]).
pub fn targets(columns: &[String], schema: Option<&crate::schema::CompiledSchema>) -> Vec<Target> {
    columns
        .iter()
        .map(|name| {
            schema
                .and_then(|s| s.fields().iter().find(|f| f.name == *name))
                .map_or(Target::Other, Target::of)
        })
        .collect()
}

impl<R: BufRead> JsonLines<R> {
    /// Read the columns' JSON values as their schema types take them (see [`Target`]).
    pub fn with_targets(mut self, targets: Vec<Target>) -> Self {
        self.rows.row.targets = targets;
        self
    }

    pub fn new(
        reader: R,
        columns: Arc<[String]>,
        source: Arc<str>,
        base: u64,
        line_base: u64,
        end: Option<u64>,
        batch_size: usize,
    ) -> Self {
        Self {
            reader,
            rows: ObjectRows::new(columns, batch_size),
            lines: Vec::with_capacity(batch_size.min(FIRST_ROWS)),
            rejects: Vec::new(),
            source,
            offset: base,
            line: line_base,
            end,
            batch_size,
            buf: Vec::new(),
            outcome: RangeOutcome {
                first_record: base,
                end: base,
                lines: 0,
            },
            first_line: line_base,
            done: false,
        }
    }

    pub fn outcome(&self) -> RangeOutcome {
        self.outcome
    }

    pub fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        while !self.done && !self.rows.text.is_full(self.batch_size) {
            self.read_line()?;
        }
        if self.rows.text.rows() == 0 && self.rejects.is_empty() {
            return Ok(None);
        }
        let positions = Positions::Lines(std::mem::take(&mut self.lines));
        let rejects = std::mem::take(&mut self.rejects);
        Ok(Some(self.rows.take(&self.source, positions, rejects)))
    }

    fn read_line(&mut self) -> Result<()> {
        if self.end.is_some_and(|end| self.offset >= end) {
            return {
                self.finish();
                Ok(())
            };
        }
        self.buf.clear();
        // Bounded: a line longer than the cap fails the object instead of exhausting memory.
        let n = (&mut self.reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| Error::io(format!("reading {}", self.source), e))?;
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(Error::corrupt(
                self.source.to_string(),
                format!(
                    "line {} is longer than {} MiB",
                    self.line,
                    MAX_LINE_BYTES >> 20
                ),
            ));
        }
        if n == 0 {
            return {
                self.finish();
                Ok(())
            };
        }
        let line = self.line;
        self.offset += n as u64;
        if self.buf.ends_with(b"\n") {
            self.line += 1;
        }
        let text = self.buf.trim_ascii();
        if text.is_empty() {
            return Ok(());
        }
        if self.rows.push_line(text) {
            self.lines.push(line);
            return Ok(());
        }
        match serde_json::from_slice::<Value>(text) {
            Ok(Value::Object(object)) => {
                self.rows.push(&object);
                self.lines.push(line);
            }
            Ok(other) => {
                let kind = match other {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                self.reject(line, format!("expected a JSON object, found {kind}"));
            }
            Err(e) => {
                let message = if std::str::from_utf8(text).is_err() {
                    "invalid UTF-8".to_string()
                } else {
                    format!("invalid JSON: {e}")
                };
                self.reject(line, message);
            }
        }
        Ok(())
    }

    fn reject(&mut self, line: u64, message: String) {
        let raw = lossy_capped(self.buf.trim_ascii());
        self.rejects.push(Reject {
            position: line,
            values: Vec::new(),
            raw,
            error: FieldError {
                field: None,
                kind: ErrorKind::MalformedRecord,
                message,
            },
        });
    }

    fn finish(&mut self) {
        self.outcome.end = self.offset;
        self.outcome.lines = self.line - self.first_line;
        self.done = true;
    }
}

/// Only a `.json` document (possibly compressed) may be one JSON array; JSONL (`.jsonl`,
/// `.ndjson`) is one value per line whatever its first line holds.
pub fn may_be_array(url: &str) -> bool {
    let name = url.to_ascii_lowercase();
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(&name);
    name.ends_with(".json")
}

/// Whether a `.json` input that starts with `prefix` is one JSON document (a top-level array
/// of objects, or one pretty-printed object) rather than JSON lines: it opens with `[`, or
/// with a line holding `{` alone, as `json.dumps(indent=…)` and jq write an object. (A first
/// line that is a broken object stays a malformed JSON line, not a broken document.)
pub fn is_document(prefix: &[u8]) -> bool {
    let Some(start) = prefix.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    let rest = &prefix[start..];
    match rest[0] {
        b'[' => true,
        b'{' => memchr::memchr(b'\n', rest).is_some_and(|end| rest[..end].trim_ascii() == b"{"),
        _ => false,
    }
}

/// Stream the elements of a top-level JSON array of objects, `batch_size` rows at a time; a
/// document that is one object is one row.
/// Elements that are not objects become rejects; a syntax error fails the object (a broken
/// array has no record boundaries to recover from).
pub fn read_array<R: Read>(
    reader: R,
    columns: Arc<[String]>,
    targets: Vec<Target>,
    source: Arc<str>,
    batch_size: usize,
    mut emit: impl FnMut(SourceBatch) -> Result<()>,
) -> Result<()> {
    use serde::de::{DeserializeSeed, SeqAccess, Visitor};

    struct State<'a, F> {
        rows: ObjectRows,
        rejects: Vec<Reject>,
        source: Arc<str>,
        batch_size: usize,
        next_row: u64,
        batch_first: u64,
        emit: &'a mut F,
        failure: Option<Error>,
    }

    impl<F: FnMut(SourceBatch) -> Result<()>> State<'_, F> {
        fn flush(&mut self) -> Result<()> {
            if self.rows.text.rows() == 0 && self.rejects.is_empty() {
                return Ok(());
            }
            let positions = Positions::Rows {
                first: self.batch_first,
            };
            let rejects = std::mem::take(&mut self.rejects);
            let batch = self.rows.take(&self.source, positions, rejects);
            self.batch_first = self.next_row;
            (self.emit)(batch)
        }
    }

    struct ArrayVisitor<'s, 'a, F>(&'s mut State<'a, F>);

    impl<'de, F: FnMut(SourceBatch) -> Result<()>> Visitor<'de> for ArrayVisitor<'_, '_, F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of objects, or one object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            map: A,
        ) -> std::result::Result<(), A::Error> {
            let object: serde_json::Map<String, Value> =
                serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            self.0.next_row += 1;
            self.0.rows.push(&object);
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            let state = self.0;
            while let Some(value) = seq.next_element::<Value>()? {
                let row = state.next_row;
                state.next_row += 1;
                match value {
                    Value::Object(object) => {
                        // Row positions inside a batch must stay consecutive: rejects carry their own.
                        state.rows.push(&object);
                    }
                    other => state.rejects.push(Reject {
                        position: row,
                        values: Vec::new(),
                        raw: lossy_capped(other.to_string().as_bytes()),
                        error: FieldError {
                            field: None,
                            kind: ErrorKind::MalformedRecord,
                            message: "array element is not a JSON object".into(),
                        },
                    }),
                }
                if (state.rows.text.is_full(state.batch_size) || !state.rejects.is_empty())
                    && let Err(e) = state.flush()
                {
                    state.failure = Some(e);
                    return Err(serde::de::Error::custom("stopped"));
                }
            }
            Ok(())
        }
    }

    impl<'de, F: FnMut(SourceBatch) -> Result<()>> DeserializeSeed<'de> for ArrayVisitor<'_, '_, F> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    let mut rows = ObjectRows::new(columns, batch_size);
    rows.row.targets = targets;
    let mut state = State {
        rows,
        rejects: Vec::new(),
        source: source.clone(),
        batch_size,
        next_row: 0,
        batch_first: 0,
        emit: &mut emit,
        failure: None,
    };
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let parsed = ArrayVisitor(&mut state).deserialize(&mut de);
    if let Some(failure) = state.failure.take() {
        return Err(failure);
    }
    parsed
        .and_then(|_| de.end())
        .map_err(|e| Error::corrupt(source.to_string(), format!("invalid JSON document: {e}")))?;
    state.flush()
}

impl<R: BufRead> crate::format::BatchSource for JsonLines<R> {
    fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        Self::next_batch(self)
    }

    fn outcome(&self) -> Option<RangeOutcome> {
        Some(Self::outcome(self))
    }
}
