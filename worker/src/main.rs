//! `img3d-worker`: the GPU worker (Redis), the all-in-one server (`standalone`), or one image
//! (`run`). Thin: parse, set up logging, call the library.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use img3d_queue::redis::RedisWorkQueue;
use img3d_queue::{QueueProbe, WorkQueue};
use img3d_service::{Metrics, RedisOptions, Shutdown};
use img3d_worker::cli::{
    BundleConfigArgs, Cli, Command, PrepareModelArgs, QueueWorkerArgs, RunArgs, StandaloneArgs,
};
use img3d_worker::model_source::{self, ModelSource};
use img3d_worker::standalone::{serve_queue_worker, serve_standalone, Loader};
use img3d_worker::{crm, ModelSpec};

/// The Redis queue, worker side: jobs for the worker loop, and the same connection pool as the
/// probe behind `/readyz` and the queue gauges of `/metrics`.
async fn redis_queue(
    url: &str,
    prefix: &str,
    options: &RedisOptions,
) -> anyhow::Result<(Arc<dyn WorkQueue>, Option<Arc<dyn QueueProbe>>)> {
    let queue = RedisWorkQueue::connect(options.config(url, prefix))
        .await
        .context("connecting to the Redis queue")?;
    tracing::info!(worker = queue.worker_id(), prefix, "connected to Redis");
    let queue = Arc::new(queue);
    let work: Arc<dyn WorkQueue> = queue.clone();
    let probe: Arc<dyn QueueProbe> = queue;
    Ok((work, Some(probe)))
}

fn loader(model: ModelSpec, source: ModelSource, device: img3d_pipeline::DeviceSpec) -> Loader {
    Box::new(move || crm::load(&model, &source, device))
}

async fn queue_worker(args: QueueWorkerArgs) -> anyhow::Result<()> {
    let redis = args.redis.context(
        "no queue: give --redis URL (or IMG3D_REDIS) to take jobs from Redis, or use a subcommand: \
         `standalone` (one machine) or `run IMAGE` (one image); see --help",
    )?;
    let model = args.model.context("--model tiny|crm|DIR (or IMG3D_MODEL) is required")?;
    let (work, probe) = redis_queue(&redis, &args.prefix, &args.redis_options).await?;
    let shutdown = Shutdown::new();
    shutdown.on_signals(args.drain_deadline);
    let listener = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .with_context(|| format!("binding {}", args.health_listen))?;
    // One line on stdout, for scripts and tests that asked for port 0.
    println!("listening on {}", listener.local_addr()?);
    let metrics = Arc::new(Metrics::new());
    serve_queue_worker(
        listener,
        work,
        probe,
        loader(model, args.source.source(), args.device),
        shutdown,
        metrics,
    )
    .await
}

async fn standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    shutdown.on_signals(args.gateway.drain_deadline);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    // One line on stdout, for scripts and tests that asked for port 0.
    println!("listening on {}", listener.local_addr()?);
    let load = loader(args.model.model, args.model.source.source(), args.model.device);
    serve_standalone(listener, args.gateway, load, shutdown, Arc::new(Metrics::new())).await
}

fn run_once(args: RunArgs) -> anyhow::Result<()> {
    let pipeline = crm::load(&args.model.model, &args.model.source.source(), args.model.device)?;
    eprintln!("pipeline: {}", pipeline.describe());
    for path in img3d_worker::run_once(&*pipeline, &args.image, &args.out)? {
        println!("{}", path.display());
    }
    Ok(())
}

fn bundle_config(args: BundleConfigArgs) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&args.preset.config())?);
    Ok(())
}

fn prepare_model(args: PrepareModelArgs) -> anyhow::Result<()> {
    let cache = img3d_pipeline::tiny::default_cache_dir();
    let dir = model_source::ensure(&cache, &crm::crm_bundle_dir(&cache), &args.source.source())?;
    println!("{}", dir.display());
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    img3d_service::telemetry::init_tracing();
    img3d_service::memory::return_large_buffers();
    let result = match cli.command {
        Some(Command::Run(args)) => run_once(args),
        Some(Command::BundleConfig(args)) => bundle_config(args),
        Some(Command::PrepareModel(args)) => prepare_model(args),
        command => tokio::runtime::Runtime::new().context("starting the runtime").and_then(|rt| {
            rt.block_on(async move {
                match command {
                    Some(Command::Standalone(args)) => standalone(args).await,
                    _ => queue_worker(cli.queue).await,
                }
            })
        }),
    };
    let code = match result {
        Ok(()) => {
            tracing::info!("stopped");
            0
        }
        Err(e) => {
            eprintln!("img3d-worker: {e:#}");
            1
        }
    };
    // Exit now: a pipeline thread still finishing a job stopped at the drain deadline cannot be
    // interrupted, and dropping the runtime would wait for it.
    std::process::exit(code)
}
