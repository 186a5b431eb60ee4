//! The Redis backend: gateways and GPU workers on different machines form one service.
//!
//! - **Reliable pop.** Workers `BLMOVE` job ids from `P:pending` into their own in-flight
//!   list and keep a heartbeat key with a short TTL. A reaper (run by every
//!   gateway and worker process; atomic, so safely concurrent) returns the in-flight jobs of a
//!   worker whose heartbeat expired to the front of the queue with `attempt + 1`, and fails a
//!   job for good after `max_attempts`. Every publish by a worker is fenced by its lease
//!   (worker id + attempt, checked inside the script that publishes), so a worker that was
//!   only paused cannot deliver a result twice. A live worker audits its own in-flight list
//!   before each pop (`audit.lua`): an id it holds no lease on (a lost `BLMOVE` or claim
//!   reply) goes back the way a dead worker's would; an ending it could not write is retried
//!   in the background until it lands (`lease.rs`).
//! - **Claim-check.** Image and parts live under their own keys with a TTL; pub/sub carries
//!   only small notices (`notice`) to one channel per gateway process, read by one
//!   dedicated connection (`subscriber`) and fanned out to the jobs in-process.
//! - **Ordered, exactly-once parts.** Parts carry their protocol position; a per-job pump in
//!   the gateway (`pump`) forwards strictly in order, drops a retry's duplicates, and
//!   re-reads the job's stored state after a pub/sub reconnect (and periodically), so a missed
//!   notice delays a part, never loses it.
//! - **Nobody waits, no GPU spent.** Each job has a "client alive" key refreshed by its
//!   gateway, and each gateway process a heartbeat key; workers skip a job when either is
//!   gone and cancel a running lease at the next check. Every job of a dead gateway depends on
//!   the one heartbeat, so they are all abandoned at the same moment: a worker that stops the
//!   running one never starts one queued behind it. Deadlines are enforced by the gateway's
//!   handle and by the worker's lease.
//! - **Bounded.** `submit` checks the bound and pushes in one script.
//!
//! Key names: [`Keys`]. Lua scripts: `lua/*.lua`. Redis Cluster is not supported (the
//! scripts touch a job's keys and the shared lists together). One server or a Sentinel-watched
//! master: `connect`.

mod connect;
mod gateway;
mod keys;
mod lease;
mod notice;
mod pump;
mod reaper;
mod scripts;
mod stats;
mod subscriber;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, AsyncConnectionConfig};
use deadpool_redis::{Runtime, Timeouts};

pub use gateway::RedisJobQueue;
pub use keys::Keys;
pub use reaper::ReapReport;
pub use worker::RedisWorkQueue;

use crate::QueueError;

/// Settings of the Redis backend. [`RedisConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]` or `rediss://...` for TLS; or the master of a
    /// Sentinel group, `redis+sentinel://[:password@]host:port[,host:port...]/master[/db]`
    /// (`rediss+sentinel://` for TLS), looked up again for every new connection.
    pub url: String,
    /// Prefix of every key and channel (several deployments can share one Redis).
    pub prefix: String,
    /// Most jobs waiting at once across all gateways; past it `submit` answers busy at once.
    pub max_queue_len: usize,
    /// A worker whose heartbeat is this old is presumed dead and its jobs are re-run.
    /// Short enough that a crash costs seconds; long enough to ride out a GC-free Rust
    /// process's scheduling hiccups on a loaded box (the beat is sent every TTL / 4).
    pub heartbeat_ttl: Duration,
    /// A job whose gateway has not refreshed its "client alive" key for this long is
    /// abandoned (the gateway died); refreshed every TTL / 3.
    pub client_ttl: Duration,
    /// Runs of a job before it is failed for good (a job that kills its worker must not kill
    /// them all).
    pub max_attempts: u32,
    /// Lifetime of stored result parts (the gateway deletes them as soon as they are sent).
    pub payload_ttl: Duration,
    /// How often a worker checks whether its running job was cancelled (the delay between a
    /// client leaving and its GPU work stopping, at most one pipeline step more).
    pub cancel_poll: Duration,
    /// How often a gateway re-reads the state of its jobs even without a notice (belt and
    /// braces: a notice lost without a detected disconnect costs at most this).
    pub resync_interval: Duration,
    /// How often the reaper looks for dead workers (in every process).
    pub reap_interval: Duration,
    /// Limit on any single Redis command (a 40 MB part on a slow link needs seconds).
    pub command_timeout: Duration,
    /// Limit on opening a connection.
    pub connect_timeout: Duration,
    /// Pooled command connections per process.
    pub pool_size: usize,
}

impl RedisConfig {
    /// The defaults for `url` and `prefix`.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: prefix.into(),
            max_queue_len: crate::DEFAULT_MAX_QUEUE,
            heartbeat_ttl: Duration::from_secs(10),
            client_ttl: Duration::from_secs(10),
            max_attempts: 3,
            payload_ttl: Duration::from_secs(600),
            cancel_poll: Duration::from_millis(250),
            resync_interval: Duration::from_secs(2),
            reap_interval: Duration::from_secs(5),
            command_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            pool_size: 16,
        }
    }
}

/// TTL of the shared structures (pending list, workers set, in-flight lists), refreshed by
/// every push and heartbeat: far longer than any job lives, so it only ever removes the keys
/// of a deployment (or a test run) that stopped for good.
pub(crate) const IDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// What every gateway and worker process shares: the pool, the target (for the pub/sub
/// connection), the key names, the settings.
pub(crate) struct Shared {
    pub pool: connect::Pool,
    pub target: Arc<connect::Target>,
    pub keys: Keys,
    pub cfg: RedisConfig,
}

impl Shared {
    /// Opens the pool and checks that Redis answers (a bad URL or password fails here, at
    /// start-up, with a clear error).
    pub async fn connect(cfg: RedisConfig) -> Result<Arc<Self>, QueueError> {
        // rustls needs a process-wide crypto provider for `rediss://`; another part of the
        // process may have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if cfg.prefix.contains(['{', '}']) {
            return Err(QueueError::BadPrefix(cfg.prefix));
        }
        let conn_cfg = AsyncConnectionConfig::new()
            .set_response_timeout(Some(cfg.command_timeout))
            .set_connection_timeout(Some(cfg.connect_timeout));
        let target = connect::Target::parse(&cfg.url, cfg.connect_timeout)
            .map(Arc::new)
            .map_err(QueueError::BadUrl)?;
        let manager = connect::Manager::new(target.clone(), conn_cfg);
        let pool = connect::Pool::builder(manager)
            .max_size(cfg.pool_size)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(cfg.command_timeout),
                create: Some(cfg.connect_timeout),
                recycle: Some(cfg.connect_timeout),
            })
            .build()
            .map_err(|e| QueueError::Backend(format!("Redis pool: {e}")))?;
        let shared = Arc::new(Shared { pool, target, keys: Keys::new(&cfg.prefix), cfg });
        let mut conn = shared.conn().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(backend)?;
        Ok(shared)
    }

    /// A pooled command connection.
    pub async fn conn(&self) -> Result<connect::Conn, QueueError> {
        Ok(self.pool.get().await?)
    }
}

/// Maps a Redis error into the queue's error type, keeping it.
pub(crate) fn backend(e: redis::RedisError) -> QueueError {
    QueueError::Redis(e)
}

/// A process id unique per boot: host, pid and a random part (a restarted worker with the
/// same pid on the same host is still a new worker).
pub(crate) fn process_id(kind: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{kind}-{host}-{}-{}", std::process::id(), &random[..8])
}

/// Milliseconds as Redis arguments want them.
pub(crate) fn ms(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}
