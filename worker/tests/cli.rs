//! The `img3d-worker` command line: well formed, and honest about what this build lacks.

use std::process::Command;

use clap::CommandFactory;
use img3d_worker::cli::Cli;

/// No clashing flags or environment variables, every default parses.
#[test]
fn cli_is_well_formed() {
    Cli::command().debug_assert();
}

fn worker(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_img3d-worker"))
        .args(args)
        .env_remove("IMG3D_REDIS")
        .env_remove("IMG3D_MODEL")
        .output()
        .unwrap()
}

/// `--help` of each mode explains the flags with units.
#[test]
fn help_explains_the_limits() {
    let out = worker(&["standalone", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--max-image-size",
        "IMG3D_MAX_IMAGE_SIZE",
        "--job-timeout",
        "--drain-deadline",
        "decompression bomb",
    ] {
        assert!(help.contains(needle), "missing {needle} in\n{help}");
    }
}

/// `run` with a model directory that holds no bundle fails with a plain reason and exit code 1.
#[test]
fn run_without_a_bundle_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("in.png");
    std::fs::write(&image, b"whatever").unwrap();
    let missing = dir.path().join("no-bundle-here");
    let out = worker(&[
        "run",
        image.to_str().unwrap(),
        "--model",
        missing.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-bundle-here") && err.contains("config.json"), "{err}");
}

/// The queue worker with Redis unreachable exits 1 at start-up, saying so; without --redis
/// it says how to give one.
#[test]
fn queue_worker_without_redis_says_so() {
    let out = worker(&["--redis", "redis://127.0.0.1:1", "--model", "tiny"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to the Redis queue"), "{err}");

    let out = worker(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis URL"));
}
