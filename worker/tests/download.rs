//! Model downloads against a real HTTP(S) server on loopback (`img3d_testkit::file_server`):
//! redirects, a connection cut mid-file and resumed with `Range`, published and given
//! checksums, TLS with a trusted and an untrusted CA, errors.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use img3d_testkit::file_server::{self, Reply};
use img3d_testkit::tls::TestCa;
use img3d_worker::download::{self, part_path, DownloadError, Downloader};

/// What the server does, and what it saw.
#[derive(Default)]
struct Behaviour {
    /// Close the connection after this many body bytes of the next full (non-range) response.
    cut_after: Option<usize>,
    /// Publish this as `X-Linked-Etag` (as Hugging Face does for LFS files).
    etag: Option<String>,
    /// The starts of the `Range: bytes=N-` headers received.
    ranges: Vec<usize>,
}

struct Server {
    url: String,
    state: Arc<Mutex<Behaviour>>,
}

fn file() -> Vec<u8> {
    (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// `/redirect` -> `/files/model.bin` (the file), anything else 404; over TLS with `ca`'s
/// certificate when given.
fn serve(ca: Option<&TestCa>) -> Server {
    let state = Arc::new(Mutex::new(Behaviour::default()));
    let shared = state.clone();
    let route = move |request: &file_server::Request| {
        let mut state = shared.lock().unwrap();
        state.ranges.extend(request.range);
        match request.path.as_str() {
            "/redirect" => Reply::Redirect("/files/model.bin".into()),
            "/files/model.bin" => Reply::File {
                body: file(),
                etag: state.etag.clone(),
                cut_after: if request.range.is_none() { state.cut_after.take() } else { None },
            },
            _ => Reply::NotFound,
        }
    };
    let url = match ca {
        Some(ca) => file_server::serve_tls(ca.server_config(), route),
        None => file_server::serve(route),
    };
    Server { url, state }
}

fn sha(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    download::file_sha256(&p).unwrap()
}

/// The error and its causes, as the worker prints them.
fn chain(err: DownloadError) -> String {
    format!("{:#}", anyhow::Error::new(err))
}

/// A redirect is followed, the file arrives whole, the published checksum is checked and
/// returned, and progress reaches the total.
#[test]
fn follows_redirects_and_checks_the_published_sha256() {
    let server = serve(None);
    server.state.lock().unwrap().etag = Some(sha(&file()));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("sub/model.bin");
    let mut reports = Vec::new();
    let digest =
        download::fetch(&format!("{}/redirect", server.url), &dest, None, &mut |d, t| reports.push((d, t)))
            .unwrap();
    assert_eq!(digest, Some(sha(&file())));
    assert_eq!(std::fs::read(&dest).unwrap(), file());
    assert!(!part_path(&dest).exists());
    let total = file().len() as u64;
    assert_eq!(reports.last(), Some(&(total, Some(total))));
}

/// A connection cut mid-file fails the first attempt and keeps what arrived; the next one asks
/// for the rest with `Range` and completes the same bytes.
#[test]
fn an_interrupted_download_resumes() {
    let server = serve(None);
    server.state.lock().unwrap().cut_after = Some(100_000);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let url = format!("{}/files/model.bin", server.url);
    let err = download::fetch(&url, &dest, None, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Interrupted { done: 100_000, total: Some(300_000), .. }), "{err:?}");
    assert!(err.to_string().contains("after 100000 of 300000 bytes"), "{err}");
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 100_000);
    assert!(!dest.exists());

    let expected = sha(&file());
    let digest = download::fetch(&url, &dest, Some(&expected), &mut |_, _| {}).unwrap();
    assert_eq!(digest.as_deref(), Some(expected.as_str()));
    assert_eq!(std::fs::read(&dest).unwrap(), file());
    assert_eq!(server.state.lock().unwrap().ranges, [100_000]);
}

/// A `.part` that already holds everything (the server answers 416) is checked and kept.
#[test]
fn a_complete_part_file_is_finished_without_downloading() {
    let server = serve(None);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    std::fs::write(part_path(&dest), file()).unwrap();
    let expected = sha(&file());
    download::fetch(&format!("{}/files/model.bin", server.url), &dest, Some(&expected), &mut |_, _| {})
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), file());
}

/// A wrong checksum fails and removes the file; a missing file is an HTTP error; a server that
/// is not there is a request error naming the URL.
#[test]
fn checksum_mismatch_and_http_errors_fail() {
    let server = serve(None);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let wrong = "0".repeat(64);
    let err =
        download::fetch(&format!("{}/files/model.bin", server.url), &dest, Some(&wrong), &mut |_, _| {})
            .unwrap_err();
    assert!(matches!(err, DownloadError::Checksum { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("expected {wrong}")), "{err}");
    assert!(!dest.exists() && !part_path(&dest).exists());

    let url = format!("{}/nothing", server.url);
    let err = download::fetch(&url, &dest, None, &mut |_, _| {}).unwrap_err();
    assert_eq!(err.to_string(), format!("{url}: HTTP 404"));

    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/model.bin", closed.local_addr().unwrap());
    drop(closed);
    let err = download::fetch(&url, &dest, None, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Request { .. }), "{err:?}");
    let text = chain(err);
    assert!(text.contains(&url) && text.contains("refused"), "{text}");
    assert!(!dest.exists() && !part_path(&dest).exists());
}

/// Over HTTPS with a trusted CA: a redirect, a cut, and the resumed rest arrive as over HTTP.
#[test]
fn https_redirects_and_resumes() {
    let ca = TestCa::new();
    let server = serve(Some(&ca));
    assert!(server.url.starts_with("https://"));
    server.state.lock().unwrap().cut_after = Some(123_456);
    let client = Downloader::with_root_pem(&std::fs::read(ca.ca_pem()).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let url = format!("{}/redirect", server.url);
    let err = client.fetch(&url, &dest, None, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Interrupted { done: 123_456, .. }), "{err:?}");

    let expected = sha(&file());
    let digest = client.fetch(&url, &dest, Some(&expected), &mut |_, _| {}).unwrap();
    assert_eq!(digest.as_deref(), Some(expected.as_str()));
    assert_eq!(std::fs::read(&dest).unwrap(), file());
    assert_eq!(server.state.lock().unwrap().ranges, [123_456; 2], "the redirect, then the file");
}

/// A server whose certificate no trusted CA signed fails with a TLS error that says how to
/// trust one, and nothing is written.
#[test]
fn an_untrusted_certificate_fails_plainly() {
    let ca = TestCa::new();
    let server = serve(Some(&ca));
    let other = TestCa::new();
    let client = Downloader::with_root_pem(&std::fs::read(other.ca_pem()).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let url = format!("{}/files/model.bin", server.url);
    let err = client.fetch(&url, &dest, None, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, DownloadError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("SSL_CERT_FILE"), "{err}");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.to_lowercase().contains("certificate"), "{cause}");
    assert!(!dest.exists() && !part_path(&dest).exists());
    assert!(server.state.lock().unwrap().ranges.is_empty());
}

/// The binary trusts the system's roots, where `SSL_CERT_FILE` adds a CA: with the server's CA
/// there, `prepare-model` reaches the mirror over HTTPS (and reports its 404); with another
/// CA, it fails with the TLS error and its hint.
#[test]
fn the_worker_binary_trusts_ssl_cert_file() {
    let ca = TestCa::new();
    let server = serve(Some(&ca));
    let other = TestCa::new();
    let work = tempfile::tempdir().unwrap();
    let stand_in = work.path().join("convert.py");
    std::fs::write(&stand_in, "").unwrap();
    let run = |trusted: &Path| {
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_img3d-worker"))
            .arg("prepare-model")
            .env("IMG3D_CACHE_DIR", cache.path())
            .env("IMG3D_MODEL_SOURCE", format!("{}/mirror", server.url))
            // Found, never run: every download fails first.
            .env("IMG3D_PYTHON", "/bin/sh")
            .env("IMG3D_CONVERTER", &stand_in)
            .env("SSL_CERT_FILE", trusted)
            .env_remove("SSL_CERT_DIR")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&ca.ca_pem());
    assert!(err.contains(&format!("{}/mirror/u2net.onnx: HTTP 404", server.url)), "{err}");
    let err = run(&other.ca_pem());
    assert!(err.contains("TLS failed") && err.contains("SSL_CERT_FILE"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}
