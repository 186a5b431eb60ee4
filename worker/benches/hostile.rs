//! What a public server costs per connection and per job, and how it holds up under decode
//! bombs: this build's protocol test server side by side with another build's (the baseline).
//! Prints numbers; asserts nothing.
//!
//! `cargo bench -p img3d-worker --bench hostile`, or, beside a baseline build's server,
//! `IMG3D_BASELINE_SERVER=/path/to/protocol-server cargo bench -p img3d-worker --bench hostile`.
//!
//! The server under test is this executable in a child role that wires what the
//! `protocol-server` example wires (real gateway, in-process queue, worker loop, the example's
//! pipeline double, parsed from the same flags). `IMG3D_BASELINE_SERVER` names another build's
//! `protocol-server` example binary; both get the same flags (ones every build accepts:
//! `--listen --delay-ms --output-bytes --max-connections --max-queue`) and the same workloads,
//! each in a fresh process:
//!
//! - idle KiB per connection: RSS growth with N idle WebSocket connections, / N
//!   (`--idle N` or `IMG3D_BENCH_IDLE`, default 2000);
//! - realistic jobs (the double's two PNGs plus a zip padded to 20 MiB, `--output-bytes`) over
//!   8 connections (`--jobs N` or `IMG3D_BENCH_JOBS`, default 40): server CPU ms per job
//!   (utime + stime from `/proc/PID/stat`, over every job it ran, warm-up included), RSS growth
//!   over the idle server, p50 latency, jobs/s; beside it the double's own CPU per job, called
//!   in this process (the same code in every build since 28bb4a4): most of what either server
//!   spends per job is the double's (20 MiB of noise and its CRC, two PNGs), not serving;
//! - jobs/s with small parts over 8 connections, and the same with `--api-keys` (this build;
//!   a build before the keys has none);
//! - 8 clients sending a decode bomb at once (an 8000x8000 16-bit RGBA PNG of zeros: 0.5 MB
//!   of file, 488 MiB decoded): the server's peak RSS (VmHWM) and how the jobs ended.
//!
//! Client and server share this machine's cores (loopback).

mod common;
#[allow(dead_code)]
#[path = "../examples/protocol-server/double.rs"]
mod double;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use common::{connect, measure, measure_with_key, Proc, WARM_UP_JOBS};
use futures::{SinkExt, StreamExt};
use img3d_gateway::GatewayConfig;
use img3d_protocol::PartName;
use img3d_queue::Failure;
use img3d_service::{Metrics, Shutdown};
use img3d_worker::standalone::{serve_standalone, Loader};
use img3d_worker::{JobRunner, JobSink};
use tokio_tungstenite::tungstenite::Message;

/// The realistic zip part: 20 MiB, as the standalone bench's.
const OUTPUT_BYTES: usize = 20 << 20;
const CONNECTIONS: usize = 8;
const SMALL_JOBS: usize = 400;
const BOMBS: usize = 8;

/// The flags of the `protocol-server` example that this bench uses (its child role parses
/// them as the example does).
#[derive(Debug, Parser)]
struct ServerCli {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long, default_value_t = 300)]
    delay_ms: u64,
    #[arg(long, default_value_t = 0)]
    output_bytes: usize,
    #[command(flatten)]
    gateway: GatewayConfig,
}

/// The child role: what `protocol-server` does without `--redis`.
fn serve_protocol() {
    let cli = ServerCli::parse();
    img3d_service::memory::return_large_buffers();
    let pipeline = double::PlaceholderPipeline {
        delay: Duration::from_millis(cli.delay_ms),
        output_bytes: cli.output_bytes,
    };
    let load: Loader = Box::new(move || Ok(Arc::new(pipeline) as Arc<dyn JobRunner>));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cli.listen).await.unwrap();
        let shutdown = Shutdown::new();
        shutdown.on_signals(cli.gateway.drain_deadline);
        println!("listening on {}", listener.local_addr().unwrap());
        serve_standalone(listener, cli.gateway, load, shutdown, Arc::new(Metrics::new())).await.unwrap();
    });
}

/// A server build to measure.
struct Build {
    name: &'static str,
    /// None: this executable in the `protocol` role.
    binary: Option<PathBuf>,
}

impl Build {
    fn start(&self, output_bytes: usize, extra: &[&str]) -> Proc {
        let mut command = match &self.binary {
            None => {
                let mut c = Command::new(std::env::current_exe().unwrap());
                c.env("IMG3D_BENCH_ROLE", "protocol");
                c
            }
            Some(path) => Command::new(path),
        };
        let output_bytes = output_bytes.to_string();
        command
            .args(["--listen", "127.0.0.1:0", "--delay-ms", "0", "--output-bytes", &output_bytes])
            .args(["--max-connections", "4096", "--max-queue", "4096"])
            .args(extra);
        let server = Proc::spawn(command, self.name);
        // Let the runtime and the worker loop settle before anything is read from /proc.
        std::thread::sleep(Duration::from_millis(300));
        server
    }
}

/// One build's figures (None: not measured for it).
#[derive(Default)]
struct Figures {
    idle_kib_per_conn: f64,
    cpu_ms_per_job: f64,
    double_cpu_ms_per_job: f64,
    rss_growth_mib: f64,
    p50_ms: f64,
    jobs_per_s: f64,
    small_jobs_per_s: f64,
    small_jobs_per_s_keys: Option<f64>,
    bomb_peak_mib: f64,
    bomb_outcomes: String,
}

async fn idle_kib_per_connection(build: &Build, n: usize) -> f64 {
    let server = build.start(0, &[]);
    let before = server.rss_kib();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(connect(server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    drop(held);
    after.saturating_sub(before) as f64 / n as f64
}

async fn realistic(build: &Build, jobs: usize, f: &mut Figures) {
    let server = build.start(OUTPUT_BYTES, &[]);
    let (idle, cpu) = (server.rss_kib(), server.cpu_ms());
    let m = measure(server.addr, jobs, CONNECTIONS).await;
    f.cpu_ms_per_job = (server.cpu_ms() - cpu) / (m.jobs + WARM_UP_JOBS) as f64;
    f.rss_growth_mib = server.rss_kib().saturating_sub(idle) as f64 / 1024.0;
    f.p50_ms = m.p50 * 1e3;
    f.jobs_per_s = m.jobs_per_s;
}

/// The pipeline double's own CPU per realistic job, called in this process: what every
/// build's server spends on it besides serving.
fn double_cpu_ms_per_job(jobs: usize) -> f64 {
    struct Discard;
    impl JobSink for Discard {
        fn is_cancelled(&self) -> bool {
            false
        }
        fn progress(&mut self, _: img3d_protocol::ProgressStage, _: u32, _: u32) {}
        fn part(&mut self, _: PartName, bytes: Vec<u8>) -> Result<(), Failure> {
            std::hint::black_box(bytes);
            Ok(())
        }
    }
    let double = double::PlaceholderPipeline { delay: Duration::ZERO, output_bytes: OUTPUT_BYTES };
    let image = common::input_png();
    let before = common::cpu_ms("/proc/thread-self/stat");
    for _ in 0..jobs {
        double.run(&image, &Default::default(), &mut Discard).unwrap();
    }
    (common::cpu_ms("/proc/thread-self/stat") - before) / jobs as f64
}

async fn small_jobs_per_s(build: &Build, key: Option<&str>, keys_file: &str) -> f64 {
    let extra: &[&str] = if key.is_some() { &["--api-keys", keys_file] } else { &[] };
    let server = build.start(0, extra);
    measure_with_key(server.addr, SMALL_JOBS, CONNECTIONS, key).await.jobs_per_s
}

/// Sends `image` and reads the job to its end: `completed`, or `failed:CODE`, or how the
/// connection ended.
async fn outcome(addr: SocketAddr, image: Arc<Vec<u8>>) -> String {
    let mut ws = connect(addr).await;
    if let Err(e) = ws.send(Message::Binary(image.to_vec().into())).await {
        return format!("send error ({e})");
    }
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                match v["status"].as_str() {
                    Some("completed") => return "completed".into(),
                    Some("failed") => return format!("failed:{}", v["code"].as_str().unwrap_or("?")),
                    _ => {}
                }
            }
            Some(Ok(Message::Close(_))) | None => return "closed".into(),
            Some(Ok(_)) => {}
            Some(Err(e)) => return format!("error ({e})"),
        }
    }
}

async fn bombs(build: &Build, bomb: &Arc<Vec<u8>>, f: &mut Figures) {
    let server = build.start(OUTPUT_BYTES, &[]);
    let addr = server.addr;
    let tasks: Vec<_> = (0..BOMBS).map(|_| tokio::spawn(outcome(addr, bomb.clone()))).collect();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        let o = match tokio::time::timeout(Duration::from_secs(600), t).await {
            Ok(joined) => joined.unwrap(),
            Err(_) => "no answer in 600 s".into(),
        };
        *counts.entry(o).or_default() += 1;
    }
    f.bomb_peak_mib = server.peak_rss_kib() as f64 / 1024.0;
    f.bomb_outcomes = counts.iter().map(|(o, n)| format!("{n} {o}")).collect::<Vec<_>>().join(", ");
}

/// `--NAME N` on the command line, else environment variable `env`, else `default`.
fn setting(name: &str, env: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    let flag = args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    match flag.or_else(|| std::env::var(env).ok()) {
        Some(v) => v.parse().unwrap_or_else(|_| panic!("{name} / {env}: not a count: {v:?}")),
        None => default,
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_owned(), |m| m.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores, {:.0} GiB", mem_kib as f64 / (1 << 20) as f64)
}

fn print_table(builds: &[Build], figures: &[Figures], idle: usize, jobs: usize) {
    type Row = (String, Box<dyn Fn(&Figures) -> Option<f64>>, usize);
    let rows: Vec<Row> = vec![
        (format!("idle KiB per connection ({idle} idle)"), Box::new(|f| Some(f.idle_kib_per_conn)), 1),
        (
            format!("server CPU ms per realistic job ({jobs} jobs, {CONNECTIONS} conns)"),
            Box::new(|f| Some(f.cpu_ms_per_job)),
            1,
        ),
        // Not subtracted from the row above: measured in another process, under other load.
        (
            "  the pipeline double alone, ms per job (in-process)".into(),
            Box::new(|f| Some(f.double_cpu_ms_per_job)),
            1,
        ),
        (format!("RSS growth at {CONNECTIONS} connections, MiB"), Box::new(|f| Some(f.rss_growth_mib)), 1),
        (format!("p50 latency at {CONNECTIONS} connections, ms"), Box::new(|f| Some(f.p50_ms)), 1),
        (format!("realistic jobs/s at {CONNECTIONS} connections"), Box::new(|f| Some(f.jobs_per_s)), 1),
        (
            format!("small-part jobs/s at {CONNECTIONS} conns, no keys"),
            Box::new(|f| Some(f.small_jobs_per_s)),
            0,
        ),
        (
            format!("small-part jobs/s at {CONNECTIONS} conns, API keys"),
            Box::new(|f| f.small_jobs_per_s_keys),
            0,
        ),
        (format!("peak RSS under {BOMBS} decode bombs, MiB"), Box::new(|f| Some(f.bomb_peak_mib)), 0),
    ];
    let mut header = format!("| {:<52} |", "");
    for b in builds {
        header.push_str(&format!(" {:>11} |", b.name));
    }
    if builds.len() == 2 {
        header.push_str(" this/base |");
    }
    println!("{header}");
    println!("|{}|", "-".repeat(header.len() - 2).replace('|', "-"));
    for (label, value, decimals) in &rows {
        let mut line = format!("| {label:<52} |");
        let values: Vec<Option<f64>> = figures.iter().map(value).collect();
        for v in &values {
            line.push_str(&match v {
                Some(v) => format!(" {v:>11.decimals$} |"),
                None => format!(" {:>11} |", "-"),
            });
        }
        if let [Some(this), Some(base)] = values[..] {
            line.push_str(&format!(" {:>8.2}x |", this / base));
        } else if builds.len() == 2 {
            line.push_str(&format!(" {:>9} |", "-"));
        }
        println!("{line}");
    }
    for (b, f) in builds.iter().zip(figures) {
        println!("{} bomb outcomes: {}", b.name, f.bomb_outcomes);
    }
}

fn main() {
    if std::env::var("IMG3D_BENCH_ROLE").as_deref() == Ok("protocol") {
        serve_protocol();
        return;
    }
    if common::run_child_role() {
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list
    }
    let idle = setting("--idle", "IMG3D_BENCH_IDLE", 2000);
    let jobs = setting("--jobs", "IMG3D_BENCH_JOBS", 40);
    common::raise_nofile(2 * idle as u64 + 100);
    let mut builds = vec![Build { name: "this build", binary: None }];
    if let Some(path) = std::env::var_os("IMG3D_BASELINE_SERVER") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "IMG3D_BASELINE_SERVER: no file at {}", path.display());
        builds.push(Build { name: "baseline", binary: Some(path) });
    }
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!(
        "img3d hostile-client bench: {profile} build, {}; loopback, client and servers share the cores",
        machine()
    );
    for b in &builds {
        let binary = b
            .binary
            .as_ref()
            .map_or("this bench executable, protocol role".into(), |p| p.display().to_string());
        println!("  {}: {binary}", b.name);
    }
    if builds.len() == 2 && cfg!(debug_assertions) {
        println!("  (the double's CPU is measured in this debug build: a release baseline's is lower)");
    }
    let mut keys_file = tempfile::NamedTempFile::new().unwrap();
    writeln!(keys_file, "bench-key-1").unwrap();
    let keys_path = keys_file.path().to_str().unwrap().to_owned();
    let bomb = Arc::new(img3d_testkit::images::bomb_png());
    let double_cpu = double_cpu_ms_per_job(20);
    let mut figures: Vec<Figures> = builds.iter().map(|_| Figures::default()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Each workload on every build in turn, so drift in the machine's load hits both.
        for (b, f) in builds.iter().zip(&mut figures) {
            f.idle_kib_per_conn = idle_kib_per_connection(b, idle).await;
        }
        for (b, f) in builds.iter().zip(&mut figures) {
            realistic(b, jobs, f).await;
            f.double_cpu_ms_per_job = double_cpu;
        }
        for (b, f) in builds.iter().zip(&mut figures) {
            f.small_jobs_per_s = small_jobs_per_s(b, None, &keys_path).await;
        }
        // Builds before the API keys have no --api-keys flag: this build only.
        figures[0].small_jobs_per_s_keys =
            Some(small_jobs_per_s(&builds[0], Some("bench-key-1"), &keys_path).await);
        for (b, f) in builds.iter().zip(&mut figures) {
            bombs(b, &bomb, f).await;
        }
    });
    print_table(&builds, &figures, idle, jobs);
}
