//! `tools/convert.py` round trips: official-format inputs in, a bundle out that this crate
//! loads strictly and that computes what the inputs compute.
//!
//! The inputs are fixtures in the official formats at tiny width: rembg-style `u2net.onnx`
//! files exported with `torch.onnx.export` from upstream U-2-Net (`tools/parity/preprocess.py`:
//! one keeping the state-dict names and batch norms, one constant-folded with anonymous names).
//! The converter runs with the project's torch venv (`$IMG3D_TORCH_VENV`, as `scripts/setup`
//! creates it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use img3d_pipeline::bundle::{self, Bundle, U2NET};
use img3d_pipeline::config::U2netConfig;
use img3d_pipeline::u2net::U2net;
use img3d_pipeline::{preprocess, BundleConfig, Pipeline};

/// The torch venv's Python (as env.sh points to it).
fn python() -> PathBuf {
    let venv = std::env::var_os("IMG3D_TORCH_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/img3d/torch-2.11.0")
    });
    venv.join("bin/python")
}

fn convert_py() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/convert.py")
}

/// Runs the converter with `config` written as its `--config`, and `args`.
fn convert(config: &BundleConfig, work: &Path, args: &[&str]) -> Output {
    let config_path = work.join("config-in.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(config).unwrap()).unwrap();
    Command::new(python())
        .arg(convert_py())
        .arg("--config")
        .arg(&config_path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python().display()))
}

/// The tiny bundle's config without model stages: U-2-Net only.
fn preprocessing_only() -> BundleConfig {
    BundleConfig { name: "u2net-only".into(), stages: Default::default(), ..BundleConfig::tiny() }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// An ONNX export that kept the state-dict names and batch norms converts back to exactly the
/// state dict it was exported from, and the bundle loads.
#[test]
fn named_onnx_converts_back_exactly() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bundle");
    let onnx = common::data_path("u2net_named.onnx");
    let run = convert(
        &preprocessing_only(),
        work.path(),
        &["--u2net", onnx.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert!(run.status.success(), "{}", text(&run));

    let converted = bundle::component_path(&out, U2NET);
    let got: std::collections::HashMap<_, _> =
        tch::Tensor::read_safetensors(&converted).unwrap().into_iter().collect();
    let want = tch::Tensor::read_safetensors(common::data_path("preprocess.weights.safetensors")).unwrap();
    assert_eq!(got.len(), want.len());
    for (name, w) in &want {
        let g = got.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(g.equal(w), "{name} differs");
    }
    let pipeline = Pipeline::load(&out, img3d_pipeline::DeviceSpec::Cpu).unwrap();
    assert_eq!(pipeline.config(), &preprocessing_only());
}

/// A constant-folded export (batch norms folded into the convolutions, anonymous names)
/// converts to weights that compute what onnxruntime computed on the original model (1e-4,
/// the parity tolerance).
#[test]
fn folded_onnx_computes_the_same() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bundle");
    let onnx = common::data_path("u2net_fused.onnx");
    let run = convert(
        &preprocessing_only(),
        work.path(),
        &["--u2net", onnx.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert!(run.status.success(), "{}", text(&run));

    let bundle = Bundle::open(&out).unwrap();
    let mut vs = common::cpu_vs();
    let net = U2net::new(&vs.root(), &U2netConfig::tiny());
    bundle.load_component(&mut vs, U2NET).unwrap();
    let io = common::load_io("preprocess");
    let file: Vec<u8> = Vec::try_from(&io["opaque.file"]).unwrap();
    let img = preprocess::decode(&file).unwrap();
    let rgb = image::DynamicImage::ImageRgba8(img).to_rgb8();
    let pred = tch::no_grad(|| net.forward(&preprocess::u2net_input(&rgb, &U2netConfig::tiny())));
    common::assert_close("prediction", &pred, &io["opaque.pred"], 1e-4);
}

/// Inputs that do not fit the config, or are not what they claim, fail with a reason and
/// leave nothing at --out.
#[test]
fn mismatches_fail_plainly_and_leave_nothing() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bundle");
    let onnx = common::data_path("u2net_named.onnx");
    // The official U-2-Net's widths, tiny weights.
    let crm_width = BundleConfig { stages: Default::default(), ..BundleConfig::crm() };
    let run = convert(
        &crm_width,
        work.path(),
        &["--u2net", onnx.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert!(!run.status.success());
    assert!(text(&run).contains("U-2-Net encoder is"), "{}", text(&run));
    assert!(!out.exists());

    let garbage = work.path().join("u2net.onnx");
    std::fs::write(&garbage, b"\x08\x07not a model at all").unwrap();
    let run = convert(
        &preprocessing_only(),
        work.path(),
        &["--u2net", garbage.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert!(!run.status.success());
    assert!(
        text(&run).contains("not an ONNX model") || text(&run).contains("convolutions"),
        "{}",
        text(&run)
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("converting"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
