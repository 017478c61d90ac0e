//! Validation of list, sub-model and dict fields (`schema::nested`), as pydantic's JSON mode
//! validates them: each failing value is reported at its location, dotted as pydantic's `loc`
//! (`items.1.sku`, `shipping.zip`, `attrs.w`), one error per location, in pydantic's order.
//!
//! The containers are walked per row (their JSON text, or a nested Arrow column turned into
//! JSON); the leaves are gathered per leaf field across the batch and coerced and checked
//! column-wise by the same code as top-level columns. The valid values then become the Arrow
//! column (`List` / `Struct` / `Map`) through arrow's JSON decoder.

use std::sync::Arc;

use std::fmt::Write as _;

use super::nested_arrow;
use super::tape::{Json, Kind, Tape};
use super::{EXTRA_FORBIDDEN, ErrorKind, FIELD_REQUIRED, checks, coerce};
use crate::format::json::Target;
use crate::schema::FieldSpec;
use crate::schema::nested::{Node, Shape};
use arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

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
    /// A too-short list or dict: pydantic reports it only when none of its values failed.
    too_short: bool,
}

/// One step into a container: a member or key, or a list index.
#[derive(Clone, Copy)]
enum Seg<'s> {
    Key(&'s str),
    Index(usize),
}

/// `field.items.1.sku`, as pydantic's `loc` joined with dots.
fn render(field: &str, path: &[Seg]) -> String {
    let mut loc = field.to_string();
    for seg in path {
        loc.push('.');
        match seg {
            Seg::Key(k) => loc.push_str(k),
            Seg::Index(i) => {
                let _ = write!(loc, "{i}");
            }
        }
    }
    loc
}

/// The leaf values of one leaf field, across the batch, in walk order.
struct Bucket<'n> {
    spec: &'n FieldSpec,
    /// (row, position in the row's walk) of each value.
    hits: Vec<(usize, usize)>,
    texts: StringBuilder,
}

/// Which bucket holds each leaf field's values: a handful per container field, so a list
/// scanned by address beats hashing.
#[derive(Default)]
struct BucketOf(Vec<(*const Node, usize)>);

impl BucketOf {
    fn get(&self, node: *const Node) -> Option<usize> {
        self.0.iter().find(|(n, _)| *n == node).map(|(_, b)| *b)
    }
}

struct Walk<'n> {
    field: &'n str,
    errors: Vec<NestedError>,
    buckets: Vec<Bucket<'n>>,
    bucket_of: BucketOf,
    /// Position in the current row's walk (pydantic's order of errors within a row).
    ordinal: usize,
    /// Errors found while walking (in both modes, so both walks count positions alike).
    found_errors: usize,
    /// By tape position: where each bucketed leaf value sits in its bucket (`u32::MAX`: none).
    slots: Vec<u32>,
    /// `Some(n)`: only find where the value at position `n` sits (`found`).
    locate: Option<usize>,
    found: Option<String>,
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl<'n> Walk<'n> {
    fn error(&mut self, row: usize, path: &[Seg], kind: ErrorKind, message: impl Into<String>) {
        self.ordinal += 1;
        self.found_errors += 1;
        if self.locate.is_some() {
            return;
        }
        self.errors.push(NestedError {
            row,
            loc: render(self.field, path),
            kind,
            message: message.into(),
            ordinal: self.ordinal,
            too_short: false,
        });
    }

    fn too_short(&mut self, row: usize, path: &[Seg], message: String) {
        self.error(row, path, ErrorKind::Constraint, message);
        if self.locate.is_none()
            && let Some(last) = self.errors.last_mut()
        {
            last.too_short = true;
        }
    }

    /// A list's or dict's length, as pydantic checks it: too long is the only error reported;
    /// otherwise its values are walked, and too short is reported when none of them failed.
    fn sized<'s>(
        &mut self,
        what: &str,
        len: usize,
        (min, max): (Option<usize>, Option<usize>),
        row: usize,
        path: &mut Vec<Seg<'s>>,
        values: impl FnOnce(&mut Self, &mut Vec<Seg<'s>>),
    ) {
        if let Some(max) = max
            && len > max
        {
            let message = format!(
                "{what} should have at most {max} item{} after validation, not {len}",
                plural(max)
            );
            self.error(row, path, ErrorKind::Constraint, message);
            return;
        }
        let before = self.found_errors;
        values(self, path);
        if let Some(min) = min
            && len < min
            && self.found_errors == before
        {
            let message = format!(
                "{what} should have at least {min} item{} after validation, not {len}",
                plural(min)
            );
            self.too_short(row, path, message);
        }
    }

    fn walk<'s>(&mut self, node: &'n Node, value: Json<'s, '_>, row: usize, path: &mut Vec<Seg<'s>>)
    where
        'n: 's,
    {
        self.ordinal += 1;
        if self.locate == Some(self.ordinal) {
            self.found = Some(render(self.field, path));
        }
        if value.is_null() && node.optional {
            return;
        }
        match &node.shape {
            Shape::Leaf(spec) => {
                // A number or boolean in a string field is refused too, as pydantic's JSON
                // mode refuses it (CSV cells never reach here as numbers: they are text).
                let not_text = Target::of(spec) == Target::Text
                    && matches!(value.kind(), Kind::Number(_) | Kind::Bool(_));
                if not_text || matches!(value.kind(), Kind::Null | Kind::Array | Kind::Object) {
                    let message = coerce::type_message(&spec.data_type);
                    self.error(row, path, ErrorKind::Coercion, message);
                    return;
                }
                if self.locate.is_some() {
                    return;
                }
                let key = node as *const Node;
                let index = match self.bucket_of.get(key) {
                    Some(i) => i,
                    None => {
                        self.buckets.push(Bucket {
                            spec,
                            hits: Vec::new(),
                            texts: StringBuilder::new(),
                        });
                        self.bucket_of.0.push((key, self.buckets.len() - 1));
                        self.buckets.len() - 1
                    }
                };
                let ordinal = self.ordinal;
                let bucket = &mut self.buckets[index];
                let slot = bucket.hits.len() as u32;
                bucket.hits.push((row, ordinal));
                let at = value.index();
                if self.slots.len() <= at {
                    self.slots.resize(at + 1, u32::MAX);
                }
                self.slots[at] = slot;
                match value.kind() {
                    Kind::String(s) => bucket.texts.append_value(s),
                    // As pydantic's JSON mode: `true` in a number is 1, `1.0` in a bool true.
                    Kind::Number(s) => {
                        let target = Target::of(bucket.spec);
                        let read = s.parse::<f64>().ok().and_then(|f| target.float_text(f));
                        bucket.texts.append_value(read.unwrap_or(s));
                    }
                    Kind::Bool(b) => bucket
                        .texts
                        .append_value(Target::of(bucket.spec).bool_text(b)),
                    _ => bucket.texts.append_null(),
                }
            }
            Shape::List {
                item,
                min,
                max,
                set,
            } => {
                if !value.is_array() {
                    self.error(row, path, ErrorKind::Coercion, ARRAY_TYPE);
                    return;
                }
                let what = if *set { "Set" } else { "List" };
                let len = value.items().count();
                self.sized(what, len, (*min, *max), row, path, |walk, path| {
                    for (i, element) in value.items().enumerate() {
                        path.push(Seg::Index(i));
                        walk.walk(item, element, row, path);
                        path.pop();
                    }
                });
            }
            Shape::Struct {
                fields,
                forbid_extra,
            } => {
                if !value.is_object() {
                    self.error(row, path, ErrorKind::Coercion, OBJECT_TYPE);
                    return;
                }
                for field in fields {
                    path.push(Seg::Key(&field.name));
                    match value.get(&field.name) {
                        Some(v) => self.walk(field, v, row, path),
                        None if field.required => {
                            self.error(row, path, ErrorKind::Constraint, FIELD_REQUIRED);
                        }
                        None => {}
                    }
                    path.pop();
                }
                if *forbid_extra {
                    for (key, _) in value.members() {
                        if !fields.iter().any(|f| f.name == key) {
                            path.push(Seg::Key(key));
                            self.error(row, path, ErrorKind::ExtraColumn, EXTRA_FORBIDDEN);
                            path.pop();
                        }
                    }
                }
            }
            Shape::Map {
                value: each,
                min,
                max,
            } => {
                if !value.is_object() {
                    self.error(row, path, ErrorKind::Coercion, OBJECT_TYPE);
                    return;
                }
                let entries = value.members();
                self.sized(
                    "Dictionary",
                    entries.len(),
                    (*min, *max),
                    row,
                    path,
                    |walk, path| {
                        for (key, v) in entries {
                            path.push(Seg::Key(key));
                            walk.walk(each, v, row, path);
                            path.pop();
                        }
                    },
                );
            }
        }
    }
}

/// The column's cells as JSON text: text as it is (parsed onto the tape later; a cell that is
/// not JSON stays a string, and fails as the wrong type), a nested Arrow column written out.
fn json_texts(column: &ArrayRef) -> Result<StringArray, ArrowError> {
    if matches!(
        column.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        let text = arrow::compute::cast(column, &DataType::Utf8)?;
        return Ok(text.as_string::<i32>().clone());
    }
    crate::format::json_text::texts(column)
}

/// A default without any scalar in it (`null`, `[]`, `{}`): the direct route can build it.
fn leafless(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Array(items) => items.iter().all(leafless),
        serde_json::Value::Object(members) => members.values().all(leafless),
        _ => false,
    }
}

/// Writes valid rows as JSON for arrow's decoder: the input's structure, each leaf replaced by
/// its coerced value (so `"3"` in an int field becomes `3`), absent members by their default,
/// unknown members dropped, a set's duplicates dropped.
struct Writer<'a, 'n> {
    buckets: &'a [Bucket<'n>],
    bucket_of: &'a BucketOf,
    coerced: &'a [ArrayRef],
    formatters: Vec<Option<ArrayFormatter<'a>>>,
    cursors: Vec<usize>,
}

fn json_err(e: serde_json::Error) -> ArrowError {
    ArrowError::JsonError(e.to_string())
}

impl<'a, 'n> Writer<'a, 'n> {
    fn leaf(&mut self, node: &Node, row: usize, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        let Some(b) = self.bucket_of.get(node as *const Node) else {
            out.extend_from_slice(b"null");
            return Ok(());
        };
        let hits = &self.buckets[b].hits;
        let mut i = self.cursors[b];
        while i < hits.len() && hits[i].0 < row {
            i += 1; // values of rows that failed and are not written
        }
        self.cursors[b] = i + 1;
        let array = &self.coerced[b];
        if i >= hits.len() || array.is_null(i) {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        match array.data_type() {
            DataType::Int64 => {
                let v = array.as_primitive::<arrow::datatypes::Int64Type>().value(i);
                out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
            }
            DataType::Float64 => {
                let v = array
                    .as_primitive::<arrow::datatypes::Float64Type>()
                    .value(i);
                serde_json::to_writer(&mut *out, &v).map_err(json_err)?;
            }
            DataType::Boolean => {
                let v = array.as_boolean().value(i);
                out.extend_from_slice(if v { b"true" } else { b"false" });
            }
            DataType::Utf8 => {
                serde_json::to_writer(&mut *out, array.as_string::<i32>().value(i))
                    .map_err(json_err)?;
            }
            _ => {
                if self.formatters[b].is_none() {
                    self.formatters[b] = Some(ArrayFormatter::try_new(
                        array.as_ref(),
                        &FormatOptions::default(),
                    )?);
                }
                if let Some(formatter) = &self.formatters[b] {
                    let text = formatter.value(i).to_string();
                    serde_json::to_writer(&mut *out, &text).map_err(json_err)?;
                }
            }
        }
        Ok(())
    }

    fn value(
        &mut self,
        node: &Node,
        value: Json<'_, '_>,
        row: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ArrowError> {
        if value.is_null() {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        match &node.shape {
            Shape::Leaf(_) => self.leaf(node, row, out)?,
            Shape::List { item, set, .. } if value.is_array() => {
                out.push(b'[');
                let mut seen: Vec<Vec<u8>> = Vec::new();
                let mut first = true;
                for element in value.items() {
                    let mut one = Vec::new();
                    self.value(item, element, row, &mut one)?;
                    if *set {
                        if seen.contains(&one) {
                            continue;
                        }
                        seen.push(one.clone());
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.extend_from_slice(&one);
                }
                out.push(b']');
            }
            Shape::Struct { fields, .. } if value.is_object() => {
                out.push(b'{');
                let mut first = true;
                for field in fields {
                    let member = value.get(&field.name);
                    if member.is_none() && field.default.is_none() {
                        continue;
                    }
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(&mut *out, &field.name).map_err(json_err)?;
                    out.push(b':');
                    match (member, &field.default) {
                        (Some(member), _) => self.value(field, member, row, out)?,
                        (None, Some(default)) => {
                            serde_json::to_writer(&mut *out, default).map_err(json_err)?
                        }
                        (None, None) => {}
                    }
                }
                out.push(b'}');
            }
            Shape::Map { value: each, .. } if value.is_object() => {
                out.push(b'{');
                for (n, (key, v)) in value.members().into_iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, key).map_err(json_err)?;
                    out.push(b':');
                    self.value(each, v, row, out)?;
                }
                out.push(b'}');
            }
            _ => out.extend_from_slice(b"null"),
        }
        Ok(())
    }
}

#[cfg(test)]
thread_local! {
    /// Tests compare the direct route with the JSON route.
    static JSON_ROUTE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// How many columns the direct route built.
    static DIRECT_BUILT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn json_route_forced() -> bool {
    #[cfg(test)]
    return JSON_ROUTE.with(|f| f.get());
    #[cfg(not(test))]
    false
}

/// Whether some error of `row` sits inside `loc` (at any depth).
fn inside_any(parents: &std::collections::HashSet<(usize, String)>, row: usize, loc: &str) -> bool {
    parents
        .iter()
        .any(|(r, parent)| *r == row && (parent == loc || parent.starts_with(&format!("{loc}."))))
}

/// Validate a container field's column; its Arrow column (failed rows null) and its errors,
/// ordered by row and then as pydantic orders them.
pub(super) fn validate(
    spec: &FieldSpec,
    node: &Node,
    column: &ArrayRef,
) -> Result<(ArrayRef, Vec<NestedError>), ArrowError> {
    let texts = json_texts(column)?;
    let buffer = std::str::from_utf8(texts.values())
        .map_err(|e| ArrowError::JsonError(format!("{}: {e}", spec.name)))?;
    // About a token per 6 bytes of JSON: one allocation for the batch, not a growing one.
    let mut tape = Tape::new(buffer, buffer.len() / 6);
    let offsets = texts.value_offsets();
    let mut values: Vec<Option<usize>> = (0..texts.len())
        .map(|i| {
            texts
                .is_valid(i)
                .then(|| tape.push(offsets[i] as usize..offsets[i + 1] as usize))
        })
        .collect();
    // The field's default, on a tape of its own (its leaves are never walked).
    let default_text = spec.default.as_ref().map(|d| d.to_string());
    let mut default_tape = Tape::new(default_text.as_deref().unwrap_or(""), 0);
    let default_at = default_text.as_ref().map(|t| default_tape.push(0..t.len()));
    let mut walk = Walk {
        field: &spec.name,
        errors: Vec::new(),
        buckets: Vec::new(),
        bucket_of: BucketOf::default(),
        ordinal: 0,
        found_errors: 0,
        slots: Vec::new(),
        locate: None,
        found: None,
    };
    // Rows given the field's default: written as it is (pydantic does not validate defaults).
    let mut defaulted = vec![false; values.len()];
    for (row, value) in values.iter_mut().enumerate() {
        if value.is_none_or(|at| tape.get(at).is_null()) {
            *value = None;
            match &spec.default {
                Some(_) => defaulted[row] = true,
                None => {
                    if !spec.nullable {
                        walk.ordinal = 0;
                        walk.error(row, &[], ErrorKind::Constraint, FIELD_REQUIRED);
                    }
                }
            }
        }
    }
    let values = values;
    let mut path = Vec::new();
    for (row, value) in values.iter().enumerate() {
        if let Some(at) = *value {
            walk.ordinal = 0;
            path.clear();
            walk.walk(node, tape.get(at), row, &mut path);
        }
    }
    // Leaves, one column per leaf field: coerced and checked as top-level columns are.
    let mut coerced_leaves: Vec<ArrayRef> = Vec::with_capacity(walk.buckets.len());
    let mut leaf_errors: Vec<(usize, usize, ErrorKind, String)> = Vec::new();
    for bucket in &mut walk.buckets {
        let texts: ArrayRef = Arc::new(bucket.texts.finish());
        let mut coerced = coerce::coerce(&texts, &bucket.spec.data_type)?;
        coerced.array = super::canonical::canonical(bucket.spec, coerced.array);
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
        for (i, kind, message) in failed {
            let (row, ordinal) = bucket.hits[i];
            leaf_errors.push((row, ordinal, kind, message));
        }
        coerced_leaves.push(coerced.array);
    }
    // Where each failing leaf sits: its row walked again, to that position.
    for (row, ordinal, kind, message) in leaf_errors {
        walk.locate = Some(ordinal);
        walk.found = None;
        walk.ordinal = 0;
        if let Some(Some(at)) = values.get(row) {
            let mut path = Vec::new();
            walk.walk(node, tape.get(*at), row, &mut path);
        }
        let loc = walk.found.take().unwrap_or_else(|| spec.name.clone());
        walk.errors.push(NestedError {
            row,
            loc,
            kind,
            message,
            ordinal,
            too_short: false,
        });
    }
    let mut errors = walk.errors;
    errors.sort_by_key(|e| (e.row, e.ordinal));
    errors.dedup_by(|a, b| a.row == b.row && a.loc == b.loc);
    // A list or dict that is too short is reported only when none of its values failed (a
    // failing leaf is known only now).
    let inside: std::collections::HashSet<(usize, String)> = errors
        .iter()
        .filter_map(|e| {
            e.loc
                .rsplit_once('.')
                .map(|(parent, _)| (e.row, parent.to_string()))
        })
        .collect();
    errors.retain(|e| !e.too_short || !inside_any(&inside, e.row, &e.loc));
    let failed_rows: std::collections::HashSet<usize> = errors.iter().map(|e| e.row).collect();
    // The valid values as the field's Arrow column: built from the tape where that covers the
    // field, else through arrow's JSON decoder.
    if nested_arrow::covers(node)
        && spec.default.as_ref().is_none_or(leafless)
        && !json_route_forced()
    {
        let tops: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(row, value)| match (value, default_at) {
                _ if failed_rows.contains(&row) => None,
                (Some(at), _) => Some(tape.get(*at)),
                (None, Some(at)) if defaulted[row] => Some(default_tape.get(at)),
                (None, _) => None,
            })
            .collect();
        let bucket = |n: &Node| walk.bucket_of.get(n as *const Node);
        let leaves = nested_arrow::Leaves {
            coerced: &coerced_leaves,
            bucket: &bucket,
            slot: &walk.slots,
        };
        // Anything the direct route cannot build goes the JSON way rather than failing.
        if let Ok(Some(array)) = nested_arrow::build(node, &tops, &leaves)
            && array.data_type() == &spec.data_type
        {
            #[cfg(test)]
            DIRECT_BUILT.with(|n| n.set(n.get() + 1));
            return Ok((array, errors));
        }
    }
    let mut writer = Writer {
        buckets: &walk.buckets,
        bucket_of: &walk.bucket_of,
        coerced: &coerced_leaves,
        formatters: (0..coerced_leaves.len()).map(|_| None).collect(),
        cursors: vec![0; coerced_leaves.len()],
    };
    let mut lines = Vec::new();
    for (row, value) in values.iter().enumerate() {
        match (value, &spec.default) {
            _ if failed_rows.contains(&row) => lines.extend_from_slice(b"{}"),
            (Some(at), _) => {
                lines.extend_from_slice(b"{\"v\":");
                writer.value(node, tape.get(*at), row, &mut lines)?;
                lines.push(b'}');
            }
            (None, Some(default)) if defaulted[row] => {
                lines.extend_from_slice(b"{\"v\":");
                serde_json::to_writer(&mut lines, default).map_err(json_err)?;
                lines.push(b'}');
            }
            (None, _) => lines.extend_from_slice(b"{}"),
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

#[cfg(test)]
mod tests {
    use super::{DIRECT_BUILT, JSON_ROUTE};
    use crate::schema::CompiledSchema;
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    /// The column built from the tape equals what arrow's JSON decoder makes of the same
    /// values, for every shape (nulls, absent and repeated members, coerced leaves, failed
    /// rows, top-level defaults); a tree the direct route does not cover (a set, a member
    /// default) takes the JSON route.
    #[test]
    fn the_direct_route_builds_what_the_json_route_decodes() {
        let schema = r##"{"$defs": {
            "Item": {"type": "object", "required": ["sku", "qty"], "properties": {
                "sku": {"type": "string", "minLength": 3}, "qty": {"type": "integer"},
                "price": {"anyOf": [{"type": "number"}, {"type": "string"}], "default": null},
                "tags": {"type": "array", "items": {"type": "string"}}}},
            "Meta": {"type": "object", "title": "Meta", "properties": {}},
            "Address": {"type": "object", "required": ["zip"], "properties": {
                "zip": {"type": "string"}, "lines": {"type": "array", "items": {"type": "string"}}}}},
            "type": "object", "required": ["id", "items"], "properties": {
            "id": {"type": "integer"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "shipping": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": null},
            "attrs": {"type": "object", "additionalProperties": {"type": "integer"}, "default": {}},
            "nested": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            "seen": {"type": "array", "items": {"type": "integer"}, "uniqueItems": true},
            "metas": {"type": "array", "items": {"$ref": "#/$defs/Meta"}}}}"##;
        let schema = CompiledSchema::from_json_str(schema).unwrap();
        let rows: [[Option<&str>; 8]; 6] = [
            [
                Some("1"),
                Some(
                    r#"[{"sku":"abc","qty":"2","price":1.5,"tags":["x"]},{"sku":"abcd","qty":1,"extra":true}]"#,
                ),
                Some(r#"{"zip":"123","lines":["a","b"],"zip":"456"}"#),
                Some(r#"{"a":1,"b":"2","a":3}"#),
                Some("[[1,2.5],[]]"),
                Some("[1,2,2,1]"),
                None,
                Some("[{}]"),
            ],
            [
                Some("2"),
                Some("[]"),
                None,
                None,
                None,
                None,
                None,
                Some("[{},{\"x\":1}]"),
            ],
            [
                Some("3"),
                Some(r#"[{"sku":"ab","qty":1}]"#),
                Some("null"),
                Some("{}"),
                Some("[]"),
                Some("[]"),
                None,
                Some("[{}]"),
            ],
            [
                Some("4"),
                Some(r#"[{"sku":"abc","qty":1,"tags":[]}]"#),
                Some(r#"{"zip":"9"}"#),
                Some(r#"{"k":"7"}"#),
                None,
                None,
                None,
                Some("[{}]"),
            ],
            [
                Some("5"),
                Some("not json"),
                None,
                None,
                None,
                None,
                None,
                Some("[{},{\"x\":1}]"),
            ],
            [
                Some("6"),
                Some(r#"[{"sku":"xyz","qty":7,"price":"3.25"}]"#),
                Some(r#"{"zip":"1","lines":[]}"#),
                Some(r#"{"z":0}"#),
                Some("[[3]]"),
                Some("[5]"),
                None,
                Some("[{}]"),
            ],
        ];
        let names = [
            "id", "items", "shipping", "attrs", "nested", "seen", "unused", "metas",
        ];
        let columns: Vec<ArrayRef> = (0..8)
            .map(|c| Arc::new(rows.iter().map(|r| r[c]).collect::<StringArray>()) as ArrayRef)
            .collect();
        let fields: Vec<Field> = names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let direct = schema.validate(&batch).unwrap();
        // items, shipping, attrs, nested and metas (models without fields); `seen` is a set.
        assert_eq!(DIRECT_BUILT.with(|n| n.get()), 5);
        JSON_ROUTE.with(|f| f.set(true));
        let decoded = schema.validate(&batch).unwrap();
        JSON_ROUTE.with(|f| f.set(false));
        assert_eq!(direct.invalid, decoded.invalid);
        assert_eq!(direct.valid, decoded.valid);
        assert_eq!(direct.valid.num_rows(), 4, "{:?}", direct.invalid);
    }
}
