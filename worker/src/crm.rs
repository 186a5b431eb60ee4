//! Loading the CRM pipeline for the worker (`--model tiny|crm|DIR`, `--device`).
//!
//! The body of [`load`] belongs to the pipeline issue; until the pipeline exists it refuses
//! plainly rather than pretend.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use img3d_pipeline::DeviceSpec;

/// Which model bundle to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// The tiny bundle: the CRM architecture at a very small width with random weights from a
    /// fixed seed. Exercises every stage quickly; its output is noise, and it says so.
    Tiny,
    /// The converted official CRM weights at their default location.
    Crm,
    /// A model bundle directory (`config.json` + safetensors).
    Dir(PathBuf),
}

impl FromStr for ModelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Err("empty model: expected tiny, crm or a bundle directory".to_owned()),
            "tiny" => Ok(ModelSpec::Tiny),
            "crm" => Ok(ModelSpec::Crm),
            dir => Ok(ModelSpec::Dir(PathBuf::from(dir))),
        }
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSpec::Tiny => f.write_str("tiny"),
            ModelSpec::Crm => f.write_str("crm"),
            ModelSpec::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Loads the pipeline for `model` on `device`, ready to run jobs.
pub fn load(model: &ModelSpec, device: DeviceSpec) -> anyhow::Result<Arc<dyn crate::Pipeline>> {
    anyhow::bail!(
        "the CRM pipeline is not available in this build yet (requested model {model} on device \
         {device}): the worker cannot run jobs until the pipeline issue lands"
    )
}
