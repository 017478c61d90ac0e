//! Values as pydantic's JSON mode writes them, for the text outputs: a CSV cell of a list,
//! sub-model or dict holds its JSON text, and JSONL writes a Decimal as a string ("1.50").

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Fields, Schema};

use super::type_rewrite::rewrite;
use arrow::error::ArrowError;

fn is_nested(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
    )
}

/// `data_type` with every decimal (however deep) as Utf8; `None` when it holds none.
fn decimals_as_text(data_type: &DataType) -> Option<DataType> {
    rewrite(data_type, &|t| match t {
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Some(DataType::Utf8),
        _ => None,
    })
}

/// `data_type` with every map key (however deep) as Utf8, as JSON objects key their members;
/// `None` when all already are. arrow's JSON writer takes text keys only.
fn keys_as_text(data_type: &DataType) -> Option<DataType> {
    rewrite(data_type, &text_key)
}

/// A map whose key is not text, its key as Utf8 (and its value's maps too).
fn text_key(data_type: &DataType) -> Option<DataType> {
    let DataType::Map(entries, sorted) = data_type else {
        return None;
    };
    let DataType::Struct(kv) = entries.data_type() else {
        return None;
    };
    let [key, value] = kv.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    if matches!(key.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
        // Text keys already: the generic walk rewrites the value's maps.
        return None;
    }
    let key = Field::new(key.name(), DataType::Utf8, false);
    let value = match keys_as_text(value.data_type()) {
        Some(t) => value.as_ref().clone().with_data_type(t),
        None => value.as_ref().clone(),
    };
    let entries = entries
        .as_ref()
        .clone()
        .with_data_type(DataType::Struct(Fields::from(vec![key, value])));
    Some(DataType::Map(Arc::new(entries), *sorted))
}

/// The column as arrow's JSON writer can write it (map keys as text).
fn writable(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match keys_as_text(column.data_type()) {
        Some(text_keys) => arrow::compute::cast(column, &text_keys),
        None => Ok(column.clone()),
    }
}

/// arrow's JSON writer with nulls written out, as pydantic's JSON mode writes them: left out,
/// a map's null value would lose its entry.
fn json_writer<F: arrow::json::writer::JsonFormat>() -> arrow::json::Writer<Vec<u8>, F> {
    arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build(Vec::new())
}

/// A column's values as JSON, one per row (`None` for null), as arrow's JSON writer writes them.
pub fn values(column: &ArrayRef) -> Result<Vec<Option<serde_json::Value>>, ArrowError> {
    let column = &writable(column)?;
    let schema = Schema::new(vec![Field::new("v", column.data_type().clone(), true)]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![column.clone()])?;
    let mut writer = json_writer::<arrow::json::writer::JsonArray>();
    writer.write(&batch)?;
    writer.finish()?;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&writer.into_inner())
            .map_err(|e| ArrowError::JsonError(e.to_string()))?;
    Ok(rows
        .into_iter()
        .map(|mut r| r.remove("v").filter(|v| !v.is_null()))
        .collect())
}

/// How validation's JSON text holds numbers arrow's writer would change: a decimal as the text
/// of its exact digits (as a JSON number arrow, and the tape after it, would pass it through a
/// double: 99999999999999999.99 became 1E+17), a NaN or
/// infinite float as the text `"NaN"` / `"inf"` / `"-inf"` (arrow writes null; JSON has no
/// NaN). Finite floats stay numbers (shortest round-trip text), so a number where a string
/// belongs is still refused and `1.0` in a boolean is still true.
#[derive(Debug)]
struct ExactNumbers;

impl arrow::json::writer::EncoderFactory for ExactNumbers {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a arrow::datatypes::FieldRef,
        array: &'a dyn Array,
        _options: &'a arrow::json::writer::EncoderOptions,
    ) -> Result<Option<arrow::json::writer::NullableEncoder<'a>>, ArrowError> {
        use arrow::array::AsArray;
        use arrow::datatypes::{Decimal128Type, Decimal256Type, Float32Type, Float64Type};
        let encoder: Box<dyn arrow::json::writer::Encoder + 'a> = match array.data_type() {
            DataType::Decimal128(..) => {
                let a = array.as_primitive::<Decimal128Type>();
                Box::new(Written(move |i, out: &mut Vec<u8>| {
                    let _ = serde_json::to_writer(&mut *out, &a.value_as_string(i));
                }))
            }
            DataType::Decimal256(..) => {
                let a = array.as_primitive::<Decimal256Type>();
                Box::new(Written(move |i, out: &mut Vec<u8>| {
                    let _ = serde_json::to_writer(&mut *out, &a.value_as_string(i));
                }))
            }
            DataType::Float64 => {
                let a = array.as_primitive::<Float64Type>();
                Box::new(Written(move |i, out: &mut Vec<u8>| float(a.value(i), out)))
            }
            DataType::Float32 => {
                let a = array.as_primitive::<Float32Type>();
                Box::new(Written(move |i, out: &mut Vec<u8>| {
                    let v = a.value(i);
                    if v.is_finite() {
                        // An f32's own shortest text, as arrow's writer prints it.
                        let _ = serde_json::to_writer(&mut *out, &v);
                    } else {
                        float(f64::from(v), out);
                    }
                }))
            }
            _ => return Ok(None),
        };
        Ok(Some(arrow::json::writer::NullableEncoder::new(
            encoder,
            array.logical_nulls(),
        )))
    }
}

/// An encoder from a closure writing value `i`.
struct Written<F>(F);

impl<F: FnMut(usize, &mut Vec<u8>)> arrow::json::writer::Encoder for Written<F> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        (self.0)(idx, out)
    }
}

fn float(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &v);
    } else if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v > 0.0 {
        out.extend_from_slice(b"\"inf\"");
    } else {
        out.extend_from_slice(b"\"-inf\"");
    }
}

/// A column's values as compact JSON text, one per row (null stays null), as arrow's JSON
/// writer writes them: column by column, no JSON value built per row. What validation reads a
/// typed nested column as, its numbers exact (see `ExactNumbers`).
pub fn texts(column: &ArrayRef) -> Result<StringArray, ArrowError> {
    const PREFIX: &[u8] = b"{\"v\":";
    let column = &writable(column)?;
    let schema = Schema::new(vec![Field::new("v", column.data_type().clone(), true)]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![column.clone()])?;
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_encoder_factory(Arc::new(ExactNumbers))
        .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
    writer.write(&batch)?;
    writer.finish()?;
    let text = writer.into_inner();
    let mut out = arrow::array::StringBuilder::with_capacity(column.len(), text.len());
    for line in text.split(|b| *b == b'\n').take(column.len()) {
        // `{"v":…}` for a value, `{"v":null}` for a null.
        match line
            .strip_prefix(PREFIX)
            .and_then(|l| l.strip_suffix(b"}"))
            .filter(|value| *value != b"null")
        {
            Some(value) => out.append_value(
                std::str::from_utf8(value).map_err(|e| ArrowError::JsonError(e.to_string()))?,
            ),
            None => out.append_null(),
        }
    }
    let out = out.finish();
    if out.len() != column.len() {
        return Err(ArrowError::JsonError(format!(
            "{} JSON values for {} rows",
            out.len(),
            column.len()
        )));
    }
    Ok(out)
}

/// One row per value: the column's values as JSON text (null stays null).
fn json_cells(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(StringArray::from(
        values(column)?
            .into_iter()
            .map(|v| v.map(|v| v.to_string()))
            .collect::<Vec<_>>(),
    )))
}

/// The batch as a text output writes it: for CSV, nested columns as JSON text; for JSONL,
/// decimals as strings. Unchanged when nothing applies.
pub fn for_text(batch: &RecordBatch, csv: bool) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let mut changed = false;
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let converted = if csv && is_nested(field.data_type()) {
            Some(json_cells(column)?)
        } else if !csv && let Some(text_type) = decimals_as_text(field.data_type()) {
            arrow::compute::cast(column, &text_type).ok()
        } else {
            None
        };
        match converted {
            Some(array) => {
                changed = true;
                fields.push(Field::new(field.name(), array.data_type().clone(), true));
                columns.push(array);
            }
            None => {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
    }
    if !changed {
        return Ok(batch.clone());
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod text_tests {
    use super::*;
    use arrow::array::{Decimal128Builder, Int64Builder, ListBuilder, StructBuilder};
    use arrow::datatypes::Fields;

    /// The texts are the values arrow's JSON writer gives, null for null, row for row.
    #[test]
    fn texts_are_the_values_one_per_row() {
        let fields = Fields::from(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("d", DataType::Decimal128(10, 2), true),
        ]);
        let mut list = ListBuilder::new(StructBuilder::from_fields(fields, 4));
        for row in [
            Some(vec![(Some(1), Some(1250))]),
            None,
            Some(vec![]),
            Some(vec![(None, Some(-5))]),
        ] {
            match row {
                Some(items) => {
                    for (n, d) in items {
                        let s = list.values();
                        s.field_builder::<Int64Builder>(0).unwrap().append_option(n);
                        s.field_builder::<Decimal128Builder>(1)
                            .unwrap()
                            .append_option(d);
                        s.append(true);
                    }
                    list.append(true);
                }
                None => list.append(false),
            }
        }
        let column: ArrayRef = Arc::new(list.finish());
        let texts = texts(&column).unwrap();
        // Decimals as the text of their exact digits, not numbers through a double.
        let expected = [
            Some(r#"[{"n":1,"d":"12.50"}]"#),
            None,
            Some("[]"),
            Some(r#"[{"n":null,"d":"-0.05"}]"#),
        ];
        assert_eq!(texts.iter().collect::<Vec<_>>(), expected);
    }

    /// Doubles inside lists keep every value, the non-finite ones included (JSON has no NaN:
    /// as numbers they would be written as null).
    #[test]
    fn texts_keep_non_finite_and_exact_numbers() {
        let mut list = ListBuilder::new(arrow::array::Float64Builder::new());
        list.values().append_value(f64::NAN);
        list.values().append_value(f64::NEG_INFINITY);
        list.values().append_value(20275.350000000006);
        list.values().append_null();
        list.append(true);
        let column: ArrayRef = Arc::new(list.finish());
        let texts = texts(&column).unwrap();
        assert_eq!(texts.value(0), r#"["NaN","-inf",20275.350000000006,null]"#);
    }
}
