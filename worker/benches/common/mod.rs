//! What the service benches share: the zero-time pipeline double and its parts, the server
//! processes they measure (this bench executable again, in a child role), and the WebSocket
//! client that measures jobs/s, latency and MB/s.
//!
//! Child roles (`IMG3D_BENCH_ROLE`), each printing `listening on ADDR` as its one stdout line:
//! - `server`: the standalone server (gateway + in-process queue + worker loop);
//! - `gateway`: the Redis gateway, as `img3d-gateway` runs it (`IMG3D_BENCH_REDIS`,
//!   `IMG3D_BENCH_PREFIX`);
//! - `worker`: a Redis queue worker, as `img3d-worker` runs it, around the same double.
//!
//! `IMG3D_BENCH_PARTS` (`tiny` or `realistic`) picks the double's parts in every role.

// Each bench uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use img3d_gateway::{Gateway, GatewayConfig};
use img3d_protocol::PartName;
use img3d_queue::redis::{RedisConfig, RedisJobQueue, RedisWorkQueue};
use img3d_queue::Failure;
use img3d_queue::{QueueProbe, WorkQueue};
use img3d_service::{Health, Metrics, Shutdown};
use img3d_worker::standalone::Loader;
use img3d_worker::{JobRunner, JobSink};
use tokio_tungstenite::tungstenite::Message;

/// Returns the same three parts at once.
pub struct Fixed {
    pub parts: [Vec<u8>; 3],
}

impl JobRunner for Fixed {
    fn run(
        &self,
        _image: &[u8],
        _options: &img3d_protocol::JobOptions,
        sink: &mut dyn JobSink,
    ) -> Result<(), Failure> {
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

/// The double's parts: `realistic` (2 x ~1.2 MB PNG + 20 MB zip) or tiny (3 x 100 bytes).
pub fn parts(kind: &str) -> [Vec<u8>; 3] {
    match kind {
        "realistic" => [noise_png(1), noise_png(2), noise_zip(20 << 20)],
        _ => [vec![1; 100], vec![2; 100], vec![3; 100]],
    }
}

/// The client's input: a 512x512 gradient PNG.
pub fn input_png() -> Arc<Vec<u8>> {
    let img = image::RgbImage::from_fn(512, 512, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    Arc::new(out.into_inner())
}

/// Runs the child role this process was started in, if any; true when it did (the caller
/// then returns from `main`).
pub fn run_child_role() -> bool {
    let Ok(role) = std::env::var("IMG3D_BENCH_ROLE") else { return false };
    let kind = std::env::var("IMG3D_BENCH_PARTS").unwrap_or_default();
    let pipeline: Arc<dyn JobRunner> = Arc::new(Fixed { parts: parts(&kind) });
    let load: Loader = Box::new(move || Ok(pipeline));
    let redis = || {
        let url = std::env::var("IMG3D_BENCH_REDIS").expect("IMG3D_BENCH_REDIS");
        RedisConfig::new(url, std::env::var("IMG3D_BENCH_PREFIX").expect("IMG3D_BENCH_PREFIX"))
    };
    let config = GatewayConfig { max_connections: 4096, max_queue: 4096, ..GatewayConfig::default() };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = Shutdown::new();
        shutdown.on_signals(Duration::from_secs(1));
        let metrics = Arc::new(Metrics::new());
        match role.as_str() {
            "server" => {
                println!("listening on {}", listener.local_addr().unwrap());
                img3d_worker::standalone::serve_standalone(listener, config, load, shutdown, metrics)
                    .await
                    .unwrap();
            }
            "gateway" => {
                // As `img3d-gateway` wires it.
                let mut cfg = redis();
                cfg.max_queue_len = config.max_queue;
                let queue = RedisJobQueue::connect(cfg).await.expect("the gateway cannot reach Redis");
                let health = Arc::new(Health::new());
                let gateway = Gateway::new(config, Arc::new(queue), health, metrics, shutdown);
                println!("listening on {}", listener.local_addr().unwrap());
                img3d_gateway::serve(listener, gateway).await.unwrap();
            }
            "worker" => {
                // As `img3d-worker` in queue-worker mode wires it.
                let queue =
                    Arc::new(RedisWorkQueue::connect(redis()).await.expect("the worker cannot reach Redis"));
                let (work, probe): (Arc<dyn WorkQueue>, Arc<dyn QueueProbe>) = (queue.clone(), queue);
                println!("listening on {}", listener.local_addr().unwrap());
                img3d_worker::standalone::serve_queue_worker(
                    listener,
                    work,
                    Some(probe),
                    load,
                    shutdown,
                    metrics,
                )
                .await
                .unwrap();
            }
            other => panic!("unknown IMG3D_BENCH_ROLE {other}"),
        }
    });
    true
}

/// A child process of this executable in a role; killed on drop.
pub struct Proc {
    child: Child,
    /// The address it printed.
    pub addr: SocketAddr,
}

impl Proc {
    /// Starts this executable in `role` with the double's `kind` of parts and `env`, and waits
    /// for its address line.
    pub fn start(role: &str, kind: &str, env: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.env("IMG3D_BENCH_ROLE", role).env("IMG3D_BENCH_PARTS", kind).envs(env.iter().copied());
        Proc::spawn(command, role)
    }

    /// Starts `command` (any server that prints `listening on ADDR` as its first stdout line,
    /// such as the `protocol-server` example of another build), logging errors only, and
    /// waits for its address line.
    pub fn spawn(mut command: Command, what: &str) -> Proc {
        let mut child = command
            .env("IMG3D_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {what} server: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            panic!("the {what} server did not start (its stderr is above)");
        };
        Proc { addr: addr.parse().unwrap(), child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn status_kib(&self, field: &str) -> u64 {
        img3d_testkit::process::status_bytes(self.child.id(), field) >> 10
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// Peak resident memory since the process started (VmHWM), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// CPU time the process has used, all threads, user plus system, in milliseconds.
    pub fn cpu_ms(&self) -> f64 {
        cpu_ms(&format!("/proc/{}/stat", self.child.id()))
    }
}

/// User plus system CPU time from a `/proc/.../stat` file, in milliseconds.
pub fn cpu_ms(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap();
    // Fields after the command name (which may hold spaces), from field 3 (state) on:
    // utime is field 14, stime field 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 * 1000.0 / clock_ticks_per_s() as f64
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), the unit of `/proc/PID/stat` times.
fn clock_ticks_per_s() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().expect("running getconf CLK_TCK");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("getconf CLK_TCK printed a number")
    })
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises the open-file limit to at least `needed` (idle-connection runs).
pub fn raise_nofile(needed: u64) {
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    if soft < needed {
        rlimit::Resource::NOFILE.set(needed.min(hard), hard).unwrap();
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(addr: SocketAddr) -> Ws {
    connect_with_key(addr, None).await
}

/// A connection to `/generate3d`, with `Authorization: Bearer KEY` when `key` is given.
pub async fn connect_with_key(addr: SocketAddr, key: Option<&str>) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    let mut request = format!("ws://{addr}/generate3d").into_client_request().unwrap();
    if let Some(key) = key {
        request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    tokio_tungstenite::connect_async_with_config(request, Some(config), true).await.unwrap().0
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

/// What one workload measured.
pub struct Measured {
    pub jobs: usize,
    pub jobs_per_s: f64,
    /// Seconds per job, from sending the image to `completed`.
    pub p50: f64,
    pub p99: f64,
    /// Part bytes received per second of wall time, in MB (10^6).
    pub mb_per_s: f64,
}

/// Jobs [`measure`] runs before it starts timing.
pub const WARM_UP_JOBS: usize = 3;

/// Runs `jobs` jobs against the service at `addr`, spread over `connections` connections
/// each sending its next job when the previous one completed, after [`WARM_UP_JOBS`].
pub async fn measure(addr: SocketAddr, jobs: usize, connections: usize) -> Measured {
    measure_with_key(addr, jobs, connections, None).await
}

/// [`measure`], every connection presenting API key `key` when given.
pub async fn measure_with_key(
    addr: SocketAddr,
    jobs: usize,
    connections: usize,
    key: Option<&str>,
) -> Measured {
    let image = input_png();
    // Warm up (connection setup, allocator, Redis connection pools).
    let mut ws = connect_with_key(addr, key).await;
    for _ in 0..WARM_UP_JOBS {
        job(&mut ws, &image).await;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let image = image.clone();
        let key = key.map(str::to_owned);
        tasks.push(tokio::spawn(async move {
            let mut ws = connect_with_key(addr, key.as_deref()).await;
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
    Measured {
        jobs: results.len(),
        jobs_per_s: results.len() as f64 / wall,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        mb_per_s: bytes as f64 / wall / 1e6,
    }
}
