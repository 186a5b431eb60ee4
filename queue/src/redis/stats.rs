//! Queue depth, oldest job's age and workers, read the same way by gateways (`/readyz`,
//! `/metrics`) and by queue workers (whose `/readyz` probes Redis too).

use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands};

use super::{backend, Shared};
use crate::{JobId, QueueError, QueueStats};

/// Reads the stats in two round trips: the pending list's length, its oldest id, the worker set
/// and Redis' clock; then each worker's heartbeat and in-flight count.
pub(crate) async fn read(shared: &Shared) -> Result<QueueStats, QueueError> {
    let keys = &shared.keys;
    let mut conn = shared.conn().await?;
    let (depth, oldest, workers, (secs, micros)): (u64, Option<String>, Vec<String>, (u64, u64)) =
        redis::pipe()
            .llen(keys.pending())
            .lindex(keys.pending(), -1)
            .smembers(keys.workers())
            .cmd("TIME")
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
    let now_ms = secs * 1000 + micros / 1000;
    let mut oldest_age = None;
    if let Some(id) = oldest.and_then(|s| s.parse().ok().map(JobId)) {
        let submitted: Option<u64> = conn.hget(keys.job(id), "submitted_ms").await.map_err(backend)?;
        oldest_age = submitted.map(|t| Duration::from_millis(now_ms.saturating_sub(t)));
    }
    let mut pipe = redis::pipe();
    for w in &workers {
        pipe.exists(keys.worker_alive(w)).llen(keys.inflight(w));
    }
    let per_worker: Vec<u64> = pipe.query_async(&mut conn).await.map_err(backend)?;
    let alive = per_worker.chunks(2).filter(|c| c[0] == 1).count() as u64;
    let running = per_worker.chunks(2).map(|c| c[1]).sum();
    Ok(QueueStats { depth, oldest_age, running, workers: Some(alive) })
}
