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
//! pipeline's `MultiView` seam; [`load`] loads them from a bundle (and writes the tiny
//! bundle's random weights). [`DiffusionConfig`] is the bundle's `stages.diffusion`.
//!
//! Precision ([`precision`]) follows upstream, which casts the model to fp16 on CUDA and
//! samples under `torch.autocast`: fp16 weights, norms and softmax in fp32; on the CPU
//! everything is fp32. The CLIP tower and the VAE enter CUDA autocast themselves when their
//! weights are fp16 ([`autocast_for`]), so they take inputs of any float dtype.

use serde::{Deserialize, Serialize};

pub mod attention;
pub mod camera;
pub mod clip;
pub mod ddim;
pub mod embeddings;
pub mod load;
pub mod multiview;
pub mod noise;
pub mod precision;
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
pub use precision::{autocast_for, precision_for};
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
    /// with a message, not with a shape panic inside libtorch). Reports every problem found.
    pub fn validate(&self) -> Result<(), InvalidDiffusionConfig> {
        let mut problems = Vec::new();
        let z = self.vae.embed_dim;
        let downscale = self.vae.downscale();
        if self.image_size <= 0 || self.image_size % downscale != 0 {
            problems.push(DiffusionProblem::ImageSize { image_size: self.image_size, downscale });
        }
        for (stage, cfg, in_channels) in [("stage1", &self.stage1, z), ("stage2", &self.stage2, 2 * z)] {
            let (u, f) = (&cfg.unet, &cfg.frames);
            if u.in_channels != in_channels || u.out_channels != z {
                problems.push(DiffusionProblem::UNetChannels {
                    stage,
                    found: (u.in_channels, u.out_channels),
                    expected: (in_channels, z),
                });
            }
            if u.camera_dim != 16 {
                problems.push(DiffusionProblem::CameraDim { stage, camera_dim: u.camera_dim });
            }
            if u.resampler.embedding_dim != self.clip.width {
                problems.push(DiffusionProblem::ResamplerInput {
                    stage,
                    reads: u.resampler.embedding_dim,
                    clip: self.clip.width,
                });
            }
            if u.resampler.output_dim != u.context_dim {
                problems.push(DiffusionProblem::ResamplerOutput {
                    stage,
                    gives: u.resampler.output_dim,
                    context: u.context_dim,
                });
            }
            if f.camera_views.is_empty() || f.camera_views.iter().any(|&v| v > 5) {
                problems.push(DiffusionProblem::CameraViews { stage, views: f.camera_views.clone() });
            }
            if f.ref_position.is_some_and(|r| r >= f.camera_views.len()) {
                problems.push(DiffusionProblem::RefPosition { stage, position: f.ref_position });
            }
        }
        let views = |f: &FrameConfig| f.camera_views.len() - usize::from(f.ref_position.is_some());
        if views(&self.stage1.frames) != views(&self.stage2.frames) {
            problems.push(DiffusionProblem::ViewCounts);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidDiffusionConfig(problems))
        }
    }
}

/// What [`DiffusionConfig::validate`] found wrong: every problem, in the order checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidDiffusionConfig(pub Vec<DiffusionProblem>);

/// One way the parts of a [`DiffusionConfig`] do not fit together. `stage` is `stage1` or
/// `stage2`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffusionProblem {
    /// The views do not map onto whole latents.
    #[error("image_size {image_size} is not a positive multiple of the VAE's downscale {downscale}")]
    ImageSize {
        /// `image_size`.
        image_size: i64,
        /// The VAE's downscale factor.
        downscale: i64,
    },
    /// A UNet's channels do not match the VAE's latents (stage 2 also reads stage 1's views).
    #[error(
        "{stage}: UNet channels {} -> {}, expected {} -> {} (VAE embed_dim {})",
        found.0, found.1, expected.0, expected.1, expected.1
    )]
    UNetChannels {
        /// The stage.
        stage: &'static str,
        /// (in, out) channels of its UNet.
        found: (i64, i64),
        /// (in, out) channels the VAE implies.
        expected: (i64, i64),
    },
    /// Camera vectors are flattened 4x4 matrices.
    #[error("{stage}: camera_dim {camera_dim} (camera vectors are 4x4 matrices, 16)")]
    CameraDim {
        /// The stage.
        stage: &'static str,
        /// Its UNet's `camera_dim`.
        camera_dim: i64,
    },
    /// The Resampler's input is not CLIP's token width.
    #[error("{stage}: Resampler reads {reads}-wide tokens, CLIP gives {clip}")]
    ResamplerInput {
        /// The stage.
        stage: &'static str,
        /// The Resampler's `embedding_dim`.
        reads: i64,
        /// CLIP's width.
        clip: i64,
    },
    /// The Resampler's output is not the cross-attention context width.
    #[error("{stage}: Resampler gives {gives}-wide tokens, the context is {context}")]
    ResamplerOutput {
        /// The stage.
        stage: &'static str,
        /// The Resampler's `output_dim`.
        gives: i64,
        /// The UNet's `context_dim`.
        context: i64,
    },
    /// No camera views, or one outside the canonical six.
    #[error("{stage}: camera views {views:?} (canonical views are 0..=5)")]
    CameraViews {
        /// The stage.
        stage: &'static str,
        /// Its `camera_views`.
        views: Vec<usize>,
    },
    /// The reference frame is not one of the frames.
    #[error("{stage}: reference position {position:?} out of range")]
    RefPosition {
        /// The stage.
        stage: &'static str,
        /// Its `ref_position`.
        position: Option<usize>,
    },
    /// Stage 2 makes one coordinate map per view of stage 1.
    #[error("stage 1 and stage 2 must produce the same number of views")]
    ViewCounts,
}

impl Default for DiffusionConfig {
    fn default() -> Self {
        Self::crm()
    }
}
