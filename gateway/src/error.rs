//! Everything a client can be told went wrong, with its stable wire code: the one place that
//! turns an error into the protocol's `failed` message.

use img3d_protocol::{FailureCode, OptionError, ServerMessage};

/// Why a client's message or job was refused or failed, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A text frame arrived where the protocol expects an image.
    #[error("expected one binary frame holding an image file, got a text frame")]
    TextFrame,
    /// An image arrived while this connection's job runs and another image already waits.
    #[error(
        "a job is running on this connection and one image already waits behind it: send the next \
         image after a completed or failed status (this one was dropped)"
    )]
    JobRunning,
    /// An option (on the connection's query or in the options message before the image) is
    /// out of its range: the job is refused before anything is queued.
    #[error("{0}")]
    BadOption(#[from] OptionError),
    /// The binary frame was empty.
    #[error("the image frame is empty: send the whole image file as one binary frame")]
    Empty,
    /// The frame is over the size limit.
    #[error("the image is {size} bytes; this server accepts at most {limit} bytes")]
    TooLarge {
        /// Bytes received (a lower bound when the frame was too big to read).
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The header announces more pixels than allowed.
    #[error("the image is {width}x{height} pixels; this server accepts at most {limit} pixels")]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The configured limit.
        limit: u64,
    },
    /// The header announces a bitmap larger than the gateway's whole memory budget.
    #[error("the image decodes to {bytes} bytes, more than this server can hold ({limit} bytes); send a smaller image")]
    DecodesTooLarge {
        /// Decoded size from the header.
        bytes: u64,
        /// The memory budget.
        limit: u64,
    },
    /// Not a known image format.
    #[error("the data is not an image file this server reads (PNG, JPEG, WebP, GIF, BMP or TIFF)")]
    UnknownFormat,
    /// A known format that does not decode (truncated, corrupt).
    #[error("the {format} image could not be decoded (truncated or corrupt?): {reason}")]
    Corrupt {
        /// Format from the file signature.
        format: String,
        /// The decoder's message.
        reason: String,
    },
    /// The service is shutting down or cannot run jobs.
    #[error("{0}")]
    Unavailable(String),
    /// The queue is full (the message says so and to retry later).
    #[error("{0}")]
    Busy(String),
    /// Something went wrong inside the service (details in its log, with the job id).
    #[error("internal error on the server (logged there); retry")]
    Internal,
}

impl ClientError {
    /// The stable machine-readable code.
    pub fn code(&self) -> FailureCode {
        match self {
            ClientError::TextFrame | ClientError::JobRunning | ClientError::BadOption(_) => {
                FailureCode::BadRequest
            }
            ClientError::Empty | ClientError::UnknownFormat | ClientError::Corrupt { .. } => {
                FailureCode::InvalidImage
            }
            ClientError::TooLarge { .. }
            | ClientError::TooManyPixels { .. }
            | ClientError::DecodesTooLarge { .. } => FailureCode::TooLarge,
            ClientError::Unavailable(_) => FailureCode::Unavailable,
            ClientError::Busy(_) => FailureCode::Busy,
            ClientError::Internal => FailureCode::Internal,
        }
    }

    /// The `failed` message for this error.
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::failed(self.code(), self.to_string())
    }
}

impl From<img3d_queue::SubmitError> for ClientError {
    fn from(e: img3d_queue::SubmitError) -> Self {
        match e {
            img3d_queue::SubmitError::Full { .. } => ClientError::Busy(format!("{e}")),
            img3d_queue::SubmitError::Unavailable(reason) => ClientError::Unavailable(reason),
        }
    }
}

impl From<img3d_service::health::Unavailable> for ClientError {
    fn from(e: img3d_service::health::Unavailable) -> Self {
        // The component, not its error (paths, devices): that is in the log.
        ClientError::Unavailable(format!(
            "this server cannot run jobs (its {} failed to start); retry on another server",
            e.component
        ))
    }
}
