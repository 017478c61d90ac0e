//! A container field's Arrow column built straight from the walked tape: the structure
//! (offsets, validity, map keys) from the tape, column by column, and each leaf's values taken
//! from its coerced leaf column (arrow's `take`), without writing JSON and decoding it again.
//! What this does not cover (a set's duplicates, a member default with a value, a leaf that
//! was not walked) answers `None`, and the caller takes the JSON route.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ListArray, MapArray, StringBuilder, StructArray, UInt32Array};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields};
use arrow::error::ArrowError;

use super::tape::Json;
use crate::schema::nested::{Node, Shape};

/// Where each walked leaf value went: its bucket's coerced column, and its row there.
pub(super) struct Leaves<'a> {
    /// The coerced column of each bucket.
    pub coerced: &'a [ArrayRef],
    /// The bucket of a leaf field, if any of its values was walked.
    pub bucket: &'a dyn Fn(&Node) -> Option<usize>,
    /// By tape position: the value's row in its bucket (`u32::MAX`: not a walked leaf).
    pub slot: &'a [u32],
}

/// Whether the direct route covers this tree: no sets (their duplicates are dropped by
/// comparing written values) and no member defaults other than null.
pub(super) fn covers(node: &Node) -> bool {
    match &node.shape {
        Shape::Leaf(_) => true,
        Shape::List { item, set, .. } => !set && covers(item),
        Shape::Struct { fields, .. } => fields
            .iter()
            .all(|f| f.default.as_ref().is_none_or(|d| d.is_null()) && covers(f)),
        Shape::Map { value, .. } => covers(value),
    }
}

fn present<'t, 'a>(value: &Option<Json<'t, 'a>>) -> Option<Json<'t, 'a>> {
    value.filter(|v| !v.is_null())
}

fn nulls(values: &[Option<Json>]) -> Option<NullBuffer> {
    let valid: Vec<bool> = values.iter().map(|v| present(v).is_some()).collect();
    let buffer = NullBuffer::from(valid);
    (buffer.null_count() > 0).then_some(buffer)
}

/// The column of `node` for these values (`None`: a null), or `None` when the direct route
/// does not cover them.
pub(super) fn build(
    node: &Node,
    values: &[Option<Json>],
    leaves: &Leaves,
) -> Result<Option<ArrayRef>, ArrowError> {
    let data_type = node.data_type();
    Ok(Some(match &node.shape {
        Shape::Leaf(_) => {
            let Some(bucket) = (leaves.bucket)(node) else {
                // No value of this leaf field was walked: every one is null.
                if values.iter().any(|v| present(v).is_some()) {
                    return Ok(None);
                }
                return Ok(Some(arrow::array::new_null_array(&data_type, values.len())));
            };
            let mut rows = Vec::with_capacity(values.len());
            for value in values {
                match present(value) {
                    None => rows.push(None),
                    Some(v) => match leaves.slot.get(v.index()).copied() {
                        Some(slot) if slot != u32::MAX => rows.push(Some(slot)),
                        _ => return Ok(None),
                    },
                }
            }
            let taken = arrow::compute::take(
                leaves.coerced[bucket].as_ref(),
                &UInt32Array::from(rows),
                None,
            )?;
            if taken.data_type() != &data_type {
                return Ok(None);
            }
            taken
        }
        Shape::List { item, .. } => {
            let mut children = Vec::new();
            let mut lengths = Vec::with_capacity(values.len());
            for value in values {
                let before = children.len();
                if let Some(v) = present(value) {
                    children.extend(v.items().map(Some));
                }
                lengths.push(children.len() - before);
            }
            let Some(child) = build(item, &children, leaves)? else {
                return Ok(None);
            };
            let field = Arc::new(Field::new("item", item.data_type(), true));
            Arc::new(ListArray::try_new(
                field,
                OffsetBuffer::from_lengths(lengths),
                child,
                nulls(values),
            )?)
        }
        Shape::Struct { fields, .. } => {
            let mut columns = Vec::with_capacity(fields.len());
            for field in fields {
                let members: Vec<Option<Json>> = values
                    .iter()
                    .map(|v| present(v).and_then(|v| v.get(&field.name)))
                    .collect();
                let Some(column) = build(field, &members, leaves)? else {
                    return Ok(None);
                };
                columns.push(column);
            }
            let DataType::Struct(arrow_fields) = &data_type else {
                return Ok(None);
            };
            // With its length given: a model without fields has no child to take it from.
            Arc::new(StructArray::try_new_with_length(
                arrow_fields.clone(),
                columns,
                nulls(values),
                values.len(),
            )?)
        }
        Shape::Map { value: each, .. } => {
            let mut keys = StringBuilder::new();
            let mut children = Vec::new();
            let mut lengths = Vec::with_capacity(values.len());
            for value in values {
                let before = children.len();
                if let Some(v) = present(value) {
                    for (key, member) in v.members() {
                        keys.append_value(key);
                        children.push(Some(member));
                    }
                }
                lengths.push(children.len() - before);
            }
            let Some(child) = build(each, &children, leaves)? else {
                return Ok(None);
            };
            let DataType::Map(entries_field, _) = &data_type else {
                return Ok(None);
            };
            let DataType::Struct(kv) = entries_field.data_type() else {
                return Ok(None);
            };
            let entries = StructArray::try_new(
                Fields::clone(kv),
                vec![Arc::new(keys.finish()), child],
                None,
            )?;
            Arc::new(MapArray::try_new(
                entries_field.clone(),
                OffsetBuffer::from_lengths(lengths),
                entries,
                nulls(values),
                false,
            )?)
        }
    }))
}
