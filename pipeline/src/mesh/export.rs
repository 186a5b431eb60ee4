//! `export_textured`: the UV-textured export of upstream's `export_mesh_wt_uv` plus the zip of
//! `generate3d`, from a cleaned mesh and the colour MLP to the bytes of `output3d.zip`; with
//! [`ExportOptions`], a face budget (decimation first), another texture size and the GLB.

use tch::Tensor;

use super::archive::{zip_bytes, NAME};
use super::decimate::decimate;
use super::geometry::Mesh;
use super::glb::glb_bytes;
use super::obj::{mtl_text, obj_text};
use super::raster::rasterize_uv;
use super::texture::{bake, encode_png, finish};
use super::unwrap::unwrap;
use crate::params::TEXTURE_SIZE;
use crate::stages::{MeshFiles, Stage, StepCtl};
use crate::PipelineError;

/// What a job may change in the export. The default is upstream's export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Texture width and height.
    pub texture: u32,
    /// Decimate to at most this many faces before unwrapping (`None`: keep every face).
    pub faces: Option<u32>,
    /// Also write `output3d.glb`.
    pub glb: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { texture: TEXTURE_SIZE, faces: None, glb: false }
    }
}

/// [`export_files`] with upstream's options: the bytes of `output3d.zip`.
pub fn export_textured(
    mesh: &Mesh,
    colour: &mut dyn FnMut(&Tensor) -> Result<Tensor, PipelineError>,
    ctl: &mut StepCtl<'_>,
) -> Result<Vec<u8>, PipelineError> {
    Ok(export_files(mesh, ExportOptions::default(), colour, ctl)?.zip)
}

/// Decimates `mesh` to the face budget if one is set, unwraps it, rasterises its UV triangles
/// at the texture size, queries `colour` at the surface point of every covered texel (`colour`
/// maps f32 points `[M, 3]` to the raw colour-MLP output `[M, 3]` in upstream's [-1, 1]; the
/// points are on the CPU, the answer may be on any device), fills and dilates the texture as
/// upstream, and zips `output3d.obj`, `.png`, `.mtl`; and writes the GLB of the same mesh and
/// texture when asked. Checks for cancellation between the steps.
pub fn export_files(
    mesh: &Mesh,
    options: ExportOptions,
    colour: &mut dyn FnMut(&Tensor) -> Result<Tensor, PipelineError>,
    ctl: &mut StepCtl<'_>,
) -> Result<MeshFiles, PipelineError> {
    const STEPS: u32 = 4;
    ctl.check()?;
    let decimated;
    let mesh = match options.faces {
        Some(target) if mesh.faces.len() > target as usize => {
            let start = std::time::Instant::now();
            let report;
            (decimated, report) = decimate(mesh, target as usize);
            tracing::info!(?report, ms = start.elapsed().as_secs_f64() * 1e3, "decimated to the face budget");
            &decimated
        }
        _ => mesh,
    };
    let atlas = unwrap(mesh, options.texture);
    ctl.progress(Stage::Export, 1, STEPS);
    ctl.check()?;
    let size = options.texture as usize;
    let raster = rasterize_uv(&atlas.uvs, &atlas.uv_faces, size, size);
    let texture = bake(&raster, &mesh.vertices, &mesh.faces, colour)?;
    ctl.progress(Stage::Export, 2, STEPS);
    ctl.check()?;
    let png = encode_png(&finish(&texture))?;
    ctl.progress(Stage::Export, 3, STEPS);
    ctl.check()?;
    let zip = zip_bytes(&obj_text(NAME, &atlas), &png, &mtl_text(NAME))?;
    let glb = if options.glb { Some(glb_bytes(&atlas, &png)?) } else { None };
    ctl.progress(Stage::Export, 4, STEPS);
    Ok(MeshFiles { zip, glb })
}
