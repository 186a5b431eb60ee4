//! Validation at the gateway: every kind of bad input gets `failed` with a clear reason and a
//! code, nothing is queued, and the same connection then serves a good job.

mod common;

use common::*;
use futures::SinkExt;
use img3d_gateway::GatewayConfig;
use tokio_tungstenite::tungstenite::Message;

fn small_limits() -> GatewayConfig {
    GatewayConfig { max_image_size: 1 << 20, max_frame_size: 4 << 20, ..GatewayConfig::default() }
}

/// Sends `bytes`, expects `failed` with `code`, returns the reason; then a good job must pass.
async fn refused_then_good(ws: &mut Ws, bytes: Vec<u8>, code: &str) -> String {
    send_binary(ws, bytes).await;
    let (got, reason) = expect_failed(ws).await;
    assert_eq!(got, code, "reason: {reason}");
    good_job(ws).await;
    reason
}

/// A PNG whose header announces `w`x`h` pixels but holds almost no data: a decompression
/// bomb's header (the CRC is valid, so only the pixel limit can refuse it).
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut real = png(4, 4, 0);
    // IHDR data starts at byte 16: width, height (big-endian), then its CRC at 29..33.
    real[16..20].copy_from_slice(&w.to_be_bytes());
    real[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&real[12..29]);
    real[29..33].copy_from_slice(&crc.to_be_bytes());
    real
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Text, empty, non-image, truncated PNG and JPEG, and bomb inputs each get a clear `failed`
/// with the right code, and the connection keeps serving good jobs after each.
#[tokio::test]
async fn bad_inputs_are_refused_and_the_connection_keeps_serving() {
    let server = start(small_limits(), placeholder(0)).await;
    let mut ws = connect(server.addr, "").await;

    ws.send(Message::Text("here is my image".into())).await.unwrap();
    let (code, reason) = expect_failed(&mut ws).await;
    assert_eq!(code, "bad_request");
    assert!(reason.contains("binary frame"), "{reason}");
    good_job(&mut ws).await;

    let reason = refused_then_good(&mut ws, Vec::new(), "invalid_image").await;
    assert!(reason.contains("empty"), "{reason}");
    let reason =
        refused_then_good(&mut ws, b"definitely not an image, just text bytes".to_vec(), "invalid_image")
            .await;
    assert!(reason.contains("not an image"), "{reason}");
    let whole = png(200, 200, 9);
    let reason = refused_then_good(&mut ws, whole[..whole.len() / 2].to_vec(), "invalid_image").await;
    assert!(reason.contains("PNG image could not be decoded"), "{reason}");
    let whole = jpeg(200, 200);
    let reason = refused_then_good(&mut ws, whole[..whole.len() * 2 / 3].to_vec(), "invalid_image").await;
    assert!(reason.contains("JPEG"), "{reason}");
    let reason = refused_then_good(&mut ws, bomb_png(100_000, 100_000), "too_large").await;
    assert!(reason.contains("100000x100000 pixels"), "{reason}");
    // Nothing above reached the worker: only the good jobs did.
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == r#"img3d_worker_jobs_total{code="",outcome="completed"} 6"#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"img3d_worker_jobs_total{code="invalid_image""#), "{metrics}");
}

/// A JPEG passes validation (not only PNG).
#[tokio::test]
async fn jpeg_is_accepted() {
    let server = start(small_limits(), placeholder(0)).await;
    let mut ws = connect(server.addr, "").await;
    send_binary(&mut ws, jpeg(120, 90)).await;
    expect_success(&mut ws).await;
}

/// An image over the size limit gets `failed` (too_large) on a connection that keeps serving;
/// one over the transport limit gets `failed` and a 1009 close, and the server keeps serving
/// new connections.
#[tokio::test]
async fn oversized_frames_get_failed() {
    let server = start(small_limits(), placeholder(0)).await;
    let mut ws = connect(server.addr, "").await;
    let reason = refused_then_good(&mut ws, vec![0x89; 3 << 20], "too_large").await;
    assert!(reason.contains("at most 1048576 bytes"), "{reason}");

    // Over the transport limit the server stops reading at the frame header: it sends `failed`
    // and closes with 1009, but a client still pushing its bytes may see only the reset.
    use futures::StreamExt;
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move { tx.send(Message::Binary(vec![0u8; 6 << 20].into())).await });
    let mut seen = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(LIMIT, rx.next()).await {
        seen.push(msg.clone());
        if msg.is_close() {
            break;
        }
    }
    let _ = sender.await;
    let texts: Vec<String> =
        seen.iter().filter(|m| m.is_text()).map(|m| m.to_text().unwrap().to_owned()).collect();
    assert!(texts.iter().all(|t| t.contains(r#""code": "too_large""#)), "unexpected frames: {seen:?}");
    let mut again = connect(server.addr, "").await;
    good_job(&mut again).await;
}

/// With the default limits, a frame one byte over 20 MB is answered with `failed` too_large
/// and the connection keeps serving.
#[tokio::test]
async fn default_limit_is_20_mb() {
    let server = start(GatewayConfig::default(), placeholder(0)).await;
    let mut ws = connect(server.addr, "").await;
    let reason = refused_then_good(&mut ws, vec![7; 20_000_001], "too_large").await;
    assert!(reason.contains("20000001 bytes"), "{reason}");
}
