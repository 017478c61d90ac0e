//! Validation of list, sub-model and dict fields (`schema::nested`), as pydantic's JSON mode
//! validates them: each failing value is reported at its location, dotted as pydantic's `loc`
//! (`items.1.sku`, `shipping.zip`, `attrs.w`), one error per location, in pydantic's order.
//!
//! The containers are walked per row (their JSON text, or a nested Arrow column turned into
//! JSON); the leaves are gathered per leaf field across the batch and coerced and checked
//! column-wise by the same code as top-level columns. The valid values then become the Arrow
//! column (`List` / `Struct` / `Map`) through arrow's JSON decoder.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::Value;

use super::{EXTRA_FORBIDDEN, ErrorKind, FIELD_REQUIRED, checks, coerce};
use crate::schema::FieldSpec;
use crate::schema::nested::{Node, Shape};

const ARRAY_TYPE: &str = "Input should be a valid array";
const OBJECT_TYPE: &str = "Input should be an object";

/// One failing location of one row.
pub(super) struct NestedError {
    pub(super) row: usize,
    pub(super) loc: String,
    pub(super) kind: ErrorKind,
    pub(super) message: String,
    /// Position in the walk: pydantic's order within a row.
    ordinal: usize,
}

/// Where a leaf value sits: its row, location and JSON pointer, and its text.
struct Hit {
    row: usize,
    ordinal: usize,
    loc: String,
    pointer: String,
}

struct Bucket<'n> {
    spec: &'n FieldSpec,
    hits: Vec<Hit>,
    texts: Vec<Option<String>>,
}

struct Walk<'n> {
    errors: Vec<NestedError>,
    buckets: Vec<Bucket<'n>>,
    bucket_of: HashMap<*const Node, usize>,
    /// Defaults of absent sub-model members: (row, the object's pointer, key, value).
    defaults: Vec<(usize, String, String, Value)>,
    ordinal: usize,
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl<'n> Walk<'n> {
    fn error(&mut self, row: usize, loc: &str, kind: ErrorKind, message: impl Into<String>) {
        self.ordinal += 1;
        self.errors.push(NestedError {
            row,
            loc: loc.to_string(),
            kind,
            message: message.into(),
            ordinal: self.ordinal,
        });
    }

    fn walk(&mut self, node: &'n Node, value: &Value, row: usize, loc: &str, pointer: &str) {
        self.ordinal += 1;
        if value.is_null() && node.optional {
            return;
        }
        match &node.shape {
            Shape::Leaf(spec) => {
                let text = match value {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    Value::Array(_) | Value::Object(_) => {
                        let message = coerce::type_message(&spec.data_type);
                        self.error(row, loc, ErrorKind::Coercion, message);
                        return;
                    }
                };
                if text.is_none() {
                    let message = coerce::type_message(&spec.data_type);
                    self.error(row, loc, ErrorKind::Coercion, message);
                    return;
                }
                let key = node as *const Node;
                let index = match self.bucket_of.get(&key) {
                    Some(i) => *i,
                    None => {
                        self.buckets.push(Bucket {
                            spec,
                            hits: Vec::new(),
                            texts: Vec::new(),
                        });
                        self.bucket_of.insert(key, self.buckets.len() - 1);
                        self.buckets.len() - 1
                    }
                };
                let ordinal = self.ordinal;
                let bucket = &mut self.buckets[index];
                bucket.hits.push(Hit {
                    row,
                    ordinal,
                    loc: loc.to_string(),
                    pointer: pointer.to_string(),
                });
                bucket.texts.push(text);
            }
            Shape::List {
                item,
                min,
                max,
                set,
            } => {
                let Value::Array(items) = value else {
                    self.error(row, loc, ErrorKind::Coercion, ARRAY_TYPE);
                    return;
                };
                let what = if *set { "Set" } else { "List" };
                if let Some(max) = max
                    && items.len() > *max
                {
                    let message = format!(
                        "{what} should have at most {max} item{} after validation, not {}",
                        plural(*max),
                        items.len()
                    );
                    self.error(row, loc, ErrorKind::Constraint, message);
                    return;
                }
                let before = self.errors.len();
                for (i, element) in items.iter().enumerate() {
                    self.walk(
                        item,
                        element,
                        row,
                        &format!("{loc}.{i}"),
                        &format!("{pointer}/{i}"),
                    );
                }
                if let Some(min) = min
                    && items.len() < *min
                    && self.errors.len() == before
                {
                    let message = format!(
                        "{what} should have at least {min} item{} after validation, not {}",
                        plural(*min),
                        items.len()
                    );
                    self.error(row, loc, ErrorKind::Constraint, message);
                }
            }
            Shape::Struct {
                fields,
                forbid_extra,
            } => {
                let Value::Object(members) = value else {
                    self.error(row, loc, ErrorKind::Coercion, OBJECT_TYPE);
                    return;
                };
                for field in fields {
                    let member_loc = format!("{loc}.{}", field.name);
                    match members.get(&field.name) {
                        Some(v) => {
                            let member_pointer = format!("{pointer}/{}", escape(&field.name));
                            self.walk(field, v, row, &member_loc, &member_pointer);
                        }
                        None if field.required => {
                            self.error(row, &member_loc, ErrorKind::Constraint, FIELD_REQUIRED);
                        }
                        None => {
                            if let Some(default) = &field.default {
                                self.defaults.push((
                                    row,
                                    pointer.to_string(),
                                    field.name.clone(),
                                    default.clone(),
                                ));
                            }
                        }
                    }
                }
                if *forbid_extra {
                    for key in members.keys() {
                        if !fields.iter().any(|f| &f.name == key) {
                            let extra = format!("{loc}.{key}");
                            self.error(row, &extra, ErrorKind::ExtraColumn, EXTRA_FORBIDDEN);
                        }
                    }
                }
            }
            Shape::Map {
                value: each,
                min,
                max,
            } => {
                let Value::Object(entries) = value else {
                    self.error(row, loc, ErrorKind::Coercion, OBJECT_TYPE);
                    return;
                };
                if let Some(max) = max
                    && entries.len() > *max
                {
                    let message = format!(
                        "Dictionary should have at most {max} item{} after validation, not {}",
                        plural(*max),
                        entries.len()
                    );
                    self.error(row, loc, ErrorKind::Constraint, message);
                    return;
                }
                let before = self.errors.len();
                for (key, v) in entries {
                    self.walk(
                        each,
                        v,
                        row,
                        &format!("{loc}.{key}"),
                        &format!("{pointer}/{}", escape(key)),
                    );
                }
                if let Some(min) = min
                    && entries.len() < *min
                    && self.errors.len() == before
                {
                    let message = format!(
                        "Dictionary should have at least {min} item{} after validation, not {}",
                        plural(*min),
                        entries.len()
                    );
                    self.error(row, loc, ErrorKind::Constraint, message);
                }
            }
        }
    }
}

/// JSON Pointer escaping of one key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The column's values as JSON: parsed text (a cell that is not JSON stays a string, and
/// fails as the wrong type), or a nested Arrow column written out as JSON.
fn json_values(name: &str, column: &ArrayRef) -> Result<Vec<Option<Value>>, ArrowError> {
    if matches!(
        column.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        let text = arrow::compute::cast(column, &DataType::Utf8)?;
        return Ok(text
            .as_string::<i32>()
            .iter()
            .map(|cell| {
                cell.map(|s| {
                    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
                })
            })
            .collect());
    }
    let schema = Schema::new(vec![Field::new(name, column.data_type().clone(), true)]);
    let batch = RecordBatch::try_new(Arc::new(schema), vec![column.clone()])?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(&batch)?;
    writer.finish()?;
    let rows: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&writer.into_inner())
        .map_err(|e| ArrowError::JsonError(e.to_string()))?;
    Ok(rows.into_iter().map(|mut r| r.remove(name)).collect())
}

/// A coerced leaf value as the JSON arrow's decoder reads back into the leaf's type.
fn canonical(array: &ArrayRef, i: usize) -> Result<Value, ArrowError> {
    Ok(match array.data_type() {
        DataType::Int64 => {
            Value::from(array.as_primitive::<arrow::datatypes::Int64Type>().value(i))
        }
        DataType::Float64 => Value::from(
            array
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(i),
        ),
        DataType::Boolean => Value::Bool(array.as_boolean().value(i)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(i).to_string()),
        _ => {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
            Value::String(formatter.value(i).to_string())
        }
    })
}

/// Validate a container field's column; its Arrow column (failed rows null) and its errors,
/// ordered by row and then as pydantic orders them.
pub(super) fn validate(
    spec: &FieldSpec,
    node: &Node,
    column: &ArrayRef,
) -> Result<(ArrayRef, Vec<NestedError>), ArrowError> {
    let mut values = json_values(&spec.name, column)?;
    let mut walk = Walk {
        errors: Vec::new(),
        buckets: Vec::new(),
        bucket_of: HashMap::new(),
        defaults: Vec::new(),
        ordinal: 0,
    };
    for (row, value) in values.iter_mut().enumerate() {
        if value.as_ref().is_none_or(Value::is_null) {
            match &spec.default {
                Some(default) => *value = Some(default.clone()),
                None if spec.nullable => {
                    *value = None;
                    continue;
                }
                None => {
                    walk.error(row, &spec.name, ErrorKind::Constraint, FIELD_REQUIRED);
                    continue;
                }
            }
        }
        if let Some(v) = value.as_ref() {
            walk.walk(node, v, row, &spec.name, "");
        }
    }
    // Leaves, one column per leaf field: coerced and checked as top-level columns are.
    let mut replacements: Vec<(usize, String, Value)> = Vec::new();
    for bucket in &walk.buckets {
        let texts: ArrayRef = Arc::new(arrow::array::StringArray::from(bucket.texts.clone()));
        let coerced = coerce::coerce(&texts, &bucket.spec.data_type)?;
        let mut failed: Vec<(usize, ErrorKind, String)> = coerced
            .failures
            .iter()
            .map(|(i, m)| (*i, ErrorKind::Coercion, m.to_string()))
            .collect();
        for check in &bucket.spec.checks {
            for i in checks::failing_rows(&check.rule, &coerced.array)? {
                failed.push((i, ErrorKind::Constraint, check.message.clone()));
            }
        }
        failed.sort_by_key(|f| f.0);
        failed.dedup_by_key(|f| f.0);
        let mut failing = failed.into_iter().peekable();
        for (i, hit) in bucket.hits.iter().enumerate() {
            if failing.peek().is_some_and(|f| f.0 == i) {
                if let Some((_, kind, message)) = failing.next() {
                    walk.errors.push(NestedError {
                        row: hit.row,
                        loc: hit.loc.clone(),
                        kind,
                        message,
                        ordinal: hit.ordinal,
                    });
                }
                continue;
            }
            replacements.push((hit.row, hit.pointer.clone(), canonical(&coerced.array, i)?));
        }
    }
    let mut errors = walk.errors;
    errors.sort_by_key(|e| (e.row, e.ordinal));
    errors.dedup_by(|a, b| a.row == b.row && a.loc == b.loc);
    let failed_rows: std::collections::HashSet<usize> = errors.iter().map(|e| e.row).collect();
    for (row, pointer, canonical) in replacements {
        if failed_rows.contains(&row) {
            continue;
        }
        if let Some(Some(value)) = values.get_mut(row)
            && let Some(slot) = value.pointer_mut(&pointer)
        {
            *slot = canonical;
        }
    }
    for (row, pointer, key, default) in walk.defaults {
        if let Some(Some(value)) = values.get_mut(row)
            && let Some(Value::Object(members)) = value.pointer_mut(&pointer)
        {
            members.insert(key, default);
        }
    }
    // The valid values as the field's Arrow column, through arrow's JSON decoder.
    let mut lines = Vec::new();
    for (row, value) in values.iter_mut().enumerate() {
        match value {
            Some(v) if !failed_rows.contains(&row) => {
                dedupe_sets(node, v);
                serde_json::to_writer(&mut lines, &serde_json::json!({ "v": v }))
                    .map_err(|e| ArrowError::JsonError(e.to_string()))?;
            }
            _ => lines.extend_from_slice(b"{}"),
        }
        lines.push(b'\n');
    }
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        spec.data_type.clone(),
        true,
    )]));
    let mut decoder = arrow::json::ReaderBuilder::new(schema)
        .with_batch_size(values.len().max(1))
        .build_decoder()?;
    decoder.decode(&lines)?;
    let array = match decoder.flush()? {
        Some(batch) => batch.column(0).clone(),
        None => arrow::array::new_null_array(&spec.data_type, values.len()),
    };
    Ok((array, errors))
}

/// `set[T]`: keep the first of equal items, as pydantic's set does.
fn dedupe_sets(node: &Node, value: &mut Value) {
    match (&node.shape, value) {
        (Shape::List { item, set, .. }, Value::Array(items)) => {
            for element in items.iter_mut() {
                dedupe_sets(item, element);
            }
            if *set {
                let mut seen = std::collections::HashSet::new();
                items.retain(|v| seen.insert(v.to_string()));
            }
        }
        (Shape::Struct { fields, .. }, Value::Object(members)) => {
            for field in fields {
                if let Some(v) = members.get_mut(&field.name) {
                    dedupe_sets(field, v);
                }
            }
        }
        (Shape::Map { value: each, .. }, Value::Object(entries)) => {
            for v in entries.values_mut() {
                dedupe_sets(each, v);
            }
        }
        _ => {}
    }
}
