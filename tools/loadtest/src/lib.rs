//! The `loadtest` tool's library: one job driven and judged by a client ([`job`]), the
//! statistics of many ([`stats`]), the processes it watches ([`procs`]), and the two scenarios
//! ([`load`], [`fault`]). The topology tests (tests/scaleout) judge their jobs with the same
//! [`job`] and [`stats`] code, so the tool and the tests hold a deployment to the same rules.

pub mod fault;
pub mod job;
pub mod load;
pub mod procs;
pub mod stats;
