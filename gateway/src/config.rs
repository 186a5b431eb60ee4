//! Gateway limits and timeouts: one clap struct, flattened into every binary that serves
//! clients (`img3d-gateway`, `img3d-worker standalone`, the protocol test server).

use std::time::Duration;

use clap::Args;

pub use img3d_service::args::{parse_bytes, parse_count, parse_duration, parse_size};

use crate::access::{ApiKeys, IpRange};

/// How the gateway treats clients. Every field is a flag and an `IMG3D_*` environment variable.
#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// Close a connection on which no image arrived for this long (e.g. 300s, 10m).
    ///
    /// Pings keep connections through proxies alive; this frees the slot of a client that
    /// keeps a connection open without using it. Clients reconnect on demand.
    #[arg(long, env = "IMG3D_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// A job that has not finished this long after its image arrived fails with code
    /// `timeout` and is cancelled (e.g. 10m).
    ///
    /// Bounds how long a client waits and how long a stuck job can hold a worker.
    #[arg(long, env = "IMG3D_JOB_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub job_timeout: Duration,

    /// Interval between WebSocket pings to each client (e.g. 20s).
    ///
    /// Keeps idle connections open through load balancers and notices dead peers.
    #[arg(long, env = "IMG3D_PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A ping unanswered for this long, with no bytes moving either way meanwhile, means the
    /// client is gone: the connection is closed and its job cancelled (e.g. 20s). Data counts
    /// as an answer, so a slow upload or download is not taken for a dead peer.
    #[arg(long, env = "IMG3D_PING_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub ping_timeout: Duration,

    /// Largest image file accepted, in bytes (suffixes kB, MB, KiB, MiB allowed).
    ///
    /// Any phone photo fits in 20 MB; the limit keeps a burst of clients from making the
    /// gateway hold gigabytes. Larger images are answered with `failed` (code `too_large`).
    #[arg(long, env = "IMG3D_MAX_IMAGE_SIZE", default_value = "20MB", value_parser = parse_size)]
    pub max_image_size: u64,

    /// Largest WebSocket message read at all, in bytes (suffixes allowed).
    ///
    /// Above `--max-image-size` so that a too-large image is still read and answered with
    /// `failed` on a connection that keeps serving. A frame over this limit is refused from its
    /// header (its payload is never buffered): `failed` (`too_large`), then the connection is
    /// closed with code 1009.
    #[arg(long, env = "IMG3D_MAX_FRAME_SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_frame_size: u64,

    /// Largest decoded image accepted, in pixels (width x height).
    ///
    /// Read from the image header before decoding, so a small file that would decode to a huge
    /// bitmap (a decompression bomb) is refused without allocating it. The pipeline works at
    /// 320x320; more pixels only cost memory.
    #[arg(long, env = "IMG3D_MAX_PIXELS", default_value_t = img3d_protocol::DEFAULT_MAX_IMAGE_PIXELS, value_parser = parse_count::<u64>)]
    pub max_pixels: u64,

    /// Most WebSocket connections served at once; further upgrade requests get HTTP 503.
    ///
    /// Each connection may hold an image of up to `--max-frame-size` in memory.
    #[arg(long, env = "IMG3D_MAX_CONNECTIONS", default_value_t = 1024, value_parser = parse_count::<usize>)]
    pub max_connections: usize,

    /// Most jobs waiting for a worker; past it a new image is answered at once with `failed`
    /// (code `busy`, "server busy, retry later").
    ///
    /// A job takes about a minute on a GPU: a long line only makes clients wait for a
    /// timeout. Size it to workers x minutes a client will wait.
    #[arg(long, env = "IMG3D_MAX_QUEUE", default_value_t = img3d_queue::DEFAULT_MAX_QUEUE, value_parser = parse_count::<usize>)]
    pub max_queue: usize,

    /// On SIGTERM or Ctrl-C, how long running jobs may take to finish before they are failed
    /// with code `unavailable` and their connections closed (e.g. 90s).
    ///
    /// Set the orchestrator's grace period (Kubernetes terminationGracePeriodSeconds) above it.
    #[arg(long, env = "IMG3D_DRAIN_DEADLINE", default_value = "90s", value_parser = parse_duration)]
    pub drain_deadline: Duration,

    /// Longest a client may take to accept one message (e.g. 30s); a part larger than
    /// `--send-timeout` x `--min-send-rate` gets the time it takes at `--min-send-rate`.
    ///
    /// A client that stops reading would otherwise hold its connection, its job's parts and
    /// the drain forever: past this it is closed and its job cancelled. Set the load
    /// balancer's send/read timeouts (nginx `proxy_send_timeout`, `proxy_read_timeout`) to at
    /// least this.
    #[arg(long, env = "IMG3D_SEND_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub send_timeout: Duration,

    /// Slowest download rate a client is given time for, in bytes per second (suffixes
    /// allowed), when a large part is sent (see `--send-timeout`).
    ///
    /// The default (125kB, 1 Mbit/s) gives a 20 MB part 160 s.
    #[arg(long, env = "IMG3D_MIN_SEND_RATE", default_value = "125kB", value_parser = parse_size)]
    pub min_send_rate: u64,

    /// Memory the gateway may spend on what clients send and receive, in bytes (suffixes
    /// allowed): uploads in flight, decoded images (sized from the header, before decoding)
    /// and parts being sent.
    ///
    /// Work that does not fit waits 2 s, then gets `failed` (code `busy`; an upload that
    /// stopped for want of room is then closed, 1013); an image that alone
    /// decodes to more gets `too_large`. Size the container's memory limit at this plus about
    /// 256 MiB (process, connections, parts waiting in the queue).
    #[arg(long, env = "IMG3D_MEMORY_BUDGET", default_value = "640MiB", value_parser = parse_size)]
    pub memory_budget: u64,

    /// File of API keys, one per line (`#` comments and blank lines skipped); when set, every
    /// WebSocket request needs one, as `Authorization: Bearer KEY` or `?key=KEY` (browsers
    /// cannot set headers on a WebSocket), or gets HTTP 401 before the upgrade.
    ///
    /// Keys are held hashed in memory and the file is read again on SIGHUP. Off by default.
    #[arg(long, env = "IMG3D_API_KEYS", value_parser = ApiKeys::load)]
    pub api_keys: Option<ApiKeys>,

    /// Most WebSocket connections one client holds at once (per API key, or per client IP
    /// when keys are off); past it the upgrade gets HTTP 429. No limit by default.
    #[arg(long, env = "IMG3D_MAX_CONNECTIONS_PER_CLIENT", value_parser = parse_count::<usize>)]
    pub max_connections_per_client: Option<usize>,

    /// Most jobs one client (key or IP) has waiting for a worker across its connections; past
    /// it an image gets `failed` (code `busy`). No limit by default.
    #[arg(long, env = "IMG3D_MAX_QUEUED_PER_CLIENT", value_parser = parse_count::<usize>)]
    pub max_queued_per_client: Option<usize>,

    /// Load balancers whose `X-Forwarded-For` names the client, for the per-client quotas
    /// (comma-separated addresses or ranges, e.g. `10.0.0.0/8`). From any other peer the
    /// header is ignored: anyone can write it.
    #[arg(long, env = "IMG3D_TRUSTED_PROXIES", value_delimiter = ',', value_parser = IpRange::parse)]
    pub trusted_proxies: Vec<IpRange>,

    /// Web page origins allowed to open a WebSocket (comma-separated, e.g.
    /// `https://app.example`); a browser request from another origin gets HTTP 403. Requests
    /// without an `Origin` header (non-browser clients) are not affected. Any origin when unset.
    #[arg(long, env = "IMG3D_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            idle_timeout: Duration::from_secs(300),
            job_timeout: Duration::from_secs(600),
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            max_image_size: img3d_protocol::DEFAULT_MAX_IMAGE_BYTES as u64,
            max_frame_size: 64 << 20,
            max_pixels: img3d_protocol::DEFAULT_MAX_IMAGE_PIXELS,
            max_connections: 1024,
            max_queue: img3d_queue::DEFAULT_MAX_QUEUE,
            drain_deadline: Duration::from_secs(90),
            send_timeout: Duration::from_secs(30),
            min_send_rate: 125_000,
            memory_budget: 640 << 20,
            api_keys: None,
            max_connections_per_client: None,
            max_queued_per_client: None,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

impl GatewayConfig {
    /// The transport read limit: never below the image limit (plus room for the frame).
    pub fn transport_limit(&self) -> usize {
        self.max_frame_size.max(self.max_image_size + 1024).try_into().unwrap_or(usize::MAX)
    }

    /// How long sending `len` bytes to a client may take: `--send-timeout`, or the time at
    /// `--min-send-rate` when that is longer.
    pub fn send_limit(&self, len: usize) -> Duration {
        let at_min_rate = Duration::from_secs_f64(len as f64 / self.min_send_rate.max(1) as f64);
        self.send_timeout.max(at_min_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small message gets `--send-timeout`; a large part the time at `--min-send-rate`.
    #[test]
    fn send_limit_grows_with_the_part() {
        let cfg = GatewayConfig::default();
        assert_eq!(cfg.send_limit(100), Duration::from_secs(30));
        assert_eq!(cfg.send_limit(20_000_000), Duration::from_secs(160));
    }
}
