//! The TCP side of client connections: a listener whose connections note when bytes last
//! moved, in either direction.
//!
//! A WebSocket library reports a message only once it has all arrived, and a send only once
//! it has all left; on a slow link one 20 MB image takes minutes either way. Liveness must
//! count those bytes, or a slow client is taken for a dead one: so every read or write of at
//! least one byte stamps the connection's [`Activity`], which its session reads.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::budget::{MemoryBudget, UploadGate, Uploads};

/// How long a lingering close reads and discards.
const LINGER: Duration = Duration::from_secs(3);

/// When bytes last moved on one connection, each way (milliseconds since a process-wide
/// epoch, so each fits an atomic).
#[derive(Debug)]
pub struct Activity {
    read_ms: AtomicU64,
    written_ms: AtomicU64,
    /// Close with a lingering close (see the module docs).
    linger: AtomicBool,
}

/// The epoch of every [`Activity`] stamp.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Activity {
    /// Nothing moved yet: stamped now.
    pub fn new() -> Self {
        let now = Self::now();
        Activity {
            read_ms: AtomicU64::new(now),
            written_ms: AtomicU64::new(now),
            linger: AtomicBool::new(false),
        }
    }

    /// The current stamp, to compare with [`Activity::moved_since`].
    pub fn now() -> u64 {
        Instant::now().saturating_duration_since(epoch()).as_millis() as u64
    }

    /// Whether bytes moved (either way) after `stamp`.
    pub fn moved_since(&self, stamp: u64) -> bool {
        self.read_ms.load(Ordering::Relaxed) > stamp || self.written_ms.load(Ordering::Relaxed) > stamp
    }

    /// Asks for a lingering close when the connection is dropped (see the module docs).
    pub fn linger_on_close(&self) {
        self.linger.store(true, Ordering::Relaxed);
    }

    fn read(&self) {
        self.read_ms.store(Self::now(), Ordering::Relaxed);
    }

    fn written(&self) {
        self.written_ms.store(Self::now(), Ordering::Relaxed);
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// Who is on the other end of a connection, as handlers see it (`ConnectInfo<Peer>`).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The TCP peer (a load balancer, when there is one).
    pub addr: SocketAddr,
    /// When bytes last moved on the connection.
    pub activity: Arc<Activity>,
    /// What it has uploaded and its session not yet received, held from the memory budget.
    pub uploads: Arc<Uploads>,
}

impl Connected<IncomingStream<'_, ClientListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, ClientListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener for clients: no Nagle, and an [`Activity`] and [`Uploads`] per connection.
#[derive(Debug)]
pub struct ClientListener {
    inner: TcpListener,
    budget: MemoryBudget,
}

impl ClientListener {
    /// Wraps a bound listener whose connections' reads draw from `budget`.
    pub fn new(inner: TcpListener, budget: MemoryBudget) -> Self {
        ClientListener { inner, budget }
    }
}

impl axum::serve::Listener for ClientListener {
    type Io = ClientConn;
    type Addr = Peer;

    async fn accept(&mut self) -> (ClientConn, Peer) {
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        // No Nagle: a part's announcement and bytes, and the final status, are small writes
        // that would otherwise wait for the client's delayed ACK (40 ms per job on Linux).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        let activity = Arc::new(Activity::new());
        let uploads = Uploads::new(self.budget.clone());
        let conn = ClientConn {
            tcp: Some(tcp),
            activity: activity.clone(),
            gate: UploadGate::new(uploads.clone()),
            blocked: false,
        };
        (conn, Peer { addr, activity, uploads })
    }

    fn local_addr(&self) -> io::Result<Peer> {
        let uploads = Uploads::new(self.budget.clone());
        Ok(Peer { addr: self.inner.local_addr()?, activity: Arc::new(Activity::new()), uploads })
    }
}

/// One client's TCP stream, stamping its [`Activity`] whenever bytes move, and reading no more
/// than it holds upload credit for.
#[derive(Debug)]
pub struct ClientConn {
    /// Always there until dropped (taken by a lingering close).
    tcp: Option<TcpStream>,
    activity: Arc<Activity>,
    gate: UploadGate,
    /// The last write found the send buffer full: the next one that goes through proves the
    /// peer is reading.
    blocked: bool,
}

impl ClientConn {
    fn tcp(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.tcp.as_mut().expect("the stream is only taken on drop"))
    }

    fn wrote(&mut self, poll: &Poll<io::Result<usize>>) {
        match poll {
            Poll::Pending => self.blocked = true,
            Poll::Ready(Ok(n)) if *n > 0 && self.blocked => {
                self.blocked = false;
                self.activity.written();
            }
            Poll::Ready(_) => {}
        }
    }
}

impl AsyncRead for ClientConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let credit = match self.gate.poll_credit(cx) {
            Poll::Ready(Ok(credit)) => usize::try_from(credit).unwrap_or(usize::MAX),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let (poll, read) = if buf.remaining() <= credit {
            let before = buf.filled().len();
            let poll = self.tcp().poll_read(cx, buf);
            (poll, buf.filled().len() - before)
        } else {
            let mut limited = ReadBuf::new(buf.initialize_unfilled_to(credit));
            let poll = self.tcp().poll_read(cx, &mut limited);
            let read = limited.filled().len();
            buf.advance(read);
            (poll, read)
        };
        if read > 0 {
            self.activity.read();
            self.gate.used(read as u64);
        }
        poll
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = self.tcp().poll_write(cx, buf);
        self.wrote(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = self.tcp().poll_write_vectored(cx, bufs);
        self.wrote(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(|t| t.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_shutdown(cx)
    }
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        if !self.activity.linger.load(Ordering::Relaxed) {
            return;
        }
        if let (Some(tcp), Ok(runtime)) = (self.tcp.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(linger(tcp));
        }
    }
}

/// Sends FIN after what was written, then reads and discards until the client closes too or
/// [`LINGER`] passes, so the kernel does not reset the connection under the client's feet.
async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let mut sink = vec![0u8; 16 << 10];
    let _ = tokio::time::timeout(LINGER, async { while let Ok(1..) = tcp.read(&mut sink).await {} }).await;
}
