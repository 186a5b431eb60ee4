//! The files of a model bundle directory: `config.json` (read by [`crate::bundle`]) and one
//! safetensors file per component, loaded strictly ([`crate::weights::load_strict`]): a missing,
//! unexpected or mis-shaped tensor is an error naming it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tch::nn::VarStore;
use tch::Tensor;

use crate::{weights, PipelineError};

/// Name of the configuration file.
pub const CONFIG_FILE: &str = "config.json";
/// Component holding U-2-Net's weights.
pub const U2NET: &str = "u2net";
/// Component holding precomputed constants (text contexts, camera vectors).
pub const CONSTANTS: &str = "constants";

/// The components of a bundle directory, by name (`<dir>/<name>.safetensors`).
#[derive(Debug, Clone)]
pub struct Components {
    dir: PathBuf,
}

impl Components {
    /// The components in `dir`.
    pub fn new(dir: &Path) -> Self {
        Components { dir: dir.to_owned() }
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of component `name` (`<dir>/<name>.safetensors`).
    pub fn path(&self, name: &str) -> PathBuf {
        component_path(&self.dir, name)
    }

    /// Loads component `name` strictly into `vs` and logs how long it took. Returns the time.
    pub fn load(&self, vs: &mut VarStore, name: &str) -> Result<Duration, PipelineError> {
        let path = self.existing(name)?;
        let start = Instant::now();
        weights::load_strict(vs, &path)?;
        let took = start.elapsed();
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        tracing::info!(
            component = name,
            mib = bytes as f64 / (1 << 20) as f64,
            ms = took.as_secs_f64() * 1e3,
            "loaded weights"
        );
        Ok(took)
    }

    /// Reads every tensor of component `name` onto the CPU (e.g. [`CONSTANTS`]).
    pub fn read(&self, name: &str) -> Result<Vec<(String, Tensor)>, PipelineError> {
        weights::read_all(&self.existing(name)?)
    }

    fn existing(&self, name: &str) -> Result<PathBuf, PipelineError> {
        let path = self.path(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(file_err(&path, format!("component {name:?} is missing from the bundle")))
        }
    }
}

/// Path of component `name` in bundle directory `dir`.
pub fn component_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.safetensors"))
}

/// Saves every variable of `vs` as component `name` of bundle directory `dir` (fp32 as built).
pub fn save_component(dir: &Path, name: &str, vs: &VarStore) -> Result<(), PipelineError> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    save_tensors(dir, name, &vars)
}

/// Saves named tensors as component `name` of bundle directory `dir`.
pub fn save_tensors(dir: &Path, name: &str, tensors: &[(String, Tensor)]) -> Result<(), PipelineError> {
    let path = component_path(dir, name);
    let contiguous: Vec<(&str, Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t.contiguous())).collect();
    Tensor::write_safetensors(&contiguous, &path).map_err(|e| file_err(&path, e.to_string()))
}

/// An error about a file of the bundle.
pub(crate) fn file_err(path: &Path, reason: String) -> PipelineError {
    PipelineError::Bundle { path: path.to_owned(), reason }
}
