//! The gateway's memory budget (`--memory-budget`): the big allocations a client can cause draw
//! from one byte budget, so a burst of clients cannot push the process past its container's
//! memory limit (an OOM kill takes every connection with it).
//!
//! What draws from it: an image's decoded bitmap (size read from the header, before decoding)
//! with the file itself, and each part while it is being sent (the WebSocket library copies a
//! message into its write buffer). Work that does not fit waits [`WAIT`], then is refused with
//! `busy`: the client retries, the process lives.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long work waits for room before `busy`.
pub const WAIT: Duration = Duration::from_secs(2);

/// Accounting unit: KiB, so a `u32` of permits covers terabytes.
const UNIT: u64 = 1024;

/// The budget, shared by every connection of a gateway.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    units: Arc<Semaphore>,
    total: u64,
}

/// Bytes held from the budget; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// More than the whole budget: it can never fit.
    Never,
    /// Not within [`WAIT`]: the gateway is busy.
    Busy,
}

impl MemoryBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Self {
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX)) as usize;
        MemoryBudget { units: Arc::new(Semaphore::new(units)), total: bytes }
    }

    /// The budget, bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes free now.
    #[cfg(test)]
    pub fn available(&self) -> u64 {
        self.units.available_permits() as u64 * UNIT
    }

    /// Holds `bytes`, waiting at most `wait` for room.
    pub async fn reserve(&self, bytes: u64, wait: Duration) -> Result<Reservation, NoRoom> {
        let units = bytes.div_ceil(UNIT);
        if units == 0 {
            return Ok(Reservation { _permit: None });
        }
        if bytes > self.total {
            return Err(NoRoom::Never);
        }
        let units = u32::try_from(units).map_err(|_| NoRoom::Never)?;
        match tokio::time::timeout(wait, self.units.clone().acquire_many_owned(units)).await {
            Ok(Ok(permit)) => Ok(Reservation { _permit: Some(permit) }),
            Ok(Err(_)) | Err(_) => Err(NoRoom::Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reservations add up to the budget; past it work waits, then is refused; a dropped
    /// reservation makes room; more than the whole budget is refused at once.
    #[tokio::test(start_paused = true)]
    async fn reserve_wait_refuse_release() {
        let budget = MemoryBudget::new(10 << 20);
        let a = budget.reserve(6 << 20, WAIT).await.unwrap();
        let b = budget.reserve(4 << 20, WAIT).await.unwrap();
        assert_eq!(budget.available(), 0);
        assert_eq!(budget.reserve(1, WAIT).await.unwrap_err(), NoRoom::Busy);
        assert_eq!(budget.reserve(11 << 20, WAIT).await.unwrap_err(), NoRoom::Never);
        drop(a);
        let c = budget.reserve(5 << 20, Duration::ZERO).await.unwrap();
        drop((b, c));
        assert_eq!(budget.available(), 10 << 20);
    }

    /// A waiter gets the room as soon as it is given back.
    #[tokio::test(start_paused = true)]
    async fn waiter_gets_room_when_freed() {
        let budget = MemoryBudget::new(1 << 20);
        let held = budget.reserve(1 << 20, WAIT).await.unwrap();
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(512 << 10, WAIT).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
