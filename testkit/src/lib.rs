//! Helpers shared by the tests of several img3d crates (a dev-dependency only, never shipped):
//!
//! - [`tls::TestCa`]: a throwaway certificate authority and a `localhost` / `127.0.0.1` server
//!   certificate signed by it, for tests of TLS clients;
//! - [`file_server`]: a small HTTP/1.1 file server on loopback, plain or over TLS, with `Range`,
//!   redirects, a published SHA-256 and connections cut mid-body, for download tests;
//! - [`redis_server::RedisServer`]: a private `redis-server` on a free port, for tests that
//!   kill, restart or reconfigure Redis;
//! - [`images::bomb_png`], a decompression bomb, and [`process::status_bytes`], another
//!   process's memory from `/proc`.
//!
//! Helpers panic on failure: they run inside tests, where a panic is the failure report.

pub mod file_server;
pub mod images;
pub mod process;
pub mod redis_server;
pub mod tls;

/// A loopback port nothing listens on now (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().unwrap().port()
}
