//! pydantic's containers: `list[T]` / `set[T]` (`type: array`), sub-models (`$ref` to an object
//! in `$defs`, also Optional) and `dict[str, T]` (`type: object` + `additionalProperties`).
//!
//! A container field compiles to a tree of `Node`s whose leaves are ordinary scalar fields
//! (compiled by the same code as top-level columns, checks included), and to the Arrow type
//! DuckDB and pyarrow read as `STRUCT(…)[]`, `MAP(VARCHAR, T)`: `List<item>`, `Struct`,
//! `Map<Utf8, T>`. Recursive models are refused.

use arrow::datatypes::{DataType, Field, Fields};
use serde_json::{Map, Value, json};
use std::sync::Arc;

use super::{FieldSpec, SchemaError};

/// One value position in a container field.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub shape: Shape,
    /// `null` is a valid value here (Optional).
    pub optional: bool,
    /// As a sub-model's member: must be present.
    pub required: bool,
    pub default: Option<Value>,
}

#[derive(Debug, Clone)]
pub enum Shape {
    Leaf(Box<FieldSpec>),
    List {
        item: Box<Node>,
        min: Option<usize>,
        max: Option<usize>,
        /// `set[T]`: duplicates are dropped, as pydantic does.
        set: bool,
    },
    Struct {
        fields: Vec<Node>,
        /// `extra='forbid'`: unknown keys are errors (else ignored, pydantic's default).
        forbid_extra: bool,
    },
    Map {
        value: Box<Node>,
        min: Option<usize>,
        max: Option<usize>,
    },
}

impl Node {
    /// The shape of a nested Arrow column (a Parquet/Arrow input without a schema): any value
    /// of its type, nulls allowed everywhere. `None` for a scalar type.
    pub fn from_arrow(name: &str, data_type: &DataType) -> Option<Node> {
        let child = |name: &str, dt: &DataType| {
            Node::from_arrow(name, dt).unwrap_or_else(|| Node {
                name: name.to_string(),
                shape: Shape::Leaf(Box::new(FieldSpec::unconstrained(name, dt.clone()))),
                optional: true,
                required: false,
                default: None,
            })
        };
        let shape = match data_type {
            DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
                Shape::List {
                    item: Box::new(child("item", item.data_type())),
                    min: None,
                    max: None,
                    set: false,
                }
            }
            DataType::Struct(fields) => Shape::Struct {
                fields: fields
                    .iter()
                    .map(|f| child(f.name(), f.data_type()))
                    .collect(),
                forbid_extra: false,
            },
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(kv) if kv.len() == 2 => Shape::Map {
                    value: Box::new(child("value", kv[1].data_type())),
                    min: None,
                    max: None,
                },
                _ => return None,
            },
            _ => return None,
        };
        Some(Node {
            name: name.to_string(),
            shape,
            optional: true,
            required: false,
            default: None,
        })
    }

    pub fn data_type(&self) -> DataType {
        match &self.shape {
            Shape::Leaf(spec) => spec.data_type.clone(),
            Shape::List { item, .. } => {
                DataType::List(Arc::new(Field::new("item", item.data_type(), true)))
            }
            Shape::Struct { fields, .. } => DataType::Struct(Fields::from(
                fields
                    .iter()
                    .map(|f| Field::new(&f.name, f.data_type(), true))
                    .collect::<Vec<_>>(),
            )),
            Shape::Map { value, .. } => DataType::Map(
                Arc::new(Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", value.data_type(), true),
                    ])),
                    false,
                )),
                false,
            ),
        }
    }

    /// JSON Schema for this node, every `$ref` inlined (what the tasks re-read).
    pub fn to_json(&self) -> Value {
        let mut schema = match &self.shape {
            Shape::Leaf(spec) => {
                let mut leaf = super::emit::property(spec);
                if let Some(map) = leaf.as_object_mut() {
                    map.remove("title");
                    map.remove("default");
                }
                return self.wrap(leaf);
            }
            Shape::List {
                item,
                min,
                max,
                set,
            } => {
                let mut s = json!({"type": "array", "items": item.to_json()});
                if let Some(min) = min {
                    s["minItems"] = json!(min);
                }
                if let Some(max) = max {
                    s["maxItems"] = json!(max);
                }
                if *set {
                    s["uniqueItems"] = json!(true);
                }
                s
            }
            Shape::Struct {
                fields,
                forbid_extra,
            } => {
                let properties: Map<String, Value> = fields
                    .iter()
                    .map(|f| (f.name.clone(), f.to_json()))
                    .collect();
                let required: Vec<&str> = fields
                    .iter()
                    .filter(|f| f.required)
                    .map(|f| f.name.as_str())
                    .collect();
                let mut s = json!({"type": "object", "properties": properties});
                if !required.is_empty() {
                    s["required"] = json!(required);
                }
                if *forbid_extra {
                    s["additionalProperties"] = json!(false);
                }
                s
            }
            Shape::Map { value, min, max } => {
                let mut s = json!({"type": "object", "additionalProperties": value.to_json()});
                if let Some(min) = min {
                    s["minProperties"] = json!(min);
                }
                if let Some(max) = max {
                    s["maxProperties"] = json!(max);
                }
                s
            }
        };
        if let Some(default) = &self.default {
            schema["default"] = default.clone();
        }
        self.wrap(schema)
    }

    fn wrap(&self, schema: Value) -> Value {
        if self.optional && !matches!(&self.shape, Shape::Leaf(spec) if spec.optional) {
            json!({"anyOf": [schema, {"type": "null"}]})
        } else {
            schema
        }
    }

    /// Checks in words for `schema check` (lengths of lists and maps).
    pub fn words(&self) -> Vec<String> {
        let range = |what: &str, min: &Option<usize>, max: &Option<usize>| {
            let mut out = Vec::new();
            if let Some(min) = min {
                out.push(format!("{what} >= {min}"));
            }
            if let Some(max) = max {
                out.push(format!("{what} <= {max}"));
            }
            out
        };
        match &self.shape {
            Shape::List { min, max, set, .. } => {
                let mut w = range("items", min, max);
                if *set {
                    w.push("unique items".into());
                }
                w
            }
            Shape::Map { min, max, .. } => range("entries", min, max),
            Shape::Struct { forbid_extra, .. } if *forbid_extra => {
                vec!["no extra keys".into()]
            }
            _ => Vec::new(),
        }
    }
}

/// What `compile` needs from the scalar parser: a leaf compiled as a top-level field would be.
pub(super) type CompileLeaf<'a> =
    &'a dyn Fn(&Value, &str, &str, bool) -> Result<FieldSpec, SchemaError>;

fn unsupported(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Unsupported {
        path: path.to_string(),
        message: message.into(),
    }
}

/// A property with `$ref`, single `allOf` and `anyOf [X, null]` resolved.
struct Resolved<'v> {
    schema: &'v Value,
    nullable: bool,
    path: String,
    /// The outermost `default` (a field's own default beside its `$ref`).
    default: Option<Value>,
}

/// `None` when the property is not one schema (a union, a Decimal).
fn resolve<'v>(
    root: &'v Value,
    mut value: &'v Value,
    mut path: String,
    refs: &mut Vec<String>,
) -> Result<Option<Resolved<'v>>, SchemaError> {
    let mut nullable = false;
    let mut default = value.get("default").cloned();
    let start = refs.len();
    loop {
        let Some(obj) = value.as_object() else {
            return Ok(None);
        };
        if let Some(reference) = obj.get("$ref") {
            let ref_path = format!("{path}.$ref");
            let (target, target_path) = super::parse::resolve_ref(root, reference, &ref_path)?;
            if refs.contains(&target_path) {
                return Err(unsupported(
                    &path,
                    format!("recursive models are not supported ({target_path} contains itself)"),
                ));
            }
            refs.push(target_path.clone());
            value = target;
            path = target_path;
            continue;
        }
        if let Some(Value::Array(all)) = obj.get("allOf")
            && let [only] = all.as_slice()
        {
            value = only;
            path = format!("{path}.allOf[0]");
            continue;
        }
        if let Some(Value::Array(any)) = obj.get("anyOf").or_else(|| obj.get("oneOf")) {
            let non_null: Vec<(usize, &Value)> = any
                .iter()
                .enumerate()
                .filter(|(_, b)| b.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if non_null.len() != 1 || any.len() > 2 {
                refs.truncate(start);
                return Ok(None);
            }
            nullable = true;
            let (i, branch) = non_null[0];
            value = branch;
            path = format!("{path}.anyOf[{i}]");
            continue;
        }
        if default.is_none() {
            default = obj.get("default").cloned();
        }
        if matches!(default, Some(Value::Null)) {
            default = None;
        }
        return Ok(Some(Resolved {
            schema: value,
            nullable,
            path,
            default,
        }));
    }
}

fn is_container(value: &Value) -> bool {
    matches!(
        value.get("type").and_then(Value::as_str),
        Some("array" | "object")
    ) || (value.get("type").is_none() && value.get("properties").is_some())
}

fn count(value: Option<&Value>, path: &str) -> Result<Option<usize>, SchemaError> {
    match value {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| SchemaError::Invalid {
                path: path.to_string(),
                message: "expected a non-negative integer".into(),
            }),
    }
}

/// The container tree of a property, or `None` for a scalar property (compiled as today).
pub(super) fn compile(
    root: &Value,
    property: &Value,
    path: &str,
    name: &str,
    required: bool,
    leaf: CompileLeaf,
    refs: &mut Vec<String>,
) -> Result<Option<Node>, SchemaError> {
    let depth = refs.len();
    let Some(Resolved {
        schema,
        nullable,
        path: schema_path,
        default,
    }) = resolve(root, property, path.to_string(), refs)?
    else {
        return Ok(None);
    };
    if !is_container(schema) {
        refs.truncate(depth);
        return Ok(None);
    }
    let child = |value: &Value,
                 child_path: &str,
                 child_name: &str,
                 child_required: bool,
                 refs: &mut Vec<String>|
     -> Result<Node, SchemaError> {
        match compile(
            root,
            value,
            child_path,
            child_name,
            child_required,
            leaf,
            refs,
        )? {
            Some(node) => Ok(node),
            None => {
                let spec = leaf(value, child_path, child_name, child_required)?;
                Ok(Node {
                    name: child_name.to_string(),
                    optional: spec.optional,
                    required: child_required,
                    default: spec.default.clone(),
                    shape: Shape::Leaf(Box::new(spec)),
                })
            }
        }
    };
    let obj = schema.as_object().cloned().unwrap_or_default();
    const ALLOWED: [&str; 16] = [
        "type",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
        "properties",
        "required",
        "additionalProperties",
        "minProperties",
        "maxProperties",
        "title",
        "description",
        "default",
        "examples",
        "$defs",
        "definitions",
    ];
    if let Some(key) = obj.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return Err(unsupported(
            &format!("{schema_path}.{key}"),
            format!("keyword '{key}' is not supported on a list, model or dict"),
        ));
    }
    let shape = match obj.get("type").and_then(Value::as_str) {
        Some("array") => {
            let items = obj.get("items").ok_or_else(|| {
                unsupported(
                    &schema_path,
                    "a list needs 'items' (list[T]); tuples are not supported",
                )
            })?;
            Shape::List {
                item: Box::new(child(
                    items,
                    &format!("{schema_path}.items"),
                    "item",
                    true,
                    refs,
                )?),
                min: count(obj.get("minItems"), &format!("{schema_path}.minItems"))?,
                max: count(obj.get("maxItems"), &format!("{schema_path}.maxItems"))?,
                set: obj.get("uniqueItems") == Some(&Value::Bool(true)),
            }
        }
        _ if obj.contains_key("properties") => {
            let empty = Map::new();
            let properties = obj
                .get("properties")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let required: Vec<&str> = obj
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let forbid_extra = match obj.get("additionalProperties") {
                None | Some(Value::Bool(true)) => false,
                Some(Value::Bool(false)) => true,
                Some(_) => {
                    return Err(unsupported(
                        &format!("{schema_path}.additionalProperties"),
                        "a model with extra values of a given type is not supported",
                    ));
                }
            };
            let mut fields = Vec::with_capacity(properties.len());
            for (member, value) in properties {
                let member_path = format!("{schema_path}.properties.{member}");
                fields.push(child(
                    value,
                    &member_path,
                    member,
                    required.contains(&member.as_str()),
                    refs,
                )?);
            }
            Shape::Struct {
                fields,
                forbid_extra,
            }
        }
        _ => match obj.get("additionalProperties") {
            Some(value @ Value::Object(_)) => Shape::Map {
                value: Box::new(child(
                    value,
                    &format!("{schema_path}.additionalProperties"),
                    "value",
                    true,
                    refs,
                )?),
                min: count(
                    obj.get("minProperties"),
                    &format!("{schema_path}.minProperties"),
                )?,
                max: count(
                    obj.get("maxProperties"),
                    &format!("{schema_path}.maxProperties"),
                )?,
            },
            _ => {
                return Err(unsupported(
                    &schema_path,
                    "a dict needs a value type (dict[str, T]); a model needs 'properties'",
                ));
            }
        },
    };
    refs.truncate(depth);
    Ok(Some(Node {
        name: name.to_string(),
        shape,
        optional: nullable,
        required,
        default,
    }))
}
