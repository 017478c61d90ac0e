//! One source batch through validation: valid rows to the output writer, everything else to
//! error rows with source position, original values and every reason.

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use std::collections::{BTreeMap, HashMap};
use zoopipe_common::errors_out::{ErrorRows, Position};
use zoopipe_common::format::{Positions, SourceBatch};
use zoopipe_common::schema::CompiledSchema;
use zoopipe_common::validate::{ErrorKind, FieldError};
use zoopipe_common::{Error, Result};

/// What came out of one batch.
pub struct Routed {
    pub valid: RecordBatch,
    pub errors: ErrorRows,
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
    let position = |row: usize| -> Position {
        match &input.positions {
            Positions::Lines(lines) => (lines.get(row).copied(), None),
            Positions::Rows { first } => (None, Some(first + row as u64)),
        }
    };
    let by_line = matches!(input.positions, Positions::Lines(_));
    let rejected = input
        .rejects
        .into_iter()
        .map(|reject| {
            let at = if by_line {
                (Some(reject.position), None)
            } else {
                (None, Some(reject.position))
            };
            (at, reject)
        })
        .collect();
    let errors = ErrorRows::new(&source, &input.batch, invalid, position, rejected)?;
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

/// Add a routed batch's errors to the per-field and per-type counters.
pub fn count_errors(
    errors: &ErrorRows,
    by_field: &mut BTreeMap<String, u64>,
    by_type: &mut BTreeMap<String, u64>,
) {
    for (error_type, reasons) in errors.reasons() {
        *by_type.entry(error_type.to_string()).or_default() += 1;
        for e in reasons {
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
