//! What the service itself costs: the standalone server (real gateway, in-process queue,
//! worker loop) around a zero-time pipeline double, measured from a WebSocket client in another
//! process over loopback. Prints numbers; asserts nothing.
//!
//! `cargo bench -p img3d-worker --bench standalone`
//!
//! - jobs/s, p50/p99 latency per job (= the latency the service adds: the pipeline takes no
//!   time), MB/s streamed, for tiny parts and for realistic ones (2 x 1 MB PNG + 20 MB zip),
//!   beside the pipeline double called directly;
//! - the server's resident memory with 1,000 idle connections.
//!
//! The server runs in a child process (this executable with `IMG3D_BENCH_ROLE=server`) so its
//! memory and CPU are its own; client and server still share this machine's cores. The same
//! workloads against the Redis topology: the `scaleout` bench.

mod common;

use std::time::{Duration, Instant};

use common::{connect, measure, parts, Fixed, Proc};
use img3d_protocol::PartName;
use img3d_queue::Failure;
use img3d_worker::{JobRunner, JobSink};

async fn throughput(kind: &str, jobs: usize, connections: usize) {
    let server = Proc::start("server", kind, &[]);
    let m = measure(server.addr, jobs, connections).await;
    println!(
        "{kind:>9} parts, {connections} connection(s), {} jobs: {:7.1} jobs/s  p50 {:7.2} ms  p99 {:7.2} ms  {:7.1} MB/s  (server RSS after: {} MiB)",
        m.jobs,
        m.jobs_per_s,
        m.p50 * 1e3,
        m.p99 * 1e3,
        m.mb_per_s,
        server.rss_kib() / 1024,
    );
}

fn direct(kind: &str, jobs: usize) {
    struct Discard;
    impl JobSink for Discard {
        fn is_cancelled(&self) -> bool {
            false
        }
        fn progress(&mut self, _: img3d_protocol::ProgressStage, _: u32, _: u32) {}
        fn part(&mut self, _: PartName, bytes: Vec<u8>) -> Result<(), Failure> {
            std::hint::black_box(bytes);
            Ok(())
        }
    }
    let pipeline = Fixed { parts: parts(kind) };
    let start = Instant::now();
    for _ in 0..jobs {
        pipeline.run(&[], &Default::default(), &mut Discard).unwrap();
    }
    let per_job = start.elapsed().as_secs_f64() / jobs as f64;
    println!(
        "{kind:>9} parts, the pipeline double called directly (no service): {:7.3} ms per job",
        per_job * 1e3
    );
}

async fn idle_connections(n: usize) {
    let server = Proc::start("server", "tiny", &[]);
    let before = server.rss_kib();
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(connect(server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    println!(
        "server RSS: {} MiB idle, {} MiB with {n} idle connections ({:.1} KiB per connection)",
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / n as f64
    );
    drop(held);
}

fn main() {
    if common::run_child_role() {
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list
    }
    common::raise_nofile(2 * 1000 + 100);
    println!("img3d standalone service bench (loopback; client and server share the machine)");
    direct("tiny", 1000);
    direct("realistic", 20);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        throughput("tiny", 1000, 1).await;
        throughput("tiny", 1000, 8).await;
        throughput("realistic", 40, 1).await;
        throughput("realistic", 40, 4).await;
        idle_connections(1000).await;
    });
}
