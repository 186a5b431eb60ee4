//! The real CRM pipeline in the worker: `--model tiny|DIR`, the tiny bundle's cache, failure
//! codes, and a whole job (every stage, random weights) through the standalone server.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use img3d_gateway::GatewayConfig;
use img3d_pipeline::DeviceSpec;
use img3d_protocol::{FailureCode, JobOptions, PartName, ProgressStage};
use img3d_queue::Failure;
use img3d_worker::crm::{self, ModelSpec};
use img3d_worker::JobSink;

fn worker(cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_img3d-worker"))
        .args(args)
        .env("IMG3D_CACHE_DIR", cache)
        .env_remove("IMG3D_MODEL")
        .env_remove("IMG3D_DEVICE")
        .output()
        .unwrap()
}

/// A sink recording what a run sends.
#[derive(Default)]
struct Recorder {
    progress: Vec<(ProgressStage, u32, u32)>,
    parts: Vec<PartName>,
    cancel: bool,
}

impl JobSink for Recorder {
    fn is_cancelled(&self) -> bool {
        self.cancel
    }

    fn progress(&mut self, stage: ProgressStage, step: u32, total: u32) {
        self.progress.push((stage, step, total));
    }

    fn part(&mut self, name: PartName, _bytes: Vec<u8>) -> Result<(), Failure> {
        self.parts.push(name);
        Ok(())
    }
}

/// `run IMAGE --model tiny`: generates the tiny bundle in the cache on first use (saying its
/// weights are random), then writes the three parts. A second run reuses the bundle.
#[test]
fn run_with_the_tiny_model() {
    let cache = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("in.png");
    std::fs::write(&image, png(96, 64, 5)).unwrap();
    let out_dir = work.path().join("out");
    let args = [
        "run",
        image.to_str().unwrap(),
        "--model",
        "tiny",
        "--device",
        "cpu",
        "--out",
        out_dir.to_str().unwrap(),
    ];

    let out = worker(cache.path(), &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RANDOM weights"), "{err}");
    assert!(out.status.success(), "{err}");
    for part in ["pixel_images.png", "xyz_images.png", "output3d.zip"] {
        assert!(out_dir.join(part).is_file(), "{part} missing; {err}");
    }

    // Exactly one bundle, no temporary directory left behind; reused on the second run.
    let bundles: Vec<_> = std::fs::read_dir(cache.path().join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    assert!(bundles[0].starts_with("tiny-"), "{bundles:?}");
    let config = cache.path().join("bundles").join(&bundles[0]).join("config.json");
    let written = std::fs::metadata(&config).unwrap().modified().unwrap();
    let again = worker(cache.path(), &args);
    assert_eq!(again.status.code(), out.status.code());
    assert_eq!(std::fs::metadata(&config).unwrap().modified().unwrap(), written, "bundle regenerated");
}

/// Bytes that are no image: `invalid_image`, before any stage is needed.
#[test]
fn garbage_is_an_invalid_image() {
    let cache = tempfile::tempdir().unwrap();
    let pipeline = crm::load_in(cache.path(), &ModelSpec::Tiny, DeviceSpec::Cpu).unwrap();
    assert!(pipeline.describe().contains("RANDOM weights"), "{}", pipeline.describe());
    let mut sink = Recorder::default();
    let failure = pipeline.run(b"definitely not an image", &JobOptions::default(), &mut sink).unwrap_err();
    assert_eq!(failure.code, FailureCode::InvalidImage, "{failure}");
    assert!(sink.parts.is_empty());
}

/// Progress is forwarded with the protocol's stage names and every part reaches the sink; a
/// cancelled job is `cancelled` before any work.
#[test]
fn adapter_forwards_progress_and_maps_failures() {
    let cache = tempfile::tempdir().unwrap();
    let pipeline = crm::load_in(cache.path(), &ModelSpec::Tiny, DeviceSpec::Cpu).unwrap();
    let mut sink = Recorder::default();
    let result = pipeline.run(&png(80, 80, 9), &JobOptions::default(), &mut sink);
    assert_eq!(sink.progress.first(), Some(&(ProgressStage::Preprocess, 0, 1)));
    assert!(sink.progress.contains(&(ProgressStage::Preprocess, 1, 1)), "{:?}", sink.progress);
    result.unwrap();
    assert_eq!(sink.parts, [PartName::PixelImages, PartName::XyzImages, PartName::Output3d]);

    let mut cancelled = Recorder { cancel: true, ..Recorder::default() };
    let failure = pipeline.run(&png(80, 80, 9), &JobOptions::default(), &mut cancelled).unwrap_err();
    assert_eq!(failure.code, FailureCode::Cancelled);
    assert!(cancelled.parts.is_empty() && cancelled.progress.is_empty());
}

/// `--model DIR` without a bundle there: a plain error naming the missing config.
#[test]
fn a_directory_without_a_bundle_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let model = ModelSpec::Dir(empty.path().to_owned());
    let err = format!("{:#}", crm::load_in(cache.path(), &model, DeviceSpec::Cpu).err().unwrap());
    assert!(err.contains("config.json"), "{err}");
}

/// The tiny model behind the standalone server: `/readyz` says the weights are random, and an
/// image gets the pipeline's real answer over the WebSocket.
#[tokio::test]
async fn standalone_with_the_tiny_model() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().to_owned();
    let load = Box::new(move || crm::load_in(&dir, &ModelSpec::Tiny, DeviceSpec::Cpu));
    let server = start_loading(GatewayConfig::default(), load).await;
    let ready_body = ready(server.addr).await;
    assert!(ready_body.contains("RANDOM weights"), "{ready_body}");

    let mut ws = connect(server.addr, "").await;
    send_binary(&mut ws, png(64, 64, 3)).await;
    expect_success(&mut ws).await;

    send_binary(&mut ws, b"definitely not an image".to_vec()).await;
    let (code, _) = expect_failed(&mut ws).await;
    assert_eq!(code, "invalid_image");
    server.shutdown.begin(std::time::Duration::from_secs(1));
}
