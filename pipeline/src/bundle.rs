//! A model bundle: one directory holding everything the pipeline loads.
//!
//! ```text
//! config.json               BundleConfig (architectures, defaults; says if weights are random)
//! u2net.safetensors         background removal (U-2-Net state-dict names)
//! <component>.safetensors   one file per stage component, named by its stage's loader
//!                           (`diffusion_stage1`, `diffusion_stage2`, `reconstruction`)
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

use crate::config::{BundleConfig, Stages, BUNDLE_FORMAT};
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
    /// Opens `dir` and parses its `config.json`: the format version, every stage, every key
    /// (see [`read_config`]).
    pub fn open(dir: &Path) -> Result<Bundle, PipelineError> {
        let config = read_config(dir)?;
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

/// Parses and checks `<dir>/config.json`: the format version first, then the layout (a config
/// without one of [`Stages::NAMES`], or naming another stage, was written by an older build:
/// the error says so and how to re-make the bundle), then each stage's config
/// ([`Stages::validate`]).
pub fn read_config(dir: &Path) -> Result<BundleConfig, PipelineError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| bundle_err(&path, format!("cannot read: {e}")))?;
    let invalid = |e: serde_json::Error| bundle_err(&path, format!("invalid config: {e}"));
    let value: serde_json::Value = serde_json::from_str(&text).map_err(invalid)?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        Some(format) if format != u64::from(BUNDLE_FORMAT) => {
            return Err(bundle_err(
                &path,
                format!(
                    "bundle format {format} but this build reads format {BUNDLE_FORMAT}: convert it again"
                ),
            ))
        }
        _ => {}
    }
    if let Some(problem) = stage_layout_problem(&value) {
        return Err(bundle_err(&path, format!("{problem}: it was made by another build. {REMAKE}")));
    }
    let config: BundleConfig = serde_json::from_value(value).map_err(invalid)?;
    config.stages.validate().map_err(|e| bundle_err(&path, e.to_string()))?;
    Ok(config)
}

/// How to re-make a bundle of another layout (the README's "Models and conversion").
pub const REMAKE: &str = "Re-make the bundle with this build: `img3d-worker prepare-model` (or \
    `tools/convert.py --config CONFIG` with `img3d-worker bundle-config crm > CONFIG`) for the \
    official weights; `--model tiny` generates this build's tiny bundle by itself";

/// What is wrong with the `stages` of a parsed `config.json`, if it is not exactly
/// [`Stages::NAMES`]: the layout of builds whose bundles could lack a stage.
fn stage_layout_problem(config: &serde_json::Value) -> Option<String> {
    let Some(stages) = config.get("stages") else {
        return Some("config.json has no `stages`".to_owned());
    };
    let stages = stages.as_object()?;
    let missing: Vec<_> = Stages::NAMES
        .iter()
        .filter(|name| !stages.contains_key(**name))
        .map(|n| format!("`stages.{n}`"))
        .collect();
    let unknown: Vec<_> = stages
        .keys()
        .filter(|k| !Stages::NAMES.contains(&k.as_str()))
        .map(|k| format!("`stages.{k}`"))
        .collect();
    match (missing.is_empty(), unknown.is_empty()) {
        (true, true) => None,
        (false, true) => Some(format!("config.json has no {}", missing.join(" or "))),
        (true, false) => {
            Some(format!("config.json names stage(s) this build does not know: {}", unknown.join(", ")))
        }
        (false, false) => Some(format!(
            "config.json has no {} and names stage(s) this build does not know: {}",
            missing.join(" or "),
            unknown.join(", ")
        )),
    }
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
