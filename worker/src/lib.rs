//! The worker's data plane: `process(task)` reads only its splits (ranged GETs), parses,
//! validates, and streams one output part and at most one error part per task. It is pure:
//! the embedded runner calls it in-process, the fleet worker calls it for tasks it acquired.

mod batch;
pub mod fleet;
pub mod ops;
mod process;
mod progress;
mod source;

pub use process::{WorkerContext, discard, process, process_blocking};
pub use progress::Progress;
