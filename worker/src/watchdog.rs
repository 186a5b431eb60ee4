//! The worker's watchdog: when the worker can no longer be trusted to make progress, it stops
//! so that its supervisor (compose `restart:`, Kubernetes) starts a fresh one, instead of
//! heartbeating, reporting ready and holding jobs forever.
//!
//! Two signs, both counted by the job loop: a pipeline that does not stop within
//! [`Watchdog::grace`] of being told to (cancelled, past its deadline: a wedged CUDA call
//! ignores cancellation), and [`Watchdog::max_internal_in_a_row`] jobs in a row failing with
//! `internal` (a broken GPU or driver fails every job). The job in hand is given back to the
//! queue (fenced by its lease) before the loop returns [`Wedged`].

use std::time::Duration;

/// Watchdog settings of the job loop.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog {
    /// How long a pipeline may keep running after it was told to stop. Longer than the
    /// slowest single step of a healthy pipeline (cancellation is checked between steps).
    pub grace: Duration,
    /// Consecutive `internal` failures after which the worker stops (0: never).
    pub max_internal_in_a_row: u32,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog { grace: Duration::from_secs(60), max_internal_in_a_row: 5 }
    }
}

/// Why the watchdog stopped the worker loop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Wedged {
    /// The pipeline ignored a stop request for the whole grace period.
    #[error("watchdog: the pipeline did not stop within {grace:?} of being told to (a wedged GPU call?)")]
    Stuck {
        /// The grace it was given.
        grace: Duration,
    },
    /// Too many jobs in a row failed with `internal`.
    #[error("watchdog: {count} jobs in a row failed with `internal`")]
    Failing {
        /// How many.
        count: u32,
    },
}

/// Counts consecutive `internal` failures.
#[derive(Debug, Default)]
pub(crate) struct FailureStreak {
    count: u32,
}

impl FailureStreak {
    /// Records a job's ending; `Err` once the streak reaches the limit.
    pub(crate) fn record(&mut self, internal: bool, limit: u32) -> Result<(), Wedged> {
        self.count = if internal { self.count + 1 } else { 0 };
        if limit > 0 && self.count >= limit {
            return Err(Wedged::Failing { count: self.count });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only an unbroken streak trips it; any other ending resets the count.
    #[test]
    fn streak_counts_consecutive_internal_failures() {
        let mut streak = FailureStreak::default();
        assert!(streak.record(true, 3).is_ok());
        assert!(streak.record(true, 3).is_ok());
        assert!(streak.record(false, 3).is_ok());
        assert!(streak.record(true, 3).is_ok());
        assert!(streak.record(true, 3).is_ok());
        assert_eq!(streak.record(true, 3), Err(Wedged::Failing { count: 3 }));
        let mut never = FailureStreak::default();
        assert!((0..10).all(|_| never.record(true, 0).is_ok()));
    }
}
