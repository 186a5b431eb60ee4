//! `rediss://` (TLS) URLs, against a private `redis-server` with a TLS port and a throwaway CA
//! (`img3d_testkit::tls::TestCa`; trusted through `SSL_CERT_FILE`, which the redis crate's
//! rustls roots honour — hence a test binary of its own).

use img3d_testkit::redis_server;

use std::time::Duration;

use bytes::Bytes;
use img3d_protocol::{PartName, PARTS};
use img3d_queue::redis::{RedisConfig, RedisJobQueue, RedisWorkQueue};
use img3d_queue::{JobEvent, JobQueue, NewJob, WorkQueue};
use redis_server::RedisServer;

/// A job goes through a TLS-only Redis reached with a `rediss://` URL (with a password too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_url_round_trip() {
    let certs = img3d_testkit::tls::TestCa::new();
    let tls_port = img3d_testkit::free_port();
    let file = |path: std::path::PathBuf| path.display().to_string();
    let (port, cert, key, ca) =
        (tls_port.to_string(), file(certs.server_pem()), file(certs.server_key()), file(certs.ca_pem()));
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
