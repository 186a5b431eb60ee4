//! Pillow-exact image resizing (Pillow 10.1 `Image.resize`, `libImaging/Resample.c`).
//!
//! Upstream resizes with PIL everywhere (rembg: Lanczos to 320x320 and back; torchvision's
//! `Resize` on PIL images: bilinear; open_clip's preprocessing: bicubic), and the diffusion
//! model sees those exact pixels, so the port reproduces PIL bit for bit rather than using a
//! generic resizer:
//! - separable convolution, horizontal pass first (only over the rows the vertical pass reads),
//!   then vertical; the filter support is scaled by the reduction factor when downsampling;
//! - 8-bit images: coefficients normalised to sum 1, then converted to 22-bit fixed point
//!   (rounded half away from zero); each pass accumulates from `1 << 21` (rounding), shifts
//!   right and clips to 0..=255, so the intermediate image is 8-bit as in PIL;
//! - `F` (32-bit float) images: double coefficients and accumulation, stored as f32 per pass;
//! - RGBA is resized premultiplied (`RGBa`), then un-premultiplied, as `Image.resize` does for
//!   any filter but nearest.

use image::{GrayImage, RgbImage, RgbaImage};

/// A resampling filter (`PIL.Image.Resampling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `BOX`: support 0.5.
    Box,
    /// `BILINEAR`: triangle, support 1.
    Bilinear,
    /// `HAMMING`: support 1.
    Hamming,
    /// `BICUBIC`: Keys cubic with a = -0.5, support 2.
    Bicubic,
    /// `LANCZOS`: 3-lobe truncated sinc, support 3.
    Lanczos,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Box => f64::from(u8::from(x > -0.5 && x <= 0.5)),
            Filter::Bilinear => (1.0 - x.abs()).max(0.0),
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    // PIL writes the constants as C floats (0.54f, 0.46f), promoted to double.
                    let x = x * std::f64::consts::PI;
                    x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// Per output pixel: first input index, number of taps, and the normalised weights
/// (`precompute_coeffs`).
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<f64>,
}

fn precompute(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0.0; out_size * ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero; the clamps make that equal to PIL's bounds.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let k = &mut weights[xx * ksize..xx * ksize + xmax];
        let mut ww = 0.0;
        for (x, w) in k.iter_mut().enumerate() {
            *w = filter.eval(((x + xmin) as f64 - center + 0.5) * ss);
            ww += *w;
        }
        if ww != 0.0 {
            k.iter_mut().for_each(|w| *w /= ww);
        }
        bounds.push((xmin, xmax));
    }
    Coeffs { ksize, bounds, weights }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn fixed_point(weights: &[f64]) -> Vec<i32> {
    let one = f64::from(1u32 << PRECISION_BITS);
    weights.iter().map(|&w| if w < 0.0 { (-0.5 + w * one) as i32 } else { (0.5 + w * one) as i32 }).collect()
}

fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes interleaved 8-bit pixels (`channels` per pixel, no premultiplication) from
/// `w x h` to `ow x oh` exactly as PIL's 8-bit path does.
pub fn resize_u8(
    src: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    ow: usize,
    oh: usize,
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(src.len(), w * h * channels, "resize_u8: buffer size");
    if (w, h) == (ow, oh) {
        return src.to_vec();
    }
    let vert = precompute(h, oh, filter);
    let (y_first, y_last) = row_span(&vert);
    // Horizontal pass, only over the rows the vertical pass reads.
    let (tmp, tw, t0) = if ow != w {
        let hor = precompute(w, ow, filter);
        let k = fixed_point(&hor.weights);
        let mut out = vec![0u8; (y_last - y_first) * ow * channels];
        for y in y_first..y_last {
            let row = &src[y * w * channels..(y + 1) * w * channels];
            let orow = &mut out[(y - y_first) * ow * channels..(y - y_first + 1) * ow * channels];
            for (xx, &(xmin, n)) in hor.bounds.iter().enumerate() {
                let kk = &k[xx * hor.ksize..xx * hor.ksize + n];
                for c in 0..channels {
                    let mut ss = 1i32 << (PRECISION_BITS - 1);
                    for (x, &kv) in kk.iter().enumerate() {
                        ss += i32::from(row[(xmin + x) * channels + c]) * kv;
                    }
                    orow[xx * channels + c] = clip8(ss);
                }
            }
        }
        (out, ow, y_first)
    } else {
        (src.to_vec(), w, 0)
    };
    if oh == h {
        return tmp;
    }
    // Vertical pass.
    let k = fixed_point(&vert.weights);
    let stride = tw * channels;
    let mut out = vec![0u8; oh * stride];
    for (yy, &(ymin, n)) in vert.bounds.iter().enumerate() {
        let kk = &k[yy * vert.ksize..yy * vert.ksize + n];
        for i in 0..stride {
            let mut ss = 1i32 << (PRECISION_BITS - 1);
            for (y, &kv) in kk.iter().enumerate() {
                ss += i32::from(tmp[(ymin - t0 + y) * stride + i]) * kv;
            }
            out[yy * stride + i] = clip8(ss);
        }
    }
    out
}

/// Resizes a single-channel `F` (f32) image as PIL does (double accumulation, f32 storage).
pub fn resize_f32(src: &[f32], w: usize, h: usize, ow: usize, oh: usize, filter: Filter) -> Vec<f32> {
    assert_eq!(src.len(), w * h, "resize_f32: buffer size");
    if (w, h) == (ow, oh) {
        return src.to_vec();
    }
    let vert = precompute(h, oh, filter);
    let (y_first, y_last) = row_span(&vert);
    let (tmp, tw, t0) = if ow != w {
        let hor = precompute(w, ow, filter);
        let mut out = vec![0f32; (y_last - y_first) * ow];
        for y in y_first..y_last {
            for (xx, &(xmin, n)) in hor.bounds.iter().enumerate() {
                let kk = &hor.weights[xx * hor.ksize..xx * hor.ksize + n];
                let ss: f64 =
                    kk.iter().enumerate().map(|(x, &kv)| f64::from(src[y * w + xmin + x]) * kv).sum();
                out[(y - y_first) * ow + xx] = ss as f32;
            }
        }
        (out, ow, y_first)
    } else {
        (src.to_vec(), w, 0)
    };
    if oh == h {
        return tmp;
    }
    let mut out = vec![0f32; oh * tw];
    for (yy, &(ymin, n)) in vert.bounds.iter().enumerate() {
        let kk = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
        for x in 0..tw {
            let ss: f64 =
                kk.iter().enumerate().map(|(y, &kv)| f64::from(tmp[(ymin - t0 + y) * tw + x]) * kv).sum();
            out[yy * tw + x] = ss as f32;
        }
    }
    out
}

/// First and one-past-last input row the vertical pass reads.
fn row_span(vert: &Coeffs) -> (usize, usize) {
    let first = vert.bounds[0].0;
    let (lmin, ln) = vert.bounds[vert.bounds.len() - 1];
    (first, lmin + ln)
}

/// `Image.resize` of an `RGB` image.
pub fn resize_rgb(img: &RgbImage, ow: u32, oh: u32, filter: Filter) -> RgbImage {
    let (w, h) = img.dimensions();
    let data = resize_u8(img.as_raw(), w as usize, h as usize, 3, ow as usize, oh as usize, filter);
    RgbImage::from_raw(ow, oh, data).expect("resize_rgb: size")
}

/// `Image.resize` of an `L` image.
pub fn resize_luma(img: &GrayImage, ow: u32, oh: u32, filter: Filter) -> GrayImage {
    let (w, h) = img.dimensions();
    let data = resize_u8(img.as_raw(), w as usize, h as usize, 1, ow as usize, oh as usize, filter);
    GrayImage::from_raw(ow, oh, data).expect("resize_luma: size")
}

/// `Image.resize` of an `RGBA` image: converted to premultiplied `RGBa`, resized, converted
/// back (`Convert.c` `rgbA2rgba` / `rgba2rgbA`).
pub fn resize_rgba(img: &RgbaImage, ow: u32, oh: u32, filter: Filter) -> RgbaImage {
    let (w, h) = img.dimensions();
    if (w, h) == (ow, oh) {
        return img.clone();
    }
    let mut pre = img.as_raw().clone();
    for px in pre.chunks_exact_mut(4) {
        let a = u32::from(px[3]);
        for c in &mut px[..3] {
            *c = muldiv255(u32::from(*c), a);
        }
    }
    let mut data = resize_u8(&pre, w as usize, h as usize, 4, ow as usize, oh as usize, filter);
    for px in data.chunks_exact_mut(4) {
        let a = u32::from(px[3]);
        if a != 0 && a != 255 {
            for c in &mut px[..3] {
                *c = ((255 * u32::from(*c)) / a).min(255) as u8;
            }
        }
    }
    RgbaImage::from_raw(ow, oh, data).expect("resize_rgba: size")
}

/// PIL's `MULDIV255`: `a * b / 255`, rounded.
pub fn muldiv255(a: u32, b: u32) -> u8 {
    div255(a * b)
}

/// PIL's `DIV255`: `a / 255`, rounded, for `a <= 255 * 255`.
pub fn div255(a: u32) -> u8 {
    let t = a + 128;
    (((t >> 8) + t) >> 8) as u8
}
