//! Helpers for parity tests against fixtures made from the upstream code.
//!
//! A fixture `NAME` is two files under `pipeline/tests/data/`:
//! - `NAME.weights.safetensors`: the upstream module's state dict (upstream key names, relative
//!   to the module under test), random weights;
//! - `NAME.io.safetensors`: named inputs and outputs of one forward pass.
//!
//! Both are written by the scripts in `tools/parity/` from an upstream checkout; each script
//! says how it made each fixture.

#![allow(dead_code)]

pub mod seeded;

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{nn::VarStore, Device, Kind, Tensor};

/// Path of a file under `pipeline/tests/data/`.
/// `IMG3D_FIXTURE_DIR` reads them from elsewhere (`tools/fullsize/compare`: fixtures just
/// rewritten with fresh upstream timings in a scratch copy).
pub fn data_path(file: &str) -> PathBuf {
    match std::env::var_os("IMG3D_FIXTURE_DIR") {
        Some(dir) => PathBuf::from(dir).join(file),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(file),
    }
}

/// The named tensors of `NAME.io.safetensors`.
pub fn load_io(name: &str) -> HashMap<String, Tensor> {
    let path = data_path(&format!("{name}.io.safetensors"));
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// Loads `NAME.weights.safetensors` strictly into `vs`.
pub fn load_weights(vs: &mut VarStore, name: &str) {
    let path = data_path(&format!("{name}.weights.safetensors"));
    img3d_pipeline::weights::load_strict(vs, &path).unwrap_or_else(|e| panic!("{e}"));
}

/// A fresh fp32 CPU var store.
pub fn cpu_vs() -> VarStore {
    VarStore::new(Device::Cpu)
}

/// Asserts `actual` matches `expected` in shape and within `tol` max abs error.
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tol: f64) {
    assert_eq!(actual.size(), expected.size(), "{what}: shape");
    let diff = (actual.to_kind(Kind::Double) - expected.to_kind(Kind::Double)).abs();
    let max = diff.max().double_value(&[]);
    assert!(max <= tol, "{what}: max abs error {max:e} > {tol:e}");
}

/// What [`check_output_zip`] counted in `output3d.obj`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjCounts {
    /// `v` lines.
    pub vertices: usize,
    /// `vt` lines.
    pub uvs: usize,
    /// `f` lines.
    pub faces: usize,
}

/// Checks the bytes of `output3d.zip`: the OBJ parses (starts with its `mtllib`, uses
/// `material_0`, finite positions, UVs in [0, 1], triangles whose position and UV indices are
/// valid), the MTL names the PNG, and the PNG in the zip is the 1024x1024 texture.
pub fn check_output_zip(bytes: &[u8]) -> ObjCounts {
    check_output_zip_sized(bytes, 1024)
}

/// [`check_output_zip`] for a `texture`x`texture` PNG.
pub fn check_output_zip_sized(bytes: &[u8], texture: u32) -> ObjCounts {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut read = |name: &str| {
        let mut out = Vec::new();
        zip.by_name(name).unwrap_or_else(|e| panic!("{name}: {e}")).read_to_end(&mut out).unwrap();
        out
    };
    let obj = String::from_utf8(read("output3d.obj")).unwrap();
    let mtl = String::from_utf8(read("output3d.mtl")).unwrap();
    let png = image::load_from_memory(&read("output3d.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (texture, texture));
    assert_eq!(mtl.lines().find_map(|l| l.strip_prefix("map_Kd ")), Some("output3d.png"));
    assert_eq!(obj.lines().next(), Some("mtllib output3d.mtl"));
    assert!(obj.contains("\nusemtl material_0\n"));
    let (mut vertices, mut uvs, mut faces) = (0usize, 0usize, Vec::new());
    for line in obj.lines() {
        let mut parts = line.split(' ');
        match parts.next() {
            Some("v") => {
                let xyz: Vec<f32> = parts.map(|p| p.parse().unwrap()).collect();
                assert!(xyz.len() == 3 && xyz.iter().all(|c| c.is_finite()), "{line}");
                vertices += 1;
            }
            Some("vt") => {
                let uv: Vec<f32> = parts.map(|p| p.parse().unwrap()).collect();
                assert!(uv.len() == 2 && uv.iter().all(|t| (0.0..=1.0).contains(t)), "{line}");
                uvs += 1;
            }
            Some("f") => faces.push(
                parts
                    .map(|c| {
                        let (a, b) = c.split_once('/').unwrap();
                        (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap())
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => {}
        }
    }
    for corners in &faces {
        assert_eq!(corners.len(), 3, "{corners:?}");
        let valid = |&(a, b): &(usize, usize)| (1..=vertices).contains(&a) && (1..=uvs).contains(&b);
        assert!(corners.iter().all(valid), "{corners:?}");
    }
    ObjCounts { vertices, uvs, faces: faces.len() }
}

/// Runs the Khronos glTF validator (`tools/gltf`, installed by `scripts/setup`) on GLB bytes and
/// panics unless it reports no error and no warning. Returns its report line.
pub fn validate_glb(glb: &[u8]) -> String {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = repo.join("tools/gltf/validate.mjs");
    assert!(
        repo.join("tools/gltf/node_modules/gltf-validator").is_dir(),
        "the glTF validator is not installed: run scripts/setup (npm ci --prefix tools/gltf)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("output3d.glb");
    std::fs::write(&path, glb).unwrap();
    let out = std::process::Command::new("node").arg(&script).arg(&path).output().expect("running node");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "glTF validator: {report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("\"errors\":0,\"warnings\":0"), "{report}");
    report
}
