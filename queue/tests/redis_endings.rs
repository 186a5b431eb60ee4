//! How a Redis lease ends when its job was cancelled, taken back or hit by Redis trouble: the
//! job leaves the worker's in-flight list on every path, and each cause reads as its own code
//! (`cancelled` only when the job was).

#[path = "common/jobs.rs"]
mod jobs;
use img3d_testkit::redis_server;

use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands};
use img3d_protocol::{FailureCode, PartName};
use img3d_queue::redis::{RedisConfig, RedisJobQueue, RedisWorkQueue};
use img3d_queue::{Failure, JobQueue, QueueError, QueueProbe, WorkQueue};
use jobs::*;
use redis_server::RedisServer;

/// Length of worker `work`'s in-flight list.
async fn inflight(cfg: &RedisConfig, work: &RedisWorkQueue) -> i64 {
    let key = format!("{}:worker:{}:inflight", cfg.prefix, work.worker_id());
    admin(cfg).await.llen(key).await.unwrap()
}

/// A client leaving mid-job (its gateway releases the job's keys) leaves nothing behind in the
/// worker's in-flight list, whichever way the worker then ends the lease, and the queue stops
/// counting the job as running. Before, `finish.lua`/`requeue.lua` returned before their
/// `LREM` once the hash was gone, and every cancel added one stranded entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_job_leaves_no_inflight_entry() {
    let cfg = fast(shared_url());
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    for ending in ["fail", "requeue", "complete"] {
        let handle = gateway.submit(job(ending)).await.unwrap();
        let lease = pop(&worker).await;
        lease.publish_part(PartName::PixelImages, part(PartName::PixelImages)).await.unwrap();
        assert_eq!(inflight(&cfg, &worker).await, 1);
        assert_eq!(gateway.stats().await.unwrap().running, 1);
        drop(handle); // the client leaves
        bounded("the lease's token", lease.cancel_token().cancelled()).await;
        let refused = lease.publish_part(PartName::XyzImages, part(PartName::XyzImages)).await;
        assert!(matches!(refused, Err(QueueError::Cancelled(_))), "{refused:?}");
        let ended = match ending {
            "fail" => lease.fail(Failure::new(FailureCode::Cancelled, "the job was cancelled")).await,
            "requeue" => lease.requeue().await,
            _ => lease.complete().await,
        };
        assert!(matches!(ended, Err(QueueError::Cancelled(_))), "{ending}: {ended:?}");
        assert_eq!(inflight(&cfg, &worker).await, 0, "after {ending}");
        assert_eq!(gateway.stats().await.unwrap().running, 0, "after {ending}");
    }
}

/// Redis refusing a part's bytes is queue trouble, not a cancellation: the publish fails with
/// a backend error whose code is the retryable `unavailable`, and a worker that ends the job
/// with that code gets it to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_trouble_while_publishing_is_unavailable() {
    let server = RedisServer::start(&[]);
    let cfg = fast(server.url(""));
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let mut handle = gateway.submit(job("x")).await.unwrap();
    let lease = pop(&worker).await;
    // Part bytes are written with PSETEX; everything else the backend sends still works.
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "-psetex"])
        .query_async(&mut admin(&cfg).await)
        .await
        .unwrap();
    let refused = lease.publish_part(PartName::PixelImages, part(PartName::PixelImages)).await.unwrap_err();
    // The Redis error is kept as Redis reported it, not flattened into a string.
    assert!(matches!(refused, QueueError::Redis(_)), "{refused:?}");
    assert_eq!(refused.code(), FailureCode::Unavailable);
    assert!(!lease.cancel_token().is_cancelled(), "nobody cancelled the job");
    lease.fail(Failure::new(refused.code(), refused.client_message())).await.unwrap();
    let failure = expect_failed(&mut handle).await;
    assert_eq!(failure.code, FailureCode::Unavailable, "{failure:?}");
    assert_eq!(inflight(&cfg, &worker).await, 0);
}

/// A lease taken back (its worker paused past the heartbeat TTL; the job runs again elsewhere)
/// is lost, not cancelled: its refused publish says so and carries no `cancelled` code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_taken_back_is_lost_not_cancelled() {
    let cfg = fast(shared_url());
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let a = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let mut handle = gateway.submit(job("x")).await.unwrap();
    let stale = pop(&a).await;
    drop(a); // its heartbeat stops; the lease lives on, like a SIGSTOPped process
    let b = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let fresh = pop(&b).await;
    let refused = stale.publish_part(PartName::PixelImages, part(PartName::PixelImages)).await.unwrap_err();
    assert!(matches!(refused, QueueError::LeaseLost(_)), "{refused:?}");
    assert_eq!(refused.code(), FailureCode::Internal);
    let ended = stale.fail(Failure::new(refused.code(), refused.client_message())).await;
    assert!(matches!(ended, Err(QueueError::LeaseLost(_))), "{ended:?}");
    publish_all(&*fresh).await;
    fresh.complete().await.unwrap();
    expect_complete(&mut handle).await;
    assert_eq!(inflight(&cfg, &b).await, 0);
}

/// A job whose deadline passed while it waited fails with `timeout`, not `cancelled`, when a
/// worker pops it: the stored outcome (which the gateway forwards) says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_while_queued_is_a_timeout() {
    let cfg = fast(shared_url());
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let mut short = job("short");
    short.timeout = Duration::from_millis(200);
    let mut handle = gateway.submit(short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    assert!(worker.next(Duration::from_millis(300)).await.unwrap().is_none(), "an expired job ran");
    // The gateway forwards the stored outcome, then releases the job's keys.
    let hash = img3d_queue::redis::Keys::new(&cfg.prefix).job(handle.id());
    let mut conn = admin(&cfg).await;
    bounded("the gateway to release the job", async {
        while conn.exists::<_, bool>(&hash).await.unwrap() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let failure = expect_failed(&mut handle).await;
    assert_eq!(failure.code, FailureCode::Timeout);
    assert!(failure.message.contains("waited past its deadline"), "{failure:?}");
    assert_eq!(inflight(&cfg, &worker).await, 0);
}

/// Every way a job ends leaves no key of it behind once its client has the outcome (what the
/// scaleout bench reports as "0 job keys left"): completed, failed, cancelled mid-job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_jobs_leave_no_job_key() {
    let cfg = fast(shared_url());
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();

    let mut completed = gateway.submit(job("completed")).await.unwrap();
    let lease = pop(&worker).await;
    publish_all(&*lease).await;
    lease.complete().await.unwrap();
    expect_complete(&mut completed).await;

    let mut failed = gateway.submit(job("failed")).await.unwrap();
    let lease = pop(&worker).await;
    lease.publish_part(PartName::PixelImages, part(PartName::PixelImages)).await.unwrap();
    lease.fail(Failure::new(FailureCode::InvalidImage, "not an image")).await.unwrap();
    assert_eq!(expect_failed(&mut failed).await.code, FailureCode::InvalidImage);

    let cancelled = gateway.submit(job("cancelled")).await.unwrap();
    let lease = pop(&worker).await;
    lease.publish_part(PartName::PixelImages, part(PartName::PixelImages)).await.unwrap();
    drop(cancelled);
    bounded("the lease's token", lease.cancel_token().cancelled()).await;
    let _ = lease.fail(Failure::new(FailureCode::Cancelled, "the job was cancelled")).await;

    let job_keys =
        || async { keys_under(&cfg).await.into_iter().filter(|k| k.contains(":job:")).collect::<Vec<_>>() };
    bounded("the job keys to go", async {
        while !job_keys().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(inflight(&cfg, &worker).await, 0);
}
