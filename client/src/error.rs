//! The one error type of the client library.

use std::time::Duration;

use img3d_protocol::FailureCode;

/// Why a request failed. Each variant says what state the client is in afterwards.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Another request is running on this client; nothing was sent (one active request at a
    /// time, as the protocol serves one job per connection).
    #[error("a request is already running on this client")]
    Busy,
    /// The server URL cannot be used (not `ws://` or `wss://`, or not a valid URI).
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be opened after the configured number of attempts. The client
    /// stays idle; the next request tries again.
    #[error("cannot connect to {url} ({attempts} attempt(s)): {source}")]
    Connect {
        /// The URL connected to (including the query string).
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No final status within the application-level timeout. The connection was closed
    /// (which cancels the job on the server) and the client is idle again.
    #[error("no final status from the server within {after:?}; the connection was closed")]
    Timeout {
        /// The timeout that passed.
        after: Duration,
    },
    /// The server answered `failed`. The connection stays open for the next request.
    #[error("the server failed the job{}: {error}", code.map(|c| format!(" ({c})")).unwrap_or_default())]
    ServerFailed {
        /// The server's human-readable reason.
        error: String,
        /// The stable machine-readable reason, when the server sent one this client knows.
        code: Option<FailureCode>,
    },
    /// The server broke the protocol (a binary frame with no `result_part` before it, a text
    /// frame that is not a protocol message, ...). The connection was reset.
    #[error("protocol error: {0}; the connection was reset")]
    Protocol(String),
    /// The connection dropped before the job ended. The next request reconnects.
    #[error("connection lost before the job ended: {0}")]
    ConnectionLost(String),
}

impl ClientError {
    /// Whether sending the same image again later can succeed (connection problems, timeouts,
    /// and server failures whose code says so).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Busy | ClientError::Connect { .. } | ClientError::Timeout { .. } => true,
            ClientError::ConnectionLost(_) => true,
            ClientError::ServerFailed { code, .. } => code.is_some_and(FailureCode::is_retryable),
            ClientError::InvalidUrl { .. } | ClientError::Protocol(_) => false,
        }
    }

    /// A short stable name of the variant, for machine-readable output (`--json`).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Busy => "busy",
            ClientError::InvalidUrl { .. } => "invalid_url",
            ClientError::Connect { .. } => "connect",
            ClientError::Timeout { .. } => "timeout",
            ClientError::ServerFailed { .. } => "server_failed",
            ClientError::Protocol(_) => "protocol",
            ClientError::ConnectionLost(_) => "connection_lost",
        }
    }
}

/// Why [`crate::save::extract_zip`] refused or failed to unpack an archive. Nothing is left
/// in the target directory when it fails.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// An entry would land outside the target directory or is not a plain file/directory.
    #[error("unsafe zip entry {name:?}: {reason}")]
    UnsafeEntry {
        /// The entry's name as stored in the archive.
        name: String,
        /// What makes it unsafe (absolute path, `..`, symlink, ...).
        reason: &'static str,
    },
    /// The archive unpacks to more than the limits allow (a zip bomb, or not a result ZIP).
    #[error("the zip is over the extraction limits: {0}")]
    TooLarge(String),
    /// The archive cannot be read.
    #[error("not a readable zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// Writing the files failed.
    #[error("writing extracted files failed: {0}")]
    Io(#[from] std::io::Error),
}
