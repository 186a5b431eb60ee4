//! Finding the converter (`tools/convert.py` and a Python to run it) without relying on the
//! source tree the binary was built from: flags and environment variables override, the
//! defaults are used only where they exist, and what cannot be found says what to set.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use img3d_testkit::file_server::{self, Reply};
use img3d_worker::converter::Converter;

/// A converter with no default location at all, as for a binary far from its source tree.
fn nowhere(python: Option<PathBuf>, script: Option<PathBuf>) -> Converter {
    Converter { python, script, python_fallbacks: vec![], script_fallbacks: vec![] }
}

/// Without flags and without the source tree, the error names both flags and both variables,
/// and where it looked.
#[test]
fn cannot_find_says_which_flag_to_set() {
    let gone = PathBuf::from("/nonexistent/img3d/tools/convert.py");
    let converter = Converter { script_fallbacks: vec![gone.clone()], ..nowhere(None, None) };
    let err = converter.locate().unwrap_err().to_string();
    assert!(err.contains("tools/convert.py not found"), "{err}");
    assert!(err.contains(&gone.display().to_string()), "{err}");
    assert!(err.contains("--converter PATH (IMG3D_CONVERTER)"), "{err}");
    assert!(err.contains("--converter-python PATH (IMG3D_PYTHON)"), "{err}");
    assert!(err.contains("IMG3D_TORCH_VENV"), "{err}");
    assert!(err.contains("prepare-model"), "{err}");
}

/// A path given by a flag that does not exist is named as the flag's.
#[test]
fn a_given_path_that_does_not_exist_is_named() {
    let err = nowhere(Some("/no/such/python".into()), Some("/no/such/convert.py".into()))
        .locate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("the Python /no/such/python given by --converter-python (IMG3D_PYTHON)"), "{err}");
    assert!(
        err.contains("the converter /no/such/convert.py given by --converter (IMG3D_CONVERTER)"),
        "{err}"
    );
}

/// Flags win over existing defaults; the first existing default wins without them; a bare
/// command name is left to PATH.
#[test]
fn flags_override_and_defaults_apply_only_when_present() {
    let dir = tempfile::tempdir().unwrap();
    let [given, default_a, default_b] = ["given.py", "a.py", "b.py"].map(|n| dir.path().join(n));
    for p in [&given, &default_b] {
        std::fs::write(p, "").unwrap();
    }
    let fallbacks = Converter {
        python_fallbacks: vec![default_a.clone(), default_b.clone()],
        script_fallbacks: vec![default_a, default_b.clone()],
        ..nowhere(None, None)
    };
    let found = fallbacks.locate().unwrap();
    assert_eq!((found.python, found.script), (default_b.clone(), default_b));

    let flags = Converter { python: Some("python3".into()), script: Some(given.clone()), ..fallbacks };
    let found = flags.locate().unwrap();
    assert_eq!((found.python, found.script), (PathBuf::from("python3"), given));
}

/// The binary: a Python and a converter given through the environment, or through the flags,
/// are the ones it runs (a shell script standing in for the converter, which fails on purpose
/// and prints its arguments), after downloading from the mirror.
#[test]
fn the_binary_runs_the_converter_it_is_told_to() {
    let requests = Arc::new(Mutex::new(0usize));
    let seen = requests.clone();
    let url = file_server::serve(move |_| {
        *seen.lock().unwrap() += 1;
        Reply::File { body: b"an official file".to_vec(), etag: None, cut_after: None }
    });
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("fake-convert.sh");
    std::fs::write(&script, "echo \"stand-in converter ran with: $*\" >&2\nexit 3\n").unwrap();
    let via_env = |cmd: &mut Command| {
        cmd.env("IMG3D_PYTHON", "/bin/sh").env("IMG3D_CONVERTER", &script);
    };
    let via_flags = |cmd: &mut Command| {
        cmd.args(["--converter-python", "/bin/sh", "--converter"]).arg(&script);
    };
    for how in [&via_env as &dyn Fn(&mut Command), &via_flags] {
        let cache = tempfile::tempdir().unwrap();
        let mut cmd = prepare_model(cache.path(), &url);
        how(&mut cmd);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("/bin/sh {} failed (exit status: 3)", script.display())), "{err}");
        assert!(err.contains("stand-in converter ran with: --config"), "{err}");
        assert!(err.contains("--u2net"), "{err}");
    }
    assert_eq!(*requests.lock().unwrap(), 8, "two sets of four downloads");
}

/// The binary, installed where no default exists (no torch venv under HOME, no
/// IMG3D_TORCH_VENV) and pointed at a converter that is not there: it says what to set before
/// downloading anything.
#[test]
fn the_binary_says_what_to_set_before_downloading() {
    let requests = Arc::new(Mutex::new(0usize));
    let seen = requests.clone();
    let url = file_server::serve(move |_| {
        *seen.lock().unwrap() += 1;
        Reply::NotFound
    });
    let home = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = prepare_model(cache.path(), &url)
        .env("HOME", home.path())
        .env("IMG3D_CONVERTER", "/nonexistent/convert.py")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--converter-python PATH (IMG3D_PYTHON)"), "{err}");
    assert!(err.contains("/nonexistent/convert.py given by --converter (IMG3D_CONVERTER)"), "{err}");
    assert_eq!(*requests.lock().unwrap(), 0, "nothing is downloaded");
}

/// `img3d-worker prepare-model` on the cache `cache` from the mirror `url`, with no converter
/// settings inherited from this environment.
fn prepare_model(cache: &std::path::Path, url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_img3d-worker"));
    cmd.arg("prepare-model")
        .env("IMG3D_CACHE_DIR", cache)
        .env("IMG3D_MODEL_SOURCE", url)
        .env_remove("IMG3D_PYTHON")
        .env_remove("IMG3D_CONVERTER")
        .env_remove("IMG3D_TORCH_VENV");
    cmd
}
