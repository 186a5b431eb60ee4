//! The texture bake of upstream's `export_mesh_wt_uv` (`model/crm/model.py`), after the UV
//! rasterisation:
//!
//! 1. the texture starts at 1.0 in every channel (`tex = zeros_like(gb_pos) + 1`);
//! 2. covered texels get the colour MLP's output at their interpolated surface point, mapped
//!    from [-1, 1] by `(c + 1) * 127.5` and clipped to [0, 255] (f32);
//! 3. every texel whose channel sum is `<= 3` (all uncovered ones, and covered ones that are
//!    nearly black) is replaced by the 3x3 grey dilation (per-channel maximum over the in-image
//!    neighbours, OpenCV `cv2.dilate` with a ones kernel and its default border), once;
//! 4. values are clipped and truncated to u8 (`astype(np.uint8)`) and written as an RGB PNG
//!    (`cv2.imwrite` of the BGR-swapped array, row 0 on top).

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use tch::{Kind, Tensor};

use super::raster::{interpolate, Raster};
use crate::PipelineError;

/// A float RGB texture, row-major, values in `[0, 255]` once the colours are scaled.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatTexture {
    /// Texels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// RGB per texel.
    pub texels: Vec<[f32; 3]>,
}

/// Steps 1-2: queries `colour` at the surface point of every covered texel (row-major order,
/// positions interpolated from `vertices` over `faces`) and fills the texture.
pub fn bake(
    raster: &Raster,
    vertices: &[[f32; 3]],
    faces: &[[u32; 3]],
    colour: &mut dyn FnMut(&Tensor) -> Result<Tensor, PipelineError>,
) -> Result<FloatTexture, PipelineError> {
    let points = interpolate(raster, faces, vertices);
    let mut tex = FloatTexture {
        width: raster.width,
        height: raster.height,
        texels: vec![[1.0; 3]; raster.width * raster.height],
    };
    if points.is_empty() {
        return Ok(tex);
    }
    let m = points.len();
    let flat: Vec<f32> = points.iter().flatten().copied().collect();
    let xs = Tensor::from_slice(&flat).view([m as i64, 3]);
    let colours = colour(&xs)?;
    if colours.size() != [m as i64, 3] {
        return Err(PipelineError::Internal(format!(
            "colour query returned shape {:?} for {m} points (expected [{m}, 3])",
            colours.size()
        )));
    }
    let colours = colours.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
    let values = Vec::<f32>::try_from(colours.view([-1]))?;
    let mut next = values.chunks_exact(3);
    for (texel, t) in tex.texels.iter_mut().zip(&raster.tri) {
        if *t != 0 {
            let c = next.next().expect("one colour per covered texel");
            *texel = [scale_colour(c[0]), scale_colour(c[1]), scale_colour(c[2])];
        }
    }
    Ok(tex)
}

/// Upstream's `(colors - lo) * (255 / (hi - lo))` with lo, hi = -1, 1, then `.clip(0, 255)`, in f32.
pub fn scale_colour(c: f32) -> f32 {
    let x = (c - -1.0f32) * 127.5f32;
    // torch.clip keeps NaN; numpy's later uint8 cast of NaN is undefined: make it 0 here.
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 255.0)
    }
}

/// Steps 3-4: the one masked 3x3 dilation, then truncation to u8.
pub fn finish(tex: &FloatTexture) -> RgbImage {
    let (w, h) = (tex.width, tex.height);
    let mut img = RgbImage::new(w as u32, h as u32);
    for y in 0..h {
        for x in 0..w {
            let texel = tex.texels[y * w + x];
            let sum = texel[0] as f64 + texel[1] as f64 + texel[2] as f64;
            let value = if sum <= 3.0 { dilated(tex, x, y) } else { texel };
            img.put_pixel(x as u32, y as u32, image::Rgb(value.map(to_u8)));
        }
    }
    img
}

/// Per-channel maximum over the 3x3 neighbourhood inside the image (OpenCV's dilate border).
fn dilated(tex: &FloatTexture, x: usize, y: usize) -> [f32; 3] {
    let mut m = [f32::NEG_INFINITY; 3];
    for yy in y.saturating_sub(1)..=(y + 1).min(tex.height - 1) {
        for xx in x.saturating_sub(1)..=(x + 1).min(tex.width - 1) {
            let t = tex.texels[yy * tex.width + xx];
            for k in 0..3 {
                m[k] = m[k].max(t[k]);
            }
        }
    }
    m
}

/// `img.clip(0, 255).astype(np.uint8)`: truncation toward zero.
fn to_u8(v: f32) -> u8 {
    v.clamp(0.0, 255.0) as u8
}

/// Encodes the texture as an RGB PNG (fast deflate: the texture is mostly flat colour).
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, PipelineError> {
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
        .write_image(img.as_raw(), img.width(), img.height(), ExtendedColorType::Rgb8)
        .map_err(|e| PipelineError::Internal(format!("png encode: {e}")))?;
    Ok(out)
}
