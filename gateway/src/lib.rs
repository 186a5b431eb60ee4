//! The img3d gateway: WebSocket sessions, validation, streaming of job events, health and
//! metrics. No libtorch: it runs on any small CPU machine (SPEC.md section 4).
//!
//! Entry points take resources, not addresses: build a [`Gateway`] around any
//! [`img3d_queue::JobQueue`] and call [`serve`] with a bound listener (tests bind
//! `127.0.0.1:0` and call the same function as production).

mod config;
mod error;
pub mod health;
pub mod metrics;
pub mod page;
mod redis_options;
mod server;
mod session;
mod shutdown;
pub mod telemetry;
pub mod validate;

pub use config::{parse_bytes, GatewayConfig};
pub use error::ClientError;
pub use health::{Component, Health};
pub use metrics::Metrics;
pub use redis_options::RedisOptions;
pub use server::{app, serve, Gateway};
pub use shutdown::Shutdown;
