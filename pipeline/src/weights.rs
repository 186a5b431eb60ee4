//! Strict loading of safetensors weights into a `tch::nn::VarStore`.
//!
//! `VarStore::load` ignores tensors the model does not use and `copy_` broadcasts silently, so
//! a checkpoint of the wrong layout could load "fine". Here every variable must be present with
//! exactly its shape, and every tensor in the file must be used.
//!
//! Files are memory-mapped and streamed tensor by tensor straight into the variables (dtype
//! and device conversion in the same `copy_`), so loading never holds a second copy of the
//! whole file in memory and reads only what the page cache does not already hold.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::PipelineError;

/// Loads `path` into `vs`: every variable of `vs` must be in the file with the same shape, and
/// the file must hold nothing else. Values are converted to each variable's dtype and device.
pub fn load_strict(vs: &mut VarStore, path: &Path) -> Result<(), PipelineError> {
    let mmap = map_file(path)?;
    let file = SafeTensors::deserialize(&mmap).map_err(|e| weights_err(path, e.to_string()))?;
    let mut vars = vs.variables();
    let mut check = Check::default();
    let _guard = tch::no_grad_guard();
    for (name, view) in file.iter() {
        let Some(mut dst) = vars.remove(name) else {
            check.unexpected.insert(name.to_owned());
            continue;
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if dst.size() != shape {
            check.mismatched.push(format!("{name}: file {shape:?}, model {:?}", dst.size()));
            continue;
        }
        let kind = kind_of(view.dtype())
            .ok_or_else(|| weights_err(path, format!("{name}: unsupported dtype {:?}", view.dtype())))?;
        let src = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        dst.f_copy_(&src)?;
    }
    check.missing = vars.into_keys().collect();
    check.result(path)
}

/// Copies named tensors into `vs` with the checks of [`load_strict`]; `origin` names the source
/// in errors. The tensors are taken one at a time, so a lazy iterator keeps at most one source
/// tensor alive beside the store.
pub fn copy_strict(
    vs: &mut VarStore,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    origin: &Path,
) -> Result<(), PipelineError> {
    let mut vars = vs.variables();
    let mut check = Check::default();
    let _guard = tch::no_grad_guard();
    for (name, src) in tensors {
        match vars.remove(&name) {
            None => {
                check.unexpected.insert(name);
            }
            Some(mut dst) if dst.size() == src.size() => dst.f_copy_(&src)?,
            Some(dst) => {
                check.mismatched.push(format!("{name}: file {:?}, model {:?}", src.size(), dst.size()))
            }
        }
    }
    check.missing = vars.into_keys().collect();
    check.result(origin)
}

/// Reads every tensor of a safetensors file (memory-mapped) onto the CPU, e.g. a bundle's
/// precomputed constants.
pub fn read_all(path: &Path) -> Result<Vec<(String, Tensor)>, PipelineError> {
    let mmap = map_file(path)?;
    let file = SafeTensors::deserialize(&mmap).map_err(|e| weights_err(path, e.to_string()))?;
    file.iter()
        .map(|(name, view)| {
            let kind = kind_of(view.dtype())
                .ok_or_else(|| weights_err(path, format!("{name}: unsupported dtype {:?}", view.dtype())))?;
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            Ok((name.to_owned(), Tensor::f_from_data_size(view.data(), &shape, kind)?))
        })
        .collect()
}

/// Memory-maps a weight file.
#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<Mmap, PipelineError> {
    let file = File::open(path).map_err(|e| weights_err(path, e.to_string()))?;
    // SAFETY: the map is read-only and lives only for the duration of one load. Bundle files
    // are written once (to a temporary name, then renamed into place) and never modified in
    // place; a file truncated by another process while mapped would fault, which is the
    // documented risk of memory-mapping and the price of zero-copy loading.
    unsafe { Mmap::map(&file) }.map_err(|e| weights_err(path, e.to_string()))
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

#[derive(Default)]
struct Check {
    missing: BTreeSet<String>,
    unexpected: BTreeSet<String>,
    mismatched: Vec<String>,
}

impl Check {
    fn result(self, path: &Path) -> Result<(), PipelineError> {
        let mut problems = Vec::new();
        if !self.missing.is_empty() {
            problems.push(format!("missing tensor(s): {}", join(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            problems.push(format!("unexpected tensor(s): {}", join(&self.unexpected)));
        }
        if !self.mismatched.is_empty() {
            problems.push(format!("mis-shaped tensor(s): {}", self.mismatched.join("; ")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(weights_err(path, problems.join("; ")))
        }
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
