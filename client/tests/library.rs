//! The client library against scripted servers: the protocol's happy path, and every way a
//! server can misbehave or disappear that the real gateway never does on purpose.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake::{self, FakeServer, Ws};
use futures::StreamExt;
use img3d_client::{Client, ClientConfig, ClientError, Event, FailureCode, PartName};
use img3d_protocol::ServerMessage;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

fn config(url: String) -> ClientConfig {
    let mut cfg = ClientConfig::new(url);
    cfg.timeout = Duration::from_secs(20);
    cfg.connect_timeout = Duration::from_secs(5);
    cfg
}

/// Runs one request to its end: the events before the end, and how it ended.
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

fn part_names(events: &[Event]) -> Vec<String> {
    events.iter().filter_map(|e| if let Event::Part(p) = e { Some(p.name.clone()) } else { None }).collect()
}

async fn good_server() -> FakeServer {
    FakeServer::start(|_, ws| {
        fake::serve_jobs(ws, fake::good_parts(common::zip_of(&[("m.obj", b"v 0 0 0")])))
    })
    .await
}

/// Three jobs on one client: each yields processing, the three parts in order, completed, and
/// all of them use one connection.
#[tokio::test]
async fn jobs_complete_over_one_connection() {
    let server = good_server().await;
    let client = Client::new(config(server.url()));
    for _ in 0..3 {
        let (events, end) = run(&client, common::png(8, 8)).await;
        end.unwrap();
        assert!(matches!(events.first(), Some(Event::Processing)));
        assert!(matches!(events.last(), Some(Event::Completed)));
        assert_eq!(part_names(&events), ["pixel_images.png", "xyz_images.png", "output3d.zip"]);
        let Event::Part(p) = &events[1] else { unreachable!() };
        assert_eq!(p.kind, Some(PartName::PixelImages));
        assert!(common::is_png(&p.bytes));
    }
    assert_eq!((server.connections(), client.connects()), (1, 1));
}

/// A second request while one runs fails at once with Busy and disturbs nothing; the stream
/// API yields the same events as next_event.
#[tokio::test]
async fn second_request_while_running_is_refused() {
    let server = FakeServer::start(|_, mut ws: Ws| async move {
        while fake::recv_image(&mut ws).await.is_some() {
            fake::send_msg(&mut ws, &ServerMessage::processing()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            for (part, bytes) in fake::good_parts(vec![1, 2, 3]) {
                fake::send_part(&mut ws, part.file_name(), part.content_type(), bytes).await;
            }
            fake::send_msg(&mut ws, &ServerMessage::completed()).await;
        }
    })
    .await;
    let client = Client::new(config(server.url()));
    let request = client.generate(common::png(8, 8)).await.unwrap();
    assert!(client.is_busy());
    let started = Instant::now();
    assert!(matches!(client.generate(common::png(8, 8)).await, Err(ClientError::Busy)));
    assert!(started.elapsed() < Duration::from_millis(100));
    let events: Vec<_> = request.into_stream().collect().await;
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events.iter().all(Result::is_ok));
    assert!(!client.is_busy());
    run(&client, common::png(8, 8)).await.1.unwrap();
    assert_eq!(server.connections(), 1);
}

/// A binary frame with no result_part before it is a protocol error; the connection is reset
/// and the next request succeeds on a new one.
#[tokio::test]
async fn unexpected_binary_frame_resets_the_connection() {
    let server = FakeServer::start(|n, mut ws: Ws| async move {
        if n == 0 {
            fake::recv_image(&mut ws).await;
            fake::send_msg(&mut ws, &ServerMessage::processing()).await;
            futures::SinkExt::send(&mut ws, Message::binary(vec![0u8; 10])).await.unwrap();
            while ws.next().await.is_some() {}
        } else {
            fake::serve_jobs(ws, fake::good_parts(vec![9])).await;
        }
    })
    .await;
    let client = Client::new(config(server.url()));
    let (events, end) = run(&client, common::png(8, 8)).await;
    assert!(matches!(events[..], [Event::Processing]), "{events:?}");
    match end {
        Err(ClientError::Protocol(why)) => assert!(why.contains("no result_part"), "{why}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(!client.is_busy());
    run(&client, common::png(8, 8)).await.1.unwrap();
    assert_eq!((server.connections(), client.connects()), (2, 2));
}

/// `failed` ends the request with the server's reason and code, and the connection is kept.
#[tokio::test]
async fn server_failure_keeps_the_connection() {
    let server = FakeServer::start(|_, mut ws: Ws| async move {
        fake::recv_image(&mut ws).await;
        fake::send_msg(&mut ws, &ServerMessage::processing()).await;
        fake::send_msg(&mut ws, &ServerMessage::failed(FailureCode::InvalidImage, "not an image")).await;
        fake::serve_jobs(ws, fake::good_parts(vec![9])).await;
    })
    .await;
    let client = Client::new(config(server.url()));
    match run(&client, b"junk".to_vec()).await.1 {
        Err(ClientError::ServerFailed { error, code }) => {
            assert_eq!((error.as_str(), code), ("not an image", Some(FailureCode::InvalidImage)));
        }
        other => panic!("{other:?}"),
    }
    run(&client, common::png(8, 8)).await.1.unwrap();
    assert_eq!(server.connections(), 1);
}

/// Message types this client does not know (a newer server) are skipped.
#[tokio::test]
async fn unknown_message_types_are_skipped() {
    let server = FakeServer::start(|_, mut ws: Ws| async move {
        fake::recv_image(&mut ws).await;
        fake::send_msg(&mut ws, &ServerMessage::processing()).await;
        futures::SinkExt::send(&mut ws, Message::text(r#"{"type": "eta", "seconds": 4}"#)).await.unwrap();
        for (part, bytes) in fake::good_parts(vec![1]) {
            fake::send_part(&mut ws, part.file_name(), part.content_type(), bytes).await;
        }
        fake::send_msg(&mut ws, &ServerMessage::completed()).await;
        while ws.next().await.is_some() {}
    })
    .await;
    let (events, end) = run(&Client::new(config(server.url())), common::png(8, 8)).await;
    end.unwrap();
    assert_eq!(events.len(), 5);
}

/// The connection dropping mid-job fails the request; the next request reconnects.
#[tokio::test]
async fn dropped_connection_fails_the_request_and_the_next_reconnects() {
    let server = FakeServer::start(|n, mut ws: Ws| async move {
        if n == 0 {
            fake::recv_image(&mut ws).await;
            fake::send_msg(&mut ws, &ServerMessage::processing()).await;
            let (part, bytes) = fake::good_parts(vec![]).remove(0);
            fake::send_part(&mut ws, part.file_name(), part.content_type(), bytes).await;
            drop(ws); // no close frame: the process died
        } else {
            fake::serve_jobs(ws, fake::good_parts(vec![1])).await;
        }
    })
    .await;
    let client = Client::new(config(server.url()));
    let (events, end) = run(&client, common::png(8, 8)).await;
    assert_eq!(part_names(&events), ["pixel_images.png"]);
    assert!(matches!(end, Err(ClientError::ConnectionLost(_))), "{end:?}");
    run(&client, common::png(8, 8)).await.1.unwrap();
    assert_eq!(client.connects(), 2);
}

/// A connection the server closed while idle is not reused; one it closes right after
/// receiving the next image (before answering) gets the image again on a new connection.
#[tokio::test]
async fn idle_connection_closed_by_the_server_is_replaced() {
    let server = FakeServer::start(|n, mut ws: Ws| async move {
        let parts = fake::good_parts(vec![1]);
        fake::recv_image(&mut ws).await;
        fake::send_msg(&mut ws, &ServerMessage::processing()).await;
        for (part, bytes) in &parts {
            fake::send_part(&mut ws, part.file_name(), part.content_type(), bytes.clone()).await;
        }
        fake::send_msg(&mut ws, &ServerMessage::completed()).await;
        if n == 0 {
            let _ = ws.close(None).await; // idle timeout: a clean close
        } else {
            fake::recv_image(&mut ws).await; // takes the image, then dies without a word
        }
    })
    .await;
    let client = Client::new(config(server.url()));
    run(&client, common::png(8, 8)).await.1.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the close reaches the client
    run(&client, common::png(8, 8)).await.1.unwrap();
    assert_eq!(client.connects(), 2);
    run(&client, common::png(8, 8)).await.1.unwrap();
    assert_eq!((server.connections(), client.connects()), (3, 3));
}

/// On the application timeout the request fails, the connection is closed (the server sees
/// it end, which is what cancels the job) and the client is idle again.
#[tokio::test]
async fn timeout_closes_the_connection() {
    let (tx, mut closed) = mpsc::unbounded_channel();
    let tx = Arc::new(tx);
    let server = FakeServer::start(move |_, mut ws: Ws| {
        let tx = tx.clone();
        async move {
            fake::recv_image(&mut ws).await;
            fake::send_msg(&mut ws, &ServerMessage::processing()).await;
            let close = loop {
                match ws.next().await {
                    Some(Ok(Message::Close(_))) => break "close frame",
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break "dropped",
                }
            };
            let _ = tx.send(close);
        }
    })
    .await;
    let mut cfg = config(server.url());
    cfg.timeout = Duration::from_millis(300);
    let client = Client::new(cfg);
    let started = Instant::now();
    let (events, end) = run(&client, common::png(8, 8)).await;
    assert!(matches!(events[..], [Event::Processing]));
    assert!(matches!(end, Err(ClientError::Timeout { .. })), "{end:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!client.is_busy());
    let how = tokio::time::timeout(Duration::from_secs(5), closed.recv()).await.unwrap();
    assert_eq!(how, Some("close frame"));
}

/// With a ping interval, a server that stops answering (no pong) fails the request instead of
/// leaving it hanging until the timeout.
#[tokio::test]
async fn missing_pong_fails_the_request() {
    let server = FakeServer::start(|_, ws: Ws| async move {
        tokio::time::sleep(Duration::from_secs(30)).await; // never reads, so never pongs
        drop(ws);
    })
    .await;
    let mut cfg = config(server.url());
    cfg.ping_interval = Some(Duration::from_millis(100));
    let started = Instant::now();
    let end = run(&Client::new(cfg), common::png(8, 8)).await.1;
    match end {
        Err(ClientError::ConnectionLost(why)) => assert!(why.contains("pong"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Nobody listening: the request fails with a connect error after the configured attempts,
/// quickly; a bad URL is refused before any attempt.
#[tokio::test]
async fn connect_errors_fail_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = Client::new(config(format!("ws://127.0.0.1:{port}/generate3d")));
    let started = Instant::now();
    match client.generate(common::png(8, 8)).await {
        Err(ClientError::Connect { attempts, .. }) => assert_eq!(attempts, 2),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!client.is_busy());
    let bad = Client::new(config("http://127.0.0.1:1/generate3d".into()));
    assert!(matches!(bad.generate(vec![1]).await, Err(ClientError::InvalidUrl { .. })));
}
