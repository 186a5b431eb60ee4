//! The diffusion stages' image inputs match upstream's transforms on the same PIL image
//! (fixtures `clip_visual.io` and `vae_encode.io`, written by
//! `tools/parity/diffusion_encoders.py`: a 300x260 RGB test image through open_clip 2.7.0's
//! eval preprocess and through `libs/sample.py`'s `image_transform`).

mod common;

use common::{assert_close, load_io};
use img3d_pipeline::diffusion::transforms::{clip_input, vae_input, views_input};
use img3d_pipeline::diffusion::ClipVisionConfig;
use tch::Tensor;

/// `[H, W, 3]` u8 tensor -> RGB image.
fn rgb(t: &Tensor) -> image::RgbImage {
    let (h, w, _) = t.size3().unwrap();
    let bytes = Vec::<u8>::try_from(t.contiguous().view([-1])).unwrap();
    image::RgbImage::from_raw(w as u32, h as u32, bytes).unwrap()
}

/// Shortest side to 224 (bicubic, Pillow-exact), centre crop, OpenAI mean/std: upstream's CLIP
/// input. The resize is exact; float32 normalisation is the same operations in the same
/// order, so the tolerance is one float32 rounding at |x| <= 2.2.
#[test]
fn clip_input_matches_open_clip() {
    let io = load_io("clip_visual");
    let ours = clip_input(&rgb(&io["image"]), &ClipVisionConfig::crm());
    assert_close("clip_input", &ours, &io["clip_input"], 1e-6);
}

/// `T.Resize((256, 256))` (bilinear, Pillow-exact) + `ToTensor` + `Normalize(0.5, 0.5)`.
#[test]
fn vae_input_matches_sample_transform() {
    let io = load_io("vae_encode");
    let ours = vae_input(&rgb(&io["image"]), 256);
    assert_close("vae_input", &ours, &io["vae_input"], 1e-6);
}

/// A strip of views splits back into its views, left to right, each transformed alone.
#[test]
fn views_input_splits_the_strip() {
    let strip = image::RgbImage::from_fn(12, 4, |x, y| image::Rgb([(x * 20) as u8, (y * 60) as u8, 7]));
    let views = views_input(&strip, 3, 4).unwrap();
    assert_eq!(views.size(), [3, 3, 4, 4]);
    for i in 0..3u32 {
        let view = image::imageops::crop_imm(&strip, 4 * i, 0, 4, 4).to_image();
        assert!(views.get(i as i64).unsqueeze(0).equal(&vae_input(&view, 4)), "view {i}");
    }
    assert!(views_input(&strip, 5, 4).is_err());
}
