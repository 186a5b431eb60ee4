//! `wss://`: the `img3d` tool through a TLS server whose certificate is signed by a throwaway
//! CA (made with the `openssl` command and trusted through `SSL_CERT_FILE`, which the native
//! root store honours; set on the child process only).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::fake;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl must be installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, and a certificate for localhost/127.0.0.1 signed by it.
fn make_certs(dir: &Path) {
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    let subj_ca = ["-subj", "/CN=img3d client test CA"];
    openssl(
        dir,
        &[
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"][..],
            &subj_ca,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
}

/// Serves the protocol over TLS on a free port; returns the port.
async fn wss_server(dir: &Path) -> u16 {
    let certs: Vec<_> =
        CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
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
    make_certs(tmp.path());
    let port = wss_server(tmp.path()).await;
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

    let o = run(Some(&tmp.path().join("ca.pem"))).await.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(common::is_png(&std::fs::read(out.join("cat/pixel_images.png")).unwrap()));
}
