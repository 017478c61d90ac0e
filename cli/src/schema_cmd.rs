//! `zoopipectl schema infer|check`.

use crate::args::SchemaCommand;
use crate::fail;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use zoopipe_common::format::{Format, parse_byte};
use zoopipe_common::plan::plan_job;
use zoopipe_common::schema::CompiledSchema;
use zoopipe_common::spec::{JobConfig, JobSpec};
use zoopipe_common::storage::Storage;
use zoopipe_common::{Error, Result};

pub async fn schema(cmd: SchemaCommand) -> u8 {
    let result = match cmd {
        SchemaCommand::Infer {
            url,
            input_format,
            delimiter,
            no_header,
        } => infer(&url, input_format, delimiter, no_header).await,
        SchemaCommand::Check { file, json } => check(&file, json),
    };
    match result {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

async fn infer(
    url: &str,
    input_format: Option<String>,
    delimiter: Option<String>,
    no_header: bool,
) -> Result<()> {
    let mut spec: JobSpec = serde_json::from_value(serde_json::json!({
        "inputs": [url],
        "output": "memory://schema-infer/out/",
    }))
    .map_err(|e| Error::config(e.to_string()))?;
    if let Some(f) = input_format {
        spec.input_format = Some(Format::parse(&f)?);
    }
    if let Some(d) = delimiter {
        spec.csv.delimiter = parse_byte(&d).map_err(Error::config)?;
    }
    spec.csv.header = !no_header;
    let mut job = JobConfig::new("infer".into(), spec)?;
    plan_job(&Storage::new(), &mut job).await?;
    let schema = job
        .schema
        .ok_or_else(|| Error::config("nothing to infer from"))?;
    let title = title_from(url);
    let text = serde_json::to_string_pretty(&schema.to_json_schema(&title))
        .map_err(|e| Error::config(e.to_string()))?;
    crate::out(&text);
    Ok(())
}

/// `s3://raw/users_2024.csv` → `Users2024`, as a pydantic model would be named.
fn title_from(url: &str) -> String {
    let name = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("Record");
    let stem = name.split('.').next().unwrap_or(name);
    let title: String = stem
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if title.is_empty() {
        "Record".into()
    } else {
        title
    }
}

fn check(file: &std::path::Path, json: bool) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::config(format!("{}: {e}", file.display())))?;
    let schema = CompiledSchema::from_json_str(&text)
        .map_err(|e| Error::config(format!("{}: {e}", file.display())))?;
    let fields = schema.describe();
    if json {
        let out: Vec<_> = fields
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "type": f.arrow_type, "nullable": f.nullable, "required": f.required, "checks": f.checks}))
            .collect();
        crate::out(&serde_json::to_string_pretty(&out).map_err(|e| Error::config(e.to_string()))?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "column",
        "output type",
        "nullable",
        "required",
        "checks",
    ]);
    for f in &fields {
        table.add_row(vec![
            f.name.clone(),
            f.arrow_type.clone(),
            f.nullable.to_string(),
            f.required.to_string(),
            f.checks.join("; "),
        ]);
    }
    crate::out(&format!(
        "{}: supported, {} columns",
        file.display(),
        fields.len()
    ));
    crate::out(&table.to_string());
    Ok(())
}
