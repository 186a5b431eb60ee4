//! First use of `--model crm`: download the official files into the cache, convert them once
//! with `tools/convert.py`, reuse the bundle afterwards.
//!
//! ```text
//! <cache>/downloads/crm/u2net.onnx, pixel-diffusion.pth, ccm-diffusion.pth, CRM.pth
//!     (each fetched to <name>.part, resumed with Range, renamed when complete and checked)
//!   --python tools/convert.py --config <this build's crm config>-->
//! <cache>/bundles/crm/  (written next to it and renamed into place, config.json last)
//! ```
//!
//! A bundle whose `config.json` is this build's [`ModelSource::config`] is reused without any
//! network access. One converted by another build (a different layout) is converted again from
//! the downloads, which are kept for that. Checksums: Hugging Face publishes each file's
//! SHA-256 (`X-Linked-Etag`), which [`Downloader::fetch`] checks; rembg publishes only an MD5
//! for `u2net.onnx`,
//! which is not checked (the converter checks its graph and widths). When the conversion fails,
//! downloads no checksum vouched for are deleted, so the next attempt fetches them again.
//!
//! The converter is Python (torch, safetensors: the project's torch venv). The worker runs
//! `<python> <converter> ...`; see [`crate::converter`] for how both are found (before anything
//! is downloaded). The Docker worker image has no Python: there the bundle is made once on a
//! host (`img3d-worker prepare-model`) and mounted (`IMG3D_MODEL=/models/crm`).
//!
//! One process at a time downloads and converts into a cache ([`CacheLock`] on
//! `<cache>/downloads/crm/.lock`); another one waits, then finds the bundle ready.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use img3d_pipeline::{bundle, BundleConfig};

use crate::cache_lock::CacheLock;
use crate::converter::Converter;
use crate::download::Downloader;

/// One official input of the conversion.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile {
    /// File name, in the cache and under a `--model-source` base URL.
    pub name: &'static str,
    /// Where upstream publishes it.
    pub official_url: &'static str,
    /// The converter's flag for it (`--u2net`, ...).
    pub flag: &'static str,
}

/// The official files: rembg's U-2-Net (its GitHub release) and CRM's three checkpoints
/// (Hugging Face `Zhengyi/CRM`).
pub const CRM_FILES: [ModelFile; 4] = [
    ModelFile {
        name: "u2net.onnx",
        official_url: "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx",
        flag: "--u2net",
    },
    ModelFile {
        name: "pixel-diffusion.pth",
        official_url: "https://huggingface.co/Zhengyi/CRM/resolve/main/pixel-diffusion.pth",
        flag: "--pixel",
    },
    ModelFile {
        name: "ccm-diffusion.pth",
        official_url: "https://huggingface.co/Zhengyi/CRM/resolve/main/ccm-diffusion.pth",
        flag: "--ccm",
    },
    ModelFile {
        name: "CRM.pth",
        official_url: "https://huggingface.co/Zhengyi/CRM/resolve/main/CRM.pth",
        flag: "--crm",
    },
];

/// Where `--model crm` comes from when its bundle is not in the cache yet.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSource {
    /// Base URL serving every file of [`CRM_FILES`] under its name (`--model-source` /
    /// `IMG3D_MODEL_SOURCE`, e.g. a mirror); `None`: each file's official URL.
    pub base_url: Option<String>,
    /// The converter.
    pub converter: Converter,
    /// The bundle layout to convert to: this build's `crm` preset ([`BundleConfig::crm`]).
    pub config: BundleConfig,
}

impl Default for ModelSource {
    fn default() -> Self {
        ModelSource { base_url: None, converter: Converter::default(), config: BundleConfig::crm() }
    }
}

impl ModelSource {
    /// The URL of `file`.
    pub fn url(&self, file: &ModelFile) -> String {
        match &self.base_url {
            Some(base) => format!("{}/{}", base.trim_end_matches('/'), file.name),
            None => file.official_url.to_owned(),
        }
    }
}

/// Where the official files are kept under the cache root `cache`.
pub fn downloads_dir(cache: &Path) -> PathBuf {
    cache.join("downloads").join("crm")
}

/// The converted bundle `bundle_dir`, downloading and converting first unless it is there and
/// was made for `source.config`. Safe against other processes on the same cache (one waits
/// for the other). Logs progress.
pub fn ensure(cache: &Path, bundle_dir: &Path, source: &ModelSource) -> anyhow::Result<PathBuf> {
    if is_current(bundle_dir, &source.config) {
        return Ok(bundle_dir.to_owned());
    }
    let downloads = downloads_dir(cache);
    std::fs::create_dir_all(&downloads).with_context(|| format!("creating {}", downloads.display()))?;
    let _lock =
        CacheLock::acquire(&downloads.join(".lock"), "the CRM bundle").context("locking the model cache")?;
    // Another process may have finished while this one waited.
    if is_current(bundle_dir, &source.config) {
        return Ok(bundle_dir.to_owned());
    }
    // Before downloading several GB: can they be converted here?
    let converter = source.converter.locate()?;
    if bundle_dir.exists() {
        tracing::warn!(
            dir = %bundle_dir.display(),
            "the CRM bundle was converted for another layout (another build): converting it again"
        );
    }
    let downloader = Downloader::new();
    let mut inputs = Vec::new();
    let mut unverified = Vec::new();
    for file in CRM_FILES {
        let dest = downloads.join(file.name);
        if !dest.is_file() {
            let url = source.url(&file);
            tracing::info!(file = file.name, %url, "downloading (first use of --model crm)");
            let digest = downloader
                .fetch(&url, &dest, None, &mut progress_logger(file.name))
                .with_context(|| format!("downloading {} for --model crm", file.name))?;
            match digest {
                Some(sha256) => {
                    tracing::info!(file = file.name, sha256 = %sha256, "downloaded; SHA-256 checked")
                }
                None => {
                    tracing::info!(file = file.name, "downloaded; no checksum published to check");
                    unverified.push(dest.clone());
                }
            }
        }
        inputs.push((file.flag, dest));
    }
    if let Err(e) = converter.run(&source.config, bundle_dir, &inputs) {
        for path in &unverified {
            let _ = std::fs::remove_file(path);
        }
        let note = if unverified.is_empty() {
            String::new()
        } else {
            format!(
                " (the downloads without a published checksum were deleted, so the next start \
                 fetches them again: {})",
                unverified
                    .iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(e.context(format!("converting the official CRM checkpoints{note}")));
    }
    anyhow::ensure!(
        is_current(bundle_dir, &source.config),
        "{} was converted but its config.json is not this build's crm layout: is {} from another \
         version of img3d?",
        bundle_dir.display(),
        converter.script.display()
    );
    Ok(bundle_dir.to_owned())
}

/// Whether `dir` holds a complete bundle made for `config`.
fn is_current(dir: &Path, config: &BundleConfig) -> bool {
    std::fs::read_to_string(dir.join(bundle::CONFIG_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<BundleConfig>(&text).ok())
        .is_some_and(|found| &found == config)
}

/// Logs a download's progress at most every 5 seconds, and its end.
fn progress_logger(name: &'static str) -> impl FnMut(u64, Option<u64>) {
    let mut last: Option<Instant> = None;
    move |done, total| {
        let finished = total == Some(done);
        if !finished && last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            return;
        }
        last = Some(Instant::now());
        let mib = done as f64 / (1 << 20) as f64;
        match total {
            Some(total) if total > 0 => tracing::info!(
                file = name,
                mib,
                percent = (done as f64 * 100.0 / total as f64).round(),
                "download progress"
            ),
            _ => tracing::info!(file = name, mib, "download progress"),
        }
    }
}
