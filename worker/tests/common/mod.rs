//! Helpers for the service tests: an in-process standalone server with a pipeline double, a
//! real WebSocket client over loopback, images, and raw HTTP GETs.
#![allow(dead_code)] // each test file uses a different subset

#[path = "../../examples/protocol-server/double.rs"]
pub mod double;

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use img3d_gateway::GatewayConfig;
use img3d_service::{Metrics, Shutdown};
use img3d_worker::standalone::serve_standalone;
use img3d_worker::JobRunner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound on any single wait in these tests: a broken server fails a test, never hangs it.
pub const LIMIT: Duration = Duration::from_secs(20);

/// A running in-process standalone server.
pub struct Server {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub metrics: Arc<Metrics>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts gateway + in-process queue + worker loop around `pipeline` on 127.0.0.1:0.
pub async fn start(config: GatewayConfig, pipeline: Arc<dyn JobRunner>) -> Server {
    start_loading(config, Box::new(move || Ok(pipeline))).await
}

/// [`start`] with a model loader (which may fail).
pub async fn start_loading(config: GatewayConfig, load: img3d_worker::standalone::Loader) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let metrics = Arc::new(Metrics::new());
    let task = tokio::spawn(serve_standalone(listener, config, load, shutdown.clone(), metrics.clone()));
    Server { addr, shutdown, metrics, task }
}

/// The placeholder double with `delay_ms` per job.
pub fn placeholder(delay_ms: u64) -> Arc<dyn JobRunner> {
    Arc::new(double::PlaceholderPipeline { delay: Duration::from_millis(delay_ms), output_bytes: 0 })
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `/generate3d` with `query` (e.g. "" or "?events=progress").
pub async fn connect(addr: SocketAddr, query: &str) -> Ws {
    let url = format!("ws://{addr}/generate3d{query}");
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    let (ws, _) =
        tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async_with_config(url, Some(config), false))
            .await
            .expect("connect timed out")
            .expect("connect failed");
    ws
}

/// A frame from the server, pings and pongs skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// The server closed (with its close code, if any) or the connection dropped.
    Closed(Option<u16>),
}

/// The next frame from the server, within [`LIMIT`].
pub async fn next_frame(ws: &mut Ws) -> Frame {
    loop {
        let msg = tokio::time::timeout(LIMIT, ws.next()).await.expect("no frame from the server in time");
        return match msg {
            Some(Ok(Message::Text(t))) => Frame::Text(t.to_string()),
            Some(Ok(Message::Binary(b))) => Frame::Binary(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => Frame::Closed(frame.map(|f| u16::from(f.code))),
            Some(Err(_)) | None => Frame::Closed(None),
        };
    }
}

/// The next frame, which must be text.
pub async fn next_text(ws: &mut Ws) -> String {
    match next_frame(ws).await {
        Frame::Text(t) => t,
        other => panic!("expected a text frame, got {}", describe(&other)),
    }
}

pub fn describe(f: &Frame) -> String {
    match f {
        Frame::Binary(b) => format!("a binary frame of {} bytes", b.len()),
        other => format!("{other:?}"),
    }
}

pub async fn send_binary(ws: &mut Ws, bytes: Vec<u8>) {
    ws.send(Message::Binary(bytes.into())).await.expect("send");
}

pub const PROCESSING: &str = r#"{"type": "status", "status": "processing"}"#;
pub const COMPLETED: &str = r#"{"type": "status", "status": "completed"}"#;
pub const ANNOUNCEMENTS: [&str; 3] = [
    r#"{"type": "result_part", "name": "pixel_images.png", "content_type": "image/png"}"#,
    r#"{"type": "result_part", "name": "xyz_images.png", "content_type": "image/png"}"#,
    r#"{"type": "result_part", "name": "output3d.zip", "content_type": "application/zip"}"#,
];

/// Reads one whole successful job (after the image was sent), byte-comparing every text frame
/// with the original server's, and returns the three parts.
pub async fn expect_success(ws: &mut Ws) -> Vec<Vec<u8>> {
    assert_eq!(next_text(ws).await, PROCESSING);
    let mut parts = Vec::new();
    for announcement in ANNOUNCEMENTS {
        assert_eq!(next_text(ws).await, announcement);
        match next_frame(ws).await {
            Frame::Binary(b) => parts.push(b),
            other => panic!("expected the part's bytes, got {}", describe(&other)),
        }
    }
    assert_eq!(next_text(ws).await, COMPLETED);
    parts
}

/// Reads frames until a `failed` status and returns (code, error); panics on anything else
/// than `processing` before it.
pub async fn expect_failed(ws: &mut Ws) -> (String, String) {
    loop {
        let text = next_text(ws).await;
        if text == PROCESSING {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["status"], "failed", "expected failed, got {text}");
        return (v["code"].as_str().unwrap().to_owned(), v["error"].as_str().unwrap().to_owned());
    }
}

/// Sends a valid image and expects a whole successful job.
pub async fn good_job(ws: &mut Ws) -> Vec<Vec<u8>> {
    send_binary(ws, png(64, 48, 7)).await;
    expect_success(ws).await
}

/// A `w`x`h` RGB PNG with a pattern seeded by `seed`.
pub fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 ^ seed, y as u8, seed]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A `w`x`h` JPEG.
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 99]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// `GET path` over raw HTTP/1.1; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&raw).into_owned())
    };
    let text = tokio::time::timeout(LIMIT, fut).await.expect("HTTP timed out").expect("HTTP failed");
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Waits until `cond` holds, polling every 10 ms, for at most [`LIMIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `/readyz` until it answers 200 (the model loads in the background); returns the body.
pub async fn ready(addr: SocketAddr) -> String {
    let until = tokio::time::Instant::now() + LIMIT;
    loop {
        let (status, body) = http_get(addr, "/readyz").await;
        if status == 200 {
            return body;
        }
        assert!(tokio::time::Instant::now() < until, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pipeline that holds each job until released, records each job's input and options, and
/// notices cancellation the way a diffusion loop does (between steps).
#[derive(Default)]
pub struct Gate {
    pub started: std::sync::Mutex<Vec<Vec<u8>>>,
    pub options: std::sync::Mutex<Vec<img3d_protocol::JobOptions>>,
    permits: std::sync::atomic::AtomicUsize,
    pub cancelled: std::sync::atomic::AtomicUsize,
}

impl Gate {
    /// Lets `n` more jobs finish.
    pub fn release(&self, n: usize) {
        self.permits.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn started(&self) -> usize {
        self.started.lock().unwrap().len()
    }

    pub fn cancelled(&self) -> usize {
        self.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl JobRunner for Gate {
    fn run(
        &self,
        image: &[u8],
        options: &img3d_protocol::JobOptions,
        sink: &mut dyn img3d_worker::JobSink,
    ) -> Result<(), img3d_queue::Failure> {
        use std::sync::atomic::Ordering::SeqCst;
        self.started.lock().unwrap().push(image.to_vec());
        self.options.lock().unwrap().push(options.clone());
        loop {
            if sink.is_cancelled() {
                self.cancelled.fetch_add(1, SeqCst);
                return Err(img3d_queue::Failure::cancelled());
            }
            if self.permits.fetch_update(SeqCst, SeqCst, |p| p.checked_sub(1)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        double::PlaceholderPipeline { delay: Duration::ZERO, output_bytes: 0 }.run(image, options, sink)
    }

    fn describe(&self) -> String {
        "test gate (placeholder parts)".into()
    }
}
