//! One WebSocket connection: a stream of jobs, one at a time.
//!
//! `Idle` --binary frame--> `processing`, validate, submit --events--> parts in order -->
//! `completed`/`failed` --> `Idle`. An options message sets the next job's options (over the
//! query's) and is not answered. Each part's announcement and its binary frame are sent back to
//! back. What the client sends during a job waits in a small backlog and is answered after the
//! job, in arrival order, as the original server did by reading the next frame only then: the
//! first image becomes the next job (with an options message sent before it), anything else
//! gets its `failed`. Nothing is ever written inside a running job's stream.
//!
//! Every send is bounded (`--send-timeout`, more for a large part at `--min-send-rate`) and
//! gives up when the drain deadline passes, so a client that stops reading can hold neither
//! its slot nor the shutdown. Liveness counts bytes moving either way ([`Activity`]), so a
//! slow upload or download is not taken for a dead peer.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use img3d_protocol::{ClientOptions, FailureCode, JobOptions, OptionError, ServerMessage};
use img3d_queue::{JobEvent, JobHandle, NewJob};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::Message;

use crate::access::ClientId;
use crate::budget::{self, NoRoom, Uploads};
use crate::quota::{Kind, Slot};
use crate::transport::{Activity, Peer};
use crate::upgrade::{WebSocket, FRAGMENT};
use crate::validate::{inspect, validate, ImageLimits, ValidImage};
use crate::{ClientError, Gateway};

/// Close codes (RFC 6455 section 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_TRY_LATER: u16 = 1013;

/// How long the last words to a client that is being let go (a `failed`, a close frame) may
/// take: short, because the connection ends whatever the client does.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// Most messages held during a job (one image, the rest answered `failed` after it). A client
/// that sends more without waiting for answers is closed: holding its refusals is unbounded.
const MAX_BACKLOG: usize = 8;

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
    /// The client did not take a message within its send limit (it stopped reading).
    SendTimeout(Duration),
    /// More messages during a job than the backlog holds.
    Flooding,
    /// No image within the idle timeout.
    Idle,
    /// The server is shutting down.
    Draining,
    /// A message over the transport limit (the read side is unusable after it).
    TooBig,
    /// No room in the memory budget for the client's upload within the wait.
    Starved,
}

/// Why the read side stopped for good (it is not read again).
#[derive(Clone, Copy)]
enum Unreadable {
    /// A frame over the transport limit.
    TooBig,
    /// An upload with no room in the memory budget.
    Starved,
}

impl Unreadable {
    /// The close frame's code and reason, and why the connection ended.
    fn close(self) -> (u16, &'static str, End) {
        match self {
            Unreadable::TooBig => (CLOSE_TOO_BIG, "message too big", End::TooBig),
            Unreadable::Starved => (CLOSE_TRY_LATER, "server short of memory", End::Starved),
        }
    }
}

/// The `busy` of work that found no room in the memory budget.
fn short_of_memory() -> ClientError {
    ClientError::Busy("the server is short of memory right now; retry in a few seconds".into())
}

/// What the client sent.
enum Incoming {
    Image(Bytes),
    Text(String),
    /// Ping or pong: proof of life only.
    Control,
    Closed,
    TooBig(u64),
    /// Reading stopped: no room in the memory budget for the upload.
    Starved,
    Broken(String),
}

/// A message that arrived during a job, answered after it.
enum Waiting {
    /// The next job.
    Image(Bytes),
    /// Options for the image after it (answered with that job if they are bad).
    Options(Result<JobOptions, OptionError>),
    /// Gets this `failed`.
    Refused(ClientError),
}

struct Session {
    ws: WebSocket,
    gw: Arc<Gateway>,
    /// Whom its jobs count against.
    client: ClientId,
    options: ClientOptions,
    /// The job options of the connection's query (an error fails every job of it).
    query_options: Result<JobOptions, OptionError>,
    /// The options message received since the last image, for the next job only.
    next_options: Option<Result<JobOptions, OptionError>>,
    /// When bytes last moved on the connection.
    activity: Arc<Activity>,
    ping: Interval,
    /// When the ping not yet answered went out (an [`Activity::now`] stamp).
    ping_sent: Option<u64>,
    /// What arrived during the running job, in order.
    backlog: VecDeque<Waiting>,
    /// The read side failed for good: answer the backlog, then close.
    unreadable: Option<Unreadable>,
    /// What the client uploaded and this session has not yet received.
    uploads: Arc<Uploads>,
}

/// Serves one upgraded connection until it ends. Holds `slots` (the server's and the client's
/// connection slot) meanwhile.
pub(crate) async fn run(
    ws: WebSocket,
    gw: Arc<Gateway>,
    options: ClientOptions,
    query_options: Result<JobOptions, OptionError>,
    peer: Peer,
    id: u64,
    slots: (OwnedSemaphorePermit, Slot),
) {
    let span = tracing::info_span!("conn", id, peer = %peer.addr, progress = options.progress_events);
    async move {
        let metrics = gw.metrics().clone();
        metrics.connected_clients.inc();
        tracing::debug!("connected");
        let period = gw.config.ping_interval;
        let mut ping = interval_at(Instant::now() + period, period);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut session = Session {
            ws,
            gw,
            client: slots.1.client(),
            options,
            query_options,
            next_options: None,
            activity: peer.activity,
            uploads: peer.uploads,
            ping,
            ping_sent: None,
            backlog: VecDeque::new(),
            unreadable: None,
        };
        let end = session.serve().await;
        tracing::info!(?end, "connection ended");
        metrics.connected_clients.dec();
        drop(slots);
    }
    .instrument(span)
    .await
}

impl Session {
    async fn serve(&mut self) -> End {
        loop {
            let image = match self.next_image().await {
                Ok(image) => image,
                Err(end) => return end,
            };
            if let Err(end) = self.job(image).await {
                return end;
            }
            if self.gw.shutdown.is_draining() {
                return self.answer_backlog_and_leave().await;
            }
        }
    }

    /// The next image: the one waiting since the last job, or the next to arrive. Refusals
    /// that arrived before it are answered first, in order.
    async fn next_image(&mut self) -> Result<Bytes, End> {
        loop {
            while let Some(waiting) = self.backlog.pop_front() {
                match waiting {
                    Waiting::Image(image) => return Ok(image),
                    Waiting::Options(options) => self.next_options = Some(options),
                    Waiting::Refused(e) => self.refuse(e).await?,
                }
            }
            if let Some(unreadable) = self.unreadable {
                let (code, reason, end) = unreadable.close();
                self.close(code, reason).await;
                return Err(end);
            }
            if let Some(image) = self.wait_for_image().await? {
                return Ok(image);
            }
        }
    }

    /// Draining after a job: what waits is refused (retry elsewhere), then the connection
    /// closes.
    async fn answer_backlog_and_leave(&mut self) -> End {
        while let Some(waiting) = self.backlog.pop_front() {
            let e = match waiting {
                Waiting::Image(_) => ClientError::Unavailable(
                    "the server is shutting down; retry on another server or later".into(),
                ),
                Waiting::Refused(e) => e,
                Waiting::Options(_) => continue,
            };
            if let Err(end) = self.refuse(e).await {
                return end;
            }
        }
        self.close(CLOSE_GOING_AWAY, "server shutting down").await;
        End::Draining
    }

    /// Holds a message that arrived during a job, to answer after it: at most one image
    /// becomes the next job.
    async fn hold(&mut self, waiting: Waiting) -> Result<(), End> {
        if self.backlog.len() >= MAX_BACKLOG {
            tracing::info!(held = self.backlog.len(), "too many messages during a job; closing");
            self.close(CLOSE_POLICY, "too many messages without waiting for answers").await;
            return Err(End::Flooding);
        }
        let waiting = match waiting {
            Waiting::Image(_) if self.backlog.iter().any(|w| matches!(w, Waiting::Image(_))) => {
                Waiting::Refused(ClientError::JobRunning)
            }
            other => other,
        };
        self.backlog.push_back(waiting);
        Ok(())
    }

    /// Waits for the next image, answering text frames, keeping the connection alive, and
    /// ending it on idleness or drain. `None`: something joined the backlog instead.
    async fn wait_for_image(&mut self) -> Result<Option<Bytes>, End> {
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
                msg = self.ws.next() => match self.incoming(msg) {
                    Incoming::Image(bytes) => return Ok(Some(bytes)),
                    Incoming::Text(text) => match JobOptions::from_message(&text) {
                        // Answered with the job it belongs to (one `failed` per job).
                        Some(options) => self.next_options = Some(options),
                        None => self.refuse(ClientError::TextFrame).await?,
                    },
                    Incoming::Control => {}
                    Incoming::Closed => return Err(End::ClientClosed),
                    Incoming::TooBig(size) => {
                        self.too_big(size);
                        return Ok(None);
                    }
                    Incoming::Starved => {
                        self.starved();
                        return Ok(None);
                    }
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
        // Counted as waiting from before validation until a worker starts it.
        let result = match options {
            Err(e) => Err(ClientError::BadOption(e)),
            Ok(options) => match self.gw.quotas.take(self.client, Kind::Queued) {
                None => Err({
                    if let Some(key) = self.client.key_label() {
                        self.gw.metrics().key_refused.with_label_values(&[&key, "queued"]).inc();
                    }
                    ClientError::Busy(
                    "this client has as many jobs waiting as the server allows; retry when one has started"
                        .into(),
                    )
                }),
                Some(waiting) => match admit(&self.gw, image).await {
                    Ok(valid) => {
                        submit(&self.gw, valid, options, received).await.map(|handle| (handle, waiting))
                    }
                    Err(e) => Err(e),
                },
            },
        };
        match result {
            Ok((handle, waiting)) => {
                let span = tracing::info_span!("job", id = %handle.id());
                self.forward(handle, waiting, received).instrument(span).await
            }
            Err(e) => {
                tracing::info!(code = %e.code(), reason = %e, "image refused");
                self.job_ended(Some(e.code()), received);
                self.send(&e.to_message()).await
            }
        }
    }

    /// Forwards the job's events in protocol order while watching the client. Dropping the
    /// handle on an early return cancels the job.
    async fn forward(&mut self, handle: JobHandle, waiting: Slot, received: Instant) -> Result<(), End> {
        let result = self.forward_events(handle, Some(waiting), received).await;
        match &result {
            Err(End::Draining) => {
                let e = ClientError::Unavailable(
                    "the server is shutting down and stopped this job; retry".into(),
                );
                self.job_ended(Some(e.code()), received);
                if self.last_words(Message::Text(e.to_message().to_json().into())).await {
                    self.close(CLOSE_GOING_AWAY, "server shutting down").await;
                }
            }
            Err(End::SendTimeout(limit)) => {
                tracing::info!(?limit, "the client stopped reading; closing and cancelling its job");
                self.job_ended(Some(FailureCode::Timeout), received);
                self.close(CLOSE_POLICY, "not reading: send timed out").await;
            }
            _ => {}
        }
        result
    }

    /// `waiting` counts the job against the client's queue quota until a worker starts it.
    async fn forward_events(
        &mut self,
        mut handle: JobHandle,
        mut waiting: Option<Slot>,
        received: Instant,
    ) -> Result<(), End> {
        let force = self.gw.shutdown.force().clone();
        loop {
            tokio::select! {
                biased;
                _ = force.cancelled() => return Err(End::Draining),
                event = handle.next_event() => {
                    let Some(event) = event else { return Ok(()) };
                    if matches!(event, JobEvent::Started) {
                        drop(waiting.take());
                    }
                    if self.forward_event(event, received).await? {
                        return Ok(());
                    }
                }
                _ = self.ping.tick() => self.keepalive().await?,
                msg = self.ws.next(), if self.unreadable.is_none() => match self.incoming(msg) {
                    Incoming::Image(image) => self.hold(Waiting::Image(image)).await?,
                    Incoming::Text(text) => match JobOptions::from_message(&text) {
                        Some(options) => self.hold(Waiting::Options(options)).await?,
                        None => self.hold(Waiting::Refused(ClientError::TextFrame)).await?,
                    },
                    Incoming::Control => {}
                    Incoming::Closed => {
                        tracing::info!("client left during the job; cancelling it");
                        return Err(End::ClientClosed);
                    }
                    // The job runs on; its `failed` is sent after it, then the connection closes.
                    Incoming::TooBig(size) => self.too_big(size),
                    Incoming::Starved => self.starved(),
                    Incoming::Broken(e) => return Err(End::Broken(e)),
                },
            }
        }
    }

    /// Counts a job's end (for this client's API key too, if it sent one).
    fn job_ended(&self, code: Option<FailureCode>, received: Instant) {
        let key = self.client.key_label();
        self.gw.metrics().job_ended(key.as_deref(), code, received.elapsed().as_secs_f64());
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
                let len = part.bytes.len();
                // The WebSocket library copies the part into this connection's write buffer:
                // that copy comes from the memory budget, reserved before the announcement.
                // Waiting for room is like a slow link: it may take the part's send limit.
                let wait = self.gw.config.send_limit(len);
                let force = self.gw.shutdown.force().clone();
                let room = tokio::select! {
                    biased;
                    _ = force.cancelled() => return Err(End::Draining),
                    room = self.gw.budget.reserve(len as u64, wait) => room,
                };
                let Ok(_room) = room else {
                    let e = short_of_memory();
                    tracing::warn!(part = %part.name, bytes = len, "no room in the memory budget to send a part");
                    self.send(&e.to_message()).await?;
                    self.job_ended(Some(e.code()), received);
                    return Ok(true); // dropping the handle cancels the job
                };
                // Announcement and bytes back to back: nothing may come between them.
                self.send(&ServerMessage::result_part(part.name)).await?;
                self.send_part(part.bytes).await?;
                tracing::info!(part = %part.name, bytes = len, "part sent");
            }
            JobEvent::Completed => {
                self.send(&ServerMessage::completed()).await?;
                self.job_ended(None, received);
                tracing::info!(seconds = received.elapsed().as_secs_f64(), "job completed");
                return Ok(true);
            }
            JobEvent::Failed(failure) => {
                // An internal failure's message may carry internals (paths, devices, tensor
                // names): the log keeps it, under this job's id; the client gets a sentence.
                let told = match failure.code {
                    FailureCode::Internal => ClientError::Internal.to_string(),
                    _ => failure.message.clone(),
                };
                self.send(&ServerMessage::failed(failure.code, told)).await?;
                self.job_ended(Some(failure.code), received);
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

    fn incoming(&mut self, msg: Option<Result<Message, tungstenite::Error>>) -> Incoming {
        if let Some(Ok(_)) = &msg {
            self.uploads.message_received();
        }
        match msg {
            None | Some(Ok(Message::Close(_))) => Incoming::Closed,
            Some(Ok(Message::Binary(bytes))) => Incoming::Image(bytes),
            Some(Ok(Message::Text(text))) => Incoming::Text(text.as_str().to_owned()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Incoming::Control,
            Some(Err(_)) if self.uploads.starved() => Incoming::Starved,
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

    /// A frame over the transport limit, refused from its header: the read side is unusable
    /// after it, so its `failed` joins the backlog (after the running job, if any) and the
    /// connection closes once the backlog is answered.
    fn too_big(&mut self, size: u64) {
        let e = ClientError::TooLarge { size, limit: self.gw.config.max_image_size };
        tracing::info!(reason = %e, "frame over the transport limit; closing after the answer");
        self.stop_reading(Unreadable::TooBig, e);
    }

    /// An upload that found no room in the memory budget within its wait: the read side stops
    /// there, so its `busy` joins the backlog (after the running job, if any) and the
    /// connection closes (1013, try again later) once the backlog is answered.
    fn starved(&mut self) {
        tracing::warn!("no room in the memory budget for an upload; closing after the answer");
        self.stop_reading(Unreadable::Starved, short_of_memory());
    }

    /// The read side stopped for good: `answer` joins the backlog, past any bound on it (it is
    /// the last message the connection reads), and the close lingers, so the client, maybe
    /// still sending, reads the answer instead of a reset.
    fn stop_reading(&mut self, why: Unreadable, answer: ClientError) {
        self.unreadable = Some(why);
        self.activity.linger_on_close();
        self.backlog.push_back(Waiting::Refused(answer));
    }

    /// Pings the client, or ends the connection when a ping went unanswered for the ping
    /// timeout with no bytes moving either way meanwhile (a pong is needed only for a ping that
    /// is outstanding, and any data is as good as a pong).
    async fn keepalive(&mut self) -> Result<(), End> {
        if let Some(sent) = self.ping_sent {
            if !self.activity.moved_since(sent) {
                let waited = Duration::from_millis(Activity::now().saturating_sub(sent));
                if waited > self.gw.config.ping_timeout {
                    tracing::info!(?waited, "no answer to a ping, nothing moving; closing");
                    return Err(End::DeadPeer);
                }
                return Ok(());
            }
        }
        self.send_message(Message::Ping(Bytes::new()), 0).await?;
        self.ping_sent = Some(Activity::now());
        Ok(())
    }

    async fn send(&mut self, msg: &ServerMessage) -> Result<(), End> {
        let text = msg.to_json();
        let len = text.len();
        self.send_message(Message::Text(text.into()), len).await
    }

    /// Sends one message of `len` bytes within its send limit, giving up when the drain
    /// deadline passes.
    async fn send_message(&mut self, msg: Message, len: usize) -> Result<(), End> {
        let (limit, force) = (self.gw.config.send_limit(len), self.gw.shutdown.force().clone());
        bounded(&force, limit, self.ws.send(msg)).await
    }

    /// Sends a part as one binary message in fragments of [`FRAGMENT`] bytes, each a slice of
    /// the shared part (no copy), so the connection's write buffer never holds more than one
    /// fragment. The whole part gets its send limit, as one message would.
    async fn send_part(&mut self, part: Bytes) -> Result<(), End> {
        let (limit, force) = (self.gw.config.send_limit(part.len()), self.gw.shutdown.force().clone());
        let ws = &mut self.ws;
        let fragments = async move {
            let count = part.len().div_ceil(FRAGMENT).max(1);
            for i in 0..count {
                let chunk = part.slice(i * FRAGMENT..((i + 1) * FRAGMENT).min(part.len()));
                let opcode = if i == 0 { Data::Binary } else { Data::Continue };
                ws.send(Message::Frame(Frame::message(chunk, OpCode::Data(opcode), i + 1 == count))).await?;
            }
            Ok(())
        };
        bounded(&force, limit, fragments).await
    }

    /// Best effort, within [`LAST_WORDS`]: for a connection that is ending anyway. Whether it
    /// went out.
    async fn last_words(&mut self, msg: Message) -> bool {
        matches!(tokio::time::timeout(LAST_WORDS, self.ws.send(msg)).await, Ok(Ok(())))
    }

    /// Sends an opt-in message type only to clients that asked for it.
    async fn send_optional(&mut self, msg: ServerMessage) -> Result<(), End> {
        if self.options.allows(&msg) {
            self.send(&msg).await?;
        }
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        self.last_words(Message::Close(Some(frame))).await;
    }
}

/// Runs a send within `limit`, giving up when `force` (the drain deadline) fires.
async fn bounded(
    force: &CancellationToken,
    limit: Duration,
    send: impl Future<Output = Result<(), tungstenite::Error>>,
) -> Result<(), End> {
    tokio::select! {
        biased;
        _ = force.cancelled() => Err(End::Draining),
        sent = tokio::time::timeout(limit, send) => match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Broken(e.to_string())),
            Err(_) => Err(End::SendTimeout(limit)),
        },
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
    // The bitmap a decode allocates, known from the header before anything is allocated, and
    // the file beside it, from the memory budget.
    let header = inspect(&image, limits)?;
    let need = header.decoded_bytes.saturating_add(image.len() as u64);
    let _room = gw.budget.reserve(need, budget::WAIT).await.map_err(|e| match e {
        NoRoom::Never => {
            ClientError::DecodesTooLarge { bytes: header.decoded_bytes, limit: gw.budget.total() }
        }
        NoRoom::Busy => short_of_memory(),
    })?;
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
fn too_long(e: &tungstenite::Error) -> Option<u64> {
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
