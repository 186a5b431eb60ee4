//! Pipeline errors.

use std::path::PathBuf;

/// Everything that can go wrong loading or running the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The input is not an image the pipeline can use (the message is safe to show a client).
    #[error("{0}")]
    InvalidImage(String),
    /// A weight file could not be read or does not match the architecture.
    #[error("weights {path}: {reason}")]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// What is wrong: names the tensor(s).
        reason: String,
    },
    /// The model bundle is incomplete or inconsistent.
    #[error("model bundle {path}: {reason}")]
    Bundle {
        /// The bundle directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A run parameter is out of what the pipeline can run (the message names it; safe to
    /// show a client).
    #[error("{0}")]
    InvalidParams(String),
    /// The requested device is not usable.
    #[error("device: {0}")]
    Device(String),
    /// The job was cancelled between steps.
    #[error("cancelled")]
    Cancelled,
    /// A libtorch operation failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// File I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Any other internal failure (details for the log, not the client).
    #[error("{0}")]
    Internal(String),
}
