//! The model bundle's configuration (`config.json`): run defaults, preprocessing, U-2-Net, and
//! the typed config of each model stage ([`Stages`]: the stage modules define their own).
//!
//! Presets: [`BundleConfig::crm`] mirrors thu-ml/CRM at 4964e36 (`app.py` defaults,
//! `configs/nf7_v3_SNR_rd_size_stroke.yaml`, `configs/stage2-v2-snr.yaml`,
//! `configs/specs_objaverse_total.json`) and rembg's `u2net` session; [`BundleConfig::tiny`] is
//! the same architecture at a tiny width for CPU tests (random weights).
//!
//! Every field is required and every struct denies unknown keys: a bundle either describes the
//! whole pipeline this build runs, or it does not load ([`crate::bundle::Bundle::open`] names
//! what is missing and how to re-make the bundle).

use serde::{Deserialize, Serialize};

use crate::diffusion::{DiffusionConfig, InvalidDiffusionConfig};
use crate::params::RunDefaults;
pub use crate::preprocess::PreprocessConfig;
use crate::recon::{ReconConfig, ReconConfigError};
pub use crate::u2net::{RsuWidth, U2netConfig};

/// Version of the bundle layout. Bump on any incompatible change of files or keys.
pub const BUNDLE_FORMAT: u32 = 1;

/// `config.json` of a model bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleConfig {
    /// [`BUNDLE_FORMAT`] of the code that wrote it.
    pub format: u32,
    /// The preset the bundle was made from (`name` in `config.json`).
    #[serde(rename = "name")]
    pub preset: Preset,
    /// True when the weights are random (the tiny bundle): outputs are meaningless noise and
    /// everything that describes the bundle says so.
    pub random_weights: bool,
    /// Run parameters of a job without options (upstream's hard-coded defaults).
    pub defaults: RunDefaults,
    /// Preprocessing (upstream `preprocess_image`).
    pub preprocess: PreprocessConfig,
    /// The background-removal network (rembg's `u2net`).
    pub u2net: U2netConfig,
    /// The model stages' architectures.
    pub stages: Stages,
}

/// The bundle presets this build defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The official CRM weights, converted by `tools/convert.py` ([`BundleConfig::crm`]).
    Crm,
    /// The random-weight test bundle ([`BundleConfig::tiny`]).
    Tiny,
}

impl Preset {
    /// Every preset, in the order command lines list them.
    pub const ALL: [Preset; 2] = [Preset::Crm, Preset::Tiny];

    /// Its name in `config.json`, on command lines and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Crm => "crm",
            Preset::Tiny => "tiny",
        }
    }

    /// The bundle configuration this build defines for it.
    pub fn config(self) -> BundleConfig {
        match self {
            Preset::Crm => BundleConfig::crm(),
            Preset::Tiny => BundleConfig::tiny(),
        }
    }
}

impl std::str::FromStr for Preset {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Preset::ALL.into_iter().find(|p| p.as_str() == name).ok_or_else(|| {
            let names: Vec<_> = Preset::ALL.iter().map(|p| p.as_str()).collect();
            format!("unknown preset {name:?} (one of: {})", names.join(", "))
        })
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The model stages, in pipeline order (`stages` in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    /// Stage 1 and 2: the multi-view diffusion ([`crate::diffusion`]).
    pub diffusion: DiffusionConfig,
    /// Reconstruction and export ([`crate::recon`]).
    pub reconstruction: ReconConfig,
}

impl Stages {
    /// Key of each stage under `stages` in `config.json`, in pipeline order.
    pub const NAMES: [&'static str; 2] = ["diffusion", "reconstruction"];

    /// Checks each stage's parts fit together.
    pub fn validate(&self) -> Result<(), StageConfigError> {
        self.diffusion.validate().map_err(StageConfigError::Diffusion)?;
        self.reconstruction.validate().map_err(StageConfigError::Reconstruction)
    }
}

/// A stage config whose parts do not fit together, named by its key in `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageConfigError {
    /// `stages.diffusion`.
    #[error("stages.diffusion config: {0}")]
    Diffusion(InvalidDiffusionConfig),
    /// `stages.reconstruction`.
    #[error("stages.reconstruction config: {0}")]
    Reconstruction(ReconConfigError),
}

impl BundleConfig {
    /// The official CRM model, converted by `tools/convert.py`: upstream's defaults and
    /// full-size architectures.
    pub fn crm() -> Self {
        BundleConfig {
            format: BUNDLE_FORMAT,
            preset: Preset::Crm,
            random_weights: false,
            defaults: RunDefaults::default(),
            preprocess: PreprocessConfig::default(),
            u2net: U2netConfig::u2net(),
            stages: Stages { diffusion: DiffusionConfig::crm(), reconstruction: ReconConfig::crm() },
        }
    }

    /// The tiny bundle: every stage and layer kind of [`BundleConfig::crm`] at a tiny width,
    /// random weights. Fewer diffusion steps keep a CPU run to seconds; the sampler code is
    /// the same.
    pub fn tiny() -> Self {
        BundleConfig {
            preset: Preset::Tiny,
            random_weights: true,
            defaults: RunDefaults { steps: TINY_STEPS, ..RunDefaults::default() },
            u2net: U2netConfig::tiny(),
            stages: Stages { diffusion: DiffusionConfig::tiny(), reconstruction: ReconConfig::tiny() },
            ..BundleConfig::crm()
        }
    }

    /// One line for logs: the preset, and a warning when the weights are random.
    pub fn summary(&self) -> String {
        if self.random_weights {
            format!("{} bundle (RANDOM weights: outputs are meaningless noise)", self.preset)
        } else {
            format!("{} bundle", self.preset)
        }
    }
}

/// DDIM steps of the tiny bundle.
pub const TINY_STEPS: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    /// Command lines name presets as `config.json` does; an unknown name lists the known ones.
    #[test]
    fn presets_parse_by_name() {
        for preset in Preset::ALL {
            assert_eq!(preset.as_str().parse::<Preset>(), Ok(preset));
            assert_eq!(serde_json::to_string(&preset).unwrap(), format!("\"{}\"", preset.as_str()));
        }
        assert_eq!("huge".parse::<Preset>(), Err("unknown preset \"huge\" (one of: crm, tiny)".to_owned()));
        assert_eq!(Preset::Tiny.config(), BundleConfig::tiny());
    }
}
