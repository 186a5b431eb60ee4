//! Faults in the deployment's shape, seen by clients that connect only through nginx (running
//! `deploy/nginx.conf`) to two gateways and two Redis workers (the pipeline double): a gateway
//! killed, a worker killed, Redis restarted, a worker paused past its heartbeat TTL. One test
//! runs the four in turn, each on fresh processes, and prints one table: the fault, the jobs it
//! hit, what became of them, and how long until every affected client had its result. The
//! process-level versions without nginx are in faults.rs, the queue-level ones in
//! queue/tests/redis_faults.rs.
//!
//! Every process gets [`FAST`] failure detection (1 s heartbeat and client TTLs), so every
//! fault resolves in seconds; every wait is bounded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use img3d_client::{ClientError, Event};
use img3d_scaleout_tests::job::{self, JobRecord, Outcome};
use img3d_scaleout_tests::nginx::Nginx;
use img3d_scaleout_tests::redis_server::RedisServer;
use img3d_scaleout_tests::{
    busy_worker, check_complete, client_of, colour, connected, drain, eventually, gateway, gateway_gained,
    shared_redis, solid_png, unique_prefix, until, until_first_part, until_started, worker, FAST,
};

/// One line of the table.
struct Row {
    fault: String,
    affected: String,
    outcomes: String,
    recovered: Duration,
}

/// Gateway flags for these tests: fast detection, a job timeout well above a rerun.
fn gateway_flags() -> Vec<&'static str> {
    [&["--job-timeout", "20s"], FAST].concat()
}

/// The four faults, one after another; prints the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_through_nginx() {
    let began = Instant::now();
    let rows =
        vec![gateway_killed().await, worker_killed().await, redis_restarted().await, worker_paused().await];
    println!();
    println!("faults through nginx (2 gateways, 2 workers, heartbeat and client TTLs 1 s, debug build)");
    println!("| fault | jobs affected | outcomes | time to recover |");
    println!("|---|---|---|---:|");
    for r in &rows {
        println!("| {} | {} | {} | {:.1} s |", r.fault, r.affected, r.outcomes, r.recovered.as_secs_f64());
    }
    println!();
    println!("whole test: {:.1} s", began.elapsed().as_secs_f64());
}

/// `kill -9` of a gateway holding running and waiting jobs. Six clients send one job each, in
/// order, through nginx (2 s jobs: two run, four wait); the gateway of the first waiting job
/// is killed. Its clients see their connection close, send again through nginx (which now
/// reaches only the other gateway) and get complete results. Their orphaned jobs are not run:
/// the waiting ones are skipped, never started; the running ones are stopped; the workers'
/// counters show exactly the other gateway's jobs and the resent ones completed, plus the
/// stopped ones, and nothing else.
async fn gateway_killed() -> Row {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let workers = [worker(&redis, &prefix, 2000, FAST), worker(&redis, &prefix, 2000, FAST)];
    let mut gateways =
        [gateway(&redis, &prefix, &gateway_flags()), gateway(&redis, &prefix, &gateway_flags())];
    let nginx = Nginx::start(&[gateways[0].addr, gateways[1].addr]);

    let clients: Vec<_> = (0..6).map(|_| client_of(&nginx.url(), Duration::from_secs(30))).collect();
    let mut jobs = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let before = connected(&gateways);
        let mut request = c.generate(solid_png(colour(i))).await.unwrap();
        let mut events = Vec::new();
        // The first two start at once; each later one is in the queue (its depth, sampled
        // from Redis, counts it) before the next is sent, so the queue order is the loop's.
        if i < 2 {
            until_started(&mut request, &mut events).await;
        } else {
            let queued = eventually(Duration::from_secs(5), || {
                gateways[0].metrics().sum("img3d_queue_depth", "") >= (i - 1) as f64
            })
            .await;
            assert!(queued, "job {i} did not reach the queue");
        }
        let mut on = None;
        let seen = eventually(Duration::from_secs(5), || {
            on = gateway_gained(&gateways, &before);
            on.is_some()
        })
        .await;
        assert!(seen, "client {i}'s connection is on no gateway");
        jobs.push((i, on.unwrap(), request, events));
    }
    let both = eventually(Duration::from_secs(5), || workers.iter().all(|w| w.metrics().busy())).await;
    assert!(both, "the first two jobs are not running");
    let victim = jobs[2].1;
    let victims = jobs.iter().filter(|j| j.1 == victim).count();
    let running_orphans = jobs[..2].iter().filter(|j| j.1 == victim).count();
    let waiting_orphans = victims - running_orphans;

    let killed = Instant::now();
    gateways[victim].kill9();
    let mut tasks = Vec::new();
    for (i, g, mut request, mut events) in jobs {
        let c = clients[i].clone();
        tasks.push(tokio::spawn(async move {
            let end = tokio::time::timeout(Duration::from_secs(15), drain(&mut request, &mut events)).await;
            let end = end.unwrap_or_else(|_| panic!("client {i}: no end within 15 s"));
            if g != victim {
                end.unwrap_or_else(|e| panic!("client {i} of the surviving gateway: {e}"));
                check_complete(&events, Some(colour(i)));
                return None;
            }
            assert!(matches!(end, Err(ClientError::ConnectionLost(_))), "client {i}: {end:?}");
            drop(request);
            // What a client does: send again. nginx cannot reach the dead gateway and passes
            // the handshake on.
            let mut request =
                c.generate(solid_png(colour(i))).await.unwrap_or_else(|e| panic!("client {i}: {e}"));
            let mut events = Vec::new();
            until(&mut request, &mut events, "processing", |e| matches!(e, Event::Processing)).await;
            let accepted = Instant::now();
            drain(&mut request, &mut events)
                .await
                .unwrap_or_else(|e| panic!("client {i} sending again: {e}"));
            check_complete(&events, Some(colour(i)));
            Some((accepted, Instant::now()))
        }));
    }
    let (mut accepted, mut recovered) = (killed, killed);
    for t in tasks {
        if let Some((a, done)) = t.await.unwrap() {
            accepted = accepted.max(a);
            recovered = recovered.max(done);
        }
    }

    let m: Vec<_> = workers.iter().map(|w| w.metrics()).collect();
    let completed: u64 = m.iter().map(|m| m.worker_jobs("outcome=\"completed\"")).sum();
    let ran: u64 = m.iter().map(|m| m.worker_jobs("")).sum();
    assert_eq!(completed, 6, "the other gateway's jobs and the resent ones, nothing else: {m:?}");
    assert_eq!(
        ran,
        6 + running_orphans as u64,
        "{waiting_orphans} orphaned waiting jobs must never start, {running_orphans} running ones stop: {m:?}"
    );
    Row {
        fault: "kill -9 a gateway (6 jobs of 2 s: 2 running, 4 waiting)".into(),
        affected: format!("{victims} (its clients)"),
        outcomes: format!(
            "{victims} connections closed, resent through nginx: {victims} completed on the other gateway; \
             orphans: {waiting_orphans} waiting never ran, {running_orphans} running stopped; the other \
             gateway's {} completed; every resent job accepted by the other gateway {:.0} ms after the \
             kill, then waiting its turn behind 2 s jobs",
            6 - victims,
            (accepted - killed).as_secs_f64() * 1e3
        ),
        recovered: recovered - killed,
    }
}

/// `kill -9` of a worker in the middle of a job (after its first part reached the client):
/// after the heartbeat TTL the job goes back to the front of the queue, the other worker runs
/// it once it is free, and the client gets each part exactly once.
async fn worker_killed() -> Row {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let mut workers = [worker(&redis, &prefix, 1500, FAST), worker(&redis, &prefix, 1500, FAST)];
    let gateways = [gateway(&redis, &prefix, &gateway_flags()), gateway(&redis, &prefix, &gateway_flags())];
    let nginx = Nginx::start(&[gateways[0].addr, gateways[1].addr]);

    let clients: Vec<_> = (0..2).map(|_| client_of(&nginx.url(), Duration::from_secs(30))).collect();
    let mut running = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let mut request = c.generate(solid_png(colour(i))).await.unwrap();
        let mut events = Vec::new();
        until_first_part(&mut request, &mut events).await;
        running.push((i, request, events));
    }
    let both = eventually(Duration::from_secs(5), || workers.iter().all(|w| w.metrics().busy())).await;
    assert!(both, "the two jobs are not on the two workers");
    let killed = Instant::now();
    workers[0].kill9();
    let mut tasks = Vec::new();
    for (i, mut request, mut events) in running {
        tasks.push(tokio::spawn(async move {
            drain(&mut request, &mut events).await.unwrap_or_else(|e| panic!("client {i}: {e}"));
            check_complete(&events, Some(colour(i)));
            Instant::now()
        }));
    }
    let mut recovered = killed;
    for t in tasks {
        recovered = recovered.max(t.await.unwrap());
    }
    let m = workers[1].metrics();
    assert_eq!(m.worker_jobs("outcome=\"completed\""), 2, "its own job and the killed one's: {}", m.0);
    Row {
        fault: "kill -9 a worker mid-job (2 jobs of 1.5 s running)".into(),
        affected: "1 (the killed worker's job)".into(),
        outcomes: "requeued after the heartbeat TTL, rerun on the other worker: completed, each part once \
                   (the rerun's first part dropped as a duplicate); the other job completed"
            .into(),
        recovered: recovered - killed,
    }
}

/// Redis killed and restarted empty while six clients keep jobs going through nginx. Every
/// job in flight ends (completed, or failed with a code a client retries on), none hangs or
/// gets a wrong result; the clients retry and every one completes jobs again, on the same
/// processes.
async fn redis_restarted() -> Row {
    let mut server = RedisServer::start(&[]);
    let (redis, prefix) = (server.url(""), unique_prefix());
    let _workers = [worker(&redis, &prefix, 300, FAST), worker(&redis, &prefix, 300, FAST)];
    let flags = [&["--job-timeout", "8s"], FAST].concat();
    let gateways = [gateway(&redis, &prefix, &flags), gateway(&redis, &prefix, &flags)];
    let nginx = Nginx::start(&[gateways[0].addr, gateways[1].addr]);

    const CLIENTS: usize = 6;
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU32::new(0));
    let records = Arc::new(Mutex::new(Vec::<JobRecord>::new()));
    let restarted_at = Arc::new(Mutex::new(None::<Instant>));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (url, stop, next_id, records, restarted_at) =
            (nginx.url(), stop.clone(), next_id.clone(), records.clone(), restarted_at.clone());
        tasks.push(tokio::spawn(async move {
            // The per-job client timeout (15 s) is above the gateways' job timeout (8 s): a
            // job that never ends shows up as `timeout`, which fails the test.
            let client = client_of(&url, Duration::from_secs(15));
            let mut settled = 0;
            while !stop.load(Ordering::Relaxed) {
                let record = job::run(&client, c, next_id.fetch_add(1, Ordering::Relaxed)).await;
                let after = restarted_at.lock().unwrap().is_some_and(|t| record.sent >= t);
                let ok = record.outcome == Outcome::Completed;
                records.lock().unwrap().push(record);
                if ok && after {
                    settled += 1;
                    if settled == 2 {
                        return true;
                    }
                } else if !ok {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            false
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted = Instant::now();
    server.restart();
    *restarted_at.lock().unwrap() = Some(restarted);
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    for t in tasks {
        assert!(t.await.unwrap(), "a client did not complete two jobs within 30 s of the restart");
    }
    stopper.abort();

    let records = records.lock().unwrap().clone();
    for r in &records {
        assert!(
            matches!(&r.outcome, Outcome::Completed)
                || matches!(&r.outcome, Outcome::Failed(code) if code == "unavailable"),
            "job {} of client {}: {:?} (only completed or `unavailable`, the failure a client retries on)",
            r.id,
            r.client,
            r.outcome
        );
    }
    let affected: Vec<&JobRecord> = records
        .iter()
        .filter(|r| {
            (r.sent < restarted && r.done >= restarted)
                || (r.sent >= restarted && r.outcome != Outcome::Completed)
        })
        .collect();
    // Six clients looping over 300 ms jobs keep both workers busy: a restart that caught no
    // job in flight would make this row prove nothing.
    assert!(!affected.is_empty(), "the Redis restart hit no job");
    let mut outcomes = BTreeMap::<String, usize>::new();
    for r in &affected {
        *outcomes.entry(r.outcome.label()).or_default() += 1;
    }
    // Recovered: every client has completed a job it sent after the restart.
    let mut first_ok = BTreeMap::<usize, Instant>::new();
    for r in records.iter().filter(|r| r.outcome == Outcome::Completed && r.sent >= restarted) {
        let t = first_ok.entry(r.client).or_insert(r.done);
        *t = (*t).min(r.done);
    }
    assert_eq!(first_ok.len(), CLIENTS);
    let recovered = *first_ok.values().max().unwrap();
    let outcomes = outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ");
    Row {
        fault: format!("restart Redis, empty ({CLIENTS} clients looping over 300 ms jobs)"),
        affected: format!("{} (in flight at the restart, or failed after it)", affected.len()),
        outcomes: format!(
            "{outcomes}; no hang, no wrong result; clients retried and all completed again ({} jobs in all)",
            records.len()
        ),
        recovered: recovered - restarted,
    }
}

/// A worker frozen (SIGSTOP) mid-job past its heartbeat TTL, then continued (SIGCONT): the
/// job moved to the other worker and the client got each part once; the continued worker's
/// late parts are fenced and reach nobody: its run is not counted, and three more jobs on the
/// same connection see no frame left over from it.
async fn worker_paused() -> Row {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let workers = [worker(&redis, &prefix, 1500, FAST), worker(&redis, &prefix, 1500, FAST)];
    let gateways = [gateway(&redis, &prefix, &gateway_flags()), gateway(&redis, &prefix, &gateway_flags())];
    let nginx = Nginx::start(&[gateways[0].addr, gateways[1].addr]);

    let client = client_of(&nginx.url(), Duration::from_secs(30));
    let mut request = client.generate(solid_png(colour(3))).await.unwrap();
    let mut events = Vec::new();
    until_first_part(&mut request, &mut events).await;
    let frozen = busy_worker(&workers).await;
    let paused = Instant::now();
    workers[frozen].pause();
    let end = tokio::time::timeout(Duration::from_secs(15), drain(&mut request, &mut events)).await;
    let done = Instant::now();
    workers[frozen].resume();
    end.expect("the job did not move to the other worker within 15 s").unwrap();
    check_complete(&events, Some(colour(3)));
    drop(request);

    let idle = eventually(Duration::from_secs(5), || !workers[frozen].metrics().busy()).await;
    assert!(idle, "the continued worker kept running a job it lost");
    for id in 0..3 {
        let record = job::run(&client, 0, 100 + id).await;
        assert_eq!(record.outcome, Outcome::Completed, "job {id} after the continue");
    }
    let completed: u64 = workers.iter().map(|w| w.metrics().worker_jobs("outcome=\"completed\"")).sum();
    assert_eq!(completed, 4, "the paused job completed twice, or a later one went missing");
    assert_eq!(client.connects(), 1, "the connection should have stayed usable");
    Row {
        fault: "SIGSTOP a worker mid-job past its heartbeat TTL, then SIGCONT".into(),
        affected: "1 (the frozen worker's job)".into(),
        outcomes: "rerun on the other worker: completed, each part once; the continued worker's late parts \
                   fenced (its run not counted); 3 more jobs on the same connection clean"
            .into(),
        recovered: done - paused,
    }
}
