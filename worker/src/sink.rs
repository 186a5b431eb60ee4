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
                // The code says why: `cancelled` only if the job was, `unavailable` when the
                // queue had trouble (the client may retry), `internal` when it was taken back.
                tracing::info!(error = %e, part = %name, "part not accepted; stopping the job");
                Err(Failure::new(e.code(), e.client_message()))
            }
            Err(_) => Err(Failure::cancelled()),
        }
    }
}

#[cfg(test)]
mod tests {
    use img3d_protocol::FailureCode;

    use super::*;

    /// What the pipeline sees when the queue refuses a part with `error`.
    fn refused_with(error: QueueError) -> Failure {
        let (tx, mut rx) = mpsc::channel(1);
        let mut sink = BridgeSink { tx, cancel: CancellationToken::new() };
        let queue = std::thread::spawn(move || {
            let Some(SinkMsg::Part { reply, .. }) = rx.blocking_recv() else { panic!("no part came") };
            let _ = reply.send(Err(error));
        });
        let failure = sink.part(PartName::PixelImages, vec![1]).unwrap_err();
        queue.join().unwrap();
        failure
    }

    /// A refused part ends the job with the refusal's own code: queue trouble is retryable
    /// `unavailable`, never `cancelled` (nobody cancelled anything).
    #[test]
    fn refused_part_keeps_its_cause() {
        assert_eq!(refused_with(QueueError::Backend("Redis down".into())).code, FailureCode::Unavailable);
        assert_eq!(refused_with(QueueError::Cancelled("client left".into())).code, FailureCode::Cancelled);
        assert_eq!(refused_with(QueueError::LeaseLost("taken back".into())).code, FailureCode::Internal);
    }
}
