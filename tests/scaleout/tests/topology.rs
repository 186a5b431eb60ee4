//! The scaled-out topology working normally: several gateways and workers on one Redis, and a
//! result part far larger than any pub/sub buffer; then the deployment's whole shape, with
//! nginx running `deploy/nginx.conf` in front and clients connecting only through it.

use std::net::SocketAddr;
use std::time::Duration;

use img3d_scaleout_tests::nginx::{
    self, deploy_config_path, derive_config, Nginx, LISTEN_MARK, UPSTREAM_MARK,
};
use img3d_scaleout_tests::{
    check_complete, client, client_of, colour, eventually, gateway, real_worker, run, shared_redis,
    solid_png, unique_prefix, worker,
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

/// The nginx the topology tests run is `deploy/nginx.conf` itself: the derived configuration
/// differs from the deployed file only in the lines marked `# topology:` (one `server` line per
/// gateway with the deployed line's parameters, and the listen address), and nginx accepts it.
#[test]
fn nginx_config_is_the_deployed_file_with_only_the_marked_lines_replaced() {
    let deployed = std::fs::read_to_string(deploy_config_path()).unwrap();
    let gateways: Vec<SocketAddr> =
        vec!["127.0.0.1:4001".parse().unwrap(), "127.0.0.1:4002".parse().unwrap()];
    let listen: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let derived = derive_config(&deployed, &gateways, listen);

    let unmarked = |s: &str| {
        s.lines()
            .filter(|l| !(l.contains(UPSTREAM_MARK) || l.contains(LISTEN_MARK)))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(unmarked(&deployed), unmarked(&derived), "only the marked lines may differ");
    let marked = |s: &str| {
        s.lines()
            .filter(|l| l.contains(UPSTREAM_MARK) || l.contains(LISTEN_MARK))
            .map(|l| l.trim().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        marked(&derived),
        [
            format!("server 127.0.0.1:4001 max_fails=1 fail_timeout=5s;  {UPSTREAM_MARK}"),
            format!("server 127.0.0.1:4002 max_fails=1 fail_timeout=5s;  {UPSTREAM_MARK}"),
            format!("listen 127.0.0.1:4000;  {LISTEN_MARK}"),
        ],
        "the deployed upstream line is `server gateway:8080 max_fails=1 fail_timeout=5s;`: if it \
         changed, update this test with it"
    );
    // The settings the WebSocket path depends on are in the file the tests run.
    for setting in [
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        "proxy_next_upstream error timeout http_502 http_503;",
        "least_conn;",
    ] {
        assert!(derived.contains(setting), "deploy/nginx.conf lost `{setting}`");
    }

    // `nginx -t` in a temp prefix, as the tests run it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nginx.conf");
    std::fs::write(&config, &derived).unwrap();
    let out = std::process::Command::new(nginx::binary())
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&config)
        .args(["-e", "stderr"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t rejects the derived config:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The deployment's shape without Docker: Redis, two gateways, nginx running
/// `deploy/nginx.conf` in front, two Redis workers (the pipeline double). 20 clients connect
/// only through nginx and each gets its own complete result; nginx spread the connections
/// over both gateways (its access log names the gateway of each WebSocket), and each job ran
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_nginx_two_gateways_two_workers() {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let workers = [worker(&redis, &prefix, 150, &[]), worker(&redis, &prefix, 150, &[])];
    let gateways = [gateway(&redis, &prefix, &[]), gateway(&redis, &prefix, &[])];
    let nginx = Nginx::start(&[gateways[0].addr, gateways[1].addr]);

    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = client_of(&nginx.url(), Duration::from_secs(60));
        tasks.push(tokio::spawn(async move {
            let (events, end) = run(&client, solid_png(colour(i))).await;
            end.unwrap_or_else(|e| panic!("client {i} through nginx: {e}"));
            check_complete(&events, Some(colour(i)));
            // Dropping the client closes its connection: nginx logs it.
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let completed: Vec<u64> =
        workers.iter().map(|w| w.metrics().worker_jobs("outcome=\"completed\"")).collect();
    let all: u64 = workers.iter().map(|w| w.metrics().worker_jobs("")).sum();
    assert_eq!((completed.iter().sum::<u64>(), all), (20, 20), "each job ran exactly once");
    assert!(completed.iter().all(|&n| n > 0), "a worker took no job: {completed:?}");
    let per_gateway: Vec<f64> =
        gateways.iter().map(|g| g.metrics().sum("img3d_jobs_total", "outcome=\"completed\"")).collect();
    assert_eq!(per_gateway.iter().sum::<f64>(), 20.0);
    assert!(per_gateway.iter().all(|&n| n > 0.0), "nginx used one gateway only: {per_gateway:?}");

    // Every connection was a WebSocket (101) to one of the two gateways, first try.
    let logged = eventually(Duration::from_secs(5), || nginx.access_log().len() >= 20).await;
    let log = nginx.access_log();
    assert!(logged, "nginx logged {} of 20 connections: {log:?}", log.len());
    let names: Vec<String> = gateways.iter().map(|g| g.addr.to_string()).collect();
    for line in &log {
        assert_eq!(line.statuses(), ["101"], "{}", line.0);
        assert!(names.contains(&line.upstreams()[0]), "{}", line.0);
    }
    eprintln!("jobs per worker {completed:?}, per gateway {per_gateway:?}");
}

/// The real worker in the deployment's shape: `img3d-worker --model tiny --device cpu` (the
/// CRM architecture at a tiny width, random weights: the whole pipeline runs, its output is
/// noise) on Redis behind two gateways and nginx. A client through nginx gets the three parts
/// of a real run, complete and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_real_worker_tiny_bundle() {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let worker = real_worker(&redis, &prefix, &["--model", "tiny", "--device", "cpu"]);
    let gateways = [gateway(&redis, &prefix, &[]), gateway(&redis, &prefix, &[])];
    let nginx = Nginx::start(&[gateways[0].addr, gateways[1].addr]);
    // The tiny bundle is created on first use, then loaded: /readyz is 503 until then.
    let loaded = eventually(Duration::from_secs(180), || worker.http_get("/readyz").0 == 200).await;
    assert!(loaded, "the tiny model did not load within 180 s: {}", worker.http_get("/readyz").1);

    let started = std::time::Instant::now();
    let client = client_of(&nginx.url(), Duration::from_secs(180));
    let (events, end) = run(&client, solid_png([180, 120, 60])).await;
    end.expect("the real worker's job failed");
    let zip = check_complete(&events, None);
    eprintln!("tiny bundle through nginx: complete in {:?}, output3d.zip {zip} bytes", started.elapsed());
    let m = worker.metrics();
    assert_eq!(m.worker_jobs("outcome=\"completed\""), 1, "{}", m.0);
}
