//! Downloading model files: HTTP(S) GET with redirects, resumable through `Range`, progress
//! reports, and a SHA-256 check where the server publishes one (Hugging Face sends an LFS
//! file's SHA-256 as `X-Linked-Etag`) or the caller knows it.
//!
//! A download goes to `<dest>.part` and is renamed to `dest` only once complete and checked,
//! so an interrupted run leaves a `.part` that the next run continues from where it stopped.
//! Blocking, std + rustls (the system's root certificates): it runs once, before the model
//! loads, on a thread of its own.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use url::Url;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
#[error("downloading {url}: {reason}")]
pub struct DownloadError {
    /// The URL asked for.
    pub url: String,
    /// What went wrong.
    pub reason: String,
}

/// Progress of one file: bytes on disk so far and the total, when known.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

const MAX_REDIRECTS: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Downloads `url` to `dest` (resuming `<dest>.part` if there is one) and checks its SHA-256
/// against `sha256` or, failing that, the one the server publishes. Returns the checked
/// digest (hex), or `None` when nobody published one.
pub fn fetch(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    progress: Progress<'_>,
) -> Result<Option<String>, DownloadError> {
    let err = |reason: String| DownloadError { url: url.to_owned(), reason };
    let part = part_path(dest);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    }
    let mut current = Url::parse(url).map_err(|e| err(format!("invalid URL: {e}")))?;
    let mut published: Option<String> = None;
    for _ in 0..=MAX_REDIRECTS {
        let offset = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut response = request(&current, offset).map_err(err)?;
        published = published.or_else(|| response.sha256());
        match response.status {
            301 | 302 | 303 | 307 | 308 => {
                let location =
                    response.header("location").ok_or_else(|| err("redirect without Location".into()))?;
                current =
                    current.join(&location).map_err(|e| err(format!("bad redirect {location}: {e}")))?;
                continue;
            }
            200 | 206 => {
                let append = response.status == 206;
                if append && response.range_start() != Some(offset) {
                    return Err(err(format!(
                        "asked for bytes from {offset}, got {:?}",
                        response.header("content-range")
                    )));
                }
                let start = if append { offset } else { 0 };
                let total = response.total(start);
                let mut file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(&part)
                    .map_err(|e| err(format!("opening {}: {e}", part.display())))?;
                response.copy_body(&mut file, start, total, progress).map_err(err)?;
                file.sync_all().map_err(|e| err(e.to_string()))?;
                let written = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                if let Some(total) = total {
                    if written != total {
                        return Err(err(format!("the connection ended after {written} of {total} bytes")));
                    }
                }
            }
            // The `.part` already holds the whole file.
            416 if response.header("content-range").is_some_and(|r| r == format!("bytes */{offset}")) => {}
            status => return Err(err(format!("HTTP {status}"))),
        }
        let expected = sha256.map(str::to_ascii_lowercase).or(published);
        if let Some(expected) = &expected {
            let actual = file_sha256(&part).map_err(|e| err(e.to_string()))?;
            if &actual != expected {
                let _ = std::fs::remove_file(&part);
                return Err(err(format!(
                    "SHA-256 {actual}, expected {expected} (the partial file was removed)"
                )));
            }
        }
        std::fs::rename(&part, dest).map_err(|e| err(format!("renaming into {}: {e}", dest.display())))?;
        return Ok(expected);
    }
    Err(err(format!("more than {MAX_REDIRECTS} redirects")))
}

/// Where an unfinished download of `dest` is kept.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_owned();
    name.push(".part");
    dest.with_file_name(name)
}

/// SHA-256 (lowercase hex) of a file.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: BufReader<Box<dyn Stream>>,
}

fn request(url: &Url, offset: u64) -> Result<Response, String> {
    let host = url.host_str().ok_or("no host in URL")?;
    let port = url.port_or_known_default().ok_or("no port for this scheme")?;
    let tcp = TcpStream::connect((host, port)).map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    tcp.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let mut stream: Box<dyn Stream> = match url.scheme() {
        "http" => Box::new(tcp),
        "https" => Box::new(tls(host, tcp)?),
        other => return Err(format!("unsupported scheme {other}")),
    };
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path = format!("{path}?{q}");
    }
    let range = if offset > 0 { format!("Range: bytes={offset}-\r\n") } else { String::new() };
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: img3d/{}\r\nAccept-Encoding: identity\r\n{range}Connection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(head.as_bytes()).map_err(|e| format!("sending the request: {e}"))?;
    let mut body = BufReader::with_capacity(1 << 16, stream);
    let mut raw = Vec::new();
    while !raw.ends_with(b"\r\n\r\n") {
        let n = body.read_until(b'\n', &mut raw).map_err(|e| format!("reading the response: {e}"))?;
        if n == 0 || raw.len() > 64 * 1024 {
            return Err("malformed or truncated response head".into());
        }
    }
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut storage);
    parsed.parse(&raw).map_err(|e| format!("malformed response: {e}"))?;
    let status = parsed.code.ok_or("no status")?;
    let headers = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_owned()))
        .collect();
    Ok(Response { status, headers, body })
}

fn tls(
    host: &str,
    tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    /// A published SHA-256: Hugging Face's `X-Linked-Etag` (or `ETag`) when it is 64 hex digits.
    fn sha256(&self) -> Option<String> {
        ["x-linked-etag", "etag"].iter().find_map(|h| {
            let v = self.header(h)?;
            let v = v.trim_start_matches("W/").trim_matches('"').to_ascii_lowercase();
            (v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then_some(v)
        })
    }

    /// The first byte of a 206 (`Content-Range: bytes START-END/TOTAL`).
    fn range_start(&self) -> Option<u64> {
        let r = self.header("content-range")?;
        r.strip_prefix("bytes ")?.split('-').next()?.parse().ok()
    }

    /// The whole file's size, when the response says.
    fn total(&self, start: u64) -> Option<u64> {
        if self.status == 206 {
            let r = self.header("content-range")?;
            r.rsplit('/').next()?.parse().ok()
        } else {
            self.header("content-length")?.parse::<u64>().ok().map(|n| n + start)
        }
    }

    fn copy_body(
        &mut self,
        file: &mut File,
        start: u64,
        total: Option<u64>,
        progress: Progress<'_>,
    ) -> Result<(), String> {
        if self.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            return Err("chunked transfer encoding is not supported for model files".into());
        }
        let mut done = start;
        let mut buf = vec![0u8; 1 << 16];
        let mut last_report = 0u64;
        progress(done, total);
        loop {
            let n = match self.body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // A dropped connection: what arrived is kept for the next attempt.
                Err(e) => return Err(format!("the connection failed after {done} bytes: {e}")),
            };
            file.write_all(&buf[..n]).map_err(|e| format!("writing: {e}"))?;
            done += n as u64;
            if done - last_report >= 1 << 22 || Some(done) == total {
                progress(done, total);
                last_report = done;
            }
            if Some(done) == total {
                break;
            }
        }
        progress(done, total);
        Ok(())
    }
}
