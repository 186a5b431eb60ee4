//! The gateway: the `/generate3d` WebSocket endpoint plus the operational routes, and `serve`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use img3d_protocol::{ClientOptions, JobOptions, ENDPOINT_PATH};
use img3d_queue::{JobQueue, QueueProbe};
use img3d_service::health::{ops_router, Ops};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::access::{Access, Denied};
use crate::budget::MemoryBudget;
use crate::quota::{Kind, Quotas};
use crate::transport::{ClientListener, Peer};
use crate::upgrade::{NotUpgrade, Upgrade, FRAGMENT};
use crate::{GatewayConfig, Health, Metrics, Shutdown};
use tungstenite::protocol::WebSocketConfig;

/// Initial WebSocket read buffer per connection, bytes.
const READ_BUFFER: usize = 4 << 10;

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
    /// `--memory-budget`: decodes and outgoing parts.
    pub(crate) budget: MemoryBudget,
    /// Keys, origins, client identity.
    access: Access,
    /// Per-client connections and waiting jobs.
    pub(crate) quotas: Arc<Quotas>,
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
        if let Some(keys) = &config.api_keys {
            tracing::info!(keys = keys.len(), "API keys required");
            keys.reload_on_sighup();
        }
        let access = Access {
            keys: config.api_keys.clone(),
            origins: config.allowed_origins.iter().map(|o| o.trim_end_matches('/').to_owned()).collect(),
            trusted_proxies: config.trusted_proxies.clone(),
        };
        Arc::new(Gateway {
            budget: MemoryBudget::new(config.memory_budget),
            access,
            quotas: Quotas::new(config.max_connections_per_client, config.max_queued_per_client),
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
    let listener = ClientListener::new(listener, gateway.budget.clone());
    axum::serve(listener, app(gateway).into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(stop)
        .await
}

/// Checks, in order: draining (503), origin (403), API key (401), the client's connection
/// quota (429), the server's connection limit (503); then upgrades. All of it before the
/// upgrade extractor is looked at, so a plain GET without a key gets 401 too (a web page asks
/// for a key on that).
async fn ws_handler(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<Upgrade, NotUpgrade>,
) -> Response {
    if gw.shutdown.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down; connect to another one\n")
            .into_response();
    }
    let client = match gw.access.admit(&headers, query.as_deref(), peer.addr.ip()) {
        Ok(client) => client,
        Err(Denied::Unauthorized) => {
            tracing::info!(peer = %peer.addr, "refused: no valid API key");
            return (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "an API key is needed: send `Authorization: Bearer KEY` or add `?key=KEY`\n",
            )
                .into_response();
        }
        Err(Denied::Origin(origin)) => {
            tracing::info!(peer = %peer.addr, %origin, "refused: origin not allowed");
            return (StatusCode::FORBIDDEN, "this origin may not use this server\n").into_response();
        }
    };
    let Some(slot) = gw.quotas.take(client, Kind::Connection) else {
        tracing::info!(peer = %peer.addr, ?client, "refused: the client holds its connection quota");
        if let Some(key) = client.key_label() {
            gw.metrics().key_refused.with_label_values(&[&key, "connections"]).inc();
        }
        return (StatusCode::TOO_MANY_REQUESTS, "busy: this client holds as many connections as allowed\n")
            .into_response();
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let Ok(permit) = gw.connections.clone().try_acquire_owned() else {
        tracing::warn!(peer = %peer.addr, limit = gw.config.max_connections, "connection refused: at the limit");
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections; retry later\n").into_response();
    };
    let options = ClientOptions::from_query(query.as_deref());
    // Bad query options fail each job of the connection (naming the option), not the upgrade:
    // a browser cannot read the reason of a refused upgrade.
    let job_options = JobOptions::from_query(query.as_deref());
    let id = gw.next_connection.fetch_add(1, Ordering::Relaxed);
    let limit = gw.config.transport_limit();
    let tracker = gw.tracker.clone();
    // A small read buffer: it is allocated up front for every connection (the library's
    // default, 128 KiB, made an idle connection cost 131 KiB); a large image grows it while it
    // arrives. Writes are buffered up to one fragment of a part (see `upgrade`).
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(limit.saturating_add(FRAGMENT));
    upgrade.on_upgrade(config, move |socket| {
        tracker.track_future(crate::session::run(socket, gw, options, job_options, peer, id, (permit, slot)))
    })
}
