//! What the Redis backend's integration tests share: fast settings under a fresh prefix, jobs
//! and parts, and bounded waits for the events a client sees.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use deadpool_redis::redis;
use img3d_protocol::{PartName, PARTS};
use img3d_queue::redis::{RedisConfig, RedisWorkQueue};
use img3d_queue::{Failure, JobEvent, JobHandle, Lease, NewJob, WorkQueue};

/// Longest wait for anything in these tests: every fault must resolve well within it.
pub const LIMIT: Duration = Duration::from_secs(10);

/// `fut`, or a panic naming `what` after [`LIMIT`].
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The shared Redis (`REDIS_URL`, default the local one).
pub fn shared_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Settings with timings short enough for tests: a worker is dead 400 ms after its last beat.
pub fn fast(url: String) -> RedisConfig {
    let mut cfg = RedisConfig::new(url, format!("img3d-test:{}", uuid::Uuid::new_v4().simple()));
    cfg.heartbeat_ttl = Duration::from_millis(400);
    cfg.client_ttl = Duration::from_millis(600);
    cfg.reap_interval = Duration::from_millis(100);
    cfg.cancel_poll = Duration::from_millis(50);
    cfg.resync_interval = Duration::from_millis(500);
    cfg.command_timeout = Duration::from_secs(3);
    cfg
}

/// A job whose image names `tag`.
pub fn job(tag: &str) -> NewJob {
    NewJob { image: Bytes::from(format!("image-{tag}")), timeout: Duration::from_secs(30) }
}

/// The bytes of part `name` (distinct per part, so order mistakes show).
pub fn part(name: PartName) -> Bytes {
    Bytes::from(format!("bytes of {name}").repeat(100))
}

/// The next job of `work`, or a panic.
pub async fn pop(work: &RedisWorkQueue) -> Box<dyn Lease> {
    bounded("a job", work.next(LIMIT)).await.expect("next").expect("no job came")
}

/// Publishes the three parts in order.
pub async fn publish_all(lease: &dyn Lease) {
    for name in PARTS {
        lease.publish_part(name, part(name)).await.expect("publish");
    }
}

/// Reads the whole event stream: Started, the three parts exactly once and in order, Completed.
pub async fn expect_complete(handle: &mut JobHandle) {
    let mut events = Vec::new();
    while let Some(e) = bounded("an event", handle.next_event()).await {
        events.push(e);
    }
    let parts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Part(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(events.first(), Some(&JobEvent::Started), "events: {events:?}");
    assert_eq!(events.last(), Some(&JobEvent::Completed), "events: {events:?}");
    assert_eq!(parts.len(), 3, "each part exactly once");
    for (p, name) in parts.iter().zip(PARTS) {
        assert_eq!(p.name, name);
        assert_eq!(p.bytes, part(name));
    }
}

/// Reads events until the failure, or panics on success.
pub async fn expect_failed(handle: &mut JobHandle) -> Failure {
    loop {
        match bounded("a failure", handle.next_event()).await {
            Some(JobEvent::Failed(f)) => return f,
            Some(JobEvent::Completed) | None => panic!("expected a failure"),
            Some(_) => {}
        }
    }
}

/// A plain connection for looking at (or breaking) what the backend stored.
pub async fn admin(cfg: &RedisConfig) -> redis::aio::MultiplexedConnection {
    redis::Client::open(cfg.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Every key left under the test's prefix.
pub async fn keys_under(cfg: &RedisConfig) -> Vec<String> {
    let mut conn = admin(cfg).await;
    redis::cmd("KEYS").arg(format!("{}:*", cfg.prefix)).query_async(&mut conn).await.unwrap()
}
