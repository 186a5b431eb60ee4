//! What a running request hands to the application, in protocol order.

use std::time::Instant;

use bytes::Bytes;
use img3d_protocol::{PartName, ProgressStage};

/// One step of a request, delivered as soon as it arrives.
#[derive(Debug, Clone)]
pub enum Event {
    /// The server received the image (`status: processing`).
    Processing,
    /// Opt-in (`progress_events`): the job waits in the queue with `position` jobs ahead.
    Queued {
        /// Jobs ahead of this one (0 = next).
        position: u64,
    },
    /// Opt-in (`progress_events`): the job is in `stage`, `step` of `total` done.
    Progress {
        /// The pipeline stage.
        stage: ProgressStage,
        /// Steps done.
        step: u32,
        /// Steps in the stage.
        total: u32,
    },
    /// A result part arrived (its announcement and its binary frame).
    Part(Part),
    /// The server sent `completed`: the job succeeded. The request yields nothing after it.
    Completed,
}

/// One result part: the `result_part` announcement joined with the binary frame after it.
#[derive(Debug, Clone)]
pub struct Part {
    /// The name as the server sent it. Never use it as a path without sanitising it
    /// (see [`crate::save::part_file_name`]).
    pub name: String,
    /// The MIME type as the server sent it.
    pub content_type: String,
    /// The part, when the name is one of the three the protocol defines.
    pub kind: Option<PartName>,
    /// The bytes of the binary frame (shared, not copied; drop them once handled so a large
    /// ZIP is not kept longer than needed).
    pub bytes: Bytes,
    /// When the last byte of the binary frame was read from the socket.
    pub received_at: Instant,
}
