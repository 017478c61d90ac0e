//! Validation of Arrow record batches against a `CompiledSchema`, one column at a time.
//!
//! For every schema field: coerce the input column (`coerce`), run its checks (`checks`),
//! apply null/required/default rules; then reject rows with any error and keep the rest with
//! `filter_record_batch`. Errors are collected as compact (row, field, message) tuples and only
//! turned into `FieldError`s for failing rows, so the happy path allocates per column, not per row.

mod canonical;
pub(crate) mod checks;
pub(crate) mod coerce;
mod decimal;
pub(crate) mod formats;
mod nested;
mod nested_arrow;
mod tape;
pub(crate) mod text;

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, BooleanBufferBuilder, Scalar, new_null_array};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::zip::zip;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::schema::{CompiledSchema, FieldSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Coercion,
    Constraint,
    MissingColumn,
    ExtraColumn,
    MalformedRecord,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    pub field: Option<String>,
    #[serde(rename = "type")]
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Validated {
    /// Rows without any error, in input order, in `CompiledSchema::arrow_schema()`.
    pub valid: RecordBatch,
    /// (row index in the input batch, every reason for that row), ascending row index.
    pub invalid: Vec<(usize, Vec<FieldError>)>,
}

pub(crate) const FIELD_REQUIRED: &str = "Field required";
pub(crate) const COLUMN_MISSING: &str = "Field required (column missing from input)";
pub(crate) const EXTRA_FORBIDDEN: &str = "Extra inputs are not permitted";

/// One error before it becomes a `FieldError`: borrowed name and message, no allocation
/// (owned only for locations inside lists, sub-models and dicts).
struct RowError<'a> {
    row: usize,
    field: Cow<'a, str>,
    kind: ErrorKind,
    message: Cow<'a, str>,
}

impl CompiledSchema {
    /// An input column name this schema reads that the input has twice (or a name repeated
    /// among the members of a sub-model in such a column); any repeated name when extra
    /// columns are refused. Columns nothing reads may repeat, as pydantic ignores them.
    fn repeated_name_used(&self, fields: &arrow::datatypes::Fields) -> Option<String> {
        repeated_name(fields, &|name| {
            !self.additional_properties() || self.fields().iter().any(|f| f.name == name)
        })
    }
}

/// A name used twice among those of `fields` that `read` names, or among the members of a
/// sub-model inside them (at any depth), dotted from the top (`address.zip`).
fn repeated_name(fields: &arrow::datatypes::Fields, read: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut seen = std::collections::HashSet::with_capacity(fields.len());
    for field in fields.iter().filter(|f| read(f.name())) {
        if !seen.insert(field.name().as_str()) {
            return Some(field.name().clone());
        }
        if let Some(inner) = repeated_inside(field.data_type()) {
            return Some(format!("{}.{inner}", field.name()));
        }
    }
    None
}

fn repeated_inside(data_type: &DataType) -> Option<String> {
    match data_type {
        DataType::Struct(fields) => repeated_name(fields, &|_| true),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::Map(f, _) => repeated_inside(f.data_type()),
        _ => None,
    }
}

impl CompiledSchema {
    pub fn validate(&self, input: &RecordBatch) -> Result<Validated, ArrowError> {
        let rows = input.num_rows();
        let input_schema = input.schema();
        if let Some(name) = self.repeated_name_used(input_schema.fields()) {
            return Err(ArrowError::SchemaError(format!(
                "the input has more than one column named '{name}'; columns are matched by \
                 name, so which one is meant cannot be told"
            )));
        }
        let mut errors: Vec<RowError<'_>> = Vec::new();
        let mut columns = Vec::with_capacity(self.fields().len());

        for spec in self.fields() {
            let column = match input_schema.index_of(&spec.name) {
                Ok(index) => validate_column(spec, input.column(index), &mut errors)?,
                Err(_) => missing_column(spec, rows, &mut errors)?,
            };
            columns.push(column);
        }
        if !self.additional_properties() {
            for (field, column) in input_schema.fields().iter().zip(input.columns()) {
                if self.fields().iter().any(|f| f.name == *field.name()) {
                    continue;
                }
                if column.null_count() == column.len() {
                    continue;
                }
                errors.extend(
                    (0..rows)
                        .filter(|&i| column.is_valid(i))
                        .map(|row| RowError {
                            row,
                            field: Cow::Borrowed(field.name()),
                            kind: ErrorKind::ExtraColumn,
                            message: Cow::Borrowed(EXTRA_FORBIDDEN),
                        }),
                );
            }
        }

        // Stable: within a row, errors stay in field order.
        errors.sort_by_key(|e| e.row);
        let invalid = group_by_row(&errors);
        let valid = self.keep_valid_rows(columns, rows, &invalid)?;
        Ok(Validated { valid, invalid })
    }

    fn keep_valid_rows(
        &self,
        columns: Vec<ArrayRef>,
        rows: usize,
        invalid: &[(usize, Vec<FieldError>)],
    ) -> Result<RecordBatch, ArrowError> {
        let output = self.arrow_schema();
        let count = |n| RecordBatchOptions::new().with_row_count(Some(n));
        if invalid.is_empty() {
            return RecordBatch::try_new_with_options(output, columns, &count(rows));
        }
        // Invalid rows may hold nulls in non-nullable columns, so filter under an all-nullable
        // schema first and apply the real one to what is left.
        let loose = Schema::new(
            output
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        let all = RecordBatch::try_new_with_options(Arc::new(loose), columns, &count(rows))?;
        let mut keep = BooleanBufferBuilder::new(rows);
        keep.append_n(rows, true);
        for (row, _) in invalid {
            keep.set_bit(*row, false);
        }
        let kept = filter_record_batch(&all, &BooleanArray::new(keep.finish(), None))?;
        let kept_rows = kept.num_rows();
        RecordBatch::try_new_with_options(output, kept.columns().to_vec(), &count(kept_rows))
    }
}

fn group_by_row(errors: &[RowError<'_>]) -> Vec<(usize, Vec<FieldError>)> {
    let mut invalid: Vec<(usize, Vec<FieldError>)> = Vec::new();
    for e in errors {
        let error = FieldError {
            field: Some(e.field.to_string()),
            kind: e.kind,
            message: e.message.to_string(),
        };
        match invalid.last_mut() {
            Some((row, list)) if *row == e.row => list.push(error),
            _ => invalid.push((e.row, vec![error])),
        }
    }
    invalid
}

fn validate_column<'a>(
    spec: &'a FieldSpec,
    column: &ArrayRef,
    errors: &mut Vec<RowError<'a>>,
) -> Result<ArrayRef, ArrowError> {
    if let Some(node) = &spec.nested {
        let (array, found) = nested::validate(spec, node, column)?;
        errors.extend(found.into_iter().map(|e| RowError {
            row: e.row,
            field: Cow::Owned(e.loc),
            kind: e.kind,
            message: Cow::Owned(e.message),
        }));
        return Ok(array);
    }
    let mut coerced = coerce::coerce(column, &spec.data_type)?;
    coerced.array = canonical::canonical(spec, coerced.array);
    let mut field_errors: Vec<(usize, ErrorKind, &'a str)> = coerced
        .failures
        .iter()
        .map(|&(row, message)| (row, ErrorKind::Coercion, message))
        .collect();
    // Rows that failed coercion are null in `coerced.array`, so checks skip them.
    for check in &spec.checks {
        let failing = checks::failing_rows(&check.rule, &coerced.array)?;
        field_errors.extend(
            failing
                .into_iter()
                .map(|row| (row, ErrorKind::Constraint, check.message.as_str())),
        );
    }
    let mut array = coerced.array;
    if column.null_count() > 0 {
        if let Some(default) = &spec.default_array {
            let is_null = arrow::compute::is_null(column.as_ref())?;
            array = zip(&is_null, &Scalar::new(Arc::clone(default)), &array)?;
        } else if !spec.nullable {
            field_errors.extend(
                (0..column.len())
                    .filter(|&i| column.is_null(i))
                    .map(|row| (row, ErrorKind::Constraint, FIELD_REQUIRED)),
            );
        }
    }
    // One error per failing field and row: the first one, in check order (as pydantic stops).
    field_errors.sort_by_key(|e| e.0);
    field_errors.dedup_by_key(|e| e.0);
    errors.extend(
        field_errors
            .into_iter()
            .map(|(row, kind, message)| RowError {
                row,
                field: Cow::Borrowed(spec.name.as_str()),
                kind,
                message: Cow::Borrowed(message),
            }),
    );
    Ok(array)
}

fn missing_column<'a>(
    spec: &'a FieldSpec,
    rows: usize,
    errors: &mut Vec<RowError<'a>>,
) -> Result<ArrayRef, ArrowError> {
    if spec.nested.is_some() && spec.default.is_some() && !spec.required {
        // A list/model/dict default (`tags: list[str] = []`) is validated into the column.
        let absent = new_null_array(&arrow::datatypes::DataType::Utf8, rows);
        return validate_column(spec, &absent, errors);
    }
    let nulls = new_null_array(&spec.data_type, rows);
    if spec.required {
        errors.extend((0..rows).map(|row| RowError {
            row,
            field: Cow::Borrowed(spec.name.as_str()),
            kind: ErrorKind::MissingColumn,
            message: Cow::Borrowed(COLUMN_MISSING),
        }));
        return Ok(nulls);
    }
    match &spec.default_array {
        Some(default) => {
            let everywhere = BooleanArray::from(vec![true; rows]);
            zip(&everywhere, &Scalar::new(Arc::clone(default)), &nulls)
        }
        None => Ok(nulls),
    }
}
