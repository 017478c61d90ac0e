//! `zoopipectl run`: the embedded mode.

use crate::args::RunArgs;
use crate::{exit, fail, progress, summary};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use zoopipe_common::format::write::Codec;
use zoopipe_common::format::{Format, parse_byte};
use zoopipe_common::report::JobState;
use zoopipe_common::spec::{JobSpec, SchemaSource, parse_size};
use zoopipe_common::storage::Storage;
use zoopipe_common::{Error, Result};
use zoopipe_engine::task::TaskContext;
use zoopipe_engine::{RunOptions, run_job};

pub async fn run(args: RunArgs) -> u8 {
    let spec = match build_spec(&args) {
        Ok(spec) => spec,
        Err(e) => return fail(&e),
    };
    let workers = args
        .workers
        .map(|w| w as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let storage = Storage::new();
    let interrupt = Arc::new(AtomicBool::new(false));
    let interrupted = interrupt.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping tasks, nothing will be committed");
            interrupted.store(true, Ordering::Relaxed);
        }
    });
    // Several tables are several jobs, one after another, each to its own folder.
    let specs = spec.per_table();
    let several = specs.len() > 1;
    let mut worst = 0;
    for spec in specs {
        if let Some(table) = spec
            .table
            .first()
            .filter(|_| several && !args.quiet && !args.json)
        {
            eprintln!("exporting table {table} to {}", spec.output);
        }
        // A context per job: its cancel flag and progress counters are that job's.
        let ctx = TaskContext::new(storage.clone());
        let bar = progress::start(ctx.progress.clone(), args.quiet || args.json);
        let options = RunOptions {
            workers,
            interrupt: interrupt.clone(),
        };
        let result = run_job(ctx, spec, options).await;
        bar.finish().await;
        let code = match result {
            Ok(report) => finish(&args, report),
            Err(e) => fail(&e),
        };
        worst = worst.max(code);
        if interrupt.load(Ordering::Relaxed) {
            break;
        }
    }
    worst
}

/// Print and save one job's report; its exit code.
fn finish(args: &RunArgs, report: zoopipe_common::report::JobReport) -> u8 {
    if let Some(path) = &args.report {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(path, text));
        if let Err(e) = written {
            eprintln!("error: cannot write the report to {}: {e}", path.display());
            return exit::JOB_FAILED;
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => crate::out(&text),
            Err(e) => eprintln!("error: {e}"),
        }
    } else if !args.quiet {
        summary::print(&report);
    }
    match report.state {
        JobState::Succeeded => 0,
        JobState::Cancelled => exit::CANCELLED,
        _ => {
            eprintln!(
                "error: {}",
                report.message.as_deref().unwrap_or("the job failed")
            );
            exit::JOB_FAILED
        }
    }
}

/// The spec file (if any) with every given flag applied over it.
pub fn build_spec(args: &RunArgs) -> Result<JobSpec> {
    let vars = zoopipe_common::spec_vars::with_defaults(&args.vars);
    let mut used = std::collections::BTreeMap::new();
    let mut fill = |text: &String| zoopipe_common::spec_vars::substitute(text, &vars, &mut used);
    let mut spec = match &args.spec {
        Some(path) => JobSpec::from_file_with(path, &vars)?,
        None => {
            let output = args
                .output
                .clone()
                .ok_or_else(|| Error::config("--output is required (or give a job spec file)"))?;
            serde_json::from_value(serde_json::json!({ "inputs": [], "output": output }))
                .map_err(|e| Error::config(e.to_string()))?
        }
    };
    if !args.inputs.is_empty() {
        spec.inputs = args.inputs.iter().map(&mut fill).collect::<Result<_>>()?;
    }
    if spec.inputs.is_empty() {
        return Err(Error::config(
            "no input: pass --input URL (or give a job spec file)",
        ));
    }
    if !args.tables.is_empty() {
        spec.table = args.tables.clone();
    }
    if let Some(q) = &args.query {
        spec.query = Some(fill(q)?);
    }
    if let Some(c) = &args.partition_column {
        spec.partition_column = Some(c.clone());
    }
    if let Some(c) = &args.since_column {
        spec.since_column = Some(c.clone());
    }
    if let Some(v) = &args.since {
        spec.since = Some(fill(v)?);
    }
    if let Some(o) = &args.output {
        spec.output = fill(o)?;
    }
    if let Some(f) = &args.format {
        spec.format = Some(Format::parse(f)?);
    }
    if let Some(f) = &args.input_format {
        spec.input_format = Some(Format::parse(f)?);
    }
    if let Some(s) = &args.schema {
        spec.schema = Some(SchemaSource::Path(s.clone()));
    }
    if let Some(e) = &args.errors {
        spec.errors = Some(fill(e)?);
    }
    if let Some(f) = &args.error_format {
        spec.error_format = Some(Format::parse(f)?);
    }
    if let Some(p) = &args.partition_size {
        spec.partition_size =
            parse_size(p).map_err(|e| Error::config(format!("--partition-size {e}")))?;
    }
    if let Some(b) = args.batch_size {
        spec.batch_size = b;
    }
    if let Some(c) = &args.compression {
        spec.write.compression = Codec::parse(c)?;
    }
    if let Some(r) = args.row_group_size {
        spec.write.row_group_size = r;
    }
    let byte =
        |flag: &str, v: &str| parse_byte(v).map_err(|e| Error::config(format!("{flag}: {e}")));
    if let Some(d) = &args.delimiter {
        spec.csv.delimiter = byte("--delimiter", d)?;
    }
    if let Some(q) = &args.quote {
        spec.csv.quote = byte("--quote", q)?;
    }
    if let Some(e) = &args.escape {
        spec.csv.escape = Some(byte("--escape", e)?);
    }
    if args.no_header {
        spec.csv.header = false;
    }
    if args.multiline {
        spec.csv.multiline = true;
    }
    if args.overwrite {
        spec.overwrite = true;
    }
    if let Some(r) = args.max_error_rate {
        spec.max_error_rate = Some(r);
    }
    if let Some(m) = args.max_attempts {
        spec.max_attempts = m;
    }
    if let Some(name) = &args.name {
        spec.name = Some(name.clone());
    }
    spec.vars.extend(used);
    Ok(spec)
}
