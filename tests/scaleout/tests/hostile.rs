//! Hostile and slow clients against a real server process (the protocol test server: real
//! gateway, in-process queue and worker loop, pipeline double), driven by real WebSocket
//! clients over loopback: one that stops reading, one that uploads slowly, one that sends a
//! frame over the size limit. Limits and sizes are scaled down through flags so each test
//! takes seconds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use img3d_scaleout_tests::raw_ws::{next_message, read_job, status, tcp, ws_client};
use img3d_scaleout_tests::{check_complete, client, colour, eventually, run, solid_png, standalone_with};
use tungstenite::Message;

/// A TCP stream that writes at most `chunk` bytes per `pause`: a slow uplink.
struct Throttled {
    tcp: TcpStream,
    chunk: usize,
    pause: Duration,
}

impl Read for Throttled {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Throttled {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(self.pause);
        let n = buf.len().min(self.chunk);
        self.tcp.write(&buf[..n])
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// A `side`x`side` PNG of noise (incompressible: about 3 bytes per pixel).
fn noise_png(side: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A client that sends an image and then stops reading its 30 MB result is closed once its
/// send limit passes and its job counts as failed with `timeout`; meanwhile another client on
/// the same server completes jobs with the same large parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_while_others_complete() {
    let server = standalone_with(
        50,
        &[
            "--output-bytes",
            "30000000",
            "--send-timeout",
            "2s",
            "--min-send-rate",
            "30MB",
            "--drain-deadline",
            "5s",
        ],
    );
    let mut stalled = ws_client(server.addr, tcp(server.addr));
    stalled.send(Message::Binary(solid_png(colour(1)).into())).unwrap();
    let started = Instant::now();

    let good = client(&server, Duration::from_secs(60));
    for i in 2..4 {
        let (events, end) = run(&good, solid_png(colour(i))).await;
        end.unwrap_or_else(|e| panic!("job {i} beside the stalled client failed: {e}"));
        check_complete(&events, Some(colour(i)));
    }

    let closed = eventually(Duration::from_secs(20), || {
        server.metrics().sum("img3d_jobs_total", r#"code="timeout""#) == 1.0
    })
    .await;
    assert!(closed, "the stalled client's job was not ended: {}", server.metrics().0);
    // 2 s of send limit plus at most 2 s of last words, then the session is gone.
    assert!(started.elapsed() < Duration::from_secs(20));
    let gone = eventually(Duration::from_secs(5), || {
        server.metrics().sum("img3d_connected_clients", "") == 1.0 // the good client's
    })
    .await;
    assert!(gone, "the stalled connection still counts: {}", server.metrics().0);

    // Reading now finds the connection closed after what the kernel had buffered.
    let raw = stalled.get_mut();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    let end = loop {
        match raw.read(&mut buf) {
            Ok(0) => break "eof".to_owned(),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset".to_owned(),
            Err(e) => panic!("the stalled connection was not closed (after {total} bytes): {e}"),
        }
    };
    assert!(total < 30_000_000, "the whole part arrived ({total} bytes, then {end}): nothing stalled");
}

/// SIGTERM while a client refuses to read a large part and its send limit is long: the
/// process still exits soon after the drain deadline, not when the client goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_by_the_drain_deadline_whatever_clients_do() {
    let mut server = standalone_with(
        50,
        &["--output-bytes", "30000000", "--send-timeout", "10m", "--drain-deadline", "2s"],
    );
    let mut stalled = ws_client(server.addr, tcp(server.addr));
    stalled.send(Message::Binary(solid_png(colour(1)).into())).unwrap();
    let ran =
        eventually(Duration::from_secs(10), || server.metrics().worker_jobs(r#"outcome="completed""#) == 1)
            .await;
    assert!(ran, "the worker did not finish the stalled client's job");
    // The zip is the gateway's to send now; give it time to fill the socket buffers.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let signalled = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(15)).await;
    let took = signalled.elapsed();
    assert!(status.is_some(), "still running {took:?} after SIGTERM with a 2 s drain deadline");
    assert!(took >= Duration::from_millis(1900), "exited in {took:?}: the send was not running");
    assert!(took < Duration::from_secs(7), "exited {took:?} after SIGTERM: drain deadline 2 s + last words");
    drop(stalled);
}

/// A 400 kB image uploaded at about 1.3 Mbit/s takes 2.5 s, five times the ping interval plus
/// timeout, without the client reading (so no pongs): bytes arriving are life, the job
/// completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_completes() {
    let server = standalone_with(50, &["--ping-interval", "250ms", "--ping-timeout", "250ms"]);
    let image = noise_png(370);
    assert!(image.len() > 380_000, "{} bytes", image.len());
    let addr = server.addr;
    let outcome = tokio::task::spawn_blocking(move || {
        let slow = Throttled { tcp: tcp(addr), chunk: 16 << 10, pause: Duration::from_millis(100) };
        let mut ws = ws_client(addr, slow);
        let started = Instant::now();
        ws.send(Message::Binary(image.into())).map_err(|e| format!("upload failed: {e}"))?;
        let upload = started.elapsed();
        read_job(&mut ws).map(|seen| (upload, seen))
    })
    .await
    .unwrap();
    let (upload, seen) = outcome.unwrap_or_else(|e| panic!("the slow upload was cut off: {e}"));
    assert!(upload > Duration::from_secs(2), "the upload was not slow: {upload:?}");
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert!(seen[7].contains("completed"), "{seen:?}");
}

/// A frame over `--max-frame-size` is refused from its header: the client gets `failed`
/// (`too_large`) and then the close (1009), even while it is still sending the frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_gets_failed_too_large_then_the_close() {
    let server = standalone_with(50, &["--max-image-size", "1MB", "--max-frame-size", "2MB"]);
    let addr = server.addr;
    let (failed, close) = tokio::task::spawn_blocking(move || {
        let mut ws = ws_client(addr, tcp(addr));
        // The server stops reading after the header; the rest goes into the lingering close.
        let sent = ws.send(Message::Binary(vec![7u8; 24 << 20].into()));
        let first = next_message(&mut ws).unwrap_or_else(|e| panic!("no answer ({sent:?}): {e}"));
        let close = match next_message(&mut ws) {
            Ok(Message::Close(Some(frame))) => u16::from(frame.code),
            other => panic!("expected the close, got {other:?}"),
        };
        (first, close)
    })
    .await
    .unwrap();
    assert_eq!(status(&failed), ("failed".to_owned(), "too_large".to_owned()), "{failed:?}");
    assert_eq!(close, 1009);
}

/// Peak resident memory of process `pid` (VmHWM), bytes.
fn peak_rss(pid: u32) -> u64 {
    img3d_testkit::process::status_bytes(pid, "VmHWM")
}

/// Eight clients send a 488 MiB decode bomb at once to a gateway process (Redis mode) with a
/// 600 MiB memory budget: decodes wait for room, so the gateway's peak RSS stays under the
/// budget; each client gets its result or `busy`, and the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decode_bombs_in_parallel_stay_within_the_memory_budget() {
    let (redis, prefix) = (img3d_scaleout_tests::shared_redis(), img3d_scaleout_tests::unique_prefix());
    let _worker = img3d_scaleout_tests::worker(&redis, &prefix, 0, &[]);
    let gateway = img3d_scaleout_tests::gateway(&redis, &prefix, &["--memory-budget", "600MiB"]);
    let bomb = img3d_testkit::images::bomb_png();
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let addr = gateway.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let bomb = bomb.clone();
            std::thread::spawn(move || {
                let mut ws = ws_client(addr, tcp(addr));
                img3d_scaleout_tests::raw_ws::run_job(&mut ws, bomb)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for c in clients {
        let seen = tokio::task::spawn_blocking(move || c.join().unwrap()).await.unwrap().unwrap();
        let last = Message::Text(seen.last().unwrap().clone().into());
        outcomes.push(status(&last));
    }
    let completed = outcomes.iter().filter(|(s, _)| s == "completed").count();
    for o in &outcomes {
        assert!(o.0 == "completed" || o.1 == "busy", "neither completed nor busy: {o:?}");
    }
    assert!(completed >= 1, "not one bomb fit the budget: {outcomes:?}");
    let peak = peak_rss(gateway.pid());
    assert!(peak < 600 << 20, "gateway peak RSS {} MiB over its 600 MiB budget", peak >> 20);
    // Still serving.
    let mut ws = ws_client(addr, tcp(addr));
    let seen = img3d_scaleout_tests::raw_ws::run_job(&mut ws, solid_png(colour(5))).unwrap();
    assert!(seen.last().unwrap().contains("completed"), "{seen:?}");
    eprintln!("8 bombs: {completed} completed, the rest busy; gateway peak RSS {} MiB", peak >> 20);
}

/// Eight clients each start a 20 MB image and send 18 MB of it, more than the server's 32 MB
/// memory budget together: what a client has uploaded draws from the budget, so the reads of
/// the clients that found no room stop there, and after the wait those clients get `failed`
/// (`busy`) and the close (1013); the server's peak RSS grows by about the budget, not by the
/// 144 MB sent; once the stalled clients are gone, a job completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_flight_stay_within_the_memory_budget() {
    const SENT: usize = 18 << 20;
    let server = standalone_with(50, &["--memory-budget", "32MiB", "--max-image-size", "20MiB"]);
    let (addr, pid) = (server.addr, server.pid());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = peak_rss(pid);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut ws = ws_client(addr, tcp(addr));
                let raw = ws.get_mut();
                raw.set_write_timeout(Some(Duration::from_secs(4))).unwrap();
                raw.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
                // A masked binary frame of 20 MiB (mask 0: the payload goes as is), 18 MiB of it.
                let mut header = vec![0x82u8, 0x80 | 127];
                header.extend_from_slice(&(20u64 << 20).to_be_bytes());
                header.extend_from_slice(&[0; 4]);
                let mut sent = 0;
                if raw.write_all(&header).is_ok() {
                    let chunk = vec![0x5au8; 256 << 10];
                    while sent < SENT && raw.write_all(&chunk).is_ok() {
                        sent += chunk.len();
                    }
                }
                let answer = next_message(&mut ws).map(|m| status(&m));
                let close = next_message(&mut ws);
                (sent, answer, close, ws)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(tokio::task::spawn_blocking(move || c.join().unwrap()).await.unwrap());
    }
    let peak = peak_rss(pid);
    let mut busy = 0;
    for (_, answer, close, _) in &outcomes {
        match answer {
            Ok((_, code)) if code == "busy" => {
                busy += 1;
                match close {
                    Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1013, "{frame:?}"),
                    other => panic!("no close (1013) after busy: {other:?}"),
                }
            }
            // A client the budget had room for: the server waits for the rest of its image.
            Err(e) => assert!(e.contains("timed out") || e.contains("Resource temporarily"), "{e}"),
            Ok(other) => panic!("an unfinished upload got {other:?}"),
        }
    }
    let sent: usize = outcomes.iter().map(|o| o.0).sum();
    assert!(busy >= 4, "{busy} of 8 clients refused ({sent} bytes sent); 32 MiB holds one or two");
    let grew = peak.saturating_sub(idle);
    eprintln!("8 uploads, {sent} bytes sent: {busy} refused busy; peak RSS grew {} MiB", grew >> 20);
    assert!(grew < 64 << 20, "peak RSS grew {} MiB with a 32 MiB budget ({sent} bytes sent)", grew >> 20);
    drop(outcomes);
    let mut ws = ws_client(addr, tcp(addr));
    let seen = img3d_scaleout_tests::raw_ws::run_job(&mut ws, solid_png(colour(6))).unwrap();
    assert!(seen.last().unwrap().contains("completed"), "{seen:?}");
}
