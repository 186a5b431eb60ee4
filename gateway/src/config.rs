//! Gateway limits and timeouts: one clap struct, flattened into every binary that serves
//! clients (`img3d-gateway`, `img3d-worker standalone`, the protocol test server).

use std::time::Duration;

use clap::Args;

/// How the gateway treats clients. Every field is a flag and an `IMG3D_*` environment variable.
#[derive(Debug, Clone, Args)]
pub struct GatewayConfig {
    /// Close a connection on which no image arrived for this long (e.g. 300s, 10m).
    ///
    /// Pings keep connections through proxies alive; this frees the slot of a client that
    /// keeps a connection open without using it. Clients reconnect on demand.
    #[arg(long, env = "IMG3D_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// A job that has not finished this long after its image arrived fails with code
    /// `timeout` and is cancelled (e.g. 10m).
    ///
    /// Bounds how long a client waits and how long a stuck job can hold a worker.
    #[arg(long, env = "IMG3D_JOB_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub job_timeout: Duration,

    /// Interval between WebSocket pings to each client (e.g. 20s).
    ///
    /// Keeps idle connections open through load balancers and notices dead peers.
    #[arg(long, env = "IMG3D_PING_INTERVAL", default_value = "20s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A client that sends nothing (not even a pong) for one ping interval plus this long is
    /// considered gone: the connection is closed and its job cancelled (e.g. 20s).
    #[arg(long, env = "IMG3D_PING_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub ping_timeout: Duration,

    /// Largest image file accepted, in bytes (suffixes kB, MB, KiB, MiB allowed).
    ///
    /// Any phone photo fits in 20 MB; the limit keeps a burst of clients from making the
    /// gateway hold gigabytes. Larger images are answered with `failed` (code `too_large`).
    #[arg(long, env = "IMG3D_MAX_IMAGE_SIZE", default_value = "20MB", value_parser = parse_bytes)]
    pub max_image_size: u64,

    /// Largest WebSocket message read at all, in bytes (suffixes allowed).
    ///
    /// Above `--max-image-size` so that a too-large image is still read and answered with
    /// `failed` on a connection that keeps serving. A message over this limit is answered with
    /// `failed` (best effort) and the connection is closed with code 1009.
    #[arg(long, env = "IMG3D_MAX_FRAME_SIZE", default_value = "64MiB", value_parser = parse_bytes)]
    pub max_frame_size: u64,

    /// Largest decoded image accepted, in pixels (width x height).
    ///
    /// Read from the image header before decoding, so a small file that would decode to a huge
    /// bitmap (a decompression bomb) is refused without allocating it. The pipeline works at
    /// 320x320; more pixels only cost memory.
    #[arg(long, env = "IMG3D_MAX_PIXELS", default_value_t = img3d_protocol::DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_pixels: u64,

    /// Most WebSocket connections served at once; further upgrade requests get HTTP 503.
    ///
    /// Each connection may hold an image of up to `--max-frame-size` in memory.
    #[arg(long, env = "IMG3D_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Most jobs waiting for a worker; past it a new image is answered at once with `failed`
    /// (code `busy`, "server busy, retry later").
    ///
    /// A job takes about a minute on a GPU: a long line only makes clients wait for a
    /// timeout. Size it to workers x minutes a client will wait.
    #[arg(long, env = "IMG3D_MAX_QUEUE", default_value_t = img3d_queue::DEFAULT_MAX_QUEUE)]
    pub max_queue: usize,

    /// On SIGTERM or Ctrl-C, how long running jobs may take to finish before they are failed
    /// with code `unavailable` and their connections closed (e.g. 90s).
    ///
    /// Set the orchestrator's grace period (Kubernetes terminationGracePeriodSeconds) above it.
    #[arg(long, env = "IMG3D_DRAIN_DEADLINE", default_value = "90s", value_parser = humantime::parse_duration)]
    pub drain_deadline: Duration,
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
        }
    }
}

impl GatewayConfig {
    /// The transport read limit: never below the image limit (plus room for the frame).
    pub fn transport_limit(&self) -> usize {
        self.max_frame_size.max(self.max_image_size + 1024).try_into().unwrap_or(usize::MAX)
    }
}

/// Parses a byte count such as `20000000`, `20MB`, `64MiB`, `512kB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a byte count (e.g. 20MB, 64MiB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "mb" | "m" => 1000 * 1000,
        "gb" | "g" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} in {s:?}: use B, kB, MB, GB, KiB, MiB or GiB")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte counts parse with decimal and binary suffixes and reject nonsense.
    #[test]
    fn parses_byte_counts() {
        assert_eq!(parse_bytes("20MB"), Ok(20_000_000));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("512 kB"), Ok(512_000));
        assert!(parse_bytes("MB").is_err());
        assert!(parse_bytes("10 parsecs").is_err());
    }
}
