//! A TCP proxy between a Redis client and a real Redis that loses chosen replies: the faults
//! a worker must survive without stranding a job (a reply lost after Redis executed the
//! command, a command that cannot get through for a while).
//!
//! Requests are matched by a byte string they contain (a command name, a script's SHA1).
//! Each rule counts its hits, so a test can assert that the fault really happened.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to requests containing a needle.
#[derive(Debug, Clone)]
enum Rule {
    /// Forward the next matching request, swallow its reply and cut the connection (Redis
    /// executed it; the client never hears). A `NOSCRIPT` reply is let through and the rule
    /// stays armed for the retry that follows it.
    DropReply(Vec<u8>),
    /// Cut every connection that sends a matching request, without forwarding it.
    Refuse(Vec<u8>),
}

#[derive(Default)]
struct State {
    rule: Mutex<Option<Rule>>,
    hits: AtomicUsize,
}

/// A proxy on a free loopback port; stops with the test's runtime.
pub struct Proxy {
    /// Its port.
    pub port: u16,
    state: Arc<State>,
}

impl Proxy {
    /// Starts one in front of `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                tokio::spawn(relay(client, server, shared.clone()));
            }
        });
        Proxy { port, state }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Loses the reply of the next request containing `needle` (see [`Rule::DropReply`]).
    pub fn drop_reply_once(&self, needle: impl Into<Vec<u8>>) {
        *self.state.rule.lock().unwrap() = Some(Rule::DropReply(needle.into()));
    }

    /// Cuts every connection sending a request containing `needle` until [`Self::heal`].
    pub fn refuse(&self, needle: impl Into<Vec<u8>>) {
        *self.state.rule.lock().unwrap() = Some(Rule::Refuse(needle.into()));
    }

    /// Lets everything through again.
    pub fn heal(&self) {
        *self.state.rule.lock().unwrap() = None;
    }

    /// Whether a rule is still armed (a `drop_reply_once` disarms when it fires).
    pub fn armed(&self) -> bool {
        self.state.rule.lock().unwrap().is_some()
    }

    /// How many requests a rule has hit so far.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Relays one connection both ways, applying the rule to each request.
async fn relay(mut client: TcpStream, mut server: TcpStream, state: Arc<State>) {
    let (mut up, mut down) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    let mut swallow_next_reply = false;
    loop {
        tokio::select! {
            read = client.read(&mut up) => {
                let Ok(n @ 1..) = read else { return };
                let request = &up[..n];
                let rule = state.rule.lock().unwrap().clone();
                match rule {
                    Some(Rule::Refuse(needle)) if contains(request, &needle) => {
                        state.hits.fetch_add(1, Ordering::SeqCst);
                        return; // both sockets close: the request never reaches Redis
                    }
                    Some(Rule::DropReply(needle)) if contains(request, &needle) => swallow_next_reply = true,
                    _ => {}
                }
                if server.write_all(request).await.is_err() {
                    return;
                }
            }
            read = server.read(&mut down) => {
                let Ok(n @ 1..) = read else { return };
                let reply = &down[..n];
                if swallow_next_reply {
                    if reply.starts_with(b"-NOSCRIPT") {
                        swallow_next_reply = false; // the client loads the script and retries
                    } else {
                        state.hits.fetch_add(1, Ordering::SeqCst);
                        *state.rule.lock().unwrap() = None;
                        return; // executed by Redis; the reply is lost with the connection
                    }
                }
                if client.write_all(reply).await.is_err() {
                    return;
                }
            }
        }
    }
}
