//! The client library against the real gateway, queue and worker loop (the protocol-server
//! example of img3d-worker, as a process; its pipeline double makes valid placeholder parts).

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use common::server::ProtocolServer;
use img3d_client::{Client, ClientConfig, ClientError, Event, FailureCode, PartName};

fn client(url: String, timeout: Duration) -> Client {
    let mut cfg = ClientConfig::new(url);
    cfg.timeout = timeout;
    cfg.connect_timeout = Duration::from_secs(5);
    Client::new(cfg)
}

/// Runs a request to its end: its events and how it ended.
async fn run(client: &Client, image: Vec<u8>) -> (Vec<Event>, Result<(), ClientError>) {
    let mut events = Vec::new();
    let mut request = match client.generate(image).await {
        Ok(r) => r,
        Err(e) => return (events, Err(e)),
    };
    loop {
        match request.next_event().await {
            Ok(Some(e)) => events.push(e),
            Ok(None) => return (events, Ok(())),
            Err(e) => return (events, Err(e)),
        }
    }
}

/// The parts of a successful run, checked: PNG signatures, 1536x256 views, a zip with an OBJ.
fn check_parts(events: &[Event]) {
    let parts: Vec<_> =
        events.iter().filter_map(|e| if let Event::Part(p) = e { Some(p) } else { None }).collect();
    let kinds: Vec<_> = parts.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [Some(PartName::PixelImages), Some(PartName::XyzImages), Some(PartName::Output3d)]);
    for png in &parts[..2] {
        assert!(common::is_png(&png.bytes));
        let img = image::load_from_memory(&png.bytes).unwrap();
        assert_eq!((img.width(), img.height()), (1536, 256));
    }
    assert_eq!(parts[2].content_type, "application/zip");
    let zip = zip::ZipArchive::new(Cursor::new(parts[2].bytes.to_vec())).unwrap();
    assert!(zip.file_names().any(|n| n.unwrap().ends_with(".obj")), "no .obj in the zip");
    assert!(matches!(events.first(), Some(Event::Processing)));
    assert!(matches!(events.last(), Some(Event::Completed)));
}

/// Several jobs over one connection, each complete and in protocol order; with progress
/// events asked for, progress arrives before the first part.
#[tokio::test]
async fn jobs_over_one_connection() {
    let server = ProtocolServer::start(Some(60));
    let client = client(server.url(), Duration::from_secs(30));
    for _ in 0..3 {
        let (events, end) = run(&client, common::png(64, 48)).await;
        end.unwrap();
        check_parts(&events);
    }
    assert_eq!(client.connects(), 1);

    let mut cfg = client.config().clone();
    cfg.progress_events = true;
    let progress = Client::new(cfg);
    let (events, end) = run(&progress, common::png(64, 48)).await;
    end.unwrap();
    check_parts(&events);
    let first_part = events.iter().position(|e| matches!(e, Event::Part(_))).unwrap();
    assert!(events[..first_part].iter().any(|e| matches!(e, Event::Progress { .. })), "{events:?}");
}

/// A non-image is refused by the server with `invalid_image`; the same connection then
/// serves a good image.
#[tokio::test]
async fn server_failure_then_success_on_the_same_connection() {
    let server = ProtocolServer::start(Some(10));
    let client = client(server.url(), Duration::from_secs(30));
    match run(&client, b"this is not an image".to_vec()).await.1 {
        Err(ClientError::ServerFailed { code, error }) => {
            assert_eq!(code, Some(FailureCode::InvalidImage), "{error}");
        }
        other => panic!("{other:?}"),
    }
    let (events, end) = run(&client, common::png(32, 32)).await;
    end.unwrap();
    check_parts(&events);
    assert_eq!(client.connects(), 1);
}

/// A job slower than the client's timeout fails with Timeout promptly; the client is idle
/// again and its next request opens a new connection.
#[tokio::test]
async fn timeout_resets_to_idle() {
    let server = ProtocolServer::start(Some(60_000));
    let client = client(server.url(), Duration::from_millis(500));
    let started = Instant::now();
    let (events, end) = run(&client, common::png(32, 32)).await;
    assert!(matches!(end, Err(ClientError::Timeout { .. })), "{end:?}");
    assert!(matches!(events[..], [Event::Processing]), "{events:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(!client.is_busy());
    assert!(matches!(run(&client, common::png(32, 32)).await.1, Err(ClientError::Timeout { .. })));
    assert_eq!(client.connects(), 2);
}

/// The server process dying mid-job fails the request at once (not at the timeout); the next
/// request reconnects to a server restarted on the same port and succeeds.
#[tokio::test]
async fn server_going_away_then_reconnect() {
    let mut server = ProtocolServer::start(Some(30_000));
    let addr = server.addr;
    let client = client(server.url(), Duration::from_secs(60));
    let mut request = client.generate(common::png(32, 32)).await.unwrap();
    assert!(matches!(request.next_event().await, Ok(Some(Event::Processing))));
    let killed = Instant::now();
    server.kill();
    let end = loop {
        match request.next_event().await {
            Ok(Some(_)) => {}
            other => break other,
        }
    };
    assert!(matches!(end, Err(ClientError::ConnectionLost(_))), "{end:?}");
    assert!(killed.elapsed() < Duration::from_secs(5));
    drop(request);

    match client.generate(common::png(32, 32)).await {
        Err(ClientError::Connect { .. }) => {}
        other => panic!("nobody listens yet: {other:?}"),
    }
    let _restarted = ProtocolServer::start_on(&addr.to_string(), Some(10));
    let (events, end) = run(&client, common::png(32, 32)).await;
    end.unwrap();
    check_parts(&events);
    assert_eq!(client.connects(), 2);
}
