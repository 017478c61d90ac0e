// TEMPORARY API placeholder: replaced by the real module (helper-1) before commit.
use arrow::datatypes::{DataType, Schema, SchemaRef};
use std::sync::Arc;
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("unsupported JSON Schema at {path}: {message}")]
    Unsupported { path: String, message: String },
    #[error("invalid JSON Schema at {path}: {message}")]
    Invalid { path: String, message: String },
}
pub struct FieldSpec { pub name: String, pub data_type: DataType, pub nullable: bool, pub required: bool, pub default: Option<serde_json::Value> }
pub struct FieldDescription { pub name: String, pub arrow_type: String, pub nullable: bool, pub required: bool, pub checks: Vec<String> }
pub struct CompiledSchema { fields: Vec<FieldSpec>, schema: SchemaRef }
impl CompiledSchema {
    pub fn from_json_schema(_s: &serde_json::Value) -> Result<Self, SchemaError> { Err(SchemaError::Invalid{path: "$".into(), message: "todo".into()}) }
    pub fn from_json_str(_s: &str) -> Result<Self, SchemaError> { Err(SchemaError::Invalid{path: "$".into(), message: "todo".into()}) }
    pub fn from_arrow(s: &Schema) -> Self { Self { fields: s.fields().iter().map(|f| FieldSpec{name: f.name().clone(), data_type: f.data_type().clone(), nullable: true, required: false, default: None}).collect(), schema: Arc::new(s.clone()) } }
    pub fn fields(&self) -> &[FieldSpec] { &self.fields }
    pub fn arrow_schema(&self) -> SchemaRef { self.schema.clone() }
    pub fn additional_properties(&self) -> bool { true }
    pub fn to_json_schema(&self, _t: &str) -> serde_json::Value { serde_json::Value::Null }
    pub fn describe(&self) -> Vec<FieldDescription> { vec![] }
}
pub fn infer_from_text(sample: &arrow::record_batch::RecordBatch) -> Schema { sample.schema().as_ref().clone() }
