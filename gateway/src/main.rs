//! `img3d-gateway`: the scale-out front end. Accepts WebSocket clients, validates images,
//! queues jobs on Redis and streams the results back. No libtorch in this binary.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use img3d_gateway::{Gateway, GatewayConfig};
use img3d_queue::redis::RedisJobQueue;
use img3d_service::{Health, Metrics, RedisOptions, Shutdown};

/// The img3d WebSocket gateway (ws://HOST:PORT/generate3d), in front of a Redis job queue.
#[derive(Debug, Parser)]
#[command(name = "img3d-gateway", version, about)]
struct Cli {
    /// Address to listen on for clients and for /healthz, /readyz and /metrics. Port 0 picks a
    /// free port; the bound address is printed on stdout.
    #[arg(long, env = "IMG3D_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Redis URL of the job queue shared with the workers: `redis://[:PASSWORD@]HOST:PORT[/DB]`,
    /// or rediss:// for TLS; `redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]`
    /// for the master of a Sentinel group (found again after a failover).
    #[arg(long, env = "IMG3D_REDIS")]
    redis: String,

    /// Prefix of every Redis key, so several deployments can share one Redis.
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
    let mut cfg = cli.redis_options.config(&cli.redis, &cli.prefix);
    cfg.max_queue_len = cli.gateway.max_queue;
    let queue = RedisJobQueue::connect(cfg).await.context("connecting to the Redis queue")?;
    tracing::info!(gateway = queue.gateway_id(), prefix = %cli.prefix, "connected to Redis");
    let shutdown = Shutdown::new();
    shutdown.on_signals(cli.gateway.drain_deadline);
    let gateway = Gateway::new(
        cli.gateway,
        Arc::new(queue),
        Arc::new(Health::new()),
        Arc::new(Metrics::new()),
        shutdown,
    );
    let listener =
        tokio::net::TcpListener::bind(cli.listen).await.with_context(|| format!("binding {}", cli.listen))?;
    // One line on stdout, for scripts and tests that asked for port 0.
    println!("listening on {}", listener.local_addr()?);
    img3d_gateway::serve(listener, gateway).await?;
    tracing::info!("drained; exiting");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The command line is well formed (no clashing flags or env vars).
    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
