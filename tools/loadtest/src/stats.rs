//! Percentiles and the FIFO-fairness check over job records.

use std::time::{Duration, Instant};

use crate::job::{JobRecord, Outcome};

/// Nearest-rank percentile `p` (0-100) of `values` in milliseconds; None when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// `| p50 | p99 | max |` of `values` (ms) as markdown table cells.
pub fn cells(values: &[f64]) -> String {
    let f = |p| percentile(values, p).map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    format!("| {} | {} | {} |", f(50.0), f(99.0), f(100.0))
}

/// Milliseconds between two instants (negative when `b` is before `a`).
pub fn ms(a: Instant, b: Instant) -> f64 {
    if b >= a {
        (b - a).as_secs_f64() * 1e3
    } else {
        -((a - b).as_secs_f64() * 1e3)
    }
}

/// Pairs of completed jobs where one entered the queue more than `slack` before the other but
/// started after it. Timestamps are the client's (queue entry: `queued`; start: the first
/// `progress`, else the first part, which comes a fixed time after the start with the test
/// double), so `slack` absorbs their delivery jitter; a FIFO queue gives none, a LIFO or
/// unordered one thousands. Returns (violations, pairs compared, worst inversion in ms).
pub fn fifo_violations(records: &[JobRecord], slack: Duration) -> (usize, usize, f64) {
    let jobs: Vec<_> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Completed)
        .filter_map(|r| r.started.or(r.parts.first().map(|p| p.1)).map(|s| (r.queued_at(), s)))
        .collect();
    inversions(jobs, slack)
}

/// Over (queue entry, later event) pairs: how many pairs of jobs that entered more than `slack`
/// apart saw the later event in the opposite order, of how many pairs compared, and the worst
/// such inversion in ms. [`fifo_violations`] uses the start as the event; the topology load
/// test the completion.
pub fn inversions(mut jobs: Vec<(Instant, Instant)>, slack: Duration) -> (usize, usize, f64) {
    jobs.sort_by_key(|(q, _)| *q);
    let (mut violations, mut pairs, mut worst) = (0, 0, 0.0f64);
    for (i, (qa, ea)) in jobs.iter().enumerate() {
        for (qb, eb) in &jobs[i + 1..] {
            if *qb - *qa <= slack {
                continue;
            }
            pairs += 1;
            if eb < ea {
                violations += 1;
                worst = worst.max(ms(*eb, *ea));
            }
        }
    }
    (violations, pairs, worst)
}
