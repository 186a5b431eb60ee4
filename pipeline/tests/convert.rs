//! `tools/convert.py` round trips: official-format inputs in, a bundle out that this crate
//! loads strictly and that computes what the inputs compute.
//!
//! The inputs are fixtures in the official formats at tiny width: rembg-style `u2net.onnx`
//! files exported with `torch.onnx.export` from upstream U-2-Net (`tools/parity/preprocess.py`:
//! one keeping the state-dict names and batch norms, one constant-folded with anonymous names).
//! The diffusion and reconstruction checkpoints are `pixel-diffusion.pth`, `ccm-diffusion.pth`
//! and `CRM.pth` stand-ins with upstream's key layout at tiny width
//! (`tools/parity/checkpoints.py`, pipeline/tests/data/checkpoints/).
//! The converter runs with the project's torch venv (`$IMG3D_TORCH_VENV`, as `scripts/setup`
//! creates it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use img3d_pipeline::bundle::{self, Bundle, U2NET};
use img3d_pipeline::config::U2netConfig;
use img3d_pipeline::fixtures as checkpoints;
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
    convert_json(&serde_json::to_value(config).unwrap(), work, args)
}

/// [`convert`] with a config of any layout.
fn convert_json(config: &serde_json::Value, work: &Path, args: &[&str]) -> Output {
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
    let run = convert(&checkpoints::config(), work.path(), &fixture_args(&with_u2net(&onnx), &out));
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
    assert_eq!(pipeline.config(), &checkpoints::config());
}

/// A constant-folded export (batch norms folded into the convolutions, anonymous names)
/// converts to weights that compute what onnxruntime computed on the original model (1e-4,
/// the parity tolerance).
#[test]
fn folded_onnx_computes_the_same() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bundle");
    let onnx = common::data_path("u2net_fused.onnx");
    let run = convert(&checkpoints::config(), work.path(), &fixture_args(&with_u2net(&onnx), &out));
    assert!(run.status.success(), "{}", text(&run));

    let bundle = Bundle::open(&out).unwrap();
    let mut vs = common::cpu_vs();
    let net = U2net::new(&vs.root(), &U2netConfig::tiny());
    bundle.components().load(&mut vs, U2NET).unwrap();
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
    let crm_width = BundleConfig { u2net: U2netConfig::u2net(), ..checkpoints::config() };
    let run = convert(&crm_width, work.path(), &fixture_args(&with_u2net(&onnx), &out));
    assert!(!run.status.success());
    assert!(text(&run).contains("U-2-Net encoder is"), "{}", text(&run));
    assert!(!out.exists());

    let garbage = work.path().join("u2net.onnx");
    std::fs::write(&garbage, b"\x08\x07not a model at all").unwrap();
    let run = convert(&checkpoints::config(), work.path(), &fixture_args(&with_u2net(&garbage), &out));
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

/// The checkpoint fixtures' tensors by name, as fp32 (read by the torch venv's Python, not by
/// the converter's code).
fn checkpoint_tensors(work: &Path, file: &str) -> std::collections::HashMap<String, tch::Tensor> {
    let out = work.join(format!("{file}.safetensors"));
    let script = "import sys, torch\nfrom safetensors.torch import save_file\n\
                  sd = torch.load(sys.argv[1], map_location='cpu', weights_only=True)\n\
                  save_file({k: v.float().contiguous() for k, v in sd.items()}, sys.argv[2])\n";
    let run = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(checkpoints::dir().join(file))
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    tch::Tensor::read_safetensors(&out).unwrap().into_iter().collect()
}

fn component(dir: &Path, name: &str) -> Vec<(String, tch::Tensor)> {
    tch::Tensor::read_safetensors(bundle::component_path(dir, name)).unwrap()
}

fn fixture_args<'a>(inputs: &'a [String; 4], out: &'a Path) -> Vec<&'a str> {
    vec![
        "--u2net",
        &inputs[0],
        "--pixel",
        &inputs[1],
        "--ccm",
        &inputs[2],
        "--crm",
        &inputs[3],
        "--out",
        out.to_str().unwrap(),
    ]
}

/// [`fixture_paths`] with another `u2net.onnx`.
fn with_u2net(onnx: &Path) -> [String; 4] {
    let mut paths = fixture_paths();
    paths[0] = onnx.to_str().unwrap().to_owned();
    paths
}

fn fixture_paths() -> [String; 4] {
    let p = |path: PathBuf| path.to_str().unwrap().to_owned();
    let dir = checkpoints::dir();
    [
        p(checkpoints::u2net_onnx()),
        p(dir.join(checkpoints::FILES[0])),
        p(dir.join(checkpoints::FILES[1])),
        p(dir.join(checkpoints::FILES[2])),
    ]
}

/// Official-layout diffusion and reconstruction checkpoints convert into a bundle that this
/// crate loads strictly, holding exactly the checkpoints' values under their names, and the
/// text contexts upstream's own `FrozenOpenCLIPEmbedder` computes from them.
#[test]
fn official_checkpoints_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bundle");
    let paths = fixture_paths();
    let config = checkpoints::config();
    let run = convert(&config, work.path(), &fixture_args(&paths, &out));
    assert!(run.status.success(), "{}", text(&run));

    // Strict loading: every variable of the port filled, nothing left over, shapes equal.
    let pipeline = Pipeline::load(&out, img3d_pipeline::DeviceSpec::Cpu).unwrap();
    assert_eq!(pipeline.config(), &config);

    // The values are the checkpoints'.
    for (file, name) in
        [("pixel-diffusion.pth", "diffusion_stage1"), ("ccm-diffusion.pth", "diffusion_stage2")]
    {
        let want = checkpoint_tensors(work.path(), file);
        let got = component(&out, name);
        assert!(got.len() > 400, "{name}: {} tensors", got.len());
        for (key, value) in &got {
            let w = want.get(key).unwrap_or_else(|| panic!("{name}: {key} is not in {file}"));
            assert!(value.to_kind(tch::Kind::Float).equal(w), "{name}: {key} differs from {file}");
        }
        // What the port does not run is dropped: the text tower, CLIP's last block and head.
        assert!(got.iter().all(|(k, _)| !k.starts_with("clip_model.model.transformer.")
            && !k.starts_with("clip_model.model.visual.transformer.resblocks.2.")
            && !k.starts_with("clip_model.model.visual.ln_post")
            && k != "betas"));
    }
    let want = checkpoint_tensors(work.path(), "CRM.pth");
    let got = component(&out, "reconstruction");
    assert_eq!(got.len(), want.len(), "reconstruction.safetensors holds every key of CRM.pth");
    for (key, value) in &got {
        assert_eq!(value.kind(), tch::Kind::Float, "{key} is not fp32");
        assert!(value.equal(&want[key]), "reconstruction: {key} differs from CRM.pth");
    }

    // Text contexts: upstream's encode of both prompts on each checkpoint (fp32, same ops in
    // the same order: 1e-5 allows for a different BLAS reduction order).
    let constants: std::collections::HashMap<_, _> = component(&out, bundle::CONSTANTS).into_iter().collect();
    let expected = tch::Tensor::read_safetensors(checkpoints::dir().join("expected.safetensors")).unwrap();
    assert_eq!(constants.len(), expected.len());
    for (key, want) in &expected {
        let got = &constants[&format!("diffusion.{key}")];
        common::assert_close(key, got, want, 1e-5);
    }
}

/// A checkpoint that does not fit the config fails naming the tensor, and leaves nothing.
#[test]
fn a_checkpoint_of_another_width_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bundle");
    let paths = fixture_paths();
    let mut config = checkpoints::config();
    config.stages.reconstruction.mlp_hidden = 64;
    let run = convert(&config, work.path(), &fixture_args(&paths, &out));
    assert!(!run.status.success());
    assert!(text(&run).contains("sdfMlp.fc1.weight is [32, 13], the config says [64, 13]"), "{}", text(&run));
    assert!(!out.exists());
    assert!(std::fs::read_dir(work.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("converting")));
}

/// A config without every stage (the layout of older builds), or naming a stage the converter
/// does not know, is refused before anything is read or written, naming the stage.
#[test]
fn configs_of_other_layouts_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bundle");
    let paths = fixture_paths();
    let full = serde_json::to_value(checkpoints::config()).unwrap();
    let mut no_recon = full.clone();
    no_recon["stages"].as_object_mut().unwrap().remove("reconstruction");
    let mut extra = full.clone();
    extra["stages"]["texture"] = serde_json::json!({});
    let mut no_stages = full;
    no_stages.as_object_mut().unwrap().remove("stages");
    for (config, says) in [
        (no_recon, "the config has no stages.reconstruction"),
        (extra, "stage(s) this converter does not know: stages.texture"),
        (no_stages, "the config has no `stages`"),
    ] {
        let run = convert_json(&config, work.path(), &fixture_args(&paths, &out));
        assert!(!run.status.success());
        assert!(text(&run).contains(says), "{}", text(&run));
        assert!(!out.exists());
    }
    let names: Vec<_> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["config-in.json"], "nothing but the config was written");
}
