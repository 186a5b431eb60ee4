//! The client: one reused connection, one active request at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::Instant;

use crate::connection::{Connection, Inbound};
use crate::machine::{Machine, Step};
use crate::{ClientConfig, ClientError, Event};

/// A client of one img3d server. Cheap to clone (clones share the connection and the
/// one-request-at-a-time rule).
///
/// ```no_run
/// # async fn demo() -> Result<(), img3d_client::ClientError> {
/// use img3d_client::{Client, ClientConfig, Event};
/// let client = Client::new(ClientConfig::new("ws://127.0.0.1:8080/generate3d"));
/// let image = std::fs::read("cat.png").unwrap();
/// let mut request = client.generate(image).await?;
/// while let Some(event) = request.next_event().await? {
///     if let Event::Part(part) = event {
///         println!("{}: {} bytes", part.name, part.bytes.len()); // show it now
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
    slot: Arc<Mutex<Slot>>,
    /// Connections opened so far (for tests and diagnostics).
    connects: Arc<AtomicU64>,
}

/// The idle connection, when there is one. Locked for the whole life of a request: that lock
/// is the "one active request" flag.
#[derive(Debug, Default)]
struct Slot {
    conn: Option<Connection>,
}

impl Client {
    /// A client for `config.url`. Nothing connects until the first request.
    pub fn new(config: ClientConfig) -> Client {
        Client {
            config: Arc::new(config),
            slot: Arc::new(Mutex::new(Slot::default())),
            connects: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many connections this client has opened so far (1 after any number of requests on
    /// a healthy connection).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// The settings this client uses.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Whether a request is running.
    pub fn is_busy(&self) -> bool {
        self.slot.try_lock().is_err()
    }

    /// Sends one image and returns the running request, whose events come from
    /// [`Request::next_event`]. Connects first when there is no usable connection.
    ///
    /// Fails at once with [`ClientError::Busy`] while another request runs.
    pub async fn generate(&self, image: impl Into<Bytes>) -> Result<Request, ClientError> {
        let mut slot = self.slot.clone().try_lock_owned().map_err(|_| ClientError::Busy)?;
        let image = image.into();
        let reused = slot.conn.take().and_then(|mut conn| conn.is_reusable().then_some(conn));
        let deadline = Instant::now() + self.config.timeout;
        let (conn, retry_image) = match reused {
            Some(conn) => (conn, Some(image.clone())),
            None => (open(&self.config, &self.connects).await?, None),
        };
        let mut request = Request {
            config: self.config.clone(),
            connects: self.connects.clone(),
            slot: Some(slot),
            conn: Some(conn),
            machine: Machine::default(),
            deadline,
            retry_image,
            done: false,
        };
        if let Err(why) = request.conn.as_ref().unwrap().send(image).await {
            request.reconnect_or(ClientError::ConnectionLost(why)).await?;
        }
        Ok(request)
    }

    /// Runs one request to its end, handing each event to `on_event` as it arrives.
    pub async fn generate_with(
        &self,
        image: impl Into<Bytes>,
        mut on_event: impl FnMut(Event),
    ) -> Result<(), ClientError> {
        let mut request = self.generate(image).await?;
        while let Some(event) = request.next_event().await? {
            on_event(event);
        }
        Ok(())
    }

    /// Closes the idle connection (e.g. when the application exits). Fails with
    /// [`ClientError::Busy`] while a request runs; drop the request to cancel it.
    pub fn close(&self) -> Result<(), ClientError> {
        let mut slot = self.slot.try_lock().map_err(|_| ClientError::Busy)?;
        slot.conn = None;
        Ok(())
    }
}

/// A running request: its events, in protocol order, from [`Request::next_event`].
///
/// Dropping it before the end closes the connection, which cancels the job on the server;
/// the next request connects again.
#[derive(Debug)]
pub struct Request {
    config: Arc<ClientConfig>,
    connects: Arc<AtomicU64>,
    /// The client's slot, held until the request ends (the single-active-request flag).
    slot: Option<OwnedMutexGuard<Slot>>,
    conn: Option<Connection>,
    machine: Machine,
    deadline: Instant,
    /// The image, kept only until the server first answers on a *reused* connection: when
    /// that connection turns out to be dead before then, the image goes once more over a new
    /// one. Dropped as soon as the server answers, so it is not held for the whole job.
    retry_image: Option<Bytes>,
    done: bool,
}

impl Request {
    /// The next event; `Ok(None)` after [`Event::Completed`] (or after an error).
    ///
    /// Errors end the request: [`ClientError::ServerFailed`] keeps the connection for the
    /// next request; a timeout, a protocol error or a lost connection close it.
    ///
    /// Not cancel-safe: to stop waiting, drop the whole `Request` rather than this future.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Err(self.fail(ClientError::ConnectionLost("no connection".into())));
            };
            let Ok(inbound) = tokio::time::timeout_at(self.deadline, conn.recv()).await else {
                return Err(self.fail(ClientError::Timeout { after: self.config.timeout }));
            };
            let step = match inbound {
                Inbound::Text(text) => {
                    self.retry_image = None;
                    self.machine.on_text(&text)
                }
                Inbound::Binary(bytes, received_at) => {
                    self.retry_image = None;
                    self.machine.on_binary(bytes, received_at).map(|p| Step::Event(Event::Part(p)))
                }
                Inbound::Closed(why) => {
                    self.reconnect_or(ClientError::ConnectionLost(why)).await?;
                    continue;
                }
            };
            match step {
                Ok(Step::Event(event)) => return Ok(Some(event)),
                Ok(Step::Ignored) => {}
                Ok(Step::Completed) => {
                    self.finish(true);
                    return Ok(Some(Event::Completed));
                }
                Ok(Step::Failed { error, code }) => {
                    self.finish(true);
                    return Err(ClientError::ServerFailed { error, code });
                }
                Err(why) => return Err(self.fail(ClientError::Protocol(why))),
            }
        }
    }

    /// The events as a [`futures::Stream`] (ends after `Completed` or the first error).
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Event, ClientError>> {
        futures::stream::unfold(self, |mut request| async move {
            match request.next_event().await {
                Ok(Some(event)) => Some((Ok(event), request)),
                Ok(None) => None,
                Err(err) => Some((Err(err), request)),
            }
        })
    }

    /// Whether the request has ended.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Ends the request; `keep` hands the connection back to the client for the next request,
    /// otherwise it is dropped (closed).
    fn finish(&mut self, keep: bool) {
        self.done = true;
        self.retry_image = None;
        let conn = self.conn.take();
        if let Some(mut slot) = self.slot.take() {
            if keep {
                slot.conn = conn;
            }
        }
    }

    fn fail(&mut self, err: ClientError) -> ClientError {
        self.finish(false);
        err
    }

    /// After the connection failed: if it was a reused one and the server has not answered
    /// yet, open a new one and send the image again (once); otherwise fail with `err`.
    async fn reconnect_or(&mut self, err: ClientError) -> Result<(), ClientError> {
        let Some(image) = self.retry_image.take() else {
            return Err(self.fail(err));
        };
        tracing::debug!(error = %err, "the reused connection was dead; resending on a new one");
        self.conn = None;
        let conn = match tokio::time::timeout_at(self.deadline, open(&self.config, &self.connects)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(self.fail(e)),
            Err(_) => return Err(self.fail(ClientError::Timeout { after: self.config.timeout })),
        };
        let sent = conn.send(image).await;
        self.conn = Some(conn);
        sent.map_err(|why| self.fail(ClientError::ConnectionLost(why)))
    }
}

async fn open(config: &ClientConfig, connects: &AtomicU64) -> Result<Connection, ClientError> {
    let conn = Connection::open(config).await?;
    connects.fetch_add(1, Ordering::Relaxed);
    Ok(conn)
}
