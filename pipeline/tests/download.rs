//! Model downloads against a real HTTP server on loopback (a small one in this file): redirects,
//! a connection cut mid-file and resumed with `Range`, published and given checksums, errors.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

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

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(Behaviour::default()));
    let shared = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let state = shared.clone();
            std::thread::spawn(move || handle(stream, &state));
        }
    });
    Server { url, state }
}

fn handle(mut stream: TcpStream, state: &Mutex<Behaviour>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    let mut range = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = Some(v.trim().trim_end_matches('-').parse::<usize>().unwrap());
            state.lock().unwrap().ranges.push(line.trim().to_owned());
        }
    }
    let body = file();
    let etag =
        state.lock().unwrap().etag.clone().map(|e| format!("X-Linked-Etag: \"{e}\"\r\n")).unwrap_or_default();
    let head = match path.as_str() {
        "/redirect" => "HTTP/1.1 302 Found\r\nLocation: /files/model.bin\r\nContent-Length: 0\r\n\r\n".to_owned(),
        "/files/model.bin" => match range {
            Some(start) if start >= body.len() => {
                format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\n\r\n", body.len())
            }
            Some(start) => format!(
                "HTTP/1.1 206 Partial Content\r\n{etag}Content-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\n\r\n",
                body.len() - 1,
                body.len(),
                body.len() - start
            ),
            None => format!("HTTP/1.1 200 OK\r\n{etag}Content-Length: {}\r\n\r\n", body.len()),
        },
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
    };
    let _ = stream.write_all(head.as_bytes());
    if path == "/files/model.bin" {
        let start = range.unwrap_or(0).min(body.len());
        let mut end = body.len();
        if range.is_none() {
            if let Some(cut) = state.lock().unwrap().cut_after.take() {
                end = cut;
            }
        }
        let _ = stream.write_all(&body[start..end]);
    }
    let _ = stream.flush();
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
