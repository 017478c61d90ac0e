//! Compiled output schemas: JSON Schema (pydantic v2 style) or an Arrow schema turned into
//! an Arrow output schema plus per-column checks that `crate::validate` runs on batches.

mod checks;
pub mod decimal;
mod emit;
mod infer;
pub mod nested;
mod parse;
mod pattern;

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

pub(crate) use checks::{Bound, BoundOp, Check, EnumSet, Format, Rule};
pub use emit::FieldDescription;
pub use infer::infer_from_text;
pub(crate) use pattern::Pattern;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("unsupported JSON Schema at {path}: {message}")]
    Unsupported { path: String, message: String },
    #[error("invalid JSON Schema at {path}: {message}")]
    Invalid { path: String, message: String },
}

/// One output column: its Arrow type, null/required rules, default and checks.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub name: String,
    pub data_type: DataType,
    /// Optional (may be null) or not required; decides the output field's nullability.
    pub nullable: bool,
    pub required: bool,
    /// The JSON Schema default; `None` also for `"default": null`.
    pub default: Option<serde_json::Value>,
    /// Declared Optional (`anyOf [..., null]` / type list with null), as opposed to merely not required.
    pub(crate) optional: bool,
    pub(crate) checks: Vec<Check>,
    /// `default` already converted to a one-element array of `data_type`, so filling nulls is a kernel call.
    pub(crate) default_array: Option<ArrayRef>,
    /// A list, sub-model or dict: its tree of values (`data_type` is the tree's Arrow type).
    pub nested: Option<Arc<nested::Node>>,
}

impl FieldSpec {
    /// Any value of `data_type`, or null.
    pub(crate) fn unconstrained(name: &str, data_type: DataType) -> Self {
        Self {
            name: name.to_string(),
            data_type,
            nullable: true,
            required: false,
            default: None,
            optional: true,
            checks: Vec::new(),
            default_array: None,
            nested: None,
        }
    }

    fn nested(node: nested::Node) -> Self {
        Self {
            name: node.name.clone(),
            data_type: node.data_type(),
            nullable: node.optional || !node.required,
            required: node.required,
            default: node.default.clone(),
            optional: node.optional,
            checks: Vec::new(),
            default_array: None,
            nested: Some(Arc::new(node)),
        }
    }
}

/// The compiled schema: output columns in order, and the policy for unknown input columns.
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    fields: Vec<FieldSpec>,
    additional_properties: bool,
    arrow_schema: SchemaRef,
}

impl CompiledSchema {
    pub fn from_json_schema(schema: &serde_json::Value) -> Result<Self, SchemaError> {
        let (fields, additional_properties) = parse::parse_root(schema)?;
        Ok(Self::new(fields, additional_properties))
    }

    pub fn from_json_str(text: &str) -> Result<Self, SchemaError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SchemaError::Invalid {
                path: "$".to_string(),
                message: e.to_string(),
            })?;
        Self::from_json_schema(&value)
    }

    /// No constraints: every field nullable, not required (used when types were inferred or come
    /// from a Parquet/Arrow file).
    pub fn from_arrow(schema: &Schema) -> Self {
        let fields = schema
            .fields()
            .iter()
            .map(
                |f| match nested::Node::from_arrow(f.name(), f.data_type()) {
                    // Lists, structs and maps keep their shape (and travel to the tasks as such).
                    Some(node) => FieldSpec::nested(node),
                    None => FieldSpec::unconstrained(f.name(), f.data_type().clone()),
                },
            )
            .collect();
        Self::new(fields, true)
    }

    fn new(fields: Vec<FieldSpec>, additional_properties: bool) -> Self {
        let arrow_fields: Vec<Field> = fields
            .iter()
            .map(|f| Field::new(&f.name, f.data_type.clone(), f.nullable))
            .collect();
        Self {
            fields,
            additional_properties,
            arrow_schema: Arc::new(Schema::new(arrow_fields)),
        }
    }

    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// The output schema of `validate`'s valid batch.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::clone(&self.arrow_schema)
    }

    /// false = non-null values in input columns the schema lacks make the row invalid.
    pub fn additional_properties(&self) -> bool {
        self.additional_properties
    }
}
