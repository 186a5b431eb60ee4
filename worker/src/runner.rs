//! The interface between the worker loop and what runs a job: the real CRM pipeline
//! ([`crate::crm::CrmPipeline`]), or a test double in gateway/queue tests.
//!
//! Named `JobRunner`, not `Pipeline`, so it is not confused with `img3d_pipeline::Pipeline`,
//! the model itself. Failures are the queue's [`Failure`]: what a runner returns is what the
//! client is told, with no conversion in between.

use img3d_protocol::{JobOptions, PartName, ProgressStage};
use img3d_queue::Failure;

/// Runs jobs for the worker. Runs on a blocking thread (`spawn_blocking`); a panic fails the
/// job, not the worker.
pub trait JobRunner: Send + Sync + 'static {
    /// Runs one job on the image file bytes with the client's `options`, publishing each part
    /// through `sink` the moment it exists, in protocol order (`options.parts()`), and checking
    /// `sink.is_cancelled()` between steps.
    fn run(&self, image: &[u8], options: &JobOptions, sink: &mut dyn JobSink) -> Result<(), Failure>;

    /// One line for logs and `/readyz`, e.g. which bundle and device. A bundle with random
    /// weights must say so.
    fn describe(&self) -> String;
}

/// Where a running job sends its results.
pub trait JobSink: Send {
    /// True once nobody waits for this job any more (client gone, deadline, drain).
    fn is_cancelled(&self) -> bool;

    /// Progress within a stage (forwarded to clients that opted in).
    fn progress(&mut self, stage: ProgressStage, step: u32, total: u32);

    /// Publishes one part. Blocks until the queue has accepted it. An error means the job is
    /// over (cancelled, lease lost): stop working on it.
    fn part(&mut self, name: PartName, bytes: Vec<u8>) -> Result<(), Failure>;
}
