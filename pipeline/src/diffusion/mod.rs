//! The two-stage multi-view diffusion of CRM (ImageDream, Wang & Shi 2023, as used by thu-ml/CRM
//! at 4964e36, `imagedream/` and `libs/sample.py`).
//!
//! One concept per file. The denoiser: [`unet`] (both stages' multi-view UNets) with
//! [`attention`], [`resblock`], [`embeddings`], [`camera`] and the image-prompt [`resampler`].
//! Encoders, decoders and sampler math:
//! - [`clip`]: the OpenCLIP ViT-H/14 visual tower up to its penultimate block (image prompt);
//! - [`vae`]: the SD 2.1 AutoencoderKL (reference/view latents in, generated latents out);
//! - [`schedule`], [`ddim`]: the zero-terminal-SNR noise schedule and the DDIM sampler;
//! - [`transforms`]: reference image -> VAE input and -> CLIP input, as upstream builds them.
//!
//! The stages: [`sampler`] (the guided DDIM loop, offset noise, u8 conversion), [`stage1`] (six
//! views from the reference), [`stage2`] (six coordinate maps from the reference and the views),
//! with seeded, device-independent noise from [`noise`]. [`multiview`] runs both behind the
//! pipeline's `MultiView` seam; [`provider`] registers them with the pipeline (config, bundle
//! files, tiny weights, loading).
//!
//! Precision follows upstream, which casts the model to fp16 on CUDA and samples under
//! `torch.autocast`: fp16 weights, norms and softmax in fp32; on the CPU everything is fp32. The
//! CLIP tower and the VAE enter CUDA autocast themselves when their weights are fp16
//! ([`autocast_for`]), so they take inputs of any float dtype.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

pub mod attention;
pub mod camera;
pub mod clip;
pub mod ddim;
pub mod embeddings;
pub mod multiview;
pub mod noise;
pub mod provider;
pub mod resampler;
pub mod resblock;
pub mod sampler;
pub mod schedule;
pub mod stage1;
pub mod stage2;
pub mod transforms;
pub mod unet;
pub mod vae;

pub use clip::{ClipVision, ClipVisionConfig};
pub use ddim::{Ddim, Scheduler};
pub use schedule::{NoiseSchedule, ScheduleConfig};
pub use stage1::FrameConfig;
pub use unet::UNetConfig;
pub use vae::{AutoencoderKl, DiagonalGaussian, VaeConfig};

/// The `diffusion` stage's slot of the bundle config: both stages' architectures and what
/// they share. Run parameters (seed, guidance, steps, eta) are the bundle's `defaults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionConfig {
    /// Side of each generated view and of the VAE input (`image_size=256` of the samplers in
    /// `libs/sample.py`); the latents are `image_size / 8` square.
    pub image_size: i64,
    /// Tokens of the precomputed text contexts (OpenCLIP's context length, 77).
    pub text_tokens: i64,
    /// The image-prompt encoder (each stage holds its own copy, as upstream's checkpoints do).
    pub clip: ClipVisionConfig,
    /// The latent autoencoder (each stage holds its own copy).
    pub vae: VaeConfig,
    /// The training noise schedule.
    pub schedule: ScheduleConfig,
    /// Stage 1: six views from the reference.
    pub stage1: StageConfig,
    /// Stage 2: six coordinate maps from the reference and the views.
    pub stage2: StageConfig,
}

/// One stage: its UNet and its frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// The multi-view UNet.
    pub unet: UNetConfig,
    /// Frames, cameras, reference position, offset noise.
    pub frames: FrameConfig,
}

impl DiffusionConfig {
    /// CRM's values: `imagedream/configs/sd_v2_base_ipmv_zero_SNR.yaml` (stage 1; the schedule,
    /// VAE and CLIP of both stages), `imagedream/configs/sd_v2_base_ipmv_chin8_zero_snr.yaml`
    /// (stage 2: the same with 8 input channels), `configs/nf7_v3_SNR_rd_size_stroke.yaml` and
    /// `configs/stage2-v2-snr.yaml` (frames), open_clip's `ViT-H-14.json` and `libs/sample.py`
    /// (image size 256).
    pub fn crm() -> Self {
        DiffusionConfig {
            image_size: 256,
            text_tokens: 77,
            clip: ClipVisionConfig::crm(),
            vae: VaeConfig::crm(),
            schedule: ScheduleConfig::crm(),
            stage1: StageConfig { unet: UNetConfig::crm_stage1(), frames: FrameConfig::crm_stage1() },
            stage2: StageConfig { unet: UNetConfig::crm_stage2(), frames: FrameConfig::crm_stage2() },
        }
    }

    /// The same architecture at a tiny width (random-weight tiny bundle, CPU tests): every
    /// layer kind (UNet levels with and without transformers, down/up sampling, the Resampler,
    /// camera and time embeddings; the VAE's four levels), few channels. Image sizes, token
    /// counts, frames and schedule are CRM's (224 -> 257 CLIP tokens, 256 -> 32x32 latents, 77
    /// text tokens), so the stages see the shapes they see with real weights.
    pub fn tiny() -> Self {
        let clip = ClipVisionConfig::tiny();
        let clip_width = clip.width;
        let unet = |in_channels| UNetConfig {
            in_channels,
            out_channels: 4,
            model_channels: 32,
            // Transformers at the coarser level only: cross-frame self-attention at 32x32 (7168
            // tokens) would be most of a CPU run; at 16x16 it is 1792 tokens.
            attention_resolutions: vec![2],
            num_res_blocks: 1,
            channel_mult: vec![1, 2],
            num_head_channels: 16,
            transformer_depth: 1,
            context_dim: 32,
            camera_dim: 16,
            ip_weight: 1.0,
            resampler: resampler::ResamplerConfig {
                dim: 32,
                depth: 2,
                dim_head: 16,
                heads: 2,
                num_queries: 16,
                embedding_dim: clip_width,
                output_dim: 32,
                ff_mult: 4,
            },
        };
        DiffusionConfig {
            clip,
            vae: VaeConfig::tiny(),
            stage1: StageConfig { unet: unet(4), frames: FrameConfig::crm_stage1() },
            stage2: StageConfig { unet: unet(8), frames: FrameConfig::crm_stage2() },
            ..Self::crm()
        }
    }

    /// The latent shape `[C, h, w]` of one frame.
    pub fn latent_shape(&self) -> [i64; 3] {
        let side = self.image_size / self.vae.downscale();
        [self.vae.embed_dim, side, side]
    }

    /// Checks that the parts fit together (a hand-edited or mismatched config fails at load
    /// with a message, not with a shape panic inside libtorch).
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let z = self.vae.embed_dim;
        if self.image_size <= 0 || self.image_size % self.vae.downscale() != 0 {
            problems.push(format!(
                "image_size {} is not a positive multiple of the VAE's downscale {}",
                self.image_size,
                self.vae.downscale()
            ));
        }
        for (name, stage, in_channels) in [("stage1", &self.stage1, z), ("stage2", &self.stage2, 2 * z)] {
            let (u, f) = (&stage.unet, &stage.frames);
            if u.in_channels != in_channels || u.out_channels != z {
                problems.push(format!(
                    "{name}: UNet channels {} -> {}, expected {in_channels} -> {z} (VAE embed_dim {z})",
                    u.in_channels, u.out_channels
                ));
            }
            if u.camera_dim != 16 {
                problems.push(format!(
                    "{name}: camera_dim {} (camera vectors are 4x4 matrices, 16)",
                    u.camera_dim
                ));
            }
            if u.resampler.embedding_dim != self.clip.width {
                problems.push(format!(
                    "{name}: Resampler reads {}-wide tokens, CLIP gives {}",
                    u.resampler.embedding_dim, self.clip.width
                ));
            }
            if u.resampler.output_dim != u.context_dim {
                problems.push(format!(
                    "{name}: Resampler gives {}-wide tokens, the context is {}",
                    u.resampler.output_dim, u.context_dim
                ));
            }
            if f.camera_views.is_empty() || f.camera_views.iter().any(|&v| v > 5) {
                problems
                    .push(format!("{name}: camera views {:?} (canonical views are 0..=5)", f.camera_views));
            }
            if f.ref_position.is_some_and(|r| r >= f.camera_views.len()) {
                problems.push(format!("{name}: reference position {:?} out of range", f.ref_position));
            }
        }
        let views = |f: &FrameConfig| f.camera_views.len() - usize::from(f.ref_position.is_some());
        if views(&self.stage1.frames) != views(&self.stage2.frames) {
            problems.push("stage 1 and stage 2 must produce the same number of views".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        Self::crm()
    }
}

/// Runs `f` the way upstream runs its diffusion model on CUDA: `TwoStagePipeline` casts the
/// model to fp16 and samples under `torch.autocast`, so convolutions and matmuls run in fp16
/// while GroupNorm, LayerNorm and softmax run in fp32. Autocast is entered when `weight` (any
/// weight of the module) is half precision on a CUDA device; otherwise `f` runs as is (fp32).
pub fn autocast_for<T>(weight: &Tensor, f: impl FnOnce() -> T) -> T {
    if weight.kind() == Kind::Half && weight.device().is_cuda() {
        tch::autocast(true, f)
    } else {
        f()
    }
}
