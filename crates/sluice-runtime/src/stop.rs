//! Shutdown, told to each session through a signal of its own. A session polls it every time it
//! wakes (twice per statement): one signal shared by all would be a lock and memory that sessions
//! on every core write.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The listener's side: one sender per open session.
#[derive(Default)]
pub struct Stops {
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    next: u64,
    senders: HashMap<u64, oneshot::Sender<()>>,
}

impl Stops {
    /// A signal for a session about to start; it stops being tracked when the session drops it.
    pub fn register(&self) -> Stop {
        let (tx, rx) = oneshot::channel();
        let mut open = self.open.lock();
        open.next += 1;
        let id = open.next;
        open.senders.insert(id, tx);
        Stop { rx, fired: false, id, open: Arc::clone(&self.open) }
    }

    /// Signals every session registered so far.
    pub fn signal_all(&self) {
        for (_, tx) in self.open.lock().senders.drain() {
            let _ = tx.send(());
        }
    }
}

/// A session's side.
pub struct Stop {
    rx: oneshot::Receiver<()>,
    fired: bool,
    id: u64,
    open: Arc<Mutex<Open>>,
}

impl Stop {
    /// Resolves once shutdown is signalled (never, if the listener is gone without signalling).
    pub async fn signalled(&mut self) {
        if self.fired {
            return;
        }
        match (&mut self.rx).await {
            Ok(()) => self.fired = true,
            Err(_) => std::future::pending::<()>().await,
        }
    }

    /// Whether shutdown has been signalled, without waiting.
    pub fn is_signalled(&mut self) -> bool {
        if !self.fired {
            self.fired = self.rx.try_recv().is_ok();
        }
        self.fired
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.open.lock().senders.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::Stops;

    #[tokio::test]
    async fn every_open_session_is_signalled_and_closed_ones_are_forgotten() {
        let stops = Stops::default();
        let mut a = stops.register();
        let b = stops.register();
        drop(b);
        assert_eq!(stops.open.lock().senders.len(), 1);
        assert!(!a.is_signalled());
        stops.signal_all();
        a.signalled().await;
        assert!(a.is_signalled());
        // Waiting again after the signal returns at once.
        a.signalled().await;
        assert!(stops.open.lock().senders.is_empty());
    }
}
