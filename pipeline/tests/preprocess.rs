//! Preprocessing parity with upstream `preprocess_image` (CRM `app.py`) run with rembg's real
//! session code on the same random-weight tiny U-2-Net (fixture: `tools/parity/preprocess.py`).

mod common;

use image::{GrayImage, RgbaImage};
use img3d_pipeline::config::{PreprocessConfig, U2netConfig};
use img3d_pipeline::preprocess::{self, Preprocessor};
use img3d_pipeline::u2net::U2net;
use img3d_pipeline::PipelineError;
use tch::{Device, Kind, Tensor};

fn bytes(t: &Tensor) -> Vec<u8> {
    Vec::<u8>::try_from(t.to_kind(Kind::Uint8).contiguous().view([-1])).unwrap()
}

fn preprocessor(ratio: f64) -> Preprocessor {
    let cfg = PreprocessConfig { foreground_ratio: ratio, ..PreprocessConfig::default() };
    let weights = common::data_path("preprocess.weights.safetensors");
    Preprocessor::with_weights(cfg, &U2netConfig::tiny(), &weights, Device::Cpu).unwrap()
}

/// Count of bytes that differ and the largest difference.
fn compare(actual: &[u8], expected: &[u8]) -> (usize, u8) {
    assert_eq!(actual.len(), expected.len(), "sizes");
    actual
        .iter()
        .zip(expected)
        .filter(|(a, b)| a != b)
        .fold((0, 0), |(n, m), (a, b)| (n + 1, m.max(a.abs_diff(*b))))
}

/// Inputs with transparency keep their alpha (U-2-Net does not run) and come out byte for byte
/// as upstream's, including a foreground ratio below 1 (premultiplied bicubic resize).
#[test]
fn alpha_path_is_exact() {
    let io = common::load_io("preprocess");
    for case in ["alpha", "alpha_ratio"] {
        let ratio = f64::from(io[&format!("{case}.ratio")].double_value(&[0]) as f32);
        let out = preprocessor(ratio).run(&bytes(&io[&format!("{case}.file")])).unwrap();
        let expected = &io[&format!("{case}.out")];
        assert_eq!(out.height() as i64, expected.size()[0], "{case}: height");
        assert_eq!(out.width() as i64, expected.size()[1], "{case}: width");
        assert_eq!(compare(out.as_raw(), &bytes(expected)), (0, 0), "{case}: (differing bytes, max diff)");
    }
}

/// The U-2-Net path step by step: the network matches onnxruntime's output (1e-4), the mask
/// post-processing and the cutout + square + grey composite are exact given upstream's
/// intermediate, and the whole run differs by at most one level where a truncated mask value
/// flips between onnxruntime and libtorch.
#[test]
fn u2net_path_matches_upstream() {
    let io = common::load_io("preprocess");
    let file = bytes(&io["opaque.file"]);
    let img = preprocess::decode(&file).unwrap();
    assert!(!preprocess::has_transparency(&img));
    // 1. network input and output
    let mut vs = common::cpu_vs();
    let net = U2net::new(&vs.root(), &U2netConfig::tiny());
    img3d_pipeline::weights::load_strict(&mut vs, &common::data_path("preprocess.weights.safetensors"))
        .unwrap();
    let rgb = image::DynamicImage::ImageRgba8(img.clone()).to_rgb8();
    let pred = tch::no_grad(|| net.forward(&preprocess::u2net_input(&rgb, &U2netConfig::tiny())));
    common::assert_close("prediction", &pred, &io["opaque.pred"], 1e-4);
    // 2. mask from upstream's prediction: exact
    let mask = preprocess::mask_from_prediction(&io["opaque.pred"], img.width(), img.height()).unwrap();
    assert_eq!(compare(mask.as_raw(), &bytes(&io["opaque.mask"])), (0, 0), "mask");
    // 3. cutout, square, grey from upstream's mask: exact
    let upstream_mask = GrayImage::from_raw(img.width(), img.height(), bytes(&io["opaque.mask"])).unwrap();
    let cut = preprocess::naive_cutout(&img, &upstream_mask);
    let out = preprocess::add_background(&preprocess::expand_to_square(&cut), 127);
    assert_eq!(compare(out.as_raw(), &bytes(&io["opaque.out"])), (0, 0), "composite");
    // 4. end to end
    let out = preprocessor(1.0).run(&file).unwrap();
    let (n, max) = compare(out.as_raw(), &bytes(&io["opaque.out"]));
    assert!(max <= 1 && n * 100 <= out.as_raw().len(), "{n} bytes differ, max {max}");
}

/// A JPEG with EXIF orientation 6 is decoded upright, as PIL's `exif_transpose` shows it
/// (JPEG decoders differ by rounding: mean difference under one level).
#[test]
fn jpeg_exif_orientation_is_applied() {
    let io = common::load_io("preprocess");
    let img = preprocess::decode(&bytes(&io["exif.file"])).unwrap();
    let expected = &io["exif.decoded"];
    assert_eq!((img.height() as i64, img.width() as i64), (expected.size()[0], expected.size()[1]));
    let rgb = image::DynamicImage::ImageRgba8(img).to_rgb8();
    let want = bytes(expected);
    let total: u64 = rgb.as_raw().iter().zip(&want).map(|(a, b)| u64::from(a.abs_diff(*b))).sum();
    let mean = total as f64 / want.len() as f64;
    assert!(mean < 1.0, "mean abs difference {mean}");
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format).unwrap();
    out
}

/// Grey, grey+alpha, 16-bit, palette-free RGB and WebP inputs decode to the RGBA the pipeline
/// expects (grey replicated, 16-bit rounded to 8, alpha kept).
#[test]
fn decodes_other_pixel_formats() {
    let grey = image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(x * 40 + y * 7) as u8]));
    let got = preprocess::decode(&encode(grey.into(), image::ImageFormat::Png)).unwrap();
    assert_eq!(got.get_pixel(2, 1).0, [87, 87, 87, 255]);
    let la = image::GrayAlphaImage::from_fn(2, 2, |x, _| image::LumaA([50, (x * 100) as u8]));
    let got = preprocess::decode(&encode(la.into(), image::ImageFormat::Png)).unwrap();
    assert_eq!(got.get_pixel(1, 0).0, [50, 50, 50, 100]);
    assert!(preprocess::has_transparency(&got));
    let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(2, 1, |x, _| {
        image::Rgb([65535, 257 * 10, x as u16 * 300])
    });
    let got =
        preprocess::decode(&encode(image::DynamicImage::ImageRgb16(deep), image::ImageFormat::Png)).unwrap();
    assert_eq!(got.get_pixel(1, 0).0, [255, 10, 1, 255]);
    let rgba = RgbaImage::from_fn(4, 4, |x, y| image::Rgba([x as u8 * 60, y as u8 * 60, 9, 255]));
    let got = preprocess::decode(&encode(rgba.clone().into(), image::ImageFormat::WebP)).unwrap();
    assert_eq!(got, rgba, "lossless WebP");
}

/// Bytes that are not an image are a typed `InvalidImage` error, never a panic.
#[test]
fn rejects_non_images() {
    for bad in [&b""[..], b"hello", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR broken"] {
        match preprocess::decode(bad) {
            Err(PipelineError::InvalidImage(msg)) => assert!(!msg.is_empty()),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

/// Pillow's alpha_composite rounding on a few pixels (grey 127 under the source); expected
/// values printed by Pillow 10.1.0's `Image.alpha_composite(...).convert("RGB")`.
#[test]
fn alpha_composite_rounding() {
    let src =
        RgbaImage::from_raw(4, 1, vec![200, 0, 255, 128, 10, 20, 30, 0, 255, 255, 255, 255, 0, 0, 0, 1])
            .unwrap();
    let out = preprocess::add_background(&src, 127);
    // (200*128 + 127*127)/255 = 163.6 -> 164; 0 -> 63.3 -> 63; 255 -> 191.3 -> 191; a=0 keeps grey;
    // a=255 keeps the source; a=1: 127*254/255 = 126.5 -> 127.
    assert_eq!(out.as_raw(), &vec![164, 63, 191, 127, 127, 127, 255, 255, 255, 127, 127, 127]);
}
