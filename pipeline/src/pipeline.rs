//! The whole pipeline: a bundle loaded onto a device, run on image bytes, publishing each part
//! the moment it exists.
//!
//! ```text
//! bytes -> preprocess -> MultiView::stage1 -> pixel_images.png
//!                     -> MultiView::stage2 -> xyz_images.png
//!                     -> Reconstruction::generate3d -> output3d.zip (-> output3d.glb)
//! ```
//!
//! A run's seed, steps, guidance, background rule, texture size, face budget and formats are
//! its [`RunParams`]: the bundle's defaults ([`Pipeline::default_params`]) unless a client chose
//! otherwise.
//!
//! [`Pipeline::load`] opens the bundle and hands each stage its slot of the config and the
//! bundle's files: U-2-Net ([`Preprocessor::load`]), the diffusion
//! ([`diffusion::load::load_multiview`]) and the reconstruction
//! ([`recon::load::load_reconstruction`]). A bundle always configures every stage
//! ([`crate::bundle::read_config`]), so a loaded pipeline runs the whole job.

use std::path::Path;
use std::time::{Duration, Instant};

use image::RgbImage;
use tch::Device;

use crate::bundle::Bundle;
use crate::config::BundleConfig;
use crate::diffusion::multiview::CrmMultiView;
use crate::preprocess::Preprocessor;
use crate::recon::SharedReconstruction;
use crate::stages::{MultiView, Reconstruction, Stage, StepCtl};
use crate::{diffusion, recon, DeviceSpec, PipelineError, RunParams};

/// Width and height of each stage's output strip: six 256x256 views side by side.
pub const STRIP: (u32, u32) = (1536, 256);

/// A result part, in protocol order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Stage 1's six views, PNG.
    PixelImages,
    /// Stage 2's six coordinate maps, PNG.
    XyzImages,
    /// The textured mesh, ZIP (OBJ + MTL + PNG).
    Output3d,
    /// The same mesh as binary glTF, when the run's params ask for it.
    OutputGlb,
}

/// What a run reports, in order.
#[derive(Debug)]
pub enum Event {
    /// `step` of `total` done in `stage`.
    Progress {
        /// The stage.
        stage: Stage,
        /// Steps done.
        step: u32,
        /// Steps in the stage.
        total: u32,
    },
    /// A finished part.
    Part {
        /// Which part.
        part: Part,
        /// Its file bytes.
        bytes: Vec<u8>,
    },
}

/// The loaded pipeline. `Send + Sync`: one instance serves every job of a worker.
pub struct Pipeline {
    bundle: Bundle,
    device: Device,
    preprocessor: Preprocessor,
    multiview: CrmMultiView,
    recon: SharedReconstruction,
    load_time: Duration,
}

impl Pipeline {
    /// Loads the bundle in `bundle_dir` onto `device`: U-2-Net, the diffusion and the
    /// reconstruction. Logs and records how long it took.
    pub fn load(bundle_dir: &Path, device: DeviceSpec) -> Result<Self, PipelineError> {
        let start = Instant::now();
        let device = device.resolve()?;
        let bundle = Bundle::open(bundle_dir)?;
        let (config, files) = (bundle.config(), bundle.components());
        let preprocessor = Preprocessor::load(files, &config.preprocess, &config.u2net, device)?;
        let stages = &config.stages;
        let multiview = diffusion::load::load_multiview(files, &stages.diffusion, &config.defaults, device)?;
        let recon = recon::load::load_reconstruction(files, &stages.reconstruction, device)?;
        let load_time = start.elapsed();
        let pipeline = Pipeline { bundle, device, preprocessor, multiview, recon, load_time };
        tracing::info!(ms = load_time.as_secs_f64() * 1e3, "{}", pipeline.describe());
        Ok(pipeline)
    }

    /// One line: bundle, device, load time, and a warning for random weights.
    pub fn describe(&self) -> String {
        format!(
            "{} at {} on {:?}, loaded in {:.2} s",
            self.bundle.config().summary(),
            self.bundle.dir().display(),
            self.device,
            self.load_time.as_secs_f64()
        )
    }

    /// The bundle's config.
    pub fn config(&self) -> &BundleConfig {
        self.bundle.config()
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// How long [`Pipeline::load`] took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The preprocessing step alone: image bytes -> square RGB reference on grey.
    pub fn preprocess(&self, image: &[u8]) -> Result<RgbImage, PipelineError> {
        self.preprocessor.run(image)
    }

    /// The parameters of a run without options (the bundle's defaults).
    pub fn default_params(&self) -> RunParams {
        RunParams::defaults(&self.config().defaults)
    }

    /// Runs one job with the default parameters (see [`Pipeline::run_with`]).
    pub fn run(
        &self,
        image: &[u8],
        cancelled: &dyn Fn() -> bool,
        on_event: &mut dyn FnMut(Event) -> Result<(), PipelineError>,
    ) -> Result<(), PipelineError> {
        self.run_with(image, &self.default_params(), cancelled, on_event)
    }

    /// Runs one job with `params`. `cancelled` is checked between steps; `on_event` receives
    /// progress and each part as soon as it exists (an error from it ends the run with that
    /// error).
    pub fn run_with(
        &self,
        image: &[u8],
        params: &RunParams,
        cancelled: &dyn Fn() -> bool,
        on_event: &mut dyn FnMut(Event) -> Result<(), PipelineError>,
    ) -> Result<(), PipelineError> {
        params.check()?;
        let check = || if cancelled() { Err(PipelineError::Cancelled) } else { Ok(()) };
        // 1. preprocess
        check()?;
        on_event(Event::Progress { stage: Stage::Preprocess, step: 0, total: 1 })?;
        let reference = self.preprocessor.run_with(image, params.background)?;
        on_event(Event::Progress { stage: Stage::Preprocess, step: 1, total: 1 })?;
        check()?;
        // Progress is advisory: a failing sink surfaces at the next part.
        let mut progress = |stage, step, total| {
            let _ = on_event(Event::Progress { stage, step, total });
        };
        // 2. stage 1 and 2
        let views = self.multiview.stage1(&reference, params, &mut StepCtl::new(cancelled, &mut progress))?;
        check_strip("stage 1", &views)?;
        on_event(Event::Part { part: Part::PixelImages, bytes: encode_png(&views)? })?;
        check()?;
        let mut progress = |stage, step, total| {
            let _ = on_event(Event::Progress { stage, step, total });
        };
        let xyzs =
            self.multiview.stage2(&reference, &views, params, &mut StepCtl::new(cancelled, &mut progress))?;
        check_strip("stage 2", &xyzs)?;
        on_event(Event::Part { part: Part::XyzImages, bytes: encode_png(&xyzs)? })?;
        check()?;
        // 3. reconstruction and export
        let mut progress = |stage, step, total| {
            let _ = on_event(Event::Progress { stage, step, total });
        };
        let files =
            self.recon.generate3d(&views, &xyzs, params, &mut StepCtl::new(cancelled, &mut progress))?;
        on_event(Event::Part { part: Part::Output3d, bytes: files.zip })?;
        match files.glb {
            Some(glb) => on_event(Event::Part { part: Part::OutputGlb, bytes: glb }),
            None if params.glb => Err(PipelineError::Internal("the reconstruction made no GLB".into())),
            None => Ok(()),
        }
    }
}

/// Checks a stage's output is the 1536x256 strip the protocol's PNG holds.
fn check_strip(stage: &str, img: &RgbImage) -> Result<(), PipelineError> {
    if img.dimensions() == STRIP {
        Ok(())
    } else {
        Err(PipelineError::Internal(format!(
            "{stage} produced a {:?} image, expected {STRIP:?}",
            img.dimensions()
        )))
    }
}

/// PNG file bytes of an RGB image.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, PipelineError> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| PipelineError::Internal(format!("PNG encoding: {e}")))?;
    Ok(out)
}
