// TEMPORARY API placeholder: replaced by the real module (helper-1) before commit.
use crate::schema::CompiledSchema;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind { Coercion, Constraint, MissingColumn, ExtraColumn, MalformedRecord }
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldError { pub field: Option<String>, #[serde(rename = "type")] pub kind: ErrorKind, pub message: String }
pub struct Validated { pub valid: arrow::record_batch::RecordBatch, pub invalid: Vec<(usize, Vec<FieldError>)> }
impl CompiledSchema {
    pub fn validate(&self, input: &arrow::record_batch::RecordBatch) -> Result<Validated, arrow::error::ArrowError> { Ok(Validated{ valid: input.clone(), invalid: vec![] }) }
}
