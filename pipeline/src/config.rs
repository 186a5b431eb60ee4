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
use crate::recon::{ReconConfig, ReconConfigError};

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
    /// Run parameters (upstream's hard-coded defaults; clients cannot change them).
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
    /// Its name in `config.json` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Crm => "crm",
            Preset::Tiny => "tiny",
        }
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

/// Run parameters: upstream `app.py` defaults (seed, guidance, steps from its gradio widgets;
/// eta from `pipelines.py` `stage1_sample`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDefaults {
    /// Sampling seed. Upstream shows 1234 but never applies it; we do, so a re-run (a retried
    /// job) produces identical bytes.
    pub seed: u64,
    /// Classifier-free guidance scale (`app.py` 5.5; `run.py` uses 5.0).
    pub guidance_scale: f64,
    /// DDIM steps.
    pub steps: u32,
    /// DDIM eta (0: deterministic).
    pub eta: f64,
}

impl Default for RunDefaults {
    fn default() -> Self {
        RunDefaults { seed: 1234, guidance_scale: 5.5, steps: 50, eta: 0.0 }
    }
}

/// Preprocessing: upstream `preprocess_image(image, "Auto Remove background", 1.0, "#7F7F7F")`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Remove the background with U-2-Net when the input has no transparency.
    pub remove_background: bool,
    /// Share of the square the content is scaled to (`do_resize_content`; 1.0 = no-op).
    pub foreground_ratio: f64,
    /// Grey level of the background composited under the object (`#7F7F7F`).
    pub background: u8,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig { remove_background: true, foreground_ratio: 1.0, background: 127 }
    }
}

/// One RSU block of U-2-Net: `mid` and `out` channels (its input count follows from the graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsuWidth {
    /// Channels inside the block.
    pub mid: i64,
    /// Channels out of the block.
    pub out: i64,
}

const fn rsu(mid: i64, out: i64) -> RsuWidth {
    RsuWidth { mid, out }
}

/// U-2-Net (Qin et al. 2020, `U-2-Net/model/u2net.py` `U2NET`) and rembg's `u2net` session
/// (`rembg/sessions/u2net.py`, `sessions/base.py` `normalize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct U2netConfig {
    /// Side of the square network input (rembg: 320, Lanczos).
    pub input_size: u32,
    /// Input channels (3).
    pub in_ch: i64,
    /// Output channels (1).
    pub out_ch: i64,
    /// Encoder blocks `stage1..stage6` (RSU7, RSU6, RSU5, RSU4, RSU4F, RSU4F).
    pub encoder: [RsuWidth; 6],
    /// Decoder blocks `stage1d..stage5d` (RSU7, RSU6, RSU5, RSU4, RSU4F).
    pub decoder: [RsuWidth; 5],
    /// ImageNet mean subtracted after dividing by the image maximum.
    pub mean: [f64; 3],
    /// ImageNet std.
    pub std: [f64; 3],
}

impl U2netConfig {
    /// `U2NET(3, 1)`: the 176 MB model rembg ships as `u2net.onnx`.
    pub fn u2net() -> Self {
        U2netConfig {
            input_size: 320,
            in_ch: 3,
            out_ch: 1,
            encoder: [rsu(32, 64), rsu(32, 128), rsu(64, 256), rsu(128, 512), rsu(256, 512), rsu(256, 512)],
            decoder: [rsu(16, 64), rsu(32, 64), rsu(64, 128), rsu(128, 256), rsu(256, 512)],
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// The same graph with 2-4 channels per block (random weights; for tests).
    pub fn tiny() -> Self {
        U2netConfig {
            encoder: [rsu(2, 4), rsu(2, 4), rsu(2, 4), rsu(2, 4), rsu(2, 4), rsu(2, 4)],
            decoder: [rsu(2, 4), rsu(2, 4), rsu(2, 4), rsu(2, 4), rsu(2, 4)],
            ..U2netConfig::u2net()
        }
    }
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
