//! The img3d client library: send a photo to an img3d server, get the three result parts
//! back as they arrive (docs/protocol.md section 5).
//!
//! - One WebSocket connection, opened on the first request and reused for the next ones; a
//!   dropped connection is reopened by the next request (a bounded number of attempts, never
//!   a background reconnect loop).
//! - One active request at a time: [`Client::generate`] fails with [`ClientError::Busy`] while
//!   another runs.
//! - The `result_part` -> binary frame state machine: each part is handed over as an
//!   [`Event::Part`] the moment its binary frame arrives (the two PNGs long before the ZIP).
//! - An application-level timeout (default 5 minutes) that closes the connection, which
//!   cancels the job on the server.
//!
//! [`save`] holds the file handling of the `img3d` tool (sanitised names, atomic writes, safe
//! ZIP extraction) for applications that save parts the same way.

mod client;
mod config;
mod connection;
mod error;
mod event;
mod machine;
pub mod save;

pub use client::{Client, Request};
pub use config::ClientConfig;
pub use error::{ClientError, ExtractError};
pub use event::{Event, Part};
pub use img3d_protocol::{FailureCode, PartName, ProgressStage, PARTS};
