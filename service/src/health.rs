//! `GET /healthz` (alive), `GET /readyz` (ready to take jobs, or why not), `GET /metrics`.
//!
//! Liveness is cheap and always 200 while the process serves HTTP. Readiness is 503 with a
//! reason while draining, while the queue is unreachable, or while a component (the model)
//! is not ready — and it turns 503 first thing when a drain begins, so a load balancer stops
//! sending clients before connections are closed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use img3d_queue::QueueProbe;

use crate::{Metrics, Shutdown};

/// How long `/readyz` waits for the queue before calling it unreachable.
const QUEUE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A part of the process that readiness depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentId {
    /// The model: loading weights, loaded, or failed to load.
    Model,
    /// The worker loop: failed once its watchdog stopped it (a wedged or failing pipeline).
    Worker,
}

impl ComponentId {
    /// The name shown in `/readyz` and in refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentId::Model => "model",
            ComponentId::Worker => "worker",
        }
    }
}

impl std::fmt::Display for ComponentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one component that readiness depends on (e.g. the model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// Still starting (e.g. loading weights): jobs may queue, the process is not ready.
    Starting(String),
    /// Ready; the text says what it is (e.g. which bundle on which device).
    Ready(String),
    /// Failed for good: no job can run here; new jobs are refused with `unavailable`.
    Failed(String),
}

/// A component failed for good: this process cannot run jobs, so new ones are refused (the
/// gateway tells the client `unavailable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this server cannot run jobs ({component}: {reason}); retry on another server")]
pub struct Unavailable {
    /// The failed component.
    pub component: ComponentId,
    /// Why it failed.
    pub reason: String,
}

/// Readiness of the parts of this process.
#[derive(Debug, Default)]
pub struct Health {
    components: Mutex<BTreeMap<ComponentId, Component>>,
}

impl Health {
    /// No components yet (ready as far as they go).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a component's state.
    pub fn set(&self, id: ComponentId, state: Component) {
        self.components.lock().unwrap_or_else(|p| p.into_inner()).insert(id, state);
    }

    fn snapshot(&self) -> BTreeMap<ComponentId, Component> {
        self.components.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a new job may be accepted: refused only when a component failed for good. The
    /// reason is logged here; what a client is told is the gateway's to word (never the reason:
    /// paths, devices, tensor names).
    pub fn admit(&self) -> Result<(), Unavailable> {
        for (component, state) in self.snapshot() {
            if let Component::Failed(reason) = state {
                tracing::warn!(%component, %reason, "job refused: a component failed");
                return Err(Unavailable { component, reason });
            }
        }
        Ok(())
    }
}

/// What the operational endpoints look at.
pub struct Ops {
    /// Component readiness.
    pub health: Arc<Health>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// The queue, probed by `/readyz` and sampled by `/metrics` (None: no queue to probe).
    pub queue: Option<Arc<dyn QueueProbe>>,
    /// Draining makes the process not ready.
    pub shutdown: Shutdown,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").field("health", &self.health).finish_non_exhaustive()
    }
}

/// The `/healthz`, `/readyz` and `/metrics` routes.
pub fn ops_router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

async fn readyz(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    let mut ready = true;
    let mut lines = Vec::new();
    if ops.shutdown.is_draining() {
        ready = false;
        lines.push("draining: shutting down, not taking new jobs".to_owned());
    }
    if let Some(queue) = &ops.queue {
        match tokio::time::timeout(QUEUE_PROBE_TIMEOUT, queue.stats()).await {
            Ok(Ok(stats)) => {
                lines.push(format!("queue: ok ({} waiting, {} running)", stats.depth, stats.running))
            }
            Ok(Err(e)) => {
                ready = false;
                lines.push(format!("queue: unreachable: {e}"));
            }
            Err(_) => {
                ready = false;
                lines.push(format!("queue: no answer within {QUEUE_PROBE_TIMEOUT:?}"));
            }
        }
    }
    for (name, state) in ops.health.snapshot() {
        match state {
            Component::Ready(what) => lines.push(format!("{name}: ready: {what}")),
            Component::Starting(what) => {
                ready = false;
                lines.push(format!("{name}: starting: {what}"));
            }
            Component::Failed(_) => {
                // The reason (paths, devices, tensor names) is in the log, not on a public port.
                ready = false;
                lines.push(format!("{name}: failed (the reason is in the server log)"));
            }
        }
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let head = if ready { "ready" } else { "not ready" };
    (status, format!("{head}\n{}\n", lines.join("\n")))
}

async fn metrics(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    if let Some(queue) = &ops.queue {
        if let Ok(Ok(stats)) = tokio::time::timeout(QUEUE_PROBE_TIMEOUT, queue.stats()).await {
            ops.metrics.set_queue(&stats);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], ops.metrics.render())
}
