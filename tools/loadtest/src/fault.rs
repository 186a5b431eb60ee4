//! The fault scenario: a few clients keep jobs running through the load balancer; a shell
//! command injects the fault (kill -9 a gateway, SIGSTOP a worker, stop Redis ...), an optional
//! second one undoes it; every client must then get complete, correct results again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use img3d_client::{Client, ClientConfig};

use crate::job::{self, JobRecord, Outcome};
use crate::stats::ms;

/// `loadtest fault`: clients loop over jobs while a fault is injected.
#[derive(Debug, Args)]
pub struct FaultArgs {
    /// The service, e.g. ws://127.0.0.1:8080/generate3d (the load balancer).
    #[arg(long)]
    pub server: String,
    /// Name of the fault, for the table.
    #[arg(long)]
    pub name: String,
    /// Clients, each running jobs one after another on its own connection.
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Jobs every client completes before the fault is injected.
    #[arg(long, default_value_t = 1)]
    pub warmup_jobs: usize,
    /// Pause after the warm-up before injecting, so jobs are in flight.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    pub inject_after: Duration,
    /// Shell command that injects the fault (run with sh -c; must succeed).
    #[arg(long)]
    pub inject: String,
    /// Shell command that undoes it (SIGCONT, restart Redis), run `--restore-after` later.
    #[arg(long)]
    pub restore: Option<String>,
    /// How long after the injection the restore command runs.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub restore_after: Duration,
    /// Jobs every client must complete after the fault (and the restore) before it stops.
    #[arg(long, default_value_t = 2)]
    pub settle_jobs: usize,
    /// Pause before retrying after a failed job (what a client does).
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    pub retry_delay: Duration,
    /// Per-job client timeout.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The whole scenario's bound: clients that have not settled by then fail it.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
    /// Fail unless every job in flight at the fault completes (no client ever sees a failure):
    /// for faults the queue must absorb (a worker killed or paused).
    #[arg(long)]
    pub expect_no_failures: bool,
    /// Fail unless every job a worker had started before the fault completes (waiting ones
    /// may fail retryably): for a gateway's drain.
    #[arg(long)]
    pub expect_running_complete: bool,
    /// Append the table row (markdown) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Times of the scenario's phases (None until they happen).
#[derive(Default)]
struct Phases {
    injected: Option<Instant>,
    restored: Option<Instant>,
}

/// Runs the scenario, prints a summary and appends the table row; Err lists broken promises.
pub async fn run(args: FaultArgs) -> Result<(), String> {
    let args = Arc::new(args);
    let phases = Arc::new(Mutex::new(Phases::default()));
    let warmed = Arc::new(AtomicUsize::new(0));
    let next_id = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let records = Arc::new(Mutex::new(Vec::<JobRecord>::new()));
    let began = Instant::now();

    let mut clients = Vec::new();
    for c in 0..args.clients {
        let (args, phases, warmed, next_id, stop, records) =
            (args.clone(), phases.clone(), warmed.clone(), next_id.clone(), stop.clone(), records.clone());
        clients.push(tokio::spawn(async move {
            let mut config = ClientConfig::new(args.server.clone());
            config.timeout = args.timeout;
            config.progress_events = true;
            let client = Client::new(config);
            let (mut completed, mut settled) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let rec = job::run(&client, c, next_id.fetch_add(1, Ordering::Relaxed)).await;
                let ok = rec.outcome == Outcome::Completed;
                let after = {
                    let p = phases.lock().unwrap();
                    let settle_from = if args.restore.is_some() { p.restored } else { p.injected };
                    settle_from.is_some_and(|t| rec.sent >= t)
                };
                records.lock().unwrap().push(rec);
                if ok {
                    completed += 1;
                    if completed == args.warmup_jobs {
                        warmed.fetch_add(1, Ordering::Relaxed);
                    }
                    if after {
                        settled += 1;
                        if settled >= args.settle_jobs {
                            return true;
                        }
                    }
                } else {
                    tokio::time::sleep(args.retry_delay).await;
                }
            }
            false
        }));
    }

    // Inject once every client has warmed up, then restore.
    let deadline = began + args.deadline;
    while warmed.load(Ordering::Relaxed) < args.clients {
        if Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
            return Err(format!("{}: the clients did not warm up within {:?}", args.name, args.deadline));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(args.inject_after).await;
    let injected = Instant::now();
    shell(&args.inject).await?;
    phases.lock().unwrap().injected = Some(injected);
    if let Some(restore) = &args.restore {
        tokio::time::sleep_until((injected + args.restore_after).into()).await;
        let restored = Instant::now();
        shell(restore).await?;
        phases.lock().unwrap().restored = Some(restored);
    }

    // Wait for every client to settle, within the deadline.
    let mut unsettled = 0;
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    for c in clients {
        if !c.await.map_err(|e| format!("client task: {e}"))? {
            unsettled += 1;
        }
    }
    stopper.abort();

    let records = records.lock().unwrap().clone();
    summarise(&args, &records, injected, unsettled)
}

/// Runs `cmd` with sh -c; Err if it fails.
async fn shell(cmd: &str) -> Result<(), String> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .await
        .map_err(|e| format!("running {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

fn summarise(
    args: &FaultArgs,
    records: &[JobRecord],
    injected: Instant,
    unsettled: usize,
) -> Result<(), String> {
    // Affected: in flight at the fault, or failed after it.
    let affected: Vec<&JobRecord> = records
        .iter()
        .filter(|r| {
            (r.sent < injected && r.done >= injected)
                || (r.sent >= injected && r.outcome != Outcome::Completed)
        })
        .collect();
    let mut outcomes = BTreeMap::<String, usize>::new();
    for r in &affected {
        *outcomes.entry(r.outcome.label()).or_default() += 1;
    }
    // Recovered: every client has completed a job after the fault.
    let mut recovered_per_client = BTreeMap::<usize, Instant>::new();
    for r in records.iter().filter(|r| r.outcome == Outcome::Completed && r.done > injected) {
        let e = recovered_per_client.entry(r.client).or_insert(r.done);
        *e = (*e).min(r.done);
    }
    let recover = if recovered_per_client.len() == args.clients {
        recovered_per_client.values().max().map(|t| format!("{:.1} s", ms(injected, *t) / 1e3))
    } else {
        None
    };
    let broken: Vec<&JobRecord> = records.iter().filter(|r| r.outcome.is_broken()).collect();
    for r in &broken {
        if let Outcome::Wrong(why) | Outcome::Protocol(why) = &r.outcome {
            eprintln!("{}: job {} (client {}): {why}", args.name, r.id, r.client);
        }
    }
    let outcome_text = if outcomes.is_empty() {
        "none".to_owned()
    } else {
        outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
    };
    let completed = records.iter().filter(|r| r.outcome == Outcome::Completed).count();
    let row = format!(
        "| {} | {} | {} | {} | {} jobs, {} completed, {} broken |",
        args.name,
        affected.len(),
        outcome_text,
        recover.clone().unwrap_or_else(|| "NOT RECOVERED".into()),
        records.len(),
        completed,
        broken.len()
    );
    println!("{row}");
    if let Some(path) = &args.report {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        writeln!(f, "{row}").map_err(|e| format!("{}: {e}", path.display()))?;
    }

    let mut problems = Vec::new();
    if !broken.is_empty() {
        problems.push(format!("{} jobs broke the protocol or got wrong results", broken.len()));
    }
    if unsettled > 0 || recover.is_none() {
        problems
            .push(format!("{unsettled} clients did not get {} results after the fault", args.settle_jobs));
    }
    if args.expect_no_failures {
        let failed: Vec<String> =
            affected.iter().filter(|r| r.outcome != Outcome::Completed).map(|r| r.outcome.label()).collect();
        if !failed.is_empty() {
            problems.push(format!("expected every job to complete, but: {failed:?}"));
        }
    }
    if args.expect_running_complete {
        let failed: Vec<String> = affected
            .iter()
            .filter(|r| r.started.is_some_and(|s| s < injected) && r.outcome != Outcome::Completed)
            .map(|r| r.outcome.label())
            .collect();
        if !failed.is_empty() {
            problems.push(format!("jobs running at the fault did not complete: {failed:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", args.name, problems.join("; ")))
    }
}
