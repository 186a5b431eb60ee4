//! The wire bytes of every message, compared with what Python's `json.dumps` printed for the
//! same dict (python3 -c 'import json; print(json.dumps({...}))').

use img3d_protocol::{ClientOptions, FailureCode, PartName, ProgressStage, ServerMessage, Status};

/// The three core status messages are byte-identical to the original server's.
#[test]
fn status_messages_match_python_bytes() {
    assert_eq!(ServerMessage::processing().to_json(), r#"{"type": "status", "status": "processing"}"#);
    assert_eq!(ServerMessage::completed().to_json(), r#"{"type": "status", "status": "completed"}"#);
    assert_eq!(
        ServerMessage::failed(FailureCode::InvalidImage, "not an image").to_json(),
        r#"{"type": "status", "status": "failed", "error": "not an image", "code": "invalid_image"}"#
    );
}

/// Each result_part announcement is byte-identical to the original server's.
#[test]
fn result_part_messages_match_python_bytes() {
    let expected = [
        r#"{"type": "result_part", "name": "pixel_images.png", "content_type": "image/png"}"#,
        r#"{"type": "result_part", "name": "xyz_images.png", "content_type": "image/png"}"#,
        r#"{"type": "result_part", "name": "output3d.zip", "content_type": "application/zip"}"#,
    ];
    for (part, want) in img3d_protocol::PARTS.into_iter().zip(expected) {
        assert_eq!(ServerMessage::result_part(part).to_json(), want);
    }
}

/// Non-ASCII and control characters are escaped as json.dumps(ensure_ascii=True) does:
/// json.dumps({"error": "bild.jpg ü 😀\n\x01"}) == '{"error": "bild.jpg \\u00fc \\ud83d\\ude00\\n\\u0001"}'
#[test]
fn escapes_like_python() {
    let msg = ServerMessage::failed(FailureCode::Internal, "bild.jpg \u{fc} \u{1F600}\n\u{1}");
    assert_eq!(
        msg.to_json(),
        r#"{"type": "status", "status": "failed", "error": "bild.jpg \u00fc \ud83d\ude00\n\u0001", "code": "internal"}"#
    );
    assert_eq!(ServerMessage::from_json(&msg.to_json()).unwrap(), msg);
}

/// Messages parse back, including a `failed` from a server without the `code` field and
/// unknown extra fields.
#[test]
fn parses_old_and_extended_messages() {
    let old = ServerMessage::from_json(r#"{"type": "status", "status": "failed", "error": "boom"}"#).unwrap();
    assert_eq!(old, ServerMessage::Status(Status::Failed { error: "boom".into(), code: None }));
    let extra = ServerMessage::from_json(
        r#"{"type":"result_part","name":"xyz_images.png","content_type":"image/png","size":3}"#,
    )
    .unwrap();
    assert_eq!(extra, ServerMessage::result_part(PartName::XyzImages));
    let progress = ServerMessage::Progress { stage: ProgressStage::Stage1, step: 3, total: 50 };
    assert_eq!(progress.to_json(), r#"{"type": "progress", "stage": "stage1", "step": 3, "total": 50}"#);
    assert_eq!(ServerMessage::from_json(&progress.to_json()).unwrap(), progress);
}

/// A failure code from a newer server still parses (as `Unknown`, with its reason intact), so
/// adding a code never breaks deployed clients.
#[test]
fn unknown_failure_code_parses() {
    let newer = ServerMessage::from_json(
        r#"{"type": "status", "status": "failed", "error": "gpu fell off", "code": "gpu_lost"}"#,
    )
    .unwrap();
    assert_eq!(
        newer,
        ServerMessage::Status(Status::Failed {
            error: "gpu fell off".into(),
            code: Some(FailureCode::Unknown)
        })
    );
    assert!(!FailureCode::Unknown.is_retryable());
}

/// Progress and queue messages reach only clients that opted in.
#[test]
fn opt_in_filters_extra_types() {
    let strict = ClientOptions::from_query(None);
    let opted = ClientOptions::from_query(Some("foo=1&events=progress"));
    assert!(!strict.progress_events && opted.progress_events);
    let queued = ServerMessage::Queued { position: 2 };
    assert!(!strict.allows(&queued) && opted.allows(&queued));
    assert!(strict.allows(&ServerMessage::completed()));
    assert!(!ClientOptions::from_query(Some("events=progressive")).progress_events);
}
