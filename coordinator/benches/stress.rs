//! Coordinator stress benchmark: one real coordinator (leader election, etcd state, the gRPC
//! service implementations called in-process) and many fake workers that complete every task
//! instantly, against a real etcd. Prints one table: task assignments per second, etcd
//! operations per task (from etcd's own /metrics), coordinator CPU and peak RSS.
//!
//!     bench/stress.sh                     # starts a throwaway etcd, 100,000 tasks, 1,000 workers
//!     ZOOPIPE_BENCH_ETCD=http://127.0.0.1:2379 \
//!       cargo bench -p zoopipe-coordinator --bench stress -- --tasks 20000 --workers 200

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::Request;
use zoopipe_common::report::TaskResult;
use zoopipe_common::spec::JobSpec;
use zoopipe_coordinator::api::{JobApi, WorkerApi};
use zoopipe_coordinator::fleet::{Fleet, Role};
use zoopipe_coordinator::leader::LeaderInfo;
use zoopipe_coordinator::state::EtcdState;
use zoopipe_proto::v1;
use zoopipe_proto::v1::job_service_server::JobService;
use zoopipe_proto::v1::worker_service_server::WorkerService;

fn flag(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// etcd's own counters (independent of our code): mvcc puts, deletes, txns and ranges.
fn etcd_counters(endpoint: &str) -> [f64; 4] {
    let url = format!("{}/metrics", endpoint.trim_end_matches('/'));
    let body = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1]).read().decode())",
            &url,
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let value = |name: &str| {
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    [
        value("etcd_mvcc_put_total"),
        value("etcd_mvcc_delete_total"),
        value("etcd_mvcc_txn_total"),
        value("etcd_mvcc_range_total"),
    ]
}

/// (user + system CPU seconds, peak RSS MiB) of this process.
fn cpu_and_peak_rss() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; after the ')' they are at 11 and 12.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, rss_kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tasks = flag("--tasks", 100_000);
    let workers = flag("--workers", 1_000);
    let etcd = std::env::var("ZOOPIPE_BENCH_ETCD").unwrap_or("http://127.0.0.1:2379".into());
    let prefix = format!("/zoopipe-stress/{}", std::process::id());

    // One 9-byte record per task: partitions of 9 bytes make exactly `tasks` tasks.
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("ids.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input)?);
    writeln!(file, "idididid")?;
    for i in 0..tasks {
        writeln!(file, "{i:08}")?;
    }
    file.flush()?;
    drop(file);
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "inputs": [input.to_string_lossy()],
        "output": format!("{}/out/", dir.path().display()),
        "partition_size": 9,
    }))?;

    let state = EtcdState::connect(std::slice::from_ref(&etcd), &prefix).await?;
    let me = LeaderInfo {
        id: "stress".into(),
        address: "http://127.0.0.1:1".into(),
    };
    let fleet = Fleet::new(state, 30, me, None);
    fleet.clone().watch_leases().await?;
    tokio::spawn(fleet.clone().campaign());
    while fleet.role() != Role::Leader {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job_api = JobApi(fleet.clone());
    let worker_api = Arc::new(WorkerApi(fleet.clone()));

    let before = etcd_counters(&etcd);
    let (cpu0, _) = cpu_and_peak_rss();
    let started = Instant::now();
    for w in 0..workers {
        worker_api
            .register_worker(Request::new(v1::RegisterWorkerRequest {
                worker_id: format!("w{w}"),
                slots: 1,
            }))
            .await?;
    }
    let registered = started.elapsed();
    let submitted_at = Instant::now();
    let job_id = job_api
        .submit_job(Request::new(v1::SubmitJobRequest {
            spec: Some(v1::JobSpec::try_from(&spec)?),
            force: false,
        }))
        .await?
        .into_inner()
        .job_id;
    let planned = submitted_at.elapsed();

    let assigned = Arc::new(AtomicU64::new(0));
    let run_started = Instant::now();
    let mut fakes = Vec::new();
    for w in 0..workers {
        let (api, assigned) = (worker_api.clone(), assigned.clone());
        let total = tasks as u64;
        fakes.push(tokio::spawn(async move {
            let worker_id = format!("w{w}");
            let mut last_beat = Instant::now();
            while assigned.load(Ordering::Relaxed) < total {
                if last_beat.elapsed() > Duration::from_secs(5) {
                    let _ = api
                        .heartbeat(Request::new(v1::HeartbeatRequest {
                            worker_id: worker_id.clone(),
                            running: vec![],
                        }))
                        .await;
                    last_beat = Instant::now();
                }
                let Ok(response) = api
                    .acquire_task(Request::new(v1::AcquireTaskRequest {
                        worker_id: worker_id.clone(),
                        free_slots: 1,
                    }))
                    .await
                else {
                    continue;
                };
                for task in response.into_inner().tasks {
                    assigned.fetch_add(1, Ordering::Relaxed);
                    // No rows and no parts: a result whose counts balance (the coordinator
                    // refuses one that says it read rows it put in no part).
                    let result = TaskResult {
                        index: task.index,
                        attempt: task.attempt,
                        worker: worker_id.clone(),
                        ..TaskResult::default()
                    };
                    let _ = api
                        .complete_task(Request::new(v1::CompleteTaskRequest {
                            worker_id: worker_id.clone(),
                            job_id: task.job_id.clone(),
                            fencing_token: task.fencing_token,
                            result: Some((&result).into()),
                        }))
                        .await;
                }
            }
        }));
    }
    for fake in fakes {
        fake.await?;
    }
    let assigning = run_started.elapsed();
    // The commit (manifest, report) ends the job.
    loop {
        let report = job_api
            .get_job(Request::new(v1::GetJobRequest {
                job_id: job_id.clone(),
            }))
            .await?
            .into_inner()
            .report
            .unwrap_or_default();
        if report.state == v1::JobState::Succeeded as i32 {
            break;
        }
        anyhow::ensure!(
            report.state != v1::JobState::Failed as i32,
            "the job failed: {:?}",
            report.message
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = run_started.elapsed();
    let (cpu1, rss) = cpu_and_peak_rss();
    let after = etcd_counters(&etcd);
    let per_task = |i: usize| (after[i] - before[i]) / tasks as f64;

    println!("| measure | value |");
    println!("|---|---:|");
    println!("| tasks | {tasks} |");
    println!("| fake workers (1 slot each) | {workers} |");
    println!(
        "| register all workers | {:.2} s |",
        registered.as_secs_f64()
    );
    println!("| plan + store the job | {:.2} s |", planned.as_secs_f64());
    println!(
        "| assign + complete every task | {:.2} s |",
        assigning.as_secs_f64()
    );
    println!(
        "| **task assignments/s** | **{:.0}** |",
        tasks as f64 / assigning.as_secs_f64()
    );
    println!("| until committed | {:.2} s |", total.as_secs_f64());
    println!("| etcd puts per task | {:.2} |", per_task(0));
    println!("| etcd deletes per task | {:.2} |", per_task(1));
    println!("| etcd txns per task | {:.2} |", per_task(2));
    println!("| etcd ranges (reads) per task | {:.2} |", per_task(3));
    println!(
        "| coordinator CPU | {:.1} s ({:.0} µs per task) |",
        cpu1 - cpu0,
        (cpu1 - cpu0) * 1e6 / tasks as f64
    );
    println!("| coordinator peak RSS | {rss:.0} MiB |");
    Ok(())
}
