//! Parity of the image-prompt Resampler and the camera vectors with upstream CRM (fixtures from
//! `tools/parity/diffusion_unet.py`).

mod common;

use img3d_pipeline::diffusion::camera::camera_vectors;
use img3d_pipeline::diffusion::resampler::{Resampler, ResamplerConfig};
use tch::Device;

/// The Resampler (upstream head geometry: 12 heads of 64, 1280-wide tokens in) matches
/// upstream `Resampler` on random weights.
#[test]
fn resampler_matches_upstream() {
    let _guard = tch::no_grad_guard();
    let cfg = ResamplerConfig { dim: 32, depth: 2, output_dim: 32, ..ResamplerConfig::crm() };
    let mut vs = common::cpu_vs();
    let model = Resampler::new(&vs.root(), &cfg);
    common::load_weights(&mut vs, "diffusion_resampler");
    let io = common::load_io("diffusion_resampler");
    common::assert_close("resampler", &model.forward(&io["x"]), &io["y"], 1e-4);
}

/// The camera vectors of the six canonical views and of both stages' frame sets (reference
/// frame zeroed) equal upstream `get_camera_for_index` / `ImageDreamDiffusion` cameras.
#[test]
fn camera_vectors_match_upstream() {
    let io = common::load_io("diffusion_camera");
    let views = camera_vectors(&[0, 1, 2, 3, 4, 5], None, Device::Cpu);
    // f64 geometry rounded to f32 on both sides: equal up to one f32 rounding step.
    common::assert_close("views", &views, &io["views"], 1e-7);
    common::assert_close(
        "stage1",
        &camera_vectors(&[1, 2, 3, 4, 5, 0, 0], Some(6), Device::Cpu),
        &io["stage1"],
        1e-7,
    );
    common::assert_close(
        "stage2",
        &camera_vectors(&[1, 2, 3, 4, 5, 0], None, Device::Cpu),
        &io["stage2"],
        1e-7,
    );
}
