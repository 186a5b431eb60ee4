//! A small HTTP/1.1 file server on loopback for download tests, plain ([`serve`]) or over TLS
//! ([`serve_tls`]): one thread per connection, one request per connection, `Range: bytes=N-`
//! answered with 206 (416 past the end), an optional `X-Linked-Etag` (as Hugging Face publishes
//! an LFS file's SHA-256), redirects, and a connection cut mid-body to test resuming.
//!
//! What to answer is the test's `route` closure, which sees each request and may block (to hold
//! a download back until the test is ready).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request target, e.g. `/files/model.bin`.
    pub path: String,
    /// The start of `Range: bytes=N-`, if sent (header names in any case).
    pub range: Option<usize>,
}

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The file: whole (200) or from the range's start (206); `cut_after` closes the connection
    /// after that many body bytes of a whole (non-range) response.
    File {
        /// The whole file.
        body: Vec<u8>,
        /// Published as `X-Linked-Etag: "<etag>"` when set.
        etag: Option<String>,
        /// Close the connection after this many body bytes (whole responses only).
        cut_after: Option<usize>,
    },
    /// 302 to this location.
    Redirect(String),
    /// 404.
    NotFound,
}

type Route = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// Serves `route` over plain HTTP on a free loopback port until the process ends; returns
/// `http://127.0.0.1:PORT`.
pub fn serve(route: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> String {
    let route: Route = Arc::new(route);
    let port = accept_loop(move |tcp| {
        handle(tcp, &*route);
    });
    format!("http://127.0.0.1:{port}")
}

/// Serves `route` over HTTPS with `config` (e.g. [`crate::tls::TestCa::server_config`]) on a
/// free loopback port until the process ends; returns `https://127.0.0.1:PORT`. A client that
/// does not trust the certificate fails its handshake and gets nothing.
pub fn serve_tls(
    config: Arc<rustls::ServerConfig>,
    route: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> String {
    let route: Route = Arc::new(route);
    let port = accept_loop(move |tcp| {
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else { return };
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        // A clean TLS end (close_notify) unless the reply was cut on purpose: that one must
        // look like a dropped connection.
        if handle(&mut tls, &*route) {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    format!("https://127.0.0.1:{port}")
}

/// Accepts connections on a free loopback port, each on a thread of its own; returns the port.
fn accept_loop(on_connection: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let on_connection = Arc::new(on_connection);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let on_connection = on_connection.clone();
            std::thread::spawn(move || on_connection(&mut stream));
        }
    });
    port
}

/// Reads the request head; `None` when the client went away or did not speak HTTP (or TLS).
fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split(' ').nth(1)?.to_owned();
    let mut range = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = Some(v.trim().trim_end_matches('-').parse::<usize>().ok()?);
        }
    }
    Some(Request { path, range })
}

/// Answers one request on `stream`; false when the reply was cut short on purpose (or the
/// request could not be read).
fn handle<S: Read + Write>(stream: &mut S, route: &(dyn Fn(&Request) -> Reply + Send + Sync)) -> bool {
    let mut reader = BufReader::new(&mut *stream);
    let Some(request) = read_request(&mut reader) else { return false };
    drop(reader);
    let (body, etag, cut_after) = match route(&request) {
        Reply::File { body, etag, cut_after } => (body, etag, cut_after),
        Reply::Redirect(to) => {
            let _ = write!(stream, "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n");
            return true;
        }
        Reply::NotFound => {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            return true;
        }
    };
    let etag = etag.map(|e| format!("X-Linked-Etag: \"{e}\"\r\n")).unwrap_or_default();
    let len = body.len();
    let head = match request.range {
        Some(start) if start >= len => {
            format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\r\n")
        }
        Some(start) => format!(
            "HTTP/1.1 206 Partial Content\r\n{etag}Content-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\n\r\n",
            len - 1,
            len - start
        ),
        None => format!("HTTP/1.1 200 OK\r\n{etag}Content-Length: {len}\r\n\r\n"),
    };
    let _ = stream.write_all(head.as_bytes());
    let start = request.range.unwrap_or(0).min(len);
    let end = if request.range.is_none() { cut_after.unwrap_or(len).min(len) } else { len };
    let _ = stream.write_all(&body[start..end]);
    let _ = stream.flush();
    end == len
}
