//! Column type inference for text input (CSV/JSONL) from a sample batch.

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::validate::text;

/// Which types every non-null value seen so far still fits; narrowed value by value.
struct Candidates {
    int: bool,
    float: bool,
    boolean: bool,
    date: bool,
    datetime: bool,
}

impl Candidates {
    fn any(&self) -> bool {
        self.int || self.float || self.boolean || self.date || self.datetime
    }

    fn observe(&mut self, value: &str) {
        // Skip parsers already ruled out: each column costs at most one failed parse per type.
        // Inference is stricter than coercion: "1.0" makes a float column, "yes" a text one.
        let value = value.trim();
        self.int = self.int && value.parse::<i64>().is_ok();
        self.float = self.float && text::parse_float(value).is_some();
        self.boolean = self.boolean
            && (value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false"));
        self.date = self.date && text::parse_date_days(value).is_some();
        self.datetime = self.datetime && text::parse_iso_datetime_micros(value).is_some();
    }

    fn data_type(&self) -> DataType {
        if self.int {
            DataType::Int64
        } else if self.float {
            DataType::Float64
        } else if self.boolean {
            DataType::Boolean
        } else if self.date {
            DataType::Date32
        } else if self.datetime {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        } else {
            DataType::Utf8
        }
    }
}

fn infer_column(column: &dyn Array) -> DataType {
    let owned;
    let strings = match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>(),
        DataType::LargeUtf8 | DataType::Utf8View => match cast(column, &DataType::Utf8) {
            Ok(array) => {
                owned = array;
                owned.as_string::<i32>()
            }
            Err(_) => return DataType::Utf8,
        },
        other => return other.clone(),
    };
    let mut candidates = Candidates {
        int: true,
        float: true,
        boolean: true,
        date: true,
        datetime: true,
    };
    if let Some(nested) = json_container_type(strings) {
        return nested;
    }
    let mut seen = false;
    // Empty text counts as null, as an empty CSV field does.
    for value in strings.iter().flatten().filter(|v| !v.trim().is_empty()) {
        seen = true;
        candidates.observe(value);
        if !candidates.any() {
            break;
        }
    }
    if seen {
        candidates.data_type()
    } else {
        DataType::Utf8
    }
}

/// Lists and objects (JSONL nested values, or CSV cells of JSON text): when every non-empty
/// value is a JSON array or object, their Arrow type as arrow's JSON inference sees it
/// (objects as structs; never-seen types as Utf8).
fn json_container_type(strings: &arrow::array::StringArray) -> Option<DataType> {
    let mut values = Vec::new();
    for value in strings
        .iter()
        .flatten()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        if !(value.starts_with('[') || value.starts_with('{')) {
            return None;
        }
        let parsed: serde_json::Value = serde_json::from_str(value).ok()?;
        values.push(Ok::<_, arrow::error::ArrowError>(
            serde_json::json!({ "v": parsed }),
        ));
    }
    if values.is_empty() {
        return None;
    }
    let schema = arrow::json::reader::infer_json_schema_from_iterator(values.into_iter()).ok()?;
    let field = schema.field_with_name("v").ok()?;
    Some(without_null_types(field.data_type()))
}

/// `Null` (a key only ever null in the sample) as Utf8, however deep.
fn without_null_types(data_type: &DataType) -> DataType {
    use std::sync::Arc;
    let field = |f: &Field| Arc::new(f.clone().with_data_type(without_null_types(f.data_type())));
    match data_type {
        DataType::Null => DataType::Utf8,
        DataType::List(f) => DataType::List(field(f)),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| field(f)).collect::<Vec<_>>().into())
        }
        other => other.clone(),
    }
}

/// Infer column types from a sample batch whose columns are all Utf8 (CSV text; empty = null):
/// Int64 if every non-null value parses as i64, else Float64 if all parse as f64, Boolean if all
/// are true/false (any case), Date32 for YYYY-MM-DD, Timestamp(Microsecond, Some("UTC")) for
/// ISO-8601 date-times, else Utf8. All-null column → Utf8. Non-Utf8 columns keep their type.
pub fn infer_from_text(sample: &RecordBatch) -> Schema {
    let schema = sample.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(sample.columns())
        .map(|(field, column)| Field::new(field.name(), infer_column(column.as_ref()), true))
        .collect();
    Schema::new(fields)
}
