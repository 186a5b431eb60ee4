//! The reconstruction in a model bundle: its file, loading it ([`load_reconstruction`], at the
//! architecture of `stages.reconstruction` of `config.json`), and the tiny bundle's random
//! weights ([`write_tiny`]).
//!
//! Bundle file: `reconstruction.safetensors`, the keys of upstream's `CRM.pth` under their own
//! names: `unet2.learned_plane`, `unet2.unet.*` (diffusers `UNet2DModel`), `sdfMlp.fc{1,2,3}.*`,
//! `rgbMlp.fc{1,2,3}.*`, `weightMlp.{0,2}.*`.

use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::{CrmReconstruction, ReconConfig, SharedReconstruction};
use crate::components::{self, Components};
use crate::random::{fnv1a, randomize};
use crate::PipelineError;

/// Bundle component holding the weights.
pub const COMPONENT: &str = "reconstruction";

/// Deviation of the tiny bundle's random weights (as the parity fixtures').
const TINY_STD: f64 = 0.2;

/// The tiny bundle's SDF output layer is scaled down by this much, so the sphere prior dominates
/// and the random network yields a lumpy closed surface rather than a foam of tiny blobs: every
/// export step then sees a realistic mesh. Its output is still meaningless.
const TINY_SDF_OUTPUT_SCALE: f64 = 0.05;

/// The network at `cfg`'s size on `device` with libtorch's default random initialisation, for
/// benchmarks of the real architecture without its weights (outputs are noise). The SDF head's
/// output layer is scaled down as in the tiny bundle, so the mesh is a lumpy sphere of about
/// the size a real object gives (~10-30k faces at 80^3) rather than a foam of 300k faces.
pub fn random(cfg: ReconConfig, device: Device) -> Result<CrmReconstruction, PipelineError> {
    let model = CrmReconstruction::new(VarStore::new(device), cfg)?;
    scale_sdf_output(&model.vs, TINY_SDF_OUTPUT_SCALE);
    Ok(model)
}

/// Multiplies `sdfMlp.fc3` (the SDF and deformation outputs) by `factor`.
fn scale_sdf_output(vs: &VarStore, factor: f64) {
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        if name.starts_with("sdfMlp.fc3.") {
            let scaled: Tensor = &var * factor;
            var.copy_(&scaled);
        }
    }
}

/// Writes the tiny bundle's reconstruction file into `dir`: the network at `cfg`'s size with
/// random weights drawn from `seed` (see [`randomize`]), its SDF output scaled down.
pub fn write_tiny(cfg: &ReconConfig, seed: u64, dir: &Path) -> Result<(), PipelineError> {
    let _guard = tch::no_grad_guard();
    let model = CrmReconstruction::new(VarStore::new(Device::Cpu), cfg.clone())?;
    let vs = &model.vs;
    randomize(vs, seed ^ fnv1a(COMPONENT.as_bytes()), TINY_STD);
    scale_sdf_output(vs, TINY_SDF_OUTPUT_SCALE);
    components::save_component(dir, COMPONENT, vs)
}

/// The reconstruction at `cfg`'s architecture, weights loaded strictly from `files`, on
/// `device`, ready to serve jobs.
pub fn load_reconstruction(
    files: &Components,
    cfg: &ReconConfig,
    device: Device,
) -> Result<SharedReconstruction, PipelineError> {
    let mut model = CrmReconstruction::new(VarStore::new(device), cfg.clone())?;
    files.load(model.var_store_mut(), COMPONENT)?;
    Ok(SharedReconstruction::new(model))
}
