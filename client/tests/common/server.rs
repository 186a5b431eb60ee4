//! The real gateway + queue + worker loop, run as the `protocol-server` example of
//! img3d-worker (a pipeline double inside the worker produces valid placeholder parts).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running protocol-server process; killed on drop.
pub struct ProtocolServer {
    pub addr: SocketAddr,
    child: Child,
}

/// `target/debug/examples/protocol-server`, found next to this test binary.
pub fn protocol_server_bin() -> PathBuf {
    // The test binary is target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = profile_dir.join("examples").join("protocol-server");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p img3d-worker --example protocol-server` \
         (scripts/test builds all targets before testing)",
        bin.display()
    );
    bin
}

impl ProtocolServer {
    /// Starts one on a free loopback port.
    pub fn start(delay_ms: Option<u64>) -> ProtocolServer {
        Self::start_on("127.0.0.1:0", delay_ms)
    }

    /// Starts one on `listen` (e.g. the port of a server that was killed).
    pub fn start_on(listen: &str, delay_ms: Option<u64>) -> ProtocolServer {
        let mut cmd = Command::new(protocol_server_bin());
        cmd.args(["--listen", listen]).stdout(Stdio::piped()).stderr(Stdio::null());
        if let Some(ms) = delay_ms {
            cmd.args(["--delay-ms", &ms.to_string()]);
        }
        let mut child = cmd.spawn().expect("cannot start protocol-server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Read the "listening on ADDR" line off-thread so a server that never prints it fails
        // the test instead of hanging it; keep draining stdout so the server never blocks.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(addr) = line.trim().strip_prefix("listening on ") {
                        let _ = tx.send(addr.trim().to_owned());
                        sent = true;
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("protocol-server printed a bad address"),
            Err(_) => {
                let _ = child.kill();
                panic!("protocol-server did not print `listening on ADDR` within 30 s");
            }
        };
        ProtocolServer { addr, child }
    }

    /// `ws://ADDR/generate3d`.
    pub fn url(&self) -> String {
        format!("ws://{}/generate3d", self.addr)
    }

    /// Kills the process (SIGKILL: a crash, not a graceful drain) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProtocolServer {
    fn drop(&mut self) {
        self.kill();
    }
}
