//! Every metric of the service, in one typed module (names, help, buckets), exposed in the
//! Prometheus text format on `GET /metrics`. The gateway and the worker register on the same
//! [`Metrics`], so the all-in-one process serves both sets.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Metric names (all prefixed `img3d_`).
pub mod names {
    /// Gauge: WebSocket connections open now.
    pub const CONNECTED_CLIENTS: &str = "img3d_connected_clients";
    /// Counter by `outcome` (completed/failed) and `code`: every image a client sent, by how
    /// its job ended (validation failures included).
    pub const JOBS: &str = "img3d_jobs_total";
    /// Counter by `code`: messages refused without becoming a job (text frames, extra images).
    pub const REFUSED_MESSAGES: &str = "img3d_refused_messages_total";
    /// Histogram by `outcome`: seconds from an image's arrival to its job's last message.
    pub const JOB_DURATION: &str = "img3d_job_duration_seconds";
    /// Histogram: seconds spent validating (decoding) an image at the gateway.
    pub const VALIDATION: &str = "img3d_validation_seconds";
    /// Histogram: seconds a job waited in the queue before a worker took it.
    pub const QUEUE_WAIT: &str = "img3d_queue_wait_seconds";
    /// Gauge (sampled at scrape): jobs waiting for a worker.
    pub const QUEUE_DEPTH: &str = "img3d_queue_depth";
    /// Gauge (sampled at scrape): age of the oldest waiting job, seconds (0 when none).
    pub const QUEUE_OLDEST_AGE: &str = "img3d_queue_oldest_job_age_seconds";
    /// Gauge (sampled at scrape): jobs held by workers.
    pub const JOBS_RUNNING: &str = "img3d_jobs_running";
    /// Counter by `outcome` (completed/failed/requeued) and `code`: jobs a worker ran.
    pub const WORKER_JOBS: &str = "img3d_worker_jobs_total";
    /// Histogram: seconds a worker spent on one job, from taking it to its end.
    pub const WORKER_JOB_DURATION: &str = "img3d_worker_job_duration_seconds";
    /// Histogram by `stage`: seconds spent in each pipeline stage (from the pipeline's progress
    /// reports).
    pub const STAGE_DURATION: &str = "img3d_stage_duration_seconds";
    /// Histogram by `part`: seconds from a worker taking a job to publishing that part.
    pub const PART_LATENCY: &str = "img3d_part_latency_seconds";
    /// Gauge: 1 while this worker runs a job.
    pub const WORKER_BUSY: &str = "img3d_worker_busy";
    /// Counter by `key` and `outcome` (completed/failed): images sent by clients with an API
    /// key (`--api-keys`), by how their job ended. `key` is the key's id, never the key: the
    /// first 16 hex digits of its SHA-256 (`printf %s KEY | sha256sum | cut -c1-16`).
    pub const KEY_JOBS: &str = "img3d_key_jobs_total";
    /// Counter by `key` and `quota` (connections/queued): requests of an API key refused by
    /// its per-client quota.
    pub const KEY_REFUSED: &str = "img3d_key_refused_total";
}

/// Buckets for whole jobs (a CRM job is ~1 min on a GPU, minutes on a CPU).
const JOB_BUCKETS: &[f64] =
    &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0];
/// Buckets for pipeline stages (diffusion stages take seconds to tens of seconds).
const STAGE_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0];
/// Buckets for validation (decoding a photo: milliseconds).
const VALIDATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Buckets for queue wait (zero when a worker is idle, minutes under load).
const WAIT_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The registry and every metric in it.
pub struct Metrics {
    registry: Registry,
    /// See [`names::CONNECTED_CLIENTS`].
    pub connected_clients: IntGauge,
    /// See [`names::JOBS`].
    pub jobs: IntCounterVec,
    /// See [`names::REFUSED_MESSAGES`].
    pub refused_messages: IntCounterVec,
    /// See [`names::JOB_DURATION`].
    pub job_duration: HistogramVec,
    /// See [`names::VALIDATION`].
    pub validation: Histogram,
    /// See [`names::QUEUE_WAIT`].
    pub queue_wait: Histogram,
    /// See [`names::QUEUE_DEPTH`].
    pub queue_depth: IntGauge,
    /// See [`names::QUEUE_OLDEST_AGE`].
    pub queue_oldest_age: Gauge,
    /// See [`names::JOBS_RUNNING`].
    pub jobs_running: IntGauge,
    /// See [`names::WORKER_JOBS`].
    pub worker_jobs: IntCounterVec,
    /// See [`names::WORKER_JOB_DURATION`].
    pub worker_job_duration: Histogram,
    /// See [`names::STAGE_DURATION`].
    pub stage_duration: HistogramVec,
    /// See [`names::PART_LATENCY`].
    pub part_latency: HistogramVec,
    /// See [`names::WORKER_BUSY`].
    pub worker_busy: IntGauge,
    /// See [`names::KEY_JOBS`].
    pub key_jobs: IntCounterVec,
    /// See [`names::KEY_REFUSED`].
    pub key_refused: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Self {
        use names::*;
        let registry = Registry::new();
        let m = Metrics {
            connected_clients: IntGauge::new(CONNECTED_CLIENTS, "WebSocket connections open now").unwrap(),
            jobs: IntCounterVec::new(
                Opts::new(JOBS, "Images received, by how their job ended (code is empty on success)"),
                &["outcome", "code"],
            )
            .unwrap(),
            refused_messages: IntCounterVec::new(
                Opts::new(REFUSED_MESSAGES, "Client messages refused without becoming a job"),
                &["code"],
            )
            .unwrap(),
            job_duration: HistogramVec::new(
                histogram(JOB_DURATION, "Seconds from an image's arrival to its job's end", JOB_BUCKETS),
                &["outcome"],
            )
            .unwrap(),
            validation: Histogram::with_opts(histogram(
                VALIDATION,
                "Seconds spent validating an image",
                VALIDATION_BUCKETS,
            ))
            .unwrap(),
            queue_wait: Histogram::with_opts(histogram(
                QUEUE_WAIT,
                "Seconds a job waited for a worker",
                WAIT_BUCKETS,
            ))
            .unwrap(),
            queue_depth: IntGauge::new(QUEUE_DEPTH, "Jobs waiting for a worker").unwrap(),
            queue_oldest_age: Gauge::new(QUEUE_OLDEST_AGE, "Age of the oldest waiting job in seconds")
                .unwrap(),
            jobs_running: IntGauge::new(JOBS_RUNNING, "Jobs held by workers").unwrap(),
            worker_jobs: IntCounterVec::new(
                Opts::new(WORKER_JOBS, "Jobs this worker ran, by outcome and code"),
                &["outcome", "code"],
            )
            .unwrap(),
            worker_job_duration: Histogram::with_opts(histogram(
                WORKER_JOB_DURATION,
                "Seconds a worker spent on one job",
                JOB_BUCKETS,
            ))
            .unwrap(),
            stage_duration: HistogramVec::new(
                histogram(STAGE_DURATION, "Seconds spent in each pipeline stage", STAGE_BUCKETS),
                &["stage"],
            )
            .unwrap(),
            part_latency: HistogramVec::new(
                histogram(PART_LATENCY, "Seconds from taking a job to publishing each part", JOB_BUCKETS),
                &["part"],
            )
            .unwrap(),
            worker_busy: IntGauge::new(WORKER_BUSY, "1 while this worker runs a job").unwrap(),
            registry,
            key_jobs: IntCounterVec::new(
                Opts::new(KEY_JOBS, "Images sent with an API key, by key id and how their job ended"),
                &["key", "outcome"],
            )
            .unwrap(),
            key_refused: IntCounterVec::new(
                Opts::new(KEY_REFUSED, "Requests of an API key refused by its quota, by key id and quota"),
                &["key", "quota"],
            )
            .unwrap(),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 16] = [
            Box::new(m.connected_clients.clone()),
            Box::new(m.jobs.clone()),
            Box::new(m.refused_messages.clone()),
            Box::new(m.job_duration.clone()),
            Box::new(m.validation.clone()),
            Box::new(m.queue_wait.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.queue_oldest_age.clone()),
            Box::new(m.jobs_running.clone()),
            Box::new(m.worker_jobs.clone()),
            Box::new(m.worker_job_duration.clone()),
            Box::new(m.stage_duration.clone()),
            Box::new(m.part_latency.clone()),
            Box::new(m.worker_busy.clone()),
            Box::new(m.key_jobs.clone()),
            Box::new(m.key_refused.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// Counts one finished job as the client saw it.
    /// `key` is the API key id of the client (see [`names::KEY_JOBS`]), if it sent one.
    pub fn job_ended(&self, key: Option<&str>, code: Option<img3d_protocol::FailureCode>, seconds: f64) {
        let (outcome, code) = match code {
            None => ("completed", ""),
            Some(c) => ("failed", c.as_str()),
        };
        self.jobs.with_label_values(&[outcome, code]).inc();
        self.job_duration.with_label_values(&[outcome]).observe(seconds);
        if let Some(key) = key {
            self.key_jobs.with_label_values(&[key, outcome]).inc();
        }
    }

    /// Updates the sampled queue gauges.
    pub fn set_queue(&self, stats: &img3d_queue::QueueStats) {
        self.queue_depth.set(stats.depth as i64);
        self.queue_oldest_age.set(stats.oldest_age.map_or(0.0, |d| d.as_secs_f64()));
        self.jobs_running.set(stats.running as i64);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("encoding to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
