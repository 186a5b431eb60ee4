//! Job lifecycle through the real stack: disconnects, deadlines, a full queue, a panicking
//! pipeline, idle connections, a model that fails to load, and an in-process drain.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use img3d_gateway::GatewayConfig;
use img3d_protocol::JobOptions;
use img3d_queue::Failure;
use img3d_worker::{JobRunner, JobSink};

/// Reads frames until a `queued` message (the client opted in), proving the job is in line.
async fn until_queued(ws: &mut Ws) {
    loop {
        let t = next_text(ws).await;
        if t.contains(r#""type": "queued""#) {
            return;
        }
        assert!(t == PROCESSING, "unexpected {t}");
    }
}

async fn metric(server: &Server, line: &str) -> bool {
    http_get(server.addr, "/metrics").await.1.lines().any(|l| l == line)
}

/// A job whose client disconnects while it waits in the queue never starts.
#[tokio::test]
async fn disconnect_while_queued_never_starts() {
    let gate = Arc::new(Gate::default());
    let server = start(GatewayConfig::default(), gate.clone()).await;
    let mut a = connect(server.addr, "").await;
    send_binary(&mut a, png(16, 16, 1)).await;
    eventually("job A to start", || gate.started() == 1).await;

    let mut b = connect(server.addr, "?events=progress").await;
    send_binary(&mut b, png(16, 16, 2)).await;
    until_queued(&mut b).await;
    b.close(None).await.unwrap();
    while !metric(&server, "img3d_queue_depth 0").await {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    gate.release(1);
    expect_success(&mut a).await;
    send_binary(&mut a, png(16, 16, 3)).await;
    gate.release(1);
    expect_success(&mut a).await;
    let started = gate.started.lock().unwrap().clone();
    assert_eq!(started, vec![png(16, 16, 1), png(16, 16, 3)], "the abandoned job ran");
}

/// A running job whose client disconnects stops at the pipeline's next check, and the next
/// job starts promptly.
#[tokio::test]
async fn disconnect_while_running_stops_the_job() {
    let gate = Arc::new(Gate::default());
    let server = start(GatewayConfig::default(), gate.clone()).await;
    let mut a = connect(server.addr, "").await;
    send_binary(&mut a, png(16, 16, 1)).await;
    eventually("job A to start", || gate.started() == 1).await;
    drop(a);
    eventually("the pipeline to see the cancellation", || gate.cancelled() == 1).await;

    let mut b = connect(server.addr, "").await;
    gate.release(1);
    good_job(&mut b).await;
}

/// A job past its deadline fails with `timeout`, and the pipeline is told to stop.
#[tokio::test]
async fn deadline_expiry_fails_with_timeout() {
    let gate = Arc::new(Gate::default());
    let config = GatewayConfig { job_timeout: Duration::from_millis(400), ..GatewayConfig::default() };
    let server = start(config, gate.clone()).await;
    let mut ws = connect(server.addr, "").await;
    send_binary(&mut ws, png(16, 16, 1)).await;
    let (code, reason) = expect_failed(&mut ws).await;
    assert_eq!(code, "timeout", "{reason}");
    eventually("the pipeline to see the cancellation", || gate.cancelled() == 1).await;
}

/// Past the queue bound a new image is answered at once with `busy`.
#[tokio::test]
async fn full_queue_answers_busy() {
    let gate = Arc::new(Gate::default());
    let config = GatewayConfig { max_queue: 1, ..GatewayConfig::default() };
    let server = start(config, gate.clone()).await;
    let mut a = connect(server.addr, "").await;
    send_binary(&mut a, png(16, 16, 1)).await;
    eventually("job A to start", || gate.started() == 1).await;
    let mut b = connect(server.addr, "?events=progress").await;
    send_binary(&mut b, png(16, 16, 2)).await;
    until_queued(&mut b).await;

    let mut c = connect(server.addr, "").await;
    send_binary(&mut c, png(16, 16, 3)).await;
    let (code, reason) = expect_failed(&mut c).await;
    assert_eq!(code, "busy");
    assert!(reason.contains("retry later"), "{reason}");
    gate.release(2);
    expect_success(&mut a).await;
}

/// Panics on its first job, then works.
struct PanicOnce(std::sync::atomic::AtomicBool);

impl JobRunner for PanicOnce {
    fn run(&self, image: &[u8], options: &JobOptions, sink: &mut dyn JobSink) -> Result<(), Failure> {
        if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("boom: a shape mismatch deep in the model");
        }
        double::PlaceholderPipeline { delay: Duration::ZERO, output_bytes: 0 }.run(image, options, sink)
    }

    fn describe(&self) -> String {
        "panics once".into()
    }
}

/// A panicking pipeline fails its job with `internal` (no internals leaked) and the worker
/// keeps serving.
#[tokio::test]
async fn panicking_pipeline_fails_the_job_not_the_worker() {
    let server = start(GatewayConfig::default(), Arc::new(PanicOnce(Default::default()))).await;
    let mut ws = connect(server.addr, "").await;
    send_binary(&mut ws, png(16, 16, 1)).await;
    let (code, reason) = expect_failed(&mut ws).await;
    assert_eq!(code, "internal");
    assert!(!reason.contains("boom"), "panic text leaked to the client: {reason}");
    good_job(&mut ws).await;
}

/// A connection with no image for the idle timeout is closed normally (1000).
#[tokio::test]
async fn idle_connection_is_closed() {
    let config = GatewayConfig { idle_timeout: Duration::from_millis(300), ..GatewayConfig::default() };
    let server = start(config, placeholder(0)).await;
    let mut ws = connect(server.addr, "").await;
    good_job(&mut ws).await; // activity resets the idle clock
    assert_eq!(next_frame(&mut ws).await, Frame::Closed(Some(1000)));
}

/// A model that fails to load: `/readyz` is 503 and says the model failed; images get
/// `unavailable` with a sentence. Neither shows the error itself (paths, devices): the log does.
#[tokio::test]
async fn failed_model_load_is_reported() {
    let load = Box::new(|| Err(anyhow::anyhow!("weights not found in /models/crm")));
    let server = start_loading(GatewayConfig::default(), load).await;
    let mut status = (0, String::new());
    for _ in 0..500 {
        status = http_get(server.addr, "/readyz").await;
        if status.1.contains("failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status.0, 503);
    assert!(status.1.contains("model: failed"), "{}", status.1);
    assert!(!status.1.contains("/models/crm"), "internals on /readyz: {}", status.1);
    let mut ws = connect(server.addr, "").await;
    send_binary(&mut ws, png(16, 16, 1)).await;
    let (code, reason) = expect_failed(&mut ws).await;
    assert_eq!(code, "unavailable");
    assert!(reason.contains("model") && !reason.contains("/models/crm"), "{reason}");
}

/// Drain: readiness turns 503 at once, the running job completes, its connection is then
/// closed (1001), and the server stops.
#[tokio::test]
async fn drain_lets_the_running_job_finish() {
    let gate = Arc::new(Gate::default());
    let server = start(GatewayConfig::default(), gate.clone()).await;
    ready(server.addr).await;
    let mut ws = connect(server.addr, "").await;
    send_binary(&mut ws, png(16, 16, 1)).await;
    eventually("the job to start", || gate.started() == 1).await;
    server.shutdown.begin(Duration::from_secs(30));
    let (status, body) = http_get(server.addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");
    gate.release(1);
    expect_success(&mut ws).await;
    assert_eq!(next_frame(&mut ws).await, Frame::Closed(Some(1001)));
    tokio::time::timeout(LIMIT, server.task).await.expect("server stops").unwrap().unwrap();
}

/// Drain past its deadline: the running job fails with `unavailable` and the server stops.
#[tokio::test]
async fn drain_deadline_fails_the_running_job() {
    let gate = Arc::new(Gate::default());
    let server = start(GatewayConfig::default(), gate.clone()).await;
    let mut ws = connect(server.addr, "").await;
    send_binary(&mut ws, png(16, 16, 1)).await;
    eventually("the job to start", || gate.started() == 1).await;
    server.shutdown.begin(Duration::from_millis(200));
    let (code, _) = expect_failed(&mut ws).await;
    assert_eq!(code, "unavailable");
    tokio::time::timeout(LIMIT, server.task).await.expect("server stops").unwrap().unwrap();
    eventually("the pipeline to be stopped", || gate.cancelled() == 1).await;
}

/// Past `--max-connections`, upgrade requests get HTTP 503; a freed slot serves again.
#[tokio::test]
async fn connection_limit_answers_503() {
    let config = GatewayConfig { max_connections: 1, ..GatewayConfig::default() };
    let server = start(config, placeholder(0)).await;
    let first = connect(server.addr, "").await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/generate3d", server.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    drop(first);
    let mut ws = None;
    for _ in 0..200 {
        if let Ok((c, _)) = tokio_tungstenite::connect_async(format!("ws://{}/generate3d", server.addr)).await
        {
            ws = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    good_job(&mut ws.expect("the slot was never freed")).await;
}

/// A client that completes the handshake and then never answers pings is dropped after one
/// ping interval plus the ping timeout.
#[tokio::test]
async fn silent_peer_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = GatewayConfig {
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(100),
        ..GatewayConfig::default()
    };
    let server = start(config, placeholder(0)).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(
        b"GET /generate3d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    // Read (and ignore) the handshake and pings, never answering, until the server hangs up.
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(LIMIT, tcp.read(&mut buf)).await.expect("the server never hung up") {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(200), "dropped too early: {:?}", started.elapsed());
}
