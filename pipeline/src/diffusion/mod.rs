//! The two-stage multi-view diffusion of CRM (ImageDream, Wang & Shi 2023, as used by thu-ml/CRM
//! at 4964e36, `imagedream/` and `libs/sample.py`).
//!
//! One concept per file. The denoiser: [`unet`] (both stages' multi-view UNets) with
//! [`attention`], [`resblock`], [`embeddings`], [`camera`] and the image-prompt [`resampler`].
//! Encoders, decoders and sampler math:
//! - [`clip`]: the OpenCLIP ViT-H/14 visual tower up to its penultimate block (image prompt);
//! - [`vae`]: the SD 2.1 AutoencoderKL (reference/view latents in, generated latents out);
//! - [`schedule`], [`ddim`]: the zero-terminal-SNR noise schedule and the DDIM sampler;
//! - (to come) `transforms`: reference image -> VAE input and -> CLIP input, as upstream builds them.
//!
//! The stages: [`sampler`] (the guided DDIM loop, offset noise, u8 conversion), [`stage1`] (six
//! views from the reference), [`stage2`] (six coordinate maps from the reference and the views),
//! with seeded, device-independent noise from [`noise`].
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
pub mod noise;
pub mod resampler;
pub mod resblock;
pub mod sampler;
pub mod schedule;
pub mod stage1;
pub mod stage2;
pub mod unet;
pub mod vae;

pub use clip::{ClipVision, ClipVisionConfig};
pub use ddim::{Ddim, Scheduler};
pub use schedule::{NoiseSchedule, ScheduleConfig};
pub use vae::{AutoencoderKl, DiagonalGaussian, VaeConfig};

/// Hyper-parameters of the diffusion stages' encoders, decoders and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffusionConfig {
    /// The image-prompt encoder.
    pub clip: ClipVisionConfig,
    /// The latent autoencoder.
    pub vae: VaeConfig,
    /// Noise schedule and sampler.
    pub schedule: ScheduleConfig,
}

impl DiffusionConfig {
    /// CRM's values: `imagedream/configs/sd_v2_base_ipmv_zero_SNR.yaml` (both stages share it)
    /// and open_clip's `ViT-H-14.json`.
    pub fn crm() -> Self {
        DiffusionConfig {
            clip: ClipVisionConfig::crm(),
            vae: VaeConfig::crm(),
            schedule: ScheduleConfig::crm(),
        }
    }

    /// The same architecture at a tiny width (random-weight tiny bundle, CPU tests). Image sizes
    /// and token counts are CRM's (224 -> 257 CLIP tokens, 256 -> 32x32 latents), so the stages
    /// around these modules see the shapes they will see with real weights.
    pub fn tiny() -> Self {
        DiffusionConfig {
            clip: ClipVisionConfig::tiny(),
            vae: VaeConfig::tiny(),
            schedule: ScheduleConfig::crm(),
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
