//! A throwaway certificate authority for TLS tests, made with the `openssl` command: a CA and a
//! server certificate for `localhost` and `127.0.0.1` signed by it, valid for a day, in a
//! temporary directory removed on drop.
//!
//! A client under test trusts the CA either through its own API or, for a child process,
//! through `SSL_CERT_FILE` (which `rustls-native-certs`, and so the system-roots clients of this
//! workspace, honour): pass [`TestCa::ca_pem`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The CA and the server certificate, as PEM files in a temporary directory.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// Makes the CA and a server certificate for `localhost` / `127.0.0.1` (P-256 keys: quick to
    /// generate). Panics when `openssl` is missing or fails.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the test CA");
        let path = dir.path();
        std::fs::write(path.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            path,
            &[
                &["req", "-x509", "-days", "1", "-subj", "/CN=img3d test CA"][..],
                &key,
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
        );
        openssl(
            path,
            &[&["req", "-subj", "/CN=localhost"][..], &key, &["-keyout", "server.key", "-out", "server.csr"]]
                .concat(),
        );
        openssl(
            path,
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
        TestCa { dir }
    }

    /// The directory holding `ca.pem`, `server.pem` and `server.key` (for servers that take
    /// file names).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM): what a client must trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM), signed by the CA.
    pub fn server_pem(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server certificate's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A rustls server configuration presenting the server certificate (ring provider, no
    /// client authentication).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.server_pem()).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(self.server_key()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Arc::new(config)
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl must be installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
