//! Preprocessing, exactly as upstream's `preprocess_image(image, "Auto Remove background", 1.0,
//! (127, 127, 127))` (thu-ml/CRM `app.py`), with rembg 2.0's `remove` and `u2net` session.
//!
//! Which path runs: `app.py` hands gradio's RGBA image to `remove_background(image, session,
//! force_remove=True)`. The function's own flag is named `force`, so `force_remove` lands in
//! `**rembg_kwargs` (and rembg ignores it): `force` stays false. Hence an RGBA input with any
//! alpha < 255 keeps its alpha (composited onto transparent black, which only zeroes fully
//! transparent pixels) and U-2-Net never runs on it; every other input gets U-2-Net. We follow
//! that, as the intended behaviour.
//!
//! Steps (each a function here, each testable on its own):
//! 1. [`decode`]: any supported format, EXIF orientation applied (rembg's `exif_transpose`),
//!    converted to RGBA like gradio's `image_mode="RGBA"`.
//! 2. [`has_transparency`] ? [`clear_transparent`] : U-2-Net mask ([`u2net_input`], the
//!    network, [`mask_from_prediction`]) and [`naive_cutout`].
//! 3. [`resize_content`] (foreground ratio; identity at 1.0), [`expand_to_square`] (centred,
//!    floor offsets), [`add_background`] (Pillow's integer `alpha_composite` onto grey, then
//!    RGB).
//!
//! Note: the U-2-Net path premultiplies the colours by the mask (naive cutout) and the final
//! composite multiplies by the same alpha again, so edge pixels are darkened twice. That is
//! what upstream does and what its diffusion model was run on, so we keep it.

use std::io::Cursor;
use std::path::Path;
use std::sync::Mutex;

use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::components::{Components, U2NET};
use crate::resample::{self, Filter};
use crate::u2net::{U2net, U2netConfig};
use crate::{Background, PipelineError};

/// Preprocessing: upstream `preprocess_image(image, "Auto Remove background", 1.0, "#7F7F7F")`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Remove the background with U-2-Net when the input has no transparency.
    pub remove_background: bool,
    /// Share of the square the content is scaled to (`do_resize_content`; 1.0 = no-op).
    pub foreground_ratio: f64,
    /// Grey level of the background composited under the object (`#7F7F7F`).
    pub background: u8,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig { remove_background: true, foreground_ratio: 1.0, background: 127 }
    }
}

/// Preprocessing with its background-removal network loaded.
pub struct Preprocessor {
    cfg: PreprocessConfig,
    // tch tensors are Send but not Sync; one job runs at a time, so the lock is uncontended.
    u2net: Option<Mutex<LoadedU2net>>,
}

struct LoadedU2net {
    net: U2net,
    cfg: U2netConfig,
    device: Device,
    _vs: VarStore,
}

impl Preprocessor {
    /// Loads U-2-Net of architecture `u2net` from the bundle's [`U2NET`] component onto
    /// `device` (fp32: rembg runs it in fp32 too), unless `cfg` turns background removal off.
    pub fn load(
        files: &Components,
        cfg: &PreprocessConfig,
        u2net: &U2netConfig,
        device: Device,
    ) -> Result<Self, PipelineError> {
        if !cfg.remove_background {
            return Ok(Preprocessor { cfg: cfg.clone(), u2net: None });
        }
        let mut vs = VarStore::new(device);
        let net = U2net::new(&vs.root(), u2net);
        files.load(&mut vs, U2NET)?;
        Ok(Self::assemble(cfg.clone(), net, u2net.clone(), vs))
    }

    /// Preprocessing with U-2-Net of architecture `u2net` loaded strictly from the safetensors
    /// file `weights`.
    pub fn with_weights(
        cfg: PreprocessConfig,
        u2net: &U2netConfig,
        weights: &Path,
        device: Device,
    ) -> Result<Self, PipelineError> {
        let mut vs = VarStore::new(device);
        let net = U2net::new(&vs.root(), u2net);
        crate::weights::load_strict(&mut vs, weights)?;
        Ok(Self::assemble(cfg, net, u2net.clone(), vs))
    }

    fn assemble(cfg: PreprocessConfig, net: U2net, u2cfg: U2netConfig, mut vs: VarStore) -> Self {
        vs.freeze();
        let device = vs.device();
        let u2net = LoadedU2net { net, cfg: u2cfg, device, _vs: vs };
        Preprocessor { cfg, u2net: Some(Mutex::new(u2net)) }
    }

    /// Image file bytes -> the square RGB reference image on grey (upstream's rule).
    pub fn run(&self, bytes: &[u8]) -> Result<RgbImage, PipelineError> {
        self.run_image(decode(bytes)?)
    }

    /// [`Preprocessor::run`] with the background rule `background`.
    pub fn run_with(&self, bytes: &[u8], background: Background) -> Result<RgbImage, PipelineError> {
        self.run_image_with(decode(bytes)?, background)
    }

    /// A decoded RGBA image -> the square RGB reference image on grey (upstream's rule).
    pub fn run_image(&self, img: RgbaImage) -> Result<RgbImage, PipelineError> {
        self.run_image_with(img, Background::Auto)
    }

    /// [`Preprocessor::run_image`] with the background rule `background`.
    pub fn run_image_with(&self, img: RgbaImage, background: Background) -> Result<RgbImage, PipelineError> {
        let cut = match background {
            Background::Auto if has_transparency(&img) => clear_transparent(&img),
            Background::Auto | Background::On => match self.foreground_mask(&img)? {
                Some(mask) => naive_cutout(&img, &mask),
                // Auto on a bundle without U-2-Net: the bundle's own choice, as before.
                None if background == Background::Auto => img,
                None => {
                    return Err(PipelineError::InvalidParams(
                        "remove_background=on: this model bundle has no background-removal network".into(),
                    ))
                }
            },
            Background::Off if has_transparency(&img) => clear_transparent(&img),
            Background::Off => img,
        };
        let resized = resize_content(&cut, self.cfg.foreground_ratio);
        Ok(add_background(&expand_to_square(&resized), self.cfg.background))
    }

    /// The U-2-Net foreground mask of `img` at its own size.
    pub fn foreground_mask(&self, img: &RgbaImage) -> Result<Option<GrayImage>, PipelineError> {
        let Some(u2) = &self.u2net else { return Ok(None) };
        let u2 = u2.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _guard = tch::no_grad_guard();
        let rgb = DynamicImage::ImageRgba8(img.clone()).to_rgb8();
        let xs = u2net_input(&rgb, &u2.cfg).to_device(u2.device);
        let pred = u2.net.forward(&xs).to_device(Device::Cpu);
        mask_from_prediction(&pred, img.width(), img.height()).map(Some)
    }
}

/// Decodes image file bytes (PNG, JPEG, WebP, GIF, BMP, TIFF; grey, palette, 16-bit), applies
/// the EXIF orientation, and converts to 8-bit RGBA (16-bit channels are rounded to 8 bits;
/// PIL would truncate to the high byte, at most one level apart).
pub fn decode(bytes: &[u8]) -> Result<RgbaImage, PipelineError> {
    let invalid =
        |e: image::ImageError| PipelineError::InvalidImage(format!("the image could not be decoded: {e}"));
    if bytes.is_empty() {
        return Err(PipelineError::InvalidImage("the image is empty".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PipelineError::InvalidImage(format!("the image could not be read: {e}")))?;
    if reader.format().is_none() {
        return Err(PipelineError::InvalidImage("unknown image format".into()));
    }
    let mut decoder = reader.into_decoder().map_err(invalid)?;
    let orientation = decoder.orientation().map_err(invalid)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(invalid)?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(PipelineError::InvalidImage("the image has no pixels".into()));
    }
    Ok(img.to_rgba8())
}

/// True when any pixel has alpha < 255 (`image.getextrema()[3][0] < 255`).
pub fn has_transparency(img: &RgbaImage) -> bool {
    img.pixels().any(|p| p[3] < 255)
}

/// `Image.alpha_composite(Image.new("RGBA", size, (0, 0, 0, 0)), image)`: pixels with alpha 0
/// become (0, 0, 0, 0); the others are unchanged.
pub fn clear_transparent(img: &RgbaImage) -> RgbaImage {
    alpha_composite(&RgbaImage::new(img.width(), img.height()), img)
}

/// rembg's `BaseSession.normalize`: RGB Lanczos-resized to the network size, divided by its
/// maximum, ImageNet mean/std (in f64 as numpy does), as a `[1, 3, S, S]` f32 tensor.
pub fn u2net_input(rgb: &RgbImage, cfg: &U2netConfig) -> Tensor {
    let s = cfg.input_size;
    let small = resample::resize_rgb(rgb, s, s, Filter::Lanczos);
    let max = f64::from(small.as_raw().iter().copied().max().unwrap_or(0)).max(1e-6);
    let (s, n) = (s as usize, (s * s) as usize);
    let mut planar = vec![0f32; 3 * n];
    for (i, px) in small.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            planar[c * n + i] = ((f64::from(px[c]) / max - cfg.mean[c]) / cfg.std[c]) as f32;
        }
    }
    Tensor::from_slice(&planar).view([1, 3, s as i64, s as i64])
}

/// rembg's `U2netSession.predict` after the network: channel 0 of `pred` (`[1, C, S, S]`)
/// min-max normalised in f32, scaled to 0..=255 and truncated to u8, then Lanczos-resized to
/// `w x h`. A constant prediction (0/0 in numpy) gives an empty mask.
pub fn mask_from_prediction(pred: &Tensor, w: u32, h: u32) -> Result<GrayImage, PipelineError> {
    let size = pred.size();
    if size.len() != 4 || size[0] != 1 {
        return Err(PipelineError::Internal(format!("U-2-Net output of shape {size:?}")));
    }
    let (sh, sw) = (size[2] as u32, size[3] as u32);
    let values = Vec::<f32>::try_from(pred.get(0).get(0).to_kind(Kind::Float).contiguous().view([-1]))?;
    let (mi, ma) =
        values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let bytes: Vec<u8> = values
        .iter()
        .map(|&v| {
            let norm = (v - mi) / (ma - mi);
            if norm.is_nan() {
                0
            } else {
                (norm.clamp(0.0, 1.0) * 255.0) as u8
            }
        })
        .collect();
    let small = GrayImage::from_raw(sw, sh, bytes).expect("mask size");
    Ok(resample::resize_luma(&small, w, h, Filter::Lanczos))
}

/// rembg's `naive_cutout`: `Image.composite(img, transparent, mask)`, i.e. every channel
/// (alpha included) blended with zero by the mask, `DIV255(c * m)`.
pub fn naive_cutout(img: &RgbaImage, mask: &GrayImage) -> RgbaImage {
    assert_eq!(img.dimensions(), mask.dimensions(), "naive_cutout: mask size");
    let mut out = img.clone();
    for (px, m) in out.pixels_mut().zip(mask.pixels()) {
        let m = u32::from(m[0]);
        for c in px.0.iter_mut() {
            *c = resample::div255(u32::from(*c) * m);
        }
    }
    out
}

/// `do_resize_content`: content scaled by `ratio` (PIL's default bicubic, premultiplied) and
/// centred on a transparent canvas of the original size; identity at 1.0.
pub fn resize_content(img: &RgbaImage, ratio: f64) -> RgbaImage {
    if ratio == 1.0 {
        return img.clone();
    }
    let (w, h) = img.dimensions();
    let (nw, nh) = ((f64::from(w) * ratio) as u32, (f64::from(h) * ratio) as u32);
    let small = resample::resize_rgba(img, nw, nh, Filter::Bicubic);
    paste_centred(&small, w, h)
}

/// `expand_to_square`: centred on a transparent square canvas (floor offsets).
pub fn expand_to_square(img: &RgbaImage) -> RgbaImage {
    let (w, h) = img.dimensions();
    if w == h {
        return img.clone();
    }
    paste_centred(img, w.max(h), w.max(h))
}

fn paste_centred(img: &RgbaImage, w: u32, h: u32) -> RgbaImage {
    let mut canvas = RgbaImage::new(w, h);
    // Python's `//` floors; the differences are never negative here.
    let (x0, y0) = ((w - img.width()) / 2, (h - img.height()) / 2);
    image::imageops::replace(&mut canvas, img, i64::from(x0), i64::from(y0));
    canvas
}

/// `add_background(image, (g, g, g)).convert("RGB")`.
pub fn add_background(img: &RgbaImage, grey: u8) -> RgbImage {
    let bg = RgbaImage::from_pixel(img.width(), img.height(), image::Rgba([grey, grey, grey, 255]));
    DynamicImage::ImageRgba8(alpha_composite(&bg, img)).to_rgb8()
}

/// `Image.alpha_composite(dst, src)`, Pillow 10.1's integer implementation
/// (`libImaging/AlphaComposite.c`, 7 extra bits of precision, rounded divisions).
pub fn alpha_composite(dst: &RgbaImage, src: &RgbaImage) -> RgbaImage {
    const PRECISION_BITS: u32 = 7;
    let shift_div255 = |a: u32| ((a >> 8) + a) >> 8;
    assert_eq!(dst.dimensions(), src.dimensions(), "alpha_composite: sizes");
    let mut out = dst.clone();
    for (o, s) in out.pixels_mut().zip(src.pixels()) {
        let (sa, d) = (u32::from(s[3]), o.0);
        if sa == 0 {
            continue;
        }
        let blend = u32::from(d[3]) * (255 - sa);
        let outa255 = sa * 255 + blend;
        let coef1 = sa * 255 * 255 * (1 << PRECISION_BITS) / outa255;
        let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
        for c in 0..3 {
            let tmp = u32::from(s[c]) * coef1 + u32::from(d[c]) * coef2;
            o[c] = (shift_div255(tmp + (0x80 << PRECISION_BITS)) >> PRECISION_BITS) as u8;
        }
        o[3] = shift_div255(outa255 + 0x80) as u8;
    }
    out
}
