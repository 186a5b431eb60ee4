//! The model cache lock: an advisory `flock` that two opens of the lock file (in one process or
//! two) exclude each other by, and that a killed holder releases.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use img3d_worker::cache_lock::CacheLock;

/// Another process holding the lock: a shell that opens the lock file, locks it with the
/// `flock` command (util-linux, the same `flock(2)`), says so, and becomes `sleep`, which keeps
/// the open file and so the lock until it is killed.
fn holder(lock: &Path) -> Child {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("exec 9>>\"$1\" && flock 9 && echo locked && exec sleep 600")
        .arg("holder")
        .arg(lock)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh and flock must be installed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    child
}

/// Two opens of the lock file exclude each other, even in one process; dropping the first lets
/// the second in. The file stays and names its holder.
#[test]
fn two_opens_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".lock");
    let first = CacheLock::acquire(&path, "a test").unwrap();
    assert!(CacheLock::try_acquire(&path).unwrap().is_none());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&format!("pid {} on ", std::process::id())), "{text}");
    drop(first);
    let second = CacheLock::try_acquire(&path).unwrap();
    assert!(second.is_some());
    drop(second);
    assert!(path.is_file(), "the lock file is kept");
}

/// A lock held by another process keeps this one out; when that process is killed (no chance
/// to clean up), the kernel releases the lock and a waiting acquire gets it.
#[test]
fn a_killed_holder_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".lock");
    let mut other = holder(&path);
    assert!(CacheLock::try_acquire(&path).unwrap().is_none());

    let waiting = {
        let path = path.clone();
        std::thread::spawn(move || CacheLock::acquire(&path, "a test"))
    };
    other.kill().unwrap();
    other.wait().unwrap();
    let lock = waiting.join().unwrap().unwrap();
    assert_eq!(lock.path(), path);
    assert!(CacheLock::try_acquire(&path).unwrap().is_none(), "the waiting acquire holds it now");
}

/// A lock file that cannot be opened is an error naming it.
#[test]
fn an_unusable_lock_path_fails_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir/.lock");
    let err = CacheLock::acquire(&path, "a test").unwrap_err();
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}
