//! Stage 2: six canonical-coordinate maps from the reference and stage 1's views.
//!
//! Port of `ImageDreamDiffusionStage2.i2iStage2` (`libs/sample.py`) with the settings of
//! `configs/stage2-v2-snr.yaml` (6 frames, camera views `[1, 2, 3, 4, 5, 0]`, no reference
//! frame, offset noise) and `TwoStagePipeline.stage2_sample` (`pipelines.py`), thu-ml/CRM at
//! 4964e36: the UNet's input is the noisy latent concatenated with the VAE latents of stage 1's
//! six u8 views (zeros for the unconditional branch). The decoded maps keep the channel order
//! the model produces: upstream's `generate3d` reads them as BGR (`ccm[:, :, (2, 1, 0)]`), and
//! so must whoever consumes this stage's output.

use tch::{Device, Tensor};

use super::ddim::Ddim;
use super::noise::NoiseSource;
use super::sampler::{offset_noise_start, sample, to_u8, StageModels};
use super::schedule::NoiseSchedule;
use super::stage1::FrameConfig;
use crate::stages::{Stage, StepCtl};
use crate::PipelineError;

/// The random draws of a stage-2 run, in upstream's order.
pub struct Stage2Noise {
    /// `[F, C, h, w]`: posterior sample noise of the view latents (`pixel_images`).
    pub pixel_images: Tensor,
    /// `[1, C, h, w]`: posterior sample noise of the offset-noise reference latent.
    pub ref_latent: Tensor,
    /// `[F, C, h, w]`: the noise of the start latent.
    pub x_t: Tensor,
}

impl Stage2Noise {
    /// Draws them from `seed` for latents of `[c, h, w]` and `frames` frames.
    pub fn draw(seed: u64, frames: i64, latent: [i64; 3], device: Device) -> Self {
        let mut source = NoiseSource::new(seed, "stage2");
        let [c, h, w] = latent;
        Stage2Noise {
            pixel_images: source.randn(&[frames, c, h, w], device),
            ref_latent: source.randn(&[1, c, h, w], device),
            x_t: source.randn(&[frames, c, h, w], device),
        }
    }
}

/// Stage 2: the models, the frame set and the sampler.
pub struct Stage2 {
    /// UNet (8 input channels), CLIP, VAE and text contexts.
    pub models: StageModels,
    /// Frames and cameras.
    pub frames: FrameConfig,
    /// The noise schedule (for the offset-noise start).
    pub schedule: NoiseSchedule,
    /// The DDIM sampler.
    pub ddim: Ddim,
    /// Guidance scale.
    pub guidance: f64,
}

impl Stage2 {
    /// The final latents `[F, C, h, w]` from the reference (`vae_input` `[1, 3, H, W]` in
    /// [-1, 1], `clip_input`) and stage 1's views as the VAE sees them (`views_input`
    /// `[F, 3, H, W]` in [-1, 1]).
    pub fn latents(
        &self,
        vae_input: &Tensor,
        clip_input: &Tensor,
        views_input: &Tensor,
        noise: &Stage2Noise,
        ctl: &mut StepCtl<'_>,
    ) -> Result<Tensor, PipelineError> {
        let m = &self.models;
        let device = m.device();
        let scale = m.vae.config().scale_factor;
        // 1. image prompt
        let ip = m.clip.forward(&clip_input.to_device(device));
        // 2. view latents (posterior samples)
        let pixel_images =
            m.vae.encode(&views_input.to_device(device)).sample_with(&noise.pixel_images) * scale;
        // 3. start latent
        let x_t = if self.frames.offset_noise {
            let ref_latent =
                m.vae.encode(&vae_input.to_device(device)).sample_with(&noise.ref_latent) * scale;
            offset_noise_start(&self.schedule, &ref_latent, &noise.x_t, m.unet_kind())
        } else {
            noise.x_t.shallow_clone()
        };
        // 4. sampling
        let cond = m.cfg_conditioning(&ip, &self.frames.cameras(device), None, Some(&pixel_images));
        sample(&m.unet, &self.ddim, x_t, &cond, self.guidance, Stage::Stage2, ctl)
    }

    /// The six maps `[6, H, W, 3]` u8, in the model's channel order.
    pub fn views(&self, latents: &Tensor) -> Tensor {
        to_u8(&self.models.vae.decode_latent(latents))
    }
}
