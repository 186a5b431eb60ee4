//! Downloading model files with `ureq` (blocking, rustls): redirects followed one by one (so a
//! SHA-256 published on a redirect is seen), resumable through `Range`, progress reports, and
//! a SHA-256 check where the server publishes one (Hugging Face sends an LFS file's SHA-256 as
//! `X-Linked-Etag`) or the caller knows it.
//!
//! A download goes to `<dest>.part` and is renamed to `dest` only once complete and checked,
//! so an interrupted run leaves a `.part` that the next run continues from where it stopped.
//! It runs once per cache, before the model loads, on a thread of its own. Proxies come from
//! `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` and `NO_PROXY`, as ureq reads them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use ureq::http::{HeaderMap, StatusCode};
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use url::Url;

/// Why a download failed. Every variant names the URL asked for; the cause, where there is
/// one, is the error's source.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The URL (or a redirect's `Location`) does not parse.
    #[error("{url}: not a valid URL")]
    BadUrl {
        /// The URL asked for.
        url: String,
        /// Why it does not parse.
        #[source]
        source: url::ParseError,
    },
    /// The request failed before a response arrived: DNS, connection, HTTP protocol.
    #[error("{url}: the request failed")]
    Request {
        /// The URL asked for.
        url: String,
        /// What ureq reported.
        #[source]
        source: ureq::Error,
    },
    /// The TLS handshake failed: usually a certificate this machine does not trust.
    #[error(
        "{url}: TLS failed (is the server's certificate signed by a CA this machine trusts? \
         SSL_CERT_FILE or SSL_CERT_DIR can add one)"
    )]
    Tls {
        /// The URL asked for.
        url: String,
        /// What rustls reported.
        #[source]
        source: ureq::Error,
    },
    /// The server answered with a status that is not the file.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL asked for.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A redirect without a usable `Location`, or too many redirects.
    #[error("{url}: {reason}")]
    Redirect {
        /// The URL asked for.
        url: String,
        /// What was wrong with the redirects.
        reason: String,
    },
    /// A `Range` request answered with another range.
    #[error("{url}: asked for the bytes from {offset}, got Content-Range {content_range:?}")]
    BadRange {
        /// The URL asked for.
        url: String,
        /// The first byte asked for.
        offset: u64,
        /// What the server sent instead.
        content_range: Option<String>,
    },
    /// The connection ended or failed before the whole file arrived; what arrived is kept in
    /// the `.part` file for the next attempt.
    #[error("{url}: the connection ended after {done} of {} bytes (kept, to resume)", total_text(*.total))]
    Interrupted {
        /// The URL asked for.
        url: String,
        /// Bytes of the file on disk.
        done: u64,
        /// The file's size, when the server said.
        total: Option<u64>,
        /// The read error, if it was one (not a clean end of the stream).
        #[source]
        source: Option<std::io::Error>,
    },
    /// The file arrived but its SHA-256 is not the expected one; the file was removed.
    #[error("{url}: SHA-256 {actual}, expected {expected} (the partial file was removed)")]
    Checksum {
        /// The URL asked for.
        url: String,
        /// The digest of what arrived.
        actual: String,
        /// The digest given or published.
        expected: String,
    },
    /// Reading or writing a local file failed.
    #[error("{url}: {action} {}", path.display())]
    File {
        /// The URL asked for.
        url: String,
        /// What was being done (`creating`, `writing`, ...).
        action: &'static str,
        /// The local file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn total_text(total: Option<u64>) -> String {
    total.map_or_else(|| "an unknown number of".to_owned(), |t| t.to_string())
}

/// Progress of one file: bytes on disk so far and the total, when known.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

const MAX_REDIRECTS: usize = 10;
/// Connecting, and each wait for data: a stalled mirror fails the start instead of hanging it.
/// Not a bound on the whole transfer, which is several GB.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Progress is reported at most every this many bytes (and at the end).
const REPORT_EVERY: u64 = 4 << 20;

/// An HTTP(S) client for model files.
#[derive(Debug, Clone)]
pub struct Downloader {
    agent: ureq::Agent,
}

impl Default for Downloader {
    fn default() -> Self {
        Self::new()
    }
}

impl Downloader {
    /// Trusting the system's root certificates (`SSL_CERT_FILE` and `SSL_CERT_DIR` are
    /// honoured), or Mozilla's bundled roots when the system has none (a slim container).
    pub fn new() -> Self {
        let found = rustls_native_certs::load_native_certs();
        let roots: Vec<Certificate<'static>> =
            found.certs.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect();
        let roots = if roots.is_empty() {
            tracing::warn!(
                errors = ?found.errors,
                "no system root certificates found: trusting Mozilla's bundled roots for downloads"
            );
            RootCerts::WebPki
        } else {
            RootCerts::from(roots)
        };
        Self::with_roots(roots)
    }

    /// Trusting only the CA certificates in `pem` (e.g. a mirror with a private CA).
    pub fn with_root_pem(pem: &[u8]) -> Result<Self, ureq::Error> {
        let roots = ureq::tls::parse_pem(pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::with_roots(RootCerts::from(roots)))
    }

    fn with_roots(roots: RootCerts) -> Self {
        let agent = ureq::Agent::config_builder()
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            // Redirects one by one: Hugging Face publishes the SHA-256 on its redirect.
            .max_redirects(0)
            // 404, 416 and the like are answers to look at, not transport errors.
            .http_status_as_error(false)
            .user_agent(format!("img3d/{}", env!("CARGO_PKG_VERSION")))
            // The bytes as stored: a range counts them.
            .accept_encoding("identity")
            .timeout_connect(Some(TIMEOUT))
            .timeout_recv_response(Some(TIMEOUT))
            .timeout_per_read(Some(TIMEOUT))
            .build()
            .new_agent();
        Downloader { agent }
    }

    /// Downloads `url` to `dest` (resuming `<dest>.part` if there is one) and checks its
    /// SHA-256 against `sha256` or, failing that, the one the server publishes. Returns the
    /// checked digest (hex), or `None` when nobody published one.
    pub fn fetch(
        &self,
        url: &str,
        dest: &Path,
        sha256: Option<&str>,
        progress: Progress<'_>,
    ) -> Result<Option<String>, DownloadError> {
        let file_err = |action, path: &Path| {
            let url = url.to_owned();
            let path = path.to_owned();
            move |source| DownloadError::File { url, action, path, source }
        };
        let part = part_path(dest);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(file_err("creating", dir))?;
        }
        let mut current =
            Url::parse(url).map_err(|source| DownloadError::BadUrl { url: url.to_owned(), source })?;
        let mut published: Option<String> = None;
        for _ in 0..=MAX_REDIRECTS {
            let offset = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
            let response = self.get(url, &current, offset)?;
            published = published.or_else(|| published_sha256(response.headers()));
            let status = response.status();
            let content_range = header(response.headers(), "content-range");
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = header(response.headers(), "location");
                current = location.as_deref().and_then(|l| current.join(l).ok()).ok_or_else(|| {
                    DownloadError::Redirect {
                        url: url.to_owned(),
                        reason: format!("HTTP {} with an unusable Location {location:?}", status.as_u16()),
                    }
                })?;
                continue;
            }
            match status {
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                    let append = status == StatusCode::PARTIAL_CONTENT;
                    if append && range_start(content_range.as_deref()) != Some(offset) {
                        return Err(DownloadError::BadRange { url: url.to_owned(), offset, content_range });
                    }
                    let start = if append { offset } else { 0 };
                    let total = if append {
                        content_range.as_deref().and_then(range_total)
                    } else {
                        response.body().content_length()
                    };
                    let mut file = OpenOptions::new()
                        .create(true)
                        .write(true)
                        .append(append)
                        .truncate(!append)
                        .open(&part)
                        .map_err(file_err("opening", &part))?;
                    let body = response.into_body().into_reader();
                    copy_body(url, body, &mut file, &part, start, total, progress)?;
                }
                // The `.part` already holds the whole file.
                StatusCode::RANGE_NOT_SATISFIABLE
                    if offset > 0 && content_range.as_deref() == Some(&format!("bytes */{offset}")) => {}
                status => return Err(DownloadError::Status { url: url.to_owned(), status: status.as_u16() }),
            }
            let expected = sha256.map(str::to_ascii_lowercase).or(published);
            if let Some(expected) = &expected {
                let actual = file_sha256(&part).map_err(file_err("reading", &part))?;
                if &actual != expected {
                    let _ = std::fs::remove_file(&part);
                    return Err(DownloadError::Checksum {
                        url: url.to_owned(),
                        actual,
                        expected: expected.clone(),
                    });
                }
            }
            std::fs::rename(&part, dest).map_err(file_err("renaming into", dest))?;
            return Ok(expected);
        }
        Err(DownloadError::Redirect {
            url: url.to_owned(),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// One GET of `current` (reached from `url`), from byte `offset` on.
    fn get(
        &self,
        url: &str,
        current: &Url,
        offset: u64,
    ) -> Result<ureq::http::Response<ureq::Body>, DownloadError> {
        let mut request = self.agent.get(current.as_str());
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        request.call().map_err(|source| {
            let url = url.to_owned();
            if is_tls(&source) {
                DownloadError::Tls { url, source }
            } else {
                DownloadError::Request { url, source }
            }
        })
    }
}

/// Downloads `url` to `dest` with a [`Downloader::new`]; see [`Downloader::fetch`].
pub fn fetch(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    progress: Progress<'_>,
) -> Result<Option<String>, DownloadError> {
    Downloader::new().fetch(url, dest, sha256, progress)
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

/// Whether a request failed in TLS (rustls reports handshake failures through an I/O error).
fn is_tls(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => true,
        ureq::Error::Io(e) => e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned())
}

/// A published SHA-256: Hugging Face's `X-Linked-Etag` (or `ETag`) when it is 64 hex digits.
fn published_sha256(headers: &HeaderMap) -> Option<String> {
    ["x-linked-etag", "etag"].iter().find_map(|name| {
        let v = header(headers, name)?;
        let v = v.trim_start_matches("W/").trim_matches('"').to_ascii_lowercase();
        (v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then_some(v)
    })
}

/// The first byte of a 206 (`Content-Range: bytes START-END/TOTAL`).
fn range_start(content_range: Option<&str>) -> Option<u64> {
    content_range?.strip_prefix("bytes ")?.split('-').next()?.parse().ok()
}

/// The whole file's size from a 206's `Content-Range`.
fn range_total(content_range: &str) -> Option<u64> {
    content_range.rsplit('/').next()?.parse().ok()
}

/// Appends the body to `file` (at `start`), reporting progress; fails, keeping what arrived,
/// when the connection ends before `total`.
fn copy_body(
    url: &str,
    mut body: impl Read,
    file: &mut File,
    part: &Path,
    start: u64,
    total: Option<u64>,
    progress: Progress<'_>,
) -> Result<(), DownloadError> {
    let interrupted = |done, source| DownloadError::Interrupted { url: url.to_owned(), done, total, source };
    let write_err = |source| DownloadError::File {
        url: url.to_owned(),
        action: "writing",
        path: part.to_owned(),
        source,
    };
    let mut done = start;
    let mut buf = vec![0u8; 1 << 16];
    let mut last_report = done;
    progress(done, total);
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                file.sync_all().map_err(write_err)?;
                progress(done, total);
                return Err(interrupted(done, Some(e)));
            }
        };
        file.write_all(&buf[..n]).map_err(write_err)?;
        done += n as u64;
        if done - last_report >= REPORT_EVERY {
            progress(done, total);
            last_report = done;
        }
    }
    file.sync_all().map_err(write_err)?;
    progress(done, total);
    match total {
        Some(total) if done != total => Err(interrupted(done, None)),
        _ => Ok(()),
    }
}
