//! Invalid rows of one source batch, held column-wise: the batch's own columns taken at the
//! failing rows (one `take` per column, no per-row map of values), the reasons, and the
//! records that never became columns (rejected by the reader) with their values as text.
//! Encoded straight to JSON text, in the shape `ErrorRow` has on the wire.

use super::{ErrorRow, kind_name};
use crate::format::Reject;
use crate::validate::FieldError;
use crate::{Error, Result};
use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::compute::take;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use std::fmt::Write as _;

/// Where one error row's values are.
#[derive(Clone, Debug)]
enum Values {
    /// Row `k` of the taken columns.
    Taken(usize),
    /// A record the reader rejected (the fields it could recover, and its raw text), or a
    /// row read back.
    Listed(Box<Listed>),
}

#[derive(Clone, Debug)]
struct Listed {
    values: Vec<(String, Option<String>)>,
    raw: Option<String>,
}

#[derive(Clone, Debug)]
struct Entry {
    line: Option<u64>,
    row: Option<u64>,
    errors: Vec<FieldError>,
    values: Values,
}

/// The invalid rows of one batch, in file order.
#[derive(Clone, Debug, Default)]
pub struct ErrorRows {
    /// The source, and its JSON text (`"s3://…"`, encoded once).
    source: String,
    source_json: String,
    /// Each column's key, JSON-encoded once (`"age":`).
    keys: Vec<String>,
    /// The failing rows of each column.
    columns: Vec<ArrayRef>,
    entries: Vec<Entry>,
}

/// Where a row sits in its source: a line (CSV/JSONL) or a row index (the rest).
pub type Position = (Option<u64>, Option<u64>);

impl ErrorRows {
    /// The rows `failed` (ascending row indexes of `batch`, each with its reasons) plus the
    /// reader's `rejected` records, sorted into file order by position.
    pub fn new(
        source: &str,
        batch: &RecordBatch,
        failed: Vec<(usize, Vec<FieldError>)>,
        position: impl Fn(usize) -> Position,
        rejected: Vec<(Position, Reject)>,
    ) -> Result<Self> {
        let indices = UInt32Array::from_iter_values(failed.iter().map(|(r, _)| *r as u32));
        let columns = if failed.is_empty() {
            Vec::new()
        } else {
            batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Encode {
                    context: "taking invalid rows".into(),
                    message: e.to_string(),
                })?
        };
        let keys = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| format!("{}:", json_string(f.name())))
            .collect();
        let mut entries: Vec<Entry> = failed
            .into_iter()
            .enumerate()
            .map(|(k, (row, errors))| {
                let (line, index) = position(row);
                Entry {
                    line,
                    row: index,
                    errors,
                    values: Values::Taken(k),
                }
            })
            .collect();
        let had_rejects = !rejected.is_empty();
        entries.extend(rejected.into_iter().map(|((line, row), reject)| {
            Entry {
                line,
                row,
                errors: vec![reject.error],
                values: Values::Listed(Box::new(Listed {
                    values: reject
                        .values
                        .into_iter()
                        .map(|(k, v)| (k, Some(v)))
                        .collect(),
                    raw: Some(reject.raw),
                })),
            }
        }));
        if had_rejects {
            // Rejected records among the rows they sat between (a stable sort).
            entries.sort_by_key(|e| (e.line, e.row));
        }
        Ok(Self {
            source: source.to_string(),
            source_json: json_string(source),
            keys,
            columns,
            entries,
        })
    }

    /// Rows read back as `ErrorRow`s (a staged part re-encoded at commit, Flight): one
    /// `ErrorRows` per run of rows from the same source.
    pub fn from_rows(rows: Vec<ErrorRow>) -> Vec<Self> {
        let mut out: Vec<Self> = Vec::new();
        for r in rows {
            let entry = Entry {
                line: r.line,
                row: r.row,
                errors: r.errors,
                values: Values::Listed(Box::new(Listed {
                    values: r
                        .values
                        .into_iter()
                        .map(|(k, v)| {
                            let text = match v {
                                serde_json::Value::Null => None,
                                serde_json::Value::String(s) => Some(s),
                                other => Some(other.to_string()),
                            };
                            (k, text)
                        })
                        .collect(),
                    raw: r.raw,
                })),
            };
            match out.last_mut() {
                Some(last) if last.source == r.source => last.entries.push(entry),
                _ => out.push(Self {
                    source_json: json_string(&r.source),
                    source: r.source,
                    keys: Vec::new(),
                    columns: Vec::new(),
                    entries: vec![entry],
                }),
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each row's error type and reasons (for the report's counters).
    pub fn reasons(&self) -> impl Iterator<Item = (&'static str, &[FieldError])> {
        self.entries
            .iter()
            .map(|e| (e.errors.first().map_or("", kind_name), e.errors.as_slice()))
    }

    /// How much memory these rows hold (to bound what a task keeps back).
    pub fn memory_size(&self) -> usize {
        let text = |s: &String| s.capacity();
        let columns: usize = self.columns.iter().map(|c| c.get_array_memory_size()).sum();
        let entries: usize = self
            .entries
            .iter()
            .map(|e| {
                e.errors.capacity() * std::mem::size_of::<FieldError>()
                    + e.errors
                        .iter()
                        .map(|f| text(&f.message) + f.field.as_ref().map_or(0, text))
                        .sum::<usize>()
                    + match &e.values {
                        Values::Taken(_) => 0,
                        Values::Listed(listed) => {
                            std::mem::size_of::<Listed>()
                                + listed.raw.as_ref().map_or(0, text)
                                + listed
                                    .values
                                    .iter()
                                    .map(|(k, v)| {
                                        std::mem::size_of::<(String, Option<String>)>()
                                            + text(k)
                                            + v.as_ref().map_or(0, text)
                                    })
                                    .sum::<usize>()
                        }
                    }
            })
            .sum();
        columns + self.entries.capacity() * std::mem::size_of::<Entry>() + entries
    }

    /// Every row as one JSONL line, `line` numbers moved on by `line_offset`.
    pub fn write_jsonl(&self, line_offset: u64, out: &mut Vec<u8>) {
        let mut text = Texts::new(&self.columns);
        for entry in &self.entries {
            out.extend_from_slice(b"{\"source\":");
            out.extend_from_slice(self.source_json.as_bytes());
            out.extend_from_slice(b",\"line\":");
            push_number(out, entry.line.map(|l| l + line_offset));
            out.extend_from_slice(b",\"row\":");
            push_number(out, entry.row);
            out.extend_from_slice(b",\"error_type\":\"");
            out.extend_from_slice(entry.errors.first().map_or("", kind_name).as_bytes());
            out.extend_from_slice(b"\",\"errors\":");
            push_errors(out, &entry.errors);
            out.extend_from_slice(b",\"values\":");
            self.push_values(out, entry, &mut text);
            out.extend_from_slice(b",\"raw\":");
            match &entry.values {
                Values::Listed(listed) => match &listed.raw {
                    Some(raw) => push_string(out, raw),
                    None => out.extend_from_slice(b"null"),
                },
                Values::Taken(_) => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b"}\n");
        }
    }

    /// The rows in the columns of [`super::error_schema`] (errors and values as JSON text).
    pub fn to_batch(&self, line_offset: u64) -> Result<RecordBatch> {
        use arrow::array::{Int64Builder, StringBuilder};
        let mut text = Texts::new(&self.columns);
        let n = self.entries.len();
        let mut source = StringBuilder::with_capacity(n, n * self.source.len());
        let mut line = Int64Builder::with_capacity(n);
        let mut row = Int64Builder::with_capacity(n);
        let mut error_type = StringBuilder::new();
        let mut field = StringBuilder::new();
        let mut message = StringBuilder::new();
        let mut errors = StringBuilder::new();
        let mut values = StringBuilder::new();
        let mut raw = StringBuilder::new();
        let mut buf = Vec::new();
        for entry in &self.entries {
            source.append_value(&self.source);
            line.append_option(entry.line.map(|l| (l + line_offset) as i64));
            row.append_option(entry.row.map(|r| r as i64));
            error_type.append_value(entry.errors.first().map_or("", kind_name));
            field.append_option(entry.errors.first().and_then(|e| e.field.as_deref()));
            message.append_value(entry.errors.first().map_or("", |e| e.message.as_str()));
            buf.clear();
            push_errors(&mut buf, &entry.errors);
            errors.append_value(String::from_utf8_lossy(&buf));
            buf.clear();
            self.push_values(&mut buf, entry, &mut text);
            values.append_value(String::from_utf8_lossy(&buf));
            match &entry.values {
                Values::Listed(listed) => raw.append_option(listed.raw.as_deref()),
                Values::Taken(_) => raw.append_null(),
            }
        }
        let columns: Vec<ArrayRef> = vec![
            std::sync::Arc::new(source.finish()),
            std::sync::Arc::new(line.finish()),
            std::sync::Arc::new(row.finish()),
            std::sync::Arc::new(error_type.finish()),
            std::sync::Arc::new(field.finish()),
            std::sync::Arc::new(message.finish()),
            std::sync::Arc::new(errors.finish()),
            std::sync::Arc::new(values.finish()),
            std::sync::Arc::new(raw.finish()),
        ];
        RecordBatch::try_new(super::error_schema(), columns).map_err(|e| Error::Encode {
            context: "building error rows".into(),
            message: e.to_string(),
        })
    }

    fn push_values(&self, out: &mut Vec<u8>, entry: &Entry, text: &mut Texts) {
        out.push(b'{');
        match &entry.values {
            Values::Taken(k) => {
                for (i, key) in self.keys.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key.as_bytes());
                    text.push(out, i, *k);
                }
            }
            Values::Listed(listed) => {
                for (i, (key, value)) in listed.values.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    push_string(out, key);
                    out.push(b':');
                    match value {
                        Some(v) => push_string(out, v),
                        None => out.extend_from_slice(b"null"),
                    }
                }
            }
        }
        out.push(b'}');
    }
}

/// The taken columns as text: strings as they are, anything else through one formatter per
/// column (not one per cell).
struct Texts<'a> {
    columns: &'a [ArrayRef],
    formatters: Vec<Option<ArrayFormatter<'a>>>,
    scratch: String,
}

impl<'a> Texts<'a> {
    fn new(columns: &'a [ArrayRef]) -> Self {
        const OPTIONS: FormatOptions<'static> = FormatOptions::new();
        let formatters = columns
            .iter()
            .map(|c| {
                if c.as_string_opt::<i32>().is_some() {
                    None
                } else {
                    ArrayFormatter::try_new(c.as_ref(), &OPTIONS).ok()
                }
            })
            .collect();
        Self {
            columns,
            formatters,
            scratch: String::new(),
        }
    }

    /// Column `column`'s value at `row`, as a JSON string or `null`.
    fn push(&mut self, out: &mut Vec<u8>, column: usize, row: usize) {
        let array = &self.columns[column];
        if array.is_null(row) {
            out.extend_from_slice(b"null");
            return;
        }
        if let Some(strings) = array.as_string_opt::<i32>() {
            push_string(out, strings.value(row));
            return;
        }
        match &self.formatters[column] {
            Some(f) => {
                self.scratch.clear();
                if write!(self.scratch, "{}", f.value(row)).is_ok() {
                    push_string(out, &self.scratch);
                } else {
                    out.extend_from_slice(b"null");
                }
            }
            None => out.extend_from_slice(b"null"),
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn push_string(out: &mut Vec<u8>, s: &str) {
    // Most values need no escaping: copy those as they are.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn push_number(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_errors(out: &mut Vec<u8>, errors: &[FieldError]) {
    // A handful per row: serde's own encoding keeps them exactly as `ErrorRow` writes them.
    let _ = serde_json::to_writer(&mut *out, errors);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::ErrorKind;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn reason(field: &str, message: &str) -> FieldError {
        FieldError {
            field: Some(field.into()),
            kind: ErrorKind::Constraint,
            message: message.into(),
        }
    }

    #[test]
    fn column_wise_rows_encode_exactly_as_error_rows_do() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("na\"me", DataType::Utf8, true),
            Field::new("age", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), Some("q\"uo\nte"), None])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(300)])),
            ],
        )
        .unwrap();
        let failed = vec![
            (1, vec![reason("age", "Field required")]),
            (
                2,
                vec![reason("age", "too old"), reason("na\"me", "required")],
            ),
        ];
        let rejected = vec![(
            (Some(12), None),
            Reject {
                position: 12,
                values: vec![("na\"me".to_string(), "x".to_string())],
                raw: "x,y,z".to_string(),
                error: FieldError {
                    field: None,
                    kind: ErrorKind::ExtraColumn,
                    message: "Expected 2 fields".into(),
                },
            },
        )];
        let rows = ErrorRows::new(
            "s3://b/k \"1\".csv",
            &batch,
            failed,
            |r| (Some(10 + r as u64 * 2), None),
            rejected,
        )
        .unwrap();
        let mut got = Vec::new();
        rows.write_jsonl(100, &mut got);

        let expected_rows = {
            let mut a = ErrorRow::new("s3://b/k \"1\".csv", Some(112), None, vec![]);
            a.errors = vec![reason("age", "Field required")];
            a.error_type = "constraint".into();
            a.values.insert("na\"me".into(), "q\"uo\nte".into());
            a.values.insert("age".into(), serde_json::Value::Null);
            let mut reject = ErrorRow::new(
                "s3://b/k \"1\".csv",
                Some(112),
                None,
                vec![FieldError {
                    field: None,
                    kind: ErrorKind::ExtraColumn,
                    message: "Expected 2 fields".into(),
                }],
            );
            reject.values.insert("na\"me".into(), "x".into());
            reject.raw = Some("x,y,z".into());
            let mut b = ErrorRow::new(
                "s3://b/k \"1\".csv",
                Some(114),
                None,
                vec![reason("age", "too old"), reason("na\"me", "required")],
            );
            b.values.insert("na\"me".into(), serde_json::Value::Null);
            b.values.insert("age".into(), "300".into());
            vec![a, reject, b]
        };
        let mut expected = Vec::new();
        for row in &expected_rows {
            serde_json::to_writer(&mut expected, row).unwrap();
            expected.push(b'\n');
        }
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        let listed: Vec<ErrorRow> = ErrorRows::from_rows(expected_rows.clone())
            .iter()
            .flat_map(|r| {
                let mut text = Vec::new();
                r.write_jsonl(0, &mut text);
                text.split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice::<ErrorRow>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(listed, expected_rows);
        let batch = rows.to_batch(100).unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(
            batch
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values(),
            &[112, 112, 114]
        );
    }
}
