//! The img3d worker: one job at a time per GPU, the pipeline in `spawn_blocking`, each part
//! published the moment it exists; also the all-in-one standalone server and the one-shot
//! `run` mode.

pub mod cache_lock;
pub mod cli;
pub mod converter;
pub mod crm;
pub mod download;
mod job_loop;
pub mod model_source;
mod once;
pub mod runner;
mod sink;
pub mod standalone;
mod watchdog;

pub use crm::ModelSpec;
pub use job_loop::{run, run_with, WorkerOptions};
pub use once::run_once;
pub use runner::{JobRunner, JobSink};
pub use watchdog::{Watchdog, Wedged};
