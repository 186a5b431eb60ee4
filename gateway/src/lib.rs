//! The img3d gateway: WebSocket sessions, validation and streaming of job events. No libtorch:
//! it runs on any small CPU machine (ARCHITECTURE.md). Shutdown, health, metrics and logging
//! come from `img3d-service`, shared with the worker.
//!
//! Entry points take resources, not addresses: build a [`Gateway`] around any
//! [`img3d_queue::JobQueue`] and call [`serve`] with a bound listener (tests bind
//! `127.0.0.1:0` and call the same function as production).

mod access;
mod budget;
mod config;
mod error;
pub mod page;
mod quota;
mod server;
mod session;
mod transport;
mod upgrade;
pub mod validate;

// The sessions' shared process plumbing, in scope crate-wide as `crate::Metrics` etc.
use img3d_service::{Health, Metrics, Shutdown};

pub use access::ApiKeys;
pub use config::{parse_bytes, parse_count, parse_duration, parse_size, GatewayConfig};
pub use error::ClientError;
pub use server::{app, serve, Gateway};
