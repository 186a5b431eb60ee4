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
//! [`Bundle::open`] reads and checks `config.json`; the weight files are its [`Components`],
//! each loaded strictly by the stage that owns it. `tools/convert.py` writes a bundle from the
//! official checkpoints; [`crate::tiny`] writes the tiny one.

use std::path::Path;

use crate::components::file_err;
pub use crate::components::{
    component_path, save_component, save_tensors, Components, CONFIG_FILE, CONSTANTS, U2NET,
};
use crate::config::{BundleConfig, Stages, BUNDLE_FORMAT};
use crate::PipelineError;

/// An opened bundle directory: its parsed and checked config, and its components.
#[derive(Debug, Clone)]
pub struct Bundle {
    components: Components,
    config: BundleConfig,
}

impl Bundle {
    /// Opens `dir` and parses its `config.json`: the format version, every stage, every key
    /// (see [`read_config`]).
    pub fn open(dir: &Path) -> Result<Bundle, PipelineError> {
        let config = read_config(dir)?;
        Ok(Bundle { components: Components::new(dir), config })
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        self.components.dir()
    }

    /// Its `config.json`.
    pub fn config(&self) -> &BundleConfig {
        &self.config
    }

    /// Its weight files.
    pub fn components(&self) -> &Components {
        &self.components
    }
}

/// Parses and checks `<dir>/config.json`: the format version first, then the layout (a config
/// without one of [`Stages::NAMES`], or naming another stage, was written by an older build:
/// the error says so and how to re-make the bundle), then each stage's config
/// ([`Stages::validate`]).
pub fn read_config(dir: &Path) -> Result<BundleConfig, PipelineError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, format!("cannot read: {e}")))?;
    let invalid = |e: serde_json::Error| file_err(&path, format!("invalid config: {e}"));
    let value: serde_json::Value = serde_json::from_str(&text).map_err(invalid)?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        Some(format) if format != u64::from(BUNDLE_FORMAT) => {
            return Err(file_err(
                &path,
                format!(
                    "bundle format {format} but this build reads format {BUNDLE_FORMAT}: convert it again"
                ),
            ))
        }
        _ => {}
    }
    if let Some(problem) = stage_layout_problem(&value) {
        return Err(file_err(&path, format!("{problem}: it was made by another build. {REMAKE}")));
    }
    let config: BundleConfig = serde_json::from_value(value).map_err(invalid)?;
    config.stages.validate().map_err(|e| file_err(&path, e.to_string()))?;
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
