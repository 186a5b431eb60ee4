//! The queue survives a Redis restart when Redis keeps an append-only file, as
//! docker-compose.yml and deploy/k8s run it (`--appendonly yes --appendfsync everysec`): real
//! gateway and worker processes, a real `redis-server` stopped (SIGTERM, as an orchestrator
//! stops it) and started again on the same port and directory, under load.

use std::time::{Duration, Instant};

use img3d_client::{ClientError, Event};
use img3d_scaleout_tests::redis_server::RedisServer;
use img3d_scaleout_tests::{check_complete, client_of, colour, gateway, solid_png, unique_prefix, worker};

/// How one client's job went: when it was seen running (its first `progress`), and how it
/// ended.
struct Outcome {
    started: Option<Instant>,
    events: Vec<Event>,
    end: Result<(), ClientError>,
}

/// Twelve jobs on two workers of 600 ms each: two run and ten wait when Redis restarts.
/// Every job that was waiting completes afterwards without being resent, each part once;
/// a job that was running completes too or, if the restart broke one of its writes, ends with
/// a retryable failure (never a hang); afterwards new jobs run normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_jobs_complete_across_a_redis_restart() {
    let mut server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let (redis, prefix) = (server.url(""), unique_prefix());
    // TTLs above the restart's downtime (they are kept in the AOF as absolute times, so a
    // longer outage would expire them): a restart must not read as a dead worker or gateway.
    let fast = ["--heartbeat-ttl", "3s", "--client-ttl", "3s", "--reap-interval", "200ms"];
    let flags = [&["--job-timeout", "60s"][..], &fast].concat();
    let workers = [worker(&redis, &prefix, 600, &fast), worker(&redis, &prefix, 600, &fast)];
    let gateways = [gateway(&redis, &prefix, &flags), gateway(&redis, &prefix, &flags)];
    let urls: Vec<String> = gateways.iter().map(|g| format!("ws://{}/generate3d", g.addr)).collect();

    let jobs = 12;
    let mut tasks = Vec::new();
    for i in 0..jobs {
        let client = client_of(&urls[i % 2], Duration::from_secs(60));
        tasks.push(tokio::spawn(async move {
            let mut request = client.generate(solid_png(colour(i))).await.expect("submit");
            let (mut events, mut started) = (Vec::new(), None);
            let end = loop {
                match tokio::time::timeout(Duration::from_secs(45), request.next_event()).await {
                    Err(_) => panic!("job {i} hung: no event for 45 s after {events:?}"),
                    Ok(Ok(Some(e))) => {
                        if matches!(e, Event::Progress { .. }) && started.is_none() {
                            started = Some(Instant::now());
                        }
                        events.push(e);
                    }
                    Ok(Ok(None)) => break Ok(()),
                    Ok(Err(e)) => break Err(e),
                }
            };
            Outcome { started, events, end }
        }));
    }
    // Wait until both workers run a job and the rest wait in Redis.
    let queued = img3d_scaleout_tests::eventually(Duration::from_secs(10), || {
        workers.iter().all(|w| w.metrics().busy())
            && gateways[0].metrics().sum("img3d_queue_depth", "") >= (jobs - 4) as f64
    })
    .await;
    assert!(queued, "the jobs did not queue up: {}", gateways[0].metrics().0);

    let restart = Instant::now();
    let downtime = server.restart_graceful();
    eprintln!("Redis (AOF) unreachable for {downtime:?}");

    let (mut waited, mut running, mut retryable) = (0, 0, 0);
    for (i, task) in tasks.into_iter().enumerate() {
        let Outcome { started, events, end } = task.await.unwrap();
        // Not seen running before the restart: it was waiting in Redis (or being taken).
        let was_waiting = started.is_none_or(|t| t > restart);
        match end {
            Ok(()) => {
                check_complete(&events, Some(colour(i)));
                if was_waiting {
                    waited += 1;
                } else {
                    running += 1;
                }
            }
            Err(e) if !was_waiting && e.is_retryable() => {
                eprintln!("job {i}, running at the restart: {e}");
                retryable += 1;
            }
            Err(e) => panic!("job {i} (waiting at the restart: {was_waiting}) failed: {e} after {events:?}"),
        }
    }
    eprintln!(
        "across the restart: {waited} waiting jobs completed, {running} running ones completed, \
         {retryable} running ones failed retryably"
    );
    assert!(waited >= jobs - 4, "fewer jobs waited across the restart than queued: {waited}");
    assert_eq!(waited + running + retryable, jobs);

    // The service goes on: a new job on each gateway completes.
    for (i, url) in urls.iter().enumerate() {
        let client = client_of(url, Duration::from_secs(30));
        let (events, end) = img3d_scaleout_tests::run(&client, solid_png(colour(100 + i))).await;
        end.unwrap_or_else(|e| panic!("a job after the restart failed: {e}"));
        check_complete(&events, Some(colour(100 + i)));
    }
}
