//! Failover: gateways and workers on a Redis Sentinel group (`redis+sentinel://`) keep serving
//! when the master dies. Real processes: a master, a replica and three sentinels
//! (`redis-server --sentinel`) on loopback ports, two gateways, two workers, six clients.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use img3d_client::ClientError;
use img3d_scaleout_tests::sentinel::SentinelGroup;
use img3d_scaleout_tests::{
    check_complete, client, colour, eventually, gateway, run, solid_png, unique_prefix, worker,
};

/// `kill -9` of the master while six clients keep two gateways and two workers busy: the
/// sentinels promote the replica; every request ends (completed, or failed with a retryable
/// code: writes not yet replicated are lost with the master), none hangs; the processes find
/// the new master by themselves: a job sent right after the promotion completes, and so does
/// every client's next job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_killed_under_load_the_service_follows_the_failover() {
    let mut group = SentinelGroup::start("img3d-test");
    let (redis, prefix) = (group.url(), unique_prefix());
    let fast = ["--heartbeat-ttl", "3s", "--client-ttl", "3s", "--reap-interval", "200ms"];
    let flags = [&["--job-timeout", "8s"][..], &fast].concat();
    let _workers = [worker(&redis, &prefix, 300, &fast), worker(&redis, &prefix, 300, &fast)];
    let gateways = [gateway(&redis, &prefix, &flags), gateway(&redis, &prefix, &flags)];
    let clients: Vec<_> = (0..6).map(|i| client(&gateways[i % 2], Duration::from_secs(60))).collect();

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
                    (_, Err(e @ ClientError::ServerFailed { .. })) if e.is_retryable() => failed += 1,
                    (events, Err(e)) => panic!("client {i}: {e} after {events:?}"),
                }
            }
            (completed, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let old_master = group.master.port;
    let killed = Instant::now();
    group.master.kill();
    let failed_over =
        eventually(Duration::from_secs(20), || group.master_port() == Some(group.replica.port)).await;
    assert!(failed_over, "the sentinels did not promote the replica");
    let failover = killed.elapsed();
    // A job sent right after the promotion, on a new connection: the service takes it.
    let fresh = client(&gateways[0], Duration::from_secs(60));
    let (events, end) = tokio::time::timeout(Duration::from_secs(15), run(&fresh, solid_png(colour(50))))
        .await
        .expect("a job sent after the failover hung");
    end.unwrap_or_else(|e| panic!("a job sent after the failover failed: {e}"));
    check_complete(&events, Some(colour(50)));
    let first_new = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut completed, mut failed) = (0, 0);
    for task in tasks {
        let (c, f) = task.await.unwrap();
        completed += c;
        failed += f;
    }
    eprintln!(
        "master {old_master} killed; replica {} promoted after {failover:?}; a job sent then \
         completed {first_new:?} after the kill; under the failover {completed} jobs completed, \
         {failed} failed retryably",
        group.replica.port
    );

    // On the new master: every client's next job completes, on the same processes and
    // connections.
    let mut after = Vec::new();
    for (i, c) in clients.iter().cloned().enumerate() {
        after.push(tokio::spawn(async move {
            let (events, end) = run(&c, solid_png(colour(i))).await;
            end.unwrap_or_else(|e| panic!("client {i} after the failover: {e}"));
            check_complete(&events, Some(colour(i)));
        }));
    }
    for task in after {
        task.await.unwrap();
    }
    eprintln!("every client's job after the failover completed {:?} after the kill", killed.elapsed());
    for g in &gateways {
        let (status, body) = g.http_get("/readyz");
        assert_eq!(status, 200, "{body}");
    }
}
