//! Crash points for fault-injection tests: with `ZOOPIPE_FAULT_EXIT_AT=<name>` the process exits
//! at once, as if killed, when it reaches the point of that name. Nothing happens when unset.

/// Exit with status 137 (as after SIGKILL) if `ZOOPIPE_FAULT_EXIT_AT` names this point.
pub fn crash_point(name: &str) {
    if std::env::var("ZOOPIPE_FAULT_EXIT_AT").is_ok_and(|v| v == name) {
        tracing::error!(point = name, "ZOOPIPE_FAULT_EXIT_AT: exiting here");
        std::process::exit(137);
    }
}
