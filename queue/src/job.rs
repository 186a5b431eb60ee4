//! Jobs and their events.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use img3d_protocol::{FailureCode, JobOptions, PartName, ProgressStage};
use uuid::Uuid;

/// Unique id of a job (never shown to clients: the protocol is stateless).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A fresh random id.
    pub fn new() -> Self {
        JobId(Uuid::new_v4())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a gateway submits: a validated image, the client's options and how long the client
/// will wait.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The image file exactly as the client sent it (already validated by the gateway).
    pub image: Bytes,
    /// The client's options for this job (already validated; default: the original protocol).
    pub options: JobOptions,
    /// Time from submission after which the job fails with `timeout` and is cancelled.
    pub timeout: Duration,
}

/// A job as a worker sees it.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// The image file bytes.
    pub image: Bytes,
    /// The client's options (which parts to send, seed, steps, ...).
    pub options: JobOptions,
    /// When the gateway submitted it (wall clock: gateways and workers are different machines).
    pub submitted_at: SystemTime,
    /// When nobody waits for it any more.
    pub deadline: SystemTime,
    /// 1 on the first run; incremented each time the job is returned to the queue.
    pub attempt: u32,
}

impl Job {
    /// Time left until the deadline (zero once passed).
    pub fn time_left(&self) -> Duration {
        self.deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)
    }
}

/// One result part.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Which part (its index is the sequence number).
    pub name: PartName,
    /// The file bytes.
    pub bytes: Bytes,
}

/// Why a job failed: what the queue carries, what a worker's job runner returns, and what the
/// client is told (one type from the runner to the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    /// Machine-readable reason.
    pub code: FailureCode,
    /// A reason a person can act on (sent to the client; no internal details).
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: FailureCode, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }

    /// The job was cancelled (client gone, deadline, drain).
    pub fn cancelled() -> Self {
        Failure::new(FailureCode::Cancelled, "the job was cancelled")
    }

    /// The deadline passed.
    pub fn timeout() -> Self {
        Failure::new(FailureCode::Timeout, "the job did not finish before its deadline")
    }
}

/// What a [`crate::JobHandle`] yields, in this order: `Queued`* , `Started`, (`Progress` |
/// `Part`)*, then one of `Completed` / `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// Still waiting; `position` jobs ahead (0 = next). Optional, best effort.
    Queued {
        /// Jobs ahead of this one.
        position: u64,
    },
    /// A worker took the job.
    Started,
    /// Stage progress. Best effort.
    Progress {
        /// Stage.
        stage: ProgressStage,
        /// Steps done.
        step: u32,
        /// Steps in the stage.
        total: u32,
    },
    /// A result part, in protocol order, each exactly once.
    Part(Part),
    /// All parts were delivered.
    Completed,
    /// The job failed; nothing follows.
    Failed(Failure),
}

impl JobEvent {
    /// Whether this event ends the job.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobEvent::Completed | JobEvent::Failed(_))
    }
}

/// A snapshot of the queue for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueStats {
    /// Jobs waiting (not yet taken by a worker).
    pub depth: u64,
    /// Age of the oldest waiting job.
    pub oldest_age: Option<Duration>,
    /// Jobs currently held by workers.
    pub running: u64,
    /// Workers known to be alive (None where the backend cannot tell).
    pub workers: Option<u64>,
}
