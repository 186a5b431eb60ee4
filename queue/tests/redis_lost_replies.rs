//! Lost replies between a worker and Redis: a proxy ([`proxy`]) in front of the real Redis
//! loses the reply of a chosen command after Redis executed it, or keeps a command from
//! getting through for a while. In each case the client gets its result within seconds (not
//! at its deadline) and the worker's in-flight list ends empty: the worker's audit before each
//! pop gives back what a lost reply stranded, and an ending that could not be written is
//! retried in the background until it lands.

#[path = "common/jobs.rs"]
mod jobs;
#[path = "common/proxy.rs"]
mod proxy;

use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands};
use img3d_queue::redis::{RedisConfig, RedisJobQueue, RedisWorkQueue};
use img3d_queue::{JobQueue, QueueError, WorkQueue};
use jobs::*;
use proxy::Proxy;

/// The SHA1 `EVALSHA` sends for a script of the backend.
fn sha(lua: &str) -> Vec<u8> {
    redis::Script::new(lua).get_hash().as_bytes().to_vec()
}

/// A gateway straight on the shared Redis and a worker behind a proxy to it.
async fn topology() -> (RedisConfig, RedisJobQueue, RedisWorkQueue, Proxy) {
    let cfg = fast(shared_url());
    let port: u16 =
        cfg.url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).unwrap_or(6379);
    let proxy = Proxy::start(port).await;
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let mut worker_cfg = cfg.clone();
    worker_cfg.url = proxy.url();
    let worker = RedisWorkQueue::connect(worker_cfg).await.unwrap();
    (cfg, gateway, worker, proxy)
}

async fn inflight(cfg: &RedisConfig, work: &RedisWorkQueue) -> i64 {
    let key = format!("{}:worker:{}:inflight", cfg.prefix, work.worker_id());
    admin(cfg).await.llen(key).await.unwrap()
}

/// The next lease, past the errors the lost replies cause.
async fn pop_after_errors(work: &RedisWorkQueue) -> (Box<dyn img3d_queue::Lease>, usize) {
    bounded("a job after a lost reply", async {
        let mut errors = 0;
        loop {
            match work.next(LIMIT).await {
                Ok(Some(lease)) => return (lease, errors),
                Ok(None) => {}
                Err(_) => errors += 1,
            }
        }
    })
    .await
}

/// `BLMOVE` moved the job into the worker's in-flight list but its reply was lost: the next
/// pop's audit puts the unclaimed job back, unchanged (it never ran), and it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_blmove_reply_is_given_back() {
    let (cfg, gateway, worker, proxy) = topology().await;
    proxy.drop_reply_once("BLMOVE");
    let mut handle = gateway.submit(job("x")).await.unwrap();
    let (lease, errors) = pop_after_errors(&worker).await;
    assert_eq!((proxy.hits(), errors), (1, 1), "the reply must have been lost once");
    assert_eq!(lease.job().attempt, 1, "an unclaimed job never ran");
    publish_all(&*lease).await;
    lease.complete().await.unwrap();
    expect_complete(&mut handle).await;
    assert_eq!(inflight(&cfg, &worker).await, 0);
}

/// The claim ran (the job is `running` under this worker) but its reply was lost, so the
/// worker holds no lease: the audit requeues it as attempt 2 and the client gets its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_claim_reply_is_given_back() {
    let (cfg, gateway, worker, proxy) = topology().await;
    proxy.drop_reply_once(sha(include_str!("../src/redis/lua/claim.lua")));
    let mut handle = gateway.submit(job("x")).await.unwrap();
    let (lease, errors) = pop_after_errors(&worker).await;
    assert_eq!((proxy.hits(), errors), (1, 1), "the reply must have been lost once");
    assert_eq!(lease.job().attempt, 2, "the stranded claim counts as a run");
    publish_all(&*lease).await;
    lease.complete().await.unwrap();
    expect_complete(&mut handle).await;
    assert_eq!(inflight(&cfg, &worker).await, 0);
}

/// `finish.lua` ran but its reply was lost: the job is settled, the client has its result,
/// and the retried ending finds it so instead of doing it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_finish_reply_still_ends_the_job() {
    let (cfg, gateway, worker, proxy) = topology().await;
    let mut handle = gateway.submit(job("x")).await.unwrap();
    let lease = pop(&worker).await;
    publish_all(&*lease).await;
    proxy.drop_reply_once(sha(include_str!("../src/redis/lua/finish.lua")));
    let ended = lease.complete().await;
    assert!(matches!(ended, Err(QueueError::Backend(_))), "{ended:?}");
    assert_eq!(proxy.hits(), 1);
    expect_complete(&mut handle).await;
    bounded("the in-flight list to empty", async {
        while inflight(&cfg, &worker).await != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Redis cannot be reached for `finish.lua` for a second and a half (longer than the three
/// quick tries that used to give up): the ending is retried in the background until it lands,
/// and the client gets `completed` seconds later, not at its deadline. Meanwhile the worker
/// takes the next job and its audit leaves the held one alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_that_cannot_be_written_lands_later() {
    let (cfg, gateway, worker, proxy) = topology().await;
    let mut first = gateway.submit(job("first")).await.unwrap();
    let lease = pop(&worker).await;
    publish_all(&*lease).await;
    proxy.refuse(sha(include_str!("../src/redis/lua/finish.lua")));
    let ended = lease.complete().await;
    assert!(matches!(ended, Err(QueueError::Backend(_))), "{ended:?}");
    let mut second = gateway.submit(job("second")).await.unwrap();
    let next = pop(&worker).await; // runs the audit while the first ending is still held
    assert_eq!(next.job().attempt, 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(proxy.hits() >= 4, "the ending must have been tried and refused repeatedly: {}", proxy.hits());
    proxy.heal();
    expect_complete(&mut first).await;
    publish_all(&*next).await;
    next.complete().await.unwrap();
    expect_complete(&mut second).await;
    assert_eq!(inflight(&cfg, &worker).await, 0);
}
