//! Test fixtures (feature `fixtures`, for tests and benches only): the tiny official-format
//! checkpoints under `pipeline/tests/data/checkpoints/` (written by `tools/parity/checkpoints.py`
//! from upstream's module definitions) and the bundle config they convert to (used by
//! pipeline/tests/convert.rs and worker/tests/model_source.rs); the meshes the atlas tests and
//! the mesh benches share. The paths point into this crate's source tree.

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

use crate::config::Stages;
use crate::diffusion::DiffusionConfig;
use crate::mesh::{clean, Mesh};
use crate::recon::flexicubes::FlexiCubes;
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

/// The reconstruction bench mesh as stored (`tests/data/mesh_blob.io.safetensors`: upstream's
/// FlexiCubes on CRM's 80^3 grid), before cleaning.
pub fn mesh_blob() -> (Vec<[f32; 3]>, Vec<[i64; 3]>) {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mesh_blob.io.safetensors");
    let io: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&data).expect("mesh_blob fixture").into_iter().collect();
    let v = Vec::<f32>::try_from(io["vertices"].to_kind(Kind::Float).contiguous().view([-1])).unwrap();
    let f = Vec::<i64>::try_from(io["faces"].to_kind(Kind::Int64).contiguous().view([-1])).unwrap();
    (
        v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
        f.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
    )
}

/// `mesh` with every vertex pushed by deterministic noise of about half an edge of the bench
/// mesh (0.015), as reconstructions from random weights look.
pub fn jagged(mut mesh: Mesh) -> Mesh {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for v in &mut mesh.vertices {
        for c in v.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *c += ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.015;
        }
    }
    mesh
}

/// Our FlexiCubes on a `res`^3 grid over [-1, 1]^3 of a sphere of `radius` with bumps (a few
/// sinusoids along fixed directions) and per-grid-vertex noise of a third of a cell (the jagged
/// look of a reconstruction from random weights), undeformed grid, zero weights; cleaned.
pub fn noisy_sphere(res: i64, radius: f64) -> Mesh {
    let fc = FlexiCubes::new(res, Device::Cpu);
    let p = Vec::<f32>::try_from(fc.verts().contiguous().view([-1])).unwrap();
    let cell = 2.0 / res as f64;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let dirs: Vec<([f64; 3], f64, f64)> = (0..8)
        .map(|k| {
            let d = [noise(), noise(), noise()];
            let l = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-9);
            (d.map(|x| x / l), 3.0 + k as f64, noise() * 6.0)
        })
        .collect();
    let sdf: Vec<f32> = p
        .chunks_exact(3)
        .map(|c| {
            let q = [c[0] as f64, c[1] as f64, c[2] as f64];
            let r = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt();
            let bumps: f64 = dirs
                .iter()
                .map(|(d, f, ph)| (f * (d[0] * q[0] + d[1] * q[1] + d[2] * q[2]) + ph).sin())
                .sum();
            (r - radius - 0.02 * bumps + noise() * cell / 3.0) as f32
        })
        .collect();
    let weight = Tensor::zeros([fc.cubes().size()[0], 21], (Kind::Float, Device::Cpu));
    let (v, f) = fc.extract(fc.verts(), &Tensor::from_slice(&sdf), &weight);
    let v = Vec::<f32>::try_from(v.contiguous().view([-1])).unwrap();
    let f = Vec::<i64>::try_from(f.contiguous().view([-1])).unwrap();
    let vertices: Vec<[f32; 3]> = v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let faces: Vec<[i64; 3]> = f.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    clean(&vertices, &faces)
}
