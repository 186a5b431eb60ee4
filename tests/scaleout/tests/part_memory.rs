//! What large parts leave behind in a server's memory, measured on a real server process (the
//! protocol test server: real gateway and queue, pipeline double with 20 MB zips) from its
//! `/proc` status, with real WebSocket clients over loopback.

use std::time::Duration;

use img3d_scaleout_tests::raw_ws::{run_job, tcp, ws_client};
use img3d_scaleout_tests::{colour, eventually, solid_png, standalone_with};

/// Resident memory of process `pid` (VmRSS), bytes.
fn rss(pid: u32) -> u64 {
    img3d_testkit::process::status_bytes(pid, "VmRSS")
}

/// Fifty clients each receive a 20 MB part and stay connected: the server's resident memory
/// comes back to within 10% of its level after the first job. A part sent as one message was
/// copied whole into its connection's write buffer, which kept that capacity until the
/// connection closed (50 x 20 MB here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_parts_leave_nothing_behind_on_open_connections() {
    const CLIENTS: usize = 50;
    const PART: usize = 20_000_000;
    let server = standalone_with(0, &["--output-bytes", &PART.to_string()]);
    let (addr, pid) = (server.addr, server.pid());

    // The first job: the server's own buffers (the double's, the allocator's) exist from here.
    let first = tokio::task::spawn_blocking(move || {
        let mut ws = ws_client(addr, tcp(addr));
        let seen = run_job(&mut ws, solid_png(colour(0))).expect("the first job");
        (ws, seen)
    })
    .await
    .unwrap();
    assert!(first.1.last().is_some_and(|m| m.contains("completed")), "{:?}", first.1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss(pid);

    // Five at a time, each client keeping its connection open after its job.
    let mut open = vec![first.0];
    for batch in 0..CLIENTS / 5 {
        let runs: Vec<_> = (0..5)
            .map(|i| {
                tokio::task::spawn_blocking(move || {
                    let mut ws = ws_client(addr, tcp(addr));
                    let seen = run_job(&mut ws, solid_png(colour(1 + batch * 5 + i))).expect("a job");
                    (ws, seen)
                })
            })
            .collect();
        for run in runs {
            let (ws, seen) = run.await.unwrap();
            let biggest =
                seen.iter().filter_map(|m| m.strip_prefix('<')?.strip_suffix(" bytes>")?.parse().ok());
            assert!(biggest.max().is_some_and(|n: usize| n >= PART), "no 20 MB part in {seen:?}");
            assert!(seen.last().is_some_and(|m| m.contains("completed")), "{seen:?}");
            open.push(ws);
        }
    }
    assert_eq!(server.metrics().worker_jobs(r#"outcome="completed""#), CLIENTS as u64 + 1);

    let limit = idle + idle / 10;
    let returned = eventually(Duration::from_secs(10), || rss(pid) <= limit).await;
    let now = rss(pid);
    eprintln!(
        "RSS after the first job {} MiB; after {CLIENTS} more 20 MB parts, {} connections open: {} MiB",
        idle >> 20,
        open.len(),
        now >> 20
    );
    assert!(
        returned,
        "RSS {} MiB with {} connections open, over 110% of the {} MiB after the first job",
        now >> 20,
        open.len(),
        idle >> 20
    );
    drop(open);
}
