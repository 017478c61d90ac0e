//! One Parquet part being written, with its dictionaries chosen from its first rows.
//!
//! parquet's writer builds a dictionary for every column and gives it up for a column chunk only
//! once it outgrows the dictionary page limit. For near-unique columns (ids, emails, timestamps,
//! measurements) that is hashing and interning thrown away in every row group: about a tenth
//! of the CPU of a Parquet-to-Parquet job. So the writer starts at the first batch, and a column
//! whose sample is mostly distinct, or whose dictionary would outgrow the limit within a row
//! group, is written plain from the start; low-cardinality columns keep their dictionary.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use parquet::file::properties::{DEFAULT_DICTIONARY_PAGE_SIZE_LIMIT, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;

use super::type_rewrite::rewrite_fields;
use std::collections::HashSet;
use std::sync::Arc;

/// Rows of the first batch looked at per column.
const SAMPLE_ROWS: usize = 4096;
/// Fewer non-null values than this tell too little: the column keeps the writer's default.
const MIN_SAMPLE: usize = 512;

/// A Parquet part: waiting for its first batch, then writing.
pub struct ParquetPart<W: std::io::Write + Send> {
    state: State<W>,
    /// The schema as stored, when some column has a type Parquet cannot annotate (see
    /// [`annotatable`]); batches are cast to it.
    stored: Option<SchemaRef>,
}

enum State<W: std::io::Write + Send> {
    Waiting {
        sink: W,
        schema: SchemaRef,
        props: WriterPropertiesBuilder,
        row_group_rows: usize,
    },
    Writing(ArrowWriter<W>),
    /// Only while switching states (a failed start leaves it here; the part is abandoned).
    Gone,
}

impl<W: std::io::Write + Send> ParquetPart<W> {
    pub fn new(
        sink: W,
        schema: SchemaRef,
        props: WriterPropertiesBuilder,
        row_group_rows: usize,
    ) -> Self {
        let stored = stored_schema(&schema);
        Self {
            state: State::Waiting {
                sink,
                schema: stored.clone().unwrap_or(schema),
                props,
                row_group_rows,
            },
            stored,
        }
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let stored;
        let batch = match &self.stored {
            Some(schema) => {
                stored = cast_batch(batch, schema)?;
                &stored
            }
            None => batch,
        };
        if matches!(self.state, State::Waiting { .. }) {
            let writer = self.start(Some(batch))?;
            self.state = State::Writing(writer);
        }
        match &mut self.state {
            State::Writing(writer) => writer.write(batch),
            _ => Err(ParquetError::General(
                "Parquet part abandoned after a failed start".into(),
            )),
        }
    }

    /// Write the footer and hand back the sink.
    pub fn finish(mut self) -> Result<W, ParquetError> {
        let writer = match std::mem::replace(&mut self.state, State::Gone) {
            State::Writing(writer) => writer,
            waiting => {
                self.state = waiting;
                self.start(None)?
            }
        };
        writer.into_inner()
    }

    fn start(&mut self, first: Option<&RecordBatch>) -> Result<ArrowWriter<W>, ParquetError> {
        let State::Waiting {
            sink,
            schema,
            mut props,
            row_group_rows,
        } = std::mem::replace(&mut self.state, State::Gone)
        else {
            return Err(ParquetError::General(
                "Parquet part already finished".into(),
            ));
        };
        if let Some(batch) = first {
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                if dictionary_pays(column.as_ref(), row_group_rows) == Some(false) {
                    props = props.set_column_dictionary_enabled(
                        ColumnPath::from(field.name().as_str()),
                        false,
                    );
                }
            }
        }
        ArrowWriter::try_new(sink, schema, Some(props.build()))
    }
}

/// `data_type` as Parquet can annotate it, as pyarrow writes it: seconds (which Parquet's
/// TIMESTAMP and TIME lack) as milliseconds, a millisecond date as a day date. parquet's writer
/// would store those as bare integers that other readers take for numbers. `None`: unchanged.
/// (A date64 inside a list or model goes through arrow's cast, which rounds a time of day
/// before 1970 toward zero; Arrow's format says a date64 holds whole days, so only values
/// that break it differ from the top-level floor.)
fn annotatable(data_type: &DataType) -> Option<DataType> {
    use arrow::datatypes::TimeUnit;
    match data_type {
        DataType::Timestamp(TimeUnit::Second, tz) => {
            Some(DataType::Timestamp(TimeUnit::Millisecond, tz.clone()))
        }
        DataType::Time32(TimeUnit::Second) => Some(DataType::Time32(TimeUnit::Millisecond)),
        DataType::Date64 => Some(DataType::Date32),
        _ => None,
    }
}

fn stored_schema(schema: &SchemaRef) -> Option<SchemaRef> {
    rewrite_fields(schema.fields(), &annotatable)
        .map(|fields| Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}

fn cast_batch(batch: &RecordBatch, stored: &SchemaRef) -> Result<RecordBatch, ParquetError> {
    let columns = batch
        .columns()
        .iter()
        .zip(stored.fields())
        .map(|(column, field)| {
            let stored = if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else if column.data_type() == &DataType::Date64 {
                days_of(column)
            } else {
                // Not `safe`: a value the new unit cannot hold fails the part, never becomes null.
                let strict = arrow::compute::CastOptions {
                    safe: false,
                    ..Default::default()
                };
                arrow::compute::cast_with_options(column, field.data_type(), &strict)
            };
            stored.map_err(|e| ParquetError::General(format!("column '{}': {e}", field.name())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(stored.clone(), columns)?)
}

/// A millisecond date as the day it falls on (before 1970 too: arrow's cast would round toward
/// zero, a day late); a day Parquet's 32-bit DATE cannot hold fails the part.
fn days_of(column: &ArrayRef) -> Result<ArrayRef, arrow::error::ArrowError> {
    use arrow::datatypes::{Date32Type, Date64Type};
    const DAY_MS: i64 = 86_400_000;
    let days = column
        .as_primitive::<Date64Type>()
        .try_unary::<_, Date32Type, _>(|ms| {
            i32::try_from(ms.div_euclid(DAY_MS)).map_err(|_| {
                arrow::error::ArrowError::ComputeError(format!(
                    "the date {ms} ms from 1970 lies beyond what a Parquet DATE holds"
                ))
            })
        })?;
    Ok(Arc::new(days))
}

/// Whether a dictionary pays for a column, judged from its first rows; `None` when they cannot
/// tell (too few values, or a type this does not judge: booleans, nested, dictionaries).
fn dictionary_pays(column: &dyn Array, row_group_rows: usize) -> Option<bool> {
    let sample = column.slice(0, column.len().min(SAMPLE_ROWS));
    let (distinct, values, bytes) = match sample.data_type() {
        DataType::Utf8 => count(
            sample
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::as_bytes),
        ),
        DataType::LargeUtf8 => count(
            sample
                .as_string::<i64>()
                .iter()
                .flatten()
                .map(str::as_bytes),
        ),
        DataType::Utf8View => count(sample.as_string_view().iter().flatten().map(str::as_bytes)),
        DataType::Binary => count(sample.as_binary::<i32>().iter().flatten()),
        DataType::LargeBinary => count(sample.as_binary::<i64>().iter().flatten()),
        DataType::BinaryView => count(sample.as_binary_view().iter().flatten()),
        DataType::FixedSizeBinary(_) => count(sample.as_fixed_size_binary().iter().flatten()),
        other => {
            let width = other.primitive_width()?;
            let data = sample.to_data();
            let start = data.offset() * width;
            let raw = data.buffers().first()?.as_slice();
            let raw = raw.get(start..start + data.len() * width)?;
            count(
                raw.chunks_exact(width)
                    .enumerate()
                    .filter(|(row, _)| data.is_valid(*row))
                    .map(|(_, value)| value),
            )
        }
    };
    if values < MIN_SAMPLE {
        return None;
    }
    let distinct_share = distinct as f64 / values as f64;
    let dictionary_bytes = distinct_share * row_group_rows as f64 * bytes as f64 / values as f64;
    Some(distinct_share < 0.5 && dictionary_bytes < DEFAULT_DICTIONARY_PAGE_SIZE_LIMIT as f64)
}

/// Distinct values, values and their bytes.
fn count<'a>(values: impl Iterator<Item = &'a [u8]>) -> (usize, usize, usize) {
    let mut seen = HashSet::with_capacity(SAMPLE_ROWS);
    let (mut n, mut bytes) = (0, 0);
    for value in values {
        n += 1;
        bytes += value.len();
        seen.insert(value);
    }
    (seen.len(), n, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::Field;
    use bytes::Bytes;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn batch() -> RecordBatch {
        let rows = 5000;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("user-{i:08}")),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| ["US", "DE", "FR"][i % 3]),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| (i % 100) as i64),
            )),
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| i as f64 * 0.37),
            )),
            Arc::new(BooleanArray::from_iter((0..rows).map(|i| Some(i % 2 == 0)))),
        ];
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("age", DataType::Int64, false),
            Field::new("score", DataType::Float64, false),
            Field::new("active", DataType::Boolean, true),
        ]);
        RecordBatch::try_new(Arc::new(schema), columns).expect("batch")
    }

    #[test]
    fn near_unique_columns_are_written_plain_and_the_rest_keep_their_dictionary() {
        let batch = batch();
        assert_eq!(
            dictionary_pays(batch.column(0).as_ref(), 256 * 1024),
            Some(false)
        );
        assert_eq!(
            dictionary_pays(batch.column(1).as_ref(), 256 * 1024),
            Some(true)
        );
        assert_eq!(
            dictionary_pays(batch.column(2).as_ref(), 256 * 1024),
            Some(true)
        );
        assert_eq!(
            dictionary_pays(batch.column(3).as_ref(), 256 * 1024),
            Some(false)
        );
        assert_eq!(dictionary_pays(batch.column(4).as_ref(), 256 * 1024), None);
        assert_eq!(
            dictionary_pays(batch.column(0).slice(0, 100).as_ref(), 256 * 1024),
            None
        );

        let mut part = ParquetPart::new(
            Vec::new(),
            batch.schema(),
            parquet::file::properties::WriterProperties::builder(),
            256 * 1024,
        );
        part.write(&batch).expect("write");
        part.write(&batch).expect("write");
        let file = Bytes::from(part.finish().expect("finish"));
        let reader = SerializedFileReader::new(file.clone()).expect("a Parquet file");
        let group = reader.metadata().row_group(0);
        let has_dictionary: Vec<bool> = (0..5)
            .map(|c| group.column(c).dictionary_page_offset().is_some())
            .collect();
        assert_eq!(has_dictionary, [false, true, true, false, false]);
        // Every row round-trips.
        let read: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 10_000)
                .expect("reader")
                .collect::<Result<_, _>>()
                .expect("batches");
        let read = arrow::compute::concat_batches(&batch.schema(), &read).expect("concat");
        let twice =
            arrow::compute::concat_batches(&batch.schema(), [&batch, &batch]).expect("concat");
        assert_eq!(read, twice);
    }

    #[test]
    fn seconds_are_stored_as_milliseconds_and_a_value_too_far_fails_instead_of_nulling() {
        use arrow::array::TimestampSecondArray;
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Second, None),
            true,
        )]));
        let write = |values: Vec<Option<i64>>| {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(TimestampSecondArray::from(values)) as ArrayRef],
            )
            .expect("batch");
            let mut part = ParquetPart::new(
                Vec::new(),
                schema.clone(),
                parquet::file::properties::WriterProperties::builder(),
                1024,
            );
            part.write(&batch).and_then(|()| part.finish())
        };
        let file = Bytes::from(write(vec![Some(1_700_000_000), None]).expect("written"));
        let read: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 10)
                .expect("reader")
                .collect::<Result<_, _>>()
                .expect("batches");
        let column = read[0].column(0);
        assert_eq!(
            column.data_type(),
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None)
        );
        let millis = column.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(millis.value(0), 1_700_000_000_000);
        assert!(millis.is_null(1));
        assert!(
            write(vec![Some(i64::MAX / 10)]).is_err(),
            "overflow is an error"
        );
    }

    #[test]
    fn a_part_without_rows_is_a_valid_empty_file() {
        let part = ParquetPart::new(
            Vec::new(),
            batch().schema(),
            parquet::file::properties::WriterProperties::builder(),
            1024,
        );
        let file = Bytes::from(part.finish().expect("finish"));
        let reader = SerializedFileReader::new(file).expect("a Parquet file");
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    }
}
