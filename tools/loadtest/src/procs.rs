//! Memory of the processes under test, from /proc: resident set size sampled while the load
//! runs, and the kernel's own high-water mark (VmHWM) at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A process to watch: a label (`gateway-1`) and its pid.
#[derive(Debug, Clone)]
pub struct Watched {
    /// Label for the table.
    pub name: String,
    /// Process id.
    pub pid: u32,
}

impl std::str::FromStr for Watched {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, pid) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=PID"))?;
        let pid = pid.trim().parse().map_err(|_| format!("{s:?}: {pid:?} is not a pid"))?;
        Ok(Watched { name: name.trim().to_owned(), pid })
    }
}

/// A `kB` field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Peak resident memory per process, in KiB: the largest sample and the last VmHWM read.
#[derive(Debug, Default, Clone)]
pub struct Peaks {
    /// Largest VmRSS seen while sampling.
    pub sampled: BTreeMap<String, u64>,
    /// VmHWM (peak since the process started) at the last sample.
    pub hwm: BTreeMap<String, u64>,
}

/// Samples every `every` until dropped; `peaks()` reads the result so far.
pub struct Sampler {
    peaks: Arc<Mutex<Peaks>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `procs` (nothing when empty).
    pub fn start(procs: Vec<Watched>, every: Duration) -> Sampler {
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let shared = peaks.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let mut p = shared.lock().unwrap();
                for w in &procs {
                    if let Some(rss) = status_kib(w.pid, "VmRSS:") {
                        let e = p.sampled.entry(w.name.clone()).or_default();
                        *e = (*e).max(rss);
                    }
                    if let Some(hwm) = status_kib(w.pid, "VmHWM:") {
                        p.hwm.insert(w.name.clone(), hwm);
                    }
                }
            }
        });
        Sampler { peaks, task }
    }

    /// The peaks so far.
    pub fn peaks(&self) -> Peaks {
        self.peaks.lock().unwrap().clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
