//! Server -> client messages (text frames) and the client's opt-in options.

use serde::{Deserialize, Serialize};

use crate::{FailureCode, PartName, EVENTS_PROGRESS};

/// A JSON text frame sent by the server.
///
/// Only [`ServerMessage::Status`] and [`ServerMessage::ResultPart`] belong to the original
/// protocol; [`ServerMessage::Queued`] and [`ServerMessage::Progress`] are sent only to clients
/// that opted in with `?events=progress` (see [`ClientOptions`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// `{"type": "status", "status": ...}`.
    Status(Status),
    /// `{"type": "result_part", "name": ..., "content_type": ...}`: the next binary frame is
    /// this part.
    ResultPart {
        /// File name of the part, e.g. `pixel_images.png`.
        name: String,
        /// MIME type of the part, e.g. `image/png`.
        content_type: String,
    },
    /// Opt-in: the job waits in the queue; `position` jobs are ahead of it (0 = next).
    Queued {
        /// Jobs ahead of this one.
        position: u64,
    },
    /// Opt-in: the job is running `stage`, `step` of `total` done.
    Progress {
        /// Which pipeline stage.
        stage: ProgressStage,
        /// Steps done so far.
        step: u32,
        /// Steps in the stage.
        total: u32,
    },
}

/// The `status` field of a status message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// The image was received; the job is queued or running.
    Processing,
    /// All three parts were sent; the job succeeded.
    Completed,
    /// The job failed; nothing more is sent for it.
    Failed {
        /// A reason a person can act on.
        error: String,
        /// A stable machine-readable reason (absent only from servers that predate it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<FailureCode>,
    },
}

/// Pipeline stages reported by opt-in progress messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressStage {
    /// Decoding, background removal, recentring.
    Preprocess,
    /// Multi-view diffusion of the six colour views (-> `pixel_images.png`).
    Stage1,
    /// Diffusion of the six coordinate maps (-> `xyz_images.png`).
    Stage2,
    /// Triplane network and mesh extraction.
    Reconstruct,
    /// UV unwrap, texture bake, OBJ/MTL/PNG zip (-> `output3d.zip`).
    Export,
}

impl ProgressStage {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressStage::Preprocess => "preprocess",
            ProgressStage::Stage1 => "stage1",
            ProgressStage::Stage2 => "stage2",
            ProgressStage::Reconstruct => "reconstruct",
            ProgressStage::Export => "export",
        }
    }
}

impl ServerMessage {
    /// `{"type": "status", "status": "processing"}`.
    pub fn processing() -> Self {
        ServerMessage::Status(Status::Processing)
    }

    /// `{"type": "status", "status": "completed"}`.
    pub fn completed() -> Self {
        ServerMessage::Status(Status::Completed)
    }

    /// `{"type": "status", "status": "failed", "error": ..., "code": ...}`.
    pub fn failed(code: FailureCode, error: impl Into<String>) -> Self {
        ServerMessage::Status(Status::Failed { error: error.into(), code: Some(code) })
    }

    /// The announcement that precedes a part's binary frame.
    pub fn result_part(part: PartName) -> Self {
        ServerMessage::ResultPart {
            name: part.file_name().to_owned(),
            content_type: part.content_type().to_owned(),
        }
    }

    /// Whether this message type belongs to the original protocol (sent to every client).
    pub fn is_core(&self) -> bool {
        matches!(self, ServerMessage::Status(_) | ServerMessage::ResultPart { .. })
    }

    /// The wire form, formatted as the original server did (see [`crate::to_wire_json`]).
    pub fn to_json(&self) -> String {
        crate::to_wire_json(self)
    }

    /// Parses a text frame.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// What a client asked for in the query string of its upgrade request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// `events=progress`: also send [`ServerMessage::Queued`] and [`ServerMessage::Progress`].
    pub progress_events: bool,
}

impl ClientOptions {
    /// Parses a raw query string such as `events=progress` (unknown keys are ignored, so old
    /// servers and new clients stay compatible).
    pub fn from_query(query: Option<&str>) -> Self {
        let progress_events = query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .any(|(k, v)| k == "events" && v.split(',').any(|e| e == EVENTS_PROGRESS));
        ClientOptions { progress_events }
    }

    /// Whether a message may be sent to this client.
    pub fn allows(&self, msg: &ServerMessage) -> bool {
        msg.is_core() || self.progress_events
    }
}
