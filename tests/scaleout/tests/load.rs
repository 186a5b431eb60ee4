//! The load test of the deployment's shape: 200 clients at once through nginx (running
//! `deploy/nginx.conf`) against two gateways and two Redis workers (the pipeline double with
//! 40 ms jobs), bounded in time and loopback only. Prints throughput, latency overhead and peak
//! memory per process (README "Deploying" has the numbers); fails unless every job completes,
//! correct, in FIFO order, none timing out, with the gateways' memory bounded.
//!
//! Jobs are driven and judged by the load-test tool's own code (`img3d-loadtest`, tools/loadtest:
//! each job's image names it, the double copies it into `pixel_images.png`, so a client
//! getting another job's result is caught; parts once each in protocol order).

use std::time::{Duration, Instant};

use img3d_scaleout_tests::job::{self, JobRecord, Outcome};
use img3d_scaleout_tests::nginx::Nginx;
use img3d_scaleout_tests::procs::{Sampler, Watched};
use img3d_scaleout_tests::stats::{self, cells, fifo_violations, ms};
use img3d_scaleout_tests::{client_of, gateway, shared_redis, standalone, unique_prefix, worker, Proc};

/// Clients at once, one job each, each on its own connection.
const CLIENTS: usize = 200;
/// The double's delay per job (`--delay-ms`). In a debug build the double's own image work
/// (two 1536x256 PNGs, a zip) adds more than this: the workers' histograms measure the real
/// job duration, and the overhead is computed against that.
const JOB_MS: u64 = 40;
/// Client `i` sends its image `i` x this after the start: the submission order is known and
/// spread over 1 s, so the queue holds ~150 jobs at its peak.
const STAGGER: Duration = Duration::from_millis(5);
/// Unloaded jobs, one at a time, through nginx and (alternating) on the standalone baseline.
const PROBES: usize = 20;
/// The FIFO check's slack; see [`completion_inversions`].
const FIFO_SLACK: Duration = Duration::from_millis(250);
/// Per-job client timeout of the unloaded phase: a job without its final status by then counts
/// as timed out. The loaded phase's follows from the job time measured unloaded
/// ([`loaded_timeout`]).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// The loaded phase's per-job timeout: three times what `CLIENTS` jobs of the measured unloaded
/// duration take on the two workers, at least [`JOB_TIMEOUT`]. On a machine busy with other
/// work the double's jobs take longer (370 ms instead of 190 ms was seen with other builds
/// running, which made 200 jobs need 37 s on two workers); a queue that stalls or loses jobs
/// still times out.
fn loaded_timeout(unloaded_job_ms: f64) -> Duration {
    let drain = Duration::from_secs_f64(CLIENTS as f64 * unloaded_job_ms / 2.0 / 1e3);
    (drain * 3).max(JOB_TIMEOUT)
}
/// Bound on each gateway's resident memory during the run. Idle, a debug gateway is ~10 MiB;
/// under this load (~100 WebSocket connections each, a queue of ~150 images of ~1 KB, parts of
/// a few KB) it peaked at 25 MiB. A gateway whose memory grew per connection or per job (a
/// buffer not released, parts kept) would cross it.
const GATEWAY_RSS_LIMIT_MIB: f64 = 64.0;

/// VmRSS of `pid` in MiB, from /proc.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Completion order against queue order: pairs of completed jobs whose queue entries are more
/// than `slack` apart, where the later-queued job completed first. A job's queue entry, as the
/// client sees it, is its `processing` (the Redis queue sends no `queued`): the gateway sends
/// it on receiving the image and pushes the job right after validating it. With a FIFO queue and jobs of equal length, completion order is queue order up to
/// the two workers interleaving (jobs popped within one job duration of each other may finish
/// in either order), validation between `processing` and the push, and the client-side
/// timestamps' jitter (200 clients scheduled on a 2-core test machine: tens of ms). 250 ms is far above both and far below what an unfair
/// queue produces: LIFO or random service inverts thousands of the ~15,000 such pairs.
/// Returns (inversions, pairs compared, worst inversion in ms).
fn completion_inversions(records: &[JobRecord], slack: Duration) -> (usize, usize, f64) {
    let jobs =
        records.iter().filter(|r| r.outcome == Outcome::Completed).map(|r| (r.queued_at(), r.done)).collect();
    stats::inversions(jobs, slack)
}

/// Largest distance between a job's rank in queue order and its rank in start order (0 for
/// a perfect FIFO with one worker; a few with two workers and timestamp jitter).
fn max_rank_displacement(records: &[JobRecord]) -> usize {
    let mut by_queue: Vec<&JobRecord> = records.iter().filter(|r| r.started.is_some()).collect();
    by_queue.sort_by_key(|r| r.queued_at());
    let mut by_start = by_queue.clone();
    by_start.sort_by_key(|r| r.started);
    let start_rank: std::collections::HashMap<u32, usize> =
        by_start.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    by_queue.iter().enumerate().map(|(i, r)| i.abs_diff(start_rank[&r.id])).max().unwrap_or(0)
}

/// Total seconds and count of the jobs `procs` ran (their `img3d_worker_job_duration_seconds`
/// histograms: from taking a job to its end, the part stores included).
fn job_time(procs: &[&Proc]) -> (f64, f64) {
    let ms: Vec<_> = procs.iter().map(|p| p.metrics()).collect();
    let sum = ms.iter().map(|m| m.sum("img3d_worker_job_duration_seconds_sum", "")).sum();
    let count = ms.iter().map(|m| m.sum("img3d_worker_job_duration_seconds_count", "")).sum();
    (sum, count)
}

/// Mean job time in ms between two [`job_time`] readings.
fn mean_ms(before: (f64, f64), after: (f64, f64)) -> f64 {
    (after.0 - before.0) / (after.1 - before.1).max(1.0) * 1e3
}

fn e2e(records: &[JobRecord]) -> Vec<f64> {
    records.iter().map(|r| ms(r.sent, r.done)).collect()
}

/// 200 clients at once through nginx: all complete, FIFO-fair, none times out, gateway memory
/// bounded; prints the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_clients_through_nginx() {
    let began = Instant::now();
    let (redis, prefix) = (shared_redis(), unique_prefix());
    // The queue bound is global (one Lua check in Redis): room for every client at once.
    let gateway_flags = ["--max-queue", "1000"];
    let workers = [worker(&redis, &prefix, JOB_MS, &[]), worker(&redis, &prefix, JOB_MS, &[])];
    let gateways = [gateway(&redis, &prefix, &gateway_flags), gateway(&redis, &prefix, &gateway_flags)];
    let nginx = Nginx::start(&[gateways[0].addr, gateways[1].addr]);
    let baseline = standalone(JOB_MS);

    let mut watched = vec![
        Watched { name: "gateway-1".into(), pid: gateways[0].pid() },
        Watched { name: "gateway-2".into(), pid: gateways[1].pid() },
        Watched { name: "worker-1".into(), pid: workers[0].pid() },
        Watched { name: "worker-2".into(), pid: workers[1].pid() },
        Watched { name: "nginx master".into(), pid: nginx.pid() },
    ];
    for (i, pid) in nginx.worker_pids().into_iter().enumerate() {
        watched.push(Watched { name: format!("nginx worker-{}", i + 1), pid });
    }
    let idle: Vec<f64> = gateways.iter().map(|g| rss_mib(g.pid())).collect();
    let sampler = Sampler::start(watched, Duration::from_millis(50));

    // 1. Unloaded: one job at a time through nginx, alternating with the standalone baseline
    //    (same double, same delay, no nginx, no Redis).
    let w0 = job_time(&[&workers[0], &workers[1]]);
    let b0 = job_time(&[&baseline]);
    let probe = client_of(&nginx.url(), JOB_TIMEOUT);
    let base = client_of(&format!("ws://{}/generate3d", baseline.addr), JOB_TIMEOUT);
    let (mut unloaded, mut based) = (Vec::new(), Vec::new());
    for i in 0..PROBES as u32 {
        unloaded.push(job::run(&probe, 0, 1_000_000 + i).await);
        based.push(job::run(&base, 0, 2_000_000 + i).await);
    }
    drop((probe, base));
    let w1 = job_time(&[&workers[0], &workers[1]]);
    let b1 = job_time(&[&baseline]);
    for r in unloaded.iter().chain(&based) {
        assert_eq!(r.outcome, Outcome::Completed, "unloaded job {}: {:?}", r.id, r.outcome);
    }

    // 2. Loaded: every client at once, staggered so the submission order is known.
    let timeout = loaded_timeout(mean_ms(w0, w1));
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (url, at) = (nginx.url(), start + STAGGER * c as u32);
        tasks.push(tokio::spawn(async move {
            let client = client_of(&url, timeout);
            tokio::time::sleep_until(at.into()).await;
            job::run(&client, c, c as u32).await
        }));
    }
    let mut loaded = Vec::new();
    let all = async {
        for t in tasks {
            loaded.push(t.await.unwrap());
        }
    };
    let limit = timeout + Duration::from_secs(15);
    tokio::time::timeout(limit, all).await.unwrap_or_else(|_| panic!("the loaded phase took over {limit:?}"));
    let peaks = sampler.peaks();
    drop(sampler);
    let w2 = job_time(&[&workers[0], &workers[1]]);

    // 3. Figures.
    for r in &loaded {
        if let Outcome::Wrong(why) | Outcome::Protocol(why) = &r.outcome {
            eprintln!("job {}: {why}", r.id);
        }
    }
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for r in &loaded {
        *outcomes.entry(r.outcome.label()).or_default() += 1;
    }
    let done: Vec<JobRecord> = loaded.iter().filter(|r| r.outcome == Outcome::Completed).cloned().collect();
    let first = loaded.iter().map(|r| r.sent).min().unwrap();
    let last = loaded.iter().map(|r| r.done).max().unwrap();
    let wall = (last - first).as_secs_f64();
    let rate = done.len() as f64 / wall;
    let (start_bad, start_pairs, start_worst) = fifo_violations(&loaded, FIFO_SLACK);
    let (done_bad, done_pairs, done_worst) = completion_inversions(&loaded, FIFO_SLACK);
    let displacement = max_rank_displacement(&done);
    // The job's own duration: what the workers spent on it, from their histograms (the
    // double's delay plus its image work, which a debug build makes the larger part).
    let (job_unloaded, job_base, job_loaded) = (mean_ms(w0, w1), mean_ms(b0, b1), mean_ms(w1, w2));
    let minus = |v: Vec<f64>, d: f64| v.into_iter().map(|x| x - d).collect::<Vec<_>>();
    let (unloaded_e2e, base_e2e) = (e2e(&unloaded), e2e(&based));
    let waiting: Vec<f64> = done.iter().filter_map(|r| r.started.map(|s| ms(r.sent, s))).collect();
    let running: Vec<f64> = done.iter().filter_map(|r| r.started.map(|s| ms(s, r.done))).collect();

    println!();
    println!(
        "load test: {CLIENTS} clients through nginx, 2 gateways, 2 workers (test double, --delay-ms {JOB_MS}), \
         debug build"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| jobs | {} sent, outcomes {outcomes:?} |", loaded.len());
    println!(
        "| job's own duration (workers' mean img3d_worker_job_duration_seconds) | {job_unloaded:.1} ms unloaded, \
         {job_loaded:.1} ms loaded; standalone baseline {job_base:.1} ms |"
    );
    println!(
        "| throughput | {rate:.1} jobs/s over {wall:.2} s ({:.1} jobs/s if 2 workers did nothing but jobs of the loaded \
         duration) |",
        2.0 * 1000.0 / job_loaded
    );
    println!(
        "| FIFO, start order | {start_bad} of {start_pairs} job pairs queued > {FIFO_SLACK:?} apart started out of \
         order (worst by {start_worst:.0} ms) |"
    );
    println!(
        "| FIFO, completion order | {done_bad} of {done_pairs} such pairs completed out of order (worst by \
         {done_worst:.0} ms); largest queue-rank vs start-rank displacement {displacement} |"
    );
    println!();
    println!("| latency (ms) | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    println!("| unloaded, through nginx + gateway + Redis: end to end {}", cells(&unloaded_e2e));
    println!(
        "| unloaded overhead: end to end - the job's own duration ({job_unloaded:.0} ms) {}",
        cells(&minus(unloaded_e2e, job_unloaded))
    );
    println!("| unloaded, standalone baseline (no nginx, no Redis): end to end {}", cells(&base_e2e));
    println!(
        "| unloaded baseline overhead: end to end - its job's duration ({job_base:.0} ms) {}",
        cells(&minus(base_e2e, job_base))
    );
    println!("| loaded: end to end {}", cells(&e2e(&done)));
    println!("| loaded: waiting (sent -> first progress) {}", cells(&waiting));
    println!(
        "| loaded: first progress -> completed, - the job's own duration ({job_loaded:.0} ms) {}",
        cells(&minus(running, job_loaded))
    );
    println!();
    println!("| process | RSS idle (MiB) | peak RSS sampled every 50 ms (MiB) | VmHWM (MiB) |");
    println!("|---|---:|---:|---:|");
    for (name, kib) in &peaks.sampled {
        let idle = match name.as_str() {
            "gateway-1" => format!("{:.1}", idle[0]),
            "gateway-2" => format!("{:.1}", idle[1]),
            _ => "-".into(),
        };
        let hwm =
            peaks.hwm.get(name).map_or_else(|| "-".to_owned(), |h| format!("{:.1}", *h as f64 / 1024.0));
        println!("| {name} | {idle} | {:.1} | {hwm} |", *kib as f64 / 1024.0);
    }
    println!();
    println!("whole test: {:.1} s", began.elapsed().as_secs_f64());

    // 4. Promises.
    assert_eq!(done.len(), CLIENTS, "every job must complete (none timed out or failed): {outcomes:?}");
    assert!(start_pairs > 1000 && done_pairs > 1000, "too few job pairs to judge FIFO order");
    assert_eq!(start_bad, 0, "jobs started out of queue order");
    assert_eq!(done_bad, 0, "jobs completed out of queue order");
    for name in ["gateway-1", "gateway-2"] {
        let peak = *peaks.sampled.get(name).expect("the gateway was not sampled") as f64 / 1024.0;
        assert!(
            peak < GATEWAY_RSS_LIMIT_MIB,
            "{name} peaked at {peak:.1} MiB, above {GATEWAY_RSS_LIMIT_MIB} MiB"
        );
    }
    let completed: u64 = workers.iter().map(|w| w.metrics().worker_jobs("outcome=\"completed\"")).sum();
    let all: u64 = workers.iter().map(|w| w.metrics().worker_jobs("")).sum();
    assert_eq!((completed, all), ((CLIENTS + PROBES) as u64, (CLIENTS + PROBES) as u64), "each job ran once");
    let per_gateway: Vec<f64> =
        gateways.iter().map(|g| g.metrics().sum("img3d_jobs_total", "outcome=\"completed\"")).collect();
    assert!(per_gateway.iter().all(|&n| n > 0.0), "nginx used one gateway only: {per_gateway:?}");
}
