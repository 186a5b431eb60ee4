//! The gateway process's one pub/sub connection (deadpool cannot pool pub/sub connections),
//! fanned out to the pumps of its jobs, with reconnect.
//!
//! Pub/sub is at-most-once: notices published while the connection is down are lost. After
//! every (re)subscribe each registered job is told to [`Wake::Resync`] from its stored state,
//! so a reconnect delays a job's events but never loses or reorders them.

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::gateway::Registry;
use super::notice;
use super::pump::Wake;
use super::Shared;

/// First and longest wait between reconnect attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));
/// How often an idle subscription is checked with a PING (a half-open TCP connection would
/// otherwise go unnoticed, and its notices with it).
const PING_EVERY: Duration = Duration::from_secs(5);

/// Starts the subscriber; the returned flag is `true` while subscribed.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    channel: String,
    registry: Arc<Registry>,
    stop: CancellationToken,
) -> watch::Receiver<bool> {
    let (ready_tx, ready_rx) = watch::channel(false);
    tokio::spawn(run(shared, channel, registry, stop, ready_tx));
    ready_rx
}

async fn run(
    shared: Arc<Shared>,
    channel: String,
    registry: Arc<Registry>,
    stop: CancellationToken,
    ready: watch::Sender<bool>,
) {
    let mut backoff = BACKOFF.0;
    loop {
        let connected = tokio::time::timeout(shared.cfg.connect_timeout, subscribe(&shared, &channel));
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = connected => outcome,
        };
        match outcome {
            Ok(Ok(pubsub)) => {
                backoff = BACKOFF.0;
                ready.send_replace(true);
                resync_all(&registry);
                let lost = listen(pubsub, &registry, &stop, shared.cfg.command_timeout).await;
                ready.send_replace(false);
                if !lost {
                    return; // stopped
                }
                tracing::warn!(channel, "pub/sub connection lost; reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(channel, error = %e, "pub/sub subscribe failed; retrying"),
            Err(_) => tracing::warn!(channel, "pub/sub connect timed out; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// Opens a pub/sub connection (with Sentinel, to the master named now) and subscribes.
async fn subscribe(shared: &Shared, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = shared.target.client().await?.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Dispatches notices until the connection drops (`true`) or `stop` (`false`).
async fn listen(
    pubsub: redis::aio::PubSub,
    registry: &Registry,
    stop: &CancellationToken,
    ping_timeout: Duration,
) -> bool {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return false,
            msg = stream.next() => match msg {
                Some(msg) => dispatch(registry, msg.get_payload_bytes()),
                None => return true,
            },
            _ = ping.tick() => {
                let pong = tokio::time::timeout(ping_timeout, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return true;
                }
            }
        }
    }
}

fn dispatch(registry: &Registry, payload: &[u8]) {
    let Some((id, notice)) = std::str::from_utf8(payload).ok().and_then(notice::parse) else {
        tracing::warn!(payload = %String::from_utf8_lossy(payload), "malformed notice");
        return;
    };
    // A notice for a job this process no longer holds (its client left) is expected.
    if let Some(pump) = registry.lock().unwrap().get(&id) {
        let _ = pump.send(Wake::Notice(notice));
    }
}

fn resync_all(registry: &Registry) {
    for pump in registry.lock().unwrap().values() {
        let _ = pump.send(Wake::Resync);
    }
}
