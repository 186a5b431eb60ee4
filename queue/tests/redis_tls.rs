//! `rediss://` (TLS) URLs, against a private `redis-server` with a TLS port and a throwaway CA
//! (made with the `openssl` command; trusted through `SSL_CERT_FILE`, which the redis
//! crate's rustls roots honour — hence a test binary of its own).

#[path = "common/redis_server.rs"]
mod redis_server;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use img3d_protocol::{PartName, PARTS};
use img3d_queue::redis::{RedisConfig, RedisJobQueue, RedisWorkQueue};
use img3d_queue::{JobEvent, JobQueue, NewJob, WorkQueue};
use redis_server::RedisServer;

fn openssl(dir: &Path, args: &[&str]) {
    let status =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl must be installed");
    assert!(status.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&status.stderr));
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it.
fn make_certs(dir: &Path) {
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=img3d test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
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
        ]
        .into_iter()
        .chain(["-extfile", "ext.cnf", "-out", "server.pem"])
        .collect::<Vec<_>>(),
    );
}

/// A job goes through a TLS-only Redis reached with a `rediss://` URL (with a password too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_url_round_trip() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let file = |name: &str| certs.path().join(name).display().to_string();
    let (port, cert, key, ca) =
        (tls_port.to_string(), file("server.pem"), file("server.key"), file("ca.pem"));
    let _server = RedisServer::start_tls(
        &[
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "pw",
        ],
        tls_port,
    );
    // Only this test binary's process: trust the throwaway CA.
    std::env::set_var("SSL_CERT_FILE", &ca);

    let mut cfg = RedisConfig::new(format!("rediss://:pw@localhost:{tls_port}"), "img3d-tls-test");
    cfg.cancel_poll = Duration::from_millis(50);
    let gateway = RedisJobQueue::connect(cfg.clone()).await.expect("TLS connect");
    let worker = RedisWorkQueue::connect(cfg).await.unwrap();
    let mut handle = gateway
        .submit(NewJob {
            image: Bytes::from_static(b"img"),
            options: Default::default(),
            timeout: Duration::from_secs(20),
        })
        .await
        .unwrap();
    let lease = worker.next(Duration::from_secs(10)).await.unwrap().expect("a job");
    for name in PARTS {
        lease.publish_part(name, Bytes::from(name.file_name())).await.unwrap();
    }
    lease.complete().await.unwrap();
    let mut parts = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), handle.next_event()).await.unwrap()
    {
        match event {
            JobEvent::Part(p) => parts.push(p.name),
            JobEvent::Completed => break,
            JobEvent::Failed(f) => panic!("{f:?}"),
            _ => {}
        }
    }
    assert_eq!(parts, vec![PartName::PixelImages, PartName::XyzImages, PartName::Output3d]);
}
