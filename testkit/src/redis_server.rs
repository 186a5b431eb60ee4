//! A private `redis-server` for tests that kill, restart or reconfigure Redis (so they never
//! disturb the shared one on 6379): the queue's fault tests and the scale-out end-to-end tests
//! (`tests/scaleout/`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    plain: bool,
}

impl RedisServer {
    /// Starts one with no persistence and `extra` arguments (e.g. `["--requirepass", "pw"]`).
    pub fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let mut server = RedisServer {
            port,
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            plain: true,
        };
        server.spawn();
        server
    }

    /// Starts one listening for TLS on `tls_port` only (the plain port is off); `extra` holds
    /// the `--tls-*` arguments.
    pub fn start_tls(extra: &[&str], tls_port: u16) -> Self {
        let mut server = RedisServer {
            port: tls_port,
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            plain: false,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT` (with `auth`, e.g. `:pw@`, before the host).
    pub fn url(&self, auth: &str) -> String {
        format!("redis://{auth}127.0.0.1:{}", self.port)
    }

    /// Its working directory (for TLS files and the like).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn spawn(&mut self) {
        let plain_port = if self.plain { self.port } else { 0 };
        let mut args = vec![
            "--port".to_string(),
            plain_port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            self.dir.path().display().to_string(),
        ];
        args.extend(self.args.iter().cloned());
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// `kill -9`: every connection drops, all data is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM, as an orchestrator stops it (Redis fsyncs its append-only file and exits),
    /// then starts it again on the same port and directory: with `--appendonly yes` it comes
    /// back with its data. Returns how long it was unreachable.
    pub fn restart_graceful(&mut self) -> Duration {
        let down = Instant::now();
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
            assert!(status.success(), "kill -TERM {pid} failed");
            let _ = child.wait();
        }
        self.spawn();
        down.elapsed()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use crate::free_port;
