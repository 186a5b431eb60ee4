//! The interface between the worker loop and a pipeline (the real CRM pipeline, or a test
//! double in gateway/queue tests).

use img3d_protocol::{FailureCode, JobOptions, PartName, ProgressStage};

/// A pipeline the worker can run. Runs on a blocking thread (`spawn_blocking`); a panic fails
/// the job, not the worker.
pub trait Pipeline: Send + Sync + 'static {
    /// Runs one job on the image file bytes with the client's `options`, publishing each part
    /// through `sink` the moment it exists, in protocol order (`options.parts()`), and checking
    /// `sink.is_cancelled()` between steps.
    fn run(&self, image: &[u8], options: &JobOptions, sink: &mut dyn JobSink) -> Result<(), PipelineFailure>;

    /// One line for logs and `/readyz`, e.g. which bundle and device. A bundle with random
    /// weights must say so.
    fn describe(&self) -> String;
}

/// Where a running pipeline sends its results.
pub trait JobSink: Send {
    /// True once nobody waits for this job any more (client gone, deadline, drain).
    fn is_cancelled(&self) -> bool;

    /// Progress within a stage (forwarded to clients that opted in).
    fn progress(&mut self, stage: ProgressStage, step: u32, total: u32);

    /// Publishes one part. Blocks until the queue has accepted it. An error means the job is
    /// over (cancelled, lease lost): stop working on it.
    fn part(&mut self, name: PartName, bytes: Vec<u8>) -> Result<(), PipelineFailure>;
}

/// Why a pipeline run did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct PipelineFailure {
    /// Wire code (`invalid_image` for bad input, `cancelled`, `internal`, ...).
    pub code: FailureCode,
    /// Message safe to show the client.
    pub message: String,
}

impl PipelineFailure {
    /// A failure with `code` and `message`.
    pub fn new(code: FailureCode, message: impl Into<String>) -> Self {
        PipelineFailure { code, message: message.into() }
    }

    /// The job was cancelled.
    pub fn cancelled() -> Self {
        PipelineFailure::new(FailureCode::Cancelled, "the job was cancelled")
    }
}
