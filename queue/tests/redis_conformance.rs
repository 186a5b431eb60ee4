//! The queue contract, run against the Redis backend (a real Redis: `REDIS_URL`, default
//! 127.0.0.1:6379; each case gets its own key prefix, so cases run in parallel).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use img3d_queue::conformance::{Backend, Factory};
use img3d_queue::redis::{RedisConfig, RedisJobQueue, RedisWorkQueue};

struct RedisFactory;

#[async_trait]
impl Factory for RedisFactory {
    async fn make(&self, max_len: usize) -> Backend {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut cfg = RedisConfig::new(url, format!("img3d-test:{}", uuid::Uuid::new_v4().simple()));
        cfg.max_queue_len = max_len;
        // Short timings so cancellation and resync show up well inside the suite's limits.
        cfg.cancel_poll = Duration::from_millis(50);
        cfg.resync_interval = Duration::from_millis(500);
        let jobs = RedisJobQueue::connect(cfg.clone()).await.expect("gateway side (is Redis running?)");
        let work = RedisWorkQueue::connect(cfg).await.expect("worker side");
        Backend { jobs: Arc::new(jobs), work: Arc::new(work) }
    }
}

img3d_queue::conformance_tests!(redis, super::RedisFactory);
