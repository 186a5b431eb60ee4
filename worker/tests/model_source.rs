//! First use of `--model crm`, end to end: a loopback HTTP server (in this file) serves the
//! tiny official-format checkpoints (`tools/parity/checkpoints.py`) as a `--model-source`
//! mirror; the worker downloads them into the cache, converts them with `tools/convert.py`
//! (the torch venv's Python, as `scripts/setup` installs it), loads the bundle, and reuses it
//! without network afterwards. Broken downloads and conversions leave no bundle and say why.
//! Two preparations at once: one downloads and converts, the other waits on the cache lock and
//! then finds the bundle ready.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};

use img3d_pipeline::fixtures as checkpoints;
use img3d_pipeline::DeviceSpec;
use img3d_testkit::file_server::{self, Reply};
use img3d_worker::converter::Converter;
use img3d_worker::crm::{self, ModelSpec};
use img3d_worker::model_source::{self, downloads_dir, ModelSource};

/// What the mirror serves and what it saw.
#[derive(Default)]
struct Mirror {
    files: HashMap<String, Vec<u8>>,
    /// Close the connection after this many body bytes of the next full response of a file.
    cut: HashMap<String, usize>,
    /// Publish this SHA-256 (`X-Linked-Etag`, as Hugging Face does) for a file.
    etag: HashMap<String, String>,
    /// Every request line and its Range header, in order.
    requests: Vec<String>,
}

struct Server {
    url: String,
    mirror: Arc<Mutex<Mirror>>,
    gate: Arc<Gate>,
}

/// Holds every request back while closed, counting those that arrived.
struct Gate {
    /// Open, and the number of requests that arrived.
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gate {
    fn set(&self, open: bool) {
        self.state.lock().unwrap().0 = open;
        self.changed.notify_all();
    }

    /// A request arrives, and waits until the gate is open.
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.1 += 1;
        self.changed.notify_all();
        drop(self.changed.wait_while(state, |(open, _)| !*open).unwrap());
    }

    /// How many requests arrived.
    fn arrived(&self) -> usize {
        self.state.lock().unwrap().1
    }

    /// Waits until a request has arrived.
    fn wait_for_a_request(&self) {
        let state = self.state.lock().unwrap();
        drop(self.changed.wait_while(state, |(_, arrived)| *arrived == 0).unwrap());
    }
}

/// The mirror of the official files: the checkpoint fixtures and the tiny `u2net.onnx`.
fn serve() -> Server {
    let mut files = HashMap::new();
    files.insert("u2net.onnx".to_owned(), std::fs::read(checkpoints::u2net_onnx()).unwrap());
    for name in checkpoints::FILES {
        files.insert(name.to_owned(), std::fs::read(checkpoints::dir().join(name)).unwrap());
    }
    let mirror = Arc::new(Mutex::new(Mirror { files, ..Mirror::default() }));
    let shared = mirror.clone();
    let gate = Arc::new(Gate { state: Mutex::new((true, 0)), changed: Condvar::new() });
    let gated = gate.clone();
    let url = file_server::serve(move |request| {
        gated.pass();
        let mut m = shared.lock().unwrap();
        m.requests.push(format!("{} {:?}", request.path, request.range));
        let name = request.path.strip_prefix("/mirror/").unwrap_or("").to_owned();
        match m.files.get(&name).cloned() {
            Some(body) => Reply::File {
                body,
                etag: m.etag.get(&name).cloned(),
                cut_after: if request.range.is_none() { m.cut.remove(&name) } else { None },
            },
            None => Reply::NotFound,
        }
    });
    Server { url: format!("{url}/mirror"), mirror, gate }
}

/// The fixtures' layout from `base_url`, converted by this checkout's tools/convert.py.
fn source(base_url: &str) -> ModelSource {
    ModelSource {
        base_url: Some(base_url.to_owned()),
        converter: Converter::default(),
        config: checkpoints::config(),
    }
}

/// A base URL nothing answers on: any download attempt fails.
fn offline() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mirror", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn load(cache: &Path, source: &ModelSource) -> anyhow::Result<()> {
    crm::load_from(cache, &ModelSpec::Crm, source, DeviceSpec::Cpu).map(|_| ())
}

fn bundle_config(cache: &Path) -> std::path::PathBuf {
    crm::crm_bundle_dir(cache).join("config.json")
}

/// Nothing half-made: no bundle, no temporary conversion directory.
fn assert_no_bundle(cache: &Path) {
    assert!(!crm::crm_bundle_dir(cache).exists(), "a bundle was left behind");
    if let Ok(entries) = std::fs::read_dir(cache.join("bundles")) {
        let names: Vec<_> = entries.map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.iter().all(|n| !n.contains("converting")), "{names:?}");
    }
}

fn sha256(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    img3d_worker::download::file_sha256(&p).unwrap()
}

/// First use downloads every file once, converts, and loads strictly; the second reuses the
/// bundle with the network gone; a bundle of another layout is converted again from the kept
/// downloads, still without network.
#[test]
fn first_use_downloads_converts_once_and_reuses() {
    let server = serve();
    let pixel = server.mirror.lock().unwrap().files["pixel-diffusion.pth"].clone();
    server.mirror.lock().unwrap().etag.insert("pixel-diffusion.pth".into(), sha256(&pixel));
    let cache = tempfile::tempdir().unwrap();
    load(cache.path(), &source(&server.url)).unwrap();
    let requests = server.mirror.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 4, "{requests:?}");
    for name in ["u2net.onnx", "pixel-diffusion.pth", "ccm-diffusion.pth", "CRM.pth"] {
        let got = std::fs::read(downloads_dir(cache.path()).join(name)).unwrap();
        assert_eq!(got, server.mirror.lock().unwrap().files[name], "{name}");
    }
    let dir = crm::crm_bundle_dir(cache.path());
    for component in ["u2net", "diffusion_stage1", "diffusion_stage2", "constants", "reconstruction"] {
        assert!(dir.join(format!("{component}.safetensors")).is_file(), "{component} missing");
    }
    let written = std::fs::metadata(bundle_config(cache.path())).unwrap().modified().unwrap();

    load(cache.path(), &source(&offline())).unwrap();
    assert_eq!(std::fs::metadata(bundle_config(cache.path())).unwrap().modified().unwrap(), written);
    assert_eq!(server.mirror.lock().unwrap().requests.len(), 4);

    // Converted by another build (an older layout: no `stages.reconstruction`): converted
    // again, from the downloads.
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(bundle_config(cache.path())).unwrap()).unwrap()
    };
    let mut older = read();
    older["stages"].as_object_mut().unwrap().remove("reconstruction");
    std::fs::write(bundle_config(cache.path()), older.to_string()).unwrap();
    load(cache.path(), &source(&offline())).unwrap();
    assert_eq!(read(), serde_json::to_value(checkpoints::config()).unwrap());
    assert_eq!(server.mirror.lock().unwrap().requests.len(), 4);
}

/// A transfer cut mid-file fails the start with the file's name and leaves no bundle; the
/// next start resumes the file with Range and completes.
#[test]
fn an_interrupted_download_resumes_on_the_next_start() {
    let server = serve();
    server.mirror.lock().unwrap().cut.insert("ccm-diffusion.pth".into(), 1_000_000);
    let cache = tempfile::tempdir().unwrap();
    let err = format!("{:#}", load(cache.path(), &source(&server.url)).unwrap_err());
    assert!(err.contains("downloading ccm-diffusion.pth"), "{err}");
    assert!(err.contains("after 1000000 of"), "{err}");
    assert_no_bundle(cache.path());

    load(cache.path(), &source(&server.url)).unwrap();
    let requests = server.mirror.lock().unwrap().requests.clone();
    assert!(requests.contains(&"/mirror/ccm-diffusion.pth Some(1000000)".to_owned()), "{requests:?}");
    assert!(bundle_config(cache.path()).is_file());
}

/// A download whose checksum does not match fails and is removed; a file the converter
/// rejects fails with the converter's reason, leaves no bundle, and (no checksum vouching for
/// it) is deleted so the next start fetches it again.
#[test]
fn bad_files_fail_plainly_and_leave_no_bundle() {
    let server = serve();
    server.mirror.lock().unwrap().etag.insert("CRM.pth".into(), "0".repeat(64));
    let cache = tempfile::tempdir().unwrap();
    let err = format!("{:#}", load(cache.path(), &source(&server.url)).unwrap_err());
    assert!(err.contains("downloading CRM.pth") && err.contains("SHA-256"), "{err}");
    assert!(!downloads_dir(cache.path()).join("CRM.pth").exists());
    assert_no_bundle(cache.path());

    let mut mirror = server.mirror.lock().unwrap();
    mirror.etag.clear();
    mirror.files.insert("pixel-diffusion.pth".into(), b"not a checkpoint at all".to_vec());
    drop(mirror);
    let cache = tempfile::tempdir().unwrap();
    let err = format!("{:#}", load(cache.path(), &source(&server.url)).unwrap_err());
    assert!(err.contains("converting the official CRM checkpoints"), "{err}");
    assert!(err.contains("convert.py failed"), "{err}");
    assert!(err.contains("pixel-diffusion.pth"), "{err}");
    assert_no_bundle(cache.path());
    assert!(!downloads_dir(cache.path()).join("pixel-diffusion.pth").exists());

    let good = std::fs::read(checkpoints::dir().join("pixel-diffusion.pth")).unwrap();
    server.mirror.lock().unwrap().files.insert("pixel-diffusion.pth".into(), good);
    load(cache.path(), &source(&server.url)).unwrap();
}

/// The binary: `--model crm` with IMG3D_MODEL_SOURCE pointing at a mirror without the files
/// exits 1 naming the file and the HTTP status, and leaves no bundle.
#[test]
fn the_worker_binary_takes_the_source_from_the_environment() {
    let server = serve();
    server.mirror.lock().unwrap().files.clear();
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("in.png");
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 10])).save(&image).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_img3d-worker"))
        .args(["run", image.to_str().unwrap(), "--model", "crm", "--device", "cpu", "--out"])
        .arg(work.path().join("out"))
        .env("IMG3D_CACHE_DIR", cache.path())
        .env("IMG3D_MODEL_SOURCE", &server.url)
        .env_remove("IMG3D_MODEL")
        .env_remove("IMG3D_DEVICE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("downloading u2net.onnx") && err.contains("HTTP 404"), "{err}");
    assert!(err.contains(&format!("{}/u2net.onnx", server.url)), "{err}");
    assert_no_bundle(cache.path());
}

/// A log written to memory, for one thread's subscriber.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Two preparations of one cache at once (two threads, so two opens of the lock file, which
/// `flock` treats as two holders): the first downloads and converts while the second logs that
/// it waits for another process's download, then finds the bundle ready and fetches nothing.
#[test]
fn a_second_preparation_waits_for_the_first_and_finds_the_bundle() {
    let server = serve();
    let cache = tempfile::tempdir().unwrap();
    let bundle = crm::crm_bundle_dir(cache.path());
    let mirror = source(&server.url);
    server.gate.set(false);

    // The first holds the lock, stuck on its first download until the gate opens.
    let first = {
        let (cache, bundle, source) = (cache.path().to_owned(), bundle.clone(), mirror.clone());
        std::thread::spawn(move || model_source::ensure(&cache, &bundle, &source))
    };
    server.gate.wait_for_a_request();
    let log = Log::default();
    let second = {
        let (cache, bundle, source, log) = (cache.path().to_owned(), bundle.clone(), mirror, log.clone());
        std::thread::spawn(move || {
            let subscriber =
                tracing_subscriber::fmt().with_writer(move || log.clone()).with_ansi(false).finish();
            tracing::subscriber::with_default(subscriber, || model_source::ensure(&cache, &bundle, &source))
        })
    };
    // Only once the second is waiting does the first get its files.
    while !log.text().contains("waiting for another process's download") {
        assert!(!second.is_finished(), "the second did not wait: {}", log.text());
        assert_eq!(server.gate.arrived(), 1, "the second went to the mirror: {}", log.text());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    server.gate.set(true);

    assert_eq!(first.join().unwrap().unwrap(), bundle);
    assert_eq!(second.join().unwrap().unwrap(), bundle);
    assert_eq!(server.mirror.lock().unwrap().requests.len(), 4, "one set of downloads");
    let text = log.text();
    assert!(text.contains("the other process is done with the CRM bundle"), "{text}");
    assert!(!text.contains("downloading") && !text.contains("converting"), "{text}");
    load(cache.path(), &source(&offline())).unwrap();
}
