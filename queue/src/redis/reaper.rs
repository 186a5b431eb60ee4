//! The reaper: gives the jobs of dead workers back to the queue.
//!
//! Every gateway and worker process runs one. Each job of a dead worker is given back by one
//! atomic script that re-checks the heartbeat and takes the id out of the worker's list first,
//! so concurrent reapers never double a job: the first moves it, the others find it gone. The
//! worker leaves the workers set only once its list is empty.

use std::sync::Arc;

use deadpool_redis::redis::{self, AsyncCommands};
use tokio_util::sync::CancellationToken;

use super::scripts::SCRIPTS;
use super::{backend, Shared};
use crate::{JobId, QueueError};

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
        let (alive_key, inflight) = (keys.worker_alive(worker), keys.inflight(worker));
        // Newest first: each one goes to the front, so the oldest ends up next in line.
        let ids: Vec<String> = conn.lrange(&inflight, 0, -1).await.map_err(backend)?;
        let (mut requeued, mut failed, mut dropped) = (0, 0, 0);
        for raw in ids {
            let Ok(uuid) = raw.parse() else {
                tracing::error!(id = raw, "dropping a malformed job id from a dead worker's list");
                let _: i64 = conn.lrem(&inflight, 0, &raw).await.map_err(backend)?;
                continue;
            };
            let id = JobId(uuid);
            let outcome: String = SCRIPTS
                .reap
                .key(&alive_key)
                .key(&inflight)
                .key(keys.pending())
                .key(keys.job(id))
                .key(keys.client_alive(id))
                .arg(&raw)
                .arg(shared.cfg.max_attempts)
                .invoke_async(&mut conn)
                .await
                .map_err(backend)?;
            match outcome.as_str() {
                "requeued" => requeued += 1,
                "failed" => failed += 1,
                "dropped" => dropped += 1,
                "alive" => break, // it came back: its jobs are its own again
                _ => {}           // 'gone': another reaper got to it
            }
        }
        report.requeued += requeued;
        report.failed += failed;
        report.dropped += dropped;
        if requeued + failed > 0 {
            tracing::warn!(worker, requeued, failed, dropped, "reaped a dead worker's jobs");
        }
        let forgotten: i64 = SCRIPTS
            .forget_worker
            .key(keys.workers())
            .key(&alive_key)
            .key(&inflight)
            .arg(worker)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        report.dead_workers += forgotten as u64;
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
