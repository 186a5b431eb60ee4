//! Strict loading of safetensors weights into a `tch::nn::VarStore`.
//!
//! `VarStore::load` ignores tensors the model does not use and `copy_` broadcasts silently, so
//! a checkpoint of the wrong layout could load "fine". Here every variable must be present with
//! exactly its shape, and every tensor in the file must be used.

use std::collections::BTreeSet;
use std::path::Path;

use tch::nn::VarStore;
use tch::Tensor;

use crate::PipelineError;

/// Loads `path` into `vs`: every variable of `vs` must be in the file with the same shape, and
/// the file must hold nothing else. Values are converted to each variable's dtype and device.
pub fn load_strict(vs: &mut VarStore, path: &Path) -> Result<(), PipelineError> {
    let tensors = Tensor::read_safetensors(path).map_err(|e| weights_err(path, e.to_string()))?;
    copy_strict(vs, tensors, path)
}

/// Copies named tensors into `vs` with the checks of [`load_strict`]; `origin` names the source
/// in errors.
pub fn copy_strict(
    vs: &mut VarStore,
    tensors: Vec<(String, Tensor)>,
    origin: &Path,
) -> Result<(), PipelineError> {
    let mut vars = vs.variables();
    let mut unexpected = BTreeSet::new();
    let mut mismatched = Vec::new();
    let _guard = tch::no_grad_guard();
    for (name, src) in tensors {
        match vars.remove(&name) {
            None => {
                unexpected.insert(name);
            }
            Some(mut dst) => {
                if dst.size() != src.size() {
                    mismatched.push(format!("{name}: file {:?}, model {:?}", src.size(), dst.size()));
                } else {
                    dst.copy_(&src.to_kind(dst.kind()).to_device(dst.device()));
                }
            }
        }
    }
    let missing: BTreeSet<_> = vars.into_keys().collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing tensor(s): {}", join(&missing)));
    }
    if !unexpected.is_empty() {
        problems.push(format!("unexpected tensor(s): {}", join(&unexpected)));
    }
    if !mismatched.is_empty() {
        problems.push(format!("mis-shaped tensor(s): {}", mismatched.join("; ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(weights_err(origin, problems.join("; ")))
    }
}

fn join(names: &BTreeSet<String>) -> String {
    const SHOWN: usize = 20;
    let mut out: Vec<&str> = names.iter().take(SHOWN).map(String::as_str).collect();
    let more = names.len().saturating_sub(SHOWN);
    let extra = format!("and {more} more");
    if more > 0 {
        out.push(&extra);
    }
    out.join(", ")
}

fn weights_err(path: &Path, reason: String) -> PipelineError {
    PipelineError::Weights { path: path.to_owned(), reason }
}
