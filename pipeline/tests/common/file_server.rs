//! A small HTTP/1.1 file server on loopback for download tests: one thread per connection,
//! `Range: bytes=N-` answered with 206 (416 past the end), an optional `X-Linked-Etag` (as
//! Hugging Face publishes SHA-256), redirects, and a connection cut mid-body to test resuming.
//! Shared by pipeline/tests/download.rs and worker/tests/model_source.rs.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

/// A request as the server read it.
pub struct Request {
    /// The request target, e.g. `/files/model.bin`.
    pub path: String,
    /// The start of `Range: bytes=N-`, if sent.
    pub range: Option<usize>,
    /// The `Range` header line as sent, if any.
    pub range_header: Option<String>,
}

/// What the server answers.
pub enum Reply {
    /// The file: whole (200) or from the range's start (206); `cut_after` closes the connection
    /// after that many body bytes of a whole (non-range) response.
    File { body: Vec<u8>, etag: Option<String>, cut_after: Option<usize> },
    /// 302 to this location.
    Redirect(String),
    /// 404.
    NotFound,
}

/// Serves `route` on a free loopback port until the process ends; returns `http://ADDR`.
pub fn serve(route: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let route = std::sync::Arc::new(route);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let route = route.clone();
            std::thread::spawn(move || handle(stream, &*route));
        }
    });
    url
}

fn read_request(stream: &TcpStream) -> Request {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    let (mut range, mut range_header) = (None, None);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = Some(v.trim().trim_end_matches('-').parse::<usize>().unwrap());
            range_header = Some(line.trim().to_owned());
        }
    }
    Request { path, range, range_header }
}

fn handle(mut stream: TcpStream, route: &(dyn Fn(&Request) -> Reply + Send + Sync)) {
    let request = read_request(&stream);
    let (body, etag, cut_after) = match route(&request) {
        Reply::File { body, etag, cut_after } => (body, etag, cut_after),
        Reply::Redirect(to) => {
            let _ = write!(stream, "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        Reply::NotFound => {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            return;
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
}
