//! One source batch through validation: valid rows to the output writer, everything else to
//! error rows with source position, original values and every reason.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use std::collections::{BTreeMap, HashMap};
use zoopipe_common::errors_out::ErrorRow;
use zoopipe_common::format::{Positions, SourceBatch};
use zoopipe_common::schema::CompiledSchema;
use zoopipe_common::validate::{ErrorKind, FieldError};
use zoopipe_common::{Error, Result};

/// What came out of one batch.
pub struct Routed {
    pub valid: RecordBatch,
    pub errors: Vec<ErrorRow>,
    pub rows_read: u64,
}

pub fn route(schema: &CompiledSchema, input: SourceBatch) -> Result<Routed> {
    let source = input.source.clone();
    let rows_read = (input.batch.num_rows() + input.rejects.len()) as u64;
    let validated = schema.validate(&input.batch).map_err(|e| Error::Encode {
        context: format!("validating rows of {source}"),
        message: e.to_string(),
    })?;
    let mut invalid = validated.invalid;
    let mut valid = validated.valid;
    if !schema.additional_properties() && !input.extra_keys.is_empty() {
        valid = reject_extra_keys(
            valid,
            &mut invalid,
            &input.extra_keys,
            input.batch.num_rows(),
        )?;
    }
    let position = |row: usize| -> (Option<u64>, Option<u64>) {
        match &input.positions {
            Positions::Lines(lines) => (lines.get(row).copied(), None),
            Positions::Rows { first } => (None, Some(first + row as u64)),
        }
    };
    let mut errors = Vec::with_capacity(invalid.len() + input.rejects.len());
    // One formatter per column for the whole batch, not one per cell: at a quarter of rows
    // invalid, building them per cell cost more than validating.
    let options = FormatOptions::default();
    let names: Vec<&String> = input
        .batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name())
        .collect();
    let formatters: Vec<Option<ArrayFormatter>> = input
        .batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
        .collect();
    for (row, reasons) in invalid {
        let (line, index) = position(row);
        let mut error = ErrorRow::new(&source, line, index, reasons);
        error.values = row_values(&names, input.batch.columns(), &formatters, row);
        errors.push(error);
    }
    let by_line = matches!(input.positions, Positions::Lines(_));
    for reject in input.rejects {
        let (line, index) = if by_line {
            (Some(reject.position), None)
        } else {
            (None, Some(reject.position))
        };
        let mut error = ErrorRow::new(&source, line, index, vec![reject.error]);
        error.values = reject
            .values
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        error.raw = Some(reject.raw);
        errors.push(error);
    }
    // Errors in file order, rejected records among the rows they sat between.
    errors.sort_by_key(|e| (e.line, e.row));
    Ok(Routed {
        valid,
        errors,
        rows_read,
    })
}

/// JSON keys that are not schema fields fail the row when `additionalProperties` is false.
fn reject_extra_keys(
    valid: RecordBatch,
    invalid: &mut Vec<(usize, Vec<FieldError>)>,
    extra_keys: &[(usize, Vec<String>)],
    rows: usize,
) -> Result<RecordBatch> {
    let extras: HashMap<usize, &Vec<String>> = extra_keys.iter().map(|(r, k)| (*r, k)).collect();
    let reasons = |keys: &Vec<String>| -> Vec<FieldError> {
        keys.iter()
            .map(|k| FieldError {
                field: Some(k.clone()),
                kind: ErrorKind::ExtraColumn,
                message: "Extra inputs are not permitted".into(),
            })
            .collect()
    };
    let already: HashMap<usize, usize> = invalid
        .iter()
        .enumerate()
        .map(|(i, (r, _))| (*r, i))
        .collect();
    let mut keep = Vec::with_capacity(valid.num_rows());
    let mut newly = Vec::new();
    for row in 0..rows {
        match (already.get(&row), extras.get(&row)) {
            (Some(&i), Some(keys)) => invalid[i].1.extend(reasons(keys)),
            (Some(_), None) => {}
            (None, Some(keys)) => {
                keep.push(false);
                newly.push((row, reasons(keys)));
            }
            (None, None) => keep.push(true),
        }
    }
    if newly.is_empty() {
        return Ok(valid);
    }
    invalid.extend(newly);
    invalid.sort_by_key(|(r, _)| *r);
    filter_record_batch(&valid, &BooleanArray::from(keep)).map_err(|e| Error::Encode {
        context: "filtering rows".into(),
        message: e.to_string(),
    })
}

/// The original values of one row, as text.
fn row_values(
    names: &[&String],
    columns: &[ArrayRef],
    formatters: &[Option<ArrayFormatter>],
    row: usize,
) -> serde_json::Map<String, serde_json::Value> {
    let mut values = serde_json::Map::with_capacity(names.len());
    for ((name, column), formatter) in names.iter().zip(columns).zip(formatters) {
        let text = match (column.as_string_opt::<i32>(), formatter) {
            _ if column.is_null(row) => serde_json::Value::Null,
            // Text input (CSV, JSONL): the value as it is, without the Display machinery.
            (Some(strings), _) => serde_json::Value::String(strings.value(row).to_owned()),
            (None, Some(f)) => serde_json::Value::String(f.value(row).to_string()),
            (None, None) => serde_json::Value::Null,
        };
        values.insert((*name).clone(), text);
    }
    values
}

/// Add a routed batch's errors to the per-field and per-type counters.
pub fn count_errors(
    errors: &[ErrorRow],
    by_field: &mut BTreeMap<String, u64>,
    by_type: &mut BTreeMap<String, u64>,
) {
    for row in errors {
        *by_type.entry(row.error_type.clone()).or_default() += 1;
        for e in &row.errors {
            // `items.3.sku` counts under `items.*.sku`: one counter per field, not per index.
            let field = e.field.as_deref().map_or_else(
                || "(record)".to_string(),
                |f| {
                    f.split('.')
                        .map(|s| {
                            if s.bytes().all(|b| b.is_ascii_digit()) {
                                "*"
                            } else {
                                s
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(".")
                },
            );
            *by_field.entry(field).or_default() += 1;
        }
    }
}
