//! Admission of clients that have not authenticated yet: their own budget, apart from the session
//! slots (which only an authenticated client takes), with a limit per source address. When either
//! is full, a newcomer evicts the oldest handshake of that source (or of the source holding the
//! most) that has been pending for `GRACE` — a real handshake takes milliseconds, so what is
//! evicted is what sits idle. A burst of young handshakes is admitted beyond the budget, up to
//! twice it; past that the oldest goes whatever its age. So idle sockets cannot lock out a login,
//! and a pool that opens many connections at once is not cut short.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a handshake is left alone before a newcomer may evict it.
const GRACE: Duration = Duration::from_millis(500);

pub struct Admission {
    max_total: usize,
    max_per_source: usize,
    pending: Mutex<Pending>,
}

struct Entry {
    source: IpAddr,
    since: Instant,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Pending {
    next: u64,
    /// By age (admission order): source, when, and the signal that evicts it.
    entries: BTreeMap<u64, Entry>,
}

/// One admitted handshake; leaves the budget when dropped.
pub struct Ticket {
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
        self.admission.pending.lock().entries.remove(&self.id);
    }
}

impl Admission {
    pub fn new(max_total: usize, max_per_source: usize) -> Self {
        Admission { max_total: max_total.max(1), max_per_source: max_per_source.max(1), pending: Mutex::default() }
    }

    /// Admits a handshake from `source`, evicting an older one if a budget is full.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Ticket {
        self.admit_at(source, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, source: IpAddr, now: Instant) -> Ticket {
        let mut pending = self.pending.lock();
        let from_source = pending.entries.values().filter(|e| e.source == source).count();
        let oldest_of = |pending: &Pending, of: Option<IpAddr>, grace: Duration| {
            let mut of_source = pending.entries.iter().filter(|(_, e)| Some(e.source) == of);
            of_source.next().filter(|(_, e)| now.duration_since(e.since) >= grace).map(|(id, _)| *id)
        };
        let victim = if pending.entries.len() >= 2 * self.max_total {
            oldest_of(&pending, busiest_source(&pending.entries), Duration::ZERO)
        } else if from_source >= self.max_per_source {
            oldest_of(&pending, Some(source), GRACE)
        } else if pending.entries.len() >= self.max_total {
            oldest_of(&pending, busiest_source(&pending.entries), GRACE)
        } else {
            None
        };
        if let Some(entry) = victim.and_then(|id| pending.entries.remove(&id)) {
            tracing::warn!(source = %entry.source, "evicting the oldest unauthenticated connection to admit a new one");
            entry.evict.notify_one();
        }
        let id = pending.next;
        pending.next += 1;
        let evicted = Arc::new(Notify::new());
        pending.entries.insert(id, Entry { source, since: now, evict: Arc::clone(&evicted) });
        Ticket { admission: Arc::clone(self), id, evicted }
    }
}

/// The source with the most pending handshakes (the earliest of equals).
fn busiest_source(entries: &BTreeMap<u64, Entry>) -> Option<IpAddr> {
    let mut counts: Vec<(IpAddr, usize)> = Vec::new();
    for entry in entries.values() {
        match counts.iter_mut().find(|(s, _)| *s == entry.source) {
            Some((_, n)) => *n += 1,
            None => counts.push((entry.source, 1)),
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
    async fn a_full_budget_evicts_the_oldest_idle_handshake_of_the_busiest_source() {
        let admission = Arc::new(Admission::new(4, 3));
        let start = Instant::now();
        let idle = start + GRACE;
        let flood: Vec<Ticket> = (0..3).map(|_| admission.admit_at(ip(1), start)).collect();
        let other = admission.admit_at(ip(2), start);
        // Full (4), and the flood's handshakes are idle: the newcomer pushes out the flood's oldest.
        let newcomer = admission.admit_at(ip(3), idle);
        assert!(is_evicted(&flood[0]).await);
        assert!(!is_evicted(&flood[1]).await && !is_evicted(&other).await && !is_evicted(&newcomer).await);
        drop(flood);
        // Per source (3): a source's fourth pushes out its own oldest idle one.
        let again: Vec<Ticket> = (0..4).map(|_| admission.admit_at(ip(2), idle)).collect();
        assert!(is_evicted(&other).await, "ip(2)'s first, idle since the start");
        assert!(!is_evicted(&again[0]).await, "young: admitted beyond the budget instead");
        assert!(!is_evicted(&newcomer).await);
        assert_eq!(admission.pending.lock().entries.len(), 5);
    }

    #[tokio::test]
    async fn a_burst_of_young_handshakes_is_admitted_up_to_twice_the_budget() {
        let admission = Arc::new(Admission::new(4, 4));
        let now = Instant::now();
        let burst: Vec<Ticket> = (0..8).map(|_| admission.admit_at(ip(1), now)).collect();
        for t in &burst {
            assert!(!is_evicted(t).await);
        }
        // Past twice the budget the oldest goes, young or not, so a flood cannot lock a login out.
        let login = admission.admit_at(ip(9), now);
        assert!(is_evicted(&burst[0]).await && !is_evicted(&login).await);
        assert_eq!(admission.pending.lock().entries.len(), 8);
    }

    #[tokio::test]
    async fn tickets_leave_the_budget_when_dropped() {
        let admission = Arc::new(Admission::new(2, 2));
        drop((0..10).map(|_| admission.admit(ip(1))).collect::<Vec<_>>());
        assert!(admission.pending.lock().entries.is_empty());
    }
}
