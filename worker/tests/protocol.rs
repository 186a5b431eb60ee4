//! The wire protocol end to end: a real WebSocket client over loopback against the real
//! gateway, in-process queue and worker loop (pipeline double), byte-comparing every frame.

mod common;

use std::io::Read;

use common::*;
use futures::SinkExt;
use img3d_gateway::GatewayConfig;
use tokio_tungstenite::tungstenite::Message;

/// A successful job is exactly processing, three announcement+bytes pairs, completed — with
/// the original server's JSON bytes — and the parts are what they claim to be.
#[tokio::test]
async fn successful_job_matches_the_protocol_bytes() {
    let server = start(GatewayConfig::default(), placeholder(30)).await;
    let mut ws = connect(server.addr, "").await;
    send_binary(&mut ws, png(300, 200, 1)).await;
    let parts = expect_success(&mut ws).await;
    for png in &parts[..2] {
        let img = image::load_from_memory_with_format(png, image::ImageFormat::Png).expect("a PNG");
        assert_eq!((img.width(), img.height()), (1536, 256));
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&parts[2])).expect("a zip");
    let mut obj = String::new();
    zip.by_name("mesh.obj").expect("an OBJ").read_to_string(&mut obj).unwrap();
    assert!(obj.contains("mtllib mesh.mtl"));
    assert!(zip.by_name("mesh.mtl").is_ok() && zip.by_name("mesh.png").is_ok());
}

/// One connection serves several jobs in sequence, each complete and in order.
#[tokio::test]
async fn three_jobs_on_one_connection() {
    let server = start(GatewayConfig::default(), placeholder(10)).await;
    let mut ws = connect(server.addr, "").await;
    let mut firsts = Vec::new();
    for seed in 0..3 {
        send_binary(&mut ws, png(40, 40, seed * 50)).await;
        firsts.push(expect_success(&mut ws).await.remove(0));
    }
    assert!(firsts[0] != firsts[1] && firsts[1] != firsts[2], "each job's parts come from its own image");
}

/// Queue position and stage progress messages reach only a client that asked with
/// `?events=progress`, and never break the core order.
#[tokio::test]
async fn progress_messages_only_when_opted_in() {
    let server = start(GatewayConfig::default(), placeholder(150)).await;
    let mut ws = connect(server.addr, "?events=progress").await;
    send_binary(&mut ws, png(32, 32, 3)).await;
    let (mut core, mut extra) = (Vec::new(), Vec::new());
    loop {
        match next_frame(&mut ws).await {
            Frame::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str().unwrap() {
                    "queued" | "progress" => extra.push(v),
                    _ => core.push(t.clone()),
                }
                if t == COMPLETED {
                    break;
                }
            }
            Frame::Binary(_) => core.push("<binary>".into()),
            f => panic!("unexpected {}", describe(&f)),
        }
    }
    let expected: Vec<String> = std::iter::once(PROCESSING.to_owned())
        .chain(ANNOUNCEMENTS.iter().flat_map(|a| [a.to_string(), "<binary>".to_owned()]))
        .chain(std::iter::once(COMPLETED.to_owned()))
        .collect();
    assert_eq!(core, expected);
    assert!(
        extra.iter().any(|v| v["type"] == "progress" && v["stage"] == "stage1"),
        "no progress: {extra:?}"
    );

    // The same job without the opt-in: the exact original sequence, nothing else.
    let mut plain = connect(server.addr, "").await;
    send_binary(&mut plain, png(32, 32, 3)).await;
    expect_success(&mut plain).await;
}

/// Pipelining as the original server did it (it read the next frame only after a job): an
/// image sent while a job runs becomes the next job; a further image and a text frame get
/// `bad_request` after that job, in arrival order; nothing lands inside a running job's stream.
#[tokio::test]
async fn image_sent_during_a_job_becomes_the_next_job() {
    let server = start(GatewayConfig::default(), placeholder(600)).await;
    let mut ws = connect(server.addr, "").await;
    send_binary(&mut ws, png(32, 32, 1)).await;
    assert_eq!(next_text(&mut ws).await, PROCESSING);
    // Wait until the first part arrives so the extra messages land mid-job.
    assert_eq!(next_text(&mut ws).await, ANNOUNCEMENTS[0]);
    let first = match next_frame(&mut ws).await {
        Frame::Binary(b) => b,
        f => panic!("expected the first part, got {}", describe(&f)),
    };
    ws.send(Message::Binary(png(32, 32, 90).into())).await.unwrap();
    ws.send(Message::Binary(png(8, 8, 3).into())).await.unwrap();
    ws.send(Message::Text("hello".into())).await.unwrap();

    // The running job ends intact: its two remaining parts, then completed.
    for announcement in &ANNOUNCEMENTS[1..] {
        assert_eq!(next_text(&mut ws).await, *announcement);
        let f = next_frame(&mut ws).await;
        assert!(matches!(f, Frame::Binary(_)), "announcement followed by {}", describe(&f));
    }
    assert_eq!(next_text(&mut ws).await, COMPLETED);
    // The waiting image is the next job, with its own result.
    let second = expect_success(&mut ws).await;
    assert_ne!(first, second[0], "the second job ran on the second image");
    // Then the two refusals, in order.
    for what in ["the third image", "the text frame"] {
        let (code, _) = expect_failed(&mut ws).await;
        assert_eq!(code, "bad_request", "{what}");
    }
    good_job(&mut ws).await;
}

/// `/healthz` and `/readyz` answer 200 with the pipeline described, and `/metrics` counts the
/// finished job in the Prometheus text format.
#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = start(GatewayConfig::default(), placeholder(10)).await;
    assert_eq!(http_get(server.addr, "/healthz").await.0, 200);
    let ready = ready(server.addr).await;
    assert!(ready.contains("model: ready: protocol test double"), "{ready}");

    let mut ws = connect(server.addr, "").await;
    good_job(&mut ws).await;
    let (status, body) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"img3d_jobs_total{code="",outcome="completed"} 1"#,
        "img3d_connected_clients 1",
        "img3d_queue_depth 0",
        r#"img3d_worker_jobs_total{code="",outcome="completed"} 1"#,
        r#"img3d_stage_duration_seconds_count{stage="stage1"} 1"#,
        r#"img3d_part_latency_seconds_count{part="output3d.zip"} 1"#,
        "img3d_validation_seconds_count 1",
        "img3d_queue_wait_seconds_count 1",
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?} in\n{body}");
    }
}
