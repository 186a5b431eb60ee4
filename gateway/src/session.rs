//! One WebSocket connection: a stream of jobs, one at a time.
//!
//! `Idle` --binary frame--> `processing`, validate, submit --events--> parts in order -->
//! `completed`/`failed` --> `Idle`. An options message in `Idle` sets the next job's options
//! (over the query's) and is not answered. Each part's announcement and its binary frame are sent
//! back to back, and messages from the client are only handled between whole parts, so an
//! extra image never lands inside the running job's stream.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use img3d_protocol::{ClientOptions, FailureCode, JobOptions, OptionError, ServerMessage};
use img3d_queue::{JobEvent, JobHandle, NewJob};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tracing::Instrument;

use crate::validate::{validate, ImageLimits, ValidImage};
use crate::{ClientError, Gateway};

/// Close codes (RFC 6455 section 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;

/// Why a connection ended (for the log, through `Debug`).
#[derive(Debug)]
#[allow(dead_code)] // the fields are read through Debug only
enum End {
    /// The client closed the connection.
    ClientClosed,
    /// Reading or writing failed: the client is gone.
    Broken(String),
    /// Nothing, not even a pong, came back within the ping timeout.
    DeadPeer,
    /// No image within the idle timeout.
    Idle,
    /// The server is shutting down.
    Draining,
    /// A message over the transport limit (the read side is unusable after it).
    TooBig,
}

/// What the client sent.
enum Incoming {
    Image(Bytes),
    Text(String),
    /// Ping or pong: proof of life only.
    Control,
    Closed,
    TooBig(u64),
    Broken(String),
}

struct Session {
    ws: WebSocket,
    gw: Arc<Gateway>,
    options: ClientOptions,
    /// The job options of the connection's query (an error fails every job of it).
    query_options: Result<JobOptions, OptionError>,
    /// The options message received since the last image, for the next job only.
    next_options: Option<Result<JobOptions, OptionError>>,
    /// Last time anything arrived from the client (pongs included).
    last_heard: Instant,
    ping: Interval,
}

/// Serves one upgraded connection until it ends. Holds `permit` (a connection slot) meanwhile.
pub(crate) async fn run(
    ws: WebSocket,
    gw: Arc<Gateway>,
    options: ClientOptions,
    query_options: Result<JobOptions, OptionError>,
    peer: SocketAddr,
    id: u64,
    permit: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!("conn", id, %peer, progress = options.progress_events);
    async move {
        let metrics = gw.metrics().clone();
        metrics.connected_clients.inc();
        tracing::debug!("connected");
        let period = gw.config.ping_interval;
        let mut ping = interval_at(Instant::now() + period, period);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut session =
            Session { ws, gw, options, query_options, next_options: None, last_heard: Instant::now(), ping };
        let end = session.serve().await;
        tracing::info!(?end, "connection ended");
        metrics.connected_clients.dec();
        drop(permit);
    }
    .instrument(span)
    .await
}

impl Session {
    async fn serve(&mut self) -> End {
        loop {
            let image = match self.wait_for_image().await {
                Ok(image) => image,
                Err(end) => return end,
            };
            if let Err(end) = self.job(image).await {
                return end;
            }
            if self.gw.shutdown.is_draining() {
                self.close(CLOSE_GOING_AWAY, "server shutting down").await;
                return End::Draining;
            }
        }
    }

    /// Waits for the next image, answering text frames, keeping the connection alive, and
    /// ending it on idleness or drain.
    async fn wait_for_image(&mut self) -> Result<Bytes, End> {
        let idle_until = Instant::now() + self.gw.config.idle_timeout;
        let drain = self.gw.shutdown.drain().clone();
        loop {
            tokio::select! {
                _ = drain.cancelled() => {
                    self.close(CLOSE_GOING_AWAY, "server shutting down").await;
                    return Err(End::Draining);
                }
                _ = tokio::time::sleep_until(idle_until) => {
                    self.close(CLOSE_NORMAL, "idle timeout").await;
                    return Err(End::Idle);
                }
                _ = self.ping.tick() => self.keepalive().await?,
                msg = self.ws.recv() => match self.incoming(msg) {
                    Incoming::Image(bytes) => return Ok(bytes),
                    Incoming::Text(text) => match JobOptions::from_message(&text) {
                        // Answered with the job it belongs to (one `failed` per job).
                        Some(options) => self.next_options = Some(options),
                        None => self.refuse(ClientError::TextFrame).await?,
                    },
                    Incoming::Control => {}
                    Incoming::Closed => return Err(End::ClientClosed),
                    Incoming::TooBig(size) => return Err(self.too_big(size).await),
                    Incoming::Broken(e) => return Err(End::Broken(e)),
                },
            }
        }
    }

    /// Runs one job from its image to its last message. `Err` ends the connection.
    async fn job(&mut self, image: Bytes) -> Result<(), End> {
        let received = Instant::now();
        let options = self.take_options();
        self.send(&ServerMessage::processing()).await?;
        let result = match options {
            Ok(options) => match admit(&self.gw, image).await {
                Ok(valid) => submit(&self.gw, valid, options, received).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(ClientError::BadOption(e)),
        };
        match result {
            Ok(handle) => {
                let span = tracing::info_span!("job", id = %handle.id());
                self.forward(handle, received).instrument(span).await
            }
            Err(e) => {
                tracing::info!(code = %e.code(), reason = %e, "image refused");
                self.gw.metrics().job_ended(Some(e.code()), received.elapsed().as_secs_f64());
                self.send(&e.to_message()).await
            }
        }
    }

    /// Forwards the job's events in protocol order while watching the client.
    async fn forward(&mut self, mut handle: JobHandle, received: Instant) -> Result<(), End> {
        let force = self.gw.shutdown.force().clone();
        loop {
            tokio::select! {
                biased;
                _ = force.cancelled() => {
                    let e = ClientError::Unavailable(
                        "the server is shutting down and stopped this job; retry".into(),
                    );
                    self.gw.metrics().job_ended(Some(e.code()), received.elapsed().as_secs_f64());
                    let _ = self.send(&e.to_message()).await;
                    self.close(CLOSE_GOING_AWAY, "server shutting down").await;
                    return Err(End::Draining); // dropping the handle cancels the job
                }
                event = handle.next_event() => {
                    let Some(event) = event else { return Ok(()) };
                    if self.forward_event(event, received).await? {
                        return Ok(());
                    }
                }
                _ = self.ping.tick() => self.keepalive().await?,
                msg = self.ws.recv() => match self.incoming(msg) {
                    Incoming::Image(_) | Incoming::Text(_) => self.refuse(ClientError::JobRunning).await?,
                    Incoming::Control => {}
                    Incoming::Closed => {
                        tracing::info!("client left during the job; cancelling it");
                        return Err(End::ClientClosed);
                    }
                    Incoming::TooBig(_) => {
                        // The read side is unusable; a `failed` here would read as the running
                        // job's end, so close with the size code only.
                        self.close(CLOSE_TOO_BIG, "message too big").await;
                        return Err(End::TooBig);
                    }
                    Incoming::Broken(e) => return Err(End::Broken(e)),
                },
            }
        }
    }

    /// Sends what one event means to this client. Returns whether the job is over.
    async fn forward_event(&mut self, event: JobEvent, received: Instant) -> Result<bool, End> {
        let metrics = self.gw.metrics().clone();
        match event {
            JobEvent::Queued { position } => self.send_optional(ServerMessage::Queued { position }).await?,
            JobEvent::Started => {
                metrics.queue_wait.observe(received.elapsed().as_secs_f64());
                tracing::info!("job started");
            }
            JobEvent::Progress { stage, step, total } => {
                self.send_optional(ServerMessage::Progress { stage, step, total }).await?
            }
            JobEvent::Part(part) => {
                // Announcement and bytes back to back: nothing may come between them.
                self.send(&ServerMessage::result_part(part.name)).await?;
                let len = part.bytes.len();
                self.ws.send(Message::Binary(part.bytes)).await.map_err(|e| End::Broken(e.to_string()))?;
                tracing::info!(part = %part.name, bytes = len, "part sent");
            }
            JobEvent::Completed => {
                self.send(&ServerMessage::completed()).await?;
                metrics.job_ended(None, received.elapsed().as_secs_f64());
                tracing::info!(seconds = received.elapsed().as_secs_f64(), "job completed");
                return Ok(true);
            }
            JobEvent::Failed(failure) => {
                self.send(&ServerMessage::failed(failure.code, failure.message.clone())).await?;
                metrics.job_ended(Some(failure.code), received.elapsed().as_secs_f64());
                tracing::info!(code = %failure.code, reason = %failure.message, "job failed");
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The next job's options: the query's, overridden by an options message sent since the
    /// last image (which applies to this job only).
    fn take_options(&mut self) -> Result<JobOptions, OptionError> {
        let query = self.query_options.clone()?;
        match self.next_options.take() {
            Some(message) => Ok(query.overridden_by(&message?)),
            None => Ok(query),
        }
    }

    fn incoming(&mut self, msg: Option<Result<Message, axum::Error>>) -> Incoming {
        self.last_heard = Instant::now();
        match msg {
            None | Some(Ok(Message::Close(_))) => Incoming::Closed,
            Some(Ok(Message::Binary(bytes))) => Incoming::Image(bytes),
            Some(Ok(Message::Text(text))) => Incoming::Text(text.as_str().to_owned()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Control,
            Some(Err(e)) => match too_long(&e) {
                Some(size) => Incoming::TooBig(size),
                None => Incoming::Broken(e.to_string()),
            },
        }
    }

    /// Answers a message that did not become a job.
    async fn refuse(&mut self, e: ClientError) -> Result<(), End> {
        tracing::info!(code = %e.code(), reason = %e, "message refused");
        self.gw.metrics().refused_messages.with_label_values(&[e.code().as_str()]).inc();
        self.send(&e.to_message()).await
    }

    /// A message over the transport limit: answer `failed` (best effort) and close.
    async fn too_big(&mut self, size: u64) -> End {
        let e = ClientError::TooLarge { size, limit: self.gw.config.max_image_size };
        tracing::info!(reason = %e, "message over the transport limit; closing");
        self.gw.metrics().job_ended(Some(FailureCode::TooLarge), 0.0);
        let _ = self.send(&e.to_message()).await;
        self.close(CLOSE_TOO_BIG, "message too big").await;
        End::TooBig
    }

    /// Pings the client, or ends the connection if it stopped answering.
    async fn keepalive(&mut self) -> Result<(), End> {
        let silence = self.last_heard.elapsed();
        if silence > self.gw.config.ping_interval + self.gw.config.ping_timeout {
            tracing::info!(?silence, "no answer to pings; closing");
            return Err(End::DeadPeer);
        }
        self.ws.send(Message::Ping(Bytes::new())).await.map_err(|e| End::Broken(e.to_string()))
    }

    async fn send(&mut self, msg: &ServerMessage) -> Result<(), End> {
        self.ws.send(Message::Text(msg.to_json().into())).await.map_err(|e| End::Broken(e.to_string()))
    }

    /// Sends an opt-in message type only to clients that asked for it.
    async fn send_optional(&mut self, msg: ServerMessage) -> Result<(), End> {
        if self.options.allows(&msg) {
            self.send(&msg).await?;
        }
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame { code, reason: reason.into() };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
    }
}

/// Admission and validation: only a [`ValidImage`] leaves here.
async fn admit(gw: &Gateway, image: Bytes) -> Result<ValidImage, ClientError> {
    if gw.shutdown.is_draining() {
        return Err(ClientError::Unavailable(
            "the server is shutting down; retry on another server or later".into(),
        ));
    }
    gw.ops.health.admit()?;
    let limits = ImageLimits { max_bytes: gw.config.max_image_size, max_pixels: gw.config.max_pixels };
    let started = Instant::now();
    let _permit = gw.decoders.acquire().await.map_err(|_| ClientError::Internal)?;
    let result = tokio::task::spawn_blocking(move || validate(image, limits)).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "image validation panicked");
        Err(ClientError::Internal)
    });
    gw.metrics().validation.observe(started.elapsed().as_secs_f64());
    result
}

async fn submit(
    gw: &Gateway,
    image: ValidImage,
    options: JobOptions,
    received: Instant,
) -> Result<JobHandle, ClientError> {
    let (width, height) = image.dimensions();
    let timeout = gw.config.job_timeout.saturating_sub(received.elapsed());
    let chosen = (!options.is_default()).then(|| format!("{options:?}"));
    let handle = gw.queue.submit(NewJob { image: image.into_bytes(), options, timeout }).await?;
    tracing::info!(job = %handle.id(), width, height, options = chosen, "job queued");
    Ok(handle)
}

/// The size of a message refused for exceeding the transport limit, if that is the error.
fn too_long(e: &axum::Error) -> Option<u64> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
            size,
            ..
        })) = err.downcast_ref::<tungstenite::Error>()
        {
            return Some(*size as u64);
        }
        source = err.source();
    }
    None
}
