//! Per-client quotas: connections held and jobs waiting, counted per [`ClientId`] (API key, or
//! IP address when keys are off), so one client cannot take every slot or fill the queue.
//!
//! A count is held by a [`Slot`] and given back when the slot is dropped, so no path (a closed
//! connection, a cancelled job, a panic) can leak one. A client's entry is removed when its
//! counts are back at zero: the table holds only clients that hold something.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::access::ClientId;

/// What a slot counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An open WebSocket connection.
    Connection,
    /// A job submitted and not yet started by a worker.
    Queued,
}

#[derive(Debug, Default)]
struct Counts {
    connections: usize,
    queued: usize,
}

impl Counts {
    fn get(&mut self, kind: Kind) -> &mut usize {
        match kind {
            Kind::Connection => &mut self.connections,
            Kind::Queued => &mut self.queued,
        }
    }
}

/// The quotas and what each client holds now.
#[derive(Debug)]
pub struct Quotas {
    max_connections: Option<usize>,
    max_queued: Option<usize>,
    held: Mutex<HashMap<ClientId, Counts>>,
}

impl Quotas {
    /// `None`: no limit of that kind.
    pub fn new(max_connections: Option<usize>, max_queued: Option<usize>) -> Arc<Self> {
        Arc::new(Quotas { max_connections, max_queued, held: Mutex::new(HashMap::new()) })
    }

    /// Takes one `kind` slot for `client`, or `None` when it holds its quota already.
    pub fn take(self: &Arc<Self>, client: ClientId, kind: Kind) -> Option<Slot> {
        let limit = match kind {
            Kind::Connection => self.max_connections,
            Kind::Queued => self.max_queued,
        };
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(client).or_default().get(kind);
        if limit.is_some_and(|limit| *count >= limit) {
            return None;
        }
        *count += 1;
        Some(Slot { quotas: self.clone(), client, kind })
    }

    /// How many `kind` slots `client` holds.
    #[cfg(test)]
    pub fn held(&self, client: ClientId, kind: Kind) -> usize {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get_mut(&client).map_or(0, |c| *c.get(kind))
    }

    fn give_back(&self, client: ClientId, kind: Kind) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(counts) = held.get_mut(&client) {
            let count = counts.get(kind);
            *count = count.saturating_sub(1);
            if counts.connections == 0 && counts.queued == 0 {
                held.remove(&client);
            }
        }
    }
}

/// One counted connection or waiting job; given back on drop.
#[derive(Debug)]
pub struct Slot {
    quotas: Arc<Quotas>,
    client: ClientId,
    kind: Kind,
}

impl Slot {
    /// The client it counts against.
    pub fn client(&self) -> ClientId {
        self.client
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.quotas.give_back(self.client, self.kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each client gets its own quota; a dropped slot frees room; empty entries go away.
    #[test]
    fn per_client_and_given_back_on_drop() {
        let q = Quotas::new(Some(2), Some(1));
        let (a, b) = (ClientId::Key(1), ClientId::Key(2));
        let a1 = q.take(a, Kind::Connection).unwrap();
        let _a2 = q.take(a, Kind::Connection).unwrap();
        assert!(q.take(a, Kind::Connection).is_none(), "a third connection for a");
        assert!(q.take(b, Kind::Connection).is_some(), "b has its own quota");
        let job = q.take(a, Kind::Queued).unwrap();
        assert!(q.take(a, Kind::Queued).is_none());
        drop(job);
        assert!(q.take(a, Kind::Queued).is_some());
        drop(a1);
        assert_eq!(q.held(a, Kind::Connection), 1);
        assert!(q.take(a, Kind::Connection).is_some());
        assert!(q.held.lock().unwrap().len() <= 1, "b's entry went with its slot");
    }

    /// No limit: always a slot, still counted.
    #[test]
    fn unlimited() {
        let q = Quotas::new(None, None);
        let slots: Vec<_> = (0..100).map(|_| q.take(ClientId::Key(9), Kind::Queued).unwrap()).collect();
        assert_eq!(q.held(ClientId::Key(9), Kind::Queued), 100);
        drop(slots);
        assert!(q.held.lock().unwrap().is_empty());
    }
}
