//! The one retry decision: what an attempt that ended without a result means for its task.

use std::time::Duration;
pub use zoopipe_common::error::FailureKind;

/// What happens to the task next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run it again, not before `after` has passed; `counted` says whether this attempt used
    /// up one of `max_attempts`.
    Retry { after: Duration, counted: bool },
    /// Give up: the job fails, naming the task and this error.
    FailJob,
}

/// The first retry waits this long, each further one twice as long, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `attempts`: attempts made so far, this one included; `max`: the job's `max_attempts`.
pub fn decide(kind: FailureKind, attempts: u32, max: u32) -> Decision {
    match kind {
        FailureKind::Fatal => Decision::FailJob,
        FailureKind::HandedBack => Decision::Retry {
            after: Duration::ZERO,
            counted: false,
        },
        FailureKind::Transient | FailureKind::Lost if attempts < max => Decision::Retry {
            after: backoff(attempts),
            counted: true,
        },
        FailureKind::Transient | FailureKind::Lost => Decision::FailJob,
    }
}

fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(8);
    (FIRST_BACKOFF * (1u32 << doublings)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_retry_with_growing_backoff_until_max_attempts() {
        let max = 4;
        let waits: Vec<_> = (1..max)
            .map(|n| match decide(FailureKind::Transient, n, max) {
                Decision::Retry {
                    after,
                    counted: true,
                } => after,
                other => panic!("attempt {n}: {other:?}"),
            })
            .collect();
        assert_eq!(waits, [200, 400, 800].map(Duration::from_millis).to_vec());
        assert_eq!(decide(FailureKind::Transient, max, max), Decision::FailJob);
        assert_eq!(decide(FailureKind::Lost, max, max), Decision::FailJob);
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn fatal_fails_at_once_and_hand_backs_are_free() {
        assert_eq!(decide(FailureKind::Fatal, 1, 4), Decision::FailJob);
        assert_eq!(
            decide(FailureKind::HandedBack, 4, 4),
            Decision::Retry {
                after: Duration::ZERO,
                counted: false
            }
        );
    }
}
