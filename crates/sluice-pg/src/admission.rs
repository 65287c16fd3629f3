//! Admission of clients that have not authenticated yet: their own budget, apart from the session
//! slots (which only an authenticated client takes), with a limit per source address. When either
//! is full, the oldest handshake of the source holding the most is evicted to make room, as sshd's
//! MaxStartups does: idle sockets cannot lock out a login, since a flood would have to refill the
//! whole budget within one real handshake to push it out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub(crate) struct Admission {
    max_total: usize,
    max_per_source: usize,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    next: u64,
    /// By age (admission order): source and the signal that evicts it.
    entries: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
}

/// One admitted handshake; leaves the budget when dropped.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    evicted: Arc<Notify>,
}

impl Ticket {
    /// Resolves when this handshake was evicted to make room for a newer one.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.pending.lock().unwrap_or_else(|p| p.into_inner()).entries.remove(&self.id);
    }
}

impl Admission {
    pub fn new(max_total: usize, max_per_source: usize) -> Self {
        Admission { max_total: max_total.max(1), max_per_source: max_per_source.max(1), pending: Mutex::default() }
    }

    /// Admits a handshake from `source`, evicting an older one if a budget is full.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Ticket {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let from_source = pending.entries.values().filter(|(s, _)| *s == source).count();
        let victim = if from_source >= self.max_per_source {
            pending.entries.iter().find(|(_, (s, _))| *s == source).map(|(id, _)| *id)
        } else if pending.entries.len() >= self.max_total {
            let busiest = busiest_source(&pending.entries);
            pending.entries.iter().find(|(_, (s, _))| Some(*s) == busiest).map(|(id, _)| *id)
        } else {
            None
        };
        if let Some((evicted_source, signal)) = victim.and_then(|id| pending.entries.remove(&id)) {
            tracing::warn!(source = %evicted_source, "evicting the oldest unauthenticated connection to admit a new one");
            signal.notify_one();
        }
        let id = pending.next;
        pending.next += 1;
        let evicted = Arc::new(Notify::new());
        pending.entries.insert(id, (source, Arc::clone(&evicted)));
        Ticket { admission: Arc::clone(self), id, evicted }
    }
}

/// The source with the most pending handshakes (the earliest of equals).
fn busiest_source(entries: &BTreeMap<u64, (IpAddr, Arc<Notify>)>) -> Option<IpAddr> {
    let mut counts: Vec<(IpAddr, usize)> = Vec::new();
    for (source, _) in entries.values() {
        match counts.iter_mut().find(|(s, _)| s == source) {
            Some((_, n)) => *n += 1,
            None => counts.push((*source, 1)),
        }
    }
    counts.into_iter().rev().max_by_key(|(_, n)| *n).map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    async fn is_evicted(ticket: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(20), ticket.evicted()).await.is_ok()
    }

    #[tokio::test]
    async fn a_full_budget_evicts_the_oldest_of_the_busiest_source() {
        let admission = Arc::new(Admission::new(4, 3));
        let flood: Vec<Ticket> = (0..3).map(|_| admission.admit(ip(1))).collect();
        let other = admission.admit(ip(2));
        // Full (4): the next one pushes out the flood's oldest, not the other source's.
        let newcomer = admission.admit(ip(3));
        assert!(is_evicted(&flood[0]).await);
        assert!(!is_evicted(&flood[1]).await && !is_evicted(&other).await && !is_evicted(&newcomer).await);
        drop(flood);
        // Per source (3): a source's fourth pushes out its own oldest.
        let again: Vec<Ticket> = (0..4).map(|_| admission.admit(ip(2))).collect();
        assert!(is_evicted(&other).await, "ip(2)'s first, admitted before the flood ended");
        assert!(!is_evicted(&again[3]).await && !is_evicted(&newcomer).await);
        assert_eq!(admission.pending.lock().unwrap().entries.len(), 4);
    }

    #[tokio::test]
    async fn tickets_leave_the_budget_when_dropped() {
        let admission = Arc::new(Admission::new(2, 2));
        drop((0..10).map(|_| admission.admit(ip(1))).collect::<Vec<_>>());
        assert!(admission.pending.lock().unwrap().entries.is_empty());
    }
}
