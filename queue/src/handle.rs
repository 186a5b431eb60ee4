//! The gateway's handle on a submitted job.

use std::time::Duration;

use img3d_protocol::FailureCode;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{Failure, JobEvent, JobId};

/// Called once when a job is abandoned by its gateway (handle dropped or cancelled before a
/// terminal event, or deadline passed). Backends use it to cancel the job.
pub type Canceller = Box<dyn FnOnce() + Send>;

/// The gateway side of one job: yields its events in order and cancels it when dropped.
///
/// Backend-independent guarantees, enforced here so every backend gets them:
/// - at most one `Started`, and each part at most once (a re-run's duplicates are dropped);
/// - exactly one terminal event, then `None`;
/// - a `Failed` with code `timeout` when the deadline passes first (and the job is cancelled);
/// - a `Failed` with code `internal` if the backend's channel closes without a terminal event.
pub struct JobHandle {
    id: JobId,
    events: mpsc::Receiver<JobEvent>,
    deadline: Instant,
    canceller: Option<Canceller>,
    started: bool,
    next_part: usize,
    /// How many parts the job sends (3, or 4 with the opt-in GLB).
    parts: usize,
    done: bool,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle").field("id", &self.id).field("done", &self.done).finish()
    }
}

impl JobHandle {
    /// Wraps a backend's event channel for a job that sends `parts` parts (its options'
    /// [`img3d_protocol::JobOptions::parts`]). `timeout` counts from now.
    pub fn new(
        id: JobId,
        events: mpsc::Receiver<JobEvent>,
        parts: usize,
        timeout: Duration,
        canceller: Canceller,
    ) -> Self {
        JobHandle {
            id,
            events,
            deadline: Instant::now() + timeout,
            canceller: Some(canceller),
            started: false,
            next_part: 0,
            parts,
            done: false,
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The next event, or `None` after the terminal one.
    pub async fn next_event(&mut self) -> Option<JobEvent> {
        while !self.done {
            let event = match tokio::time::timeout_at(self.deadline, self.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => {
                    self.done = true;
                    self.cancel_now();
                    return Some(JobEvent::Failed(Failure::new(
                        FailureCode::Internal,
                        "the job was lost by the queue; retry",
                    )));
                }
                Err(_elapsed) => {
                    self.done = true;
                    self.cancel_now();
                    return Some(JobEvent::Failed(Failure::timeout()));
                }
            };
            match &event {
                JobEvent::Started if self.started => continue,
                JobEvent::Started => self.started = true,
                JobEvent::Part(part) => {
                    let index = part.name.index();
                    if index < self.next_part {
                        continue; // a re-run republished a part the client already has
                    }
                    if index > self.next_part || index >= self.parts {
                        self.done = true;
                        self.cancel_now();
                        tracing::error!(job = %self.id, part = %part.name, "part out of order");
                        return Some(JobEvent::Failed(Failure::new(
                            FailureCode::Internal,
                            "internal error: result parts arrived out of order",
                        )));
                    }
                    self.next_part += 1;
                }
                JobEvent::Completed if self.next_part < self.parts => {
                    self.done = true;
                    self.cancel_now();
                    tracing::error!(job = %self.id, parts = self.next_part, "completed with parts missing");
                    return Some(JobEvent::Failed(Failure::new(
                        FailureCode::Internal,
                        "internal error: the job ended without all result parts",
                    )));
                }
                e if e.is_terminal() => {
                    self.done = true;
                    self.canceller = None; // finished: nothing to cancel
                }
                _ => {}
            }
            return Some(event);
        }
        None
    }

    /// Cancels the job (same as dropping the handle).
    pub fn cancel(mut self) {
        self.cancel_now();
    }

    fn cancel_now(&mut self) {
        if let Some(cancel) = self.canceller.take() {
            cancel();
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        self.cancel_now();
    }
}
