//! What Redis costs: the same workloads against the standalone server (gateway, in-process
//! queue and worker loop in one process) and against the scaled-out topology (a gateway
//! process and a worker process on a real Redis), side by side in one run, around the same
//! zero-time pipeline double. Prints numbers; asserts nothing.
//!
//! `cargo bench -p img3d-worker --bench scaleout` (Redis at `REDIS_URL`, default
//! `redis://127.0.0.1:6379`; every key under a fresh prefix, removed afterwards)
//!
//! Per workload (tiny parts and realistic ones: 2 x 1.2 MB PNG + 20 MB zip; 1 and 4
//! connections) and backend: jobs/s, p50/p99 latency per job (= the latency the service adds:
//! the pipeline takes no time), MB/s streamed to the client; for Redis also its `used_memory`
//! peak during the workload (`INFO memory`, sampled every 10 ms) and the keys left under the
//! prefix once every client has its result (job keys should be 0; the processes' heartbeat
//! keys stay until their TTL, so the bench deletes them).
//!
//! Servers, gateways and workers are this executable in child roles (see `common`), exactly as
//! `img3d-worker standalone`, `img3d-gateway` and `img3d-worker run` wire them; client,
//! processes and Redis share this machine's cores.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{measure, Measured, Proc};
use deadpool_redis::redis::{self, Commands};

/// (parts, jobs, connections): bounded so a run takes about a minute on 2 cores.
const WORKLOADS: [(&str, usize, usize); 4] =
    [("tiny", 1500, 1), ("tiny", 1500, 4), ("realistic", 60, 1), ("realistic", 60, 4)];

/// A command connection to the Redis the topology uses.
fn redis_conn(url: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))
}

/// `INFO memory`'s `used_memory`, bytes.
fn used_memory(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap()
}

fn keys_matching(conn: &mut redis::Connection, pattern: &str) -> Vec<String> {
    conn.scan_match::<_, String>(pattern).unwrap().collect::<Result<_, _>>().unwrap()
}

/// Samples `used_memory` every 10 ms on a thread of its own until dropped into [`Self::peak`].
struct MemoryWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl MemoryWatch {
    fn start(url: &str) -> Self {
        let mut conn = redis_conn(url).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut peak = 0;
                while !stop.load(Ordering::Relaxed) {
                    peak = peak.max(used_memory(&mut conn));
                    std::thread::sleep(Duration::from_millis(10));
                }
                peak
            }
        });
        MemoryWatch { stop, thread }
    }

    fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn row(kind: &str, connections: usize, backend: &str, m: &Measured, redis: &str) {
    println!(
        "{kind:>9} {connections:>5}  {backend:<10} {:>5} {:>8.1} {:>8.2} {:>8.2} {:>8.1}  {redis}",
        m.jobs,
        m.jobs_per_s,
        m.p50 * 1e3,
        m.p99 * 1e3,
        m.mb_per_s,
    );
}

async fn in_process(kind: &str, jobs: usize, connections: usize) {
    let server = Proc::start("server", kind, &[]);
    let m = measure(server.addr, jobs, connections).await;
    row(kind, connections, "in-process", &m, "");
}

async fn on_redis(url: &str, kind: &str, jobs: usize, connections: usize) {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("img3d-bench:{}-{nanos}", std::process::id());
    let env = [("IMG3D_BENCH_REDIS", url), ("IMG3D_BENCH_PREFIX", prefix.as_str())];
    let mut conn = redis_conn(url).unwrap();
    let before = used_memory(&mut conn);
    let (gateway, worker) = (Proc::start("gateway", kind, &env), Proc::start("worker", kind, &env));
    let watch = MemoryWatch::start(url);
    let m = measure(gateway.addr, jobs, connections).await;
    let peak = watch.peak();
    // The gateway releases a job's keys just after its client has `completed`.
    let until = Instant::now() + Duration::from_secs(5);
    let mut job_keys = keys_matching(&mut conn, &format!("{prefix}:job:*"));
    while !job_keys.is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        job_keys = keys_matching(&mut conn, &format!("{prefix}:job:*"));
    }
    drop((gateway, worker));
    // What is left besides job keys: the processes' heartbeats and the workers set, which
    // would expire on their own (TTLs: seconds, one idle day); delete them now.
    let left = keys_matching(&mut conn, &format!("{prefix}:*"));
    let job_keys = left.iter().filter(|k| k.starts_with(&format!("{prefix}:job:"))).count();
    if !left.is_empty() {
        redis::cmd("DEL").arg(&left).query::<usize>(&mut conn).unwrap();
    }
    let redis = format!(
        "{:>6.1} MB (+{:.1} MB)  {} job, {} process",
        peak as f64 / 1e6,
        peak.saturating_sub(before) as f64 / 1e6,
        job_keys,
        left.len() - job_keys,
    );
    row(kind, connections, "redis", &m, &redis);
}

fn main() {
    if common::run_child_role() {
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; nothing to list
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let version = match redis_conn(&url)
        .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c))
    {
        Ok(info) => {
            info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_owned()
        }
        Err(e) => {
            eprintln!("the scaleout bench needs a Redis at {url} (set REDIS_URL, or start one: `redis-server`): {e}");
            std::process::exit(2);
        }
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?");
    println!("img3d: in-process queue vs Redis, zero-time pipeline double, loopback");
    println!("{cpus} CPUs (load {load} at start), Redis {version} at {url}; client, processes and Redis share them");
    println!(
        "{:>9} {:>5}  {:<10} {:>5} {:>8} {:>8} {:>8} {:>8}  Redis peak (+this run)  keys left",
        "parts", "conns", "backend", "jobs", "jobs/s", "p50 ms", "p99 ms", "MB/s",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for (kind, jobs, connections) in WORKLOADS {
            in_process(kind, jobs, connections).await;
            on_redis(&url, kind, jobs, connections).await;
        }
    });
    println!("Redis peak: used_memory (INFO memory) during the workload, and how far above the value");
    println!("before it (Redis-wide: other clients of a shared Redis count too); keys left under the");
    println!("workload's prefix once every client had its result.");
}
