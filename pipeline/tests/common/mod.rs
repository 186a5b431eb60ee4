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

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{nn::VarStore, Device, Kind, Tensor};

/// Path of a file under `pipeline/tests/data/`.
pub fn data_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(file)
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
