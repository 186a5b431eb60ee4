//! The two-stage multi-view diffusion (CRM's ImageDream-style stages).

pub mod attention;
pub mod camera;
pub mod embeddings;
pub mod resampler;
pub mod resblock;
pub mod unet;
