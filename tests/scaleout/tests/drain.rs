//! SIGTERM drains in the deployment's shape: two gateways behind nginx running
//! `deploy/nginx.conf`, two Redis workers (the pipeline double), clients only through nginx.
//! The single-process drain (the protocol test server) is tested in worker/tests/drain.rs;
//! these check what the load balancer and the shared queue make of a drain.

use std::time::{Duration, Instant};

use img3d_scaleout_tests::nginx::Nginx;
use img3d_scaleout_tests::{
    busy_worker, check_complete, client_of, colour, connected, drain, eventually, gateway, gateway_gained,
    run, shared_redis, solid_png, unique_prefix, until_first_part, until_started, worker, ws_handshake, FAST,
};

/// SIGTERM to the gateway of a running job: its `/readyz` turns 503 at once; the running job's
/// client still gets its complete result; the next WebSocket handshake, which nginx's
/// `least_conn` sends to the draining gateway (it holds the fewest connections), is refused
/// with 503 and passed on to the other gateway, where every new job completes; the drained
/// gateway exits 0 long before its drain deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_sigterm_through_nginx() {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let _workers = [worker(&redis, &prefix, 1500, &[]), worker(&redis, &prefix, 1500, &[])];
    let flags = ["--drain-deadline", "20s"];
    let mut gateways = [gateway(&redis, &prefix, &flags), gateway(&redis, &prefix, &flags)];
    let nginx = Nginx::start(&[gateways[0].addr, gateways[1].addr]);

    // A job running on whichever gateway nginx picks: that one drains.
    let x = client_of(&nginx.url(), Duration::from_secs(30));
    let before = connected(&gateways);
    let mut request = x.generate(solid_png(colour(1))).await.unwrap();
    let mut events = Vec::new();
    until_started(&mut request, &mut events).await;
    let d = gateway_gained(&gateways, &before).expect("the job's connection is on no gateway");
    let other = 1 - d;

    // Bare WebSockets held on the other gateway until it has more connections than the
    // draining one: nginx's next pick (least connections, counted across its workers by the
    // upstream's zone) is then the draining gateway. (Those that land on the draining one are
    // closed again.)
    let mut ballast = Vec::new();
    for _ in 0..20 {
        let now = connected(&gateways);
        if now[other] > now[d] {
            break;
        }
        let (status, stream) = ws_handshake(nginx.addr);
        assert_eq!(status, 101, "a bare WebSocket through nginx was refused");
        let mut landed = None;
        let seen = eventually(Duration::from_secs(5), || {
            landed = gateway_gained(&gateways, &now);
            landed.is_some()
        })
        .await;
        assert!(seen, "no gateway counted the bare WebSocket");
        if landed == Some(other) {
            ballast.push(stream);
        } else {
            drop(stream);
            let gone = eventually(Duration::from_secs(5), || connected(&gateways)[d] <= now[d]).await;
            assert!(gone, "the gateway kept a closed connection");
        }
    }
    let now = connected(&gateways);
    assert!(now[other] > now[d], "could not steer nginx's least_conn: {now:?}");

    let sigterm = Instant::now();
    gateways[d].terminate();
    let not_ready = eventually(Duration::from_secs(2), || gateways[d].http_get("/readyz").0 == 503).await;
    let readyz_503 = sigterm.elapsed();
    assert!(not_ready, "/readyz of the draining gateway did not turn 503 within 2 s");
    assert!(gateways[d].http_get("/readyz").1.contains("draining"));

    // New clients, through nginx only, while the drained gateway still runs its job.
    let mut newcomers = Vec::new();
    for i in 10..13 {
        let client = client_of(&nginx.url(), Duration::from_secs(30));
        newcomers.push(tokio::spawn(async move {
            let (events, end) = run(&client, solid_png(colour(i))).await;
            end.unwrap_or_else(|e| panic!("new client {i} during the drain: {e}"));
            check_complete(&events, Some(colour(i)));
        }));
    }

    // The running job completes on the draining gateway.
    drain(&mut request, &mut events).await.expect("the running job of the draining gateway failed");
    check_complete(&events, Some(colour(1)));
    let x_done = sigterm.elapsed();
    drop(request);
    for task in newcomers {
        task.await.unwrap();
    }

    let status = gateways[d].wait_exit(Duration::from_secs(20)).await;
    let exited = sigterm.elapsed();
    let status = status.expect("the draining gateway did not exit within its 20 s drain deadline");
    assert!(status.success(), "the drained gateway exited with {status}");
    assert!(exited < Duration::from_secs(10), "the drain took {exited:?}: it should end with its last job");

    // The drained gateway closed the job's connection after the job; the client reconnects
    // through nginx to the other one.
    let (events, end) = run(&x, solid_png(colour(2))).await;
    end.unwrap();
    check_complete(&events, Some(colour(2)));
    assert_eq!(x.connects(), 2, "the client should have reconnected once");
    let on_other = gateways[other].metrics().sum("img3d_jobs_total", "outcome=\"completed\"");
    assert_eq!(on_other, 4.0, "3 new clients + the reconnected one must all run on the other gateway");

    // nginx's view: one handshake tried the draining gateway first, got 503, went on.
    drop(ballast);
    let (d_addr, other_addr) = (gateways[d].addr.to_string(), gateways[other].addr.to_string());
    let retried = |log: &[img3d_scaleout_tests::nginx::AccessLine]| {
        log.iter()
            .any(|l| l.upstreams() == [d_addr.clone(), other_addr.clone()] && l.statuses() == ["503", "101"])
    };
    let seen = eventually(Duration::from_secs(5), || retried(&nginx.access_log())).await;
    assert!(seen, "no handshake went to the draining gateway first: {:?}", nginx.access_log());
    eprintln!(
        "gateway drain: /readyz 503 after {readyz_503:?}, running job completed {x_done:?} and the \
         process exited 0 {exited:?} after SIGTERM (deadline 20 s)"
    );
}

/// SIGTERM to a worker in the middle of a job: its `/readyz` turns 503, it finishes that job
/// (the client gets it complete) and takes no other: a job sent after the signal runs on the
/// other worker. The drained worker exits 0 right after its job. Nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_sigterm_mid_job_through_nginx() {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let flags = ["--drain-deadline", "20s"];
    let mut workers = [worker(&redis, &prefix, 1500, &flags), worker(&redis, &prefix, 1500, &flags)];
    let gateways = [gateway(&redis, &prefix, &[]), gateway(&redis, &prefix, &[])];
    let nginx = Nginx::start(&[gateways[0].addr, gateways[1].addr]);

    // Both workers busy.
    let clients: Vec<_> = (0..3).map(|_| client_of(&nginx.url(), Duration::from_secs(30))).collect();
    let mut requests = Vec::new();
    for (i, c) in clients.iter().enumerate().take(2) {
        let mut request = c.generate(solid_png(colour(i))).await.unwrap();
        let mut events = Vec::new();
        until_started(&mut request, &mut events).await;
        requests.push((i, request, events));
    }
    let both = eventually(Duration::from_secs(5), || workers.iter().all(|w| w.metrics().busy())).await;
    assert!(both, "the two jobs are not on the two workers");

    let sigterm = Instant::now();
    workers[0].terminate();
    let not_ready = eventually(Duration::from_secs(2), || workers[0].http_get("/readyz").0 == 503).await;
    assert!(not_ready, "/readyz of the draining worker did not turn 503 within 2 s");

    // Sent after the signal: the draining worker must leave it to the other.
    let late = {
        let c = clients[2].clone();
        tokio::spawn(async move { run(&c, solid_png(colour(2))).await })
    };
    for (i, mut request, mut events) in requests {
        drain(&mut request, &mut events).await.unwrap_or_else(|e| panic!("job {i} during the drain: {e}"));
        check_complete(&events, Some(colour(i)));
    }
    let status = workers[0].wait_exit(Duration::from_secs(10)).await;
    let exited = sigterm.elapsed();
    let status = status.expect("the draining worker did not exit within 10 s of its job's end");
    assert!(status.success(), "the drained worker exited with {status}");
    let (events, end) = late.await.unwrap();
    end.expect("the job sent during the drain failed");
    check_complete(&events, Some(colour(2)));
    let m = workers[1].metrics();
    assert_eq!(
        m.worker_jobs("outcome=\"completed\""),
        2,
        "the other worker ran its job and the late one: {}",
        m.0
    );
    assert_eq!(m.worker_jobs(""), 2, "{}", m.0);
    eprintln!("worker drain: the job finished and the worker exited 0 {exited:?} after SIGTERM");
}

/// SIGTERM to a worker whose job outlasts its drain deadline (500 ms): at the deadline the job
/// goes back to the queue and the worker exits 0; the other worker runs it again from the
/// start, and the client gets each part exactly once (the rerun's first part, already
/// delivered, is dropped as a duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_sigterm_past_its_deadline_requeues_the_job() {
    let (redis, prefix) = (shared_redis(), unique_prefix());
    let flags = [&["--drain-deadline", "500ms"], FAST].concat();
    let mut workers = [worker(&redis, &prefix, 2400, &flags), worker(&redis, &prefix, 2400, &flags)];
    let gateway_flags = [&["--job-timeout", "20s"], FAST].concat();
    let gateways = [gateway(&redis, &prefix, &gateway_flags), gateway(&redis, &prefix, &gateway_flags)];
    let nginx = Nginx::start(&[gateways[0].addr, gateways[1].addr]);

    let client = client_of(&nginx.url(), Duration::from_secs(30));
    let mut request = client.generate(solid_png(colour(5))).await.unwrap();
    let mut events = Vec::new();
    until_first_part(&mut request, &mut events).await;
    let v = busy_worker(&workers).await;
    let sigterm = Instant::now();
    workers[v].terminate();
    let status = workers[v].wait_exit(Duration::from_secs(5)).await;
    let exited = sigterm.elapsed();
    let status = status.expect("the worker did not exit within 5 s of a 500 ms drain deadline");
    assert!(status.success(), "the drained worker exited with {status}");

    drain(&mut request, &mut events).await.expect("the requeued job failed");
    check_complete(&events, Some(colour(5)));
    let done = sigterm.elapsed();
    let m = workers[1 - v].metrics();
    assert_eq!(m.worker_jobs("outcome=\"completed\""), 1, "{}", m.0);
    eprintln!(
        "worker drain past its deadline: exited 0 {exited:?} after SIGTERM; the job completed on \
         the other worker {done:?} after it"
    );
}
