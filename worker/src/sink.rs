//! The bridge between a pipeline on a blocking thread and the job's lease on the runtime.

use img3d_protocol::{PartName, ProgressStage};
use img3d_queue::QueueError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use img3d_queue::Failure;

use crate::JobSink;

/// What the pipeline thread asks of the async side.
pub(crate) enum SinkMsg {
    /// Best-effort progress.
    Progress { stage: ProgressStage, step: u32, total: u32 },
    /// A part; the reply says whether the queue accepted it.
    Part { name: PartName, bytes: Vec<u8>, reply: oneshot::Sender<Result<(), QueueError>> },
}

/// A [`JobSink`] whose parts are published by the worker loop, one at a time, each before the
/// pipeline goes on (so a part is out the moment it exists and errors reach the pipeline).
pub(crate) struct BridgeSink {
    pub(crate) tx: mpsc::Sender<SinkMsg>,
    pub(crate) cancel: CancellationToken,
}

impl JobSink for BridgeSink {
    fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn progress(&mut self, stage: ProgressStage, step: u32, total: u32) {
        // Never block the pipeline for a progress notice.
        let _ = self.tx.try_send(SinkMsg::Progress { stage, step, total });
    }

    fn part(&mut self, name: PartName, bytes: Vec<u8>) -> Result<(), Failure> {
        if self.cancel.is_cancelled() {
            return Err(Failure::cancelled());
        }
        let (reply, answer) = oneshot::channel();
        self.tx.blocking_send(SinkMsg::Part { name, bytes, reply }).map_err(|_| Failure::cancelled())?;
        match answer.blocking_recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::info!(error = %e, part = %name, "part not accepted; stopping the job");
                Err(Failure::cancelled())
            }
            Err(_) => Err(Failure::cancelled()),
        }
    }
}
