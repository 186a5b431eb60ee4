//! Graceful shutdown: one root token for "drain" and one for "the drain deadline passed".
//!
//! axum's graceful shutdown does not wait for WebSocket tasks (axum issue 3003), so every
//! socket task watches these tokens itself and is tracked by a `TaskTracker`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The two phases of a graceful shutdown, shared by every task of a process.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    force: CancellationToken,
}

impl Shutdown {
    /// Not shutting down yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled when the drain begins: stop taking new work, report not ready, let running
    /// jobs finish.
    pub fn drain(&self) -> &CancellationToken {
        &self.drain
    }

    /// Cancelled when the drain deadline passes: stop running jobs (fail or requeue them) and
    /// close what is left.
    pub fn force(&self) -> &CancellationToken {
        &self.force
    }

    /// Whether the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Begins the drain now and forces the end after `deadline`.
    pub fn begin(&self, deadline: Duration) {
        if self.drain.is_cancelled() {
            return;
        }
        tracing::info!(deadline = ?deadline, "draining: no new jobs; running jobs may finish");
        self.drain.cancel();
        let force = self.force.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(deadline) => {
                    tracing::warn!("drain deadline passed: stopping the jobs still running");
                    force.cancel();
                }
                _ = force.cancelled() => {}
            }
        });
    }

    /// Begins the drain on SIGTERM or Ctrl-C; a second signal forces the end at once.
    ///
    /// The handlers are installed before this returns, not when the watching task first runs:
    /// a SIGTERM arriving in between would otherwise take its default action and kill the
    /// process mid-job (seen under load: a test's SIGTERM right after `/readyz` said 200).
    /// Must be called inside a Tokio runtime.
    pub fn on_signals(&self, deadline: Duration) {
        let this = self.clone();
        let mut signals = Signals::install();
        tokio::spawn(async move {
            signals.recv().await;
            this.begin(deadline);
            signals.recv().await;
            tracing::warn!("second signal: stopping now");
            this.force.cancel();
        });
    }
}

/// SIGTERM and SIGINT, registered at once (Ctrl-C only where Unix signals are unavailable).
struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                (Ok(term), Ok(int)) => Some((term, int)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT; Ctrl-C only");
                    None
                }
            };
            Signals { unix }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.unix {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("Ctrl-C received"),
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drain starts at once and the force token fires exactly at the deadline.
    #[tokio::test(start_paused = true)]
    async fn force_fires_at_the_deadline() {
        let s = Shutdown::new();
        s.begin(Duration::from_secs(30));
        assert!(s.is_draining());
        tokio::time::sleep(Duration::from_millis(29_999)).await;
        assert!(!s.force().is_cancelled());
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(s.force().is_cancelled());
    }
}
