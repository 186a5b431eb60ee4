//! The Redis backend's timing flags, shared by every binary that talks to the Redis queue
//! (`img3d-gateway`, the `img3d-worker` queue worker, the protocol test server as a Redis
//! worker). The URL and prefix are each binary's own flags (required by the gateway, optional
//! where other modes exist).

use std::time::Duration;

use clap::Args;
use img3d_queue::redis::RedisConfig;

/// How the Redis queue detects dead processes. Give every process of a deployment the same
/// values (each process runs a reaper that applies them).
#[derive(Debug, Clone, Args)]
pub struct RedisOptions {
    /// A worker whose heartbeat is this old is presumed dead: its jobs go back to the queue
    /// and run elsewhere (e.g. 10s). The worker beats every quarter of it.
    #[arg(long, env = "IMG3D_HEARTBEAT_TTL", default_value = "10s", value_parser = crate::args::parse_duration)]
    pub heartbeat_ttl: Duration,

    /// A job whose gateway has not refreshed its "client alive" key for this long is dropped
    /// (its gateway died): a waiting job never starts, a running one stops (e.g. 10s).
    #[arg(long, env = "IMG3D_CLIENT_TTL", default_value = "10s", value_parser = crate::args::parse_duration)]
    pub client_ttl: Duration,

    /// Runs of a job before it is failed for good (code `internal`): a job that kills its
    /// worker must not kill them all.
    #[arg(long, env = "IMG3D_MAX_ATTEMPTS", default_value_t = 3, value_parser = crate::args::parse_count::<u32>)]
    pub max_attempts: u32,

    /// How often each process looks for dead workers (e.g. 5s).
    #[arg(long, env = "IMG3D_REAP_INTERVAL", default_value = "5s", value_parser = crate::args::parse_duration)]
    pub reap_interval: Duration,

    /// How long result parts may wait in Redis for their gateway (which deletes each one as
    /// soon as it is sent) (e.g. 10m).
    #[arg(long, env = "IMG3D_RESULT_TTL", default_value = "10m", value_parser = crate::args::parse_duration)]
    pub result_ttl: Duration,
}

impl RedisOptions {
    /// The backend's settings: these flags over [`RedisConfig::new`]'s defaults.
    pub fn config(&self, url: &str, prefix: &str) -> RedisConfig {
        let mut cfg = RedisConfig::new(url, prefix);
        cfg.heartbeat_ttl = self.heartbeat_ttl;
        cfg.client_ttl = self.client_ttl;
        cfg.max_attempts = self.max_attempts;
        cfg.reap_interval = self.reap_interval;
        cfg.payload_ttl = self.result_ttl;
        cfg
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        redis: RedisOptions,
    }

    /// The flags' defaults are the backend's defaults (the README and `--help` say the same).
    #[test]
    fn defaults_match_the_backend() {
        let flags = Cli::parse_from(["x"]).redis.config("redis://h", "p");
        let backend = RedisConfig::new("redis://h", "p");
        assert_eq!(flags.heartbeat_ttl, backend.heartbeat_ttl);
        assert_eq!(flags.client_ttl, backend.client_ttl);
        assert_eq!(flags.max_attempts, backend.max_attempts);
        assert_eq!(flags.reap_interval, backend.reap_interval);
        assert_eq!(flags.payload_ttl, backend.payload_ttl);
    }
}
