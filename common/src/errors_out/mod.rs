//! Invalid rows as output: every row that failed keeps its source (object URL and line, or row
//! index), its original values and every reason. JSONL by default (nested `errors` / `values`),
//! or any other output format with those two as JSON text columns. Tasks hold and write them
//! column-wise (`ErrorRows`); `ErrorRow` is one row read back.

mod rows;

pub use rows::{ErrorRows, Position};

use crate::format::Format;
use crate::format::write::{PartWriter, WriteOptions};
use crate::storage::{StagedObject, StagedWriter};
use crate::validate::FieldError;
use crate::{Error, Result};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::Arc;

/// One rejected row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorRow {
    pub source: String,
    /// Line where the record starts (CSV/JSONL), 1-based.
    pub line: Option<u64>,
    /// Row index in the file (Parquet/Arrow/JSON array), 0-based.
    pub row: Option<u64>,
    /// The type of the first error (coercion, constraint, missing_column, extra_column, malformed_record).
    pub error_type: String,
    pub errors: Vec<FieldError>,
    /// Original values by column, as text (null stays null).
    pub values: serde_json::Map<String, serde_json::Value>,
    /// The raw record, for records that could not be split into fields.
    #[serde(default)]
    pub raw: Option<String>,
}

impl ErrorRow {
    pub fn new(source: &str, line: Option<u64>, row: Option<u64>, errors: Vec<FieldError>) -> Self {
        let error_type = errors
            .first()
            .map(kind_name)
            .unwrap_or_default()
            .to_string();
        Self {
            source: source.to_string(),
            line,
            row,
            error_type,
            errors,
            values: serde_json::Map::new(),
            raw: None,
        }
    }
}

fn kind_name(e: &FieldError) -> &'static str {
    use crate::validate::ErrorKind;
    match e.kind {
        ErrorKind::Coercion => "coercion",
        ErrorKind::Constraint => "constraint",
        ErrorKind::MissingColumn => "missing_column",
        ErrorKind::ExtraColumn => "extra_column",
        ErrorKind::MalformedRecord => "malformed_record",
    }
}

/// The Arrow shape of error rows in CSV/Parquet/Arrow outputs.
pub fn error_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("line", DataType::Int64, true),
        Field::new("row", DataType::Int64, true),
        Field::new("error_type", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("message", DataType::Utf8, false),
        Field::new("errors", DataType::Utf8, false),
        Field::new("values", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, true),
    ]))
}

/// Error rows in the shape of [`error_schema`] (also what Flight clients receive).
pub fn to_batch(rows: &[ErrorRow]) -> Result<RecordBatch> {
    let batches = ErrorRows::from_rows(rows.to_vec())
        .iter()
        .map(|r| r.to_batch(0))
        .collect::<Result<Vec<_>>>()?;
    arrow::compute::concat_batches(&error_schema(), &batches).map_err(|e| Error::Encode {
        context: "building error rows".into(),
        message: e.to_string(),
    })
}

/// Streams error rows into one part.
pub enum ErrorWriter {
    Jsonl {
        sink: Box<StagedWriter>,
        line: Vec<u8>,
    },
    Batches(Box<PartWriter>),
}

impl ErrorWriter {
    pub fn new(format: Format, sink: StagedWriter, options: &WriteOptions) -> Result<Self> {
        Ok(match format {
            Format::Jsonl => ErrorWriter::Jsonl {
                sink: Box::new(sink),
                line: Vec::new(),
            },
            other => ErrorWriter::Batches(Box::new(PartWriter::new(
                other,
                error_schema(),
                sink,
                options,
            )?)),
        })
    }

    /// Write rows read back (a staged part re-encoded at commit), through the one encoder.
    pub fn write(&mut self, rows: Vec<ErrorRow>) -> Result<()> {
        for run in ErrorRows::from_rows(rows) {
            self.write_rows(&run, 0)?;
        }
        Ok(())
    }

    /// Write one batch's error rows, their line numbers moved on by `line_offset`.
    pub fn write_rows(&mut self, rows: &ErrorRows, line_offset: u64) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            ErrorWriter::Jsonl { sink, line } => {
                line.clear();
                rows.write_jsonl(line_offset, line);
                sink.write_all(line)
                    .map_err(|e| Error::io("writing error rows", e))
            }
            ErrorWriter::Batches(writer) => writer.write(&rows.to_batch(line_offset)?),
        }
    }

    /// Write a batch of error rows read back from a columnar part (as `error_schema` holds them).
    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            ErrorWriter::Batches(writer) => writer.write(batch),
            ErrorWriter::Jsonl { .. } => Err(Error::config(
                "internal: columnar error rows written into a JSONL part",
            )),
        }
    }

    pub fn is_jsonl(&self) -> bool {
        matches!(self, ErrorWriter::Jsonl { .. })
    }

    /// Append one JSONL error row as it is (already serialized, no newline). `false` when
    /// this writer is not JSONL (the caller then writes `ErrorRow`s).
    pub fn write_json_line(&mut self, json: &[u8]) -> Result<bool> {
        let ErrorWriter::Jsonl { sink, .. } = self else {
            return Ok(false);
        };
        sink.write_all(json)
            .and_then(|()| sink.write_all(b"\n"))
            .map_err(|e| Error::io("writing error rows", e))?;
        Ok(true)
    }

    pub fn finish(self) -> Result<StagedObject> {
        match self {
            ErrorWriter::Jsonl { sink, .. } => sink.finish(),
            ErrorWriter::Batches(writer) => writer.finish(),
        }
    }
}

/// A batch of error rows (as `error_schema` holds them) with `line` moved on by `offset`:
/// one kernel over the column, no row parsed.
pub fn shift_lines(batch: &RecordBatch, offset: u64) -> Result<RecordBatch> {
    if offset == 0 {
        return Ok(batch.clone());
    }
    let encode = |e: arrow::error::ArrowError| Error::Encode {
        context: "renumbering error rows".into(),
        message: e.to_string(),
    };
    let schema = batch.schema();
    let (at, _) = schema
        .column_with_name("line")
        .ok_or_else(|| Error::config("internal: error rows without a line column"))?;
    let offset = i64::try_from(offset).map_err(|e| Error::config(e.to_string()))?;
    let shifted = arrow::compute::kernels::numeric::add(
        batch.column(at),
        &arrow::array::Int64Array::new_scalar(offset),
    )
    .map_err(encode)?;
    let mut columns = batch.columns().to_vec();
    columns[at] = shifted;
    RecordBatch::try_new(schema, columns).map_err(encode)
}

/// An error row's JSONL text with its `line` moved on by `offset`, found and rewritten in
/// place (the row is not parsed): `None` when the text is not as `ErrorRow` writes it.
/// `source` comes first and is a JSON string, inside which `,"line":` cannot occur unescaped,
/// so the first `,"line":` is the field.
pub fn shift_line(json: &[u8], offset: u64) -> Option<Vec<u8>> {
    const KEY: &[u8] = b",\"line\":";
    if !json.starts_with(b"{\"source\":") {
        return None;
    }
    let at = memchr::memmem::find(json, KEY)? + KEY.len();
    let digits = json[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        // `null` (a row index instead) stays as it is.
        return json[at..].starts_with(b"null").then(|| json.to_vec());
    }
    let line: u64 = std::str::from_utf8(&json[at..at + digits])
        .ok()?
        .parse()
        .ok()?;
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(&json[..at]);
    out.extend_from_slice((line + offset).to_string().as_bytes());
    out.extend_from_slice(&json[at + digits..]);
    Some(out)
}

#[cfg(test)]
mod shift_tests {
    use super::*;

    #[test]
    fn shifting_a_batch_moves_only_its_line_column() {
        let rows = |line: Option<u64>, row: Option<u64>| ErrorRow {
            source: "in.csv".into(),
            line,
            row,
            error_type: "coercion".into(),
            errors: Vec::new(),
            values: serde_json::Map::new(),
            raw: None,
        };
        let written = ErrorRows::from_rows(vec![rows(Some(3), None), rows(None, Some(7))]);
        let batch = written[0].to_batch(0).unwrap();
        let shifted = shift_lines(&batch, 100).unwrap();
        let expected = written[0].to_batch(100).unwrap();
        assert_eq!(shifted, expected);
        assert_eq!(shift_lines(&batch, 0).unwrap(), batch);
    }

    #[test]
    fn shifting_a_line_in_the_text_equals_parsing_and_re_encoding() {
        let row = ErrorRow {
            source: "s3://b/a,\"line\":9.csv".into(),
            line: Some(41),
            row: None,
            error_type: "coercion".into(),
            errors: Vec::new(),
            values: serde_json::Map::new(),
            raw: None,
        };
        let text = serde_json::to_vec(&row).unwrap();
        let shifted = shift_line(&text, 1000).unwrap();
        let mut expected = row.clone();
        expected.line = Some(1041);
        assert_eq!(shifted, serde_json::to_vec(&expected).unwrap());
        let no_line = ErrorRow {
            line: None,
            row: Some(3),
            ..row
        };
        let text = serde_json::to_vec(&no_line).unwrap();
        assert_eq!(shift_line(&text, 7).unwrap(), text);
        assert_eq!(shift_line(b"[1,2]", 7), None);
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;
    use crate::validate::ErrorKind;

    #[test]
    fn error_type_names_are_the_serde_names() {
        for kind in [
            ErrorKind::Coercion,
            ErrorKind::Constraint,
            ErrorKind::MissingColumn,
            ErrorKind::ExtraColumn,
            ErrorKind::MalformedRecord,
        ] {
            let e = FieldError {
                field: None,
                kind,
                message: String::new(),
            };
            assert_eq!(serde_json::to_value(kind).unwrap(), kind_name(&e));
        }
    }
}
