//! The reaper: gives the jobs of dead workers back to the queue.
//!
//! Every gateway and worker process runs one. Each dead worker is reaped by one atomic script
//! that re-checks the heartbeat first, so concurrent reapers never double a job: the first
//! moves the jobs, the others find an empty list.

use std::sync::Arc;

use deadpool_redis::redis::{self, AsyncCommands};
use tokio_util::sync::CancellationToken;

use super::scripts::SCRIPTS;
use super::{backend, Shared};
use crate::QueueError;

/// What one reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Dead workers whose in-flight lists were emptied.
    pub dead_workers: u64,
    /// Jobs given back to the queue (attempt + 1 if they had started).
    pub requeued: u64,
    /// Jobs failed for good after `max_attempts` runs (their gateways were told).
    pub failed: u64,
    /// Jobs dropped: finished, cancelled, or abandoned by their client.
    pub dropped: u64,
}

/// One pass over the registered workers.
pub(crate) async fn reap_once(shared: &Shared) -> Result<ReapReport, QueueError> {
    let keys = &shared.keys;
    let mut conn = shared.conn().await?;
    let workers: Vec<String> = conn.smembers(keys.workers()).await.map_err(backend)?;
    if workers.is_empty() {
        return Ok(ReapReport::default());
    }
    let mut pipe = redis::pipe();
    for w in &workers {
        pipe.exists(keys.worker_alive(w));
    }
    let alive: Vec<bool> = pipe.query_async(&mut conn).await.map_err(backend)?;
    let mut report = ReapReport::default();
    for (worker, _) in workers.iter().zip(alive).filter(|(_, alive)| !alive) {
        let counts: Vec<i64> = SCRIPTS
            .reap
            .key(keys.workers())
            .key(keys.worker_alive(worker))
            .key(keys.inflight(worker))
            .key(keys.pending())
            .arg(worker)
            .arg(shared.cfg.max_attempts)
            .arg(keys.job_prefix())
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        if let [requeued, failed, dropped] = counts[..] {
            report.dead_workers += 1;
            report.requeued += requeued as u64;
            report.failed += failed as u64;
            report.dropped += dropped as u64;
            if requeued + failed > 0 {
                tracing::warn!(worker, requeued, failed, dropped, "reaped a dead worker's jobs");
            }
        }
    }
    Ok(report)
}

/// Runs [`reap_once`] every `reap_interval` until `stop`.
pub(crate) fn spawn(shared: Arc<Shared>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(shared.cfg.reap_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = reap_once(&shared).await {
                tracing::debug!(error = %e, "reaper pass failed");
            }
        }
    });
}
