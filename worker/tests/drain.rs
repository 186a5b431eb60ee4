//! SIGTERM drain of a real process: the protocol test server (real gateway, queue and worker
//! loop; pipeline double). Needs the example built: `cargo build -p img3d-worker --examples`
//! (scripts/test builds every target first).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn example_path() -> PathBuf {
    // target/debug/deps/drain-HASH -> target/debug/examples/protocol-server
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join("protocol-server");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p img3d-worker --examples`",
        path.display()
    );
    path
}

/// Starts the protocol server on a free port and reads the address it printed.
fn spawn(args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(example_path())
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("IMG3D_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the protocol server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected {line:?}"));
    (child, addr.parse().unwrap())
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Waits for the process to exit, at most `limit`; returns its exit code.
async fn exit_code(child: &mut Child, limit: Duration) -> Option<i32> {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM with a job running: readiness goes 503 first, the job completes, the connection is
/// closed with 1001, and the process exits 0 well before its drain deadline.
#[tokio::test]
async fn sigterm_drains_a_running_job_and_exits_0() {
    let (mut child, addr) = spawn(&["--delay-ms", "1500", "--drain-deadline", "30s"]);
    ready(addr).await;
    let mut ws = connect(addr, "").await;
    send_binary(&mut ws, png(32, 32, 5)).await;
    assert_eq!(next_text(&mut ws).await, PROCESSING);
    // `processing` answers the image at once, before it is validated and queued; a drain that
    // begins before the job is queued refuses it (`unavailable`, retryable) and closes. This
    // test is about a job already running, so it waits for the worker to hold it.
    job_running(addr).await;
    sigterm(&child);
    let mut readyz = (200, String::new());
    for _ in 0..100 {
        readyz = http_get(addr, "/readyz").await;
        if readyz.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(readyz.0, 503, "{}", readyz.1);
    assert!(readyz.1.contains("draining"), "{}", readyz.1);
    for announcement in ANNOUNCEMENTS {
        assert_eq!(next_text(&mut ws).await, announcement);
        assert!(matches!(next_frame(&mut ws).await, Frame::Binary(_)));
    }
    assert_eq!(next_text(&mut ws).await, COMPLETED);
    assert_eq!(next_frame(&mut ws).await, Frame::Closed(Some(1001)));
    assert_eq!(exit_code(&mut child, Duration::from_secs(10)).await, Some(0));
}

/// Waits until the worker runs a job (`img3d_worker_busy 1` in `/metrics`).
async fn job_running(addr: SocketAddr) {
    let until = Instant::now() + LIMIT;
    while !http_get(addr, "/metrics").await.1.lines().any(|l| l == "img3d_worker_busy 1") {
        assert!(Instant::now() < until, "the job never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// SIGTERM with a job longer than the drain deadline: the client gets `failed` (unavailable)
/// at the deadline and the process exits 0 right after.
#[tokio::test]
async fn sigterm_past_the_deadline_fails_the_job_and_exits_0() {
    let (mut child, addr) = spawn(&["--delay-ms", "60000", "--drain-deadline", "500ms"]);
    ready(addr).await;
    let mut ws = connect(addr, "").await;
    send_binary(&mut ws, png(32, 32, 5)).await;
    assert_eq!(next_text(&mut ws).await, PROCESSING);
    job_running(addr).await;
    let started = Instant::now();
    sigterm(&child);
    let (code, reason) = expect_failed(&mut ws).await;
    assert_eq!(code, "unavailable", "{reason}");
    assert_eq!(exit_code(&mut child, Duration::from_secs(10)).await, Some(0));
    assert!(started.elapsed() < Duration::from_secs(5), "exit took {:?}", started.elapsed());
}
