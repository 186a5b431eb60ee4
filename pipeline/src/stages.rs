//! The seams between the pipeline's stages, mirroring upstream's data flow exactly:
//!
//! ```text
//! preprocess_image(...)            -> RGB square image (any size), grey background
//! pipeline(scale, step)            -> stage1_images (6 x 256x256 u8) -> np_imgs  (256 x 1536 x 3)
//!                                  -> stage2_images (6 x 256x256 u8) -> np_xyzs  (256 x 1536 x 3)
//! generate3d(model, np_imgs, np_xyzs) -> output3d.zip
//! ```
//!
//! Each seam is a trait ([`MultiView`], [`Reconstruction`]) so its contract is written in one
//! place and each stage can be tested and benchmarked on its own. Images cross the seams as
//! 8-bit RGB, as they do upstream (stage 2 consumes stage 1's u8 images, not its latents;
//! `generate3d` consumes the u8 arrays).

use image::RgbImage;

use crate::{PipelineError, RunParams};

/// A pipeline stage, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Decode, background removal, recentre, grey background.
    Preprocess,
    /// Multi-view diffusion of the colour views.
    Stage1,
    /// Diffusion of the canonical coordinate maps.
    Stage2,
    /// Triplane network, FlexiCubes, mesh cleaning.
    Reconstruct,
    /// UV unwrap, texture bake, OBJ/MTL/PNG zip.
    Export,
}

/// Cancellation and progress for one run, handed down to every stage.
pub struct StepCtl<'a> {
    cancelled: &'a (dyn Fn() -> bool + 'a),
    progress: &'a mut (dyn FnMut(Stage, u32, u32) + 'a),
}

impl<'a> StepCtl<'a> {
    /// Wraps a cancel check and a progress callback `(stage, step, total)`.
    pub fn new(
        cancelled: &'a (dyn Fn() -> bool + 'a),
        progress: &'a mut (dyn FnMut(Stage, u32, u32) + 'a),
    ) -> Self {
        StepCtl { cancelled, progress }
    }

    /// `Err(Cancelled)` once the job is cancelled. Stages call it between steps (each diffusion
    /// step, each big reconstruction step).
    pub fn check(&self) -> Result<(), PipelineError> {
        if (self.cancelled)() {
            Err(PipelineError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Reports `step` of `total` done in `stage`.
    pub fn progress(&mut self, stage: Stage, step: u32, total: u32) {
        (self.progress)(stage, step, total)
    }
}

/// The two-stage multi-view diffusion (upstream `TwoStagePipeline`).
pub trait MultiView: Send + Sync {
    /// Stage 1: from the preprocessed reference image (RGB, square, any size), the six
    /// generated views, each 256x256, side by side: a 1536x256 image (`np_imgs`).
    /// Seed, steps and guidance come from `params`.
    fn stage1(
        &self,
        reference: &RgbImage,
        params: &RunParams,
        ctl: &mut StepCtl<'_>,
    ) -> Result<RgbImage, PipelineError>;

    /// Stage 2: from the reference and stage 1's views (1536x256), the six canonical
    /// coordinate maps side by side, 1536x256, in the channel order upstream produces
    /// (`np_xyzs`; `generate3d` flips it back).
    fn stage2(
        &self,
        reference: &RgbImage,
        views: &RgbImage,
        params: &RunParams,
        ctl: &mut StepCtl<'_>,
    ) -> Result<RgbImage, PipelineError>;
}

/// The mesh files of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshFiles {
    /// `output3d.zip`: NAME.obj, NAME.mtl, NAME.png.
    pub zip: Vec<u8>,
    /// `output3d.glb`, when the run's params ask for it.
    pub glb: Option<Vec<u8>>,
}

/// Reconstruction and export (upstream `generate3d`).
pub trait Reconstruction: Send + Sync {
    /// From `np_imgs` and `np_xyzs` (both 1536x256 RGB, as stage 1 and 2 return them), the
    /// bytes of `output3d.zip` (NAME.obj, NAME.mtl, NAME.png) and, if `params.glb`, of the
    /// GLB; the seed, face budget and texture size come from `params`. Temporary files, if
    /// any, are removed on every path.
    fn generate3d(
        &self,
        rgb: &RgbImage,
        ccm: &RgbImage,
        params: &RunParams,
        ctl: &mut StepCtl<'_>,
    ) -> Result<MeshFiles, PipelineError>;
}
