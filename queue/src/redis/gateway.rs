//! The gateway side: [`RedisJobQueue`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncCommands};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::pump::{Pump, Wake};
use super::scripts::SCRIPTS;
use super::{backend, ms, process_id, reaper, stats, subscriber, ReapReport, RedisConfig, Shared, IDLE_TTL};
use crate::{JobHandle, JobId, JobQueue, NewJob, QueueError, QueueProbe, QueueStats, SubmitError};

/// Where notices for this gateway's jobs are delivered: job id -> its pump.
pub(crate) type Registry = Mutex<HashMap<JobId, mpsc::UnboundedSender<Wake>>>;

/// How long a job's state and image outlive its deadline (a worker finishing late still
/// finds the hash and is refused cleanly rather than by a missing key).
const GRACE: Duration = Duration::from_secs(60);

/// Events buffered per job between its pump and the session (a slow client slows the pump,
/// not the gateway: at most this many parts are held in memory per job).
const EVENT_BUFFER: usize = 2;

/// The gateway side of the Redis backend. One per gateway process: it owns the process's
/// pub/sub connection, the "client alive" refresher and a reaper, all stopped on drop.
pub struct RedisJobQueue {
    shared: Arc<Shared>,
    gateway_id: String,
    channel: String,
    registry: Arc<Registry>,
    _background: DropGuard,
}

impl std::fmt::Debug for RedisJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJobQueue").field("gateway_id", &self.gateway_id).finish()
    }
}

impl RedisJobQueue {
    /// Connects, subscribes this process's notice channel (before any job can be submitted,
    /// so no notice of ours is ever published to nobody), and starts the background tasks.
    pub async fn connect(cfg: RedisConfig) -> Result<Self, QueueError> {
        let shared = Shared::connect(cfg).await?;
        let gateway_id = process_id("gw");
        let channel = shared.keys.notices(&gateway_id);
        let registry: Arc<Registry> = Arc::default();
        let stop = CancellationToken::new();
        let mut ready = subscriber::spawn(shared.clone(), channel.clone(), registry.clone(), stop.clone());
        let subscribed = tokio::time::timeout(shared.cfg.connect_timeout * 2, ready.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok());
        if !subscribed {
            stop.cancel();
            return Err(QueueError::Backend("could not subscribe to the notice channel".into()));
        }
        let alive_key = shared.keys.gateway_alive(&gateway_id);
        if let Err(e) = beat(&shared, &alive_key).await {
            stop.cancel();
            return Err(e);
        }
        tokio::spawn(refresh_client_alive(shared.clone(), alive_key, registry.clone(), stop.clone()));
        reaper::spawn(shared.clone(), stop.clone());
        Ok(RedisJobQueue { shared, gateway_id, channel, registry, _background: stop.drop_guard() })
    }

    /// This process's id (unique per boot).
    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// Runs the reaper once now (it also runs periodically on its own).
    pub async fn reap_now(&self) -> Result<ReapReport, QueueError> {
        reaper::reap_once(&self.shared).await
    }

    /// Stores the image and pushes the job if there is room. `Ok(false)`: full.
    async fn enqueue(&self, id: JobId, job: &NewJob) -> Result<bool, QueueError> {
        let keys = &self.shared.keys;
        let cfg = &self.shared.cfg;
        let mut conn = self.shared.conn().await?;
        let image_ttl = ms(job.timeout + GRACE);
        let () = conn.pset_ex(keys.image(id), &job.image[..], image_ttl).await.map_err(backend)?;
        let reply: Vec<i64> = SCRIPTS
            .submit
            .key(keys.pending())
            .key(keys.job(id))
            .key(keys.image(id))
            .key(keys.client_alive(id))
            .key(keys.gateway_alive(&self.gateway_id))
            .arg(id.to_string())
            .arg(cfg.max_queue_len)
            .arg(ms(job.timeout))
            .arg(&self.channel)
            .arg(ms(cfg.client_ttl))
            .arg(ms(GRACE))
            .arg(ms(IDLE_TTL))
            .arg(serde_json::to_string(&job.options).expect("options serialise"))
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(reply.first() == Some(&1))
    }
}

#[async_trait]
impl JobQueue for RedisJobQueue {
    async fn submit(&self, job: NewJob) -> Result<JobHandle, SubmitError> {
        let id = JobId::new();
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        // Registered before the job exists, so its first notice finds its pump.
        self.registry.lock().unwrap().insert(id, wake_tx);
        let queued = self.enqueue(id, &job).await;
        match queued {
            Ok(true) => {}
            Ok(false) => {
                self.registry.lock().unwrap().remove(&id);
                return Err(SubmitError::Full { limit: self.shared.cfg.max_queue_len });
            }
            Err(e) => {
                self.registry.lock().unwrap().remove(&id);
                tracing::warn!(error = %e, "submit to Redis failed");
                return Err(SubmitError::Unavailable("the job queue is unreachable; retry later".into()));
            }
        }
        let (events_tx, events_rx) = mpsc::channel(EVENT_BUFFER);
        let abandon = CancellationToken::new();
        let pump =
            Pump::new(id, self.shared.clone(), self.registry.clone(), events_tx, wake_rx, abandon.clone());
        tokio::spawn(pump.run());
        let parts = job.options.parts().len();
        Ok(JobHandle::new(id, events_rx, parts, job.timeout, Box::new(move || abandon.cancel())))
    }
}

#[async_trait]
impl QueueProbe for RedisJobQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        stats::read(&self.shared).await
    }
}

/// Sets this gateway's heartbeat key for one client TTL.
async fn beat(shared: &Shared, alive_key: &str) -> Result<(), QueueError> {
    let mut conn = shared.conn().await?;
    conn.pset_ex(alive_key, 1, ms(shared.cfg.client_ttl)).await.map_err(backend)
}

/// Keeps this process's heartbeat key and the "client alive" key of each of its jobs fresh.
/// When the process dies they expire within the client TTL (the heartbeat, which every job of
/// the process depends on, at one moment) and workers drop or cancel the jobs.
async fn refresh_client_alive(
    shared: Arc<Shared>,
    alive_key: String,
    registry: Arc<Registry>,
    stop: CancellationToken,
) {
    let ttl = shared.cfg.client_ttl;
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = beat(&shared, &alive_key).await {
            tracing::warn!(error = %e, "gateway heartbeat failed");
        }
        let ids: Vec<JobId> = registry.lock().unwrap().keys().copied().collect();
        if ids.is_empty() {
            continue;
        }
        let Ok(mut conn) = shared.conn().await else { continue };
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.pexpire(shared.keys.client_alive(*id), ms(ttl) as i64).ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(error = %e, "refreshing client-alive keys failed");
                break;
            }
        }
    }
}
