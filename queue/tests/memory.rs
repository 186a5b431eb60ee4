//! The queue contract (conformance suite) run against the in-process backend, plus what only
//! the in-process backend promises (closing for shutdown).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use img3d_protocol::FailureCode;
use img3d_queue::conformance::{Backend, Factory};
use img3d_queue::memory::MemoryQueue;
use img3d_queue::{JobEvent, JobQueue, NewJob, QueueError, SubmitError, WorkQueue};

struct Memory;

#[async_trait]
impl Factory for Memory {
    async fn make(&self, max_len: usize) -> Backend {
        let queue = MemoryQueue::new(max_len);
        Backend { jobs: queue.clone(), work: queue }
    }
}

img3d_queue::conformance_tests!(memory, super::Memory);

fn job() -> NewJob {
    NewJob {
        image: Bytes::from_static(b"img"),
        options: Default::default(),
        timeout: Duration::from_secs(60),
    }
}

/// Closing fails waiting jobs with `unavailable`, refuses new ones, stops workers, and a
/// requeued running job fails instead of waiting forever.
#[tokio::test]
async fn close_fails_waiting_and_requeued_jobs() {
    let queue = MemoryQueue::new(10);
    let running = queue.submit(job()).await.unwrap();
    let waiting = queue.submit(job()).await.unwrap();
    let lease = queue.next(Duration::from_secs(1)).await.unwrap().expect("a job");
    queue.shut_down();

    let terminal = |mut h: img3d_queue::JobHandle| async move {
        loop {
            match h.next_event().await.expect("an event") {
                JobEvent::Failed(f) => return f.code,
                e if e.is_terminal() => panic!("unexpected {e:?}"),
                _ => continue,
            }
        }
    };
    assert!(matches!(queue.submit(job()).await, Err(SubmitError::Unavailable(_))));
    assert!(matches!(queue.next(Duration::from_millis(10)).await, Err(QueueError::Closed)));
    lease.requeue().await.unwrap();
    assert_eq!(terminal(waiting).await, FailureCode::Unavailable);
    assert_eq!(terminal(running).await, FailureCode::Unavailable);
}

/// Waiting jobs are told their place in line, and told again as the line moves.
#[tokio::test]
async fn waiting_jobs_learn_their_position() {
    let queue: Arc<MemoryQueue> = MemoryQueue::new(10);
    let _first = queue.submit(job()).await.unwrap();
    let mut second = queue.submit(job()).await.unwrap();
    assert_eq!(second.next_event().await, Some(JobEvent::Queued { position: 1 }));
    let _lease = queue.next(Duration::from_secs(1)).await.unwrap().expect("a job");
    assert_eq!(second.next_event().await, Some(JobEvent::Queued { position: 0 }));
}
