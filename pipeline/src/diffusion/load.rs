//! The multi-view diffusion in a model bundle: its files, loading them ([`load_multiview`], at
//! the architecture of `stages.diffusion` of `config.json`), and the tiny bundle's random
//! weights ([`write_tiny`]).
//!
//! Bundle files:
//! ```text
//! diffusion_stage1.safetensors  stage 1 (upstream `pixel.pth`): UNet, CLIP visual tower, VAE
//! diffusion_stage2.safetensors  stage 2 (upstream `xyz.pth`):   UNet, CLIP visual tower, VAE
//! constants.safetensors         diffusion.stage{1,2}.{context,uncond_context}: [1, 77, 1024]
//! ```
//! Each stage file holds the keys of upstream's checkpoint under their own names
//! (`model.diffusion_model.*`, `clip_model.model.visual.*`, `vae_model.*`), minus what never
//! runs (the text tower, CLIP's last block, `ln_post`, `proj`). The text contexts of the two
//! fixed prompts (`"3D assets"` and upstream's negative prompt) are computed once by the
//! converter with each stage's own text tower, so the text tower is not part of the port. The
//! camera vectors are computed from the config's `camera_views` by [`super::camera`], which is
//! checked against upstream's `get_camera_for_index`.

use std::collections::HashMap;
use std::path::Path;

use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

use super::multiview::CrmMultiView;
use super::precision::precision_for;
use super::sampler::StageModels;
use super::stage1::Stage1;
use super::stage2::Stage2;
use super::unet::MultiViewUNet;
use super::{clip, vae, AutoencoderKl, ClipVision, Ddim, DiffusionConfig, NoiseSchedule, StageConfig};
use crate::components::{self, Components, CONFIG_FILE, CONSTANTS};
use crate::params::RunDefaults;
use crate::random::{fnv1a, randomize};
use crate::PipelineError;

/// Where the UNet sits in upstream's checkpoints (`LatentDiffusionInterface.model`, a
/// `DiffusionWrapper`).
pub const UNET_PREFIX: &str = "model.diffusion_model.";

/// Bundle component of each stage's weights.
pub const STAGE_COMPONENTS: [&str; 2] = ["diffusion_stage1", "diffusion_stage2"];

/// Deviation of the tiny bundle's random weights (as the parity fixtures', `common.randomize`).
const TINY_STD: f64 = 0.2;

/// Names of a stage's text contexts in [`CONSTANTS`]: (prompt, negative prompt).
pub fn context_keys(stage: usize) -> (String, String) {
    (format!("diffusion.stage{stage}.context"), format!("diffusion.stage{stage}.uncond_context"))
}

/// `root / "a" / "b"` for a dotted checkpoint prefix `"a.b."`.
fn under<'a>(root: nn::Path<'a>, prefix: &str) -> nn::Path<'a> {
    prefix.trim_end_matches('.').split('.').fold(root, |path, part| path / part)
}

/// One stage's networks, declared under their checkpoint keys in `vs`.
pub fn build(
    vs: &VarStore,
    cfg: &DiffusionConfig,
    stage: &StageConfig,
) -> (MultiViewUNet, ClipVision, AutoencoderKl) {
    let unet = MultiViewUNet::new(&under(vs.root(), UNET_PREFIX), &stage.unet);
    let clip = ClipVision::new(&under(vs.root(), clip::CHECKPOINT_PREFIX), &cfg.clip);
    let vae = AutoencoderKl::new(&under(vs.root(), vae::CHECKPOINT_PREFIX), &cfg.vae);
    (unet, clip, vae)
}

/// A stage's models, loaded strictly from its component in `files`, with its text contexts.
fn load_stage(
    files: &Components,
    cfg: &DiffusionConfig,
    index: usize,
    constants: &mut HashMap<String, Tensor>,
    device: Device,
) -> Result<StageModels, PipelineError> {
    let stage = if index == 1 { &cfg.stage1 } else { &cfg.stage2 };
    let mut vs = VarStore::new(device);
    vs.set_kind(precision_for(device));
    let (unet, clip, vae) = build(&vs, cfg, stage);
    files.load(&mut vs, STAGE_COMPONENTS[index - 1])?;
    let shape = [1, cfg.text_tokens, stage.unet.context_dim];
    let (cond_key, uncond_key) = context_keys(index);
    let mut take = |key: &str| -> Result<Tensor, PipelineError> {
        let path = files.path(CONSTANTS);
        let t = constants.remove(key).ok_or_else(|| PipelineError::Weights {
            path: path.clone(),
            reason: format!("missing tensor {key}"),
        })?;
        if t.size() != shape {
            return Err(PipelineError::Weights {
                path,
                reason: format!("{key}: file {:?}, expected {shape:?}", t.size()),
            });
        }
        Ok(t.to_kind(Kind::Float).to_device(device))
    };
    Ok(StageModels { unet, clip, vae, context: take(&cond_key)?, uncond_context: take(&uncond_key)? })
}

/// Writes the tiny bundle's diffusion files into `dir`: both stages' networks at `cfg`'s size
/// (safetensors named [`STAGE_COMPONENTS`]) and random stand-ins for the text contexts, random
/// weights drawn from `seed` (see [`randomize`]).
pub fn write_tiny(cfg: &DiffusionConfig, seed: u64, dir: &Path) -> Result<(), PipelineError> {
    let _guard = tch::no_grad_guard();
    for (component, stage) in STAGE_COMPONENTS.iter().zip([&cfg.stage1, &cfg.stage2]) {
        let vs = VarStore::new(Device::Cpu);
        let _models = build(&vs, cfg, stage);
        randomize(&vs, seed ^ fnv1a(component.as_bytes()), TINY_STD);
        components::save_component(dir, component, &vs)?;
    }
    // Random stand-ins for the text contexts: unit-variance tokens like the real ones.
    let vs = VarStore::new(Device::Cpu);
    for (index, stage) in [(1, &cfg.stage1), (2, &cfg.stage2)] {
        let (cond, uncond) = context_keys(index);
        for key in [cond, uncond] {
            let (prefix, leaf) = key.rsplit_once('.').expect("a dotted key");
            let _ = under(vs.root(), prefix).zeros(leaf, &[1, cfg.text_tokens, stage.unet.context_dim]);
        }
    }
    randomize(&vs, seed ^ fnv1a(CONSTANTS.as_bytes()), 1.0);
    components::save_component(dir, CONSTANTS, &vs)
}

/// Both stages at `cfg`'s architecture, weights loaded strictly from `files`, sampling with
/// the bundle's run `defaults`.
pub fn load_multiview(
    files: &Components,
    cfg: &DiffusionConfig,
    defaults: &RunDefaults,
    device: Device,
) -> Result<CrmMultiView, PipelineError> {
    cfg.validate().map_err(|e| PipelineError::Internal(format!("diffusion config: {e}")))?;
    if defaults.eta != 0.0 {
        return Err(PipelineError::Bundle {
            path: files.dir().join(CONFIG_FILE),
            reason: format!(
                "defaults.eta is {}: the DDIM sampler implements eta 0 (upstream's)",
                defaults.eta
            ),
        });
    }
    let _guard = tch::no_grad_guard();
    let mut constants: HashMap<String, Tensor> =
        files.read(CONSTANTS)?.into_iter().filter(|(name, _)| name.starts_with("diffusion.")).collect();
    let stage1 = load_stage(files, cfg, 1, &mut constants, device)?;
    let stage2 = load_stage(files, cfg, 2, &mut constants, device)?;
    if !constants.is_empty() {
        let mut names: Vec<_> = constants.into_keys().collect();
        names.sort();
        return Err(PipelineError::Weights {
            path: files.path(CONSTANTS),
            reason: format!("unexpected tensor(s): {}", names.join(", ")),
        });
    }
    assemble(cfg.clone(), [stage1, stage2], defaults.steps, defaults.guidance_scale, device)
}

/// Both stages at `cfg`'s size with libtorch's default random initialisation and random text
/// contexts, for benchmarks of the real architecture without its weights (outputs are noise).
pub fn random_multiview(
    cfg: DiffusionConfig,
    device: Device,
    steps: u32,
    guidance: f64,
) -> Result<CrmMultiView, PipelineError> {
    cfg.validate().map_err(|e| PipelineError::Internal(e.to_string()))?;
    let _guard = tch::no_grad_guard();
    let stage = |stage: &StageConfig| {
        let mut vs = VarStore::new(device);
        vs.set_kind(precision_for(device));
        let (unet, clip, vae) = build(&vs, &cfg, stage);
        let context = |_| Tensor::randn([1, cfg.text_tokens, stage.unet.context_dim], (Kind::Float, device));
        StageModels { unet, clip, vae, context: context(0), uncond_context: context(1) }
    };
    let models = [stage(&cfg.stage1), stage(&cfg.stage2)];
    assemble(cfg, models, steps, guidance, device)
}

fn assemble(
    cfg: DiffusionConfig,
    [stage1_models, stage2_models]: [StageModels; 2],
    steps: u32,
    guidance: f64,
    device: Device,
) -> Result<CrmMultiView, PipelineError> {
    let schedule = NoiseSchedule::new(&cfg.schedule);
    let ddim = Ddim::new(&schedule, steps as usize, precision_for(device))?;
    let stage1 = Stage1 {
        models: stage1_models,
        frames: cfg.stage1.frames.clone(),
        schedule: schedule.clone(),
        ddim: ddim.clone(),
        guidance,
    };
    let stage2 =
        Stage2 { models: stage2_models, frames: cfg.stage2.frames.clone(), schedule, ddim, guidance };
    Ok(CrmMultiView::new(cfg, stage1, stage2))
}
