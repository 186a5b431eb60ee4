//! The img3d wire protocol (docs/protocol.md, sections 2 and 4), with no I/O.
//!
//! A client sends one binary frame (an image file). The server answers, in this exact order:
//! `processing`, three `result_part` announcements each followed by one binary frame
//! (`pixel_images.png`, `xyz_images.png`, `output3d.zip`), and `completed` — or `failed` at any
//! point, after which nothing more is sent for that job. A client may choose per-job options
//! ([`JobOptions`]: seed, steps, texture size, a GLB part, ...), opt-in, on the URL query or in
//! an options message before an image.
//!
//! Messages are serialised the way the original Python server (`json.dumps`) wrote them — `", "`
//! between members and `": "` after keys — so the bytes match what existing clients were tested
//! against, not only the JSON values.

mod code;
mod message;
mod options;
mod part;
mod wire;

pub use code::FailureCode;
pub use message::{ClientOptions, ProgressStage, ServerMessage, Status};
pub use options::{
    Format, JobOptions, OptionError, RemoveBackground, FACES_RANGE, GUIDANCE_RANGE, OPTIONS_TYPE,
    OPTION_NAMES, SEED_MAX, STEPS_RANGE, TEXTURE_SIZES,
};
pub use part::{PartName, ALL_PARTS, PARTS};
pub use wire::to_wire_json;

/// The WebSocket path of the service.
pub const ENDPOINT_PATH: &str = "/generate3d";

/// Query parameter value that opts a client into the extra message types
/// (`/generate3d?events=progress`).
pub const EVENTS_PROGRESS: &str = "progress";

/// Default limit on the size of the one binary frame carrying the image (20 MB).
///
/// Big enough for any photo a phone takes; small enough that a burst of clients cannot make a
/// gateway hold gigabytes.
pub const DEFAULT_MAX_IMAGE_BYTES: usize = 20 * 1000 * 1000;

/// Default limit on the decoded pixel count of an input image (64 megapixels).
///
/// Checked from the image header before decoding, so a small file that decodes to a huge
/// bitmap (a decompression bomb) is refused without allocating it. The pipeline works at
/// 320x320 and 256x256; nothing is gained from more.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 64 * 1000 * 1000;
