//! Serving modes that load a model: the all-in-one server (gateway + in-process queue +
//! worker in one process, the single-machine default) and a queue worker's health endpoint.

use std::sync::Arc;
use std::time::Duration;

use img3d_gateway::{Gateway, GatewayConfig};
use img3d_protocol::FailureCode;
use img3d_queue::memory::MemoryQueue;
use img3d_queue::{Failure, QueueProbe, WorkQueue};
use img3d_service::health::{ops_router, Ops};
use img3d_service::{Component, ComponentId, Health, Metrics, Shutdown};
use tokio::net::TcpListener;

use crate::{JobRunner, Wedged, WorkerOptions};

/// Builds the pipeline (loads weights): called once, on a blocking thread.
pub type Loader = Box<dyn FnOnce() -> anyhow::Result<Arc<dyn JobRunner>> + Send>;

/// Serves clients on `listener` with an in-process queue and one worker running the pipeline
/// that `load` builds, until `shutdown` has drained. `/readyz` is 503 while the model loads,
/// and says why if it failed (the process keeps serving `failed`/`unavailable` then, rather
/// than exit, so the reason stays visible).
pub async fn serve_standalone(
    listener: TcpListener,
    config: GatewayConfig,
    load: Loader,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let queue = MemoryQueue::new(config.max_queue);
    let health = Arc::new(Health::new());
    let gateway = Gateway::new(config, queue.clone(), health.clone(), metrics.clone(), shutdown.clone());

    // Draining stops the worker from taking jobs; jobs still waiting are told at once rather
    // than left to time out.
    let closer = {
        let (queue, drain) = (queue.clone(), shutdown.drain().clone());
        tokio::spawn(async move {
            drain.cancelled().await;
            queue.shut_down();
        })
    };
    let on_load_failure = {
        let queue = queue.clone();
        // The reason (paths, devices) is logged by `load_and_run`; clients get a sentence.
        move |_reason: &str| {
            queue.close(Failure::new(
                FailureCode::Unavailable,
                "this server cannot run jobs: its model failed to load; retry on another server",
            ))
        }
    };
    let worker = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let ran = load_and_run(queue, load, health, shutdown.clone(), metrics, on_load_failure).await;
            if ran.is_err() {
                // Nothing runs jobs any more: tell waiting clients now, and let the process end.
                shutdown.begin(Duration::ZERO);
            }
            ran
        })
    };
    let served = img3d_gateway::serve(listener, gateway).await;
    closer.abort();
    if let Ok(Err(wedged)) = worker.await {
        return Err(wedged.into());
    }
    Ok(served?)
}

/// Serves `/healthz`, `/readyz` and `/metrics` for a queue worker on `listener` and runs the
/// worker loop on `queue` once `load` succeeds, until `shutdown` has drained. `probe` (the
/// same queue, read-only) lets `/readyz` check the queue is reachable and `/metrics` sample its
/// depth.
pub async fn serve_queue_worker(
    listener: TcpListener,
    queue: Arc<dyn WorkQueue>,
    probe: Option<Arc<dyn QueueProbe>>,
    load: Loader,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let health = Arc::new(Health::new());
    let ops = Arc::new(Ops {
        health: health.clone(),
        metrics: metrics.clone(),
        queue: probe,
        shutdown: shutdown.clone(),
    });
    let stop_http = tokio_util::sync::CancellationToken::new();
    let http = {
        let stop = stop_http.clone().cancelled_owned();
        let app = ops_router(ops);
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop).await })
    };
    if let Err(wedged) = load_and_run(queue, load, health, shutdown.clone(), metrics, |_: &str| {}).await {
        // Unready (readyz said why while the job was handed back); exit non-zero so the
        // supervisor starts a fresh worker.
        stop_http.cancel();
        let _ = http.await;
        return Err(wedged.into());
    }
    // Health stays up through the drain (readyz says draining) until the worker has stopped,
    // and after a failed model load until a signal, so the reason stays visible.
    shutdown.drain().cancelled().await;
    stop_http.cancel();
    http.await??;
    Ok(())
}

/// Loads the model (readiness `model`: starting -> ready or failed) and runs the worker loop.
/// When its watchdog stops the loop, readiness `worker` turns failed and the reason is returned.
async fn load_and_run(
    queue: Arc<dyn WorkQueue>,
    load: Loader,
    health: Arc<Health>,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    on_failure: impl FnOnce(&str),
) -> Result<(), Wedged> {
    health.set(ComponentId::Model, Component::Starting("loading the model".into()));
    let loaded = tokio::task::spawn_blocking(load)
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the model loader panicked: {e}")));
    let pipeline = match loaded {
        Ok(pipeline) => pipeline,
        Err(e) => {
            let reason = format!("{e:#}");
            tracing::error!(error = %reason, "model failed to load; this worker takes no jobs");
            health.set(ComponentId::Model, Component::Failed(reason.clone()));
            on_failure(&reason);
            return Ok(());
        }
    };
    health.set(ComponentId::Model, Component::Ready(pipeline.describe()));
    let ran =
        crate::run_with(queue, pipeline, shutdown, WorkerOptions { metrics, ..WorkerOptions::default() })
            .await;
    if let Err(wedged) = &ran {
        tracing::error!(reason = %wedged, "the worker stops; its supervisor should start a fresh one");
        health.set(ComponentId::Worker, Component::Failed(wedged.to_string()));
    }
    ran
}
