//! One process at a time prepares a model in a cache: an advisory lock (`flock(2)`, through
//! [`std::fs::File::lock`]) on a lock file in the cache.
//!
//! Why `flock` and not a file holding a process id: containers sharing a cache volume all run
//! their worker as pid 1, so a pid says nothing about who holds the cache, and a pid file left
//! by a killed process has to be guessed stale. The kernel releases an advisory lock when its
//! holder's file is closed, which happens when the process exits or is killed, so a lock is
//! never left behind; and it holds across containers on one host sharing the volume (one
//! kernel). It is per open file description: two opens of the lock file, even in one process,
//! exclude each other. Network file systems may not honour it (NFS does only with lock support
//! configured); give each machine a cache of its own there.
//!
//! The lock file stays in place when released: deleting it would let a process that opened the
//! old file and one that creates a new one both "hold" the lock. It holds one line naming the
//! current or last holder (pid, host), for the log of whoever waits.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// An exclusive lock on a cache, held until dropped (or until the process ends, however it
/// ends).
#[derive(Debug)]
pub struct CacheLock {
    // The open file is the lock: closing it (on drop) releases it.
    _file: File,
    path: PathBuf,
}

impl CacheLock {
    /// Takes the lock at `path` (the file is created if missing), waiting as long as another
    /// process (or another open of the file) holds it. A wait is logged once when it starts,
    /// naming the holder and `what` it is preparing, and once when it ends.
    pub fn acquire(path: &Path, what: &str) -> io::Result<CacheLock> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(path).unwrap_or_default();
                tracing::info!(
                    lock = %path.display(),
                    holder = holder.trim(),
                    "waiting for another process's download and conversion of {what} into this cache"
                );
                let start = Instant::now();
                file.lock().map_err(|e| with_path(e, "waiting for the lock", path))?;
                tracing::info!(
                    secs = start.elapsed().as_secs_f64(),
                    "the other process is done with {what}: checking what it left"
                );
            }
            Err(TryLockError::Error(e)) => return Err(with_path(e, "locking", path)),
        }
        Ok(Self::held(file, path))
    }

    /// Takes the lock at `path` if nobody holds it; `None` when another process (or another
    /// open of the file) does.
    pub fn try_acquire(path: &Path) -> io::Result<Option<CacheLock>> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self::held(file, path))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(with_path(e, "locking", path)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records this process as the holder (best effort: the line is only for others' logs).
    fn held(mut file: File, path: &Path) -> CacheLock {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "an unknown host".to_owned());
        let _ = file.set_len(0).and_then(|()| writeln!(file, "pid {} on {host}", std::process::id()));
        CacheLock { _file: file, path: path.to_owned() }
    }
}

fn open(path: &Path) -> io::Result<File> {
    // Never truncated on open: the holder's line is read by whoever waits.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| with_path(e, "opening the lock file", path))
}

fn with_path(e: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{action} {}: {e}", path.display()))
}
