//! The progress bar: tasks done of total, rows, errors, throughput. Hidden off a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use zoopipe_worker::Progress;

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

pub fn start(progress: Arc<Progress>, quiet: bool) -> Bar {
    if quiet || !std::io::stderr().is_terminal() {
        return Bar {
            stop: None,
            task: None,
        };
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    let (tx, mut rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        loop {
            let rows = Progress::get(&progress.rows_read);
            let secs = started.elapsed().as_secs_f64().max(0.001);
            bar.set_length(Progress::get(&progress.tasks_total));
            bar.set_position(Progress::get(&progress.tasks_done));
            bar.set_message(format!(
                "{rows} rows, {} invalid, {:.0} rows/s, {:.1} MB/s",
                Progress::get(&progress.rows_invalid),
                rows as f64 / secs,
                Progress::get(&progress.bytes_read) as f64 / secs / 1e6,
            ));
            tokio::select! {
                _ = &mut rx => break,
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
