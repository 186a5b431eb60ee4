//! The worker's watchdog through the real job loop: a pipeline that ignores cancellation gets
//! its job handed back to the Redis queue (fenced, attempt + 1) and the loop returns
//! [`Wedged::Stuck`]; a pipeline failing every job with `internal` stops the loop after the
//! configured streak.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_redis::redis::{self, AsyncCommands};
use img3d_protocol::{FailureCode, JobOptions};
use img3d_queue::memory::MemoryQueue;
use img3d_queue::redis::{RedisConfig, RedisJobQueue, RedisWorkQueue};
use img3d_queue::Failure;
use img3d_queue::{JobQueue, NewJob};
use img3d_service::Shutdown;
use img3d_worker::{JobRunner, JobSink, Watchdog, Wedged, WorkerOptions};

/// Ignores cancellation for two seconds (a wedged CUDA call), then returns without parts.
struct Deaf;

impl JobRunner for Deaf {
    fn run(&self, _image: &[u8], _options: &JobOptions, _sink: &mut dyn JobSink) -> Result<(), Failure> {
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    }

    fn describe(&self) -> String {
        "test double: ignores cancellation".into()
    }
}

/// Fails every job with `internal`, counting them.
#[derive(Default)]
struct Broken {
    runs: AtomicU32,
}

impl JobRunner for Broken {
    fn run(&self, _image: &[u8], _options: &JobOptions, _sink: &mut dyn JobSink) -> Result<(), Failure> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Err(Failure::new(FailureCode::Internal, "the GPU fell off the bus"))
    }

    fn describe(&self) -> String {
        "test double: fails every job".into()
    }
}

fn options(grace: Duration, max_internal_in_a_row: u32) -> WorkerOptions {
    WorkerOptions {
        poll: Duration::from_millis(100),
        watchdog: Watchdog { grace, max_internal_in_a_row },
        ..WorkerOptions::default()
    }
}

fn job(timeout: Duration) -> NewJob {
    NewJob { image: Bytes::from_static(b"image"), timeout, options: JobOptions::default() }
}

/// Past its deadline plus the grace, a job whose pipeline does not stop is handed back to the
/// queue (attempt 2, out of the worker's in-flight list) and the loop stops with `Stuck`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_ignoring_cancellation_trips_the_watchdog() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let mut cfg = RedisConfig::new(url, format!("img3d-test:watchdog-{}-{nanos}", std::process::id()));
    cfg.cancel_poll = Duration::from_millis(50);
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let worker = Arc::new(RedisWorkQueue::connect(cfg.clone()).await.unwrap());
    let handle = gateway.submit(job(Duration::from_millis(300))).await.unwrap();
    let id = handle.id();
    // The client keeps waiting (its handle is never polled nor dropped), so the job's state
    // stays for the worker's hand-back to act on.
    std::mem::forget(handle);
    let grace = Duration::from_millis(300);
    let ran = tokio::time::timeout(
        Duration::from_secs(5),
        img3d_worker::run_with(worker.clone(), Arc::new(Deaf), Shutdown::new(), options(grace, 0)),
    )
    .await
    .expect("the watchdog did not stop the loop");
    assert_eq!(ran, Err(Wedged::Stuck { grace }));
    let mut conn =
        redis::Client::open(cfg.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let (state, attempt): (Option<String>, Option<u32>) = redis::cmd("HMGET")
        .arg(img3d_queue::redis::Keys::new(&cfg.prefix).job(id))
        .arg(&["state", "attempt"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((state.as_deref(), attempt), (Some("queued"), Some(2)), "the job must be handed back");
    let inflight: i64 =
        conn.llen(format!("{}:worker:{}:inflight", cfg.prefix, worker.worker_id())).await.unwrap();
    assert_eq!(inflight, 0);
}

/// A pipeline failing every job with `internal` stops the loop after the configured streak,
/// having run exactly that many jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_failures_in_a_row_trip_the_watchdog() {
    let queue = MemoryQueue::new(10);
    let mut handles = Vec::new();
    for _ in 0..5 {
        handles.push(queue.submit(job(Duration::from_secs(30))).await.unwrap());
    }
    let broken = Arc::new(Broken::default());
    let ran = tokio::time::timeout(
        Duration::from_secs(5),
        img3d_worker::run_with(
            queue.clone(),
            broken.clone(),
            Shutdown::new(),
            options(Duration::from_secs(60), 3),
        ),
    )
    .await
    .expect("the watchdog did not stop the loop");
    assert_eq!(ran, Err(Wedged::Failing { count: 3 }));
    assert_eq!(broken.runs.load(Ordering::SeqCst), 3);
}
