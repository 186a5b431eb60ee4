//! Running `tools/convert.py` (Python: torch, safetensors) for the first use of `--model crm`.
//!
//! Nothing about where it lives is trusted to the build: a binary installed away from its
//! source tree, or a container, is told by flags or the environment:
//!
//! - the script: `--converter PATH` / `IMG3D_CONVERTER`, else `tools/convert.py` of the source
//!   tree this binary was built from, only when that still exists;
//! - the Python: `--converter-python PATH` / `IMG3D_PYTHON`, else `$IMG3D_TORCH_VENV/bin/python`,
//!   else `~/.cache/img3d/torch-2.11.0/bin/python` (the venv `scripts/setup` makes), each only
//!   when it exists.
//!
//! What cannot be found is an error naming the flag and variable to set, raised before any
//! download starts. The paths are looked up only when a conversion is needed: a worker whose
//! bundle is already converted (the Docker image, which has no Python) never asks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use img3d_pipeline::BundleConfig;

/// Where `scripts/setup` makes the torch venv, under `$HOME`. Its name is the torch version
/// the build's `tch` links, which the converter's checkpoints are read with.
pub const SETUP_VENV: &str = ".cache/img3d/torch-2.11.0";

/// How the worker finds the converter: the paths the flags gave, and where to look without
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converter {
    /// `--converter-python` / `IMG3D_PYTHON`: a path, or a command name looked up on `PATH`.
    pub python: Option<PathBuf>,
    /// `--converter` / `IMG3D_CONVERTER`.
    pub script: Option<PathBuf>,
    /// Where to look for Python without `python`, in order; the first existing file wins.
    pub python_fallbacks: Vec<PathBuf>,
    /// Where to look for the script without `script`, in order; the first existing file wins.
    pub script_fallbacks: Vec<PathBuf>,
}

/// A converter that was found: what [`Converter::locate`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedConverter {
    /// The Python to run.
    pub python: PathBuf,
    /// `tools/convert.py`.
    pub script: PathBuf,
}

/// The converter could not be found; says which flag or variable to set.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot run the converter that makes the CRM bundle: {}. (A machine without Python, like the \
     worker's Docker image, does not convert: run `img3d-worker prepare-model` where the torch \
     venv is and pass the bundle directory to --model.)",
    .problems.join("; ")
)]
pub struct ConverterNotFound {
    /// One sentence per thing not found.
    pub problems: Vec<String>,
}

impl Default for Converter {
    fn default() -> Self {
        Self::new(None, None)
    }
}

impl Converter {
    /// The converter given by the flags (`None`: not given), with the default fallbacks of the
    /// module documentation.
    pub fn new(python: Option<PathBuf>, script: Option<PathBuf>) -> Self {
        let venvs = [
            std::env::var_os("IMG3D_TORCH_VENV").map(PathBuf::from),
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(SETUP_VENV)),
        ];
        let python_fallbacks = venvs.into_iter().flatten().map(|venv| venv.join("bin/python")).collect();
        // The source tree this binary was built from: only a fallback, used when it is there.
        let source_tree =
            Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|root| root.join("tools/convert.py"));
        Converter { python, script, python_fallbacks, script_fallbacks: source_tree.into_iter().collect() }
    }

    /// The Python and script to run, or what is missing and how to point at it.
    pub fn locate(&self) -> Result<LocatedConverter, ConverterNotFound> {
        let mut problems = Vec::new();
        let python = match &self.python {
            // A bare name (`python3`) is looked up on PATH when it runs.
            Some(given) if given.components().count() == 1 || given.is_file() => Some(given.clone()),
            Some(given) => {
                problems.push(format!(
                    "the Python {} given by --converter-python (IMG3D_PYTHON) does not exist",
                    given.display()
                ));
                None
            }
            None => first_file(&self.python_fallbacks).or_else(|| {
                problems.push(format!(
                    "no Python with torch found (looked for {}): set --converter-python PATH \
                     (IMG3D_PYTHON) to a Python with torch and safetensors, or IMG3D_TORCH_VENV to \
                     the venv scripts/setup makes (~/{SETUP_VENV})",
                    list(&self.python_fallbacks)
                ));
                None
            }),
        };
        let script = match &self.script {
            Some(given) if given.is_file() => Some(given.clone()),
            Some(given) => {
                problems.push(format!(
                    "the converter {} given by --converter (IMG3D_CONVERTER) does not exist",
                    given.display()
                ));
                None
            }
            None => first_file(&self.script_fallbacks).or_else(|| {
                problems.push(format!(
                    "tools/convert.py not found (looked for {}; this binary is not run from its \
                     source tree): set --converter PATH (IMG3D_CONVERTER) to tools/convert.py of \
                     img3d {}",
                    list(&self.script_fallbacks),
                    env!("CARGO_PKG_VERSION")
                ));
                None
            }),
        };
        match (python, script) {
            (Some(python), Some(script)) => Ok(LocatedConverter { python, script }),
            _ => Err(ConverterNotFound { problems }),
        }
    }
}

fn first_file(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|p| p.is_file()).cloned()
}

fn list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing: no default location".to_owned();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

impl LocatedConverter {
    /// Converts the official files `inputs` (converter flag, path) into the bundle `out` with
    /// the layout `config`; on failure, the error holds the end of the converter's output.
    pub fn run(&self, config: &BundleConfig, out: &Path, inputs: &[(&str, PathBuf)]) -> anyhow::Result<()> {
        let mut config_file = tempfile::NamedTempFile::new().context("writing the converter's config")?;
        config_file.write_all(serde_json::to_string_pretty(config)?.as_bytes())?;
        let mut command = Command::new(&self.python);
        command
            .arg(&self.script)
            .arg("--config")
            .arg(config_file.path())
            .arg("--out")
            .arg(out)
            .arg("--force");
        for (flag, path) in inputs {
            command.arg(flag).arg(path);
        }
        tracing::info!(python = %self.python.display(), script = %self.script.display(), "converting");
        let start = Instant::now();
        let output = command.output().map_err(|e| {
            anyhow::anyhow!(
                "running {}: {e}: the converter needs Python with torch and safetensors (the venv \
                 scripts/setup makes); set --converter-python (IMG3D_PYTHON)",
                self.python.display()
            )
        })?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        for line in text.lines() {
            tracing::info!(target: "img3d_worker::convert", "{line}");
        }
        if !output.status.success() {
            let tail: Vec<&str> = text.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
            anyhow::bail!(
                "{} {} failed ({}): {}",
                self.python.display(),
                self.script.display(),
                output.status,
                tail.join(" | ")
            );
        }
        tracing::info!(secs = start.elapsed().as_secs_f64(), dir = %out.display(), "converted the CRM bundle");
        Ok(())
    }
}
