//! The diffusion stages' image inputs, built from 8-bit RGB images exactly as upstream builds
//! them from PIL images.
//!
//! - [`vae_input`]: `libs/sample.py`'s `image_transform` (`T.Resize((256, 256))`, `ToTensor`,
//!   `Normalize(0.5, 0.5)`), used for the reference (stage 1's `ip_img`, both stages' offset
//!   noise) and for stage 2's six views;
//! - [`clip_input`]: open_clip 2.7.0's eval transform (`open_clip/transform.py`
//!   `image_transform(is_train=False)`: `Resize(224, BICUBIC)` of the shortest side,
//!   `CenterCrop(224)`, `ToTensor`, `Normalize(OpenAI mean, std)`), which
//!   `FrozenOpenCLIPEmbedder.forward_image` applies to the reference.
//!
//! torchvision resizes PIL images with PIL itself, so the resizes go through the Pillow-exact
//! [`crate::resample`]; `ToTensor` and `Normalize` are float32 division and subtraction, done
//! here in the same order and precision.

use image::RgbImage;
use tch::{Device, Tensor};

use super::clip::ClipVisionConfig;
use crate::resample::{resize_rgb, Filter};
use crate::PipelineError;

/// `T.Resize((size, size))` (bilinear) + `ToTensor` + `Normalize((0.5,) * 3, (0.5,) * 3)`:
/// `[1, 3, size, size]` f32 in [-1, 1] on the CPU.
pub fn vae_input(img: &RgbImage, size: u32) -> Tensor {
    let resized = resize_exact(img, size, size, Filter::Bilinear);
    normalized(&resized, [0.5; 3], [0.5; 3]).unsqueeze(0)
}

/// [`vae_input`] of each of the `n` equal-width views of a side-by-side strip (stage 1's
/// `np_imgs`, split back into the PIL images upstream hands to stage 2): `[n, 3, size, size]`.
pub fn views_input(strip: &RgbImage, n: u32, size: u32) -> Result<Tensor, PipelineError> {
    let (w, h) = strip.dimensions();
    if n == 0 || w % n != 0 {
        return Err(PipelineError::Internal(format!("a {w}x{h} strip does not split into {n} views")));
    }
    let view_w = w / n;
    let views: Vec<Tensor> = (0..n)
        .map(|i| {
            let view = image::imageops::crop_imm(strip, i * view_w, 0, view_w, h).to_image();
            vae_input(&view, size)
        })
        .collect();
    Ok(Tensor::cat(&views, 0))
}

/// open_clip's eval preprocessing at `cfg.image_size`: `[1, 3, S, S]` f32 on the CPU.
pub fn clip_input(img: &RgbImage, cfg: &ClipVisionConfig) -> Tensor {
    let size = cfg.image_size as u32;
    let (w, h) = img.dimensions();
    // 1. torchvision `Resize(size)`: the shortest side to `size`, the other truncated
    //    (`_compute_resized_output_size`); an image already that size is returned as is.
    let (new_w, new_h) = if w <= h {
        (size, (f64::from(size) * f64::from(h) / f64::from(w)) as u32)
    } else {
        ((f64::from(size) * f64::from(w) / f64::from(h)) as u32, size)
    };
    let resized = resize_exact(img, new_w, new_h, Filter::Bicubic);
    // 2. `CenterCrop(size)`: offsets `int(round((dim - size) / 2))`, Python's round (half to
    //    even).
    let offset = |dim: u32| (f64::from(dim - size) / 2.0).round_ties_even() as u32;
    let cropped = image::imageops::crop_imm(&resized, offset(new_w), offset(new_h), size, size).to_image();
    // 3. ToTensor + Normalize
    let mean = cfg.mean.map(|m| m as f32);
    let std = cfg.std.map(|s| s as f32);
    normalized(&cropped, mean, std).unsqueeze(0)
}

/// PIL's `resize`, which returns a copy when the size is unchanged.
fn resize_exact(img: &RgbImage, w: u32, h: u32, filter: Filter) -> RgbImage {
    if img.dimensions() == (w, h) {
        img.clone()
    } else {
        resize_rgb(img, w, h, filter)
    }
}

/// `ToTensor` (`u8 / 255` in f32, HWC -> CHW) then `Normalize` (`(x - mean) / std`, f32).
fn normalized(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Tensor {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut chw = vec![0f32; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            chw[c * plane + i] = (f32::from(px[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    Tensor::from_slice(&chw).view([3, i64::from(h), i64::from(w)]).to_device(Device::Cpu)
}
