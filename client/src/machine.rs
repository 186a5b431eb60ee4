//! The message state machine of docs/protocol.md section 5, with no I/O: `result_part` stores
//! (name, content_type), the next binary frame is that part, then the pending state is cleared.

use std::time::Instant;

use bytes::Bytes;
use img3d_protocol::{FailureCode, PartName, ServerMessage, Status};

use crate::{Event, Part};

/// What one text frame means for the request.
#[derive(Debug)]
pub(crate) enum Step {
    /// Hand this to the application.
    Event(Event),
    /// `completed`: the request succeeded.
    Completed,
    /// `failed`: the request failed; the connection is still usable.
    Failed { error: String, code: Option<FailureCode> },
    /// A message this client does not know (a newer server's extra type): skipped.
    Ignored,
}

/// The announcement waiting for its binary frame.
#[derive(Debug)]
struct Pending {
    name: String,
    content_type: String,
}

/// Per-request protocol state.
#[derive(Debug, Default)]
pub(crate) struct Machine {
    pending: Option<Pending>,
}

impl Machine {
    /// Whether a `result_part` announcement waits for its binary frame.
    #[cfg(test)]
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Interprets a text frame. `Err` is a protocol violation (the caller resets the
    /// connection).
    pub(crate) fn on_text(&mut self, text: &str) -> Result<Step, String> {
        let msg = match ServerMessage::from_json(text) {
            Ok(msg) => msg,
            Err(err) => return lenient(text, err),
        };
        if let Some(p) = &self.pending {
            // The binary frame must come right after its announcement; a status may still end
            // the job (`failed` when producing or sending the part went wrong).
            if !matches!(msg, ServerMessage::Status(Status::Failed { .. })) {
                return Err(format!("expected the binary frame of {:?}, got the text frame {text}", p.name));
            }
        }
        Ok(match msg {
            ServerMessage::Status(Status::Processing) => Step::Event(Event::Processing),
            ServerMessage::Status(Status::Completed) => Step::Completed,
            ServerMessage::Status(Status::Failed { error, code }) => {
                self.pending = None;
                Step::Failed { error, code }
            }
            ServerMessage::ResultPart { name, content_type } => {
                self.pending = Some(Pending { name, content_type });
                Step::Ignored
            }
            ServerMessage::Queued { position } => Step::Event(Event::Queued { position }),
            ServerMessage::Progress { stage, step, total } => {
                Step::Event(Event::Progress { stage, step, total })
            }
        })
    }

    /// Joins a binary frame with the pending announcement. `Err` when nothing was announced.
    pub(crate) fn on_binary(&mut self, bytes: Bytes, received_at: Instant) -> Result<Part, String> {
        let Some(Pending { name, content_type }) = self.pending.take() else {
            return Err(format!(
                "a binary frame of {} bytes arrived with no result_part before it",
                bytes.len()
            ));
        };
        let kind = PartName::from_file_name(&name);
        Ok(Part { name, content_type, kind, bytes, received_at })
    }
}

/// A text frame the typed parser refused: still a failure if it says so (a `code` this client
/// does not know), skipped if it is a message type or status this client does not know, and a
/// protocol error if it is not a protocol message at all.
fn lenient(text: &str, err: serde_json::Error) -> Result<Step, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| format!("a text frame that is not JSON: {}", clip(text)))?;
    let field = |k: &str| value.get(k).and_then(|v| v.as_str());
    match (field("type"), field("status")) {
        (Some("status"), Some("failed")) => {
            Ok(Step::Failed { error: field("error").unwrap_or("(no reason given)").to_owned(), code: None })
        }
        (Some("status"), Some("processing" | "completed")) | (Some("result_part"), _) => {
            Err(format!("malformed message {} ({err})", clip(text)))
        }
        (Some(_), _) => Ok(Step::Ignored),
        (None, _) => Err(format!("a JSON message without a type: {}", clip(text))),
    }
}

fn clip(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &mut Machine, s: &str) -> Result<Step, String> {
        m.on_text(s)
    }

    /// A result_part then a binary frame yields that part, and the pending state is cleared.
    #[test]
    fn announcement_then_binary_is_a_part() {
        let mut m = Machine::default();
        let ann = ServerMessage::result_part(PartName::XyzImages).to_json();
        assert!(matches!(text(&mut m, &ann), Ok(Step::Ignored)));
        assert!(m.is_pending());
        let part = m.on_binary(Bytes::from_static(b"png"), Instant::now()).unwrap();
        assert_eq!((part.name.as_str(), part.content_type.as_str()), ("xyz_images.png", "image/png"));
        assert_eq!(part.kind, Some(PartName::XyzImages));
        assert!(!m.is_pending());
        assert!(m.on_binary(Bytes::from_static(b"again"), Instant::now()).is_err());
    }

    /// A binary frame with nothing announced is a protocol error.
    #[test]
    fn binary_without_announcement_is_an_error() {
        let err = Machine::default().on_binary(Bytes::from_static(b"xx"), Instant::now()).unwrap_err();
        assert!(err.contains("no result_part"), "{err}");
    }

    /// A second announcement or `completed` while a part is pending is an error; `failed` ends it.
    #[test]
    fn text_while_pending() {
        let ann = ServerMessage::result_part(PartName::PixelImages).to_json();
        let mut m = Machine::default();
        text(&mut m, &ann).unwrap();
        assert!(text(&mut m, &ann).is_err());
        let mut m = Machine::default();
        text(&mut m, &ann).unwrap();
        assert!(text(&mut m, &ServerMessage::completed().to_json()).is_err());
        let mut m = Machine::default();
        text(&mut m, &ann).unwrap();
        let failed = ServerMessage::failed(FailureCode::Internal, "export broke").to_json();
        assert!(matches!(text(&mut m, &failed), Ok(Step::Failed { code: Some(FailureCode::Internal), .. })));
        assert!(!m.is_pending());
    }

    /// Unknown message types and failure codes of a newer server are tolerated; junk is not.
    #[test]
    fn lenient_parsing() {
        let mut m = Machine::default();
        assert!(matches!(text(&mut m, r#"{"type": "hint", "x": 1}"#), Ok(Step::Ignored)));
        let newer = r#"{"type": "status", "status": "failed", "error": "gpu on fire", "code": "melted"}"#;
        match text(&mut m, newer) {
            Ok(Step::Failed { error, code: Some(FailureCode::Unknown) }) => assert_eq!(error, "gpu on fire"),
            other => panic!("{other:?}"),
        }
        assert!(text(&mut m, "not json").is_err());
        assert!(text(&mut m, r#"{"status": "completed"}"#).is_err());
        assert!(text(&mut m, r#"{"type": "result_part", "name": 3}"#).is_err());
        assert!(matches!(
            text(&mut m, &ServerMessage::processing().to_json()),
            Ok(Step::Event(Event::Processing))
        ));
    }
}
