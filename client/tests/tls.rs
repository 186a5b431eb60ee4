//! `wss://`: the `img3d` tool through a TLS server whose certificate is signed by a throwaway
//! CA (`img3d_testkit::tls::TestCa`, trusted through `SSL_CERT_FILE`, which the native root
//! store honours; set on the child process only).

mod common;

use std::path::Path;

use common::fake;
use img3d_testkit::tls::TestCa;

/// Serves the protocol over TLS on a free port; returns the port.
async fn wss_server(ca: &TestCa) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let Ok(ws) = tokio_tungstenite::accept_async(tls).await else { return };
                fake::serve_jobs(ws, fake::good_parts(common::zip_of(&[("m.obj", b"v 0 0 0")]))).await;
            });
        }
    });
    port
}

/// A job over wss:// completes when the server's CA is trusted, and fails to connect (exit 1,
/// a certificate error) when it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_over_wss() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let port = wss_server(&ca).await;
    let image = tmp.path().join("cat.png");
    std::fs::write(&image, common::png(16, 16)).unwrap();
    let out = tmp.path().join("out");
    let run = |ca: Option<&Path>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_img3d"));
        cmd.args(["generate", "--server", &format!("wss://localhost:{port}/generate3d")])
            .arg(&image)
            .arg("--out")
            .arg(&out)
            .env_remove("SSL_CERT_DIR");
        match ca {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            None => cmd.env("SSL_CERT_FILE", tmp.path().join("no-such-ca.pem")),
        };
        cmd.output()
    };
    let o = run(None).await.unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot connect") && err.to_lowercase().contains("certificate"), "{err}");

    let o = run(Some(&ca.ca_pem())).await.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(common::is_png(&std::fs::read(out.join("cat/pixel_images.png")).unwrap()));
}
