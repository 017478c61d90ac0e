//! Fleet commands: `submit`, `status`, `watch`, `list`, `cancel`, `report`, over gRPC.

use crate::args::{FleetArgs, JobArgs, SubmitArgs};
use crate::{exit, out, summary};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use zoopipe_common::report::{JobReport, JobState};
use zoopipe_common::spec::SchemaSource;
use zoopipe_engine::args::CoordinatorArgs;
use zoopipe_proto::client::Failover;
use zoopipe_proto::v1;
use zoopipe_proto::v1::job_service_client::JobServiceClient;

fn fail(message: impl std::fmt::Display, code: u8) -> u8 {
    eprintln!("error: {message}");
    code
}

type Client = JobServiceClient<Failover>;

/// The coordinator URLs this command talks to, for messages.
static COORDINATOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A client for the coordinator (dialled at the first call).
async fn connect(args: &CoordinatorArgs) -> Result<Client, u8> {
    let _ = COORDINATOR.set(args.display());
    args.connect()
        .map(JobServiceClient::new)
        .map_err(|e| fail(e, exit::BAD_INPUT))
}

fn status_error(s: tonic::Status) -> u8 {
    let code = match s.code() {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::NotFound => {
            exit::BAD_INPUT
        }
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => exit::BAD_INPUT,
        _ => exit::JOB_FAILED,
    };
    match s.code() {
        tonic::Code::Unavailable => fail(
            format!(
                "the coordinator at {} is unavailable: {}",
                COORDINATOR.get().map_or("?", String::as_str),
                transport_message(&s)
            ),
            code,
        ),
        _ => fail(s.message(), code),
    }
}

/// The innermost cause of a transport failure ("Connection refused"), not tonic's wrapper.
fn transport_message(s: &tonic::Status) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(s);
    let mut message = s.message().to_string();
    while let Some(e) = source {
        message = e.to_string();
        source = e.source();
    }
    message
}

fn exit_code(report: &JobReport) -> u8 {
    match report.state {
        JobState::Succeeded => 0,
        JobState::Cancelled => exit::JOB_CANCELLED,
        JobState::Failed => fail(
            report.message.as_deref().unwrap_or("the job failed"),
            exit::JOB_FAILED,
        ),
        _ => 0,
    }
}

pub async fn submit(args: SubmitArgs) -> u8 {
    let mut spec = match crate::run::build_spec(&args.run) {
        Ok(s) => s,
        Err(e) => return crate::fail(&e),
    };
    // The password of a database URL never leaves this process: the coordinator and the
    // workers connect with their own credentials (PGPASSWORD, ~/.pgpass, a Kubernetes Secret).
    for input in &mut spec.inputs {
        if zoopipe_common::sql::is_sql_url(input) {
            match zoopipe_common::sql::remember_password(input) {
                Ok(redacted) if redacted != *input => {
                    eprintln!(
                        "note: the password in {redacted} is not sent to the fleet; its coordinator and workers use their own PGPASSWORD or ~/.pgpass"
                    );
                    *input = redacted;
                }
                Ok(_) => {}
                Err(e) => return crate::fail(&e),
            }
        }
    }
    // Several tables are several jobs.
    let mut worst = 0;
    for spec in spec.per_table() {
        worst = worst.max(submit_one(spec, &args).await);
    }
    worst
}

async fn submit_one(mut spec: zoopipe_common::spec::JobSpec, args: &SubmitArgs) -> u8 {
    // Other processes with other working directories read these paths.
    if let Err(e) = spec.absolutize_local_paths() {
        return crate::fail(&e);
    }
    // The coordinator cannot read the client's files: send the schema itself.
    if let Some(SchemaSource::Path(path)) = &spec.schema {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(value) => spec.schema = Some(SchemaSource::Inline(value)),
            Err(e) => return fail(format!("schema {path}: {e}"), exit::BAD_INPUT),
        }
    }
    let proto = match v1::JobSpec::try_from(&spec) {
        Ok(p) => p,
        Err(e) => return fail(e, exit::BAD_INPUT),
    };
    let mut client = match connect(&args.coordinator).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let response = match client
        .submit_job(v1::SubmitJobRequest {
            spec: Some(proto),
            force: args.force,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return status_error(s),
    };
    let job = &response.job_id;
    let key = describe_key(&spec);
    match v1::SubmitOutcome::try_from(response.outcome).unwrap_or_default() {
        v1::SubmitOutcome::AlreadySucceeded => {
            eprintln!(
                "{key} already succeeded as job {job}: nothing to do (--force runs it again)"
            );
            return show_report(&mut client, job, args.run.json).await;
        }
        v1::SubmitOutcome::AlreadyRunning => {
            eprintln!("{key} is already running as job {job}: following it")
        }
        v1::SubmitOutcome::Resumed => eprintln!(
            "{key} resumed as job {job}: {} of {} tasks left to run",
            response.tasks_to_run, response.tasks
        ),
        v1::SubmitOutcome::Created if args.wait && response.planning => eprintln!(
            "submitted {job} ({} tasks so far; more as its inputs are listed)",
            response.tasks
        ),
        v1::SubmitOutcome::Created if args.wait => {
            eprintln!("submitted {job} ({} tasks)", response.tasks)
        }
        v1::SubmitOutcome::Created => {}
    }
    if !args.wait {
        out(job);
        return 0;
    }
    let fleet = FleetArgs {
        coordinator: args.coordinator.clone(),
        json: args.run.json,
    };
    watch(&fleet, &response.job_id, args.run.quiet).await
}

/// How long `watch` keeps reconnecting while no coordinator answers (a failover takes a
/// lease TTL or two).
const WATCH_PATIENCE: Duration = Duration::from_secs(120);

/// Errors worth reconnecting for: the replica went away or is between leaders.
fn reconnectable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

/// "job daily-events (date=2024-01-01)" for messages about a named job.
fn describe_key(spec: &zoopipe_common::spec::JobSpec) -> String {
    let name = spec.name.as_deref().unwrap_or("the job");
    let vars: Vec<String> = spec.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if vars.is_empty() {
        format!("job {name}")
    } else {
        format!("job {name} ({})", vars.join(", "))
    }
}

/// A job's report as the coordinator has it now; `Err` is the exit code, already explained.
async fn fetch_report(client: &mut Client, job: &str) -> Result<JobReport, u8> {
    let report = client
        .get_job(v1::GetJobRequest {
            job_id: job.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .report;
    report
        .and_then(|r| JobReport::try_from(r).ok())
        .ok_or_else(|| fail("the coordinator sent no report", exit::JOB_FAILED))
}

/// Print a job's stored report (an earlier run's) and exit as it ended.
async fn show_report(client: &mut Client, job: &str, json: bool) -> u8 {
    match fetch_report(client, job).await {
        Ok(report) => {
            show(&report, json);
            exit_code(&report)
        }
        Err(code) => code,
    }
}

pub async fn watch(fleet: &FleetArgs, job: &str, quiet: bool) -> u8 {
    let mut client = match connect(&fleet.coordinator).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let bar = if quiet || fleet.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {elapsed:>4} {bar:20} {percent:>3}% {msg} · ETA {eta}",
        ) {
            bar.set_style(style);
        }
        bar
    };
    let mut heard = Instant::now();
    let watching = Instant::now();
    let mut last = None;
    // Follow the job across coordinator failovers: reopen the stream until the job ends.
    while last.is_none() {
        let opened = client
            .watch_job(v1::WatchJobRequest {
                job_id: job.to_string(),
            })
            .await;
        let failure = match opened {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(p)) => {
                            heard = Instant::now();
                            // Running tasks report what they have read with every heartbeat,
                            // so the bar moves during tasks, not only when one finishes.
                            bar.set_length(p.bytes_total.max(1));
                            bar.set_position(p.bytes_read.min(p.bytes_total));
                            let secs = watching.elapsed().as_secs_f64().max(0.001);
                            if p.state == v1::JobState::Committing as i32 {
                                bar.set_message(format!(
                                    "{}/{} tasks · committing: publishing parts, writing the manifest",
                                    p.tasks_done, p.tasks_total
                                ));
                            } else {
                                bar.set_message(format!(
                                    "{}/{} tasks · {} rows · {} invalid · {} rows/s · {}B/s",
                                    p.tasks_done,
                                    p.tasks_total,
                                    crate::progress::compact(p.rows_read as f64),
                                    crate::progress::compact(p.rows_invalid as f64),
                                    crate::progress::compact(p.rows_read as f64 / secs),
                                    crate::progress::compact(p.bytes_read as f64 / secs),
                                ));
                            }
                            if p.report.is_some() {
                                last = p.report;
                            }
                        }
                        Ok(None) => break None,
                        Err(s) => break Some(s),
                    }
                }
            }
            Err(s) => Some(s),
        };
        if last.is_some() {
            break;
        }
        match failure {
            Some(s) if !reconnectable(&s) => {
                bar.finish_and_clear();
                return status_error(s);
            }
            Some(s) if heard.elapsed() > WATCH_PATIENCE => {
                bar.finish_and_clear();
                return status_error(s);
            }
            None if heard.elapsed() > WATCH_PATIENCE => break,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    bar.finish_and_clear();
    let Some(report) = last.and_then(|r| JobReport::try_from(r).ok()) else {
        return fail(
            format!("the coordinator stopped reporting on {job}"),
            exit::JOB_FAILED,
        );
    };
    if !quiet || fleet.json {
        show(&report, fleet.json);
    }
    exit_code(&report)
}

fn show(report: &JobReport, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string_pretty(report) {
            out(&text);
        }
    } else {
        summary::print(report);
    }
}

pub async fn status(args: JobArgs, full: bool) -> u8 {
    let mut client = match connect(&args.fleet.coordinator).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let report = match fetch_report(&mut client, &args.job).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    if full || args.fleet.json {
        show(&report, args.fleet.json);
    } else {
        out(&format!(
            "{} {} processed={} valid={} errors={} tasks={}/{}",
            report.job_id,
            format!("{:?}", report.state).to_lowercase(),
            report.total_processed,
            report.total_valid,
            report.total_errors,
            report.tasks.len(),
            report.partitions.total
        ));
    }
    0
}

pub async fn list(args: FleetArgs) -> u8 {
    let mut client = match connect(&args.coordinator).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let jobs = match client.list_jobs(v1::ListJobsRequest {}).await {
        Ok(r) => r.into_inner().jobs,
        Err(s) => return status_error(s),
    };
    let reports: Vec<JobReport> = jobs
        .into_iter()
        .filter_map(|j| JobReport::try_from(j).ok())
        .collect();
    if args.json {
        if let Ok(text) = serde_json::to_string_pretty(&reports) {
            out(&text);
        }
        return 0;
    }
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "job",
        "state",
        "tasks",
        "processed",
        "errors",
        "started",
    ]);
    for r in &reports {
        table.add_row(vec![
            r.job_id.clone(),
            format!("{:?}", r.state).to_lowercase(),
            r.partitions.total.to_string(),
            r.total_processed.to_string(),
            r.total_errors.to_string(),
            r.started_at.clone(),
        ]);
    }
    out(&table.to_string());
    0
}

pub async fn cancel(args: JobArgs) -> u8 {
    let mut client = match connect(&args.fleet.coordinator).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client
        .cancel_job(v1::CancelJobRequest {
            job_id: args.job.clone(),
        })
        .await
    {
        // The coordinator answers the job's state: a job that had already ended stays as it
        // ended, and saying "cancelled" then would be false.
        Ok(response) => match zoopipe_proto::convert::state_from(response.into_inner().state) {
            Ok(JobState::Cancelled) => {
                out(&format!("{} cancelled", args.job));
                0
            }
            Ok(state) => fail(
                format!(
                    "job {} had already ended ({}): nothing to cancel",
                    args.job,
                    format!("{state:?}").to_lowercase()
                ),
                exit::BAD_INPUT,
            ),
            Err(e) => fail(e, exit::JOB_FAILED),
        },
        Err(s) => status_error(s),
    }
}
