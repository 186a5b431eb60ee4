//! Per-job options through the whole service, on both queue backends: the connection query and
//! the options message reach the pipeline (the message over the query, for one job), a GLB
//! request adds `output3d.glb` after the zip, and every invalid value is refused with
//! `bad_request` naming the option and its range before anything is queued.
//!
//! The Redis cases use a real Redis (`REDIS_URL`, default 127.0.0.1:6379) under a key prefix
//! of their own, with the gateway and the worker loop wired as `img3d-gateway` and
//! `img3d-worker` wire them, in this process.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use futures::SinkExt;
use img3d_gateway::{Gateway, GatewayConfig};
use img3d_protocol::{Format, JobOptions, RemoveBackground};
use img3d_queue::redis::{RedisConfig, RedisJobQueue, RedisWorkQueue};
use img3d_service::{Health, Metrics, Shutdown};
use img3d_worker::JobRunner;
use tokio_tungstenite::tungstenite::Message;

const GLB_ANNOUNCEMENT: &str =
    r#"{"type": "result_part", "name": "output3d.glb", "content_type": "model/gltf-binary"}"#;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Redis,
}

/// A running service; stops when dropped.
struct Service {
    addr: std::net::SocketAddr,
    shutdown: Shutdown,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.drain().cancel();
        self.shutdown.force().cancel();
    }
}

/// Gateway + worker loop around `pipeline` on `backend`.
async fn start_on(backend: Backend, pipeline: Arc<dyn JobRunner>) -> Service {
    match backend {
        Backend::Memory => {
            let server = start(GatewayConfig::default(), pipeline).await;
            ready(server.addr).await;
            Service { addr: server.addr, shutdown: server.shutdown.clone() }
        }
        Backend::Redis => {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let prefix =
                format!("img3d-test-options-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
            let shutdown = Shutdown::new();
            let jobs = RedisJobQueue::connect(RedisConfig::new(url.clone(), prefix.clone())).await.unwrap();
            let work = RedisWorkQueue::connect(RedisConfig::new(url, prefix)).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let metrics = Arc::new(Metrics::new());
            let gateway = Gateway::new(
                GatewayConfig::default(),
                Arc::new(jobs),
                Arc::new(Health::new()),
                metrics,
                shutdown.clone(),
            );
            tokio::spawn(img3d_gateway::serve(listener, gateway));
            tokio::spawn(img3d_worker::run(Arc::new(work), pipeline, shutdown.clone()));
            Service { addr, shutdown }
        }
    }
}

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

/// The query's options reach the pipeline for every job; an options message overrides them
/// for the next job only; `formats` with `glb` adds `output3d.glb` after the zip; a job without
/// options sees the default options and the original three parts.
async fn options_reach_the_pipeline(backend: Backend) {
    let gate = Arc::new(Gate::default());
    gate.release(10);
    let service = start_on(backend, gate.clone()).await;
    let query = "?events=progress&seed=7&steps=20&guidance=4.5&texture=512&faces=20000&formats=zip,glb&remove_background=off";
    let mut ws = connect(service.addr, query).await;

    send_text(&mut ws, r#"{"type": "options", "seed": 9, "texture": 2048, "remove_background": "on"}"#).await;
    send_binary(&mut ws, png(64, 48, 1)).await;
    let glb = read_job_with_glb(&mut ws).await;
    assert_eq!(&glb[..4], b"glTF");

    send_binary(&mut ws, png(64, 48, 2)).await;
    read_job_with_glb(&mut ws).await;

    let mut plain = connect(service.addr, "").await;
    good_job(&mut plain).await;

    let seen = gate.options.lock().unwrap().clone();
    let query_options = JobOptions {
        seed: Some(7),
        guidance: Some(4.5),
        steps: Some(20),
        texture: Some(512),
        faces: Some(20_000),
        formats: Some(vec![Format::Zip, Format::Glb]),
        remove_background: Some(RemoveBackground::Off),
    };
    let overridden = JobOptions {
        seed: Some(9),
        texture: Some(2048),
        remove_background: Some(RemoveBackground::On),
        ..query_options.clone()
    };
    assert_eq!(seen, vec![overridden, query_options, JobOptions::default()]);
}

/// One job with the GLB, skipping the opt-in progress messages.
async fn read_job_with_glb(ws: &mut Ws) -> Vec<u8> {
    assert_eq!(next_text(ws).await, PROCESSING);
    let mut glb = None;
    let mut announced = Vec::new();
    loop {
        let text = next_text(ws).await;
        if text.contains(r#""type": "queued""#) || text.contains(r#""type": "progress""#) {
            continue;
        }
        if text == COMPLETED {
            break;
        }
        announced.push(text.clone());
        let Frame::Binary(bytes) = next_frame(ws).await else { panic!("no bytes after {text}") };
        if text == GLB_ANNOUNCEMENT {
            glb = Some(bytes);
        }
    }
    let expected: Vec<String> =
        ANNOUNCEMENTS.into_iter().chain([GLB_ANNOUNCEMENT]).map(String::from).collect();
    assert_eq!(announced, expected);
    glb.unwrap()
}

/// Every invalid value, by options message and by query, gets `failed` `bad_request` naming the
/// option and its range; nothing reaches the pipeline; the connection then serves a good job.
async fn invalid_options_are_refused(backend: Backend) {
    let gate = Arc::new(Gate::default());
    gate.release(100);
    let service = start_on(backend, gate.clone()).await;
    let cases: &[(&str, &str, &str, &str)] = &[
        ("seed", "-1", "-1", "0..=4294967295"),
        ("seed", "4294967296", "4294967296", "0..=4294967295"),
        ("steps", "0", "0", "1..=100"),
        ("steps", "101", "101", "1..=100"),
        ("guidance", "0.5", "0.5", "1.0..=20.0"),
        ("guidance", "20.5", "20.5", "1.0..=20.0"),
        ("texture", "256", "256", "512, 1024 or 2048"),
        ("texture", "4096", "4096", "512, 1024 or 2048"),
        ("faces", "499", "499", "500..=1000000"),
        ("faces", "1000001", "1000001", "500..=1000000"),
        ("formats", "zip,obj", r#"["zip", "obj"]"#, "zip and glb"),
        ("remove_background", "maybe", r#""maybe""#, "auto, on or off"),
    ];
    let mut ws = connect(service.addr, "").await;
    for (option, query_value, json_value, range) in cases {
        send_text(&mut ws, &format!(r#"{{"type": "options", "{option}": {json_value}}}"#)).await;
        send_binary(&mut ws, png(32, 32, 3)).await;
        let (code, reason) = expect_failed(&mut ws).await;
        assert_eq!(code, "bad_request", "{option}={json_value}: {reason}");
        assert!(reason.contains(&format!("`{option}`")) && reason.contains(range), "{reason}");

        let mut by_query = connect(service.addr, &format!("?{option}={query_value}")).await;
        send_binary(&mut by_query, png(32, 32, 3)).await;
        let (code, reason) = expect_failed(&mut by_query).await;
        assert_eq!(code, "bad_request", "{option}={query_value}: {reason}");
        assert!(reason.contains(&format!("`{option}`")) && reason.contains(range), "{reason}");
    }
    send_text(&mut ws, r#"{"type": "options", "sead": 7}"#).await;
    send_binary(&mut ws, png(32, 32, 3)).await;
    let (code, reason) = expect_failed(&mut ws).await;
    assert_eq!(code, "bad_request");
    assert!(reason.contains("`sead`") && reason.contains("not an option"), "{reason}");

    assert_eq!(gate.started(), 0, "a refused job reached the pipeline");
    // The refused options were for those jobs only: the next one runs with none.
    good_job(&mut ws).await;
    assert_eq!(gate.options.lock().unwrap().clone(), vec![JobOptions::default()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_reach_the_pipeline_memory() {
    options_reach_the_pipeline(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_reach_the_pipeline_redis() {
    options_reach_the_pipeline(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_options_are_refused_memory() {
    invalid_options_are_refused(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_options_are_refused_redis() {
    invalid_options_are_refused(Backend::Redis).await;
}
