//! The key layout is cluster-ready: every key a Lua script touches is one it declared in
//! `KEYS` (Redis Cluster routes a script by its declared keys; an undeclared key may live on
//! another node). Checked by watching a real Redis: a private `redis-server` with a `MONITOR`
//! connection open while the queue contract, a reap and an audit run through the backend; for
//! every command a script ran, Redis' own `COMMAND GETKEYS` names its keys, and each must be
//! among the keys its `EVALSHA` declared. The test also asserts that every script of the
//! backend ran, so a script the workload missed cannot pass unchecked.

#[path = "common/jobs.rs"]
mod jobs;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;
use img3d_queue::conformance::{self, Backend, Factory};
use img3d_queue::redis::{Keys, RedisConfig, RedisJobQueue, RedisWorkQueue};
use img3d_queue::JobQueue;
use img3d_testkit::redis_server::RedisServer;
use jobs::*;

/// Every script of the backend, by name, as `EVALSHA` names it (SHA1 of its source; the
/// scripts that give jobs back have `give_back.lua` prepended).
fn scripts() -> BTreeMap<String, &'static str> {
    let give_back = include_str!("../src/redis/lua/give_back.lua");
    let with_give_back = |s: &str| format!("{give_back}{s}");
    [
        ("submit", include_str!("../src/redis/lua/submit.lua").to_owned()),
        ("claim", include_str!("../src/redis/lua/claim.lua").to_owned()),
        ("publish_part", include_str!("../src/redis/lua/publish_part.lua").to_owned()),
        ("progress", include_str!("../src/redis/lua/progress.lua").to_owned()),
        ("finish", include_str!("../src/redis/lua/finish.lua").to_owned()),
        ("requeue", include_str!("../src/redis/lua/requeue.lua").to_owned()),
        ("release", include_str!("../src/redis/lua/release.lua").to_owned()),
        ("forget_worker", include_str!("../src/redis/lua/forget_worker.lua").to_owned()),
        ("reap", with_give_back(include_str!("../src/redis/lua/reap.lua"))),
        ("audit", with_give_back(include_str!("../src/redis/lua/audit.lua"))),
    ]
    .into_iter()
    .map(|(name, src)| (redis::Script::new(&src).get_hash().to_owned(), name))
    .collect()
}

/// One argument list of a `MONITOR` line (`+<time> [<db> <client>] "arg" "arg" ...`), and
/// whether a script ran it (`[0 lua]`). Arguments are unescaped as Redis escapes them
/// (`sdscatrepr`: `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b`, `\xHH`).
fn parse_monitor_line(line: &str) -> Option<(bool, Vec<Vec<u8>>)> {
    let rest = line.strip_prefix('+')?;
    let open = rest.find('[')?;
    let close = open + rest[open..].find(']')?;
    let from_lua = rest[open + 1..close].ends_with(" lua");
    let bytes = &rest.as_bytes()[close + 1..];
    let mut args = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        i += 1;
        let mut arg = Vec::new();
        while i < bytes.len() && bytes[i] != b'"' {
            if bytes[i] == b'\\' && i + 1 < bytes.len() {
                i += 1;
                match bytes[i] {
                    b'n' => arg.push(b'\n'),
                    b'r' => arg.push(b'\r'),
                    b't' => arg.push(b'\t'),
                    b'a' => arg.push(7),
                    b'b' => arg.push(8),
                    b'x' => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                        arg.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 2;
                    }
                    other => arg.push(other),
                }
            } else {
                arg.push(bytes[i]);
            }
            i += 1;
        }
        args.push(arg);
        i += 1;
    }
    Some((from_lua, args))
}

/// One script run: its name, declared keys, and the commands it ran.
#[derive(Debug)]
struct ScriptRun {
    name: String,
    keys: BTreeSet<Vec<u8>>,
    commands: Vec<Vec<Vec<u8>>>,
}

/// Reads a `MONITOR` connection until it closes, grouping each script's commands under its
/// `EVALSHA` (Redis feeds the `EVALSHA` line before the commands of the script, which run
/// atomically, so nothing comes between them). Lines of other commands are dropped as read
/// (the image `SET`s are large).
fn monitor(port: u16, runs: Arc<Mutex<Vec<ScriptRun>>>) -> TcpStream {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("monitor connection");
    conn.write_all(b"MONITOR\r\n").unwrap();
    let reader = conn.try_clone().unwrap();
    let names = scripts();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some((from_lua, args)) = parse_monitor_line(line.trim_end()) {
                let mut runs = runs.lock().unwrap();
                if from_lua {
                    if let Some(run) = runs.last_mut() {
                        run.commands.push(args);
                    }
                } else if args.first().is_some_and(|c| c.eq_ignore_ascii_case(b"evalsha")) {
                    let sha = String::from_utf8_lossy(&args[1]).into_owned();
                    let name =
                        names.get(&sha).map_or_else(|| format!("unknown script {sha}"), |n| n.to_string());
                    let numkeys: usize = String::from_utf8_lossy(&args[2]).parse().unwrap();
                    let keys = args[3..3 + numkeys].iter().cloned().collect();
                    runs.push(ScriptRun { name, keys, commands: Vec::new() });
                }
            }
            line.clear();
        }
    });
    conn
}

/// A fresh prefix on the private server for each contract case.
struct Private {
    url: String,
}

impl Private {
    fn cfg(&self) -> RedisConfig {
        let mut cfg = fast(self.url.clone());
        cfg.reap_interval = Duration::from_secs(3600); // only the explicit reap below
        cfg
    }
}

#[async_trait]
impl Factory for Private {
    async fn make(&self, max_len: usize) -> Backend {
        let mut cfg = self.cfg();
        cfg.max_queue_len = max_len;
        let jobs = RedisJobQueue::connect(cfg.clone()).await.unwrap();
        let work = RedisWorkQueue::connect(cfg).await.unwrap();
        Backend { jobs: Arc::new(jobs), work: Arc::new(work) }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_a_script_touches_is_declared() {
    let server = RedisServer::start(&[]);
    let runs = Arc::new(Mutex::new(Vec::new()));
    let watcher = monitor(server.port, runs.clone());
    let private = Private { url: server.url("") };

    // The queue contract: submit, claim, parts, progress, endings, requeue, release, cancels,
    // deadlines. (Not `large_part_intact`: the same scripts, with 40 MB of MONITOR text.)
    conformance::fifo_order(&private).await;
    conformance::events_in_order(&private).await;
    conformance::failure_reaches_client(&private).await;
    conformance::cancelled_queued_job_never_starts(&private).await;
    conformance::cancel_running_job_fires_token(&private).await;
    conformance::deadline_while_queued(&private).await;
    conformance::deadline_while_running(&private).await;
    conformance::bounded_length(&private).await;
    conformance::each_job_to_one_worker(&private).await;
    conformance::requeue_runs_again(&private).await;
    conformance::next_times_out_when_empty(&private).await;
    conformance::stats_track_depth(&private).await;
    conformance::dropped_lease_fails_job(&private).await;
    conformance::options_travel_with_job(&private).await;
    conformance::parts_follow_the_options(&private).await;

    // A stray in a live worker's in-flight list (a BLMOVE whose reply was lost): the audit
    // before the next pop gives it back, and it runs.
    let cfg = private.cfg();
    let keys = Keys::new(&cfg.prefix);
    let gateway = RedisJobQueue::connect(cfg.clone()).await.unwrap();
    let worker = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let mut stray = gateway.submit(job("stray")).await.unwrap();
    let mut admin_conn = admin(&cfg).await;
    let moved: Option<String> = redis::cmd("LMOVE")
        .arg(keys.pending())
        .arg(keys.inflight(worker.worker_id()))
        .arg("RIGHT")
        .arg("LEFT")
        .query_async(&mut admin_conn)
        .await
        .unwrap();
    assert_eq!(moved, Some(stray.id().to_string()));
    let lease = pop(&worker).await;
    assert_eq!(lease.job().id, stray.id(), "the audit must give the stray back");
    publish_all(&*lease).await;
    lease.complete().await.unwrap();
    expect_complete(&mut stray).await;

    // A dead worker: its job is reaped back to the queue and the worker forgotten.
    let mut orphan = gateway.submit(job("orphan")).await.unwrap();
    let doomed = RedisWorkQueue::connect(cfg.clone()).await.unwrap();
    let held = pop(&doomed).await;
    drop(doomed);
    tokio::time::sleep(cfg.heartbeat_ttl + Duration::from_millis(200)).await;
    let report = gateway.reap_now().await.unwrap();
    assert_eq!((report.requeued, report.dead_workers), (1, 1), "{report:?}");
    drop(held);
    let rerun = pop(&worker).await;
    assert_eq!((rerun.job().id, rerun.job().attempt), (orphan.id(), 2));
    publish_all(&*rerun).await;
    rerun.complete().await.unwrap();
    expect_complete(&mut orphan).await;
    drop((gateway, worker));

    // Let the last script lines arrive, then check every command of every script run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    watcher.shutdown(std::net::Shutdown::Both).unwrap();
    let runs = std::mem::take(&mut *runs.lock().unwrap());
    let mut conn = admin(&cfg).await;
    let mut ran = BTreeSet::new();
    let mut checked = 0;
    for run in &runs {
        ran.insert(run.name.clone());
        for command in run.commands.iter().filter(|c| c.len() > 1) {
            // (a command without arguments, like TIME, names no key)
            let touched: Vec<Vec<u8>> =
                match redis::cmd("COMMAND").arg("GETKEYS").arg(command).query_async(&mut conn).await {
                    Ok(keys) => keys,
                    Err(e) if e.to_string().contains("no key arguments") => Vec::new(),
                    Err(e) => panic!("COMMAND GETKEYS {command:?}: {e}"),
                };
            for key in touched {
                assert!(
                    run.keys.contains(&key),
                    "{} touched {:?} in {:?}, which is not among its KEYS {:?}",
                    run.name,
                    String::from_utf8_lossy(&key),
                    String::from_utf8_lossy(&command[0]),
                    run.keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>()
                );
                checked += 1;
            }
        }
    }
    let all: BTreeSet<String> = scripts().into_values().map(str::to_owned).collect();
    assert_eq!(ran, all, "every script must run at least once (and no unknown one)");
    assert!(checked > 100, "only {checked} key accesses were seen");
}

/// The `MONITOR` parser reads Redis' escapes back into the bytes sent.
#[test]
fn monitor_lines_parse() {
    let line = r#"+1796658091.390404 [0 lua] "set" "img3d:job:{a}\"b" "\x00\xff\n\\""#;
    let (from_lua, args) = parse_monitor_line(line).unwrap();
    assert!(from_lua);
    assert_eq!(args, vec![b"set".to_vec(), b"img3d:job:{a}\"b".to_vec(), b"\x00\xff\n\\".to_vec()]);
    let (from_lua, _) = parse_monitor_line(r#"+1.0 [0 127.0.0.1:5] "evalsha" "x" "0""#).unwrap();
    assert!(!from_lua);
}

/// The keys of one job really land in one Redis Cluster slot: a single-node cluster (all
/// slots its own) computes each key's slot with `CLUSTER KEYSLOT`.
#[test]
fn a_jobs_keys_hash_to_one_slot() {
    let server = RedisServer::start(&["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
    let client = redis::Client::open(server.url("")).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys = Keys::new("img3d");
    let slot = |conn: &mut redis::Connection, key: &str| -> i64 {
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(conn).unwrap()
    };
    let mut slots = BTreeSet::new();
    for _ in 0..8 {
        let id = img3d_queue::JobId::new();
        let job_slot = slot(&mut conn, &keys.job(id));
        slots.insert(job_slot);
        for key in [
            keys.image(id),
            keys.client_alive(id),
            keys.part(id, 0),
            keys.part(id, 2),
            keys.part_staging(id, 1, 2),
        ] {
            assert_eq!(slot(&mut conn, &key), job_slot, "{key} is not in {}'s slot", keys.job(id));
        }
    }
    assert!(slots.len() > 1, "jobs must spread over slots, not share one: {slots:?}");
}
