//! One job as a load-test client sees it: a unique image out, every event timed, and the
//! protocol's promises checked on the way (order, exactly three parts, each client gets its
//! own job's result and nothing left over from an earlier one).

use std::io::Cursor;
use std::time::Instant;

use image::{ImageFormat, Rgb, RgbImage};
use img3d_client::{Client, ClientError, Event, PartName, PARTS};

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `completed` after the three parts, all checks passed.
    Completed,
    /// The server answered `failed` with this code (`none` when it sent none).
    Failed(String),
    /// No final status within the client's timeout.
    Timeout,
    /// The connection dropped mid-job (e.g. its gateway died).
    ConnectionLost,
    /// No connection could be opened.
    Connect,
    /// The server broke the protocol (as the client library judges it).
    Protocol(String),
    /// Our own checks failed: a part out of order or twice, another job's result, a frame left
    /// over from an earlier job. Never acceptable.
    Wrong(String),
}

impl Outcome {
    /// A short label for tables (`completed`, `failed:unavailable`, `connection_lost`, ...).
    pub fn label(&self) -> String {
        match self {
            Outcome::Completed => "completed".into(),
            Outcome::Failed(code) => format!("failed:{code}"),
            Outcome::Timeout => "timeout".into(),
            Outcome::ConnectionLost => "connection_lost".into(),
            Outcome::Connect => "connect_error".into(),
            Outcome::Protocol(_) => "protocol_error".into(),
            Outcome::Wrong(_) => "WRONG".into(),
        }
    }

    /// Whether the job broke a promise of the service (as opposed to failing in a way a
    /// client is told to retry).
    pub fn is_broken(&self) -> bool {
        matches!(self, Outcome::Protocol(_) | Outcome::Wrong(_))
    }
}

/// What happened to one job, with the client's clock.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// The load-test client that ran it.
    pub client: usize,
    /// The job's number (unique in the run; encoded in its image).
    pub id: u32,
    /// When the image was handed to the client library.
    pub sent: Instant,
    /// `processing` arrived.
    pub processing: Option<Instant>,
    /// The first `queued` arrived (the job is in the shared queue).
    pub queued: Option<Instant>,
    /// The first `progress` arrived (a worker started it).
    pub started: Option<Instant>,
    /// When each part's last byte arrived, in arrival order.
    pub parts: Vec<(PartName, Instant)>,
    /// When the job ended (final status, error or check failure).
    pub done: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

impl JobRecord {
    /// When the job entered the queue as far as the client can tell: `queued` if the server
    /// sent it, else `processing`, else when it was sent.
    pub fn queued_at(&self) -> Instant {
        self.queued.or(self.processing).unwrap_or(self.sent)
    }
}

/// The colour that identifies job `id` (24 bits of it; jobs of one run stay far below).
fn colour(id: u32) -> [u8; 3] {
    [(id >> 16) as u8, (id >> 8) as u8, id as u8]
}

/// A small PNG of one colour that names job `id`. The protocol test double copies its input
/// into the first view of `pixel_images.png`, so the part tells whose job it came from.
pub fn image_for(id: u32) -> Vec<u8> {
    let image = RgbImage::from_pixel(64, 64, Rgb(colour(id)));
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).expect("encoding a PNG in memory");
    out.into_inner()
}

/// The job id a `pixel_images.png` part belongs to (its top-left pixel), if it decodes.
fn owner_of(pixel_images: &[u8]) -> Option<u32> {
    let image = image::load_from_memory(pixel_images).ok()?.to_rgb8();
    let [r, g, b] = image.get_pixel(0, 0).0;
    Some(u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b))
}

/// Runs job `id` on `client` to its end and records it. Checks, beyond the client library's:
/// `processing` comes first (anything before it is left over from an earlier job), the three
/// parts arrive once each in protocol order, and `pixel_images.png` is this job's.
pub async fn run(client: &Client, client_no: usize, id: u32) -> JobRecord {
    let sent = Instant::now();
    let mut record = JobRecord {
        client: client_no,
        id,
        sent,
        processing: None,
        queued: None,
        started: None,
        parts: Vec::new(),
        done: sent,
        outcome: Outcome::Completed,
    };
    record.outcome = match drive(client, id, &mut record).await {
        Ok(()) => Outcome::Completed,
        Err(outcome) => outcome,
    };
    record.done = Instant::now();
    record
}

async fn drive(client: &Client, id: u32, record: &mut JobRecord) -> Result<(), Outcome> {
    let mut request = client.generate(image_for(id)).await.map_err(from_error)?;
    loop {
        let event = match request.next_event().await {
            Ok(Some(event)) => event,
            Ok(None) => return Err(Outcome::Wrong("the request ended without `completed`".into())),
            Err(e) => return Err(from_error(e)),
        };
        let now = Instant::now();
        if record.processing.is_none() && !matches!(event, Event::Processing) {
            return Err(Outcome::Wrong(format!(
                "{event:?} before `processing`: left over from an earlier job"
            )));
        }
        match event {
            Event::Processing => record.processing = Some(now),
            Event::Queued { .. } => {
                record.queued.get_or_insert(now);
            }
            Event::Progress { .. } => {
                record.started.get_or_insert(now);
            }
            Event::Part(part) => {
                let expected = PARTS.get(record.parts.len()).copied();
                let Some(kind) = part.kind.filter(|k| Some(*k) == expected) else {
                    return Err(Outcome::Wrong(format!(
                        "part {:?} where {expected:?} was due (a part twice or out of order)",
                        part.name
                    )));
                };
                if kind == PartName::PixelImages {
                    match owner_of(&part.bytes) {
                        Some(owner) if owner == id => {}
                        other => {
                            return Err(Outcome::Wrong(format!("job {id} got the result of job {other:?}")))
                        }
                    }
                }
                record.parts.push((kind, part.received_at));
            }
            Event::Completed => {
                if record.parts.len() != PARTS.len() {
                    return Err(Outcome::Wrong(format!("`completed` after {} parts", record.parts.len())));
                }
                return Ok(());
            }
        }
    }
}

fn from_error(e: ClientError) -> Outcome {
    match e {
        ClientError::ServerFailed { code, .. } => {
            Outcome::Failed(code.map_or_else(|| "none".to_owned(), |c| c.as_str().to_owned()))
        }
        ClientError::Timeout { .. } => Outcome::Timeout,
        ClientError::ConnectionLost(_) => Outcome::ConnectionLost,
        ClientError::Connect { .. } => Outcome::Connect,
        ClientError::Protocol(why) => Outcome::Protocol(why),
        ClientError::Busy | ClientError::InvalidUrl { .. } => Outcome::Wrong(format!("client misuse: {e}")),
    }
}
