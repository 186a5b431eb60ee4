//! What every img3d process needs besides its own work: graceful shutdown, health and
//! readiness, Prometheus metrics, logging setup and the Redis queue's timing flags.
//!
//! Shared by the gateway and the worker so that a GPU worker does not link the gateway to get
//! its shutdown, and the gateway does not link libtorch: this crate depends on neither.

pub mod args;
pub mod health;
pub mod memory;
pub mod metrics;
mod redis_options;
mod shutdown;
pub mod telemetry;

pub use health::{Component, ComponentId, Health};
pub use metrics::Metrics;
pub use redis_options::RedisOptions;
pub use shutdown::Shutdown;
