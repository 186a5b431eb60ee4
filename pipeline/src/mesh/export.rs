//! `export_textured`: the UV-textured export of upstream's `export_mesh_wt_uv` plus the zip of
//! `generate3d`, from a cleaned mesh and the colour MLP to the bytes of `output3d.zip`.

use tch::Tensor;

use super::archive::{zip_bytes, NAME};
use super::obj::{mtl_text, obj_text};
use super::raster::rasterize_uv;
use super::texture::{bake, encode_png, finish};
use super::unwrap::unwrap;
use super::Mesh;
use crate::stages::{Stage, StepCtl};
use crate::PipelineError;

/// Texture size, as upstream's `res=(1024, 1024)`.
pub const TEXTURE_SIZE: u32 = 1024;

/// Unwraps `mesh`, rasterises its UV triangles at 1024x1024, queries `colour` at the surface
/// point of every covered texel (`colour` maps f32 points `[M, 3]` to the raw colour-MLP output
/// `[M, 3]` in upstream's [-1, 1]; the points are on the CPU, the answer may be on any device),
/// fills and dilates the texture as upstream, and zips `output3d.obj`, `.png`, `.mtl`.
/// Checks for cancellation between the steps.
pub fn export_textured(
    mesh: &Mesh,
    colour: &mut dyn FnMut(&Tensor) -> Result<Tensor, PipelineError>,
    ctl: &mut StepCtl<'_>,
) -> Result<Vec<u8>, PipelineError> {
    const STEPS: u32 = 4;
    ctl.check()?;
    let atlas = unwrap(mesh, TEXTURE_SIZE);
    ctl.progress(Stage::Export, 1, STEPS);
    ctl.check()?;
    let size = TEXTURE_SIZE as usize;
    let raster = rasterize_uv(&atlas.uvs, &atlas.uv_faces, size, size);
    let texture = bake(&raster, &mesh.vertices, &mesh.faces, colour)?;
    ctl.progress(Stage::Export, 2, STEPS);
    ctl.check()?;
    let png = encode_png(&finish(&texture))?;
    ctl.progress(Stage::Export, 3, STEPS);
    ctl.check()?;
    let zip = zip_bytes(&obj_text(NAME, &atlas), &png, &mtl_text(NAME))?;
    ctl.progress(Stage::Export, 4, STEPS);
    Ok(zip)
}
