//! Debian's nginx in front of the test gateways, running `deploy/nginx.conf` itself: the
//! configuration is that file with only its two lines marked `# topology:` replaced (the
//! upstream servers and the listen address), so every WebSocket and proxy setting the tests
//! exercise is the one the compose file deploys. nginx runs as a non-daemon child with a temp
//! directory as its prefix (pid file, temp paths; logs go to stderr and stdout), so it needs
//! neither root nor /etc or /var, and works as root too.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `deploy/nginx.conf`, the file docker-compose.yml mounts into the load balancer.
pub fn deploy_config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx.conf")
}

/// The marker of the upstream server line in `deploy/nginx.conf`.
pub const UPSTREAM_MARK: &str = "# topology: upstream";
/// The marker of the listen line in `deploy/nginx.conf`.
pub const LISTEN_MARK: &str = "# topology: listen";

/// The one line of `config` that carries `mark`; panics (naming the file) unless there is
/// exactly one.
fn marked_line<'a>(config: &'a str, mark: &str) -> (usize, &'a str) {
    let found: Vec<_> = config.lines().enumerate().filter(|(_, l)| l.contains(mark)).collect();
    assert!(
        found.len() == 1,
        "deploy/nginx.conf must have exactly one line marked `{mark}` (the topology tests replace \
         it), found {}",
        found.len()
    );
    found[0]
}

/// `config` (the text of `deploy/nginx.conf`) for this machine: the marked upstream line
/// becomes one `server` line per address in `upstreams`, with the original line's parameters
/// (`max_fails=...` etc.), and the marked listen line listens on `listen`. Every other line is
/// kept byte for byte.
pub fn derive_config(config: &str, upstreams: &[SocketAddr], listen: SocketAddr) -> String {
    let (upstream_no, upstream) = marked_line(config, UPSTREAM_MARK);
    let (listen_no, listen_line) = marked_line(config, LISTEN_MARK);
    let indent = |line: &str| line[..line.len() - line.trim_start().len()].to_owned();
    // `server HOST:PORT PARAMS;  # topology: upstream` -> PARAMS
    let body = upstream.split('#').next().unwrap().trim().trim_end_matches(';');
    let mut words = body.split_whitespace();
    assert_eq!(words.next(), Some("server"), "the `{UPSTREAM_MARK}` line is not a server line: {upstream}");
    let _deployed_host = words.next().expect("the upstream server line names no address");
    let params: Vec<&str> = words.collect();
    let servers: Vec<String> = upstreams
        .iter()
        .map(|a| format!("{}server {a} {};  {UPSTREAM_MARK}", indent(upstream), params.join(" ")))
        .collect();
    assert!(listen_line.trim_start().starts_with("listen "), "not a listen line: {listen_line}");
    let listen_new = format!("{}listen {listen};  {LISTEN_MARK}", indent(listen_line));

    let mut out = String::new();
    for (i, line) in config.lines().enumerate() {
        if i == upstream_no {
            for s in &servers {
                out.push_str(s);
                out.push('\n');
            }
        } else if i == listen_no {
            out.push_str(&listen_new);
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The nginx binary: `IMG3D_NGINX`, else `nginx` on PATH or in /usr/sbin. Panics with what to
/// install when there is none: CI installs it (scripts/setup), so a missing nginx is a failure,
/// never a skip.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("IMG3D_NGINX") {
        return bin.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]);
    for dir in dirs {
        let bin = dir.join("nginx");
        if bin.is_file() {
            return bin;
        }
    }
    panic!(
        "nginx is missing: the topology tests run Debian's nginx in front of the gateways. Install \
         it with scripts/setup (or `apt-get install nginx`), or point IMG3D_NGINX at a binary"
    );
}

/// One access-log line of a WebSocket handshake (written when the connection closes).
#[derive(Debug, Clone)]
pub struct AccessLine(pub String);

impl AccessLine {
    /// The gateways tried, in order (`$upstream_addr`: `A, B` when A refused).
    pub fn upstreams(&self) -> Vec<String> {
        self.field("upstream=").split(", ").map(str::to_owned).collect()
    }

    /// Their answers (`$upstream_status`: `503, 101` when the first refused).
    pub fn statuses(&self) -> Vec<String> {
        self.field("upstream_status=").split(", ").map(str::to_owned).collect()
    }

    /// The value after `key` up to the next ` <word>=` (values may contain `, `).
    fn field(&self, key: &str) -> String {
        let Some((_, rest)) = self.0.split_once(key) else { return String::new() };
        let mut value = String::new();
        for word in rest.split(' ') {
            if word.contains('=') {
                break;
            }
            if !value.is_empty() {
                value.push(' ');
            }
            value.push_str(word);
        }
        value
    }
}

/// A running nginx in front of the given gateways; stopped (SIGKILL, master and workers) on
/// drop.
pub struct Nginx {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The generated configuration file.
    pub config: PathBuf,
    child: Option<Child>,
    access: Arc<Mutex<Vec<AccessLine>>>,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Writes the derived configuration into a temp prefix and starts nginx on a free loopback
    /// port; returns once it accepts connections (at most 10 s).
    pub fn start(gateways: &[SocketAddr]) -> Nginx {
        let bin = binary();
        let dir = tempfile::tempdir().unwrap();
        // As root, nginx's workers run as `nobody`; they must be able to enter the prefix.
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        let deployed = std::fs::read_to_string(deploy_config_path())
            .unwrap_or_else(|e| panic!("{}: {e}", deploy_config_path().display()));
        let addr: SocketAddr = format!("127.0.0.1:{}", img3d_testkit::free_port()).parse().unwrap();
        let config = dir.path().join("nginx.conf");
        std::fs::write(&config, derive_config(&deployed, gateways, addr)).unwrap();

        let mut child = Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        // The access log goes to stdout (`access_log /dev/stdout`); keep its lines.
        let access = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let lines = access.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(AccessLine(line));
            }
        });
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "nginx exited at start ({status}); its errors are above. Config: {}",
                    config.display()
                );
            }
            assert!(Instant::now() < until, "nginx did not listen on {addr} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { addr, config, child: Some(child), access, _dir: dir }
    }

    /// `ws://ADDR/generate3d` through nginx.
    pub fn url(&self) -> String {
        format!("ws://{}/generate3d", self.addr)
    }

    /// Access-log lines so far (one per ended WebSocket connection).
    pub fn access_log(&self) -> Vec<AccessLine> {
        self.access.lock().unwrap().clone()
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The worker processes' pids (children of the master, from /proc).
    pub fn worker_pids(&self) -> Vec<u32> {
        let pid = self.pid();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let workers = self.worker_pids();
        let mut child = self.child.take().unwrap();
        // SIGTERM: nginx's fast shutdown (the master stops its workers, closing every
        // connection, then exits); SIGQUIT would wait for the upgraded connections.
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Stuck: kill the master and its workers (which outlive a killed master).
        let _ = child.kill();
        let _ = child.wait();
        for pid in workers {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).stderr(Stdio::null()).status();
        }
    }
}
