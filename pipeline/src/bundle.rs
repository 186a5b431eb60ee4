//! A model bundle: one directory holding everything the pipeline loads.
//!
//! ```text
//! config.json               BundleConfig (architectures, defaults; says if weights are random)
//! u2net.safetensors         background removal (U-2-Net state-dict names)
//! <component>.safetensors   one file per stage component, named by its stage's provider
//! constants.safetensors     precomputed constants (text contexts of the fixed prompts, cameras)
//! ```
//!
//! Every weight file is loaded strictly ([`crate::weights::load_strict`]): a missing,
//! unexpected or mis-shaped tensor is an error naming it. `tools/convert.py` writes a bundle
//! from the official checkpoints; [`crate::tiny`] writes the tiny one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tch::nn::VarStore;
use tch::Tensor;

use crate::config::{BundleConfig, BUNDLE_FORMAT};
use crate::{weights, PipelineError};

/// Name of the configuration file.
pub const CONFIG_FILE: &str = "config.json";
/// Component holding U-2-Net's weights.
pub const U2NET: &str = "u2net";
/// Component holding precomputed constants (text contexts, camera vectors).
pub const CONSTANTS: &str = "constants";

/// An opened bundle directory: its parsed config and where its files are.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    config: BundleConfig,
}

impl Bundle {
    /// Opens `dir` and parses its `config.json`, checking the format version.
    pub fn open(dir: &Path) -> Result<Bundle, PipelineError> {
        let path = dir.join(CONFIG_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| bundle_err(&path, format!("cannot read: {e}")))?;
        let config: BundleConfig =
            serde_json::from_str(&text).map_err(|e| bundle_err(&path, format!("invalid config: {e}")))?;
        if config.format != BUNDLE_FORMAT {
            return Err(bundle_err(
                &path,
                format!(
                    "bundle format {} but this build reads format {BUNDLE_FORMAT}: convert it again",
                    config.format
                ),
            ));
        }
        Ok(Bundle { dir: dir.to_owned(), config })
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its `config.json`.
    pub fn config(&self) -> &BundleConfig {
        &self.config
    }

    /// Path of component `name` (`<dir>/<name>.safetensors`).
    pub fn component_path(&self, name: &str) -> PathBuf {
        component_path(&self.dir, name)
    }

    /// Loads component `name` strictly into `vs` and logs how long it took. Returns the time.
    pub fn load_component(&self, vs: &mut VarStore, name: &str) -> Result<Duration, PipelineError> {
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
    pub fn read_component(&self, name: &str) -> Result<Vec<(String, Tensor)>, PipelineError> {
        weights::read_all(&self.existing(name)?)
    }

    fn existing(&self, name: &str) -> Result<PathBuf, PipelineError> {
        let path = self.component_path(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(bundle_err(&path, format!("component {name:?} is missing from the bundle")))
        }
    }
}

/// Path of component `name` in bundle directory `dir`.
pub fn component_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.safetensors"))
}

/// Writes `config` as `<dir>/config.json`.
pub fn write_config(dir: &Path, config: &BundleConfig) -> Result<(), PipelineError> {
    let text = serde_json::to_string_pretty(config).map_err(|e| PipelineError::Internal(e.to_string()))?;
    std::fs::write(dir.join(CONFIG_FILE), text + "\n")?;
    Ok(())
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
    Tensor::write_safetensors(&contiguous, &path).map_err(|e| bundle_err(&path, e.to_string()))
}

fn bundle_err(path: &Path, reason: String) -> PipelineError {
    PipelineError::Bundle { path: path.to_owned(), reason }
}
