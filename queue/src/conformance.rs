//! The queue contract as executable tests, run against every backend.
//!
//! A backend's test file provides a [`Factory`] and expands [`crate::conformance_tests!`]:
//!
//! ```ignore
//! img3d_queue::conformance_tests!(my_backend_tests, MyFactory::new());
//! ```
//!
//! Each case builds a fresh, empty queue (for Redis: a unique key prefix), so cases run in
//! parallel. Every wait is bounded: a broken backend fails a case, it never hangs the suite.
//! Timings are short but generous (hundreds of ms against Redis on loopback).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use img3d_protocol::{FailureCode, Format, JobOptions, PartName, ProgressStage, RemoveBackground, PARTS};

use crate::{Failure, JobEvent, JobHandle, JobQueue, Lease, NewJob, SubmitError, WorkQueue};

/// Both sides of one fresh queue.
pub struct Backend {
    /// Gateway side.
    pub jobs: Arc<dyn JobQueue>,
    /// Worker side.
    pub work: Arc<dyn WorkQueue>,
}

/// Makes fresh, empty, isolated queues for the suite.
#[async_trait]
pub trait Factory: Send + Sync {
    /// A new queue holding at most `max_len` waiting jobs.
    async fn make(&self, max_len: usize) -> Backend;
}

/// Upper bound on any single wait in the suite.
const LIMIT: Duration = Duration::from_secs(10);
/// How long `next` may wait when the suite expects nothing.
const SHORT: Duration = Duration::from_millis(300);

async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn job(tag: &str) -> NewJob {
    NewJob {
        image: Bytes::from(format!("image-{tag}")),
        options: JobOptions::default(),
        timeout: Duration::from_secs(60),
    }
}

async fn pop(work: &dyn WorkQueue) -> Box<dyn Lease> {
    bounded("a job", work.next(LIMIT)).await.expect("next failed").expect("no job within the limit")
}

async fn event(handle: &mut JobHandle) -> JobEvent {
    bounded("an event", handle.next_event()).await.expect("handle ended early")
}

/// Skips `Queued` notices, which backends may send at any time before `Started`.
async fn event_skip_queued(handle: &mut JobHandle) -> JobEvent {
    loop {
        match event(handle).await {
            JobEvent::Queued { .. } => continue,
            e => return e,
        }
    }
}

fn part_bytes(name: PartName, len: usize) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(name.index() as u8)).collect::<Vec<u8>>().into()
}

async fn publish_all(lease: &dyn Lease, len: usize) {
    for name in PARTS {
        lease.publish_part(name, part_bytes(name, len)).await.expect("publish_part");
    }
}

async fn expect_parts(handle: &mut JobHandle, len: usize) {
    for name in PARTS {
        match event_skip_queued(handle).await {
            JobEvent::Part(p) => {
                assert_eq!(p.name, name, "parts out of order");
                assert!(p.bytes == part_bytes(name, len), "part {name} corrupted");
            }
            other => panic!("expected part {name}, got {other:?}"),
        }
    }
}

/// Jobs are taken oldest first.
pub async fn fifo_order(f: &dyn Factory) {
    let b = f.make(100).await;
    let mut handles = Vec::new();
    for i in 0..3 {
        handles.push(b.jobs.submit(job(&i.to_string())).await.unwrap());
    }
    for (i, handle) in handles.iter().enumerate() {
        let lease = pop(&*b.work).await;
        assert_eq!(lease.job().image, Bytes::from(format!("image-{i}")));
        assert_eq!(lease.job().attempt, 1);
        assert_eq!(lease.job().id, handle.id());
        assert!(lease.job().options.is_default(), "a job without options must arrive without options");
        lease.fail(Failure::new(FailureCode::Internal, "test")).await.unwrap();
    }
}

/// A successful job yields Started, progress, the three parts intact and in order, Completed,
/// then nothing.
pub async fn events_in_order(f: &dyn Factory) {
    let b = f.make(100).await;
    let mut handle = b.jobs.submit(job("a")).await.unwrap();
    let lease = pop(&*b.work).await;
    assert!(!lease.cancel_token().is_cancelled());
    lease.progress(ProgressStage::Stage1, 1, 50).await.unwrap();
    publish_all(&*lease, 64 * 1024).await;
    lease.complete().await.unwrap();

    assert_eq!(event_skip_queued(&mut handle).await, JobEvent::Started);
    assert_eq!(
        event(&mut handle).await,
        JobEvent::Progress { stage: ProgressStage::Stage1, step: 1, total: 50 }
    );
    expect_parts(&mut handle, 64 * 1024).await;
    assert_eq!(event(&mut handle).await, JobEvent::Completed);
    assert!(bounded("end", handle.next_event()).await.is_none());
}

/// A worker's failure reaches the client with its code and message.
pub async fn failure_reaches_client(f: &dyn Factory) {
    let b = f.make(100).await;
    let mut handle = b.jobs.submit(job("a")).await.unwrap();
    let lease = pop(&*b.work).await;
    lease.publish_part(PartName::PixelImages, part_bytes(PartName::PixelImages, 10)).await.unwrap();
    lease.fail(Failure::new(FailureCode::InvalidImage, "no object found")).await.unwrap();
    assert_eq!(event_skip_queued(&mut handle).await, JobEvent::Started);
    assert!(matches!(event(&mut handle).await, JobEvent::Part(_)));
    assert_eq!(
        event(&mut handle).await,
        JobEvent::Failed(Failure::new(FailureCode::InvalidImage, "no object found"))
    );
    assert!(bounded("end", handle.next_event()).await.is_none());
}

/// A job whose client left while it waited is never handed to a worker.
pub async fn cancelled_queued_job_never_starts(f: &dyn Factory) {
    let b = f.make(100).await;
    let _a = b.jobs.submit(job("a")).await.unwrap();
    let gone = b.jobs.submit(job("gone")).await.unwrap();
    let _c = b.jobs.submit(job("c")).await.unwrap();
    drop(gone);
    let first = pop(&*b.work).await;
    assert_eq!(first.job().image, Bytes::from("image-a"));
    first.fail(Failure::new(FailureCode::Internal, "test")).await.unwrap();
    let second = pop(&*b.work).await;
    assert_eq!(second.job().image, Bytes::from("image-c"), "a cancelled job was started");
    second.fail(Failure::new(FailureCode::Internal, "test")).await.unwrap();
    assert!(bounded("next", b.work.next(SHORT)).await.unwrap().is_none());
}

/// Dropping the handle of a running job cancels the worker's token.
pub async fn cancel_running_job_fires_token(f: &dyn Factory) {
    let b = f.make(100).await;
    let handle = b.jobs.submit(job("a")).await.unwrap();
    let lease = pop(&*b.work).await;
    let token = lease.cancel_token();
    assert!(!token.is_cancelled());
    handle.cancel();
    bounded("the cancel token", token.cancelled()).await;
    // Ending a cancelled lease is not an error the worker has to handle specially.
    let _ = lease.fail(Failure::new(FailureCode::Cancelled, "client left")).await;
}

/// A job nobody takes before its deadline fails with `timeout` and is then never started.
pub async fn deadline_while_queued(f: &dyn Factory) {
    let b = f.make(100).await;
    let mut handle =
        b.jobs.submit(NewJob { timeout: Duration::from_millis(300), ..job("late") }).await.unwrap();
    match event_skip_queued(&mut handle).await {
        JobEvent::Failed(failure) => assert_eq!(failure.code, FailureCode::Timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(bounded("next", b.work.next(SHORT)).await.unwrap().is_none(), "an expired job started");
}

/// A running job that passes its deadline fails with `timeout` and its token is cancelled.
pub async fn deadline_while_running(f: &dyn Factory) {
    let b = f.make(100).await;
    let mut handle =
        b.jobs.submit(NewJob { timeout: Duration::from_millis(800), ..job("slow") }).await.unwrap();
    let lease = pop(&*b.work).await;
    assert_eq!(event_skip_queued(&mut handle).await, JobEvent::Started);
    match event(&mut handle).await {
        JobEvent::Failed(failure) => assert_eq!(failure.code, FailureCode::Timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    bounded("the cancel token", lease.cancel_token().cancelled()).await;
}

/// Past `max_len` waiting jobs, submit fails at once with `Full`; room comes back when a
/// worker takes a job.
pub async fn bounded_length(f: &dyn Factory) {
    let b = f.make(2).await;
    let _a = b.jobs.submit(job("a")).await.unwrap();
    let _b = b.jobs.submit(job("b")).await.unwrap();
    let started = Instant::now();
    match b.jobs.submit(job("c")).await {
        Err(SubmitError::Full { limit }) => assert_eq!(limit, 2),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "a full queue must refuse at once");
    assert_eq!(SubmitError::Full { limit: 2 }.code(), FailureCode::Busy);
    let lease = pop(&*b.work).await;
    let _c = b.jobs.submit(job("c")).await.expect("room after a pop");
    lease.fail(Failure::new(FailureCode::Internal, "test")).await.unwrap();
}

/// Two workers popping concurrently: every job goes to exactly one of them.
pub async fn each_job_to_one_worker(f: &dyn Factory) {
    let b = f.make(100).await;
    let mut handles = Vec::new();
    for i in 0..10 {
        handles.push(b.jobs.submit(job(&i.to_string())).await.unwrap());
    }
    let take = |work: Arc<dyn WorkQueue>| async move {
        let mut seen = Vec::new();
        while let Some(lease) = work.next(SHORT).await.unwrap() {
            seen.push(lease.job().id);
            lease.fail(Failure::new(FailureCode::Internal, "test")).await.unwrap();
        }
        seen
    };
    let (x, y) =
        bounded("two workers", async { tokio::join!(take(b.work.clone()), take(b.work.clone())) }).await;
    let all: Vec<_> = x.iter().chain(y.iter()).copied().collect();
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(all.len(), 10, "jobs popped: {}", all.len());
    assert_eq!(unique.len(), 10, "a job went to two workers");
}

/// A requeued job runs again (attempt 2); the client sees each part once.
pub async fn requeue_runs_again(f: &dyn Factory) {
    let b = f.make(100).await;
    let mut handle = b.jobs.submit(job("a")).await.unwrap();
    let lease = pop(&*b.work).await;
    let id = lease.job().id;
    lease.publish_part(PartName::PixelImages, part_bytes(PartName::PixelImages, 100)).await.unwrap();
    lease.requeue().await.unwrap();
    let again = pop(&*b.work).await;
    assert_eq!(again.job().id, id);
    assert_eq!(again.job().attempt, 2);
    publish_all(&*again, 100).await;
    again.complete().await.unwrap();
    assert_eq!(event_skip_queued(&mut handle).await, JobEvent::Started);
    expect_parts(&mut handle, 100).await;
    assert_eq!(event(&mut handle).await, JobEvent::Completed);
}

/// `next` on an empty queue returns `None` after about `wait`.
pub async fn next_times_out_when_empty(f: &dyn Factory) {
    let b = f.make(100).await;
    let started = Instant::now();
    assert!(bounded("next", b.work.next(SHORT)).await.unwrap().is_none());
    assert!(started.elapsed() >= SHORT / 2, "next returned after {:?}", started.elapsed());
}

/// Stats count waiting jobs and their age.
pub async fn stats_track_depth(f: &dyn Factory) {
    let b = f.make(100).await;
    assert_eq!(b.jobs.stats().await.unwrap().depth, 0);
    let _a = b.jobs.submit(job("a")).await.unwrap();
    let _b = b.jobs.submit(job("b")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stats = b.jobs.stats().await.unwrap();
    assert_eq!(stats.depth, 2);
    assert!(stats.oldest_age.expect("age of the oldest job") >= Duration::from_millis(10));
    let lease = pop(&*b.work).await;
    assert_eq!(b.jobs.stats().await.unwrap().depth, 1);
    lease.fail(Failure::new(FailureCode::Internal, "test")).await.unwrap();
}

/// An 8 MB part arrives byte for byte.
pub async fn large_part_intact(f: &dyn Factory) {
    let b = f.make(100).await;
    let mut handle = b.jobs.submit(job("a")).await.unwrap();
    let lease = pop(&*b.work).await;
    let len = 8 * 1024 * 1024;
    // Publish from a task: a backend may apply backpressure until the handle reads.
    let publisher = tokio::spawn(async move {
        publish_all(&*lease, len).await;
        lease.complete().await.unwrap();
    });
    assert_eq!(event_skip_queued(&mut handle).await, JobEvent::Started);
    expect_parts(&mut handle, len).await;
    assert_eq!(event(&mut handle).await, JobEvent::Completed);
    bounded("publisher", publisher).await.unwrap();
}

/// A lease dropped without an ending (a worker bug) fails the job instead of leaving the
/// client waiting until its deadline.
pub async fn dropped_lease_fails_job(f: &dyn Factory) {
    let b = f.make(100).await;
    let mut handle = b.jobs.submit(job("a")).await.unwrap();
    drop(pop(&*b.work).await);
    assert_eq!(event_skip_queued(&mut handle).await, JobEvent::Started);
    match event(&mut handle).await {
        JobEvent::Failed(failure) => assert_eq!(failure.code, FailureCode::Internal),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Every option reaches the worker as the client set it, and a job that asked for the GLB
/// yields four parts, the GLB after the zip.
pub async fn options_travel_with_job(f: &dyn Factory) {
    let b = f.make(100).await;
    let options = JobOptions {
        seed: Some(7),
        guidance: Some(4.5),
        steps: Some(30),
        texture: Some(2048),
        faces: Some(20_000),
        formats: Some(vec![Format::Zip, Format::Glb]),
        remove_background: Some(RemoveBackground::Off),
    };
    let mut handle = b.jobs.submit(NewJob { options: options.clone(), ..job("opt") }).await.unwrap();
    let lease = pop(&*b.work).await;
    assert_eq!(lease.job().options, options);
    publish_all(&*lease, 1024).await;
    lease.publish_part(PartName::OutputGlb, part_bytes(PartName::OutputGlb, 1024)).await.unwrap();
    lease.complete().await.unwrap();
    assert_eq!(event_skip_queued(&mut handle).await, JobEvent::Started);
    expect_parts(&mut handle, 1024).await;
    match event(&mut handle).await {
        JobEvent::Part(p) => assert_eq!(p.name, PartName::OutputGlb),
        other => panic!("expected the GLB part, got {other:?}"),
    }
    assert_eq!(event(&mut handle).await, JobEvent::Completed);
}

/// A job that asked for the GLB and completed without it fails for its client, and a job that
/// did not ask for it never passes one on.
pub async fn parts_follow_the_options(f: &dyn Factory) {
    let b = f.make(100).await;
    let glb = JobOptions { formats: Some(vec![Format::Glb]), ..JobOptions::default() };
    let mut handle = b.jobs.submit(NewJob { options: glb, ..job("glb") }).await.unwrap();
    let lease = pop(&*b.work).await;
    publish_all(&*lease, 16).await;
    lease.complete().await.unwrap();
    assert_eq!(event_skip_queued(&mut handle).await, JobEvent::Started);
    expect_parts(&mut handle, 16).await;
    match event(&mut handle).await {
        JobEvent::Failed(failure) => assert_eq!(failure.code, FailureCode::Internal),
        other => panic!("expected a failure for the missing GLB, got {other:?}"),
    }

    let mut handle = b.jobs.submit(job("zip")).await.unwrap();
    let lease = pop(&*b.work).await;
    publish_all(&*lease, 16).await;
    lease.publish_part(PartName::OutputGlb, part_bytes(PartName::OutputGlb, 16)).await.unwrap();
    lease.complete().await.unwrap();
    assert_eq!(event_skip_queued(&mut handle).await, JobEvent::Started);
    expect_parts(&mut handle, 16).await;
    match event(&mut handle).await {
        JobEvent::Failed(failure) => assert_eq!(failure.code, FailureCode::Internal),
        other => panic!("expected a failure for the unasked GLB, got {other:?}"),
    }
}

/// Expands to one `#[tokio::test]` per contract case, in a module named `$module`.
#[macro_export]
macro_rules! conformance_tests {
    ($module:ident, $factory:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_tests!(@case $factory;
                fifo_order, events_in_order, failure_reaches_client,
                cancelled_queued_job_never_starts, cancel_running_job_fires_token,
                deadline_while_queued, deadline_while_running, bounded_length,
                each_job_to_one_worker, requeue_runs_again, next_times_out_when_empty,
                stats_track_depth, large_part_intact, dropped_lease_fails_job,
                options_travel_with_job, parts_follow_the_options);
        }
    };
    (@case $factory:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let factory = $factory;
                $crate::conformance::$case(&factory).await;
            }
        )*
    };
}
