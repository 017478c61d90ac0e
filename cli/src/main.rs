//! zoopipectl: run conversion jobs on this machine (`run`), and inspect schemas (`schema`).

mod args;
mod errors_cmd;
mod fleet_cmd;
mod progress;
mod run;
mod schema_cmd;
mod summary;

use clap::Parser;

// Arrow and Parquet allocate many short-lived buffers from several threads; mimalloc keeps that
// fast and returns memory instead of fragmenting per-thread arenas (lower peak RSS).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

/// Exit codes scripts can rely on.
pub mod exit {
    /// The job failed while running (a task or the commit).
    pub const JOB_FAILED: u8 = 1;
    /// Bad usage, spec, schema, input or output: nothing ran.
    pub const BAD_INPUT: u8 = 2;
    /// A fleet job that someone cancelled (`zoopipectl cancel`): nothing was committed.
    pub const JOB_CANCELLED: u8 = 3;
    /// Interrupted (Ctrl-C): nothing was committed.
    pub const CANCELLED: u8 = 130;
}

fn main() -> ExitCode {
    zoopipe_engine::alloc::tune();
    let cli = args::Cli::parse();
    zoopipe_common::storage::install_tls_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(exit::JOB_FAILED);
        }
    };
    let code = runtime.block_on(async {
        // Inside the runtime: the trace exporter's channel runs on it.
        let telemetry = init_logging(cli.verbose);
        zoopipe_proto::client::set_trace_injector(zoopipe_common::logging::inject_headers);
        let code = match cli.command {
            args::Command::Run(run) => run::run(*run).await,
            args::Command::Schema(cmd) => schema_cmd::schema(cmd).await,
            args::Command::Submit(a) => {
                use tracing::Instrument;
                let span = tracing::info_span!("zoopipectl submit");
                fleet_cmd::submit(*a).instrument(span).await
            }
            args::Command::Status(a) => fleet_cmd::status(a, false).await,
            args::Command::Report(a) => fleet_cmd::status(a, true).await,
            args::Command::Watch(a) => fleet_cmd::watch(&a.fleet, &a.job, false).await,
            args::Command::List(a) => fleet_cmd::list(a).await,
            args::Command::Cancel(a) => fleet_cmd::cancel(a).await,
            args::Command::Errors(a) => errors_cmd::errors(a).await,
        };
        telemetry.shutdown().await;
        code
    });
    // Let background aborts of failed uploads finish; fetches of dropped readers just stop.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}

fn init_logging(verbose: u8) -> zoopipe_common::logging::Telemetry {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    zoopipe_common::logging::init(default, "zoopipectl")
}

/// Print to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}

/// Print one clear line for an error and pick the exit code.
/// Errors that reach here stopped a job before it ran: bad usage, spec, schema, input, output
/// or an unreachable store.
pub fn fail(e: &zoopipe_common::Error) -> u8 {
    eprintln!("error: {}", one_line(&e.to_string()));
    match e {
        zoopipe_common::Error::Cancelled => exit::CANCELLED,
        _ => exit::BAD_INPUT,
    }
}

/// Multi-line messages (a regex parser's caret diagram) folded into one line.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
