//! The img3d worker: one job at a time per GPU, the pipeline in `spawn_blocking`.

pub mod pipeline;

pub use pipeline::{JobSink, Pipeline, PipelineFailure};
