//! The scaled-out topology working normally: several gateways and workers on one Redis, and a
//! result part far larger than any pub/sub buffer.

use std::time::Duration;

use img3d_scaleout_tests::{
    check_complete, client, colour, gateway, run, shared_redis, solid_png, unique_prefix, worker,
};

/// Two gateways and two workers on one Redis: 20 concurrent clients spread over both gateways
/// each get their own complete result, parts once and in order; each job ran exactly once
/// (the workers' job counters add up to 20 completed runs and nothing else), and both workers
/// took jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_two_workers_twenty_clients() {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let workers = [worker(&redis, &prefix, 150, &[]), worker(&redis, &prefix, 150, &[])];
    let gateways = [gateway(&redis, &prefix, &[]), gateway(&redis, &prefix, &[])];

    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = client(&gateways[i % 2], Duration::from_secs(60));
        tasks.push(tokio::spawn(async move {
            let (events, end) = run(&client, solid_png(colour(i))).await;
            end.unwrap_or_else(|e| panic!("client {i}: {e}"));
            check_complete(&events, Some(colour(i)));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let per_worker: Vec<_> = workers.iter().map(|w| w.metrics()).collect();
    let completed: Vec<u64> = per_worker.iter().map(|m| m.worker_jobs("outcome=\"completed\"")).collect();
    let all: u64 = per_worker.iter().map(|m| m.worker_jobs("")).sum();
    eprintln!("jobs per worker: {completed:?}");
    assert_eq!((completed.iter().sum::<u64>(), all), (20, 20), "each job ran exactly once");
    assert!(completed.iter().all(|&n| n > 0), "a worker took no job: {completed:?}");
    for g in &gateways {
        let m = g.metrics();
        assert_eq!(m.sum("img3d_jobs_total", "outcome=\"completed\""), 10.0, "{}", m.0);
        let (status, body) = g.http_get("/readyz");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("queue: ok"), "{body}");
    }
    let (status, body) = workers[0].http_get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("queue: ok"), "{body}");
}

/// A 40 MB result part (stored in Redis under its own key, announced by a small notice) reaches
/// the client intact: its size, and the CRC-32 of every zip entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_megabyte_part_goes_through_intact() {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let _worker = worker(&redis, &prefix, 0, &["--output-bytes", "40000000"]);
    let gateway = gateway(&redis, &prefix, &[]);
    let client = client(&gateway, Duration::from_secs(60));
    let (events, end) = run(&client, solid_png([200, 30, 90])).await;
    end.unwrap();
    let zip_len = check_complete(&events, Some([200, 30, 90]));
    assert!(zip_len >= 40_000_000, "output3d.zip is only {zip_len} bytes");
}
