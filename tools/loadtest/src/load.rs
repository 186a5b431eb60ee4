//! The load scenario: a few jobs one after another (the service's own overhead, unloaded),
//! then many clients at once (throughput, FIFO fairness, latency, memory).

use std::time::{Duration, Instant};

use clap::Args;
use img3d_client::{Client, ClientConfig};

use crate::job::{self, JobRecord, Outcome};
use crate::procs::{Sampler, Watched};
use crate::stats::{cells, fifo_violations, ms, percentile};

/// `loadtest load`: many clients at once through one URL.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The service, e.g. ws://127.0.0.1:8080/generate3d (the load balancer).
    #[arg(long)]
    pub server: String,
    /// Concurrent clients, each on its own connection.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Jobs each client runs one after another.
    #[arg(long, default_value_t = 1)]
    pub jobs_per_client: usize,
    /// Client i sends its first image i x this after the start (a burst, in order).
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    pub stagger: Duration,
    /// The test double's --delay-ms (for the rate the delay alone would allow).
    #[arg(long)]
    pub job_ms: f64,
    /// Workers serving the queue (for the ideal rate printed beside the measured one).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Unloaded jobs first, one at a time from one client (and as many on `--baseline`,
    /// alternating).
    #[arg(long, default_value_t = 20)]
    pub probe_jobs: usize,
    /// The same pipeline without the scale-out path (the protocol test server standalone:
    /// in-process queue, no nginx, no Redis), probed side by side so the overhead is the
    /// difference and not the test double's own work.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Per-job client timeout: a job without a final status by then counts as timed out.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// FIFO check: jobs queued further apart than this must start in queue order.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    pub fifo_slack: Duration,
    /// Write every loaded job's timeline here (CSV, ms from the first send) for a closer look.
    #[arg(long)]
    pub records: Option<std::path::PathBuf>,
    /// A process to report peak memory for, NAME=PID (repeat).
    #[arg(long = "watch")]
    pub watch: Vec<Watched>,
    /// Fail when a watched process whose name starts with NAME peaks above MiB, NAME=MiB.
    #[arg(long = "rss-limit")]
    pub rss_limit: Vec<String>,
}

fn config(args: &LoadArgs, url: &str) -> ClientConfig {
    let mut config = ClientConfig::new(url);
    config.timeout = args.timeout;
    config.progress_events = true;
    // Many clients connect in the same second: allow a retry of the handshake.
    config.connect_attempts = 3;
    config
}

/// The completed ones of `records`; a problem noted for the others.
fn completed(records: &[JobRecord], what: &str, problems: &mut Vec<String>) -> Vec<JobRecord> {
    let ok: Vec<JobRecord> = records.iter().filter(|r| r.outcome == Outcome::Completed).cloned().collect();
    if ok.len() != records.len() {
        problems.push(format!(
            "{} of {} {what} jobs did not complete",
            records.len() - ok.len(),
            records.len()
        ));
    }
    ok
}

/// Milliseconds from sending to the final status.
fn e2e(records: &[JobRecord]) -> Vec<f64> {
    records.iter().map(|r| ms(r.sent, r.done)).collect()
}

/// Milliseconds from sending to the first progress (a worker took the job).
fn waiting(records: &[JobRecord]) -> Vec<f64> {
    records.iter().filter_map(|r| r.started.map(|s| ms(r.sent, s))).collect()
}

/// Milliseconds from the first progress to the final status.
fn running(records: &[JobRecord]) -> Vec<f64> {
    records.iter().filter_map(|r| r.started.map(|s| ms(s, r.done))).collect()
}

/// One CSV line per job: times in ms from the earliest send (empty when it never happened).
fn write_records(path: &std::path::Path, records: &[JobRecord]) -> std::io::Result<()> {
    use std::io::Write;
    let Some(t0) = records.iter().map(|r| r.sent).min() else { return Ok(()) };
    let at = |t: Option<Instant>| t.map_or_else(String::new, |t| format!("{:.1}", ms(t0, t)));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "client,job,sent,processing,queued,started,first_part,done,outcome")?;
    for r in records {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            r.client,
            r.id,
            at(Some(r.sent)),
            at(r.processing),
            at(r.queued),
            at(r.started),
            at(r.parts.first().map(|p| p.1)),
            at(Some(r.done)),
            r.outcome.label()
        )?;
    }
    out.flush()
}

/// Runs the scenario, prints its table; Err lists the promises broken.
pub async fn run(args: LoadArgs) -> Result<(), String> {
    let sampler = Sampler::start(args.watch.clone(), Duration::from_millis(50));

    // 1. Unloaded: one client, one job at a time, alternating with the baseline.
    let probe = Client::new(config(&args, &args.server));
    let base = args.baseline.as_ref().map(|url| Client::new(config(&args, url)));
    let (mut unloaded, mut baseline) = (Vec::new(), Vec::new());
    for i in 0..args.probe_jobs {
        unloaded.push(job::run(&probe, 0, 1_000_000 + i as u32).await);
        if let Some(base) = &base {
            baseline.push(job::run(base, 0, 2_000_000 + i as u32).await);
        }
    }
    drop((probe, base));

    // 2. Loaded: every client at once, staggered by a few ms so the queue order is known.
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (config, jobs, at) =
            (config(&args, &args.server), args.jobs_per_client, start + args.stagger * c as u32);
        tasks.push(tokio::spawn(async move {
            let client = Client::new(config);
            tokio::time::sleep_until(at.into()).await;
            let mut records = Vec::new();
            for j in 0..jobs {
                records.push(job::run(&client, c, (c * jobs + j) as u32).await);
            }
            records
        }));
    }
    let mut loaded: Vec<JobRecord> = Vec::new();
    for t in tasks {
        loaded.extend(t.await.map_err(|e| format!("client task: {e}"))?);
    }
    let peaks = sampler.peaks();
    drop(sampler);

    if let Some(path) = &args.records {
        write_records(path, &loaded).map_err(|e| format!("{}: {e}", path.display()))?;
    }

    // 3. Figures.
    let mut problems = Vec::new();
    let mut shown = 0;
    for r in unloaded.iter().chain(&baseline).chain(&loaded) {
        if let Outcome::Wrong(why) | Outcome::Protocol(why) = &r.outcome {
            // The first few say what went wrong; the tables have the counts.
            if shown < 10 {
                eprintln!("job {} (client {}): {why}", r.id, r.client);
                shown += 1;
            }
        }
    }
    let unloaded = completed(&unloaded, "unloaded", &mut problems);
    let baseline = completed(&baseline, "baseline", &mut problems);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for r in &loaded {
        *outcomes.entry(r.outcome.label()).or_default() += 1;
    }
    let done: Vec<JobRecord> = loaded.iter().filter(|r| r.outcome == Outcome::Completed).cloned().collect();
    let first = loaded.iter().map(|r| r.sent).min().unwrap_or(start);
    let last = loaded.iter().map(|r| r.done).max().unwrap_or(start);
    let wall = (last - first).as_secs_f64();
    let rate = done.len() as f64 / wall.max(1e-9);
    let ideal = args.workers as f64 * 1000.0 / args.job_ms;
    let (fifo_bad, fifo_pairs, fifo_worst) = fifo_violations(&loaded, args.fifo_slack);

    println!();
    println!(
        "load test: {} clients x {} job(s) through {} ({} workers, test double with {} ms delay per job)",
        args.clients, args.jobs_per_client, args.server, args.workers, args.job_ms
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| jobs | {} sent, outcomes {outcomes:?} |", loaded.len());
    println!(
        "| throughput | {rate:.1} jobs/s over {wall:.2} s (the delay alone would allow {ideal:.1} jobs/s on {} workers) |",
        args.workers
    );
    println!(
        "| FIFO | {fifo_bad} of {fifo_pairs} job pairs queued > {:?} apart started out of order (worst by {fifo_worst:.0} ms) |",
        args.fifo_slack
    );
    println!();
    println!("| latency (ms) | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, v: &[f64]| println!("| {name} {}", cells(v));
    if !baseline.is_empty() {
        row(
            &format!(
                "unloaded, baseline (standalone: no nginx, no Redis), {} jobs: end to end",
                baseline.len()
            ),
            &e2e(&baseline),
        );
    }
    row(
        &format!("unloaded, through nginx + gateway + Redis, {} jobs: end to end", unloaded.len()),
        &e2e(&unloaded),
    );
    if !baseline.is_empty() {
        let (b, t) = (e2e(&baseline), e2e(&unloaded));
        let diff = |p| match (percentile(&t, p), percentile(&b, p)) {
            (Some(t), Some(b)) => format!("{:.1}", t - b),
            _ => "-".into(),
        };
        println!(
            "| unloaded latency overhead of the scale-out path (difference) | {} | {} | - |",
            diff(50.0),
            diff(99.0)
        );
        row("unloaded, baseline: first progress -> completed (the double's own work)", &running(&baseline));
    }
    row("loaded: end to end", &e2e(&done));
    row("loaded: wait for a worker (sent -> first progress)", &waiting(&done));
    row("loaded: first progress -> completed", &running(&done));
    println!();
    println!("| process | peak RSS sampled (MiB) | VmHWM (MiB) |");
    println!("|---|---:|---:|");
    for (name, kib) in &peaks.sampled {
        let hwm =
            peaks.hwm.get(name).map_or_else(|| "-".to_owned(), |h| format!("{:.1}", *h as f64 / 1024.0));
        println!("| {name} | {:.1} | {hwm} |", *kib as f64 / 1024.0);
    }
    println!();

    // 4. Promises.
    if done.len() != loaded.len() {
        problems.push(format!(
            "{} of {} jobs did not complete: {outcomes:?}",
            loaded.len() - done.len(),
            loaded.len()
        ));
    }
    if fifo_pairs == 0 && args.clients > 1 {
        problems.push("FIFO: no job pairs to compare (no start times?)".into());
    }
    if fifo_bad > 0 {
        problems.push(format!("FIFO: {fifo_bad} pairs started out of queue order"));
    }
    for limit in &args.rss_limit {
        let (prefix, mib) =
            limit.split_once('=').ok_or_else(|| format!("--rss-limit {limit:?}: NAME=MiB"))?;
        let mib: f64 = mib.parse().map_err(|_| format!("--rss-limit {limit:?}: MiB is not a number"))?;
        let mut seen = false;
        for (name, kib) in peaks.sampled.iter().filter(|(n, _)| n.starts_with(prefix)) {
            seen = true;
            if *kib as f64 / 1024.0 > mib {
                problems.push(format!("{name} peaked at {:.1} MiB, above {mib} MiB", *kib as f64 / 1024.0));
            }
        }
        if !seen {
            problems.push(format!("--rss-limit {prefix}: no watched process of that name was sampled"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
