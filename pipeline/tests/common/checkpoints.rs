//! The tiny official-format checkpoints under `pipeline/tests/data/checkpoints/` (written by
//! `tools/parity/checkpoints.py` from upstream's module definitions) and the bundle config
//! they convert to. Shared by pipeline/tests/convert.rs and worker/tests/model_source.rs.

#![allow(dead_code)]

use std::path::PathBuf;

use img3d_pipeline::diffusion::DiffusionConfig;
use img3d_pipeline::BundleConfig;

/// The official file names, served and converted as they are.
pub const FILES: [&str; 3] = ["pixel-diffusion.pth", "ccm-diffusion.pth", "CRM.pth"];

/// Directory of the checkpoint fixtures.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipeline/tests/data/checkpoints")
}

/// The rembg-format `u2net.onnx` fixture (tiny U-2-Net, names and batch norms kept).
pub fn u2net_onnx() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipeline/tests/data/u2net_named.onnx")
}

/// The layout the fixtures fit, the widths of `tools/parity/checkpoints.py`: the tiny
/// bundle's with 32 channels at every UNet and VAE level and a 4-wide text context; the
/// reconstruction with 13 channels (in `ReconConfig`'s fields, whether or not this build
/// registers that stage).
pub fn config() -> BundleConfig {
    let mut diffusion = DiffusionConfig::tiny();
    for stage in [&mut diffusion.stage1, &mut diffusion.stage2] {
        stage.unet.channel_mult = vec![1, 1];
        stage.unet.context_dim = 4;
        stage.unet.resampler.output_dim = 4;
    }
    diffusion.vae.ch_mult = vec![1, 1, 1, 1];
    let mut config = BundleConfig { name: "checkpoint-fixtures".into(), ..BundleConfig::tiny() };
    config.stages.insert("diffusion".into(), serde_json::to_value(diffusion).unwrap());
    config.stages.insert("reconstruction".into(), reconstruction());
    config
}

/// `stages.reconstruction` of [`config`].
pub fn reconstruction() -> serde_json::Value {
    serde_json::json!({
        "unet": {
            "channels": 13,
            "block_out_channels": [8, 8, 8, 16, 16, 16, 16],
            "down_attention": [false, false, false, true, true, true, false],
            "up_attention": [false, true, true, true, false, false, false],
            "layers_per_block": 2,
            "attention_head_dim": 8,
            "norm_num_groups": 4,
            "norm_eps": 1e-5
        },
        "mlp_hidden": 32,
        "mlp_bias": true,
        "grid_res": 32,
        "scale": 0.95,
        "sphere_radius": 0.5
    })
}
