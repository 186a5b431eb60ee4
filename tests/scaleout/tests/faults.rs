//! Process-level failures of the scaled-out topology: workers and gateways killed or frozen,
//! Redis restarted. The queue-level versions (leases, reapers, fencing, pub/sub outages) are in
//! queue/tests/redis_faults.rs; these check what a client of real processes sees.
//!
//! Every process gets [`FAST`] detection (1 s heartbeat and client TTLs), so each test takes
//! seconds; every wait is bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use img3d_client::{ClientError, Event, FailureCode};
use img3d_scaleout_tests::redis_server::RedisServer;
use img3d_scaleout_tests::{
    busy_worker, check_complete, client, colour, drain, eventually, gateway, run, shared_redis, solid_png,
    unique_prefix, until_first_part, worker, FAST,
};

/// `kill -9` of the worker running a job, after it published the first part: the reaper gives
/// the job to the other worker, whose identical first part is dropped as a duplicate; the
/// client gets each part once, within its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_job_the_job_reruns_elsewhere() {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let mut workers = vec![worker(&redis, &prefix, 2400, FAST), worker(&redis, &prefix, 2400, FAST)];
    let gateway = gateway(&redis, &prefix, &[&["--job-timeout", "20s"], FAST].concat());
    let client = client(&gateway, Duration::from_secs(30));

    let started = Instant::now();
    let mut request = client.generate(solid_png(colour(1))).await.unwrap();
    let mut events = Vec::new();
    until_first_part(&mut request, &mut events).await;
    let victim = busy_worker(&workers).await;
    workers[victim].kill9();
    drain(&mut request, &mut events).await.unwrap();
    check_complete(&events, Some(colour(1)));
    eprintln!("completed {:?} after the start, the worker killed mid-job", started.elapsed());

    let survivor = &workers[1 - victim];
    assert_eq!(survivor.metrics().worker_jobs("outcome=\"completed\""), 1);
}

/// `kill -9` of a gateway holding one running and two queued jobs: their "client alive" keys
/// expire, the running job is stopped and the queued ones are skipped, never run. A job sent
/// afterwards through the other gateway runs (after the skipped ones, which were ahead of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_with_queued_jobs_nobody_runs_them() {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let worker = worker(&redis, &prefix, 3000, FAST);
    let mut doomed = gateway(&redis, &prefix, FAST);
    let survivor = gateway(&redis, &prefix, FAST);

    let mut requests = Vec::new();
    let clients: Vec<_> = (0..3).map(|_| client(&doomed, Duration::from_secs(30))).collect();
    for (i, c) in clients.iter().enumerate() {
        let mut request = c.generate(solid_png(colour(i))).await.unwrap();
        assert!(matches!(request.next_event().await, Ok(Some(Event::Processing))));
        requests.push(request);
        if i == 0 {
            busy_worker(std::slice::from_ref(&worker)).await; // the first one runs; two wait
        }
    }
    doomed.kill9();
    for mut request in requests {
        let end = tokio::time::timeout(Duration::from_secs(5), drain(&mut request, &mut Vec::new())).await;
        assert!(matches!(end, Ok(Err(ClientError::ConnectionLost(_)))), "{end:?}");
    }
    // The running job stops within the client TTL plus a cancel poll.
    let stopped = eventually(Duration::from_secs(5), || !worker.metrics().busy()).await;
    assert!(stopped, "the abandoned job kept running");

    let client = client(&survivor, Duration::from_secs(30));
    let (events, end) = run(&client, solid_png(colour(7))).await;
    end.unwrap();
    check_complete(&events, Some(colour(7)));
    let m = worker.metrics();
    assert_eq!(m.worker_jobs(""), 2, "only the running job and the new one may run: {}", m.0);
    assert_eq!(m.worker_jobs("outcome=\"completed\""), 1, "{}", m.0);
}

/// A worker frozen (SIGSTOP) mid-job past its heartbeat TTL loses the job to the other worker;
/// continued (SIGCONT), its late parts are refused by the fence. The client gets each part
/// once, and its connection then serves another job normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_worker_past_its_heartbeat_ttl_completes_once() {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let workers = vec![worker(&redis, &prefix, 1500, FAST), worker(&redis, &prefix, 1500, FAST)];
    let gateway = gateway(&redis, &prefix, &[&["--job-timeout", "20s"], FAST].concat());
    let client = client(&gateway, Duration::from_secs(30));

    let mut request = client.generate(solid_png(colour(3))).await.unwrap();
    let mut events = Vec::new();
    until_first_part(&mut request, &mut events).await;
    let frozen = busy_worker(&workers).await;
    workers[frozen].pause();
    let end = tokio::time::timeout(Duration::from_secs(15), drain(&mut request, &mut events)).await;
    workers[frozen].resume();
    end.expect("the job did not move to the other worker").unwrap();
    check_complete(&events, Some(colour(3)));
    drop(request);

    // The continued worker notices its lease is gone and stops; nothing of its run counts.
    let idle = eventually(Duration::from_secs(5), || !workers[frozen].metrics().busy()).await;
    assert!(idle, "the continued worker kept running a job it lost");
    let completed: u64 = workers.iter().map(|w| w.metrics().worker_jobs("outcome=\"completed\"")).sum();
    assert_eq!(completed, 1, "the job completed twice");

    let (events, end) = run(&client, solid_png(colour(4))).await;
    end.unwrap();
    check_complete(&events, Some(colour(4)));
    assert_eq!(client.connects(), 1, "the connection should have stayed usable");
}

/// Redis killed and restarted empty while six clients keep two gateways and two workers busy:
/// every request in flight ends with `completed` or `failed` (never hangs), and once Redis is
/// back every new job succeeds, without restarting any process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_under_load() {
    let mut server = RedisServer::start(&[]);
    let (redis, prefix) = (server.url(""), unique_prefix());
    let flags = [&["--job-timeout", "8s"], FAST].concat();
    let _workers = [worker(&redis, &prefix, 400, FAST), worker(&redis, &prefix, 400, FAST)];
    let gateways = [gateway(&redis, &prefix, &flags), gateway(&redis, &prefix, &flags)];
    let clients: Vec<_> = (0..6).map(|i| client(&gateways[i % 2], Duration::from_secs(60))).collect();

    // Load: each client sends jobs back to back until told to stop; every request must end
    // (completed or failed) within the job timeout plus slack.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, c) in clients.iter().cloned().enumerate() {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let (mut completed, mut failed) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let ran = tokio::time::timeout(Duration::from_secs(15), run(&c, solid_png(colour(i)))).await;
                match ran.unwrap_or_else(|_| panic!("client {i}: a request hung")) {
                    (events, Ok(())) => {
                        check_complete(&events, Some(colour(i)));
                        completed += 1;
                    }
                    // Redis trouble is retryable: never `cancelled` or `internal`.
                    (_, Err(ClientError::ServerFailed { code, error })) => {
                        assert_eq!(code, Some(FailureCode::Unavailable), "client {i}: {error}");
                        failed += 1;
                    }
                    (events, Err(e)) => panic!("client {i}: {e} after {events:?}"),
                }
            }
            (completed, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut hit = 0;
    for task in tasks {
        let (completed, failed) = task.await.unwrap();
        eprintln!("under the restart: {completed} completed, {failed} failed");
        hit += failed;
    }
    // Six clients kept both workers busy: the restart must have caught jobs in flight, and
    // each of them ended `unavailable` (asserted above), none hung.
    assert!(hit >= 1, "the restart hit no job: the test proved nothing");

    // Redis is back: every new job succeeds on the same processes and connections.
    let mut after = Vec::new();
    for (i, c) in clients.iter().cloned().enumerate() {
        after.push(tokio::spawn(async move {
            let (events, end) = run(&c, solid_png(colour(i))).await;
            end.unwrap_or_else(|e| panic!("client {i} after the restart: {e}"));
            check_complete(&events, Some(colour(i)));
        }));
    }
    for task in after {
        task.await.unwrap();
    }
    for g in &gateways {
        let (status, body) = g.http_get("/readyz");
        assert_eq!(status, 200, "{body}");
    }
    drop(server);
}
