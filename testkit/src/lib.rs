//! Helpers shared by the tests of several img3d crates (a dev-dependency only, never shipped):
//!
//! - [`tls::TestCa`]: a throwaway certificate authority and a `localhost` / `127.0.0.1` server
//!   certificate signed by it, for tests of TLS clients;
//! - [`file_server`]: a small HTTP/1.1 file server on loopback, plain or over TLS, with `Range`,
//!   redirects, a published SHA-256 and connections cut mid-body, for download tests.
//!
//! Helpers panic on failure: they run inside tests, where a panic is the failure report.

pub mod file_server;
pub mod tls;
