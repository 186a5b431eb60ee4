//! Failure handling of the Redis backend, in-process: dead and paused workers, the reaper,
//! poison jobs, dead gateways, a lost pub/sub connection, a restarted Redis.
//!
//! Tests on the shared Redis (`REDIS_URL`) use a unique prefix; tests that break Redis start
//! their own `redis-server` on a free port.

use img3d_testkit::redis_server;

#[path = "common/jobs.rs"]
mod jobs;

use std::collections::HashSet;
use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands};
use img3d_protocol::{FailureCode, PartName};
use img3d_queue::redis::{RedisJobQueue, RedisWorkQueue};
use img3d_queue::{JobQueue, QueueError, WorkQueue};
use jobs::*;
use redis_server::RedisServer;

/// A worker that stops beating (paused past its TTL) loses its job to another worker: the job
/// re-runs as attempt 2, the paused worker's token fires, its late publishes are refused, and
/// the client gets each part once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_worker_is_fenced_off() {
    let cfg = fast(shared_url());
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let a = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let mut handle = gateway.submit(job("x")).await.unwrap();
    let stale = pop(&a).await;
    stale.publish_part(PartName::PixelImages, part(PartName::PixelImages)).await.unwrap();
    drop(a); // its heartbeat stops; the lease object lives on, like a SIGSTOPped process

    let b = RedisWorkQueue::connect(cfg).await.unwrap();
    let fresh = pop(&b).await;
    assert_eq!(fresh.job().attempt, 2);
    bounded("the stale lease's token", stale.cancel_token().cancelled()).await;
    let late = stale.publish_part(PartName::XyzImages, part(PartName::XyzImages)).await;
    assert!(matches!(late, Err(QueueError::LeaseLost(_))), "{late:?}");
    publish_all(&*fresh).await;
    fresh.complete().await.unwrap();
    assert!(matches!(stale.complete().await, Err(QueueError::LeaseLost(_))));
    expect_complete(&mut handle).await;
}

/// A job whose worker dies `max_attempts` times is failed for good and its client told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_job_fails_after_max_attempts() {
    let mut cfg = fast(shared_url());
    cfg.max_attempts = 2;
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let mut handle = gateway.submit(job("poison")).await.unwrap();
    let mut dead_leases = Vec::new();
    for attempt in 1..=2 {
        let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
        let lease = pop(&worker).await;
        assert_eq!(lease.job().attempt, attempt);
        dead_leases.push(lease); // the worker "dies" holding it
    }
    let failure = expect_failed(&mut handle).await;
    assert_eq!(failure.code, FailureCode::Internal);
    assert!(failure.message.contains("interrupted 2 times"), "{}", failure.message);
    let worker = RedisWorkQueue::connect(cfg).await.unwrap();
    assert!(worker.next(Duration::from_millis(300)).await.unwrap().is_none(), "a failed job ran again");
}

/// Reapers in several processes at once return each job of a dead worker exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reapers_requeue_each_job_once() {
    let mut cfg = fast(shared_url());
    cfg.reap_interval = Duration::from_secs(3600); // only the explicit passes below
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..6 {
        handles.push(gateway.submit(job(&i.to_string())).await.unwrap());
    }
    // Started before the worker dies: each process also reaps once as it starts.
    let mut reapers = Vec::new();
    for _ in 0..4 {
        reapers.push(RedisJobQueue::connect(cfg.clone()).await.unwrap());
    }
    let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(pop(&worker).await);
    }
    drop(worker);
    tokio::time::sleep(cfg.heartbeat_ttl + Duration::from_millis(200)).await;
    let reports = futures::future::join_all(reapers.iter().map(|r| r.reap_now())).await;
    let requeued: u64 = reports.iter().map(|r| r.as_ref().unwrap().requeued).sum();
    let dead: u64 = reports.iter().map(|r| r.as_ref().unwrap().dead_workers).sum();
    assert_eq!((requeued, dead), (6, 1), "{reports:?}");
    let mut conn = admin(&cfg).await;
    let pending: Vec<String> = conn.lrange(format!("{}:pending", cfg.prefix), 0, -1).await.unwrap();
    assert_eq!(pending.iter().collect::<HashSet<_>>().len(), 6, "pending: {pending:?}");
    assert_eq!(pending.len(), 6);
}

/// When a gateway dies, its queued jobs are skipped and its running job's token fires (its
/// client-alive keys expire), so no GPU time goes to jobs nobody waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_gateway_jobs_are_dropped() {
    let cfg = fast(shared_url());
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let running = gateway.submit(job("running")).await.unwrap();
    let queued = gateway.submit(job("queued")).await.unwrap();
    let lease = pop(&worker).await;
    // The gateway process dies: nothing of it runs any more, not even the handles' drops.
    std::mem::forget((running, queued));
    drop(gateway);
    bounded("the running job's token", lease.cancel_token().cancelled()).await;
    tokio::time::sleep(cfg.client_ttl).await;
    assert!(worker.next(Duration::from_millis(300)).await.unwrap().is_none(), "an abandoned job started");
    let _ = lease.fail(img3d_queue::Failure::new(FailureCode::Cancelled, "client gone")).await;
}

/// A job's own client-alive key may outlive its gateway by up to a third of the TTL (it was set
/// at submit, after the gateway's last refresh); the gateway's heartbeat key does not. With the
/// heartbeat gone, a worker skips the queued job even though its own key is still there, and
/// the running job's token fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_dead_gateway_are_abandoned_together() {
    let mut cfg = fast(shared_url());
    cfg.client_ttl = Duration::from_secs(30); // the jobs' own keys stay for the whole test
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let running = gateway.submit(job("running")).await.unwrap();
    let lease = pop(&worker).await;
    let queued = gateway.submit(job("queued")).await.unwrap();
    // The gateway process dies and its heartbeat expires (now, rather than in 30 s).
    let heartbeat = format!("{}:gateway:{}:alive", cfg.prefix, gateway.gateway_id());
    std::mem::forget((running, queued));
    drop(gateway);
    let mut conn = admin(&cfg).await;
    let deleted: i64 = conn.del(&heartbeat).await.unwrap();
    assert_eq!(deleted, 1, "no heartbeat key {heartbeat}");
    bounded("the running job's token", lease.cancel_token().cancelled()).await;
    assert!(worker.next(Duration::from_millis(300)).await.unwrap().is_none(), "an abandoned job started");
    let _ = lease.fail(img3d_queue::Failure::new(FailureCode::Cancelled, "client gone")).await;
}

/// Notices published while the gateway's pub/sub connection is down are recovered from the
/// job's stored state as soon as it resubscribes (the periodic resync is off here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_missed_during_pubsub_outage_are_recovered() {
    let server = RedisServer::start(&[]);
    let mut cfg = fast(server.url(""));
    cfg.resync_interval = Duration::from_secs(3600);
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let mut handle = gateway.submit(job("x")).await.unwrap();
    let lease = pop(&worker).await;
    let mut admin = admin(&cfg).await;
    // Cut the subscription and keep it from coming back while the worker finishes.
    let () =
        redis::cmd("ACL").arg(&["SETUSER", "default", "-subscribe"]).query_async(&mut admin).await.unwrap();
    let _: i64 = redis::cmd("CLIENT").arg(&["KILL", "TYPE", "pubsub"]).query_async(&mut admin).await.unwrap();
    publish_all(&*lease).await;
    lease.complete().await.unwrap();
    let subscribers: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(format!("{}:gateway:{}:notices", cfg.prefix, gateway.gateway_id()))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(subscribers[0].1, 0, "the notices above must have gone to nobody");
    let () =
        redis::cmd("ACL").arg(&["SETUSER", "default", "+subscribe"]).query_async(&mut admin).await.unwrap();
    expect_complete(&mut handle).await;
}

/// A Redis restart (all state lost) fails the jobs in flight promptly with the retryable
/// `unavailable`, cancels their workers,
/// and new jobs then succeed with the same gateway and worker objects (pool and pub/sub
/// reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_fails_in_flight_jobs_then_recovers() {
    let mut server = RedisServer::start(&[]);
    let cfg = fast(server.url(""));
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let mut handle = gateway.submit(job("before")).await.unwrap();
    let lease = pop(&worker).await;
    server.restart();
    let failure = expect_failed(&mut handle).await;
    assert_eq!(failure.code, FailureCode::Unavailable, "Redis trouble is retryable: {failure:?}");
    bounded("the lost lease's token", lease.cancel_token().cancelled()).await;
    assert!(lease.publish_part(PartName::PixelImages, part(PartName::PixelImages)).await.is_err());

    let mut handle = bounded("a submit after the restart", async {
        loop {
            match gateway.submit(job("after")).await {
                Ok(h) => break h,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    let lease = bounded("a pop after the restart", async {
        loop {
            if let Ok(Some(lease)) = worker.next(Duration::from_secs(1)).await {
                break lease;
            }
        }
    })
    .await;
    publish_all(&*lease).await;
    lease.complete().await.unwrap();
    expect_complete(&mut handle).await;
}

/// A password-protected Redis works with the password in the URL and refuses a wrong one
/// with an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_in_url() {
    let server = RedisServer::start(&["--requirepass", "s3cret"]);
    let err = RedisJobQueue::connect(fast(server.url(":wrong@"))).await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("pass") || err.contains("auth"), "{err}");
    let cfg = fast(server.url(":s3cret@"));
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let worker = RedisWorkQueue::connect(cfg).await.unwrap();
    let mut handle = gateway.submit(job("x")).await.unwrap();
    let lease = pop(&worker).await;
    publish_all(&*lease).await;
    lease.complete().await.unwrap();
    expect_complete(&mut handle).await;
}
