//! The parameters of one run: the bundle's defaults ([`RunDefaults`], `defaults` in its
//! `config.json`) with whatever a client chose for its job in their place.
//!
//! [`crate::Pipeline::default_params`] gives the defaults, which reproduce the output of a run
//! without options byte for byte; a caller overrides fields and hands the result to
//! [`crate::Pipeline::run`]. [`RunParams::check`] bounds every field, so a value the gateway
//! should have refused fails the job cleanly instead of reaching libtorch.

use serde::{Deserialize, Serialize};

use crate::PipelineError;

/// Texture sizes the export bakes at (upstream's is 1024).
pub const TEXTURE_SIZES: [u32; 3] = [512, 1024, 2048];

/// Texture size of a job without options, as upstream's `res=(1024, 1024)`.
pub const TEXTURE_SIZE: u32 = 1024;

/// Fewest faces a decimation target may ask for.
pub const MIN_FACES: u32 = 500;

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

/// Background removal of the input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// Upstream's rule: an input with transparency keeps its alpha; any other is cut out by
    /// U-2-Net.
    Auto,
    /// Cut out by U-2-Net even when the input has transparency (its alpha is multiplied by the
    /// mask, as rembg's `force=True`).
    On,
    /// Never cut out: the input as it is (its own alpha, if any, still composites it on grey).
    Off,
}

/// Everything one run can vary.
#[derive(Debug, Clone, PartialEq)]
pub struct RunParams {
    /// Sampling seed (diffusion noise and the triplane's noising).
    pub seed: u64,
    /// Classifier-free guidance scale of both diffusion stages.
    pub guidance: f64,
    /// DDIM steps of both diffusion stages.
    pub steps: u32,
    /// Background removal.
    pub background: Background,
    /// Width and height of the baked texture, one of [`TEXTURE_SIZES`].
    pub texture: u32,
    /// Decimate the mesh to at most this many faces before unwrapping (`None`: keep all).
    pub faces: Option<u32>,
    /// Also export the mesh as binary glTF (`output3d.glb`, after the zip).
    pub glb: bool,
}

impl RunParams {
    /// The bundle's defaults (`defaults` of its config): upstream's run, exactly what a job
    /// without options gets.
    pub fn defaults(defaults: &RunDefaults) -> Self {
        RunParams {
            seed: defaults.seed,
            guidance: defaults.guidance_scale,
            steps: defaults.steps,
            background: Background::Auto,
            texture: TEXTURE_SIZE,
            faces: None,
            glb: false,
        }
    }

    /// Checks every field is one the pipeline can run (the gateway's ranges are narrower).
    pub fn check(&self) -> Result<(), PipelineError> {
        let bad = |what: String| Err(PipelineError::InvalidParams(what));
        if !(1..=500).contains(&self.steps) {
            return bad(format!("steps must be in 1..=500, got {}", self.steps));
        }
        if !self.guidance.is_finite() || self.guidance < 0.0 {
            return bad(format!("guidance must be a finite number >= 0, got {}", self.guidance));
        }
        if !TEXTURE_SIZES.contains(&self.texture) {
            return bad(format!("texture must be 512, 1024 or 2048, got {}", self.texture));
        }
        if self.faces.is_some_and(|f| f < MIN_FACES) {
            return bad(format!("faces must be at least {MIN_FACES}, got {:?}", self.faces));
        }
        Ok(())
    }
}
