//! Queue errors.

use img3d_protocol::FailureCode;

/// Why a job could not be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue holds its maximum number of jobs.
    #[error("server busy: {limit} jobs are already waiting; retry later")]
    Full {
        /// The configured bound.
        limit: usize,
    },
    /// The queue backend cannot take jobs (shutting down, Redis unreachable).
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

impl SubmitError {
    /// The wire failure code for this error.
    pub fn code(&self) -> FailureCode {
        match self {
            SubmitError::Full { .. } => FailureCode::Busy,
            SubmitError::Unavailable(_) => FailureCode::Unavailable,
        }
    }
}

/// A backend failure on an operation other than submit.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The backend is closed or shutting down.
    #[error("queue closed")]
    Closed,
    /// The lease is no longer valid (the job was taken back from this worker, e.g. after its
    /// heartbeat expired); its results must not be published.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// Redis failed a command or a connection (the Redis error is kept, with its kind).
    #[error("Redis: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    /// The Redis URL does not parse.
    #[error("bad Redis URL: {0}")]
    BadUrl(#[source] deadpool_redis::redis::RedisError),
    /// No pooled Redis connection could be had (pool exhausted, connect timeout).
    #[error("Redis connection: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    /// The backend broke its own protocol (an unexpected reply, a part out of order).
    #[error("queue backend: {0}")]
    Backend(String),
}
