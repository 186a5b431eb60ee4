//! The protocol test server: the real gateway, in-process queue and worker loop, with a
//! pipeline double that returns valid placeholder parts (two 1536x256 PNGs derived from the
//! input, a zip with an OBJ/MTL/PNG) after a configurable delay. For client tests; it says so.
//!
//! `cargo run -p img3d-worker --example protocol-server -- --listen 127.0.0.1:0 --delay-ms 500`
//! prints `listening on 127.0.0.1:PORT` as its one line on stdout.
//!
//! With `--redis URL [--prefix P]` it is instead a Redis queue worker around the same double
//! (no gateway: run `img3d-gateway` against the same Redis and prefix), so the scaled-out
//! topology can be exercised without a model; `--listen` then serves only `/healthz`,
//! `/readyz` and `/metrics`, and that address is the printed one.

mod double;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use img3d_gateway::GatewayConfig;
use img3d_queue::redis::RedisWorkQueue;
use img3d_queue::{QueueProbe, WorkQueue};
use img3d_service::{Metrics, RedisOptions, Shutdown};
use img3d_worker::standalone::{serve_queue_worker, serve_standalone, Loader};
use img3d_worker::JobRunner;

/// img3d protocol test server: real gateway, queue and worker; placeholder parts, NO model.
#[derive(Debug, Parser)]
#[command(name = "protocol-server")]
struct Cli {
    /// Address to listen on (port 0: pick a free port; the address is printed on stdout).
    #[arg(long, env = "IMG3D_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// How long each job takes, in milliseconds, spread over the three parts.
    #[arg(long, env = "IMG3D_DELAY_MS", default_value_t = 300)]
    delay_ms: u64,

    /// Pad output3d.zip to at least this many bytes (a stored noise entry), to test large
    /// parts; 0: no padding.
    #[arg(long, default_value_t = 0)]
    output_bytes: usize,

    /// Run as a worker on this Redis queue instead of serving clients (see the module docs).
    #[arg(long, env = "IMG3D_REDIS")]
    redis: Option<String>,

    /// Prefix of every Redis key (must match the gateways').
    #[arg(long, env = "IMG3D_PREFIX", default_value = "img3d")]
    prefix: String,

    #[command(flatten)]
    redis_options: RedisOptions,

    #[command(flatten)]
    gateway: GatewayConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    img3d_service::telemetry::init_tracing();
    img3d_service::memory::return_large_buffers();
    let pipeline = double::PlaceholderPipeline {
        delay: Duration::from_millis(cli.delay_ms),
        output_bytes: cli.output_bytes,
    };
    eprintln!("protocol-server: TEST DOUBLE — {}", pipeline.describe());
    let shutdown = Shutdown::new();
    shutdown.on_signals(cli.gateway.drain_deadline);
    let load: Loader = Box::new(move || Ok(Arc::new(pipeline) as Arc<dyn JobRunner>));
    let metrics = Arc::new(Metrics::new());
    match &cli.redis {
        Some(url) => {
            let cfg = cli.redis_options.config(url, &cli.prefix);
            let queue = Arc::new(RedisWorkQueue::connect(cfg).await.context("connecting to Redis")?);
            eprintln!("protocol-server: Redis worker {}", queue.worker_id());
            let listener = bind(cli.listen).await?;
            let (work, probe): (Arc<dyn WorkQueue>, Arc<dyn QueueProbe>) = (queue.clone(), queue);
            serve_queue_worker(listener, work, Some(probe), load, shutdown, metrics).await?;
        }
        None => {
            let listener = bind(cli.listen).await?;
            serve_standalone(listener, cli.gateway, load, shutdown, metrics).await?;
        }
    }
    // Do not wait for a pipeline thread still finishing a job stopped at the drain deadline.
    std::process::exit(0)
}

/// Binds and prints the bound address as the one line on stdout.
async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    println!("listening on {}", listener.local_addr()?);
    Ok(listener)
}
