//! What the tool tells the user: a live status line on a terminal, JSON lines with `--json`,
//! and only failures when stderr is not a terminal (scripts, CI logs).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use img3d_client::{ClientError, Event};
use serde_json::{json, Value};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A status line on stderr, redrawn in place.
    Terminal,
    /// One JSON object per line on stdout.
    Json,
    /// Failures only, on stderr.
    Quiet,
}

impl Mode {
    /// `--json` wins; otherwise a terminal on stderr gets the live line.
    pub fn detect(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Quiet
        }
    }

    /// Whether to ask the server for the opt-in progress messages.
    pub fn wants_progress(self) -> bool {
        self != Mode::Quiet
    }
}

/// The reporter of one run.
#[derive(Debug)]
pub struct Reporter {
    mode: Mode,
    jobs: usize,
    index: usize,
    image: String,
    started: Instant,
    /// What the live line says after the job counter (stage, step).
    status: String,
}

impl Reporter {
    /// A reporter for `jobs` images.
    pub fn new(mode: Mode, jobs: usize) -> Reporter {
        Reporter {
            mode,
            jobs,
            index: 0,
            image: String::new(),
            started: Instant::now(),
            status: String::new(),
        }
    }

    /// Whether the live line needs redrawing while nothing arrives (elapsed time).
    pub fn ticks(&self) -> bool {
        self.mode == Mode::Terminal
    }

    /// A job begins.
    pub fn start(&mut self, index: usize, image: &Path) {
        self.index = index;
        self.image = image.display().to_string();
        self.started = Instant::now();
        self.status = "sending".into();
        self.json(json!({"event": "start", "job": index + 1, "of": self.jobs, "image": self.image}));
        self.draw();
    }

    /// Time since the job began.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A protocol event other than a part (parts are reported once saved).
    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Processing => {
                self.status = "processing".into();
                self.json(json!({"event": "processing", "image": self.image}));
            }
            Event::Queued { position } => {
                self.status = format!("queued, {position} ahead");
                self.json(json!({"event": "queued", "image": self.image, "position": position}));
            }
            Event::Progress { stage, step, total } => {
                self.status = format!("{} {step}/{total}", stage.as_str());
                self.json(json!({"event": "progress", "image": self.image, "stage": stage.as_str(),
                    "step": step, "total": total}));
            }
            Event::Part(_) | Event::Completed => {}
        }
        self.draw();
    }

    /// A part was written to `path`; `save` is the time from its last byte to the file.
    pub fn part_saved(&mut self, name: &str, path: &Path, bytes: usize, save: Duration) {
        self.status = format!("received {name}");
        self.json(json!({"event": "part", "image": self.image, "name": name, "path": path,
            "bytes": bytes, "save_ms": save.as_secs_f64() * 1e3, "elapsed_ms": ms(self.elapsed())}));
        self.draw();
    }

    /// A note that does not fail the job (a part with an unusable name was skipped).
    pub fn warn(&mut self, message: &str) {
        self.json(json!({"event": "warning", "image": self.image, "message": message}));
        if self.mode != Mode::Json {
            self.line(&format!("warning: {message}"));
        }
    }

    /// The job succeeded; its results are in `dir`.
    pub fn completed(&mut self, dir: &Path, extracted: Option<usize>) {
        let elapsed = self.elapsed();
        self.json(json!({"event": "completed", "image": self.image, "dir": dir, "elapsed_ms": ms(elapsed),
            "extracted_files": extracted}));
        if self.mode == Mode::Terminal {
            let prefix = self.prefix();
            self.line(&format!("{prefix}done in {:.1}s -> {}", elapsed.as_secs_f64(), dir.display()));
        }
    }

    /// The job failed (`kind` as in [`ClientError::kind`], or a local step: `read`, `save`,
    /// `extract`, `incomplete`).
    pub fn failed(&mut self, kind: &str, error: &str, client_error: Option<&ClientError>) {
        let elapsed = self.elapsed();
        let code = match client_error {
            Some(ClientError::ServerFailed { code, .. }) => code.map(|c| c.as_str()),
            _ => None,
        };
        self.json(json!({"event": "failed", "image": self.image, "kind": kind, "code": code, "error": error,
            "retryable": client_error.map(ClientError::is_retryable), "elapsed_ms": ms(elapsed)}));
        if self.mode != Mode::Json {
            let prefix = self.prefix();
            self.line(&format!("{prefix}FAILED after {:.1}s: {error}", elapsed.as_secs_f64()));
        }
    }

    /// The end of the run.
    pub fn summary(&mut self, ok: usize, failed: usize) {
        self.json(json!({"event": "summary", "ok": ok, "failed": failed}));
        if self.mode == Mode::Terminal || (self.mode == Mode::Quiet && failed > 0) {
            eprintln!("{ok} of {} job(s) succeeded, {failed} failed", ok + failed);
        }
    }

    /// Redraws the live line (terminal mode only).
    pub fn draw(&self) {
        if self.mode == Mode::Terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{}{}  {:.1}s",
                self.prefix(),
                self.status,
                self.elapsed().as_secs_f64()
            );
            let _ = err.flush();
        }
    }

    fn prefix(&self) -> String {
        format!("[{}/{}] {}  ", self.index + 1, self.jobs, self.image)
    }

    /// A permanent line on stderr (clearing the live line first on a terminal).
    fn line(&self, text: &str) {
        if self.mode == Mode::Terminal {
            eprintln!("\r\x1b[2K{text}");
        } else {
            eprintln!("img3d: {text}");
        }
    }

    fn json(&self, value: Value) {
        if self.mode == Mode::Json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}
