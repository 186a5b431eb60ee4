//! Model downloads against a real HTTP server on loopback (a small one in this file): redirects,
//! a connection cut mid-file and resumed with `Range`, published and given checksums, errors.

#[path = "common/file_server.rs"]
mod file_server;

use std::sync::{Arc, Mutex};

use file_server::Reply;
use img3d_pipeline::download::{self, part_path};

/// What the server does, and what it saw.
#[derive(Default)]
struct Behaviour {
    /// Close the connection after this many body bytes of the next full (non-range) response.
    cut_after: Option<usize>,
    /// Publish this as `X-Linked-Etag` (as Hugging Face does for LFS files).
    etag: Option<String>,
    /// `Range` headers received.
    ranges: Vec<String>,
}

struct Server {
    url: String,
    state: Arc<Mutex<Behaviour>>,
}

fn file() -> Vec<u8> {
    (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// `/redirect` -> `/files/model.bin` (the file), anything else 404.
fn serve() -> Server {
    let state = Arc::new(Mutex::new(Behaviour::default()));
    let shared = state.clone();
    let url = file_server::serve(move |request| {
        let mut state = shared.lock().unwrap();
        state.ranges.extend(request.range_header.clone());
        match request.path.as_str() {
            "/redirect" => Reply::Redirect("/files/model.bin".into()),
            "/files/model.bin" => Reply::File {
                body: file(),
                etag: state.etag.clone(),
                cut_after: if request.range.is_none() { state.cut_after.take() } else { None },
            },
            _ => Reply::NotFound,
        }
    });
    Server { url, state }
}

fn sha(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    download::file_sha256(&p).unwrap()
}

/// A redirect is followed, the file arrives whole, the published checksum is checked and
/// returned, and progress reaches the total.
#[test]
fn follows_redirects_and_checks_the_published_sha256() {
    let server = serve();
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
    let server = serve();
    server.state.lock().unwrap().cut_after = Some(100_000);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let url = format!("{}/files/model.bin", server.url);
    let err = download::fetch(&url, &dest, None, &mut |_, _| {}).unwrap_err();
    assert!(err.reason.contains("100000 of 300000"), "{err}");
    assert_eq!(std::fs::metadata(part_path(&dest)).unwrap().len(), 100_000);
    assert!(!dest.exists());

    let expected = sha(&file());
    let digest = download::fetch(&url, &dest, Some(&expected), &mut |_, _| {}).unwrap();
    assert_eq!(digest.as_deref(), Some(expected.as_str()));
    assert_eq!(std::fs::read(&dest).unwrap(), file());
    assert_eq!(server.state.lock().unwrap().ranges, ["Range: bytes=100000-"]);
}

/// A `.part` that already holds everything (the server answers 416) is checked and kept.
#[test]
fn a_complete_part_file_is_finished_without_downloading() {
    let server = serve();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    std::fs::write(part_path(&dest), file()).unwrap();
    let expected = sha(&file());
    download::fetch(&format!("{}/files/model.bin", server.url), &dest, Some(&expected), &mut |_, _| {})
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), file());
}

/// A wrong checksum fails and removes the file; a missing file is an HTTP error.
#[test]
fn checksum_mismatch_and_http_errors_fail() {
    let server = serve();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.bin");
    let wrong = "0".repeat(64);
    let err =
        download::fetch(&format!("{}/files/model.bin", server.url), &dest, Some(&wrong), &mut |_, _| {})
            .unwrap_err();
    assert!(err.reason.contains("SHA-256"), "{err}");
    assert!(!dest.exists() && !part_path(&dest).exists());

    let err = download::fetch(&format!("{}/nothing", server.url), &dest, None, &mut |_, _| {}).unwrap_err();
    assert!(err.reason.contains("HTTP 404"), "{err}");
}
