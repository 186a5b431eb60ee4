//! The gateway: the `/generate3d` WebSocket endpoint plus the operational routes, and `serve`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use img3d_protocol::{ClientOptions, ENDPOINT_PATH};
use img3d_queue::{JobQueue, QueueProbe};
use img3d_service::health::{ops_router, Ops};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::{GatewayConfig, Health, Metrics, Shutdown};

/// Everything a gateway's sessions share.
pub struct Gateway {
    pub(crate) config: GatewayConfig,
    pub(crate) queue: Arc<dyn JobQueue>,
    pub(crate) ops: Arc<Ops>,
    pub(crate) shutdown: Shutdown,
    connections: Arc<Semaphore>,
    /// Bounds concurrent image decodes to the CPUs, so a burst of uploads cannot starve the
    /// runtime's blocking pool or memory.
    pub(crate) decoders: Arc<Semaphore>,
    tracker: TaskTracker,
    next_connection: AtomicU64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway submitting to `queue`, reporting on `health` and `metrics`, stopping with
    /// `shutdown`.
    pub fn new(
        config: GatewayConfig,
        queue: Arc<dyn JobQueue>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Gateway {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            decoders: Arc::new(Semaphore::new(cpus)),
            ops: Arc::new(Ops {
                health,
                metrics,
                queue: Some(queue.clone() as Arc<dyn QueueProbe>),
                shutdown: shutdown.clone(),
            }),
            config,
            queue,
            shutdown,
            tracker: TaskTracker::new(),
            next_connection: AtomicU64::new(1),
        })
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.ops.metrics
    }
}

/// The HTTP application: `/generate3d`, `/healthz`, `/readyz`, `/metrics`, and the web page
/// (`/`, `/assets/...`).
pub fn app(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(ENDPOINT_PATH, get(ws_handler))
        .with_state(gateway.clone())
        .merge(ops_router(gateway.ops.clone()))
        .merge(crate::page::router())
}

/// Serves `gateway` on `listener` until the shutdown: on drain, new WebSocket upgrades get
/// 503 while the HTTP routes keep answering (`/readyz` says draining); the server stops once
/// every WebSocket session has ended (each ends by the drain deadline).
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) -> std::io::Result<()> {
    let tracker = gateway.tracker.clone();
    let drain = gateway.shutdown.drain().clone();
    let stop = async move {
        drain.cancelled().await;
        tracker.close();
        tracker.wait().await;
    };
    // No Nagle: a part's announcement and bytes, and the final status, are small writes that
    // would otherwise wait for the client's delayed ACK (40 ms per job on Linux).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app(gateway).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(stop)
        .await
}

async fn ws_handler(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    if gw.shutdown.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down; connect to another one\n")
            .into_response();
    }
    let Ok(permit) = gw.connections.clone().try_acquire_owned() else {
        tracing::warn!(%peer, limit = gw.config.max_connections, "connection refused: at the limit");
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections; retry later\n").into_response();
    };
    let options = ClientOptions::from_query(query.as_deref());
    let id = gw.next_connection.fetch_add(1, Ordering::Relaxed);
    let limit = gw.config.transport_limit();
    let tracker = gw.tracker.clone();
    upgrade.max_message_size(limit).max_frame_size(limit).on_upgrade(move |socket| {
        tracker.track_future(crate::session::run(socket, gw, options, peer, id, permit))
    })
}
