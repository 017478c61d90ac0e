//! The fleet worker: register with the coordinator, pull tasks, run each with the engine's
//! task execution (`zoopipe_engine::task`), heartbeat, report results, drain on SIGTERM.

pub mod fleet;
