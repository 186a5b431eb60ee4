//! `img3d-worker run`: the pipeline once on a file, no queue.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use img3d_protocol::{JobOptions, PartName, ProgressStage, PARTS};

use img3d_queue::Failure;

use crate::{JobRunner, JobSink};

/// Writes each part into a directory as it arrives (through a temporary file, so a failed run
/// never leaves a partial part behind).
struct DirSink<'a> {
    dir: &'a Path,
    written: Vec<PathBuf>,
}

impl JobSink for DirSink<'_> {
    fn is_cancelled(&self) -> bool {
        false
    }

    fn progress(&mut self, stage: ProgressStage, step: u32, total: u32) {
        tracing::debug!(stage = stage.as_str(), step, total, "progress");
    }

    fn part(&mut self, name: PartName, bytes: Vec<u8>) -> Result<(), Failure> {
        let path = self.dir.join(name.file_name());
        let write = || -> std::io::Result<()> {
            let mut tmp = tempfile::NamedTempFile::new_in(self.dir)?;
            tmp.write_all(&bytes)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| {
            Failure::new(img3d_protocol::FailureCode::Internal, format!("writing {}: {e}", path.display()))
        })?;
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
        self.written.push(path);
        Ok(())
    }
}

/// Runs `pipeline` on the image file at `image` and writes the three parts into `out`.
/// Returns their paths in protocol order.
pub fn run_once(pipeline: &dyn JobRunner, image: &Path, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let bytes = fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut sink = DirSink { dir: out, written: Vec::new() };
    pipeline
        .run(&bytes, &JobOptions::default(), &mut sink)
        .map_err(|f| anyhow::anyhow!("the job failed ({}): {}", f.code, f.message))?;
    anyhow::ensure!(
        sink.written.len() == PARTS.len(),
        "the pipeline returned after {} of {} parts",
        sink.written.len(),
        PARTS.len()
    );
    Ok(sink.written)
}
