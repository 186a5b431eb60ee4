//! The protocol test server: the real gateway, in-process queue and worker loop, with a
//! pipeline double that returns valid placeholder parts (two 1536x256 PNGs derived from the
//! input, a zip with an OBJ/MTL/PNG) after a configurable delay. For client tests; it says so.
//!
//! `cargo run -p img3d-worker --example protocol-server -- --listen 127.0.0.1:0 --delay-ms 500`
//! prints `listening on 127.0.0.1:PORT` as its one line on stdout.

mod double;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use img3d_gateway::{GatewayConfig, Metrics, Shutdown};
use img3d_worker::standalone::serve_standalone;
use img3d_worker::Pipeline;

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

    #[command(flatten)]
    gateway: GatewayConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    img3d_gateway::telemetry::init_tracing();
    let pipeline = double::PlaceholderPipeline { delay: Duration::from_millis(cli.delay_ms) };
    eprintln!("protocol-server: TEST DOUBLE — {}", pipeline.describe());
    let shutdown = Shutdown::new();
    shutdown.on_signals(cli.gateway.drain_deadline);
    let listener =
        tokio::net::TcpListener::bind(cli.listen).await.with_context(|| format!("binding {}", cli.listen))?;
    println!("listening on {}", listener.local_addr()?);
    let load = Box::new(move || Ok(Arc::new(pipeline) as Arc<dyn Pipeline>));
    serve_standalone(listener, cli.gateway, load, shutdown, Arc::new(Metrics::new())).await?;
    // Do not wait for a pipeline thread still finishing a job stopped at the drain deadline.
    std::process::exit(0)
}
