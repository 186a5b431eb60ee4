//! The in-process backend: a bounded FIFO behind a mutex, one event channel per job.
//!
//! The single-machine default (`img3d-worker standalone`): the gateway and the worker share one
//! [`MemoryQueue`]. It is the original design's `asyncio.Lock` in spirit — jobs wait in
//! arrival order and each worker takes one at a time — with what the lock lacked: a bound on
//! the line (a full queue refuses at once), cancellation of jobs nobody waits for, and
//! deadlines.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use img3d_protocol::{FailureCode, PartName, ProgressStage};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    Failure, Job, JobEvent, JobHandle, JobId, JobQueue, Lease, NewJob, Part, QueueError, QueueProbe,
    QueueStats, SubmitError, WorkQueue,
};

/// Capacity of each job's event channel.
const EVENT_CAPACITY: usize = 64;
/// Slots kept free for the events that matter (Started, parts, the terminal event): best-effort
/// events (queue position, progress) are dropped rather than eat into them, so a slow client
/// can never make a part or the final status wait behind progress notices.
const RESERVED: usize = 8;

/// Message of the failure sent to jobs that can no longer run because the queue closed.
const SHUTTING_DOWN: &str = "the service is shutting down; retry later";

/// The in-process queue: both [`JobQueue`] and [`WorkQueue`].
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes workers waiting in `next` (one per submitted job; all on close).
    wake: Notify,
    max_len: usize,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Entry>,
    running: u64,
    closed: Option<Failure>,
}

struct Entry {
    job: Job,
    events: mpsc::Sender<JobEvent>,
    cancel: CancellationToken,
    enqueued: Instant,
}

impl Entry {
    /// Whether nobody waits for this job any more (cancelled, or its deadline passed).
    fn is_dead(&self) -> bool {
        self.cancel.is_cancelled() || self.job.deadline <= SystemTime::now()
    }
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("MemoryQueue")
            .field("waiting", &state.waiting.len())
            .field("running", &state.running)
            .field("max_len", &self.shared.max_len)
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover the state rather than poison the queue.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Drops jobs nobody waits for any more, so they count neither against the bound nor in
    /// the depth.
    fn prune(&mut self) {
        self.waiting.retain(|e| !e.is_dead());
    }

    /// Tells every waiting job its place in line (best effort; see [`RESERVED`]).
    fn announce_positions(&self) {
        for (position, entry) in self.waiting.iter().enumerate() {
            send_best_effort(&entry.events, JobEvent::Queued { position: position as u64 });
        }
    }
}

fn send_best_effort(events: &mpsc::Sender<JobEvent>, event: JobEvent) {
    if events.capacity() > RESERVED {
        let _ = events.try_send(event);
    }
}

/// Sends an event that must not be lost from a synchronous context (Drop, under the lock).
fn send_now(events: &mpsc::Sender<JobEvent>, event: JobEvent) {
    if let Err(mpsc::error::TrySendError::Full(event)) = events.try_send(event) {
        // Only reachable if a client stopped reading with the reserve used up; hand the send to
        // the runtime rather than block or drop it.
        let events = events.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { events.send(event).await });
        }
    }
}

impl MemoryQueue {
    /// A queue holding at most `max_len` waiting jobs (jobs being run do not count).
    pub fn new(max_len: usize) -> Arc<Self> {
        Arc::new(MemoryQueue {
            shared: Arc::new(Shared { state: Mutex::new(State::default()), wake: Notify::new(), max_len }),
        })
    }

    /// Stops the queue: later submits fail with `unavailable`, waiting jobs fail with
    /// `failure`, workers' `next` returns [`QueueError::Closed`], and a running job that is
    /// requeued fails with `failure` instead. Running jobs are not touched: their workers
    /// finish them.
    pub fn close(&self, failure: Failure) {
        let waiting = {
            let mut state = self.shared.lock();
            if state.closed.is_some() {
                return;
            }
            state.closed = Some(failure.clone());
            std::mem::take(&mut state.waiting)
        };
        for entry in waiting {
            send_now(&entry.events, JobEvent::Failed(failure.clone()));
        }
        self.shared.wake.notify_waiters();
    }

    /// [`MemoryQueue::close`] with the usual "shutting down" failure.
    pub fn shut_down(&self) {
        self.close(Failure::new(FailureCode::Unavailable, SHUTTING_DOWN));
    }

    /// Pops the oldest live job, if any.
    fn try_take(&self) -> Result<Option<MemoryLease>, QueueError> {
        let mut state = self.shared.lock();
        if state.closed.is_some() {
            return Err(QueueError::Closed);
        }
        while let Some(entry) = state.waiting.pop_front() {
            if entry.is_dead() {
                continue; // its client left or its deadline passed: never started
            }
            state.running += 1;
            send_now(&entry.events, JobEvent::Started);
            state.announce_positions();
            return Ok(Some(MemoryLease {
                job: entry.job,
                events: entry.events,
                cancel: entry.cancel,
                shared: Arc::downgrade(&self.shared),
                ended: false,
            }));
        }
        Ok(None)
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn submit(&self, new: NewJob) -> Result<JobHandle, SubmitError> {
        let id = JobId::new();
        let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
        let cancel = CancellationToken::new();
        let now = SystemTime::now();
        let entry = Entry {
            job: Job { id, image: new.image, submitted_at: now, deadline: now + new.timeout, attempt: 1 },
            events: tx,
            cancel: cancel.clone(),
            enqueued: Instant::now(),
        };
        {
            let mut state = self.shared.lock();
            if state.closed.is_some() {
                return Err(SubmitError::Unavailable(SHUTTING_DOWN.to_owned()));
            }
            state.prune();
            if state.waiting.len() >= self.shared.max_len {
                return Err(SubmitError::Full { limit: self.shared.max_len });
            }
            send_best_effort(&entry.events, JobEvent::Queued { position: state.waiting.len() as u64 });
            state.waiting.push_back(entry);
        }
        self.shared.wake.notify_one();
        let weak = Arc::downgrade(&self.shared);
        let canceller = Box::new(move || {
            cancel.cancel();
            // Free its place in line now rather than when a worker reaches it.
            if let Some(shared) = weak.upgrade() {
                shared.lock().waiting.retain(|e| e.job.id != id);
            }
        });
        Ok(JobHandle::new(id, rx, new.timeout, canceller))
    }
}

#[async_trait]
impl QueueProbe for MemoryQueue {
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let state = self.shared.lock();
        let live = state.waiting.iter().filter(|e| !e.is_dead());
        let (depth, oldest) = live.fold((0u64, None::<Instant>), |(n, oldest), e| {
            (n + 1, Some(oldest.map_or(e.enqueued, |o| o.min(e.enqueued))))
        });
        Ok(QueueStats {
            depth,
            oldest_age: oldest.map(|t| t.elapsed()),
            running: state.running,
            workers: None,
        })
    }
}

#[async_trait]
impl WorkQueue for MemoryQueue {
    async fn next(&self, wait: Duration) -> Result<Option<Box<dyn Lease>>, QueueError> {
        let until = Instant::now() + wait;
        loop {
            // Register for a wake-up before looking, so a submit between the look and the wait
            // is not missed.
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(lease) = self.try_take()? {
                return Ok(Some(Box::new(lease)));
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                // One last look: a wake-up may have raced with the timeout.
                return Ok(self.try_take()?.map(|l| Box::new(l) as Box<dyn Lease>));
            }
        }
    }
}

/// A worker's hold on one job of a [`MemoryQueue`].
struct MemoryLease {
    job: Job,
    events: mpsc::Sender<JobEvent>,
    cancel: CancellationToken,
    shared: Weak<Shared>,
    ended: bool,
}

impl MemoryLease {
    /// Marks the lease ended and frees the worker's running slot.
    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            if let Some(shared) = self.shared.upgrade() {
                let mut state = shared.lock();
                state.running = state.running.saturating_sub(1);
            }
        }
    }

    fn gone() -> QueueError {
        QueueError::Cancelled("nobody waits for its result".to_owned())
    }
}

#[async_trait]
impl Lease for MemoryLease {
    fn job(&self) -> &Job {
        &self.job
    }

    fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    async fn progress(&self, stage: ProgressStage, step: u32, total: u32) -> Result<(), QueueError> {
        if self.events.is_closed() {
            return Err(Self::gone());
        }
        send_best_effort(&self.events, JobEvent::Progress { stage, step, total });
        Ok(())
    }

    async fn publish_part(&self, name: PartName, bytes: Bytes) -> Result<(), QueueError> {
        if self.cancel.is_cancelled() {
            return Err(Self::gone());
        }
        self.events.send(JobEvent::Part(Part { name, bytes })).await.map_err(|_| Self::gone())
    }

    async fn complete(mut self: Box<Self>) -> Result<(), QueueError> {
        self.end();
        // A closed channel means the client left: nobody to tell, not an error.
        let _ = self.events.send(JobEvent::Completed).await;
        Ok(())
    }

    async fn fail(mut self: Box<Self>, failure: Failure) -> Result<(), QueueError> {
        self.end();
        let _ = self.events.send(JobEvent::Failed(failure)).await;
        Ok(())
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), QueueError> {
        self.end();
        let Some(shared) = self.shared.upgrade() else {
            return Err(QueueError::Closed);
        };
        let mut job = self.job.clone();
        job.attempt += 1;
        let closed = {
            let mut state = shared.lock();
            match &state.closed {
                Some(failure) => Some(failure.clone()),
                None => {
                    state.waiting.push_front(Entry {
                        job,
                        events: self.events.clone(),
                        cancel: self.cancel.clone(),
                        enqueued: Instant::now(),
                    });
                    None
                }
            }
        };
        match closed {
            // Nobody will run it again here: tell the client why.
            Some(failure) => {
                let _ = self.events.send(JobEvent::Failed(failure)).await;
            }
            None => shared.wake.notify_one(),
        }
        Ok(())
    }
}

impl Drop for MemoryLease {
    fn drop(&mut self) {
        if !self.ended {
            self.end();
            tracing::error!(job = %self.job.id, "lease dropped without an ending; failing the job");
            send_now(
                &self.events,
                JobEvent::Failed(Failure::new(
                    FailureCode::Internal,
                    "internal error: the worker lost the job; retry",
                )),
            );
        }
    }
}
