//! PIL-exact resizing: every mode, filter and size of the fixture made by
//! `tools/parity/resample.py` with Pillow 10.1.0.

mod common;

use image::{GrayImage, RgbImage, RgbaImage};
use img3d_pipeline::resample::{self, Filter};
use tch::{Kind, Tensor};

fn filter(name: &str) -> Filter {
    match name {
        "box" => Filter::Box,
        "bilinear" => Filter::Bilinear,
        "hamming" => Filter::Hamming,
        "bicubic" => Filter::Bicubic,
        "lanczos" => Filter::Lanczos,
        _ => panic!("unknown filter {name}"),
    }
}

fn bytes(t: &Tensor) -> Vec<u8> {
    Vec::<u8>::try_from(t.to_kind(Kind::Uint8).contiguous().view([-1])).unwrap()
}

/// 8-bit RGB, RGBA (premultiplied) and L resizes equal Pillow's byte for byte, and F (float)
/// resizes match to f32 rounding, for all five filters up, down and along one axis.
#[test]
fn matches_pillow() {
    let io = common::load_io("resample");
    let mut checked = 0;
    for (key, expected) in &io {
        let parts: Vec<&str> = key.split('.').collect();
        let [mode, fname, size] = parts[..] else { continue };
        let (w, h) = size.split_once('x').unwrap();
        let (ow, oh): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
        let src = &io[&format!("{mode}.src")];
        let (sh, sw) = (src.size()[0] as u32, src.size()[1] as u32);
        let f = filter(fname);
        let actual: Vec<u8> =
            match mode {
                "RGB" => resample::resize_rgb(&RgbImage::from_raw(sw, sh, bytes(src)).unwrap(), ow, oh, f)
                    .into_raw(),
                "RGBA" => resample::resize_rgba(&RgbaImage::from_raw(sw, sh, bytes(src)).unwrap(), ow, oh, f)
                    .into_raw(),
                "L" => resample::resize_luma(&GrayImage::from_raw(sw, sh, bytes(src)).unwrap(), ow, oh, f)
                    .into_raw(),
                "F" => {
                    let data = Vec::<f32>::try_from(src.contiguous().view([-1])).unwrap();
                    let out =
                        resample::resize_f32(&data, sw as usize, sh as usize, ow as usize, oh as usize, f);
                    // PIL accumulates in double like us; only the summation order could differ.
                    common::assert_close(
                        key,
                        &Tensor::from_slice(&out).view([oh as i64, ow as i64]),
                        expected,
                        1e-3,
                    );
                    checked += 1;
                    continue;
                }
                _ => panic!("unknown mode {mode}"),
            };
        let want = bytes(expected);
        let diffs = actual.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(actual.len(), want.len(), "{key}: size");
        assert_eq!(diffs, 0, "{key}: {diffs} of {} bytes differ from Pillow", want.len());
        checked += 1;
    }
    assert_eq!(checked, 100, "fixture cases checked");
}
