//! Fault points for fault-injection tests. With `ZOOPIPE_FAULT_EXIT_AT=<name>` the process exits
//! at once, as if killed, when it reaches the point of that name; with
//! `ZOOPIPE_FAULT_STOP_AT=<name>` it stops itself there (SIGSTOP, as a frozen process) until it
//! gets SIGCONT; with `ZOOPIPE_FAULT_FAIL_ONCE_AT=<name>` the first call there reports a
//! failure (an answer lost on the way); `ZOOPIPE_FAULT_FAIL_TASK=<index>` makes every attempt
//! of that task fail with a transient error (a poison partition); `ZOOPIPE_FAULT_UNANSWERED=<name>`
//! leaves every question asked at that point unanswered; `ZOOPIPE_WORKER_BATCH_DELAY_MS`
//! slows every batch down (so tests and demos can act mid-task). Nothing happens when they are
//! unset.

/// Exit (status 137, as after SIGKILL) or freeze if a fault variable names this point.
pub fn crash_point(name: &str) {
    if std::env::var("ZOOPIPE_FAULT_EXIT_AT").is_ok_and(|v| v == name) {
        tracing::error!(point = name, "ZOOPIPE_FAULT_EXIT_AT: exiting here");
        std::process::exit(137);
    }
    if std::env::var("ZOOPIPE_FAULT_STOP_AT").is_ok_and(|v| v == name) {
        tracing::error!(point = name, "ZOOPIPE_FAULT_STOP_AT: stopping here");
        let pid = std::process::id().to_string();
        if let Err(e) = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
        {
            tracing::error!(error = %e, "could not stop this process");
        }
    }
}

/// `true` the first time this process reaches the point `ZOOPIPE_FAULT_FAIL_ONCE_AT` names.
pub fn fail_once(name: &str) -> bool {
    static FIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    std::env::var("ZOOPIPE_FAULT_FAIL_ONCE_AT").is_ok_and(|v| v == name)
        && !FIRED.swap(true, std::sync::atomic::Ordering::SeqCst)
        && {
            tracing::error!(point = name, "ZOOPIPE_FAULT_FAIL_ONCE_AT: failing here");
            true
        }
}

/// `ZOOPIPE_FAULT_UNANSWERED`: the question asked at this point is never answered.
pub fn unanswered(name: &str) -> bool {
    std::env::var("ZOOPIPE_FAULT_UNANSWERED").is_ok_and(|v| v == name)
}

/// `ZOOPIPE_FAULT_FAIL_TASK`: every attempt of this task fails (transiently).
pub fn fail_task(index: u32) -> bool {
    std::env::var("ZOOPIPE_FAULT_FAIL_TASK").is_ok_and(|v| v.trim() == index.to_string())
}

/// `ZOOPIPE_WORKER_BATCH_DELAY_MS`: a pause after each batch (zero when unset).
pub fn batch_delay() -> std::time::Duration {
    std::env::var("ZOOPIPE_WORKER_BATCH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_millis)
        .unwrap_or_default()
}
