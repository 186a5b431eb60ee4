//! The worker loop: take one job at a time, run the pipeline on a blocking thread, publish
//! each part the moment it exists, end the lease.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use img3d_protocol::{FailureCode, PartName, ProgressStage, ALL_PARTS};
use img3d_queue::{Failure, Lease, QueueError, WorkQueue};
use img3d_service::{Metrics, Shutdown};
use tokio::sync::mpsc;
use tokio::task::JoinError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::sink::{BridgeSink, SinkMsg};
use crate::watchdog::{FailureStreak, Watchdog, Wedged};
use crate::JobRunner;

/// Tuning of the worker loop.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How long one `next` call waits for a job. Bounds how long a drain waits for the loop to
    /// notice it: `next` is never abandoned midway (a Redis pop cut short could strand a job).
    pub poll: Duration,
    /// Where to count jobs and stage durations.
    pub metrics: Arc<Metrics>,
    /// When the loop gives up on itself (see [`Watchdog`]).
    pub watchdog: Watchdog,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            poll: Duration::from_secs(1),
            metrics: Arc::new(Metrics::new()),
            watchdog: Watchdog::default(),
        }
    }
}

/// Runs jobs from `queue` through `pipeline`, one at a time, until `shutdown` drains (or the
/// queue closes). A job running when the drain deadline passes is requeued. Returns
/// [`Wedged`] when the watchdog stops the loop (the caller should turn unready and exit).
pub async fn run(
    queue: Arc<dyn WorkQueue>,
    pipeline: Arc<dyn JobRunner>,
    shutdown: Shutdown,
) -> Result<(), Wedged> {
    run_with(queue, pipeline, shutdown, WorkerOptions::default()).await
}

/// [`run`] with explicit options.
pub async fn run_with(
    queue: Arc<dyn WorkQueue>,
    pipeline: Arc<dyn JobRunner>,
    shutdown: Shutdown,
    options: WorkerOptions,
) -> Result<(), Wedged> {
    tracing::info!(pipeline = %pipeline.describe(), "worker taking jobs");
    let mut streak = FailureStreak::default();
    while !shutdown.is_draining() {
        match queue.next(options.poll).await {
            Ok(None) => {}
            Ok(Some(lease)) => {
                let code = run_job(lease, &pipeline, &shutdown, &options).await?;
                streak.record(code == Some(FailureCode::Internal), options.watchdog.max_internal_in_a_row)?;
            }
            Err(QueueError::Closed) => break,
            Err(e) => {
                tracing::warn!(error = %e, "queue unavailable; retrying in 1s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.drain().cancelled() => {}
                }
            }
        }
    }
    tracing::info!("worker stopped taking jobs");
    Ok(())
}

/// How a job's run ended.
enum Outcome {
    /// The pipeline returned.
    Returned(Result<(), Failure>),
    /// The pipeline panicked.
    Panicked(String),
    /// The drain deadline passed first.
    Forced,
    /// The pipeline ignored a stop request for the watchdog's grace.
    Stuck,
}

async fn run_job(
    lease: Box<dyn Lease>,
    pipeline: &Arc<dyn JobRunner>,
    shutdown: &Shutdown,
    options: &WorkerOptions,
) -> Result<Option<FailureCode>, Wedged> {
    let job = lease.job().clone();
    let span = tracing::info_span!("job", id = %job.id, attempt = job.attempt);
    async move {
        let metrics = &options.metrics;
        let started = Instant::now();
        let queued_for = job.submitted_at.elapsed().unwrap_or_default();
        tracing::info!(?queued_for, bytes = job.image.len(), "job taken");
        metrics.worker_busy.set(1);

        let lease_token = lease.cancel_token();
        let job_token = CancellationToken::new();
        let (tx, mut rx) = mpsc::channel(16);
        let sink = BridgeSink { tx, cancel: job_token.clone() };
        let task = {
            let (pipeline, image, options) = (pipeline.clone(), job.image.clone(), job.options.clone());
            tokio::task::spawn_blocking(move || {
                let mut sink = sink;
                pipeline.run(&image, &options, &mut sink)
            })
        };
        tokio::pin!(task);
        let deadline = tokio::time::sleep_until(Instant::now() + job.time_left());
        tokio::pin!(deadline);
        let mut clock = StageClock::new(started);
        let mut published = 0usize;
        let grace = options.watchdog.grace;
        // When the pipeline was told to stop; the watchdog counts its grace from there.
        let mut stop_asked: Option<Instant> = None;

        let outcome = loop {
            tokio::select! {
                biased;
                _ = shutdown.force().cancelled() => {
                    job_token.cancel();
                    break Outcome::Forced;
                }
                Some(msg) = rx.recv() => match msg {
                    SinkMsg::Part { name, bytes, reply } => {
                        let result = publish(&*lease, name, bytes, published).await;
                        if result.is_ok() {
                            published += 1;
                            metrics.part_latency.with_label_values(&[name.file_name()])
                                .observe(started.elapsed().as_secs_f64());
                            tracing::info!(part = %name, "part published");
                        }
                        let _ = reply.send(result);
                    }
                    SinkMsg::Progress { stage, step, total } => {
                        clock.enter(stage, metrics);
                        let _ = lease.progress(stage, step, total).await;
                    }
                },
                result = &mut task => break match result {
                    Ok(returned) => Outcome::Returned(returned),
                    Err(e) => Outcome::Panicked(panic_message(e)),
                },
                _ = lease_token.cancelled(), if !job_token.is_cancelled() => {
                    tracing::info!("job cancelled (client gone or deadline); stopping at the next check");
                    job_token.cancel();
                    stop_asked = Some(Instant::now());
                }
                _ = &mut deadline, if !job_token.is_cancelled() => {
                    tracing::info!("job deadline passed; stopping at the next check");
                    job_token.cancel();
                    stop_asked = Some(Instant::now());
                }
                _ = tokio::time::sleep_until(stop_asked.unwrap_or_else(Instant::now) + grace), if stop_asked.is_some() => {
                    tracing::error!(?grace, "the pipeline ignores cancellation; giving the job back and stopping");
                    break Outcome::Stuck;
                }
            }
        };
        drop(rx); // a pipeline still running (forced) fails its next part at once
        clock.finish(matches!(outcome, Outcome::Returned(Ok(()))), metrics);
        let expected = job.options.parts().len();
        let (label, code) = finish(lease, outcome, published, expected, job_token.is_cancelled()).await;
        metrics.worker_jobs.with_label_values(&[label, code.map_or("", FailureCode::as_str)]).inc();
        metrics.worker_job_duration.observe(started.elapsed().as_secs_f64());
        metrics.worker_busy.set(0);
        tracing::info!(
            outcome = label,
            code = code.map_or("", FailureCode::as_str),
            seconds = started.elapsed().as_secs_f64(),
            "job ended"
        );
        if label == "stuck" {
            return Err(Wedged::Stuck { grace });
        }
        Ok(code)
    }
    .instrument(span)
    .await
}

async fn publish(
    lease: &dyn Lease,
    name: PartName,
    bytes: Vec<u8>,
    published: usize,
) -> Result<(), QueueError> {
    if name.index() != published {
        // The pipeline broke the protocol order; the handle would fail the job anyway.
        let expected = ALL_PARTS[published.min(ALL_PARTS.len() - 1)];
        tracing::error!(part = %name, %expected, "pipeline produced a part out of order");
        return Err(QueueError::Backend(format!("part {name} out of order")));
    }
    lease.publish_part(name, Bytes::from(bytes)).await
}

/// Ends the lease according to the outcome. Returns the outcome label and failure code.
async fn finish(
    lease: Box<dyn Lease>,
    outcome: Outcome,
    published: usize,
    expected: usize,
    cancelled: bool,
) -> (&'static str, Option<FailureCode>) {
    let failure = match outcome {
        Outcome::Stuck => {
            // Fenced by the lease: if the job was cancelled or taken back meanwhile, this is
            // refused and nothing changes.
            if let Err(e) = lease.requeue().await {
                tracing::warn!(error = %e, "handing back the stuck job was refused");
            }
            return ("stuck", None);
        }
        Outcome::Forced => {
            tracing::warn!("drain deadline passed during the job; giving it back to the queue");
            if let Err(e) = lease.requeue().await {
                tracing::warn!(error = %e, "requeue failed");
            }
            return ("requeued", None);
        }
        Outcome::Returned(Ok(())) if published == expected && !cancelled => {
            return match lease.complete().await {
                Ok(()) => ("completed", None),
                Err(e) => {
                    tracing::warn!(error = %e, "could not complete the job");
                    ("failed", Some(FailureCode::Internal))
                }
            };
        }
        Outcome::Returned(Ok(())) if cancelled => Failure::cancelled(),
        Outcome::Returned(Ok(())) => {
            tracing::error!(published, expected, "the pipeline returned without producing all its parts");
            Failure::new(
                FailureCode::Internal,
                "internal error: the job ended without all result parts; retry",
            )
        }
        Outcome::Returned(Err(failure)) => failure,
        Outcome::Panicked(message) => {
            tracing::error!(panic = %message, "the pipeline panicked; the worker goes on");
            Failure::new(
                FailureCode::Internal,
                "internal error while running the job (logged on the server); retry",
            )
        }
    };
    let code = failure.code;
    if let Err(e) = lease.fail(failure).await {
        tracing::warn!(error = %e, "could not report the failure");
    }
    ("failed", Some(code))
}

fn panic_message(e: JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned()),
        Err(e) => e.to_string(),
    }
}

/// Times pipeline stages from the pipeline's progress reports: a stage lasts from its first
/// report to the first report of the next stage (the last one, to the end of the job).
struct StageClock {
    current: Option<(ProgressStage, Instant)>,
    start: Instant,
}

impl StageClock {
    fn new(start: Instant) -> Self {
        StageClock { current: None, start }
    }

    fn enter(&mut self, stage: ProgressStage, metrics: &Metrics) {
        match self.current {
            Some((s, _)) if s == stage => {}
            previous => {
                // The first stage starts when the job does, not at its first report.
                let since = previous.map_or(self.start, |(s, t)| {
                    metrics
                        .stage_duration
                        .with_label_values(&[s.as_str()])
                        .observe(t.elapsed().as_secs_f64());
                    Instant::now()
                });
                self.current = Some((stage, since));
            }
        }
    }

    fn finish(self, success: bool, metrics: &Metrics) {
        if let (true, Some((stage, since))) = (success, self.current) {
            metrics
                .stage_duration
                .with_label_values(&[stage.as_str()])
                .observe(since.elapsed().as_secs_f64());
        }
    }
}
