//! One job's pump in the gateway: turns notices (and, when one may have been missed, the job's
//! stored state) into the handle's events, strictly in protocol order and each part once.
//!
//! In the normal case notices arrive in publish order (one publisher per job, one ordered
//! pub/sub connection) and each is acted on directly, so progress interleaves with parts as
//! the worker sent them. A notice for a part beyond the next expected one, a terminal notice,
//! a pub/sub reconnect and a periodic tick all fall back to [`Pump::sync`]: read the job's
//! hash and catch up from the stored parts. Parts before the next expected one are a retry's
//! duplicates and are dropped.

use std::sync::Arc;

use bytes::Bytes;
use deadpool_redis::redis::{self, AsyncCommands};
use img3d_protocol::{FailureCode, PARTS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::gateway::Registry;
use super::notice::{parse_code, Notice};
use super::scripts::SCRIPTS;
use super::{backend, Shared};
use crate::{Failure, JobEvent, JobId, Part, QueueError};

/// Why a pump should look at its job.
#[derive(Debug)]
pub(crate) enum Wake {
    /// A notice for this job.
    Notice(Notice),
    /// Notices may have been missed (pub/sub reconnected): re-read the stored state.
    Resync,
}

/// The per-job task of a gateway (see the module docs).
pub(crate) struct Pump {
    id: JobId,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    events: mpsc::Sender<JobEvent>,
    wakes: mpsc::UnboundedReceiver<Wake>,
    abandon: CancellationToken,
    started: bool,
    next_part: usize,
    done: bool,
}

impl Pump {
    pub(crate) fn new(
        id: JobId,
        shared: Arc<Shared>,
        registry: Arc<Registry>,
        events: mpsc::Sender<JobEvent>,
        wakes: mpsc::UnboundedReceiver<Wake>,
        abandon: CancellationToken,
    ) -> Self {
        Pump { id, shared, registry, events, wakes, abandon, started: false, next_part: 0, done: false }
    }

    /// Runs until the job ends or its handle gives up, then releases the job's keys.
    pub(crate) async fn run(mut self) {
        let abandon = self.abandon.clone();
        let mut tick = tokio::time::interval(self.shared.cfg.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; the job was only just queued
        while !self.done {
            let wake = tokio::select! {
                biased;
                _ = abandon.cancelled() => break,
                wake = self.wakes.recv() => match wake {
                    Some(wake) => wake,
                    None => break,
                },
                _ = tick.tick() => Wake::Resync,
            };
            let handled = tokio::select! {
                biased;
                _ = abandon.cancelled() => break,
                handled = self.on_wake(wake) => handled,
            };
            if let Err(e) = handled {
                // Redis trouble: the next notice, reconnect or tick tries again; the handle's
                // deadline bounds the wait.
                tracing::warn!(job = %self.id, error = %e, "reading job state failed");
            }
        }
        self.registry.lock().unwrap().remove(&self.id);
        self.release().await;
    }

    async fn on_wake(&mut self, wake: Wake) -> Result<(), QueueError> {
        match wake {
            Wake::Notice(Notice::Started) => self.ensure_started().await,
            Wake::Notice(Notice::Progress { stage, step, total }) => {
                if !self.started {
                    self.sync().await?;
                }
                if self.started && !self.done {
                    self.emit(JobEvent::Progress { stage, step, total }).await;
                }
            }
            Wake::Notice(Notice::Part { seq }) if seq == self.next_part => {
                self.ensure_started().await;
                self.forward_part(seq).await?;
            }
            Wake::Notice(Notice::Part { seq }) if seq < self.next_part => {} // a retry's duplicate
            Wake::Notice(Notice::Part { .. } | Notice::Finished) | Wake::Resync => self.sync().await?,
        }
        Ok(())
    }

    /// Catches up from the job's stored state: start, every stored part not yet forwarded,
    /// and the outcome.
    async fn sync(&mut self) -> Result<(), QueueError> {
        let mut conn = self.shared.conn().await?;
        let (state, parts, code, message): (Option<String>, Option<usize>, Option<String>, Option<String>) =
            redis::cmd("HMGET")
                .arg(self.shared.keys.job(self.id))
                .arg(&["state", "parts", "code", "message"])
                .query_async(&mut conn)
                .await
                .map_err(backend)?;
        drop(conn);
        let Some(state) = state else {
            // Redis lost it (restarted without persistence, or evicted it): queue trouble,
            // not the job's fault, so the client may retry.
            tracing::warn!(job = %self.id, "job state vanished from Redis");
            self.fail(Failure::new(FailureCode::Unavailable, "the job queue lost the job; retry")).await;
            return Ok(());
        };
        let parts = parts.unwrap_or(0).min(PARTS.len());
        if parts > 0 || state == "running" || state == "completed" {
            self.ensure_started().await;
        }
        while self.next_part < parts && !self.done {
            self.forward_part(self.next_part).await?;
        }
        match state.as_str() {
            "completed" => {
                self.emit(JobEvent::Completed).await;
                self.done = true;
            }
            "failed" => {
                let code = parse_code(code.as_deref().unwrap_or("internal"));
                let message = message.unwrap_or_else(|| "the job failed".into());
                self.fail(Failure::new(code, message)).await;
            }
            "cancelled" => self.fail(Failure::new(FailureCode::Cancelled, "the job was cancelled")).await,
            _ => {}
        }
        Ok(())
    }

    /// Fetches stored part `seq` (the next one) and forwards it.
    async fn forward_part(&mut self, seq: usize) -> Result<(), QueueError> {
        let Some(name) = img3d_protocol::PartName::from_index(seq) else { return Ok(()) };
        let mut conn = self.shared.conn().await?;
        let bytes: Option<Bytes> = conn.get(self.shared.keys.part(self.id, seq)).await.map_err(backend)?;
        drop(conn);
        let Some(bytes) = bytes else {
            tracing::warn!(job = %self.id, part = %name, "stored part vanished from Redis");
            self.fail(Failure::new(FailureCode::Unavailable, "the job queue lost a result part; retry"))
                .await;
            return Ok(());
        };
        self.next_part = seq + 1;
        self.emit(JobEvent::Part(Part { name, bytes })).await;
        Ok(())
    }

    async fn ensure_started(&mut self) {
        if !self.started {
            self.started = true;
            self.emit(JobEvent::Started).await;
        }
    }

    async fn fail(&mut self, failure: Failure) {
        self.emit(JobEvent::Failed(failure)).await;
        self.done = true;
    }

    /// Hands an event to the session; a closed handle ends the pump.
    async fn emit(&mut self, event: JobEvent) {
        if self.done {
            return;
        }
        if self.events.send(event).await.is_err() {
            self.done = true;
        }
    }

    /// Deletes the job's keys (and takes it out of the queue if it still waits); a running
    /// worker sees the hash gone at its next check. Best effort: if Redis is unreachable the
    /// keys expire on their own and the job's client-alive key is no longer refreshed.
    async fn release(&self) {
        let keys = &self.shared.keys;
        let mut script = SCRIPTS.release.key(keys.pending());
        script.key(keys.job(self.id)).key(keys.client_alive(self.id)).key(keys.image(self.id));
        for seq in 0..PARTS.len() {
            script.key(keys.part(self.id, seq));
        }
        script.arg(self.id.to_string());
        let released = async {
            let mut conn = self.shared.conn().await?;
            script.invoke_async::<String>(&mut conn).await.map_err(backend)
        };
        if let Err(e) = released.await {
            tracing::warn!(job = %self.id, error = %e, "releasing the job's keys failed");
        }
    }
}
