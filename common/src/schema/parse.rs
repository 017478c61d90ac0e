//! Walks a pydantic-style JSON Schema and produces `FieldSpec`s.
//!
//! Each property is first *flattened*: `$ref`, single-element `allOf` and `anyOf [X, null]` are
//! resolved into one list of keywords plus a nullable flag, so that type mapping and check
//! compilation only ever see one flat keyword set. Anything outside the supported subset is
//! refused with the JSON path of the offending keyword.

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, TimeUnit};
use serde_json::{Map, Value};
use std::sync::Arc;

use super::checks::{self, Check};
use super::decimal::{self, DecimalSpec};
use super::nested;
use super::{FieldSpec, SchemaError};
use crate::validate::coerce::coerce;

/// Keywords that only annotate and never change validation.
const ANNOTATIONS: [&str; 7] = [
    "title",
    "description",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
];

/// Our keyword for the exact Arrow type of a column whose JSON type does not say it (written
/// by `schema infer` and by planning for typed inputs, e.g. `int16`, `float32`, `binary`).
pub(super) const ARROW_TYPE: &str = "x-arrow-type";

/// Keywords a flattened property may carry besides `type`.
const FIELD_KEYWORDS: [&str; 13] = [
    ARROW_TYPE,
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "enum",
    "const",
    "default",
];

/// Keywords that only make sense for arrays/objects: refused with a hint to flatten.
const NESTED_KEYWORDS: [&str; 10] = [
    "items",
    "prefixItems",
    "properties",
    "additionalProperties",
    "patternProperties",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
];

/// Order in which checks run (and so which error a row reports first), like pydantic-core:
/// numeric multiple/upper/lower bounds, then string length, pattern, then enum/const.
const CHECK_ORDER: [&str; 10] = [
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "maxLength",
    "pattern",
    "enum",
    "const",
];

const TOP_LEVEL_IGNORED: [&str; 8] = [
    "title",
    "description",
    "examples",
    "deprecated",
    "$comment",
    "$schema",
    "$id",
    "type",
];

fn unsupported(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Unsupported {
        path: path.to_string(),
        message: message.into(),
    }
}

fn invalid(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        path: path.to_string(),
        message: message.into(),
    }
}

/// A property with `$ref`/`allOf`/`anyOf` resolved. The outermost occurrence of a keyword wins,
/// because keywords next to a `$ref` refine the referenced schema (e.g. a field's own default).
#[derive(Default)]
struct Flat {
    type_name: Option<(String, String)>,
    keywords: Vec<(String, Value, String)>,
    nullable: bool,
    /// pydantic's Decimal (`anyOf [number, string]`), with where it was found.
    decimal: Option<(DecimalSpec, String)>,
}

impl Flat {
    fn get(&self, key: &str) -> Option<(&Value, &str)> {
        self.keywords
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, p)| (v, p.as_str()))
    }
}

/// Returns the fields in property order and the `additionalProperties` flag.
pub(super) fn parse_root(root: &Value) -> Result<(Vec<FieldSpec>, bool), SchemaError> {
    let mut obj = root
        .as_object()
        .ok_or_else(|| invalid("$", "the schema must be a JSON object"))?;
    let mut base = "$".to_string();
    // pydantic emits a top-level `$ref` for self-referencing models; follow it once.
    if let Some(reference) = obj.get("$ref") {
        let (target, path) = resolve_ref(root, reference, "$.$ref")?;
        obj = target
            .as_object()
            .ok_or_else(|| invalid(&path, "expected a schema object"))?;
        base = path;
    }
    match obj.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        Some(_) => {
            return Err(unsupported(
                &format!("{base}.type"),
                "the top level must be of type \"object\"",
            ));
        }
        None if obj.contains_key("properties") => {}
        None => {
            return Err(invalid(
                &base,
                "the top level must be an object schema with \"properties\"",
            ));
        }
    }
    for key in obj.keys() {
        let known = TOP_LEVEL_IGNORED.contains(&key.as_str())
            || matches!(
                key.as_str(),
                "properties"
                    | "required"
                    | "$defs"
                    | "definitions"
                    | "additionalProperties"
                    | "$ref"
            );
        if !known {
            return Err(unsupported(
                &format!("{base}.{key}"),
                format!("top-level keyword '{key}' is not supported"),
            ));
        }
    }
    let additional = match obj.get("additionalProperties") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(unsupported(
                &format!("{base}.additionalProperties"),
                "only true/false is supported (extra columns are either dropped or rejected)",
            ));
        }
    };
    let empty = Map::new();
    let properties = match obj.get("properties") {
        None => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err(invalid(&format!("{base}.properties"), "expected an object")),
    };
    let required = required_names(obj.get("required"), properties, &base)?;

    let mut fields = Vec::with_capacity(properties.len());
    // A leaf inside a list, model or dict compiles exactly as a top-level scalar field.
    let leaf = |value: &Value, path: &str, name: &str, required: bool| {
        let mut flat = Flat::default();
        flatten(root, value, path, &mut Vec::new(), &mut flat)?;
        build_field(name, flat, required, path)
    };
    for (name, property) in properties {
        let path = format!("{base}.properties.{name}");
        let is_required = required.contains(&name.as_str());
        if let Some(node) = nested::compile(
            root,
            property,
            &path,
            name,
            is_required,
            &leaf,
            &mut Vec::new(),
        )? {
            fields.push(FieldSpec::nested(node));
            continue;
        }
        let mut flat = Flat::default();
        flatten(root, property, &path, &mut Vec::new(), &mut flat)?;
        fields.push(build_field(
            name,
            flat,
            required.contains(&name.as_str()),
            &path,
        )?);
    }
    Ok((fields, additional))
}

fn required_names<'a>(
    value: Option<&'a Value>,
    properties: &Map<String, Value>,
    base: &str,
) -> Result<Vec<&'a str>, SchemaError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let list = value.as_array().ok_or_else(|| {
        invalid(
            &format!("{base}.required"),
            "expected an array of property names",
        )
    })?;
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("{base}.required[{i}]");
            let name = v
                .as_str()
                .ok_or_else(|| invalid(&path, "expected a string"))?;
            if properties.contains_key(name) {
                Ok(name)
            } else {
                Err(invalid(&path, format!("'{name}' is not a property")))
            }
        })
        .collect()
}

/// `#/$defs/Name` (or pydantic v1's `#/definitions/Name`) → the definition and its path.
pub(super) fn resolve_ref<'a>(
    root: &'a Value,
    reference: &Value,
    path: &str,
) -> Result<(&'a Value, String), SchemaError> {
    let text = reference
        .as_str()
        .ok_or_else(|| invalid(path, "$ref must be a string"))?;
    let (section, name) = ["$defs", "definitions"]
        .iter()
        .find_map(|s| {
            text.strip_prefix("#/")
                .and_then(|t| t.strip_prefix(s))
                .and_then(|t| t.strip_prefix('/'))
                .map(|name| (*s, name))
        })
        .ok_or_else(|| {
            unsupported(
                path,
                format!("only local references like #/$defs/Name are supported, got '{text}'"),
            )
        })?;
    // JSON Pointer escapes.
    let name = name.replace("~1", "/").replace("~0", "~");
    root.get(section)
        .and_then(|defs| defs.get(&name))
        .map(|target| (target, format!("$.{section}.{name}")))
        .ok_or_else(|| invalid(path, format!("unresolvable $ref '{text}'")))
}

fn is_null_schema(schema: &Value) -> bool {
    schema.as_object().is_some_and(|o| {
        o.get("type").and_then(Value::as_str) == Some("null")
            && o.keys()
                .all(|k| k == "type" || ANNOTATIONS.contains(&k.as_str()))
    })
}

fn flatten(
    root: &Value,
    node: &Value,
    path: &str,
    refs: &mut Vec<String>,
    flat: &mut Flat,
) -> Result<(), SchemaError> {
    let obj = match node {
        Value::Object(o) => o,
        Value::Bool(_) => return Err(unsupported(path, "boolean schemas are not supported")),
        _ => return Err(invalid(path, "expected a schema object")),
    };
    // `type` first, so `list[str]` is reported at `.type` rather than at `.items`.
    if let Some(t) = obj.get("type") {
        flatten_type(t, &format!("{path}.type"), flat)?;
    }
    for (key, value) in obj {
        let key_path = format!("{path}.{key}");
        match key.as_str() {
            "type" | "$ref" | "allOf" | "anyOf" | "oneOf" => {}
            k if ANNOTATIONS.contains(&k) => {}
            k if FIELD_KEYWORDS.contains(&k) => {
                if flat.get(k).is_none() {
                    flat.keywords.push((key.clone(), value.clone(), key_path));
                }
            }
            k if NESTED_KEYWORDS.contains(&k) => {
                return Err(unsupported(
                    &key_path,
                    "nested arrays/objects are not supported; flatten the model into scalar columns",
                ));
            }
            other => {
                return Err(unsupported(
                    &key_path,
                    format!("keyword '{other}' is not supported"),
                ));
            }
        }
    }
    if let Some(reference) = obj.get("$ref") {
        let ref_path = format!("{path}.$ref");
        let (target, target_path) = resolve_ref(root, reference, &ref_path)?;
        if refs.contains(&target_path) {
            return Err(invalid(
                &ref_path,
                format!("$ref cycle through {target_path}"),
            ));
        }
        refs.push(target_path.clone());
        flatten(root, target, &target_path, refs, flat)?;
        refs.pop();
    }
    if let Some(all) = obj.get("allOf") {
        let all_path = format!("{path}.allOf");
        match all.as_array().map(Vec::as_slice) {
            Some([only]) => flatten(root, only, &format!("{all_path}[0]"), refs, flat)?,
            Some(_) => {
                return Err(unsupported(
                    &all_path,
                    "allOf is only supported with exactly one schema",
                ));
            }
            None => return Err(invalid(&all_path, "expected an array")),
        }
    }
    for key in ["anyOf", "oneOf"] {
        let Some(branches) = obj.get(key) else {
            continue;
        };
        let union_path = format!("{path}.{key}");
        let branches = branches
            .as_array()
            .ok_or_else(|| invalid(&union_path, "expected an array"))?;
        let mut non_null = Vec::new();
        for (i, branch) in branches.iter().enumerate() {
            if is_null_schema(branch) {
                flat.nullable = true;
            } else {
                non_null.push((i, branch));
            }
        }
        let plain: Vec<&Value> = non_null.iter().map(|(_, b)| *b).collect();
        if let Some((spec, at)) = decimal::recognise(&plain) {
            // The number branch carries the bounds; the type is the decimal's.
            let (i, number) = non_null[at];
            flatten(root, number, &format!("{union_path}[{i}]"), refs, flat)?;
            flat.decimal = Some((spec, union_path));
            continue;
        }
        match non_null.as_slice() {
            [(i, branch)] => flatten(root, branch, &format!("{union_path}[{i}]"), refs, flat)?,
            [] => {
                return Err(unsupported(
                    &union_path,
                    "a field that can only be null is not supported",
                ));
            }
            _ => {
                return Err(unsupported(
                    &union_path,
                    "unions of several types are not supported; use one type, optionally with null",
                ));
            }
        }
    }
    Ok(())
}

fn flatten_type(value: &Value, path: &str, flat: &mut Flat) -> Result<(), SchemaError> {
    // Refuse arrays/objects right here so a nested model is reported at its `type`.
    let nested = |name: &str| {
        if matches!(name, "array" | "object") {
            Err(unsupported(
                path,
                format!("type '{name}' is not supported; flatten the model into scalar columns"),
            ))
        } else {
            Ok(())
        }
    };
    let mut set = |name: &str| {
        if name == "null" {
            flat.nullable = true;
        } else if flat.type_name.is_none() {
            flat.type_name = Some((name.to_string(), path.to_string()));
        }
    };
    match value {
        Value::String(name) => {
            nested(name)?;
            set(name);
        }
        Value::Array(names) => {
            let names: Vec<&str> = names
                .iter()
                .map(|n| {
                    n.as_str()
                        .ok_or_else(|| invalid(path, "type names must be strings"))
                })
                .collect::<Result<_, _>>()?;
            if names.iter().filter(|n| **n != "null").count() > 1 {
                return Err(unsupported(
                    path,
                    "several types are not supported; use one type, optionally with null",
                ));
            }
            for name in names {
                nested(name)?;
                set(name);
            }
        }
        _ => {
            return Err(invalid(
                path,
                "type must be a string or an array of strings",
            ));
        }
    }
    Ok(())
}

/// `Literal[...]` without a `type`: derive it from the values when they agree.
fn type_from_values(flat: &Flat) -> Option<&'static str> {
    let values: Vec<&Value> = match (flat.get("enum"), flat.get("const")) {
        (Some((Value::Array(values), _)), _) => values.iter().collect(),
        (_, Some((value, _))) => vec![value],
        _ => return None,
    };
    if values.iter().all(|v| v.is_string()) {
        Some("string")
    } else if values.iter().all(|v| v.is_boolean()) {
        Some("boolean")
    } else if values.iter().all(|v| v.is_i64()) {
        Some("integer")
    } else if values.iter().all(|v| v.is_number()) {
        Some("number")
    } else {
        None
    }
}

fn build_field(
    name: &str,
    flat: Flat,
    required: bool,
    path: &str,
) -> Result<FieldSpec, SchemaError> {
    let (type_name, type_path) = match &flat.type_name {
        Some((t, p)) => (t.clone(), p.clone()),
        None => match type_from_values(&flat) {
            Some(t) => (t.to_string(), path.to_string()),
            None => return Err(unsupported(path, "the field has no single scalar 'type'")),
        },
    };
    let mut data_type = if let Some((spec, decimal_path)) = &flat.decimal {
        if spec.max_digits.is_some() != spec.decimal_places.is_some() {
            return Err(unsupported(
                decimal_path,
                "a Decimal with only one of max_digits / decimal_places is not supported; give both (or neither)",
            ));
        }
        let (precision, scale) = spec.arrow();
        DataType::Decimal128(precision, scale)
    } else {
        scalar_type(&type_name, &type_path)?
    };

    let mut format_check: Option<Check> = None;
    if let Some((format, format_path)) = flat.get("format") {
        let format = format
            .as_str()
            .ok_or_else(|| invalid(format_path, "format must be a string"))?;
        if data_type != DataType::Utf8 {
            return Err(unsupported(
                format_path,
                "format only applies to string fields",
            ));
        }
        match format {
            "date-time" => {
                data_type = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            "date" => data_type = DataType::Date32,
            other => format_check = checks::compile_format(other, format_path)?,
        }
    }

    if let Some((exact, exact_path)) = flat.get(ARROW_TYPE) {
        let text = exact
            .as_str()
            .ok_or_else(|| invalid(exact_path, "x-arrow-type must be a string"))?;
        data_type = text
            .parse::<DataType>()
            .map_err(|e| invalid(exact_path, format!("'{text}' is not an Arrow type: {e}")))?;
    }

    let mut field_checks = Vec::new();
    for keyword in CHECK_ORDER {
        if let Some((value, keyword_path)) = flat.get(keyword) {
            field_checks.push(checks::compile(keyword, value, &data_type, keyword_path)?);
        }
        // The format check runs after length and pattern checks, before enum/const.
        if keyword == "pattern" {
            field_checks.extend(format_check.take());
        }
    }

    let default = match flat.get("default") {
        None | Some((Value::Null, _)) => None,
        Some((value, _)) => Some(value.clone()),
    };
    let default_array = match (&default, flat.get("default")) {
        (Some(value), Some((_, default_path))) => {
            Some(default_to_array(value, &data_type, default_path)?)
        }
        _ => None,
    };

    Ok(FieldSpec {
        name: name.to_string(),
        data_type,
        nullable: flat.nullable || !required,
        required,
        default,
        optional: flat.nullable,
        checks: field_checks,
        default_array,
        nested: None,
    })
}

/// The Arrow type a JSON type (and format) compiles to without `x-arrow-type`.
pub(super) fn natural_type(type_name: &str, format: Option<&str>) -> Option<DataType> {
    Some(match (type_name, format) {
        (_, Some("date-time")) => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        (_, Some("date")) => DataType::Date32,
        (t, _) => scalar_type(t, "").ok()?,
    })
}

/// The Arrow type of a scalar JSON Schema type.
fn scalar_type(type_name: &str, type_path: &str) -> Result<DataType, SchemaError> {
    Ok(match type_name {
        "integer" => DataType::Int64,
        "number" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "string" => DataType::Utf8,
        "array" | "object" => {
            return Err(unsupported(
                type_path,
                format!(
                    "type '{type_name}' is not supported; flatten the model into scalar columns"
                ),
            ));
        }
        other => return Err(invalid(type_path, format!("unknown type '{other}'"))),
    })
}

/// Convert a default through the same coercion as data, so it has exactly the column's type.
fn default_to_array(
    value: &Value,
    data_type: &DataType,
    path: &str,
) -> Result<ArrayRef, SchemaError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(unsupported(path, "only scalar defaults are supported")),
    };
    let input: ArrayRef = Arc::new(StringArray::from(vec![text]));
    match coerce(&input, data_type) {
        Ok(coerced) => match coerced.failures.first() {
            None => Ok(coerced.array),
            Some((_, message)) => Err(invalid(
                path,
                format!("default {value} does not fit the field type: {message}"),
            )),
        },
        Err(e) => Err(invalid(
            path,
            format!("default {value} does not fit the field type: {e}"),
        )),
    }
}
