//! Command-line flags. Every `run` flag has a job-spec field of the same meaning (README).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use zoopipe_engine::args::CoordinatorArgs;

#[derive(Parser, Debug)]
#[command(
    name = "zoopipectl",
    version,
    about = "Convert and validate data files, on one machine or a ZooPipe fleet"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a job on this machine (no servers): plan, convert+validate on local workers, commit.
    Run(Box<RunArgs>),
    /// Infer or check a JSON Schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Submit a job to a fleet (same settings as `run`); `--wait` follows it to the end.
    Submit(Box<SubmitArgs>),
    /// A fleet job's state and counters.
    Status(JobArgs),
    /// Follow a fleet job until it ends.
    Watch(JobArgs),
    /// The fleet's jobs.
    List(FleetArgs),
    /// Cancel a fleet job: its tasks stop and nothing of it is committed.
    Cancel(JobArgs),
    /// A fleet job's report.
    Report(JobArgs),
    /// A committed fleet job's invalid rows, read from the coordinator over Arrow Flight.
    Errors(ErrorsArgs),
}

#[derive(Args, Debug)]
pub struct FleetArgs {
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct JobArgs {
    /// The job id.
    pub job: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Args, Debug)]
pub struct ErrorsArgs {
    /// The job id.
    pub job: String,
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Rows to print; 0 = all (default: 20 for a table, all for csv and jsonl).
    #[arg(long)]
    pub limit: Option<u64>,
    #[arg(long, value_enum, default_value_t)]
    pub format: crate::errors_cmd::ErrorsFormat,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Follow the job with a progress bar and end with its report.
    #[arg(long)]
    pub wait: bool,
    /// Run a named job again although it already succeeded for these variables (its
    /// output is replaced).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// A YAML/JSON job spec; flags given as well override its settings.
    pub spec: Option<PathBuf>,
    /// Input URL: a file, a prefix ending in '/', or a glob (repeatable).
    #[arg(short, long = "input", value_name = "URL")]
    pub inputs: Vec<String>,
    /// With a postgresql:// input: a table to export (repeatable; several go to
    /// <output>/<table>/ each).
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,
    /// With a postgresql:// input: the query whose rows to export.
    #[arg(long, value_name = "SQL")]
    pub query: Option<String>,
    /// Split the table or query by value ranges of this numeric, date or timestamp column
    /// (bounds found at planning); a table is otherwise split into ctid page ranges.
    #[arg(long, value_name = "COLUMN")]
    pub partition_column: Option<String>,
    /// Incremental loads of a named job: export only rows whose COLUMN is above the largest
    /// value the last successful run exported.
    #[arg(long, value_name = "COLUMN")]
    pub since_column: Option<String>,
    /// The first lower bound for --since-column (or a backfill's).
    #[arg(long, value_name = "VALUE")]
    pub since: Option<String>,
    /// Output prefix ending in '/' (part files) or one file (`users.parquet`).
    #[arg(short, long, value_name = "URL")]
    pub output: Option<String>,
    /// Output format: parquet, csv, jsonl, arrow (default: from the output name, else parquet).
    #[arg(short, long)]
    pub format: Option<String>,
    /// Input format (default: from each file's extension).
    #[arg(long)]
    pub input_format: Option<String>,
    /// JSON Schema file (as pydantic's model_json_schema() writes it). Without one, types are inferred.
    #[arg(short, long, value_name = "FILE")]
    pub schema: Option<String>,
    /// Where invalid rows go (prefix or one file). Default: <output>/_errors/.
    #[arg(long, value_name = "URL")]
    pub errors: Option<String>,
    /// Format of error parts: jsonl (default), csv, parquet, arrow.
    #[arg(long)]
    pub error_format: Option<String>,
    /// Tasks run at once (default: number of cores).
    #[arg(short, long, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: Option<u32>,
    /// Target input bytes per task, e.g. 64MiB (default 128MiB).
    #[arg(long, value_name = "SIZE")]
    pub partition_size: Option<String>,
    /// Rows per Arrow batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Parquet codec: snappy (default), zstd, lz4, none.
    #[arg(long)]
    pub compression: Option<String>,
    /// Rows per Parquet row group.
    #[arg(long)]
    pub row_group_size: Option<usize>,
    /// CSV delimiter (`,` `;` `|` `\t`).
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,
    /// CSV quote character.
    #[arg(long, value_name = "CHAR")]
    pub quote: Option<String>,
    /// CSV escape character (default: quotes are escaped by doubling).
    #[arg(long, value_name = "CHAR")]
    pub escape: Option<String>,
    /// The CSV input has no header line (columns take the schema's names in order).
    #[arg(long)]
    pub no_header: bool,
    /// CSV fields may contain newlines: read each file whole instead of in byte ranges.
    #[arg(long)]
    pub multiline: bool,
    /// Replace what the output already holds.
    #[arg(long)]
    pub overwrite: bool,
    /// Fail the job (commit nothing) when more than this share of rows is invalid, e.g. 0.05.
    #[arg(long, value_name = "RATE")]
    pub max_error_rate: Option<f64>,
    /// Attempts per task for retryable failures (default 4).
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Fill `${NAME}` in the spec and URLs (repeatable); `date` defaults to today (UTC).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = zoopipe_common::spec_vars::parse_var)]
    pub vars: Vec<(String, String)>,
    /// The job's name: with its variables, the idempotency key of a fleet job.
    #[arg(long)]
    pub name: Option<String>,
    /// Also write the job report (JSON) to this local file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// No progress bar and no summary table.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the report as JSON instead of the summary table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SchemaCommand {
    /// Print a JSON Schema inferred from a sample of a file (edit it, then pass it with --schema).
    Infer {
        /// The file (or prefix/glob: the first file is sampled).
        url: String,
        #[arg(long)]
        input_format: Option<String>,
        #[arg(long, value_name = "CHAR")]
        delimiter: Option<String>,
        #[arg(long)]
        no_header: bool,
    },
    /// Say whether a JSON Schema is supported and which output columns it yields.
    Check {
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}
