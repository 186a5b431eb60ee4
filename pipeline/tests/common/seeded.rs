//! Seeded weights: the Rust half of `tools/parity/seeded.py` (its docstring states the scheme).
//!
//! Full-size fixtures store no weights: a fixture `NAME` commits `NAME.keys.json` (upstream's
//! state-dict keys and shapes, in order) and `NAME.io.safetensors` (inputs, upstream's outputs);
//! the test rebuilds every tensor from its key name with the same libtorch generator and loads
//! them strictly by upstream's key names.
//!
//! libtorch's generator is process-global (`tch::manual_seed`); a lock keeps the seed and the
//! draw together when tests of one binary run on several threads. Tests that share a binary
//! with these helpers must not draw from the global generator themselves.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

static GENERATOR: Mutex<()> = Mutex::new(());

/// The seed of `key`: the first 8 bytes of SHA-256(key), little-endian, shifted right by one.
pub fn key_seed(key: &str) -> i64 {
    let digest = Sha256::digest(key.as_bytes());
    let bytes: [u8; 8] = digest[..8].try_into().unwrap();
    (u64::from_le_bytes(bytes) >> 1) as i64
}

/// The seeded value of `key` with `shape` (fp32, CPU).
pub fn seeded_tensor(key: &str, shape: &[i64]) -> Tensor {
    let x = {
        let _lock = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(key_seed(key));
        Tensor::randn(shape, (Kind::Float, Device::Cpu))
    };
    let leaf = key.rsplit('.').next().unwrap_or(key);
    match leaf {
        "running_var" => x.abs() * 0.5 + 0.5,
        "running_mean" => x * 0.1,
        "weight" if shape.len() == 1 => x * 0.1 + 1.0,
        "bias" => x * 0.1,
        "weight" => {
            let fan_in: i64 = shape[1..].iter().product();
            x * (1.0 / (fan_in as f64).sqrt())
        }
        _ => x * 0.5,
    }
}

/// `NAME.keys.json`: upstream's `[key, shape]` list.
pub fn read_keys(name: &str) -> Vec<(String, Vec<i64>)> {
    let path = super::data_path(&format!("{name}.keys.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Every tensor of fixture `name`'s state dict, rebuilt from its key.
pub fn state_dict(name: &str) -> Vec<(String, Tensor)> {
    read_keys(name)
        .into_iter()
        .map(|(key, shape)| {
            let t = seeded_tensor(&key, &shape);
            (key, t)
        })
        .collect()
}

/// Loads fixture `name`'s seeded weights into `vs`, strictly by upstream's key names (every
/// variable present with its shape, nothing left over).
pub fn load(vs: &mut VarStore, name: &str) {
    load_except(vs, name, &[]);
}

/// [`load`], less the upstream keys in `unused` (ones the port documents it never declares,
/// as its converter drops them); each of those must be in upstream's list.
pub fn load_except(vs: &mut VarStore, name: &str, unused: &[String]) {
    let origin = super::data_path(&format!("{name}.keys.json"));
    let keys = read_keys(name);
    for key in unused {
        assert!(keys.iter().any(|(k, _)| k == key), "{key} is not an upstream key of {name}");
    }
    // Lazy: each seeded tensor is made, copied and dropped in turn (peak = the model + one).
    let tensors = keys.into_iter().filter(|(key, _)| !unused.contains(key)).map(|(key, shape)| {
        let t = seeded_tensor(&key, &shape);
        (key, t)
    });
    img3d_pipeline::weights::copy_strict(vs, tensors, Path::new(&origin)).unwrap_or_else(|e| panic!("{e}"));
}
