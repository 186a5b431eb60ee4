//! The triplane input of the reconstruction network, as upstream's `generate3d` builds it
//! (`inference.py`, `get_tri` in `util/utils.py`, thu-ml/CRM at 4964e36):
//!
//! 1. the six colour views and the six coordinate maps (1536x256 strips) scaled to [0, 1], the
//!    coordinate maps' channels reversed (`ccm[:, :, (2, 1, 0)]`);
//! 2. views re-ordered (the last first: `[5, 0, 1, 2, 3, 4]`);
//! 3. `get_tri(blender=True, scale=1)`: each view rotated/flipped into its plane and laid out as
//!    two rows of three 256x256 tiles, the rows stacked on the channel axis (`[6, 256, 768]`);
//!    for the coordinate maps (`fix=True`) the two channels that do not vary across each
//!    plane are zeroed;
//! 4. colour and coordinates concatenated (`[1, 12, 256, 768]`) and lightly noised at step 20 of
//!    Stable Diffusion 2.1's training schedule (`DDIMScheduler.add_noise` with noise
//!    `randn * 0.5 + 0.5`; upstream draws it unseeded, here from the job's seed).

use image::RgbImage;
use tch::{Device, Kind, Tensor};

use crate::diffusion::noise::NoiseSource;
use crate::PipelineError;

/// The noising step upstream applies before the UNet (`tnew = 20`).
pub const NOISE_STEP: i64 = 20;

/// Size of one view tile.
pub const VIEW: i64 = 256;

/// `[C, H, 6W]` strip -> `[6, C, H, W]` views in upstream's order (`get_imgs`).
fn views(strip: &Tensor) -> Tensor {
    let order = [5, 0, 1, 2, 3, 4];
    Tensor::stack(&order.map(|i| strip.narrow(2, VIEW * i, VIEW)), 0)
}

/// Upstream `get_tri(views, dim=0, blender=True, scale=1, fix=fix)`: `[6, C, H, W]` ->
/// `[2C, H, 3W]`.
fn tri(v: &Tensor, fix: bool) -> Tensor {
    let dims = [1i64, 2];
    let rot = |t: &Tensor, k: i64| t.rot90(k, dims);
    let t0 = rot(&v.get(2), 2);
    let t1 = rot(&v.get(4), 0).flip([2]).flip([1]);
    let t2 = rot(&rot(&v.get(0), 3).flip([2]), 2);
    let t3 = rot(&rot(&v.get(5), 2).flip([2]), 2);
    let t4 = rot(&v.get(1), 2).flip([1]).flip([1]).flip([2]);
    let t5 = rot(&v.get(3), 1).flip([1]).flip([2]);
    if fix {
        // (tile, the channels upstream multiplies by 0)
        for (t, zeroed) in
            [(&t0, [1, 2]), (&t3, [1, 2]), (&t1, [0, 1]), (&t4, [0, 1]), (&t2, [0, 2]), (&t5, [0, 2])]
        {
            for c in zeroed {
                let _ = t.get(c).fill_(0.0);
            }
        }
    }
    let row1 = Tensor::cat(&[&t0, &t1, &t2], 2);
    let row2 = Tensor::cat(&[&t3, &t4, &t5], 2);
    Tensor::cat(&[row1, row2], 0)
}

/// An 8-bit RGB strip as `[3, H, W]` fp32 in [0, 1] (`torch.from_numpy(x) / 255`), channels
/// optionally reversed.
fn strip(img: &RgbImage, reverse_channels: bool) -> Result<Tensor, PipelineError> {
    let (w, h) = img.dimensions();
    if w as i64 != 6 * VIEW || h as i64 != VIEW {
        return Err(PipelineError::Internal(format!(
            "reconstruction expects 6 views of {VIEW}x{VIEW} side by side ({}x{VIEW}), got {w}x{h}",
            6 * VIEW
        )));
    }
    let t = Tensor::from_slice(img.as_raw()).view([h as i64, w as i64, 3]);
    let t = if reverse_channels { t.flip([2]) } else { t };
    Ok((t.to_kind(Kind::Float) / 255.0).permute([2, 0, 1]))
}

/// The noise-free triplane `[1, 12, 256, 768]` of the colour views `rgb` and coordinate maps
/// `ccm` (both 1536x256, as the diffusion stages return them).
pub fn triplane(rgb: &RgbImage, ccm: &RgbImage) -> Result<Tensor, PipelineError> {
    let color = tri(&views(&strip(rgb, false)?), false);
    let xyz = tri(&views(&strip(ccm, true)?), true);
    Ok(Tensor::cat(&[color, xyz], 0).unsqueeze(0))
}

/// `alphas_cumprod` of Stable Diffusion 2.1's scheduler (`scaled_linear`, betas 0.00085 to
/// 0.012, 1000 steps), computed as diffusers does, in fp32 torch ops: `linspace(sqrt(start),
/// sqrt(end))^2`, `cumprod(1 - betas)`.
pub fn sd21_alphas_cumprod() -> Tensor {
    let betas = Tensor::linspace(0.00085f64.sqrt(), 0.012f64.sqrt(), 1000, (Kind::Float, Device::Cpu))
        .pow_tensor_scalar(2);
    (-betas + 1.0).cumprod(0, Kind::Float)
}

/// `DDIMScheduler.add_noise(triplane, noise, 20)`: `sqrt(a) * x + sqrt(1 - a) * noise` with
/// `a = alphas_cumprod[20]`, in fp32 as diffusers computes it.
pub fn add_noise(triplane: &Tensor, noise: &Tensor) -> Tensor {
    let acp = sd21_alphas_cumprod().get(NOISE_STEP);
    let device = triplane.device();
    let sqrt_alpha = acp.pow_tensor_scalar(0.5).to_device(device);
    let sqrt_one_minus = (-&acp + 1.0).pow_tensor_scalar(0.5).to_device(device);
    triplane * sqrt_alpha + noise * sqrt_one_minus
}

/// Upstream's noise `randn_like(triplane) * 0.5 + 0.5`, drawn from `seed`'s own stream (the
/// same on every device), then [`add_noise`].
pub fn noised(triplane: &Tensor, seed: u64) -> Tensor {
    let noise =
        NoiseSource::new(seed, "reconstruction").randn(&triplane.size(), triplane.device()) * 0.5 + 0.5;
    add_noise(triplane, &noise)
}
