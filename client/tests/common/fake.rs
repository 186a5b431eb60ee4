//! A scripted WebSocket server (tokio-tungstenite) for the cases the real gateway never
//! produces: frames out of protocol order, chosen part payloads (a malicious zip), dropped
//! connections at chosen moments.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use img3d_protocol::{PartName, ServerMessage};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The server end of one connection.
pub type Ws = WebSocketStream<TcpStream>;

/// A listening scripted server; every accepted connection runs the handler. Stops on drop.
pub struct FakeServer {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    /// Listens on a free loopback port; `handler(n, ws)` serves the n-th connection (from 0).
    pub async fn start<F, Fut>(handler: F) -> FakeServer
    where
        F: Fn(usize, Ws) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        handler(n, ws).await;
                    }
                });
            }
        });
        FakeServer { addr, connections, task }
    }

    /// `ws://ADDR/generate3d`.
    pub fn url(&self) -> String {
        format!("ws://{}/generate3d", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stream a WebSocket can run over (TCP, or TLS over TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Waits for the client's image (a binary frame); `None` when the client went away.
pub async fn recv_image<S: Io>(ws: &mut WebSocketStream<S>) -> Option<Vec<u8>> {
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Binary(b) => return Some(b.to_vec()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
    None
}

/// Sends a protocol message as a text frame.
pub async fn send_msg<S: Io>(ws: &mut WebSocketStream<S>, msg: &ServerMessage) {
    ws.send(Message::text(msg.to_json())).await.unwrap();
}

/// Sends one announced part.
pub async fn send_part<S: Io>(ws: &mut WebSocketStream<S>, name: &str, content_type: &str, bytes: Vec<u8>) {
    let ann = ServerMessage::ResultPart { name: name.into(), content_type: content_type.into() };
    send_msg(ws, &ann).await;
    ws.send(Message::binary(bytes)).await.unwrap();
}

/// The three parts a well-behaved server sends: (name, content type, bytes).
pub fn good_parts(zip: Vec<u8>) -> Vec<(PartName, Vec<u8>)> {
    vec![
        (PartName::PixelImages, super::png(96, 16)),
        (PartName::XyzImages, super::png(96, 16)),
        (PartName::Output3d, zip),
    ]
}

/// Serves jobs the way the protocol says, each with `parts`, until the client leaves.
pub async fn serve_jobs<S: Io>(mut ws: WebSocketStream<S>, parts: Vec<(PartName, Vec<u8>)>) {
    while recv_image(&mut ws).await.is_some() {
        send_msg(&mut ws, &ServerMessage::processing()).await;
        for (part, bytes) in &parts {
            send_part(&mut ws, part.file_name(), part.content_type(), bytes.clone()).await;
        }
        send_msg(&mut ws, &ServerMessage::completed()).await;
    }
}
