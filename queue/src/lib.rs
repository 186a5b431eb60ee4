//! The img3d job queue: the contract between gateways (which submit jobs and stream their
//! events to clients) and workers (which take one job at a time and run the pipeline).
//!
//! Two sides, one trait each, so a backend can be split across machines:
//! - gateway side: [`JobQueue::submit`] returns a [`JobHandle`] that yields the job's
//!   [`JobEvent`]s in order; dropping the handle (or [`JobHandle::cancel`]) cancels the job.
//! - worker side: [`WorkQueue::next`] returns a [`Lease`] on one job; the worker publishes
//!   progress and parts through it and ends it with `complete`, `fail` or `requeue`.
//!
//! Backends: [`memory`] (in-process channels, the single-machine default) and, in its own
//! module, Redis (the scale-out path). Both pass the same [`conformance`] suite.

pub mod conformance;
mod error;
mod handle;
mod job;
pub mod memory;
pub mod redis;

pub use error::{QueueError, SubmitError};
pub use handle::{Canceller, JobHandle};
pub use job::{Failure, Job, JobEvent, JobId, NewJob, Part, QueueStats};

use std::time::Duration;

/// Most jobs waiting for a worker unless configured otherwise: the one default behind the
/// gateway's `--max-queue` and [`redis::RedisConfig::max_queue_len`]. A job takes about a
/// minute on a GPU, so a longer line only makes clients wait for a timeout.
pub const DEFAULT_MAX_QUEUE: usize = 32;

use async_trait::async_trait;
use img3d_protocol::{PartName, ProgressStage};
use tokio_util::sync::CancellationToken;

/// What readiness checks and metrics read: the queue's depth and age. Both sides of a
/// distributed backend can answer it (a queue worker's `/readyz` probes the queue too).
#[async_trait]
pub trait QueueProbe: Send + Sync + 'static {
    /// Depth and age of the queue, for metrics and readiness.
    async fn stats(&self) -> Result<QueueStats, QueueError>;
}

/// Gateway side of the queue.
#[async_trait]
pub trait JobQueue: QueueProbe {
    /// Enqueues a job at the back of the FIFO, or refuses at once when the queue is full
    /// ([`SubmitError::Full`]) or unreachable ([`SubmitError::Unavailable`]). Never waits for
    /// room.
    ///
    /// The returned handle yields [`JobEvent::Started`] when a worker takes the job, then
    /// progress and the parts in protocol order, then exactly one terminal event
    /// ([`JobEvent::Completed`] or [`JobEvent::Failed`]); then `None`. Once the job's deadline
    /// passes without a terminal event it yields `Failed` with code `timeout` and cancels the
    /// job.
    async fn submit(&self, job: NewJob) -> Result<JobHandle, SubmitError>;
}

/// Worker side of the queue.
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    /// Takes the oldest runnable job, waiting up to `wait` for one; `Ok(None)` if none came.
    ///
    /// Jobs that were cancelled or whose deadline passed while they waited are skipped, never
    /// returned. Taking a job sends [`JobEvent::Started`] to its handle.
    async fn next(&self, wait: Duration) -> Result<Option<Box<dyn Lease>>, QueueError>;
}

/// A worker's hold on one job, from [`WorkQueue::next`] until `complete`, `fail` or `requeue`.
///
/// While it exists the backend keeps it alive (heartbeats where the backend needs them).
/// Dropping a lease without ending it fails the job with code `internal`.
#[async_trait]
pub trait Lease: Send + Sync {
    /// The job.
    fn job(&self) -> &Job;

    /// Cancelled when nobody waits for the result any more (the client left, the job was
    /// cancelled, its deadline passed). The pipeline checks it between steps.
    fn cancel_token(&self) -> CancellationToken;

    /// Reports progress (forwarded only to clients that opted in). Best effort.
    async fn progress(&self, stage: ProgressStage, step: u32, total: u32) -> Result<(), QueueError>;

    /// Publishes one part. Parts must be published in protocol order, each once.
    async fn publish_part(&self, name: PartName, bytes: bytes::Bytes) -> Result<(), QueueError>;

    /// Ends the job successfully (after all three parts).
    async fn complete(self: Box<Self>) -> Result<(), QueueError>;

    /// Ends the job with a failure the client will see.
    async fn fail(self: Box<Self>, failure: Failure) -> Result<(), QueueError>;

    /// Gives the job back, unstarted from the client's point of view, to the front of the
    /// queue (a draining worker past its deadline). Parts already published are not resent to
    /// the client: the pipeline is deterministic, so the next run's duplicates are dropped.
    async fn requeue(self: Box<Self>) -> Result<(), QueueError>;
}
