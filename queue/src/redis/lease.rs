//! A worker's lease on one job: fenced publishes and a watcher that fires the cancel token.
//!
//! The fence is (worker id, attempt): every script that publishes or ends the job checks both
//! against the job's hash in the same atomic step, so once a reaper has handed the job to
//! someone else (attempt + 1), nothing this lease sends reaches the client.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_redis::redis::{self, AsyncCommands};
use img3d_protocol::{FailureCode, PartName, ProgressStage};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::scripts::SCRIPTS;
use super::worker::WorkerInner;
use super::{backend, ms};
use crate::{Failure, Job, JobId, Lease, QueueError};

/// How long the hash of a job outlives its deadline (the gateway's `GRACE`): past it an ending
/// retried in the background has nothing left to land on.
const HASH_OUTLIVES_DEADLINE: Duration = Duration::from_secs(60);

/// Longest pause between two tries of an ending retried in the background.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) struct RedisLease {
    job: Job,
    inner: Arc<WorkerInner>,
    token: CancellationToken,
    /// The job's deadline by Redis' clock, on this machine's monotonic clock.
    deadline: Instant,
    ended: bool,
    _watcher: DropGuard,
}

impl RedisLease {
    /// A lease on a claimed job whose gateway's heartbeat key is `gateway_alive`; its watcher
    /// runs until the lease ends.
    pub(crate) fn start(inner: Arc<WorkerInner>, job: Job, gateway_alive: String, deadline: Instant) -> Self {
        let token = CancellationToken::new();
        let stop = CancellationToken::new();
        let watcher = watch(inner.clone(), job.clone(), gateway_alive, token.clone(), stop.clone(), deadline);
        tokio::spawn(watcher);
        inner.hold(&job);
        RedisLease { job, inner, token, deadline, ended: false, _watcher: stop.drop_guard() }
    }

    /// The error for a publish or ending the job's state refused, from the state the script
    /// reported: `cancelled` only when the job really was (released by its gateway, or
    /// cancelled), a lost lease otherwise (taken back: the job runs again, or failed for good).
    fn lost(&self, state: &str) -> QueueError {
        self.token.cancel();
        lease_error(self.job.id, state)
    }

    /// Runs `finish.lua` (or `requeue.lua`). When Redis cannot be reached the ending is not
    /// given up: it is retried in the background until it lands or the job is gone, and the
    /// job stays held (so the audit leaves it alone) meanwhile.
    async fn end(&mut self, outcome: End) -> Result<(), QueueError> {
        self.ended = true;
        match end_once(&self.inner, &self.job, &outcome).await {
            Ok(state) => {
                self.inner.let_go(&self.job);
                if state == "ok" {
                    Ok(())
                } else {
                    Err(self.lost(&state))
                }
            }
            Err(e) => {
                self.token.cancel();
                let job = self.job.clone();
                tokio::spawn(keep_ending(self.inner.clone(), job, outcome, self.deadline));
                Err(QueueError::Backend(format!("{e} (the ending is retried in the background)")))
            }
        }
    }
}

/// Retries an ending that could not be written until it lands (whatever the script answers:
/// the job's state is then settled) or the job's hash has expired, backing off up to
/// [`MAX_BACKOFF`]. Then lets go of the job; an id still in the in-flight list after that is
/// the audit's.
async fn keep_ending(inner: Arc<WorkerInner>, job: Job, outcome: End, deadline: Instant) {
    let give_up = deadline + HASH_OUTLIVES_DEADLINE;
    let mut pause = Duration::from_millis(50);
    loop {
        tokio::time::sleep(pause).await;
        match end_once(&inner, &job, &outcome).await {
            Ok(state) => {
                tracing::info!(job = %job.id, state, "an ending retried in the background landed");
                break;
            }
            Err(e) if Instant::now() >= give_up => {
                tracing::warn!(job = %job.id, error = %e, "gave up ending the job: its state has expired");
                break;
            }
            Err(e) => tracing::debug!(job = %job.id, error = %e, "ending the job failed; retrying"),
        }
        pause = (pause * 2).min(MAX_BACKOFF);
    }
    inner.let_go(&job);
}

/// See [`RedisLease::lost`]: `missing` (the hash was released) and `cancelled` are
/// cancellations; any other state means another lease holds the job, or nobody may.
pub(crate) fn lease_error(id: JobId, state: &str) -> QueueError {
    match state {
        "missing" | "cancelled" => QueueError::Cancelled(format!("job {id} was cancelled or released")),
        _ => QueueError::LeaseLost(format!("job {id} is {state}")),
    }
}

/// How a lease ends.
#[derive(Clone)]
enum End {
    Complete,
    Fail(Failure),
    Requeue,
}

async fn end_once(inner: &WorkerInner, job: &Job, outcome: &End) -> Result<String, QueueError> {
    let keys = &inner.shared.keys;
    let mut conn = inner.shared.conn().await?;
    let id = job.id;
    let result = match outcome {
        End::Requeue => {
            SCRIPTS
                .requeue
                .key(keys.job(id))
                .key(&inner.inflight)
                .key(keys.pending())
                .arg(id.to_string())
                .arg(&inner.worker_id)
                .arg(job.attempt)
                .invoke_async(&mut conn)
                .await
        }
        End::Complete | End::Fail(_) => {
            let (kind, code, message) = match outcome {
                End::Fail(f) => ("failed", f.code.as_str(), f.message.as_str()),
                _ => ("completed", "", ""),
            };
            SCRIPTS
                .finish
                .key(keys.job(id))
                .key(&inner.inflight)
                .key(keys.image(id))
                .arg(id.to_string())
                .arg(&inner.worker_id)
                .arg(job.attempt)
                .arg(kind)
                .arg(code)
                .arg(message)
                .invoke_async(&mut conn)
                .await
        }
    };
    result.map_err(backend)
}

/// Fires `token` when the lease stops being worth working on: the job is no longer running
/// under this lease (cancelled, released by its gateway, reaped and re-run elsewhere), its
/// client's gateway is gone, or its deadline passed.
async fn watch(
    inner: Arc<WorkerInner>,
    job: Job,
    gateway_alive: String,
    token: CancellationToken,
    stop: CancellationToken,
    deadline: Instant,
) {
    let keys = &inner.shared.keys;
    let attempt = job.attempt.to_string();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(deadline) => {
                tracing::info!(job = %job.id, "deadline passed; cancelling");
                token.cancel();
                return;
            }
            _ = tokio::time::sleep(inner.shared.cfg.cancel_poll) => {}
        }
        let checked = async {
            let mut conn = inner.shared.conn().await?;
            let (fields, alive, gateway): (Vec<Option<String>>, bool, bool) = redis::pipe()
                .cmd("HMGET")
                .arg(keys.job(job.id))
                .arg(&["state", "worker", "attempt"])
                .exists(keys.client_alive(job.id))
                .exists(&gateway_alive)
                .query_async(&mut conn)
                .await
                .map_err(backend)?;
            let expected = ["running", inner.worker_id.as_str(), attempt.as_str()];
            let ours = fields.len() == 3 && fields.iter().zip(expected).all(|(f, e)| f.as_deref() == Some(e));
            Ok::<_, QueueError>(ours && alive && gateway)
        };
        match checked.await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(job = %job.id, "job cancelled or taken back; cancelling");
                token.cancel();
                return;
            }
            // Redis unreachable: keep working; a restarted Redis shows up as a missing job.
            Err(e) => tracing::warn!(job = %job.id, error = %e, "lease check failed"),
        }
    }
}

#[async_trait]
impl Lease for RedisLease {
    fn job(&self) -> &Job {
        &self.job
    }

    fn cancel_token(&self) -> CancellationToken {
        self.token.clone()
    }

    async fn progress(&self, stage: ProgressStage, step: u32, total: u32) -> Result<(), QueueError> {
        let keys = &self.inner.shared.keys;
        let mut conn = self.inner.shared.conn().await?;
        let state: String = SCRIPTS
            .progress
            .key(keys.job(self.job.id))
            .arg(self.job.id.to_string())
            .arg(&self.inner.worker_id)
            .arg(self.job.attempt)
            .arg(stage.as_str())
            .arg(step)
            .arg(total)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        if state == "ok" {
            Ok(())
        } else {
            Err(self.lost(&state))
        }
    }

    async fn publish_part(&self, name: PartName, bytes: Bytes) -> Result<(), QueueError> {
        let keys = &self.inner.shared.keys;
        let (id, seq) = (self.job.id, name.index());
        let staging = keys.part_staging(id, seq, self.job.attempt);
        let mut conn = self.inner.shared.conn().await?;
        // The bytes go to this attempt's own staging key; the fenced script renames it into
        // place, so a stale lease can at worst write a key nobody reads.
        let () = conn
            .pset_ex(&staging, &bytes[..], ms(self.inner.shared.cfg.payload_ttl))
            .await
            .map_err(backend)?;
        let state: String = SCRIPTS
            .publish_part
            .key(keys.job(id))
            .key(&staging)
            .key(keys.part(id, seq))
            .arg(id.to_string())
            .arg(&self.inner.worker_id)
            .arg(self.job.attempt)
            .arg(seq)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        match state.as_str() {
            "ok" | "duplicate" => Ok(()),
            "cancelled" => Err(self.lost("cancelled")),
            "lost" => Err(self.lost("taken back from this worker")),
            other => Err(QueueError::Backend(format!("part {name} refused: {other}"))),
        }
    }

    async fn complete(mut self: Box<Self>) -> Result<(), QueueError> {
        self.end(End::Complete).await
    }

    async fn fail(mut self: Box<Self>, failure: Failure) -> Result<(), QueueError> {
        self.end(End::Fail(failure)).await
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), QueueError> {
        self.end(End::Requeue).await
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // A worker bug (or a panic) dropped the lease: fail the job now rather than leave its
        // client waiting until the deadline.
        tracing::error!(job = %self.job.id, "lease dropped without an ending; failing the job");
        self.token.cancel();
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let (inner, job) = (self.inner.clone(), self.job.clone());
        let failure = Failure::new(FailureCode::Internal, "internal error: the worker abandoned the job");
        let deadline = self.deadline;
        rt.spawn(async move {
            let outcome = End::Fail(failure);
            match end_once(&inner, &job, &outcome).await {
                Ok(_) => inner.let_go(&job),
                Err(_) => keep_ending(inner, job, outcome, deadline).await,
            }
        });
    }
}
