//! `zoopipectl errors JOB`: a committed fleet job's invalid rows, streamed from the coordinator
//! over Arrow Flight (any replica serves them), printed as a table, CSV or JSON lines. Rows are
//! printed batch by batch as they arrive, so `--format jsonl --limit 0` works at any size.

use crate::args::ErrorsArgs;
use crate::{exit, out};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use arrow::error::ArrowError;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightClient, FlightDescriptor, Ticket};
use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};
use futures::StreamExt;
use serde::Serialize;
use std::io::Write;
use zoopipe_proto::client::Failover;
use zoopipe_proto::flight::ErrorsTicket;

/// Rows a table shows unless `--limit` says otherwise.
const TABLE_ROWS: u64 = 20;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorsFormat {
    #[default]
    Table,
    Csv,
    Jsonl,
}

fn fail(message: impl std::fmt::Display, code: u8) -> u8 {
    eprintln!("error: {}", crate::one_line(&message.to_string()));
    code
}

/// The exit code and one line for a failed call, as the other fleet commands do.
fn flight_error(e: FlightError) -> u8 {
    let FlightError::Tonic(status) = e else {
        return fail(format!("reading error rows: {e}"), exit::JOB_FAILED);
    };
    match status.code() {
        tonic::Code::NotFound
        | tonic::Code::InvalidArgument
        | tonic::Code::FailedPrecondition
        | tonic::Code::PermissionDenied
        | tonic::Code::Unauthenticated => fail(status.message(), exit::BAD_INPUT),
        tonic::Code::Unavailable => fail(
            format!("the coordinator is unavailable: {}", innermost(&status)),
            exit::JOB_FAILED,
        ),
        _ => fail(status.message(), exit::JOB_FAILED),
    }
}

/// "Connection refused" rather than tonic's wrapper around it.
fn innermost(status: &tonic::Status) -> String {
    let mut message = status.message().to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(status);
    while let Some(e) = source {
        message = e.to_string();
        source = e.source();
    }
    message
}

/// One error row as the job's JSONL error output writes it (same keys, same order).
#[derive(Serialize)]
struct Row {
    source: String,
    line: Option<i64>,
    row: Option<i64>,
    error_type: String,
    errors: serde_json::Value,
    values: serde_json::Value,
    raw: Option<String>,
}

fn get(a: &arrow::array::StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

/// The rows of one batch in the coordinator's error schema.
fn rows(batch: &RecordBatch) -> Result<Vec<Row>, String> {
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| format!("the coordinator sent no text column '{name}'"))
    };
    let int = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| format!("the coordinator sent no integer column '{name}'"))
    };
    let (source, error_type, raw) = (text("source")?, text("error_type")?, text("raw")?);
    let (errors, values) = (text("errors")?, text("values")?);
    let (line, row) = (int("line")?, int("row")?);
    // `errors` and `values` travel as JSON text; shown as JSON again (as text if unparsable).
    let json = |t: Option<&str>| match t {
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| serde_json::Value::from(t)),
        None => serde_json::Value::Null,
    };
    Ok((0..batch.num_rows())
        .map(|i| Row {
            source: get(source, i).unwrap_or_default().to_string(),
            line: line.is_valid(i).then(|| line.value(i)),
            row: row.is_valid(i).then(|| row.value(i)),
            error_type: get(error_type, i).unwrap_or_default().to_string(),
            errors: json(get(errors, i)),
            values: json(get(values, i)),
            raw: get(raw, i).map(str::to_string),
        })
        .collect())
}

/// Where the row is: `line 42` (CSV/JSONL) or `row 7` (Parquet/Arrow).
fn position(r: &Row) -> String {
    match (r.line, r.row) {
        (Some(line), _) => format!("line {line}"),
        (None, Some(row)) => format!("row {row}"),
        (None, None) => String::new(),
    }
}

/// Each reason's `key` (field or message), one per line so they pair up in the table.
fn reasons(r: &Row, key: &str) -> String {
    let Some(list) = r.errors.as_array() else {
        return r.errors.to_string();
    };
    list.iter()
        .map(|e| match e.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => "-".to_string(),
            Some(other) => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The original values as `name=value`, or the raw record when it could not be split.
fn original(r: &Row) -> String {
    let mut parts: Vec<String> = match r.values.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect(),
        None => vec![r.values.to_string()],
    };
    if let Some(raw) = &r.raw {
        parts.push(format!("raw: {raw}"));
    }
    parts.join(", ")
}

/// A cell's text cut to `max` characters (long values would make every row a page).
fn truncate(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn table(rows: &[Row]) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    // The terminal's width; off a terminal `COLUMNS`, else 120: never hundreds of columns.
    if table.width().is_none() {
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(120u16);
        table.set_width(columns);
    }
    table.set_header(vec!["source", "at", "type", "field", "message", "values"]);
    for r in rows {
        table.add_row(vec![
            r.source.clone(),
            position(r),
            r.error_type.clone(),
            reasons(r, "field"),
            reasons(r, "message"),
            truncate(original(r), 160),
        ]);
    }
    table.to_string()
}

/// Write to stdout; false once the reader has gone (`| head`), which ends the command quietly.
fn emit(stdout: &mut impl Write, bytes: &[u8]) -> bool {
    stdout.write_all(bytes).is_ok()
}

pub async fn errors(args: ErrorsArgs) -> u8 {
    let limit = args.limit.unwrap_or(match args.format {
        ErrorsFormat::Table => TABLE_ROWS,
        ErrorsFormat::Csv | ErrorsFormat::Jsonl => 0,
    });
    let transport: Failover = match args.coordinator.connect() {
        Ok(t) => t,
        Err(e) => return fail(e, exit::BAD_INPUT),
    };
    let mut client = FlightClient::new(transport);
    // Ask for the whole count first: it also says clearly when the job has nothing to read.
    let all = ErrorsTicket {
        job_id: args.job.clone(),
        limit: 0,
    };
    let info = match client
        .get_flight_info(FlightDescriptor::new_cmd(all.to_bytes()))
        .await
    {
        Ok(info) => info,
        Err(e) => return flight_error(e),
    };
    let total = u64::try_from(info.total_records).unwrap_or(0);
    let ticket = ErrorsTicket {
        job_id: args.job.clone(),
        limit,
    };
    let mut stream = match client.do_get(Ticket::new(ticket.to_bytes())).await {
        Ok(s) => s,
        Err(e) => return flight_error(e),
    };
    let mut stdout = std::io::stdout().lock();
    // CSV goes through arrow's writer (header once, the job's CSV error columns as they are).
    let mut csv = (args.format == ErrorsFormat::Csv).then(|| {
        arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(std::io::stdout())
    });
    let mut shown: Vec<Row> = Vec::new();
    let mut count = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => return flight_error(e),
        };
        count += batch.num_rows() as u64;
        if let Some(writer) = &mut csv {
            match writer.write(&batch) {
                Ok(()) => continue,
                Err(ArrowError::IoError(_, e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return 0;
                }
                Err(e) => return fail(format!("writing CSV: {e}"), exit::JOB_FAILED),
            }
        }
        let decoded = match rows(&batch) {
            Ok(r) => r,
            Err(e) => return fail(e, exit::JOB_FAILED),
        };
        if args.format == ErrorsFormat::Table {
            shown.extend(decoded);
            continue;
        }
        let mut text = Vec::new();
        for row in &decoded {
            if serde_json::to_writer(&mut text, row).is_ok() {
                text.push(b'\n');
            }
        }
        if !emit(&mut stdout, &text) {
            return 0;
        }
    }
    if args.format == ErrorsFormat::Table {
        drop(stdout);
        if shown.is_empty() {
            eprintln!("job {} has no invalid rows", args.job);
            return 0;
        }
        out(&table(&shown));
        if count < total {
            eprintln!(
                "{count} of {total} invalid rows shown (--limit 0 shows all, --format jsonl streams them)"
            );
        }
    }
    0
}
