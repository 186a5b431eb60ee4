//! The two diffusion stages behind the pipeline's [`MultiView`] seam (upstream
//! `TwoStagePipeline.__call__`: `stage1_sample`, then `stage2_sample` on its views).
//!
//! Each stage: the reference (and, for stage 2, stage 1's views) through upstream's image
//! transforms ([`super::transforms`]), noise drawn from the job's seed ([`super::noise`]), the
//! guided DDIM loop with the bundle's guidance and steps (cancellation checked and progress
//! reported between steps), decode, u8, the six views side by side.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use image::RgbImage;

use super::ddim::Ddim;
use super::precision::precision_for;
use super::sampler::strip;
use super::schedule::NoiseSchedule;
use super::stage1::{Stage1, Stage1Noise};
use super::stage2::{Stage2, Stage2Noise};
use super::transforms::{clip_input, vae_input, views_input};
use super::DiffusionConfig;
use crate::stages::{MultiView, StepCtl};
use crate::{PipelineError, RunParams};

/// CRM's two diffusion stages, loaded.
pub struct CrmMultiView {
    cfg: DiffusionConfig,
    // tch tensors are Send but not Sync; a worker runs one job at a time, so the lock is
    // uncontended.
    stages: Mutex<Stages>,
}

/// The two stages' samplers and models.
pub struct Stages {
    /// Stage 1.
    pub stage1: Stage1,
    /// Stage 2.
    pub stage2: Stage2,
}

impl CrmMultiView {
    /// Both stages with the config they were built from.
    pub fn new(cfg: DiffusionConfig, stage1: Stage1, stage2: Stage2) -> Self {
        CrmMultiView { cfg, stages: Mutex::new(Stages { stage1, stage2 }) }
    }

    /// The config.
    pub fn config(&self) -> &DiffusionConfig {
        &self.cfg
    }

    /// The stages, for exclusive use (benchmarks reach the UNets through this).
    pub fn stages(&self) -> MutexGuard<'_, Stages> {
        // A panic inside a stage is caught before it unwinds past the guard (torch_guarded),
        // so a poisoned lock still holds intact models.
        self.stages.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn views_count(&self) -> u32 {
        self.cfg.stage2.frames.num_frames() as u32
    }
}

impl MultiView for CrmMultiView {
    fn stage1(
        &self,
        reference: &RgbImage,
        params: &RunParams,
        ctl: &mut StepCtl<'_>,
    ) -> Result<RgbImage, PipelineError> {
        let start = Instant::now();
        let mut stages = self.stages();
        let stage = &mut stages.stage1;
        let device = stage.models.device();
        configure(&mut stage.ddim, &mut stage.guidance, &stage.schedule, params, device)?;
        let out = torch_guarded("stage 1", || {
            let _guard = tch::no_grad_guard();
            let stage = &stages.stage1;
            let noise =
                Stage1Noise::draw(params.seed, stage.frames.num_frames(), self.cfg.latent_shape(), device);
            let latents = stage.latents(
                &vae_input(reference, self.cfg.image_size as u32),
                &clip_input(reference, &self.cfg.clip),
                &noise,
                ctl,
            )?;
            strip(&stage.views(&latents))
        })?;
        tracing::info!(ms = start.elapsed().as_secs_f64() * 1e3, "diffusion stage 1 done");
        Ok(out)
    }

    fn stage2(
        &self,
        reference: &RgbImage,
        views: &RgbImage,
        params: &RunParams,
        ctl: &mut StepCtl<'_>,
    ) -> Result<RgbImage, PipelineError> {
        let start = Instant::now();
        let size = self.cfg.image_size as u32;
        let expected = (self.views_count() * size, size);
        if views.dimensions() != expected {
            return Err(PipelineError::Internal(format!(
                "stage 2 needs stage 1's {expected:?} views, got {:?}",
                views.dimensions()
            )));
        }
        let mut stages = self.stages();
        let stage = &mut stages.stage2;
        let device = stage.models.device();
        configure(&mut stage.ddim, &mut stage.guidance, &stage.schedule, params, device)?;
        let out = torch_guarded("stage 2", || {
            let _guard = tch::no_grad_guard();
            let stage = &stages.stage2;
            let noise =
                Stage2Noise::draw(params.seed, stage.frames.num_frames(), self.cfg.latent_shape(), device);
            let latents = stage.latents(
                &vae_input(reference, size),
                &clip_input(reference, &self.cfg.clip),
                &views_input(views, self.views_count(), size)?,
                &noise,
                ctl,
            )?;
            strip(&stage.views(&latents))
        })?;
        tracing::info!(ms = start.elapsed().as_secs_f64() * 1e3, "diffusion stage 2 done");
        Ok(out)
    }
}

/// Points a stage's sampler at the job's steps and guidance. A worker runs one job at a time
/// under the stages' lock, so the loaded stage carries the running job's values; the DDIM
/// tables are rebuilt only when the step count changes (a few hundred scalars).
fn configure(
    ddim: &mut Ddim,
    guidance: &mut f64,
    schedule: &NoiseSchedule,
    params: &RunParams,
    device: tch::Device,
) -> Result<(), PipelineError> {
    if ddim.steps() != params.steps as usize {
        *ddim = Ddim::new(schedule, params.steps as usize, precision_for(device))?;
    }
    *guidance = params.guidance;
    Ok(())
}

/// Runs `f`, turning a libtorch panic (tch panics on a failed op, e.g. CUDA out of memory)
/// into an error of this job rather than unwinding through the worker.
fn torch_guarded<T>(what: &str, f: impl FnOnce() -> Result<T, PipelineError>) -> Result<T, PipelineError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Err(PipelineError::Internal(format!("{what} failed in libtorch: {msg}")))
    })
}
