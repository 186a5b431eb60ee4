//! The registration point of the model stages.
//!
//! Each stage module (multi-view diffusion, reconstruction) implements [`StageProvider`] and
//! adds one line to [`providers`]. The provider owns its slot of `config.json`
//! (`stages.<name>`), its bundle files, its random-weight generator for the tiny bundle, and
//! its loading; the pipeline assembles whatever the registry provides and names what is
//! missing.

use std::path::Path;
use std::sync::Arc;

use tch::Device;

use crate::bundle::Bundle;
use crate::stages::{MultiView, Reconstruction};
use crate::PipelineError;

/// Which seam of the pipeline a provider fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// Stage 1 and 2 of the multi-view diffusion ([`MultiView`]).
    MultiView,
    /// Reconstruction and export ([`Reconstruction`]).
    Reconstruction,
}

impl StageKind {
    /// What the seam does, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            StageKind::MultiView => "multi-view diffusion (pixel_images.png, xyz_images.png)",
            StageKind::Reconstruction => "reconstruction and export (output3d.zip)",
        }
    }
}

/// A stage loaded from a bundle.
pub enum LoadedStage {
    /// Fills [`StageKind::MultiView`].
    MultiView(Arc<dyn MultiView>),
    /// Fills [`StageKind::Reconstruction`].
    Reconstruction(Arc<dyn Reconstruction>),
}

/// A model stage as the bundle, the tiny generator and the pipeline see it.
pub trait StageProvider: Sync {
    /// Its key under `stages` in `config.json`, e.g. `diffusion`.
    fn name(&self) -> &'static str;

    /// The seam it fills.
    fn kind(&self) -> StageKind;

    /// Its config for the official CRM weights (cite the upstream file it mirrors).
    fn crm_config(&self) -> serde_json::Value;

    /// Its config at tiny width: every layer kind of the CRM config, few channels.
    fn tiny_config(&self) -> serde_json::Value;

    /// Writes its files for the tiny bundle into `dir` (safetensors named after the
    /// components it loads), random weights drawn from `seed` (see [`crate::tiny::randomize`]).
    fn write_tiny(&self, config: &serde_json::Value, seed: u64, dir: &Path) -> Result<(), PipelineError>;

    /// Loads it from `bundle` onto `device`, strictly (see [`Bundle::load_component`]).
    fn load(
        &self,
        bundle: &Bundle,
        config: &serde_json::Value,
        device: Device,
    ) -> Result<LoadedStage, PipelineError>;
}

/// Every stage provider of this build, in pipeline order. One line per stage.
pub fn providers() -> &'static [&'static dyn StageProvider] {
    &[&crate::diffusion::provider::DiffusionProvider, &crate::recon::provider::ReconProvider]
}

/// The seams no registered provider fills.
pub fn missing_kinds() -> Vec<StageKind> {
    [StageKind::MultiView, StageKind::Reconstruction]
        .into_iter()
        .filter(|k| !providers().iter().any(|p| p.kind() == *k))
        .collect()
}

/// Parses a provider's `stages.<name>` config and checks it with `validate`; either failure
/// is an error naming the slot.
pub fn parse_stage_config<T: serde::de::DeserializeOwned>(
    name: &str,
    config: &serde_json::Value,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, PipelineError> {
    let err = |e: String| PipelineError::Internal(format!("stages.{name} config: {e}"));
    let cfg: T = serde_json::from_value(config.clone()).map_err(|e| err(e.to_string()))?;
    validate(&cfg).map_err(err)?;
    Ok(cfg)
}
