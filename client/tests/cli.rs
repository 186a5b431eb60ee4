//! The `img3d` binary against the real gateway (protocol-server example as a process): files
//! written, exit codes, `--json` events, env vars, usage errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::server::ProtocolServer;
use serde_json::Value;

fn img3d(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_img3d")).args(args).env_remove("IMG3D_SERVER").output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `name` into `dir`: a PNG, or junk bytes when the name ends in `.bad`.
fn input(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let bytes = if name.ends_with(".bad") { b"not an image at all".to_vec() } else { common::png(40, 30) };
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// A complete result directory: the three files, valid, and no temp files left.
fn check_result(dir: &Path) {
    assert_eq!(files_in(dir), ["output3d.zip", "pixel_images.png", "xyz_images.png"]);
    for png in ["pixel_images.png", "xyz_images.png"] {
        assert!(common::is_png(&std::fs::read(dir.join(png)).unwrap()));
    }
    let zip = zip::ZipArchive::new(std::fs::File::open(dir.join("output3d.zip")).unwrap()).unwrap();
    assert!(zip.file_names().any(|n| n.unwrap().ends_with(".obj")));
}

/// Two images over one connection: both result directories complete, exit 0, and nothing on
/// stderr (not a terminal: quiet). Same-stem images get distinct directories.
#[test]
fn writes_results_for_each_image() {
    let server = ProtocolServer::start(Some(30));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("b")).unwrap();
    let (a, b, c) =
        (input(tmp.path(), "cat.png"), input(tmp.path(), "dog.png"), input(tmp.path(), "b/cat.png"));
    let out = tmp.path().join("out");
    let o = img3d(&["generate", "--server", &server.url(), &a, &b, &c, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    for job in ["cat", "dog", "cat-2"] {
        check_result(&out.join(job));
    }
}

/// One bad image among good ones: the good ones are written, the bad one leaves nothing,
/// the exit status is 1, and `--json` reports each step and the server's failure code.
#[test]
fn bad_image_fails_its_job_only_and_json_says_so() {
    let server = ProtocolServer::start(Some(30));
    let tmp = tempfile::tempdir().unwrap();
    let images = [input(tmp.path(), "one.png"), input(tmp.path(), "junk.bad"), input(tmp.path(), "two.png")];
    let out = tmp.path().join("out");
    let url = server.url();
    let mut args = vec!["generate", "--server", &url, "--out", out.to_str().unwrap(), "--json"];
    args.extend(images.iter().map(String::as_str));
    let o = img3d(&args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    check_result(&out.join("one"));
    check_result(&out.join("two"));
    assert!(!out.join("junk").exists());

    let events: Vec<Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |kind: &str| events.iter().filter(|e| e["event"] == kind).collect::<Vec<_>>();
    assert_eq!(of("start").len(), 3);
    assert_eq!(of("completed").len(), 2);
    assert_eq!(of("part").len(), 6);
    assert!(!of("progress").is_empty(), "the tool asks for progress events");
    let failed = of("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["code"], "invalid_image");
    assert_eq!(failed[0]["kind"], "server_failed");
    assert_eq!(failed[0]["retryable"], false);
    let part = of("part")[2];
    assert_eq!(part["name"], "output3d.zip");
    assert!(PathBuf::from(part["path"].as_str().unwrap()).is_file());
    assert!(part["save_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(events.last().unwrap()["event"], "summary");
    assert_eq!(
        (events.last().unwrap()["ok"].as_u64(), events.last().unwrap()["failed"].as_u64()),
        (Some(2), Some(1))
    );
}

/// `--extract` unpacks the server's zip next to it; flags come from env vars too.
#[test]
fn extract_and_env_vars() {
    let server = ProtocolServer::start(Some(10));
    let tmp = tempfile::tempdir().unwrap();
    let image = input(tmp.path(), "cube.png");
    let out = tmp.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_img3d"))
        .args(["generate", &image])
        .env("IMG3D_SERVER", server.url())
        .env("IMG3D_OUT", &out)
        .env("IMG3D_EXTRACT", "true")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let extracted = out.join("cube/output3d");
    assert!(files_in(&extracted).iter().any(|n| n.ends_with(".obj")), "{:?}", files_in(&extracted));
}

/// A job slower than `--timeout` fails with exit 1 and says it timed out.
#[test]
fn timeout_flag() {
    let server = ProtocolServer::start(Some(60_000));
    let tmp = tempfile::tempdir().unwrap();
    let image = input(tmp.path(), "slow.png");
    let o = img3d(&[
        "generate",
        "--server",
        &server.url(),
        &image,
        "--out",
        tmp.path().to_str().unwrap(),
        "--timeout",
        "300ms",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no final status"), "{}", stderr(&o));
}

/// Nobody listening: exit 1 with a connect error; an unreadable image: exit 1; usage errors
/// (no server, a non-WebSocket URL): exit 2.
#[test]
fn errors_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let image = input(tmp.path(), "x.png");
    let out = tmp.path().join("out");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/generate3d");
    let o = img3d(&["generate", "--server", &url, &image, "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));

    let missing = tmp.path().join("missing.png");
    let o = img3d(&["generate", "--server", &url, missing.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));

    assert_eq!(img3d(&["generate", &image]).status.code(), Some(2));
    let o = img3d(&["generate", "--server", "http://127.0.0.1:1/", &image]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid server URL"), "{}", stderr(&o));
}

/// `--glb` and the other option flags reach the server (on the connection's query): the result
/// directory also holds `output3d.glb`, a binary glTF; an out-of-range flag is a usage error
/// naming the option and its range, before anything is sent.
#[test]
fn option_flags_ask_for_the_glb() {
    let server = ProtocolServer::start(Some(30));
    let tmp = tempfile::tempdir().unwrap();
    let image = input(tmp.path(), "cat.png");
    let out = tmp.path().join("out");
    let o = img3d(&[
        "generate",
        "--server",
        &server.url(),
        "--seed",
        "7",
        "--steps",
        "20",
        "--guidance",
        "4.5",
        "--texture",
        "2048",
        "--faces",
        "20000",
        "--remove-background",
        "off",
        "--glb",
        &image,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = out.join("cat");
    assert_eq!(files_in(&dir), ["output3d.glb", "output3d.zip", "pixel_images.png", "xyz_images.png"]);
    assert_eq!(&std::fs::read(dir.join("output3d.glb")).unwrap()[..4], b"glTF");

    let o = img3d(&[
        "generate",
        "--server",
        &server.url(),
        "--steps",
        "0",
        &image,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`steps`") && stderr(&o).contains("1..=100"), "{}", stderr(&o));
}
