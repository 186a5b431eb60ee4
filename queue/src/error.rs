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
    /// The job was cancelled: nobody waits for its result any more (its client left, its
    /// gateway released it, it was abandoned). Its results must not be published.
    #[error("job cancelled: {0}")]
    Cancelled(String),
    /// The lease is no longer valid though nobody cancelled the job: it was taken back from
    /// this worker (its heartbeat expired and the job runs again elsewhere, or it was failed
    /// for good after too many attempts). Its results must not be published.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// Redis failed a command or a connection (the Redis error is kept, with its kind).
    #[error("Redis: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    /// The Redis URL does not parse.
    #[error("bad Redis URL: {0}")]
    BadUrl(#[source] deadpool_redis::redis::RedisError),
    /// The key prefix cannot be used (it holds a Redis Cluster hash tag, `{` or `}`).
    #[error("bad Redis key prefix {0:?}: it must not contain '{{' or '}}' (each job's keys carry their own hash tag)")]
    BadPrefix(String),
    /// No pooled Redis connection could be had (pool exhausted, connect timeout).
    #[error("Redis connection: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    /// The backend broke its own protocol (an unexpected reply, a part out of order).
    #[error("queue backend: {0}")]
    Backend(String),
}

impl QueueError {
    /// The wire failure code a job stopped by this error ends with. Honest by construction:
    /// `cancelled` only when the job was cancelled; backend trouble is `unavailable`
    /// (retryable: nothing is wrong with the job); a lease taken back is `internal` (the
    /// client hears from the job's next run, not from this one, whose writes are fenced).
    pub fn code(&self) -> FailureCode {
        match self {
            QueueError::Cancelled(_) => FailureCode::Cancelled,
            QueueError::Closed
            | QueueError::Backend(_)
            | QueueError::Redis(_)
            | QueueError::BadUrl(_)
            | QueueError::BadPrefix(_)
            | QueueError::Pool(_) => FailureCode::Unavailable,
            QueueError::LeaseLost(_) => FailureCode::Internal,
        }
    }

    /// A message for the client matching [`Self::code`] (no internal details).
    pub fn client_message(&self) -> &'static str {
        match self {
            QueueError::Cancelled(_) => "the job was cancelled",
            QueueError::Closed
            | QueueError::Backend(_)
            | QueueError::Redis(_)
            | QueueError::BadUrl(_)
            | QueueError::BadPrefix(_)
            | QueueError::Pool(_) => "the job queue failed while storing a result; retry",
            QueueError::LeaseLost(_) => "internal error: the job was taken back from its worker; retry",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a cancellation reads as `cancelled`; queue trouble is retryable.
    #[test]
    fn codes_are_honest() {
        assert_eq!(QueueError::Cancelled("x".into()).code(), FailureCode::Cancelled);
        assert_eq!(QueueError::Backend("x".into()).code(), FailureCode::Unavailable);
        assert_eq!(QueueError::Closed.code(), FailureCode::Unavailable);
        assert_eq!(QueueError::LeaseLost("x".into()).code(), FailureCode::Internal);
    }
}
