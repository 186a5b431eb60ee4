//! The gateway's memory budget (`--memory-budget`): the big allocations a client can cause draw
//! from one byte budget, so a burst of clients cannot push the process past its container's
//! memory limit (an OOM kill takes every connection with it).
//!
//! What draws from it: upload bytes in flight (read from a client, not yet a whole message:
//! [`Uploads`]), an image's decoded bitmap (size read from the header, before decoding) with
//! the file itself, and each part while it is being sent. Work that does not fit waits
//! [`WAIT`], then is refused with `busy`: the client retries, the process lives.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// How long work waits for room before `busy`.
pub const WAIT: Duration = Duration::from_secs(2);

/// Accounting unit: KiB, so a `u32` of permits covers terabytes.
const UNIT: u64 = 1024;

/// The budget, shared by every connection of a gateway.
///
/// Not first come, first served: a waiting 488 MiB decode must not hold up the 64 KiB a small
/// upload needs (a fair queue let one decode bomb stall every other client's reads), so waiters
/// retry whenever room is given back and whoever fits goes first.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    units: Arc<Semaphore>,
    /// Woken whenever room is given back.
    freed: Arc<Notify>,
    total: u64,
}

/// Bytes held from the budget; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Reservation {
    /// The units held, to be given back by whoever holds them now (dropping the permit alone
    /// does not wake waiters: see [`Uploads`]).
    fn into_permit(mut self) -> Option<OwnedSemaphorePermit> {
        self.permit.take()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.freed.notify_waiters();
        }
    }
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
        MemoryBudget { units: Arc::new(Semaphore::new(units)), freed: Arc::new(Notify::new()), total: bytes }
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
            return Ok(Reservation { permit: None, freed: self.freed.clone() });
        }
        if bytes > self.total {
            return Err(NoRoom::Never);
        }
        let units = u32::try_from(units).map_err(|_| NoRoom::Never)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Listening before trying, so room given back in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.units.clone().try_acquire_many_owned(units) {
                Ok(permit) => return Ok(Reservation { permit: Some(permit), freed: self.freed.clone() }),
                Err(TryAcquireError::Closed) => return Err(NoRoom::Busy),
                Err(TryAcquireError::NoPermits) => {}
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(NoRoom::Busy);
            }
        }
    }
}

/// Upload credit a connection takes from the budget at a time, in [`UNIT`]s (64 KiB).
const UPLOAD_CREDIT: u64 = 64;

/// What one connection has read from its client and its session has not yet received as a
/// whole message, held from the budget: a client uploading a 20 MB image holds up to 20 MB of
/// it until the image has arrived (it then counts as the image being decoded). Shared by the
/// connection's reads ([`UploadGate`]) and its session ([`Uploads::message_received`]).
#[derive(Debug)]
pub struct Uploads {
    budget: MemoryBudget,
    state: Mutex<Credit>,
    /// Reading stopped because the budget had no room for [`WAIT`].
    starved: AtomicBool,
}

#[derive(Debug, Default)]
struct Credit {
    /// Everything held: bytes read and not yet received as a message, plus `unused`.
    held: Option<OwnedSemaphorePermit>,
    /// Held and not yet read into, bytes.
    unused: u64,
}

impl Drop for Uploads {
    fn drop(&mut self) {
        let held = self.state.get_mut().map(|s| s.held.take()).unwrap_or(None);
        self.give_back(held);
    }
}

impl Uploads {
    /// A connection's uploads, drawing from `budget`.
    pub fn new(budget: MemoryBudget) -> Arc<Self> {
        Arc::new(Uploads { budget, state: Mutex::new(Credit::default()), starved: AtomicBool::new(false) })
    }

    /// Bytes held now (read and not yet a message, plus unused credit).
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        let state = self.state.lock().expect("upload credit lock");
        state.held.as_ref().map_or(0, |p| p.num_permits() as u64 * UNIT)
    }

    /// A whole message arrived: what was read up to now is the session's (it reserves what it
    /// keeps); the unused credit stays.
    pub fn message_received(&self) {
        let freed = {
            let mut state = self.state.lock().expect("upload credit lock");
            let keep = state.unused.div_ceil(UNIT) as usize;
            match state.held.as_mut() {
                Some(held) if held.num_permits() > keep => {
                    let kept = if keep == 0 { None } else { held.split(keep) };
                    std::mem::replace(&mut state.held, kept)
                }
                _ => None,
            }
        };
        self.give_back(freed);
    }

    /// Reading stopped for want of room (the read failed with `OutOfMemory`).
    pub fn starved(&self) -> bool {
        self.starved.load(Ordering::Relaxed)
    }

    fn unused(&self) -> u64 {
        self.state.lock().expect("upload credit lock").unused
    }

    fn give_back(&self, permit: Option<OwnedSemaphorePermit>) {
        if permit.is_some() {
            drop(permit);
            self.budget.freed.notify_waiters();
        }
    }

    fn add(&self, permit: OwnedSemaphorePermit) {
        let mut state = self.state.lock().expect("upload credit lock");
        state.unused += permit.num_permits() as u64 * UNIT;
        match state.held.as_mut() {
            Some(held) => held.merge(permit),
            None => state.held = Some(permit),
        }
    }

    fn used(&self, bytes: u64) {
        let mut state = self.state.lock().expect("upload credit lock");
        state.unused = state.unused.saturating_sub(bytes);
    }
}

/// A reservation under way, owned by the stream that polls it.
type Reserving = Pin<Box<dyn Future<Output = Result<Reservation, NoRoom>> + Send>>;

/// The read side of [`Uploads`], owned by the connection's stream: a read may only take as many
/// bytes as the connection holds credit for; without credit it waits for room, at most
/// [`WAIT`], then fails with `OutOfMemory` (the session answers `busy` and closes).
pub struct UploadGate {
    uploads: Arc<Uploads>,
    /// The credit being reserved, while there was none.
    reserving: Option<Reserving>,
}

impl std::fmt::Debug for UploadGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadGate").field("uploads", &self.uploads).finish_non_exhaustive()
    }
}

impl UploadGate {
    /// The gate of `uploads`.
    pub fn new(uploads: Arc<Uploads>) -> Self {
        UploadGate { uploads, reserving: None }
    }

    /// Bytes the connection may read now (at least 1), once there is room for them.
    pub fn poll_credit(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let unused = self.uploads.unused();
        if unused > 0 {
            return Poll::Ready(Ok(unused));
        }
        let budget = self.uploads.budget.clone();
        let reserving = self
            .reserving
            .get_or_insert_with(|| Box::pin(async move { budget.reserve(UPLOAD_CREDIT * UNIT, WAIT).await }));
        let reserved = std::task::ready!(reserving.as_mut().poll(cx));
        self.reserving = None;
        match reserved.map(Reservation::into_permit) {
            Ok(Some(permit)) => {
                self.uploads.add(permit);
                Poll::Ready(Ok(self.uploads.unused()))
            }
            Ok(None) | Err(_) => {
                self.uploads.starved.store(true, Ordering::Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "no room in the memory budget for this upload",
                )))
            }
        }
    }

    /// `bytes` of the credit were read into.
    pub fn used(&self, bytes: u64) {
        self.uploads.used(bytes);
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

    /// Reads take credit 64 KiB at a time; a message received gives back what was read and
    /// keeps the unused credit; without room a read waits, then fails as starved.
    #[tokio::test(start_paused = true)]
    async fn uploads_hold_what_was_read_until_a_message() {
        let budget = MemoryBudget::new(128 << 10);
        let uploads = Uploads::new(budget.clone());
        let mut gate = UploadGate::new(uploads.clone());
        let credit = std::future::poll_fn(|cx| gate.poll_credit(cx)).await.unwrap();
        assert_eq!(credit, 64 << 10);
        gate.used(60 << 10);
        assert_eq!(std::future::poll_fn(|cx| gate.poll_credit(cx)).await.unwrap(), 4 << 10);
        gate.used(4 << 10);
        assert_eq!(std::future::poll_fn(|cx| gate.poll_credit(cx)).await.unwrap(), 64 << 10);
        gate.used(1 << 10);
        assert_eq!((uploads.held(), budget.available()), (128 << 10, 0));
        uploads.message_received();
        assert_eq!((uploads.held(), budget.available()), (63 << 10, 65 << 10));

        // Another connection takes the rest; this one reads its credit, then waits and starves.
        let other = Uploads::new(budget.clone());
        let mut other_gate = UploadGate::new(other.clone());
        assert!(std::future::poll_fn(|cx| other_gate.poll_credit(cx)).await.is_ok());
        gate.used(63 << 10);
        let started = tokio::time::Instant::now();
        let e = std::future::poll_fn(|cx| gate.poll_credit(cx)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::OutOfMemory);
        assert!(uploads.starved() && !other.starved());
        assert_eq!(started.elapsed(), WAIT);
        drop((uploads, gate));
        assert_eq!(budget.available(), 64 << 10, "a closed connection's credit is given back");
    }

    /// A large reservation waiting for room does not hold up a small one that fits (a fair
    /// queue would: one decode bomb waiting stalled every other client's reads).
    #[tokio::test(start_paused = true)]
    async fn a_large_waiter_does_not_hold_up_small_ones() {
        let budget = MemoryBudget::new(10 << 20);
        let held = budget.reserve(6 << 20, WAIT).await.unwrap();
        let large = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(8 << 20, WAIT).await.is_ok() })
        };
        tokio::task::yield_now().await;
        let small = tokio::time::timeout(Duration::from_millis(10), budget.reserve(1 << 20, WAIT)).await;
        let small = small.expect("the small reservation waited behind the large one").unwrap();
        drop(held);
        assert!(large.await.unwrap(), "the large one gets the room given back");
        drop(small);
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
