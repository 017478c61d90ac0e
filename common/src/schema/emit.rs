//! Writing a compiled schema back out: pydantic-style JSON Schema (`schema infer`) and a
//! per-field description (`schema check`).

use std::collections::BTreeMap;

use arrow::datatypes::DataType;
use serde_json::{Map, Value, json};

use super::{CompiledSchema, FieldSpec};

/// One line of `zoopipectl schema check`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldDescription {
    pub name: String,
    pub arrow_type: String,
    pub nullable: bool,
    pub required: bool,
    /// Checks in words, e.g. ">= 0", "format email", "default 'x'".
    pub checks: Vec<String>,
}

/// pydantic's default field title: `first_name` → `First Name`.
fn title_case(name: &str) -> String {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// JSON type (and format) for an Arrow type; types without a JSON counterpart become strings.
fn json_type(data_type: &DataType) -> (&'static str, Option<&'static str>) {
    match data_type {
        DataType::Boolean => ("boolean", None),
        t if t.is_integer() => ("integer", None),
        t if t.is_floating() => ("number", None),
        DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => ("number", None),
        DataType::Date32 | DataType::Date64 => ("string", Some("date")),
        DataType::Timestamp(_, _) => ("string", Some("date-time")),
        _ => ("string", None),
    }
}

/// Sorted keys, as pydantic sorts its output.
fn object(map: BTreeMap<&str, Value>) -> Value {
    Value::Object(
        map.into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<_, _>>(),
    )
}

pub(super) fn property(field: &FieldSpec) -> Value {
    if let Some(node) = &field.nested {
        let mut schema = node.to_json();
        if let Some(map) = schema.as_object_mut() {
            map.insert("title".into(), json!(title_case(&field.name)));
            if field.default.is_none() && !field.required {
                map.insert("default".into(), Value::Null);
            }
        }
        return schema;
    }
    let (type_name, format) = json_type(&field.data_type);
    let mut base: BTreeMap<&str, Value> = BTreeMap::new();
    base.insert("type", json!(type_name));
    if let Some(format) = format {
        base.insert("format", json!(format));
    }
    // Types the JSON type alone would widen or change (int16, float32, a timestamp without a
    // zone, time, binary) keep their exact Arrow type on the way to the tasks.
    if super::parse::natural_type(type_name, format).is_none_or(|t| t != field.data_type)
        && !matches!(field.data_type, DataType::Decimal128(_, _))
    {
        base.insert(super::parse::ARROW_TYPE, json!(field.data_type.to_string()));
    }
    for check in &field.checks {
        base.insert(check.keyword, check.value.clone());
    }
    // A decimal as pydantic writes one, with the pattern that carries its digits and places.
    let decimal = match field.data_type {
        DataType::Decimal128(precision, scale) => Some(json!({
            "pattern": super::decimal::pattern(super::decimal::DecimalSpec::of_arrow(
                precision, scale,
            )),
            "type": "string",
        })),
        _ => None,
    };
    let mut outer = if field.optional || decimal.is_some() {
        let mut branches = vec![object(base)];
        branches.extend(decimal);
        if field.optional {
            branches.push(json!({"type": "null"}));
        }
        BTreeMap::from([("anyOf", Value::Array(branches))])
    } else {
        base
    };
    outer.insert("title", json!(title_case(&field.name)));
    match &field.default {
        Some(value) => {
            outer.insert("default", value.clone());
        }
        // pydantic writes `default: null` for fields that are not required.
        None if !field.required => {
            outer.insert("default", Value::Null);
        }
        None => {}
    }
    object(outer)
}

impl CompiledSchema {
    /// JSON Schema (pydantic style: title, type object, properties, required) describing this
    /// schema; for `zoopipectl schema infer`.
    pub fn to_json_schema(&self, title: &str) -> Value {
        let properties: Map<String, Value> = self
            .fields()
            .iter()
            .map(|f| (f.name.clone(), property(f)))
            .collect();
        let required: Vec<&str> = self
            .fields()
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name.as_str())
            .collect();
        let mut top: BTreeMap<&str, Value> = BTreeMap::new();
        top.insert("properties", Value::Object(properties));
        top.insert("title", json!(title));
        top.insert("type", json!("object"));
        if !required.is_empty() {
            top.insert("required", json!(required));
        }
        if !self.additional_properties() {
            top.insert("additionalProperties", json!(false));
        }
        object(top)
    }

    /// One line per field: name, output Arrow type, nullable, and its checks in words; for
    /// `zoopipectl schema check`.
    pub fn describe(&self) -> Vec<FieldDescription> {
        self.fields()
            .iter()
            .map(|f| {
                let mut checks: Vec<String> = f.checks.iter().map(|c| c.words()).collect();
                if let Some(node) = &f.nested {
                    checks.extend(node.words());
                }
                if let Some(default) = &f.default {
                    checks.push(format!("default {}", super::checks::python_repr(default)));
                }
                FieldDescription {
                    name: f.name.clone(),
                    arrow_type: f.data_type.to_string(),
                    nullable: f.nullable,
                    required: f.required,
                    checks,
                }
            })
            .collect()
    }
}
