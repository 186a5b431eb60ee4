//! One image: read it, send it, save each part as it arrives, check the result is complete,
//! optionally unpack the ZIP.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use img3d_client::save::{self, ExtractLimits};
use img3d_client::{Client, ClientError, Event, Part, PartName};

use crate::report::Reporter;

/// What to do for one image.
#[derive(Debug)]
pub struct JobSpec<'a> {
    /// The local image.
    pub image: &'a Path,
    /// Where its results go.
    pub dir: PathBuf,
    /// Unpack `output3d.zip` into `dir/output3d/`.
    pub extract: bool,
    /// The parts the job must deliver (the three, and the GLB when asked for).
    pub parts: Vec<PartName>,
}

/// The job failed; the reporter has said why.
#[derive(Debug)]
pub struct Failed;

/// Directory names already used in this run, so `a/cat.png` and `b/cat.jpg` do not overwrite
/// each other (`cat`, then `cat-2`).
#[derive(Debug, Default)]
pub struct DirNames(HashSet<String>);

impl DirNames {
    /// A fresh name for `image`'s results.
    pub fn claim(&mut self, image: &Path) -> String {
        let base = save::job_dir_name(image);
        let mut name = base.clone();
        let mut n = 1;
        while !self.0.insert(name.clone()) {
            n += 1;
            name = format!("{base}-{n}");
        }
        name
    }
}

/// Runs one job to its end. On failure the parts this job wrote are removed again (a job
/// counts only when `completed` arrives), except when only `--extract` failed: then the
/// server's result is complete and stays for inspection.
pub async fn run(client: &Client, spec: &JobSpec<'_>, reporter: &mut Reporter) -> Result<(), Failed> {
    let image = match tokio::fs::read(spec.image).await {
        Ok(bytes) => bytes,
        Err(e) => {
            reporter.failed("read", &format!("cannot read {}: {e}", spec.image.display()), None);
            return Err(Failed);
        }
    };
    let mut written = Vec::new();
    let result = receive(client, image, spec, reporter, &mut written).await;
    if let Err((kind, error, client_error)) = result {
        reporter.failed(kind, &error, client_error.as_ref());
        for path in &written {
            let _ = std::fs::remove_file(path);
        }
        // Only removes the directory if the job left it empty.
        let _ = std::fs::remove_dir(&spec.dir);
        return Err(Failed);
    }
    let extracted = if spec.extract {
        let zip = spec.dir.join(PartName::Output3d.file_name());
        let dest = spec.dir.join("output3d");
        match tokio::task::spawn_blocking(move || save::extract_zip(&zip, &dest, ExtractLimits::default()))
            .await
        {
            Ok(Ok(files)) => Some(files.len()),
            Ok(Err(e)) => {
                reporter.failed("extract", &format!("not extracted: {e}"), None);
                return Err(Failed);
            }
            Err(e) => {
                reporter.failed("extract", &format!("extraction crashed: {e}"), None);
                return Err(Failed);
            }
        }
    } else {
        None
    };
    reporter.completed(&spec.dir, extracted);
    Ok(())
}

type JobError = (&'static str, String, Option<ClientError>);

async fn receive(
    client: &Client,
    image: Vec<u8>,
    spec: &JobSpec<'_>,
    reporter: &mut Reporter,
    written: &mut Vec<PathBuf>,
) -> Result<(), JobError> {
    let client_err = |e: ClientError| (e.kind(), e.to_string(), Some(e));
    let mut request = client.generate(image).await.map_err(client_err)?;
    let mut got = HashSet::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        // Redraw the elapsed time while waiting, without dropping the (not cancel-safe)
        // next_event future: it is polled to completion across ticks.
        let next = request.next_event();
        tokio::pin!(next);
        let event = loop {
            tokio::select! {
                event = &mut next => break event.map_err(client_err)?,
                _ = tick.tick(), if reporter.ticks() => reporter.draw(),
            }
        };
        match event {
            Some(Event::Part(part)) => {
                if let Some(kind) = part.kind {
                    got.insert(kind);
                }
                save_part(part, &spec.dir, reporter, written).await?;
            }
            Some(Event::Completed) => break,
            Some(other) => reporter.event(&other),
            None => break,
        }
    }
    if let Some(missing) = spec.parts.iter().find(|p| !got.contains(p)) {
        return Err(("incomplete", format!("the server said completed but sent no {missing}"), None));
    }
    Ok(())
}

/// Writes one part (atomically, off the async threads) and reports it.
async fn save_part(
    part: Part,
    dir: &Path,
    reporter: &mut Reporter,
    written: &mut Vec<PathBuf>,
) -> Result<(), JobError> {
    let Some(name) = save::part_file_name(&part.name) else {
        reporter.warn(&format!("skipped a part with the unusable name {:?}", part.name));
        return Ok(());
    };
    let size = part.bytes.len();
    let dir = dir.to_owned();
    let file = name.clone();
    let received_at = part.received_at;
    let saved = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        // `part` (and with it the bytes) is dropped when this closure ends.
        save::write_atomic(&dir, &file, &part.bytes)
    })
    .await;
    let path = match saved {
        Ok(Ok(path)) => path,
        Ok(Err(e)) => return Err(("save", format!("cannot save {name}: {e}"), None)),
        Err(e) => return Err(("save", format!("saving {name} crashed: {e}"), None)),
    };
    let save_time = Instant::now().duration_since(received_at);
    written.push(path.clone());
    reporter.part_saved(&name, &path, size, save_time);
    Ok(())
}
