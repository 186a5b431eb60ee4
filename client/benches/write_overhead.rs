//! Client-side overhead for a 20 MB result ZIP: time from the last byte of the part read off
//! the socket to the file written, for the way `img3d` saves (temp file + rename, on a
//! blocking thread) side by side with the alternatives (plain write, fsync before rename).
//!
//! `cargo bench -p img3d-client --bench write_overhead` (set IMG3D_BENCH_DIR to write
//! somewhere other than the system temp directory). A local WebSocket server sends 10 jobs of
//! three parts over one connection; each strategy saves every ZIP as it arrives.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use img3d_client::{save, Client, ClientConfig, Event, PartName};
use img3d_protocol::ServerMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const ZIP_BYTES: usize = 20 * 1000 * 1000;
/// Jobs per strategy.
const JOBS: usize = 15;

type Strategy = (&'static str, fn(&Path, &str, &[u8]) -> std::io::Result<()>);

const STRATEGIES: [Strategy; 3] = [
    ("temp + rename (img3d)", |dir, name, bytes| save::write_atomic(dir, name, bytes).map(drop)),
    ("plain fs::write", |dir, name, bytes| fs::write(dir.join(name), bytes)),
    ("temp + fsync + rename", |dir, name, bytes| {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(dir.join(name)).map(drop).map_err(|e| e.error)
    }),
];

/// Serves every image with two small PNG-sized parts and one incompressible 20 MB zip part.
async fn serve(listener: tokio::net::TcpListener) {
    let (tcp, _) = listener.accept().await.unwrap();
    let cfg = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let mut ws = tokio_tungstenite::accept_async_with_config(tcp, Some(cfg)).await.unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let zip: Vec<u8> = (0..ZIP_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let zip = bytes::Bytes::from(zip);
    while let Some(Ok(msg)) = ws.next().await {
        if !msg.is_binary() {
            continue;
        }
        ws.send(Message::text(ServerMessage::processing().to_json())).await.unwrap();
        for part in img3d_protocol::PARTS {
            ws.send(Message::text(ServerMessage::result_part(part).to_json())).await.unwrap();
            let bytes =
                if part == PartName::Output3d { zip.clone() } else { bytes::Bytes::from(vec![7u8; 200_000]) };
            ws.send(Message::binary(bytes)).await.unwrap();
        }
        ws.send(Message::text(ServerMessage::completed().to_json())).await.unwrap();
    }
}

fn stats(mut xs: Vec<Duration>) -> String {
    xs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!("{:>8.2} {:>8.2} {:>8.2}", ms(xs[0]), ms(xs[xs.len() / 2]), ms(xs[xs.len() - 1]))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/generate3d", listener.local_addr().unwrap());
    tokio::spawn(serve(listener));
    let base = std::env::var_os("IMG3D_BENCH_DIR").map(Into::into).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let client = Client::new(ClientConfig::new(url));

    // Job j is saved with strategy j % 3, so the machine's drift (other work, page cache
    // growth) spreads over all of them. Measured from the part's last byte read off the socket
    // (Part::received_at) to the file written.
    let mut handoff = Vec::new();
    let mut totals: Vec<Vec<Duration>> = vec![Vec::new(); STRATEGIES.len()];
    for job in 0..JOBS * STRATEGIES.len() {
        let i = job % STRATEGIES.len();
        let write = STRATEGIES[i].1;
        let target = dir.path().join(format!("s{i}"));
        fs::create_dir_all(&target).unwrap();
        let mut request = client.generate(vec![1u8; 1000]).await.unwrap();
        while let Some(event) = request.next_event().await.unwrap() {
            let Event::Part(part) = event else { continue };
            if part.kind != Some(PartName::Output3d) {
                continue;
            }
            handoff.push(part.received_at.elapsed());
            let (target, received_at) = (target.clone(), part.received_at);
            tokio::task::spawn_blocking(move || write(&target, "output3d.zip", &part.bytes))
                .await
                .unwrap()
                .unwrap();
            totals[i].push(received_at.elapsed());
        }
    }
    println!(
        "client-side overhead for a {} MB zip, {} jobs over one connection, in {}",
        ZIP_BYTES / 1_000_000,
        JOBS * STRATEGIES.len(),
        dir.path().display()
    );
    println!("{:<48} {:>8} {:>8} {:>8}   (ms)", "", "min", "median", "max");
    println!("{:<48} {}", "socket -> application (library hand-off)", stats(handoff));
    for ((name, _), total) in STRATEGIES.iter().zip(totals) {
        println!("{:<48} {}", format!("last byte -> file written, {name}"), stats(total));
    }
}
