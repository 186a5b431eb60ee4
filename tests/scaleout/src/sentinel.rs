//! A Redis Sentinel group on loopback for failover tests: a master and a replica
//! (`redis-server` on free ports) watched by three sentinels (`redis-server --sentinel`, a
//! quorum of two), all real processes, killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::RedisServer;

/// How fast the sentinels act: a master silent for this long is down (the default is 30 s).
const DOWN_AFTER_MS: u64 = 1000;

/// A master, one replica and three sentinels watching them under one master name.
pub struct SentinelGroup {
    /// The master name the sentinels know the group by.
    pub name: String,
    /// The master at the start.
    pub master: RedisServer,
    /// Its replica, promoted when the master dies.
    pub replica: RedisServer,
    sentinels: Vec<Sentinel>,
}

struct Sentinel {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SentinelGroup {
    /// Starts the master, the replica (waiting until it is in sync) and three sentinels
    /// (waiting until each knows the replica and the other sentinels, so a failover can run).
    pub fn start(name: &str) -> SentinelGroup {
        let master = RedisServer::start(&[]);
        let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        wait_for(Duration::from_secs(15), "the replica to sync", || {
            cli(replica.port, &["INFO", "replication"]).contains("master_link_status:up")
        });
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(name, master.port)).collect();
        for s in &sentinels {
            wait_for(Duration::from_secs(15), "the sentinels to find each other and the replica", || {
                let info = cli(s.port, &["SENTINEL", "MASTER", name]);
                field(&info, "num-slaves") == Some(1) && field(&info, "num-other-sentinels") == Some(2)
            });
        }
        SentinelGroup { name: name.to_owned(), master, replica, sentinels }
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/NAME`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.name)
    }

    /// The master's port as the first sentinel answers it now.
    pub fn master_port(&self) -> Option<u16> {
        let out = cli(self.sentinels[0].port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.name]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }
}

impl Sentinel {
    fn start(name: &str, master_port: u16) -> Sentinel {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = crate::redis_server::free_port();
        // Sentinel rewrites its config file (it must be writable), so each gets its own.
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.path().display()
            ),
        )
        .unwrap();
        let child = spawn_sentinel(&conf);
        wait_for(Duration::from_secs(10), "a sentinel to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sentinel { port, child, _dir: dir }
    }
}

fn spawn_sentinel(conf: &Path) -> Child {
    Command::new("redis-server")
        .arg(conf)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)")
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-cli -p PORT ARGS...`'s output ("" when it fails).
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// The value after line `name` in `SENTINEL MASTER`'s flat key/value reply.
fn field(reply: &str, name: &str) -> Option<u64> {
    let lines: Vec<&str> = reply.lines().map(str::trim).collect();
    let at = lines.iter().position(|l| *l == name)?;
    lines.get(at + 1)?.parse().ok()
}

fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}
