//! Test fixtures (feature `fixtures`, for tests only): the tiny official-format checkpoints
//! under `pipeline/tests/data/checkpoints/` (written by `tools/parity/checkpoints.py` from
//! upstream's module definitions) and the bundle config they convert to. Used by
//! pipeline/tests/convert.rs and worker/tests/model_source.rs; the paths point into this
//! crate's source tree.

use std::path::PathBuf;

use crate::config::Stages;
use crate::diffusion::DiffusionConfig;
use crate::recon::unet::TriplaneUNetConfig;
use crate::recon::ReconConfig;
use crate::BundleConfig;

/// The official file names, served and converted as they are.
pub const FILES: [&str; 3] = ["pixel-diffusion.pth", "ccm-diffusion.pth", "CRM.pth"];

/// Directory of the checkpoint fixtures.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoints")
}

/// The rembg-format `u2net.onnx` fixture (tiny U-2-Net, names and batch norms kept).
pub fn u2net_onnx() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/u2net_named.onnx")
}

/// The layout the fixtures fit, the widths of `tools/parity/checkpoints.py`: the tiny
/// bundle's with 32 channels at every UNet and VAE level and a 4-wide text context; the
/// reconstruction with 13 channels.
pub fn config() -> BundleConfig {
    let mut diffusion = DiffusionConfig::tiny();
    for stage in [&mut diffusion.stage1, &mut diffusion.stage2] {
        stage.unet.channel_mult = vec![1, 1];
        stage.unet.context_dim = 4;
        stage.unet.resampler.output_dim = 4;
    }
    diffusion.vae.ch_mult = vec![1, 1, 1, 1];
    let mut config = BundleConfig::tiny();
    config.stages = Stages { diffusion, reconstruction: reconstruction() };
    config
}

/// `stages.reconstruction` of [`config`]: the tiny reconstruction with UNetPP's input and
/// output at the fixture's 13 channels.
pub fn reconstruction() -> ReconConfig {
    let unet = TriplaneUNetConfig { in_channels: 13, out_channels: 13, ..TriplaneUNetConfig::tiny() };
    ReconConfig { unet, ..ReconConfig::tiny() }
}
