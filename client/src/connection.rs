//! One WebSocket connection, driven by its own task so that pings are answered (and, if
//! configured, sent) even while the application is not reading, and a connection the server
//! closed while idle is noticed before the next request uses it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{ClientConfig, ClientError};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A frame (or the end) received by the driver, handed to the request in order.
#[derive(Debug)]
pub(crate) enum Inbound {
    Text(String),
    Binary(Bytes, Instant),
    /// The connection ended; nothing follows.
    Closed(String),
}

/// The application's end of a connection. Dropping it closes the socket (close frame first),
/// which the server takes as "cancel the running job".
#[derive(Debug)]
pub(crate) struct Connection {
    outbound: mpsc::Sender<Bytes>,
    inbound: mpsc::Receiver<Inbound>,
}

/// How many received frames may wait for the application. Small: a slow reader should slow
/// the socket down rather than pile up result parts in memory.
const INBOUND_CAPACITY: usize = 4;
/// How long closing may take before the socket is just dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl Connection {
    /// Opens a connection, trying `connect_attempts` times.
    pub(crate) async fn open(cfg: &ClientConfig) -> Result<Connection, ClientError> {
        let url = cfg.request_url()?;
        let ws_cfg = WebSocketConfig::default()
            .max_message_size(Some(cfg.max_message_bytes))
            .max_frame_size(Some(cfg.max_message_bytes));
        let attempts = cfg.connect_attempts.max(1);
        let mut last: Box<dyn std::error::Error + Send + Sync> = "no attempt made".into();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(cfg.retry_delay).await;
            }
            let connect = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_cfg), true);
            match tokio::time::timeout(cfg.connect_timeout, connect).await {
                Ok(Ok((ws, _response))) => {
                    tracing::debug!(%url, attempt, "connected");
                    return Ok(Connection::spawn(ws, cfg.ping_interval));
                }
                Ok(Err(err)) => {
                    use tokio_tungstenite::tungstenite::Error as WsError;
                    // A URL the library cannot use will not work on a second try either.
                    if let WsError::Url(e) = &err {
                        return Err(ClientError::InvalidUrl { url, reason: e.to_string() });
                    }
                    last = Box::new(err);
                }
                Err(_) => last = format!("no handshake within {:?}", cfg.connect_timeout).into(),
            }
            tracing::debug!(%url, attempt, error = %last, "connect failed");
        }
        Err(ClientError::Connect { url, attempts, source: last })
    }

    fn spawn(ws: Ws, ping_interval: Option<Duration>) -> Connection {
        let (out_tx, out_rx) = mpsc::channel(1);
        let (in_tx, in_rx) = mpsc::channel(INBOUND_CAPACITY);
        tokio::spawn(drive(ws, out_rx, in_tx, ping_interval));
        Connection { outbound: out_tx, inbound: in_rx }
    }

    /// Queues a binary frame. `Err` when the connection is gone.
    pub(crate) async fn send(&self, bytes: Bytes) -> Result<(), String> {
        self.outbound.send(bytes).await.map_err(|_| "the connection is closed".to_owned())
    }

    /// The next frame; `Closed` once the connection ended.
    pub(crate) async fn recv(&mut self) -> Inbound {
        self.inbound.recv().await.unwrap_or_else(|| Inbound::Closed("the connection is closed".into()))
    }

    /// Whether this idle connection can take a request: still open, and nothing unexpected
    /// arrived while no request was running (a frame then would belong to no job).
    pub(crate) fn is_reusable(&mut self) -> bool {
        match self.inbound.try_recv() {
            Err(mpsc::error::TryRecvError::Empty) => !self.outbound.is_closed(),
            Ok(frame) => {
                tracing::debug!(?frame, "idle connection not reusable");
                false
            }
            Err(mpsc::error::TryRecvError::Disconnected) => false,
        }
    }
}

/// The driver task: moves frames between the socket and the channels until either side ends.
async fn drive(
    mut ws: Ws,
    mut outbound: mpsc::Receiver<Bytes>,
    inbound: mpsc::Sender<Inbound>,
    ping_interval: Option<Duration>,
) {
    let mut ping = ping_interval.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    let mut awaiting_pong = false;
    let end = loop {
        tokio::select! {
            frame = ws.next() => {
                let forward = match frame {
                    Some(Ok(Message::Text(text))) => Inbound::Text(text.to_string()),
                    Some(Ok(Message::Binary(bytes))) => Inbound::Binary(bytes, Instant::now()),
                    Some(Ok(Message::Pong(_))) => {
                        awaiting_pong = false;
                        continue;
                    }
                    // Pings are answered by the library as part of reading.
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| format!("{} {}", f.code, f.reason)).unwrap_or_default();
                        let _ = inbound.send(Inbound::Closed(format!("the server closed the connection {why}"))).await;
                        break None;
                    }
                    Some(Err(err)) => {
                        let _ = inbound.send(Inbound::Closed(err.to_string())).await;
                        break None;
                    }
                    None => {
                        let _ = inbound.send(Inbound::Closed("the connection ended".into())).await;
                        break None;
                    }
                };
                if inbound.send(forward).await.is_err() {
                    break Some(());
                }
            }
            out = outbound.recv() => match out {
                Some(bytes) => {
                    if let Err(err) = ws.send(Message::Binary(bytes)).await {
                        let _ = inbound.send(Inbound::Closed(format!("sending failed: {err}"))).await;
                        break None;
                    }
                }
                None => break Some(()),
            },
            _ = async { ping.as_mut().unwrap().tick().await }, if ping.is_some() => {
                if awaiting_pong {
                    let _ = inbound.send(Inbound::Closed("no pong within the ping interval".into())).await;
                    break None;
                }
                awaiting_pong = true;
                if let Err(err) = ws.send(Message::Ping(Bytes::new())).await {
                    let _ = inbound.send(Inbound::Closed(format!("ping failed: {err}"))).await;
                    break None;
                }
            }
        }
    };
    // The application dropped its end: say goodbye properly so the server cancels the job at
    // once instead of noticing a dead socket later.
    if end.is_some() {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            ws.close(None).await?;
            while ws.next().await.is_some() {}
            Ok::<_, tokio_tungstenite::tungstenite::Error>(())
        })
        .await;
    }
}
