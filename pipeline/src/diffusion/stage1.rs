//! Stage 1: six views of the object from the reference image.
//!
//! Port of `ImageDreamDiffusion.i2i` (`libs/sample.py`) with the settings of
//! `configs/nf7_v3_SNR_rd_size_stroke.yaml` (mode `pixel`, 7 frames, camera views
//! `[1, 2, 3, 4, 5, 0, 0]`, reference at position 6, offset noise) and
//! `TwoStagePipeline.stage1_sample` (`pipelines.py`), thu-ml/CRM at 4964e36:
//! 1. CLIP tokens of the reference -> image-prompt context (zeros for the unconditional branch);
//! 2. the reference's VAE latent (a posterior sample) is written over the last frame of each
//!    branch at every UNet call (zeros for the unconditional branch);
//! 3. offset noise: the start latent is noised from the mean of a second posterior sample;
//! 4. 50 DDIM steps with guidance; drop the reference frame, decode the six views, convert to u8.

use tch::{Device, Tensor};

use super::camera::camera_vectors;
use super::ddim::Ddim;
use super::noise::NoiseSource;
use super::sampler::{offset_noise_start, sample, to_u8, StageModels};
use super::schedule::NoiseSchedule;
use crate::stages::{Stage, StepCtl};
use crate::PipelineError;

/// Frames, cameras and sampling settings of one stage (`libs/sample.py` constructor args).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameConfig {
    /// Canonical view index of each frame (`camera_views`).
    pub camera_views: Vec<usize>,
    /// The frame holding the reference (`ref_position`): its camera is zeroed and (stage 1)
    /// its latent replaced by the reference latent.
    pub ref_position: Option<usize>,
    /// Start from offset noise around the reference latent's mean (`offset_noise`).
    pub offset_noise: bool,
}

impl FrameConfig {
    /// Stage 1 (`configs/nf7_v3_SNR_rd_size_stroke.yaml`).
    pub fn crm_stage1() -> Self {
        FrameConfig { camera_views: vec![1, 2, 3, 4, 5, 0, 0], ref_position: Some(6), offset_noise: true }
    }

    /// Stage 2 (`configs/stage2-v2-snr.yaml`).
    pub fn crm_stage2() -> Self {
        FrameConfig { camera_views: vec![1, 2, 3, 4, 5, 0], ref_position: None, offset_noise: true }
    }

    /// Number of frames.
    pub fn num_frames(&self) -> i64 {
        self.camera_views.len() as i64
    }

    /// The `[F, 16]` camera vectors on `device`.
    pub fn cameras(&self, device: Device) -> Tensor {
        camera_vectors(&self.camera_views, self.ref_position, device)
    }
}

/// The random draws of a stage-1 run, in upstream's order.
pub struct Stage1Noise {
    /// `[1, C, h, w]`: posterior sample noise of the reference latent (`ip_img`).
    pub ip_img: Tensor,
    /// `[1, C, h, w]`: posterior sample noise of the offset-noise reference latent.
    pub ref_latent: Tensor,
    /// `[F, C, h, w]`: the noise of the start latent.
    pub x_t: Tensor,
}

impl Stage1Noise {
    /// Draws them from `seed` for latents of `[c, h, w]` and `frames` frames.
    pub fn draw(seed: u64, frames: i64, latent: [i64; 3], device: Device) -> Self {
        let mut source = NoiseSource::new(seed, "stage1");
        let [c, h, w] = latent;
        Stage1Noise {
            ip_img: source.randn(&[1, c, h, w], device),
            ref_latent: source.randn(&[1, c, h, w], device),
            x_t: source.randn(&[frames, c, h, w], device),
        }
    }
}

/// Stage 1: the models, the frame set and the sampler.
pub struct Stage1 {
    /// UNet, CLIP, VAE and text contexts.
    pub models: StageModels,
    /// Frames and cameras.
    pub frames: FrameConfig,
    /// The noise schedule (for the offset-noise start).
    pub schedule: NoiseSchedule,
    /// The DDIM sampler (steps, tables at the model's precision).
    pub ddim: Ddim,
    /// Guidance scale.
    pub guidance: f64,
}

impl Stage1 {
    /// The final latents `[F, C, h, w]` (reference frame included) from the reference as the
    /// VAE sees it (`vae_input` `[1, 3, H, W]` in [-1, 1]) and as CLIP sees it (`clip_input`).
    pub fn latents(
        &self,
        vae_input: &Tensor,
        clip_input: &Tensor,
        noise: &Stage1Noise,
        ctl: &mut StepCtl<'_>,
    ) -> Result<Tensor, PipelineError> {
        let m = &self.models;
        let device = m.device();
        // 1. image prompt
        let ip = m.clip.forward(&clip_input.to_device(device));
        // 2. reference latent: upstream encodes twice and samples each posterior once; the
        //    encoder is deterministic, so one encoding sampled twice is the same.
        let posterior = m.vae.encode(&vae_input.to_device(device));
        let scale = m.vae.config().scale_factor;
        let ip_img = posterior.sample_with(&noise.ip_img) * scale;
        // 3. start latent
        let x_t = if self.frames.offset_noise {
            let ref_latent = posterior.sample_with(&noise.ref_latent) * scale;
            offset_noise_start(&self.schedule, &ref_latent, &noise.x_t, m.unet_kind())
        } else {
            noise.x_t.shallow_clone()
        };
        // 4. sampling
        let cond = m.cfg_conditioning(&ip, &self.frames.cameras(device), Some(&ip_img), None);
        sample(&m.unet, &self.ddim, x_t, &cond, self.guidance, Stage::Stage1, ctl)
    }

    /// The six views `[6, H, W, 3]` u8: drop the reference frame, decode, convert. (Upstream
    /// decodes all seven frames and drops the reference after; the decoder treats each frame
    /// on its own, so decoding only the kept six gives the same views for 6/7 of the work.)
    pub fn views(&self, latents: &Tensor) -> Tensor {
        let kept = match self.frames.ref_position {
            Some(r) => {
                let keep: Vec<i64> = (0..latents.size()[0]).filter(|&i| i != r as i64).collect();
                latents.index_select(0, &Tensor::from_slice(&keep).to_device(latents.device()))
            }
            None => latents.shallow_clone(),
        };
        to_u8(&self.models.vae.decode_latent(&kept))
    }
}
