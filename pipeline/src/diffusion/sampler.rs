//! What both diffusion stages share: the models of a stage, the classifier-free-guided DDIM
//! loop, the offset-noise start and the conversion of decoded views to 8-bit images.
//!
//! Port of the sampling half of `ImageDreamDiffusion.i2i` / `ImageDreamDiffusionStage2.i2iStage2`
//! (`libs/sample.py`) and of `DDIMSampler.ddim_sampling` / `p_sample_ddim`
//! (`imagedream/ldm/models/diffusion/ddim.py`), thu-ml/CRM at 4964e36. The loop keeps
//! everything on the device: no value is read back to the host until the views are decoded.

use tch::{Device, Kind, Tensor};

use super::ddim::{guide, Scheduler};
use super::schedule::NoiseSchedule;
use super::unet::{Conditioning, MultiViewUNet};
use super::{AutoencoderKl, ClipVision};
use crate::stages::{Stage, StepCtl};
use crate::PipelineError;

/// The models and constants of one stage (upstream: one `LatentDiffusionInterface`).
pub struct StageModels {
    /// The multi-view UNet.
    pub unet: MultiViewUNet,
    /// The image-prompt encoder (OpenCLIP visual tower, penultimate tokens).
    pub clip: ClipVision,
    /// The latent autoencoder.
    pub vae: AutoencoderKl,
    /// `[1, 77, context_dim]`: text context of the prompt `"3D assets"` (precomputed: the
    /// text tower is not part of the port).
    pub context: Tensor,
    /// `[1, 77, context_dim]`: text context of upstream's fixed negative prompt.
    pub uncond_context: Tensor,
}

impl StageModels {
    /// The device the UNet lives on.
    pub fn device(&self) -> Device {
        self.context.device()
    }

    /// The dtype of the UNet's weights (fp16 on CUDA): upstream casts the whole model, its
    /// schedule buffers included, to it.
    pub fn unet_kind(&self) -> Kind {
        self.unet.kind()
    }

    /// The conditioning of a CFG batch `[uncond x F, cond x F]` as `i2i` and `p_sample_ddim`
    /// build it: text contexts of the negative and the positive prompt, each followed by the
    /// Resampler's tokens of zeros (uncond) or of the CLIP tokens `ip` `[1, T, W]` (cond);
    /// `cameras` `[F, 16]` for both halves; `ip_img` / `pixel_images` with zeros for the
    /// unconditional half.
    pub fn cfg_conditioning(
        &self,
        ip: &Tensor,
        cameras: &Tensor,
        ip_img: Option<&Tensor>,
        pixel_images: Option<&Tensor>,
    ) -> Conditioning {
        let f = cameras.size()[0];
        let text = Tensor::cat(&[&self.uncond_context, &self.context], 0);
        let ip = Tensor::cat(&[ip.zeros_like(), ip.shallow_clone()], 0);
        // Upstream repeats the conditioning per frame and runs the Resampler on every copy;
        // the copies are equal, so it runs once per branch here and is repeated after.
        let context = self.unet.image_context(&text, &ip).repeat_interleave_self_int(f, 0, None);
        let with_zeros = |t: &Tensor| Tensor::cat(&[t.zeros_like(), t.shallow_clone()], 0);
        Conditioning {
            context,
            camera: cameras.repeat([2, 1]),
            num_frames: f,
            ip_img: ip_img.map(with_zeros),
            pixel_images: pixel_images.map(with_zeros),
        }
    }
}

/// The guided noise prediction at training timestep `t` for latents `xs` `[F, C, h, w]`: the
/// UNet runs once on `cat(xs, xs)` with the CFG conditioning; `uncond + scale * (cond -
/// uncond)`.
pub fn guided_eps(unet: &MultiViewUNet, xs: &Tensor, t: i64, cond: &Conditioning, scale: f64) -> Tensor {
    let x_in = Tensor::cat(&[xs, xs], 0);
    let t_in = Tensor::full([x_in.size()[0]], t, (Kind::Int64, xs.device()));
    guide(&unet.forward(&x_in, &t_in, cond), scale)
}

/// The DDIM loop from `x_t` over every timestep of `scheduler`, with guidance `scale`.
/// Checks for cancellation before each step and reports each finished step.
pub fn sample(
    unet: &MultiViewUNet,
    scheduler: &dyn Scheduler,
    x_t: Tensor,
    cond: &Conditioning,
    scale: f64,
    stage: Stage,
    ctl: &mut StepCtl<'_>,
) -> Result<Tensor, PipelineError> {
    let timesteps = scheduler.timesteps();
    let total = timesteps.len() as u32;
    let mut xs = x_t;
    for (index, &t) in timesteps.iter().enumerate() {
        ctl.check()?;
        let eps = guided_eps(unet, &xs, t, cond, scale);
        xs = scheduler.step(&eps, index, &xs);
        ctl.progress(stage, index as u32 + 1, total);
    }
    Ok(xs)
}

/// Offset noise (`offset_noise: true` in both CRM configs): the start latent is
/// `q_sample(ones * mean(ref_latent), T - 1)`, the mean taken per channel over the reference
/// latent `[1, C, h, w]`; `noise` is `[F, C, h, w]`. With zero terminal SNR this is the noise
/// itself up to the schedule's rounding, as upstream computes it.
pub fn offset_noise_start(
    schedule: &NoiseSchedule,
    ref_latent: &Tensor,
    noise: &Tensor,
    precision: Kind,
) -> Tensor {
    let ref_mean = ref_latent.mean_dim(&[-1i64, -2][..], true, Kind::Float);
    let x0 = noise.ones_like() * ref_mean;
    schedule.q_sample(&x0, noise, schedule.len() - 1, precision)
}

/// Decoded images `[N, 3, H, W]` (about [-1, 1]) -> `[N, H, W, 3]` u8 as upstream converts
/// them: `clamp((x + 1) / 2, 0, 1) * 255` in the decoder's dtype (fp16 on CUDA), truncated.
pub fn to_u8(images: &Tensor) -> Tensor {
    let unit = ((images + 1.0) / 2.0).clamp(0.0, 1.0);
    (unit * 255.0).to_kind(Kind::Uint8).permute([0, 2, 3, 1])
}

/// `[N, H, W, 3]` u8 views -> one `[H, N W, 3]` strip, left to right (`np.concatenate(.., 1)`),
/// copied to the host as an image.
pub fn strip(views: &Tensor) -> Result<image::RgbImage, PipelineError> {
    let (n, h, w, c) = views.size4().map_err(PipelineError::Torch)?;
    if c != 3 {
        return Err(PipelineError::Internal(format!("views have {c} channels, expected 3")));
    }
    let strip = views.permute([1, 0, 2, 3]).reshape([h, n * w * 3]).to_device(Device::Cpu).contiguous();
    let bytes = Vec::<u8>::try_from(strip.view([-1])).map_err(PipelineError::Torch)?;
    image::RgbImage::from_raw((n * w) as u32, h as u32, bytes)
        .ok_or_else(|| PipelineError::Internal("strip buffer size mismatch".into()))
}
