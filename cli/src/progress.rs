//! The progress bar: input bytes read of total with an ETA, tasks, rows, errors, rows/s and
//! bytes/s, then a labelled commit phase. Hidden off a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;
use zoopipe_engine::task::Progress;

pub struct Bar {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Bar {
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// 1234567 → "1.2M": short enough to keep the bar on one line.
pub fn compact(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1}G", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e3 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

pub fn start(progress: Arc<Progress>, quiet: bool) -> Bar {
    if quiet || !std::io::stderr().is_terminal() {
        return Bar {
            stop: None,
            task: None,
        };
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} {elapsed:>4} {bar:20} {percent:>3}% {msg} · ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let (tx, mut rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut committing_shown = false;
        let mut stopping = false;
        loop {
            let committing = progress.committing.load(Ordering::Relaxed);
            if committing && !committing_shown {
                committing_shown = true;
                // A line that stays: reading is over, the commit (which can take a while for
                // big single-file outputs) is what runs now.
                bar.println(format!(
                    "read {} rows in {:.1} s; committing: publishing parts, writing the manifest",
                    compact(Progress::get(&progress.rows_read) as f64),
                    started.elapsed().as_secs_f64()
                ));
                let style = ProgressStyle::with_template("{spinner} {elapsed:>4} committing {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
            }
            if stopping {
                break;
            }
            if !committing {
                let rows = Progress::get(&progress.rows_read);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                bar.set_length(Progress::get(&progress.bytes_total).max(1));
                bar.set_position(Progress::get(&progress.bytes_read));
                bar.set_message(format!(
                    "{}/{} tasks · {} rows · {} invalid · {} rows/s · {}B/s",
                    Progress::get(&progress.tasks_done),
                    Progress::get(&progress.tasks_total),
                    compact(rows as f64),
                    compact(Progress::get(&progress.rows_invalid) as f64),
                    compact(rows as f64 / secs),
                    compact(Progress::get(&progress.bytes_read) as f64 / secs),
                ));
            } else {
                bar.tick();
            }
            tokio::select! {
                _ = &mut rx => stopping = true,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        bar.finish_and_clear();
    });
    Bar {
        stop: Some(tx),
        task: Some(task),
    }
}
