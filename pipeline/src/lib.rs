//! The CRM image-to-3D pipeline on libtorch through `tch`.
//!
//! Port of thu-ml/CRM at commit 4964e36 ("Convolutional Reconstruction Model", Wang et al. 2024):
//! `preprocess_image` (U-2-Net background removal, recentre, grey background) -> two-stage
//! ImageDream-style multi-view diffusion (six colour views, then six canonical coordinate maps)
//! -> `generate3d` (triplane UNet, FlexiCubes, UV texture, OBJ/MTL/PNG zip).
//!
//! The crate knows nothing of queues or sockets: [`Pipeline::run`] takes image bytes, a cancel
//! flag and a sink for parts and progress. Models come as a bundle directory ([`bundle`]):
//! converted from the official checkpoints by `tools/convert.py` (the worker downloads and
//! converts them on first use), or the tiny random-weight bundle ([`tiny`]).
//!
//! Each stage module owns its typed config and loads itself from a bundle's [`components`]:
//! [`u2net`] and [`preprocess`], [`diffusion`], [`recon`] (with [`mesh`]). [`config`] composes
//! their configs into `config.json`, [`bundle`] reads and checks it, and [`Pipeline::load`]
//! calls each stage directly. No module imports one above it (ARCHITECTURE.md lists the layers).

pub mod bundle;
pub mod components;
pub mod config;
pub mod device;
pub mod diffusion;
pub mod error;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod mesh;
pub mod params;
pub mod pipeline;
pub mod preprocess;
pub mod random;
pub mod recon;
pub mod resample;
pub mod stages;
pub mod tiny;
pub mod u2net;
pub mod weights;

pub use config::{BundleConfig, Preset};
pub use device::DeviceSpec;
pub use error::PipelineError;
pub use params::{Background, RunDefaults, RunParams};
pub use pipeline::{Event, Part, Pipeline};
