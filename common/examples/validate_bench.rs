//! Throughput check: `cargo run --release --example bench -- [rows]`.
//! Validates Utf8 (CSV-like) columns against a pydantic-style schema and prints rows/s.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use zoopipe_common::schema::CompiledSchema;

const SCHEMA: &str = r##"{
  "$defs": {"Role": {"enum": ["admin", "user", "guest"], "title": "Role", "type": "string"}},
  "properties": {
    "id": {"minimum": 1, "title": "Id", "type": "integer"},
    "name": {"maxLength": 20, "minLength": 3, "title": "Name", "type": "string"},
    "email": {"format": "email", "title": "Email", "type": "string"},
    "age": {"anyOf": [{"exclusiveMaximum": 150, "minimum": 0, "type": "integer"}, {"type": "null"}], "default": null, "title": "Age"},
    "score": {"default": 0.0, "title": "Score", "type": "number"},
    "role": {"$ref": "#/$defs/Role", "default": "user"},
    "active": {"default": true, "title": "Active", "type": "boolean"},
    "joined": {"format": "date-time", "title": "Joined", "type": "string"}
  },
  "required": ["id", "name", "email", "joined"],
  "title": "User",
  "type": "object"
}"##;

fn column(rows: usize, f: impl Fn(usize) -> String) -> ArrayRef {
    Arc::new(StringArray::from_iter_values((0..rows).map(f)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let schema = CompiledSchema::from_json_str(SCHEMA)?;
    let roles = ["admin", "user", "guest"];
    let names = [
        "id", "name", "email", "age", "score", "role", "active", "joined",
    ];
    let input_schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let batch_rows = 65_536;
    let mut batches = Vec::new();
    let mut start = 0;
    while start < rows {
        let n = batch_rows.min(rows - start);
        let cols = vec![
            column(n, |i| (start + i + 1).to_string()),
            column(n, |i| format!("user{}", i % 1000)),
            column(n, |i| format!("user{i}@example.com")),
            column(n, |i| (i % 149).to_string()),
            column(n, |i| format!("{}.5", i % 100)),
            column(n, |i| roles[i % 3].to_string()),
            column(n, |i| if i % 2 == 0 { "true" } else { "false" }.to_string()),
            column(n, |i| {
                format!("2024-01-{:02}T10:{:02}:00Z", i % 28 + 1, i % 60)
            }),
        ];
        batches.push(RecordBatch::try_new(input_schema.clone(), cols)?);
        start += n;
    }
    let t = Instant::now();
    let mut valid = 0;
    let mut invalid = 0;
    for batch in &batches {
        let out = schema.validate(batch)?;
        valid += out.valid.num_rows();
        invalid += out.invalid.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{rows} rows x 8 columns: {valid} valid, {invalid} invalid in {secs:.3}s ({:.1} M rows/s)",
        rows as f64 / secs / 1e6
    );
    Ok(())
}
