//! Values as pydantic's JSON mode writes them, for the text outputs: a CSV cell of a list,
//! sub-model or dict holds its JSON text, and JSONL writes a Decimal as a string ("1.50").

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Fields, Schema};
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
    let field = |f: &Field| {
        decimals_as_text(f.data_type()).map(|t| Arc::new(f.as_ref().clone().with_data_type(t)))
    };
    match data_type {
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Some(DataType::Utf8),
        DataType::List(f) => field(f).map(DataType::List),
        DataType::LargeList(f) => field(f).map(DataType::LargeList),
        DataType::Struct(fields) => {
            let changed: Vec<Option<_>> = fields.iter().map(|f| field(f)).collect();
            changed.iter().any(Option::is_some).then(|| {
                DataType::Struct(Fields::from(
                    fields
                        .iter()
                        .zip(changed)
                        .map(|(f, c)| c.unwrap_or_else(|| f.clone()))
                        .collect::<Vec<_>>(),
                ))
            })
        }
        _ => None,
    }
}

/// A column's values as JSON, one per row (`None` for null), as arrow's JSON writer writes them.
pub fn values(column: &ArrayRef) -> Result<Vec<Option<serde_json::Value>>, ArrowError> {
    let schema = Schema::new(vec![Field::new("v", column.data_type().clone(), true)]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![column.clone()])?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(&batch)?;
    writer.finish()?;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&writer.into_inner())
            .map_err(|e| ArrowError::JsonError(e.to_string()))?;
    Ok(rows.into_iter().map(|mut r| r.remove("v")).collect())
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
