//! Statements held for a review, by review id: deciding a review wakes every session holding it.

use parking_lot::Mutex;
use sluice_core::review::Review;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Default)]
pub struct Waiters {
    by_review: Mutex<HashMap<i64, watch::Sender<Option<Review>>>>,
}

/// One held statement's view of its review; leaving the wait (for any reason) unregisters it.
pub struct Waiting {
    waiters: Arc<Waiters>,
    id: i64,
    pub rx: watch::Receiver<Option<Review>>,
}

impl Waiters {
    /// Registers interest in review `id` before anything can decide it, so no decision is missed.
    pub fn watch(self: &Arc<Self>, id: i64) -> Waiting {
        let mut map = self.by_review.lock();
        let rx = map.entry(id).or_insert_with(|| watch::channel(None).0).subscribe();
        Waiting { waiters: Arc::clone(self), id, rx }
    }

    /// Hands a decided review to everyone holding a statement for it.
    pub fn decided(&self, review: &Review) {
        let map = self.by_review.lock();
        if let Some(tx) = map.get(&review.id) {
            tx.send_replace(Some(review.clone()));
        }
    }

    pub fn holding(&self, id: i64) -> usize {
        let map = self.by_review.lock();
        map.get(&id).map_or(0, |tx| tx.receiver_count())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut map = self.waiters.by_review.lock();
        // Our receiver is still alive here: the entry goes when we are its last one.
        if map.get(&self.id).is_some_and(|tx| tx.receiver_count() <= 1) {
            map.remove(&self.id);
        }
    }
}
