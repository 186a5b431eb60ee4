//! The `img3d` binary against a hostile scripted server: result ZIPs that try to escape the
//! output directory on `--extract`, and part names that are paths.

mod common;

use std::path::Path;
use std::process::Output;

use common::fake::{self, FakeServer, Ws};
use img3d_protocol::{PartName, ServerMessage};

async fn img3d(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_img3d")).args(args).output().await.unwrap()
}

fn write_png(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, common::png(16, 16)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Serves the three parts with `zip` as output3d.zip.
async fn zip_server(zip: Vec<u8>) -> FakeServer {
    FakeServer::start(move |_, ws| fake::serve_jobs(ws, fake::good_parts(zip.clone()))).await
}

/// Every kind of escaping entry (`..`, absolute path, symlink) makes `--extract` refuse the
/// whole archive: nothing lands outside (or inside) the target, the job fails (exit 1), and
/// the downloaded zip is kept for inspection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_refuses_escaping_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let absolute = victim.join("abs.txt");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", common::zip_of(&[("ok.obj", b"v 0 0 0"), ("../../../victim/dotdot.txt", b"x")])),
        ("absolute", common::zip_of(&[(absolute.to_str().unwrap(), b"x")])),
        ("symlink", common::zip_with_symlink("link", victim.to_str().unwrap())),
    ];
    for (case, zip) in cases {
        let server = zip_server(zip).await;
        let image = write_png(tmp.path(), &format!("{case}.png"));
        let out = tmp.path().join("out");
        let o = img3d(&[
            "generate",
            "--server",
            &server.url(),
            &image,
            "--out",
            out.to_str().unwrap(),
            "--extract",
        ])
        .await;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{case}: {stderr}");
        assert!(stderr.contains("unsafe zip entry"), "{case}: {stderr}");
        let job = out.join(case);
        assert!(job.join("output3d.zip").is_file(), "{case}: the zip itself is kept");
        assert!(!job.join("output3d").exists(), "{case}: nothing extracted");
        let left: Vec<_> = std::fs::read_dir(&job).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 3, "{case}: no staging directory left: {left:?}");
    }
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0, "something escaped into {victim:?}");
}

/// A well-formed result ZIP is unpacked into DIR/<stem>/output3d/ with its nested paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_unpacks_a_good_zip() {
    let tmp = tempfile::tempdir().unwrap();
    let zip =
        common::zip_of(&[("mesh.obj", b"v 0 0 0"), ("mesh.mtl", b"newmtl m"), ("tex/mesh.png", b"png")]);
    let server = zip_server(zip).await;
    let image = write_png(tmp.path(), "cat.png");
    let out = tmp.path().join("out");
    let o =
        img3d(&["generate", "--server", &server.url(), &image, "--out", out.to_str().unwrap(), "--extract"])
            .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dest = out.join("cat/output3d");
    assert_eq!(std::fs::read(dest.join("mesh.obj")).unwrap(), b"v 0 0 0");
    assert_eq!(std::fs::read(dest.join("tex/mesh.png")).unwrap(), b"png");
}

/// Part names from the server never become paths: an extra part named `../../evil.png` is
/// saved as `evil.png` inside the job directory, and a hidden name is skipped with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_names_from_the_server_are_sanitised() {
    let server = FakeServer::start(|_, mut ws: Ws| async move {
        while fake::recv_image(&mut ws).await.is_some() {
            fake::send_msg(&mut ws, &ServerMessage::processing()).await;
            fake::send_part(&mut ws, "../../evil.png", "image/png", common::png(4, 4)).await;
            fake::send_part(&mut ws, "/x/.bashrc", "text/plain", b"rm -rf ~".to_vec()).await;
            for (part, bytes) in fake::good_parts(vec![1, 2]) {
                fake::send_part(&mut ws, part.file_name(), part.content_type(), bytes).await;
            }
            fake::send_msg(&mut ws, &ServerMessage::completed()).await;
        }
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let image = write_png(tmp.path(), "cat.png");
    let out = tmp.path().join("a/b/out");
    let o = img3d(&["generate", "--server", &server.url(), &image, "--out", out.to_str().unwrap(), "--json"])
        .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut files: Vec<_> = std::fs::read_dir(out.join("cat"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["evil.png", "output3d.zip", "pixel_images.png", "xyz_images.png"]);
    assert!(!tmp.path().join("a/evil.png").exists() && !tmp.path().join("a/b/evil.png").exists());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(r#""event":"warning""#) && stdout.contains(".bashrc"), "{stdout}");
}

/// A server that says `completed` without all three parts fails the job (exit 1) and the
/// parts it did send are removed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_without_all_parts_is_a_failure() {
    let server = FakeServer::start(|_, mut ws: Ws| async move {
        fake::recv_image(&mut ws).await;
        fake::send_msg(&mut ws, &ServerMessage::processing()).await;
        let png = common::png(4, 4);
        fake::send_part(&mut ws, PartName::PixelImages.file_name(), "image/png", png).await;
        fake::send_msg(&mut ws, &ServerMessage::completed()).await;
        let _ = fake::recv_image(&mut ws).await;
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let image = write_png(tmp.path(), "cat.png");
    let out = tmp.path().join("out");
    let o = img3d(&["generate", "--server", &server.url(), &image, "--out", out.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sent no xyz_images.png"));
    assert!(!out.join("cat").exists());
}
