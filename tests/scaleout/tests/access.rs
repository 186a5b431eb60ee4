//! Who may connect, against a real server process (the protocol test server: real gateway,
//! in-process queue and worker, pipeline double): API keys (401 before the upgrade, accepted
//! from the header or the query, reloaded on SIGHUP), browser origins (403), per-client
//! connection and queue quotas (client = key, or IP; `X-Forwarded-For` only from a trusted
//! proxy).

use std::time::Duration;

use img3d_scaleout_tests::raw_ws::{handshake, read_job, run_job, status};
use img3d_scaleout_tests::{colour, eventually, solid_png, standalone_with};
use tungstenite::Message;

/// Asserts a whole successful job in `seen` (see [`run_job`]).
fn completed(seen: &[String]) {
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert!(seen[7].contains("completed"), "{seen:?}");
}

/// With `--api-keys`: a plain GET of the endpoint and an upgrade without a key or with a wrong
/// one get 401; the key as a Bearer header or `?key=` runs a job; after the file changes and a
/// SIGHUP, the old key gets 401 and the new one is accepted.
#[tokio::test]
async fn api_keys_are_required_accepted_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, "# test keys\nalpha-key\n").unwrap();
    let server = standalone_with(20, &["--api-keys", file.to_str().unwrap()]);
    let addr = server.addr;

    assert_eq!(server.http_get("/generate3d").0, 401, "a plain GET without a key");
    assert_eq!(handshake(addr, "/generate3d", &[]).0, 401);
    assert_eq!(handshake(addr, "/generate3d?key=wrong", &[]).0, 401);
    assert_eq!(handshake(addr, "/generate3d", &[("Authorization", "Bearer wrong")]).0, 401);

    let (code, ws) = handshake(addr, "/generate3d", &[("Authorization", "Bearer alpha-key")]);
    assert_eq!(code, 101);
    completed(&run_job(&mut ws.unwrap(), solid_png(colour(1))).unwrap());
    let (code, ws) = handshake(addr, "/generate3d?events=progress&key=alpha-key", &[]);
    assert_eq!(code, 101);
    let seen = run_job(&mut ws.unwrap(), solid_png(colour(2))).unwrap();
    assert!(seen.last().unwrap().contains("completed"), "{seen:?}");

    // Metrics per key, labelled by the key's id (SHA-256 prefix), never by the key.
    let metrics = server.metrics();
    // printf %s alpha-key | sha256sum | cut -c1-16
    let jobs = metrics.samples("img3d_key_jobs_total");
    assert_eq!(jobs.get(r#"key="677509799af78b2e",outcome="completed""#), Some(&2.0), "{jobs:?}");
    assert!(!metrics.0.contains("alpha-key"), "a key in the metrics");

    std::fs::write(&file, "beta-key\n").unwrap();
    server.hangup();
    let reloaded =
        eventually(Duration::from_secs(10), || handshake(addr, "/generate3d?key=alpha-key", &[]).0 == 401)
            .await;
    assert!(reloaded, "the old key still works after SIGHUP");
    assert_eq!(handshake(addr, "/generate3d?key=beta-key", &[]).0, 101);
}

/// Startup refuses a key file that is missing, naming the flag.
#[test]
fn a_missing_key_file_is_refused_at_start() {
    let out = std::process::Command::new(img3d_scaleout_tests::example_path("protocol-server"))
        .args(["--listen", "127.0.0.1:0", "--api-keys", "/nonexistent/keys"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--api-keys") && err.contains("/nonexistent/keys"), "{err}");
}

/// With `--allowed-origins`, a browser request from another origin gets 403; the allowed
/// origin and clients that send no origin connect.
#[tokio::test]
async fn other_origins_get_403() {
    let server = standalone_with(20, &["--allowed-origins", "https://app.example"]);
    let addr = server.addr;
    assert_eq!(handshake(addr, "/generate3d", &[("Origin", "https://evil.example")]).0, 403);
    assert_eq!(handshake(addr, "/generate3d", &[("Origin", "https://app.example")]).0, 101);
    assert_eq!(handshake(addr, "/generate3d", &[]).0, 101);
}

/// Per-client quotas keyed by client IP: a fourth connection from one client gets 429 while
/// another client (named by `X-Forwarded-For` from the trusted proxy) connects; a closed
/// connection frees its slot. With one job running and one waiting, the client's next image
/// gets `busy`, and the waiting one still completes.
#[tokio::test]
async fn per_client_quotas() {
    let server = standalone_with(
        1500,
        &[
            "--max-connections-per-client",
            "3",
            "--max-queued-per-client",
            "1",
            "--trusted-proxies",
            "127.0.0.1",
        ],
    );
    let addr = server.addr;
    let mut conns: Vec<_> = (0..3)
        .map(|i| {
            let (code, ws) = handshake(addr, "/generate3d", &[]);
            assert_eq!(code, 101, "connection {i}");
            ws.unwrap()
        })
        .collect();
    assert_eq!(handshake(addr, "/generate3d", &[]).0, 429, "a fourth connection from the same client");
    let other = [("X-Forwarded-For", "198.51.100.7")];
    let (code, other_ws) = handshake(addr, "/generate3d", &other);
    assert_eq!(code, 101, "another client behind the trusted proxy");

    // One job runs (the worker is busy for 1.5 s), one waits, the third is over the quota.
    conns[0].send(Message::Binary(solid_png(colour(1)).into())).unwrap();
    let started = eventually(Duration::from_secs(10), || server.metrics().busy()).await;
    assert!(started, "the first job did not start");
    conns[1].send(Message::Binary(solid_png(colour(2)).into())).unwrap();
    let queued =
        eventually(Duration::from_secs(10), || server.metrics().sum("img3d_queue_depth", "") == 1.0).await;
    assert!(queued, "the second job is not waiting");
    let seen = run_job(&mut conns[2], solid_png(colour(3))).unwrap();
    let last = Message::Text(seen.last().unwrap().clone().into());
    assert_eq!(status(&last), ("failed".into(), "busy".into()), "{seen:?}");
    completed(&read_job(&mut conns[0]).unwrap());
    completed(&read_job(&mut conns[1]).unwrap());

    drop(conns.pop());
    drop(other_ws);
    let freed = eventually(Duration::from_secs(5), || handshake(addr, "/generate3d", &[]).0 == 101).await;
    assert!(freed, "a closed connection did not give its slot back");
}

/// Quotas count per API key when keys are on, and a key's refusals are counted under its id:
/// a second connection of a key limited to one gets 429 while another key connects.
#[tokio::test]
async fn quota_refusals_are_counted_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, "alpha-key\nbeta-key\n").unwrap();
    let server =
        standalone_with(20, &["--api-keys", file.to_str().unwrap(), "--max-connections-per-client", "1"]);
    let addr = server.addr;
    let (code, _alpha) = handshake(addr, "/generate3d?key=alpha-key", &[]);
    assert_eq!(code, 101);
    assert_eq!(handshake(addr, "/generate3d?key=alpha-key", &[]).0, 429, "a second connection of the key");
    assert_eq!(handshake(addr, "/generate3d?key=beta-key", &[]).0, 101, "another key");
    let refused = server.metrics().samples("img3d_key_refused_total");
    // printf %s alpha-key | sha256sum | cut -c1-16
    assert_eq!(refused.get(r#"key="677509799af78b2e",quota="connections""#), Some(&1.0), "{refused:?}");
    assert_eq!(refused.len(), 1, "only alpha-key was refused: {refused:?}");
}
