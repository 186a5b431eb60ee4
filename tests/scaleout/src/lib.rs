//! Harness for the scale-out end-to-end tests: `img3d-gateway` and the protocol-server example
//! as a Redis worker (pipeline double, no model) run as real processes on loopback, driven by
//! the real client library. Each test uses its own key prefix on the shared Redis, or its own
//! `redis-server` when it breaks Redis ([`sentinel`]: a Sentinel group for failovers).
//!
//! The binaries are found next to the test executable (`target/<profile>/img3d-gateway`,
//! `target/<profile>/examples/protocol-server`): build them first (`scripts/test` builds every
//! target before testing).
//!
//! The topology tests put Debian's nginx running `deploy/nginx.conf` in front ([`nginx`]) and
//! time every job with the load-test tool's own records and checks ([`job`], [`stats`],
//! [`procs`]: the `img3d-loadtest` library, so the tool and the tests judge a job by the same
//! rules).

pub use img3d_testkit::redis_server;

pub mod nginx;
pub mod raw_ws;
pub mod sentinel;

pub use img3d_loadtest::{job, procs, stats};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use img3d_client::{Client, ClientConfig, ClientError, Event, PartName};

/// Dead-process detection fast enough for tests: a worker is presumed dead 1 s after its last
/// beat, a gateway's jobs are dropped 1 s after it stopped refreshing them, reapers look every
/// 200 ms. Give the same to every process of a test.
pub const FAST: &[&str] = &["--heartbeat-ttl", "1s", "--client-ttl", "1s", "--reap-interval", "200ms"];

/// The shared Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`).
pub fn shared_redis() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("img3d-e2e:{}", uuid::Uuid::new_v4().simple())
}

/// `target/<profile>`, from this test executable's path (`target/<profile>/deps/<name>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf()
}

fn binary(relative: &str) -> PathBuf {
    let bin = profile_dir().join(relative);
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p img3d-gateway -p img3d-worker --bins \
         --examples` (scripts/test builds all targets before testing)",
        bin.display()
    );
    bin
}

/// `target/<profile>/examples/NAME` (checked to exist), for tests that run it themselves.
pub fn example_path(name: &str) -> PathBuf {
    binary(&format!("examples/{name}"))
}

/// One child process that printed `listening on ADDR`; killed on drop.
pub struct Proc {
    /// What it is, for messages.
    pub label: String,
    /// The address it printed (clients for a gateway, health and metrics for a worker).
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Proc {
    /// Starts `bin` with `args` and waits (at most 30 s) for its address line.
    fn spawn(label: &str, bin: PathBuf, args: &[String]) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        if std::env::var_os("IMG3D_LOG").is_none() {
            cmd.env("IMG3D_LOG", "warn");
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Off-thread, so a process that never prints the line fails the test instead of hanging
        // it; stdout keeps being drained so the process never blocks on it.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let (false, Some(addr)) = (sent, line.trim().strip_prefix("listening on ")) {
                    let _ = tx.send(addr.trim().to_owned());
                    sent = true;
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("a bad address line"),
            Err(_) => {
                let _ = child.kill();
                panic!("{label} did not print `listening on ADDR` within 30 s");
            }
        };
        Proc { label: label.to_owned(), addr, child: Some(child) }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the process was killed").id()
    }

    /// `kill -9`: a crash, nothing of the process runs any more.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill {sig} {} failed", self.label);
    }

    /// SIGHUP: the gateway reloads its API keys.
    pub fn hangup(&self) {
        self.signal("-HUP");
    }

    /// SIGTERM: the process drains (see README "Shutdown") and exits.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Waits (polling, at most `limit`) for the process to exit; its status, or None when it
    /// is still running at the limit (it is then left running, to be killed on drop).
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            let child = self.child.as_mut().expect("the process was killed");
            if let Some(status) = child.try_wait().unwrap() {
                // Reaped: never signal that pid again.
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process still runs (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGSTOP: the process freezes (no heartbeat, no I/O) but keeps its state.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Proc::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// `GET path` on its address: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, body)
    }

    /// Its `/metrics`, parsed.
    pub fn metrics(&self) -> MetricsText {
        MetricsText(self.http_get("/metrics").1)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused process cannot die of SIGKILL until it is continued on some kernels'
            // accounting; continue it first so drop never leaves a frozen child behind.
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
        self.kill9();
    }
}

/// `img3d-gateway --redis URL --prefix P` on a free loopback port, plus `extra` flags.
pub fn gateway(redis: &str, prefix: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["--listen", "127.0.0.1:0", "--redis", redis, "--prefix", prefix];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    Proc::spawn("img3d-gateway", binary("img3d-gateway"), &args)
}

/// The protocol-server example as a Redis worker whose jobs take `delay_ms`, plus `extra`
/// flags; its address serves `/healthz`, `/readyz`, `/metrics`.
pub fn worker(redis: &str, prefix: &str, delay_ms: u64, extra: &[&str]) -> Proc {
    let delay = delay_ms.to_string();
    let mut args =
        vec!["--listen", "127.0.0.1:0", "--redis", redis, "--prefix", prefix, "--delay-ms", &delay];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    Proc::spawn("protocol-server worker", binary("examples/protocol-server"), &args)
}

/// The real `img3d-worker` on Redis with `model_args` (e.g. `--model tiny --device cpu`); its
/// address (`--health-listen`) serves `/healthz`, `/readyz` (503 until the model is loaded) and
/// `/metrics`.
pub fn real_worker(redis: &str, prefix: &str, model_args: &[&str]) -> Proc {
    let mut args = vec!["--health-listen", "127.0.0.1:0", "--redis", redis, "--prefix", prefix];
    args.extend_from_slice(model_args);
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    Proc::spawn("img3d-worker", binary("img3d-worker"), &args)
}

/// The protocol-server example standalone (gateway, in-process queue and worker in one
/// process; no Redis, no nginx) with jobs of `delay_ms`: the baseline the scale-out path's
/// overhead is measured against.
pub fn standalone(delay_ms: u64) -> Proc {
    standalone_with(delay_ms, &[])
}

/// [`standalone`] with `extra` flags (gateway limits, `--output-bytes`).
pub fn standalone_with(delay_ms: u64, extra: &[&str]) -> Proc {
    let delay = delay_ms.to_string();
    let mut args = vec!["--listen", "127.0.0.1:0", "--delay-ms", &delay];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    Proc::spawn("protocol-server standalone", binary("examples/protocol-server"), &args)
}

/// A `/metrics` body.
#[derive(Debug, Clone)]
pub struct MetricsText(pub String);

impl MetricsText {
    /// Samples of metric `name`: labels (as written, e.g. `code="",outcome="completed"`) ->
    /// value.
    pub fn samples(&self, name: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for line in self.0.lines() {
            let Some(rest) = line.strip_prefix(name) else { continue };
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => match r.split_once("} ") {
                    Some((labels, value)) => (labels.to_owned(), value),
                    None => continue,
                },
                None if rest.starts_with(' ') => (String::new(), rest.trim()),
                None => continue,
            };
            if let Ok(v) = value.trim().parse() {
                out.insert(labels, v);
            }
        }
        out
    }

    /// Sum of the samples of `name` whose labels contain `filter` (e.g. `outcome="completed"`).
    pub fn sum(&self, name: &str, filter: &str) -> f64 {
        self.samples(name).iter().filter(|(l, _)| l.contains(filter)).map(|(_, v)| v).sum()
    }

    /// `img3d_worker_jobs_total` whose labels contain `filter`.
    pub fn worker_jobs(&self, filter: &str) -> u64 {
        self.sum("img3d_worker_jobs_total", filter) as u64
    }

    /// Whether the worker runs a job now (`img3d_worker_busy`).
    pub fn busy(&self) -> bool {
        self.sum("img3d_worker_busy", "") > 0.0
    }
}

/// A client of `gateway` with the given application timeout.
pub fn client(gateway: &Proc, timeout: Duration) -> Client {
    let mut cfg = ClientConfig::new(format!("ws://{}/generate3d", gateway.addr));
    cfg.timeout = timeout;
    cfg.connect_timeout = Duration::from_secs(5);
    Client::new(cfg)
}

/// A client of `url` (e.g. [`nginx::Nginx::url`]) with the given application timeout, asking
/// for `queued`/`progress` events (the load-test records time jobs by them).
pub fn client_of(url: &str, timeout: Duration) -> Client {
    let mut cfg = ClientConfig::new(url);
    cfg.timeout = timeout;
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.progress_events = true;
    Client::new(cfg)
}

/// The index of the gateway of `gateways` that holds more client connections now than in
/// `before` (their `img3d_connected_clients`): where nginx sent the connection just opened.
pub fn gateway_gained(gateways: &[Proc], before: &[f64]) -> Option<usize> {
    let now = connected(gateways);
    (0..gateways.len()).find(|&i| now[i] > before[i])
}

/// Opens a bare WebSocket connection to `addr` (`GET /generate3d` with the upgrade headers)
/// and holds it: (the HTTP status, the stream). Through nginx, an open one counts for its
/// gateway in `least_conn` until the stream is dropped.
pub fn ws_handshake(addr: SocketAddr) -> (u16, TcpStream) {
    raw_ws::upgrade_request(addr, "/generate3d", &[])
}

/// Each gateway's `img3d_connected_clients` now.
pub fn connected(gateways: &[Proc]) -> Vec<f64> {
    gateways.iter().map(|g| g.metrics().sum("img3d_connected_clients", "")).collect()
}

/// A 64x64 PNG of one colour (the double's first view is the input resized, so the colour
/// shows whose result a client got).
pub fn solid_png(rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(64, 64, image::Rgb(rgb));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A distinct colour for client `i`.
pub fn colour(i: usize) -> [u8; 3] {
    [(i * 37 % 256) as u8, (i * 91 % 256) as u8, (60 + i * 13 % 196) as u8]
}

/// Reads a request's remaining events to its end: the events and how it ended.
pub async fn drain(request: &mut img3d_client::Request, events: &mut Vec<Event>) -> Result<(), ClientError> {
    loop {
        match request.next_event().await {
            Ok(Some(e)) => events.push(e),
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Runs one request to its end.
pub async fn run(client: &Client, image: Vec<u8>) -> (Vec<Event>, Result<(), ClientError>) {
    let mut events = Vec::new();
    let end = match client.generate(image).await {
        Ok(mut request) => drain(&mut request, &mut events).await,
        Err(e) => Err(e),
    };
    (events, end)
}

/// Checks a successful run: `processing`, the three parts each once and in protocol order,
/// `completed`; PNG views of 1536x256 whose first view has the input's colour (when given); a
/// zip whose every entry reads back with a matching CRC-32. Returns the zip's size.
pub fn check_complete(events: &[Event], input: Option<[u8; 3]>) -> usize {
    let parts: Vec<_> =
        events.iter().filter_map(|e| if let Event::Part(p) = e { Some(p) } else { None }).collect();
    let kinds: Vec<_> = parts.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [Some(PartName::PixelImages), Some(PartName::XyzImages), Some(PartName::Output3d)],
        "each part once, in protocol order"
    );
    assert!(matches!(events.first(), Some(Event::Processing)), "{:?}", events.first());
    assert!(matches!(events.last(), Some(Event::Completed)), "{:?}", events.last());
    for png in &parts[..2] {
        let img = image::load_from_memory(&png.bytes).expect("a PNG part").to_rgb8();
        assert_eq!(img.dimensions(), (1536, 256));
    }
    if let Some(rgb) = input {
        let views = image::load_from_memory(&parts[0].bytes).unwrap().to_rgb8();
        assert_eq!(views.get_pixel(128, 128).0, rgb, "someone else's result");
    }
    let zip_bytes = &parts[2].bytes;
    let mut zip = zip::ZipArchive::new(Cursor::new(&zip_bytes[..])).expect("a zip part");
    assert!(zip.file_names().any(|n| n.is_ok_and(|n| n.ends_with(".obj"))), "no .obj in the zip");
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().map(|n| n.to_string()).unwrap_or_default();
        let mut sink = Vec::new();
        // Reading to the end checks the entry's CRC-32.
        entry.read_to_end(&mut sink).unwrap_or_else(|e| panic!("zip entry {name} corrupt: {e}"));
    }
    zip_bytes.len()
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; false on timeout.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// Waits (at most 10 s) until one of `workers` reports a running job; its index.
pub async fn busy_worker(workers: &[Proc]) -> usize {
    let mut found = None;
    let ok = eventually(Duration::from_secs(10), || {
        found = workers.iter().position(|w| w.metrics().busy());
        found.is_some()
    })
    .await;
    assert!(ok, "no worker took the job");
    found.unwrap()
}

/// Reads events up to and including the first part.
pub async fn until_first_part(request: &mut img3d_client::Request, events: &mut Vec<Event>) {
    until(request, events, "its first part", |e| matches!(e, Event::Part(_))).await;
}

/// Reads events up to and including the first `progress` (a worker started the job; the
/// client must ask for progress events).
pub async fn until_started(request: &mut img3d_client::Request, events: &mut Vec<Event>) {
    until(request, events, "a worker started it", |e| matches!(e, Event::Progress { .. })).await;
}

/// Reads events up to and including the first one for which `stop` holds (`what` names it for
/// the panic messages), at most 15 s.
pub async fn until(
    request: &mut img3d_client::Request,
    events: &mut Vec<Event>,
    what: &str,
    stop: impl Fn(&Event) -> bool,
) {
    let limit = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match request.next_event().await {
                Ok(Some(e)) => {
                    let done = stop(&e);
                    events.push(e);
                    if done {
                        return;
                    }
                }
                other => panic!("the request ended before {what}: {other:?} after {events:?}"),
            }
        }
    });
    limit.await.unwrap_or_else(|_| panic!("not {what} within 15 s: {events:?}"));
}
