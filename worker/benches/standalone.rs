//! What the service itself costs: the standalone server (real gateway, in-process queue,
//! worker loop) around a zero-time pipeline double, measured from a WebSocket client in another
//! process over loopback. Prints numbers; asserts nothing.
//!
//! `cargo bench -p img3d-worker --bench standalone`
//!
//! - jobs/s, p50/p99 latency per job (= the latency the service adds: the pipeline takes no
//!   time), MB/s streamed, for tiny parts and for realistic ones (2 x 1 MB PNG + 20 MB zip),
//!   beside the pipeline double called directly;
//! - the server's resident memory with 1,000 idle connections.
//!
//! The server runs in a child process (this executable with `IMG3D_BENCH_ROLE=server`) so its
//! memory and CPU are its own; client and server still share this machine's cores.

use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use img3d_gateway::{GatewayConfig, Metrics, Shutdown};
use img3d_protocol::PartName;
use img3d_worker::{JobSink, Pipeline, PipelineFailure};
use tokio_tungstenite::tungstenite::Message;

/// Returns the same three parts at once.
struct Fixed {
    parts: [Vec<u8>; 3],
}

impl Pipeline for Fixed {
    fn run(&self, _image: &[u8], sink: &mut dyn JobSink) -> Result<(), PipelineFailure> {
        for (name, bytes) in
            [PartName::PixelImages, PartName::XyzImages, PartName::Output3d].into_iter().zip(&self.parts)
        {
            // A real pipeline hands over freshly allocated buffers: copy, as it would.
            sink.part(name, bytes.clone())?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "bench double: fixed parts, zero time".into()
    }
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A 1536x256 PNG of noise (incompressible: about 1.2 MB, the size of a real views strip).
fn noise_png(seed: u64) -> Vec<u8> {
    let img = image::RgbImage::from_raw(1536, 256, noise(1536 * 256 * 3, seed)).unwrap();
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A zip holding `len` bytes of noise, stored.
fn noise_zip(len: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("mesh.obj", options).unwrap();
    zip.write_all(&noise(len, 3)).unwrap();
    zip.finish().unwrap().into_inner()
}

fn parts(kind: &str) -> [Vec<u8>; 3] {
    match kind {
        "realistic" => [noise_png(1), noise_png(2), noise_zip(20 << 20)],
        _ => [vec![1; 100], vec![2; 100], vec![3; 100]],
    }
}

fn server_main() {
    let kind = std::env::var("IMG3D_BENCH_PARTS").unwrap_or_default();
    let pipeline: Arc<dyn Pipeline> = Arc::new(Fixed { parts: parts(&kind) });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        let config = GatewayConfig { max_connections: 4096, max_queue: 4096, ..GatewayConfig::default() };
        let shutdown = Shutdown::new();
        shutdown.on_signals(Duration::from_secs(1));
        let load = Box::new(move || Ok(pipeline));
        serve_standalone(listener, config, load, shutdown).await;
    });
}

async fn serve_standalone(
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
    load: img3d_worker::standalone::Loader,
    shutdown: Shutdown,
) {
    let metrics = Arc::new(Metrics::new());
    img3d_worker::standalone::serve_standalone(listener, config, load, shutdown, metrics).await.unwrap();
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(kind: &str) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("IMG3D_BENCH_ROLE", "server")
            .env("IMG3D_BENCH_PARTS", kind)
            .env("IMG3D_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap().parse().unwrap();
        Server { child, addr }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr) -> Ws {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/generate3d"), Some(config), true)
        .await
        .unwrap()
        .0
}

/// One job: returns (seconds, bytes of parts received).
async fn job(ws: &mut Ws, image: &[u8]) -> (f64, usize) {
    let start = Instant::now();
    ws.send(Message::Binary(image.to_vec().into())).await.unwrap();
    let mut bytes = 0;
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(b) => bytes += b.len(),
            Message::Text(t) if t.contains("completed") => return (start.elapsed().as_secs_f64(), bytes),
            Message::Text(t) if t.contains("failed") => panic!("job failed: {t}"),
            _ => {}
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn throughput(kind: &str, jobs: usize, connections: usize) {
    let server = Server::start(kind);
    let image = {
        let img = image::RgbImage::from_fn(512, 512, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        Arc::new(out.into_inner())
    };
    // Warm up (connection setup, allocator).
    let mut ws = connect(server.addr).await;
    for _ in 0..3 {
        job(&mut ws, &image).await;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (addr, image) = (server.addr, image.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(addr).await;
            let mut out = Vec::new();
            for _ in 0..jobs / connections {
                out.push(job(&mut ws, &image).await);
            }
            out
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.unwrap());
    }
    let wall = start.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = results.iter().map(|r| r.0).collect();
    latencies.sort_by(f64::total_cmp);
    let bytes: usize = results.iter().map(|r| r.1).sum();
    println!(
        "{kind:>9} parts, {connections} connection(s), {} jobs: {:7.1} jobs/s  p50 {:7.2} ms  p99 {:7.2} ms  {:7.1} MB/s  (server RSS after: {} MiB)",
        results.len(),
        results.len() as f64 / wall,
        percentile(&latencies, 0.5) * 1e3,
        percentile(&latencies, 0.99) * 1e3,
        bytes as f64 / wall / 1e6,
        server.rss_kib() / 1024,
    );
}

fn direct(kind: &str, jobs: usize) {
    struct Discard;
    impl JobSink for Discard {
        fn is_cancelled(&self) -> bool {
            false
        }
        fn progress(&mut self, _: img3d_protocol::ProgressStage, _: u32, _: u32) {}
        fn part(&mut self, _: PartName, bytes: Vec<u8>) -> Result<(), PipelineFailure> {
            std::hint::black_box(bytes);
            Ok(())
        }
    }
    let pipeline = Fixed { parts: parts(kind) };
    let start = Instant::now();
    for _ in 0..jobs {
        pipeline.run(&[], &mut Discard).unwrap();
    }
    let per_job = start.elapsed().as_secs_f64() / jobs as f64;
    println!(
        "{kind:>9} parts, the pipeline double called directly (no service): {:7.3} ms per job",
        per_job * 1e3
    );
}

async fn idle_connections(n: usize) {
    let server = Server::start("tiny");
    let before = server.rss_kib();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(connect(server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    println!(
        "server RSS: {} MiB idle, {} MiB with {n} idle connections ({:.1} KiB per connection)",
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / n as f64
    );
    drop(held);
}

fn main() {
    if std::env::var("IMG3D_BENCH_ROLE").is_ok_and(|r| r == "server") {
        return server_main();
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list
    }
    let needed = 2 * 1000 + 100;
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    if soft < needed {
        rlimit::Resource::NOFILE.set(needed.min(hard), hard).unwrap();
    }
    println!("img3d standalone service bench (loopback; client and server share the machine)");
    direct("tiny", 1000);
    direct("realistic", 20);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        throughput("tiny", 1000, 1).await;
        throughput("tiny", 1000, 8).await;
        throughput("realistic", 40, 1).await;
        throughput("realistic", 40, 4).await;
        idle_connections(1000).await;
    });
}
