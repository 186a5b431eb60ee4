//! A blocking WebSocket client with full control of the connection (tungstenite over a plain
//! `TcpStream`, or any `Read + Write`): for clients that misbehave on purpose (stop reading,
//! upload slowly, send oversized frames) and for handshakes with chosen headers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(256 << 20)).max_frame_size(Some(256 << 20))
}

/// A TCP connection to `addr` with a 20 s read timeout (a test fails rather than hangs).
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream
}

/// A WebSocket client of `/generate3d` on `stream` (already connected to `addr`).
pub fn ws_client<S: Read + Write>(addr: SocketAddr, stream: S) -> WebSocket<S> {
    let url = format!("ws://{addr}/generate3d");
    match tungstenite::client::client_with_config(url, stream, Some(config())) {
        Ok((ws, _)) => ws,
        Err(e) => panic!("WebSocket handshake with {addr} failed: {e}"),
    }
}

/// `GET path_and_query` with the WebSocket upgrade headers plus `headers`: the HTTP status and,
/// when it is 101, the WebSocket.
pub fn handshake(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<WebSocket<TcpStream>>) {
    let (status, stream) = upgrade_request(addr, path_and_query, headers);
    let ws = (status == 101).then(|| WebSocket::from_raw_socket(stream, Role::Client, Some(config())));
    (status, ws)
}

/// Sends the upgrade request of [`handshake`] and reads the response head byte by byte, so
/// nothing after it is consumed: the HTTP status and the stream.
pub fn upgrade_request(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> (u16, TcpStream) {
    let mut stream = tcp(addr);
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, stream)
}

/// The next text or binary message or close (pings are answered by the library), or how the
/// connection ended.
pub fn next_message<S: Read + Write>(ws: &mut WebSocket<S>) -> Result<Message, String> {
    loop {
        match ws.read() {
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(m) => return Ok(m),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The `status` and `code` of a status message (empty when absent).
pub fn status(m: &Message) -> (String, String) {
    let Message::Text(t) = m else { panic!("expected a status message, got {m:?}") };
    let v: serde_json::Value = serde_json::from_str(t).unwrap();
    let field = |name: &str| v[name].as_str().unwrap_or_default().to_owned();
    (field("status"), field("code"))
}

/// Sends `image` and reads its job to the end: each message (binaries as `<N bytes>`), the last
/// one a `completed` or `failed` status.
pub fn run_job<S: Read + Write>(ws: &mut WebSocket<S>, image: Vec<u8>) -> Result<Vec<String>, String> {
    ws.send(Message::Binary(image.into())).map_err(|e| format!("sending the image: {e}"))?;
    read_job(ws)
}

/// Reads one job's messages to its `completed` or `failed` status (see [`run_job`]).
pub fn read_job<S: Read + Write>(ws: &mut WebSocket<S>) -> Result<Vec<String>, String> {
    let mut seen = Vec::new();
    loop {
        let m = next_message(ws).map_err(|e| format!("{e} after {seen:?}"))?;
        let done = matches!(&m, Message::Text(_)) && matches!(status(&m).0.as_str(), "completed" | "failed");
        seen.push(match &m {
            Message::Binary(b) => format!("<{} bytes>", b.len()),
            other => other.to_string(),
        });
        if done {
            return Ok(seen);
        }
    }
}
