//! A deliberately misbehaving img3d server for client tests in other languages (the Java
//! client's end-to-end test): the first connection breaks the protocol in the chosen way,
//! every later one serves jobs correctly with small placeholder parts (a PNG signature and
//! padding, not real images).
//!
//! `cargo run -p img3d-client --example scripted-server -- --mode unannounced-binary`
//! prints `listening on 127.0.0.1:PORT` on stdout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use futures::{SinkExt, StreamExt};
use img3d_protocol::{ServerMessage, PARTS};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How the first connection misbehaves.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// After `processing`, a binary frame with no `result_part` before it.
    UnannouncedBinary,
    /// After `processing` and the first part, the TCP connection is dropped without a close.
    DropMidJob,
}

/// Scripted misbehaving img3d server (test tool, no model).
#[derive(Debug, Parser)]
struct Cli {
    /// Address to listen on (port 0: a free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// What the first connection does wrong.
    #[arg(long, value_enum)]
    mode: Mode,
}

type Ws = WebSocketStream<TcpStream>;

async fn next_image(ws: &mut Ws) -> bool {
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Binary(_) => return true,
            Message::Close(_) => return false,
            _ => {}
        }
    }
    false
}

async fn text(ws: &mut Ws, msg: ServerMessage) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.send(Message::text(msg.to_json())).await
}

fn placeholder(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(len, 0);
    bytes
}

async fn serve(mut ws: Ws) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    while next_image(&mut ws).await {
        text(&mut ws, ServerMessage::processing()).await?;
        for part in PARTS {
            text(&mut ws, ServerMessage::result_part(part)).await?;
            ws.send(Message::binary(placeholder(1000))).await?;
        }
        text(&mut ws, ServerMessage::completed()).await?;
    }
    Ok(())
}

async fn misbehave(mut ws: Ws, mode: Mode) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    if !next_image(&mut ws).await {
        return Ok(());
    }
    text(&mut ws, ServerMessage::processing()).await?;
    match mode {
        Mode::UnannouncedBinary => {
            ws.send(Message::binary(placeholder(64))).await?;
            while ws.next().await.is_some() {}
        }
        Mode::DropMidJob => {
            text(&mut ws, ServerMessage::result_part(PARTS[0])).await?;
            ws.send(Message::binary(placeholder(1000))).await?;
            drop(ws);
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(&cli.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let seen = Arc::new(AtomicUsize::new(0));
    loop {
        let (tcp, _) = listener.accept().await?;
        let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
            let _ = if first { misbehave(ws, cli.mode).await } else { serve(ws).await };
        });
    }
}
