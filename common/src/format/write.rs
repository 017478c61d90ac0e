//! Output writers: one part = one object, streamed through a [`StagedWriter`].

use super::Format;
use super::parquet_part::ParquetPart;
use crate::storage::{StagedObject, StagedWriter};
use crate::{Error, Result};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

/// Why `format` cannot hold a column of type `data_type` (nested types included), or `None`
/// when it can. Checked at planning, so a job never fails (or panics) in its writers.
pub fn unwritable(data_type: &arrow::datatypes::DataType, format: Format) -> Option<&'static str> {
    use arrow::datatypes::{DataType as T, IntervalUnit};
    match (data_type, format) {
        (T::Union(..), Format::Parquet | Format::Csv | Format::Jsonl) => {
            Some("a union, which only an Arrow output holds")
        }
        (T::Interval(IntervalUnit::MonthDayNano), Format::Parquet) => {
            Some("a month-day-nanosecond interval, which Parquet cannot hold")
        }
        (T::RunEndEncoded(..), Format::Parquet | Format::Csv | Format::Jsonl) => {
            Some("run-end encoded, which only an Arrow output holds")
        }
        (T::ListView(_) | T::LargeListView(_), Format::Csv) => {
            Some("a list view, which a CSV output cannot hold")
        }
        (T::Struct(fields), Format::Parquet) if fields.is_empty() => Some(
            "a sub-model without fields (`{}`), which Parquet cannot hold (a JSONL, CSV or Arrow output can)",
        ),
        (
            T::List(f)
            | T::LargeList(f)
            | T::FixedSizeList(f, _)
            | T::ListView(f)
            | T::LargeListView(f),
            _,
        ) => unwritable(f.data_type(), format),
        (T::Map(f, _), _) => unwritable(f.data_type(), format),
        (T::Struct(fields), _) => fields
            .iter()
            .find_map(|f| unwritable(f.data_type(), format)),
        (T::Dictionary(_, value), _) => unwritable(value, format),
        _ => None,
    }
}

/// Parquet compression codec for outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Snappy,
    Zstd,
    Lz4,
    None,
}

impl Codec {
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "snappy" => Ok(Codec::Snappy),
            "zstd" => Ok(Codec::Zstd),
            "lz4" => Ok(Codec::Lz4),
            "none" | "uncompressed" => Ok(Codec::None),
            other => Err(Error::config(format!(
                "unknown compression '{other}' (snappy, zstd, lz4, none)"
            ))),
        }
    }
}

/// How parts are encoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteOptions {
    pub compression: Codec,
    /// Rows per Parquet row group (bounds the writer's memory).
    pub row_group_size: usize,
    /// Header line in CSV outputs.
    pub csv_header: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            compression: Codec::Snappy,
            // Polars' default; keeps the writer's buffered row group to tens of MiB.
            row_group_size: 256 * 1024,
            csv_header: true,
        }
    }
}

pub enum PartWriter {
    Parquet(ParquetPart<StagedWriter>),
    Csv {
        writer: arrow::csv::Writer<StagedWriter>,
        schema: SchemaRef,
        wrote: bool,
    },
    Jsonl(arrow::json::LineDelimitedWriter<StagedWriter>),
    Arrow(arrow::ipc::writer::FileWriter<StagedWriter>),
}

fn encode_error(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Encode {
        context: context.to_string(),
        message: e.to_string(),
    }
}

impl PartWriter {
    pub fn new(
        format: Format,
        schema: SchemaRef,
        sink: StagedWriter,
        options: &WriteOptions,
    ) -> Result<Self> {
        Ok(match format {
            Format::Parquet => {
                let compression = match options.compression {
                    Codec::Snappy => PqCompression::SNAPPY,
                    Codec::Zstd => PqCompression::ZSTD(ZstdLevel::default()),
                    Codec::Lz4 => PqCompression::LZ4_RAW,
                    Codec::None => PqCompression::UNCOMPRESSED,
                };
                let row_group_rows = options.row_group_size.max(1);
                let props = WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(row_group_rows));
                PartWriter::Parquet(ParquetPart::new(sink, schema, props, row_group_rows))
            }
            Format::Csv => PartWriter::Csv {
                writer: arrow::csv::WriterBuilder::new()
                    .with_header(options.csv_header)
                    .build(sink),
                schema,
                wrote: false,
            },
            // Nulls written out, as pydantic's JSON mode does: left out, a dict's null value
            // would lose its entry.
            Format::Jsonl => PartWriter::Jsonl(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(sink),
            ),
            Format::Arrow => PartWriter::Arrow(
                arrow::ipc::writer::FileWriter::try_new(sink, &schema)
                    .map_err(|e| encode_error("starting Arrow part", e))?,
            ),
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            PartWriter::Parquet(w) => w
                .write(batch)
                .map_err(|e| encode_error("writing Parquet", e)),
            PartWriter::Csv { writer, wrote, .. } => {
                *wrote = true;
                // Lists, sub-models and dicts as JSON text in their cells.
                let batch = super::json_text::for_text(batch, true)
                    .map_err(|e| encode_error("writing CSV", e))?;
                writer
                    .write(&batch)
                    .map_err(|e| encode_error("writing CSV", e))
            }
            PartWriter::Jsonl(w) => {
                // Decimals as strings, as pydantic's JSON mode writes them.
                let batch = super::json_text::for_text(batch, false)
                    .map_err(|e| encode_error("writing JSONL", e))?;
                w.write(&batch)
                    .map_err(|e| encode_error("writing JSONL", e))
            }
            PartWriter::Arrow(w) => w.write(batch).map_err(|e| encode_error("writing Arrow", e)),
        }
    }

    /// Finish encoding and uploading; the object is not visible until the returned upload commits.
    pub fn finish(self) -> Result<StagedObject> {
        let sink = match self {
            PartWriter::Parquet(w) => w.finish().map_err(|e| encode_error("closing Parquet", e))?,
            PartWriter::Csv {
                mut writer,
                schema,
                wrote,
            } => {
                if !wrote {
                    // An empty part still carries its header.
                    let empty = super::json_text::for_text(&RecordBatch::new_empty(schema), true)
                        .map_err(|e| encode_error("writing CSV", e))?;
                    writer
                        .write(&empty)
                        .map_err(|e| encode_error("writing CSV", e))?;
                }
                writer.into_inner()
            }
            PartWriter::Jsonl(mut w) => {
                w.finish().map_err(|e| encode_error("closing JSONL", e))?;
                w.into_inner()
            }
            PartWriter::Arrow(mut w) => {
                w.finish().map_err(|e| encode_error("closing Arrow", e))?;
                w.into_inner()
                    .map_err(|e| encode_error("closing Arrow", e))?
            }
        };
        sink.finish()
    }
}

#[cfg(test)]
mod unwritable_tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Fields};

    #[test]
    fn an_empty_sub_model_is_refused_for_parquet_only() {
        let empty = DataType::Struct(Fields::empty());
        let listed = DataType::List(std::sync::Arc::new(Field::new("item", empty.clone(), true)));
        for t in [&empty, &listed] {
            assert!(unwritable(t, Format::Parquet).is_some(), "{t}");
            assert!(unwritable(t, Format::Jsonl).is_none(), "{t}");
            assert!(unwritable(t, Format::Arrow).is_none(), "{t}");
        }
    }
}
