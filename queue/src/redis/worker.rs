//! The worker side: [`RedisWorkQueue`] (heartbeat, reliable pop, claim).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_redis::redis::{self, AsyncCommands, Direction};
use img3d_protocol::JobOptions;
use tokio::sync::{oneshot, OwnedRwLockReadGuard, RwLock};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::lease::RedisLease;
use super::scripts::SCRIPTS;
use super::{backend, ms, process_id, reaper, stats, ReapReport, RedisConfig, Shared, IDLE_TTL};
use crate::{Failure, Job, JobId, Lease, QueueError, QueueProbe, QueueStats, WorkQueue};

/// Longest single `BLMOVE` block; `next` loops for longer waits. Well under the command
/// timeout, so a blocked pop is never mistaken for a dead connection.
const MAX_BLOCK: Duration = Duration::from_secs(2);

/// The worker side of the Redis backend. One per worker process (one GPU): it owns the
/// process's worker id, heartbeat and a reaper, all stopped on drop.
pub struct RedisWorkQueue {
    inner: Arc<WorkerInner>,
    _background: DropGuard,
}

impl std::fmt::Debug for RedisWorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWorkQueue").field("worker_id", &self.inner.worker_id).finish()
    }
}

/// What the queue and its leases share.
pub(crate) struct WorkerInner {
    pub shared: Arc<Shared>,
    pub worker_id: String,
    pub inflight: String,
    /// Jobs this process holds a lease on (id -> attempt), from the claim until the lease's
    /// ending landed in Redis (an ending retried in the background still holds it). Every
    /// other id in our in-flight list is a stray the audit gives back.
    pub held: Mutex<HashMap<String, u32>>,
    /// Shared by each pop in flight (from its `BLMOVE` until its claim is held or put back);
    /// the audit runs only when it can take it alone, so it never gives back an id another
    /// caller of `next` is about to claim.
    pub pops: Arc<RwLock<()>>,
}

impl WorkerInner {
    /// Records a live lease on `job`.
    pub fn hold(&self, job: &Job) {
        self.held.lock().unwrap().insert(job.id.to_string(), job.attempt);
    }

    /// Forgets the lease on `job` (its ending landed, or the job is gone).
    pub fn let_go(&self, job: &Job) {
        let mut held = self.held.lock().unwrap();
        if held.get(&job.id.to_string()) == Some(&job.attempt) {
            held.remove(&job.id.to_string());
        }
    }
}

impl RedisWorkQueue {
    /// Connects, sends the first heartbeat (so the worker is alive before it can hold a job)
    /// and starts the heartbeat and reaper tasks.
    pub async fn connect(cfg: RedisConfig) -> Result<Self, QueueError> {
        let shared = Shared::connect(cfg).await?;
        let worker_id = process_id("wk");
        let inflight = shared.keys.inflight(&worker_id);
        let inner = Arc::new(WorkerInner {
            shared: shared.clone(),
            worker_id,
            inflight,
            held: Mutex::default(),
            pops: Arc::default(),
        });
        beat(&inner).await?;
        let stop = CancellationToken::new();
        tokio::spawn(heartbeat(inner.clone(), stop.clone()));
        reaper::spawn(shared, stop.clone());
        Ok(RedisWorkQueue { inner, _background: stop.drop_guard() })
    }

    /// This process's worker id (unique per boot).
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Runs the reaper once now (it also runs periodically on its own).
    pub async fn reap_now(&self) -> Result<ReapReport, QueueError> {
        reaper::reap_once(&self.inner.shared).await
    }
}

#[async_trait]
impl WorkQueue for RedisWorkQueue {
    async fn next(&self, wait: Duration) -> Result<Option<Box<dyn Lease>>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if let Ok(_alone) = self.inner.pops.clone().try_write_owned() {
                audit(&self.inner).await?;
            }
            // Pop and claim in a task of their own: if this future is dropped while BLMOVE
            // blocks, the task still sees what BLMOVE moved and puts it back instead of
            // stranding it in our in-flight list.
            let (tx, rx) = oneshot::channel();
            let popping = self.inner.pops.clone().read_owned().await;
            tokio::spawn(pop_once(self.inner.clone(), left.min(MAX_BLOCK), tx, popping));
            match rx.await {
                Ok(Ok(Some(lease))) => return Ok(Some(Box::new(lease))),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(QueueError::Backend("the pop task ended without an answer".into())),
            }
        }
    }
}

/// A queue worker's `/readyz` and `/metrics` read the shared queue through its own connection.
#[async_trait]
impl QueueProbe for RedisWorkQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        stats::read(&self.inner.shared).await
    }
}

type PopReply = Result<Option<RedisLease>, QueueError>;

/// One `BLMOVE` and, if it moved a job, its claim; answers on `tx`. `popping` is released
/// before the answer, so the caller's next audit finds this pop over.
async fn pop_once(
    inner: Arc<WorkerInner>,
    block: Duration,
    tx: oneshot::Sender<PopReply>,
    popping: OwnedRwLockReadGuard<()>,
) {
    let reply = pop_and_claim(&inner, block, &tx).await;
    drop(popping);
    if let Err(Ok(Some(lease))) = tx.send(reply) {
        // Nobody waits for it any more (the worker is stopping): give it back.
        let _ = Box::new(lease).requeue().await;
    }
}

async fn pop_and_claim(
    inner: &Arc<WorkerInner>,
    block: Duration,
    tx: &oneshot::Sender<PopReply>,
) -> PopReply {
    let keys = &inner.shared.keys;
    let mut conn = inner.shared.conn().await?;
    let secs = block.as_secs_f64().max(0.01);
    let id: Option<String> = conn
        .blmove(keys.pending(), &inner.inflight, Direction::Right, Direction::Left, secs)
        .await
        .map_err(backend)?;
    drop(conn);
    let Some(id) = id else { return Ok(None) };
    if tx.is_closed() {
        put_back(inner, &id).await;
        return Ok(None);
    }
    claim(inner, &id).await
}

/// Reconciles our in-flight list with the leases we hold: every id without a live lease
/// (a BLMOVE or claim whose reply was lost, a failed put-back, an ending that never landed) is
/// requeued, failed or dropped by `audit.lua`, fenced by the attempt of our lease, if any. Runs
/// before each pop; the list is empty or holds the job being ended, so it costs one `LRANGE`.
pub(crate) async fn audit(inner: &WorkerInner) -> Result<(), QueueError> {
    let keys = &inner.shared.keys;
    let mut conn = inner.shared.conn().await?;
    let ids: Vec<String> = conn.lrange(&inner.inflight, 0, -1).await.map_err(backend)?;
    for raw in ids {
        let Ok(uuid) = raw.parse() else {
            tracing::error!(id = raw, "dropping a malformed job id from the in-flight list");
            let _: i64 = conn.lrem(&inner.inflight, 0, &raw).await.map_err(backend)?;
            continue;
        };
        let id = JobId(uuid);
        let attempt = inner.held.lock().unwrap().get(&raw).map(u32::to_string).unwrap_or_default();
        let outcome: String = SCRIPTS
            .audit
            .key(&inner.inflight)
            .key(keys.pending())
            .key(keys.job(id))
            .key(keys.client_alive(id))
            .arg(&raw)
            .arg(&inner.worker_id)
            .arg(attempt)
            .arg(inner.shared.cfg.max_attempts)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        if outcome != "live" && outcome != "gone" {
            tracing::warn!(
                job = raw,
                outcome,
                "a job stranded in this worker's in-flight list was given back"
            );
        }
    }
    Ok(())
}

/// Returns an unclaimed job from our in-flight list to the front of the queue.
async fn put_back(inner: &WorkerInner, id: &str) {
    let back = async {
        let mut conn = inner.shared.conn().await?;
        redis::pipe()
            .atomic()
            .lrem(&inner.inflight, 0, id)
            .ignore()
            .rpush(inner.shared.keys.pending(), id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(backend)
    };
    if let Err(e) = back.await {
        tracing::warn!(job = id, error = %e, "putting back an unclaimed job failed; the next audit will");
    }
}

/// Claims a job we moved into our in-flight list; `None` when it was skipped.
async fn claim(inner: &Arc<WorkerInner>, raw_id: &str) -> Result<Option<RedisLease>, QueueError> {
    let keys = &inner.shared.keys;
    let mut conn = inner.shared.conn().await?;
    let Ok(uuid) = raw_id.parse() else {
        tracing::error!(id = raw_id, "dropping a malformed job id from the queue");
        let _: i64 = conn.lrem(&inner.inflight, 0, raw_id).await.map_err(backend)?;
        return Ok(None);
    };
    let id = JobId(uuid);
    // The one key claim.lua cannot be told in advance: the job's gateway heartbeat, named in
    // its hash at submit and never changed, so reading it first is safe.
    let gateway_alive: Option<String> = conn.hget(keys.job(id), "gateway_alive").await.map_err(backend)?;
    let mut claim = SCRIPTS.claim.key(keys.job(id));
    claim.key(&inner.inflight).key(keys.client_alive(id)).key(keys.image(id));
    if let Some(gateway_alive) = &gateway_alive {
        claim.key(gateway_alive);
    }
    let reply: Vec<String> =
        claim.arg(raw_id).arg(&inner.worker_id).invoke_async(&mut conn).await.map_err(backend)?;
    let (local_now, wall_now) = (Instant::now(), SystemTime::now()); // as close to TIME as we get
    match reply.first().map(String::as_str) {
        Some("ok") if reply.len() == 8 => {}
        Some("skip") => {
            tracing::info!(job = %id, reason = reply.get(1).map(String::as_str), "skipped a job nobody waits for");
            return Ok(None);
        }
        _ => return Ok(None), // 'gone': a reaper took it back meanwhile
    }
    let num = |i: usize| reply[i].parse::<u64>().map_err(|_| QueueError::Backend("bad claim reply".into()));
    let (attempt, submitted_ms, deadline_ms, now_ms) = (num(1)? as u32, num(2)?, num(3)?, num(4)?);
    let image: Option<Bytes> = conn.get(keys.image(id)).await.map_err(backend)?;
    drop(conn);
    // Written by our own gateways; unreadable options (a gateway of another version) fail the
    // job below rather than run it with options the client did not ask for.
    let options = serde_json::from_str::<JobOptions>(&reply[7]).map_err(|e| e.to_string());
    // One clock: the job's times are Redis' (set by `submit.lua` from `TIME`, like every lease
    // TTL), read against Redis' `TIME` in the same claim, and mapped onto this machine's clocks
    // as offsets from now. A worker whose wall clock is off by minutes still runs the job for
    // exactly the time its client has left.
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    let waited = Duration::from_millis(now_ms.saturating_sub(submitted_ms));
    let job = Job {
        id,
        image: image.unwrap_or_default(),
        options: options.clone().unwrap_or_default(),
        submitted_at: wall_now.checked_sub(waited).unwrap_or(UNIX_EPOCH),
        deadline: wall_now + left,
        attempt,
    };
    let local_deadline = local_now + left;
    let gateway_alive = reply[6].clone();
    let lease = RedisLease::start(inner.clone(), job, gateway_alive, local_deadline);
    if let Err(e) = options {
        tracing::error!(job = %id, error = %e, "unreadable job options in the queue");
        let failure =
            Failure::new(img3d_protocol::FailureCode::Internal, "the job's options could not be read; retry");
        let _ = Box::new(lease).fail(failure).await;
        return Ok(None);
    }
    if lease.job().image.is_empty() {
        let failure = Failure::new(
            img3d_protocol::FailureCode::Internal,
            "the input image expired in the queue; retry",
        );
        let _ = Box::new(lease).fail(failure).await;
        return Ok(None);
    }
    Ok(Some(lease))
}

/// One heartbeat: the alive key with its TTL, and membership of the workers set (re-added
/// after a reaper removed us while we were paused). The set and our in-flight list get the
/// idle TTL, so a deployment that stopped for good leaves no keys behind.
async fn beat(inner: &WorkerInner) -> Result<(), QueueError> {
    let keys = &inner.shared.keys;
    let idle = ms(IDLE_TTL) as i64;
    let mut conn = inner.shared.conn().await?;
    redis::pipe()
        .pset_ex(keys.worker_alive(&inner.worker_id), 1, ms(inner.shared.cfg.heartbeat_ttl))
        .ignore()
        .sadd(keys.workers(), &inner.worker_id)
        .ignore()
        .pexpire(keys.workers(), idle)
        .ignore()
        .pexpire(&inner.inflight, idle)
        .ignore()
        .query_async::<()>(&mut conn)
        .await
        .map_err(backend)
}

async fn heartbeat(inner: Arc<WorkerInner>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(inner.shared.cfg.heartbeat_ttl / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = beat(&inner).await {
            tracing::warn!(worker = %inner.worker_id, error = %e, "heartbeat failed");
        }
    }
}
