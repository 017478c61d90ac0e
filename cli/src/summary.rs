//! The summary table printed after a run.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use zoopipe_common::report::JobReport;

pub fn print(report: &JobReport) {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    let mb = |b: u64| bytesize::ByteSize::b(b).display().si().to_string();
    let rows: Vec<(&str, String)> = vec![
        ("job", report.job_id.clone()),
        ("state", format!("{:?}", report.state).to_lowercase()),
        ("rows processed", report.total_processed.to_string()),
        ("rows valid", report.total_valid.to_string()),
        ("rows invalid", report.total_errors.to_string()),
        ("read", mb(report.bytes_read)),
        ("written", mb(report.bytes_written)),
        ("duration", format!("{:.2} s", report.duration_s)),
        ("rows/s", format!("{:.0}", report.items_per_second)),
        (
            "partitions",
            format!(
                "{} total, {} succeeded, {} failed, {} retried",
                report.partitions.total,
                report.partitions.succeeded,
                report.partitions.failed,
                report.partitions.retried
            ),
        ),
        ("outputs", list(&report.outputs)),
        ("error outputs", list(&report.error_outputs)),
    ];
    for (k, v) in rows {
        table.add_row(vec![k.to_string(), v]);
    }
    if report.snapshots > 1 {
        table.add_row(vec![
            "snapshots".to_string(),
            format!(
                "{} (a lost one was replaced: every task read again under the last)",
                report.snapshots
            ),
        ]);
    }
    if let Some(mark) = &report.high_water {
        table.add_row(vec!["exported up to".to_string(), mark.clone()]);
    }
    if !report.errors_by_field.is_empty() {
        let mut by_field: Vec<_> = report.errors_by_field.iter().collect();
        by_field.sort_by(|a, b| b.1.cmp(a.1));
        let text = by_field
            .iter()
            .take(8)
            .map(|(f, n)| format!("{f}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        // A row can fail on several fields: these counts may add up to more than the
        // invalid rows.
        table.add_row(vec![
            "errors by field".to_string(),
            format!("{text} (a row can fail on several fields)"),
        ]);
    }
    crate::out(&table.to_string());
}

fn list(items: &[String]) -> String {
    match items {
        [] => "-".to_string(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (+{} more)", rest.len()),
    }
}
