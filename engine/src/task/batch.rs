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
    let extra_keys: &[(usize, Vec<String>)] = if schema.additional_properties() {
        &[]
    } else {
        &input.extra_keys
    };
    if !extra_keys.is_empty() || !input.non_strings.is_empty() {
        let mut found = reader_findings(extra_keys, &input.non_strings, &input.batch);
        valid = reject_rows(valid, &mut invalid, &mut found, input.batch.num_rows())?;
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

/// What the JSON reader found that fails a row, by row: keys that are not schema fields (when
/// `additionalProperties` is false) and values that are not strings in string fields.
fn reader_findings(
    extra_keys: &[(usize, Vec<String>)],
    non_strings: &[(usize, usize)],
    batch: &RecordBatch,
) -> HashMap<usize, Vec<FieldError>> {
    let mut found: HashMap<usize, Vec<FieldError>> = HashMap::new();
    let schema = batch.schema();
    for &(row, col) in non_strings {
        found.entry(row).or_default().push(FieldError {
            field: Some(schema.field(col).name().clone()),
            kind: ErrorKind::Coercion,
            message: "Input should be a valid string".into(),
        });
    }
    for (row, keys) in extra_keys {
        found
            .entry(*row)
            .or_default()
            .extend(keys.iter().map(|k| FieldError {
                field: Some(k.clone()),
                kind: ErrorKind::ExtraColumn,
                message: "Extra inputs are not permitted".into(),
            }));
    }
    found
}

/// Fail the rows in `found` with its reasons. A field refused as not a string has that one
/// error, as in pydantic: what validating its text said is dropped.
fn reject_rows(
    valid: RecordBatch,
    invalid: &mut Vec<(usize, Vec<FieldError>)>,
    found: &mut HashMap<usize, Vec<FieldError>>,
    rows: usize,
) -> Result<RecordBatch> {
    let already: HashMap<usize, usize> = invalid
        .iter()
        .enumerate()
        .map(|(i, (r, _))| (*r, i))
        .collect();
    let mut keep = Vec::with_capacity(valid.num_rows());
    let mut newly = Vec::new();
    for row in 0..rows {
        match (already.get(&row), found.remove(&row)) {
            (Some(&i), Some(reasons)) => {
                let reasons_of = &mut invalid[i].1;
                reasons_of.retain(|e| {
                    !reasons
                        .iter()
                        .any(|r| r.kind == ErrorKind::Coercion && is_within(e, r))
                });
                reasons_of.extend(reasons);
            }
            (Some(_), None) => {}
            (None, Some(reasons)) => {
                keep.push(false);
                newly.push((row, reasons));
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

/// `error` is about the field `of` names, or something inside it.
fn is_within(error: &FieldError, of: &FieldError) -> bool {
    match (&error.field, &of.field) {
        (Some(e), Some(f)) => {
            e == f
                || e.strip_prefix(f.as_str())
                    .is_some_and(|r| r.starts_with('.'))
        }
        _ => false,
    }
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
