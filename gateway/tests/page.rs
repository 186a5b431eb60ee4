//! The web page as the gateway serves it: over real TCP from `serve`, the same server a
//! browser reaches, with the bytes compared to web/dist (what the build produced).

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use img3d_gateway::{Gateway, GatewayConfig};
use img3d_queue::memory::MemoryQueue;
use img3d_service::{Health, Metrics, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// A gateway on a loopback port (in-process queue; no job is run here).
async fn start() -> (SocketAddr, Shutdown) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let queue = MemoryQueue::new(4);
    let gateway = Gateway::new(
        GatewayConfig::default(),
        queue,
        Arc::new(Health::new()),
        Arc::new(Metrics::new()),
        shutdown.clone(),
    );
    tokio::spawn(img3d_gateway::serve(listener, gateway));
    (addr, shutdown)
}

/// One HTTP/1.1 request with `Connection: close`; the whole reply.
async fn request(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = res.parse(&raw).unwrap() else { panic!("incomplete reply") };
    let headers = res
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    Reply { status: res.code.unwrap(), headers, body: raw[head..].to_vec() }
}

fn dist(path: &str) -> Vec<u8> {
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/dist").join(path.trim_start_matches('/'));
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

/// The paths of the script and stylesheet that index.html names.
fn asset_paths(html: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(html)
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_owned)
        .collect()
}

/// `GET /` is web/dist/index.html as HTML, revalidated on each load, under a strict CSP.
#[tokio::test]
async fn index_is_the_built_page_under_a_strict_csp() {
    let (addr, shutdown) = start().await;
    let r = request(addr, "GET", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(r.header("cache-control"), "no-cache");
    assert_eq!(r.body, dist("index.html"));
    let csp = r.header("content-security-policy");
    for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(directive), "CSP lacks {directive}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "CSP allows inline code: {csp}");
    assert_eq!(r.header("x-content-type-options"), "nosniff");

    // Revalidation: the ETag answers 304 with no body.
    let etag = r.header("etag").to_owned();
    assert!(!etag.is_empty());
    let again = request(addr, "GET", "/", &[("If-None-Match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    shutdown.begin(std::time::Duration::from_secs(1));
}

/// The hashed assets are immutable, typed, and gzipped only for clients that accept gzip,
/// decompressing to exactly the built file.
#[tokio::test]
async fn assets_are_immutable_and_gzipped_on_request() {
    let (addr, shutdown) = start().await;
    let index = request(addr, "GET", "/", &[]).await;
    let paths = asset_paths(&index.body);
    assert_eq!(paths.len(), 2, "{paths:?}");
    for path in paths {
        let expected = dist(&path);
        let plain = request(addr, "GET", &path, &[]).await;
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(plain.header("cache-control"), "public, max-age=31536000, immutable");
        let ty =
            if path.ends_with(".js") { "text/javascript; charset=utf-8" } else { "text/css; charset=utf-8" };
        assert_eq!(plain.header("content-type"), ty);
        assert_eq!(plain.header("content-encoding"), "");
        assert_eq!(plain.body, expected, "{path}");

        let gz = request(addr, "GET", &path, &[("Accept-Encoding", "gzip, deflate, br")]).await;
        assert_eq!(gz.header("content-encoding"), "gzip");
        assert_eq!(gz.header("vary"), "Accept-Encoding");
        assert!(gz.body.len() < expected.len() / 2, "{path}: gzip {} of {}", gz.body.len(), expected.len());
        assert_eq!(gunzip(&gz.body), expected, "{path}");

        let head = request(addr, "HEAD", &path, &[]).await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
    }
    shutdown.begin(std::time::Duration::from_secs(1));
}

/// Unknown assets are 404s, and the page routes leave the protocol and ops routes alone.
#[tokio::test]
async fn unknown_paths_are_not_found_and_ops_routes_still_answer() {
    let (addr, shutdown) = start().await;
    assert_eq!(request(addr, "GET", "/assets/app-NOPE.js", &[]).await.status, 404);
    assert_eq!(request(addr, "GET", "/assets/../Cargo.toml", &[]).await.status, 404);
    assert_eq!(request(addr, "GET", "/index.html.gz", &[]).await.status, 404);
    let health = request(addr, "GET", "/healthz", &[]).await;
    assert_eq!((health.status, health.body.as_slice()), (200, b"ok\n".as_slice()));
    shutdown.begin(std::time::Duration::from_secs(1));
}
