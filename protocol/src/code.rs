//! Stable machine-readable failure codes (the `code` field of a `failed` status).

use serde::{Deserialize, Serialize};

/// Why a job failed, as a small fixed set a client can branch on without parsing prose.
///
/// Only [`FailureCode::Busy`] and [`FailureCode::Unavailable`] are worth retrying as-is;
/// [`FailureCode::Timeout`] and [`FailureCode::Internal`] may succeed on a retry;
/// the others will fail the same way again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The message was not what the protocol expects at this point (a text frame where an
    /// image is expected, a second image while a job runs).
    BadRequest,
    /// The bytes are not a decodable image (unknown format, truncated, corrupt, empty).
    InvalidImage,
    /// The image is over the size or pixel limits.
    TooLarge,
    /// The queue is full: retry later.
    Busy,
    /// The service is shutting down or has no worker able to run the job: retry later,
    /// possibly elsewhere.
    Unavailable,
    /// The job passed its deadline.
    Timeout,
    /// The job was cancelled (the service is draining, or the job was abandoned).
    Cancelled,
    /// Something went wrong inside the service; the details are in its log.
    Internal,
    /// A code this version does not know (a newer server's): read `error` for the reason.
    /// Never sent by this server; it keeps older clients parsing newer servers' failures.
    #[serde(other)]
    Unknown,
}

impl FailureCode {
    /// The wire spelling, e.g. `invalid_image`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::BadRequest => "bad_request",
            FailureCode::InvalidImage => "invalid_image",
            FailureCode::TooLarge => "too_large",
            FailureCode::Busy => "busy",
            FailureCode::Unavailable => "unavailable",
            FailureCode::Timeout => "timeout",
            FailureCode::Cancelled => "cancelled",
            FailureCode::Internal => "internal",
            FailureCode::Unknown => "unknown",
        }
    }

    /// Whether sending the same image again later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureCode::Busy | FailureCode::Unavailable | FailureCode::Timeout | FailureCode::Internal
        )
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
