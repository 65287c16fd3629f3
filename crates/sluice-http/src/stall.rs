//! HTTP/2 answers the client holds back with flow control: a client can read every byte of the
//! connection (so no write ever waits, and the send timeout never starts) while granting a stream
//! no window, and hyper then never asks the stream's body for more. Each answer's body notes
//! since when hyper has owed it a look (`Stall`); the connection is closed when one has waited
//! `send_timeout_secs` (`Stalls::stalled`). Bodies are also handed over in slices, so that what
//! hyper has taken and cannot send is a slice, not a whole answer.

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// The most of a body handed to hyper at once on an HTTP/2 stream.
pub const SLICE: usize = 64 * 1024;

/// The answers of one HTTP/2 connection in flight, each with since when it has waited.
#[derive(Clone)]
pub struct Stalls(Arc<Tracked>);

struct Tracked {
    born: Instant,
    bodies: parking_lot::Mutex<Vec<Weak<Since>>>,
}

/// Milliseconds from the connection's birth, plus one; 0 while hyper owes the body nothing (it
/// asked, and the body has nothing yet).
struct Since(AtomicU64);

impl Default for Stalls {
    fn default() -> Stalls {
        Stalls(Arc::new(Tracked { born: Instant::now(), bodies: Default::default() }))
    }
}

impl Stalls {
    /// Tracks one more answer, waiting from now (hyper has not asked for any of it yet).
    pub fn track(&self) -> Stall {
        let since = Arc::new(Since(AtomicU64::new(self.0.now())));
        let mut bodies = self.0.bodies.lock();
        // Bodies gone are let go when the list would grow: as many as are in flight are kept.
        if bodies.len() == bodies.capacity() {
            bodies.retain(|b| b.strong_count() > 0);
        }
        bodies.push(Arc::downgrade(&since));
        Stall { since, tracked: Arc::clone(&self.0) }
    }

    /// Returns once an answer has waited `limit` for hyper to take more of it.
    pub async fn stalled(&self, limit: Duration) {
        loop {
            let oldest = {
                let mut bodies = self.0.bodies.lock();
                bodies.retain(|b| b.strong_count() > 0);
                bodies.iter().filter_map(Weak::upgrade).filter_map(|b| b.waiting_since()).min()
            };
            let now = self.0.born.elapsed();
            let wait = match oldest {
                Some(since) if now.saturating_sub(since) >= limit => return,
                Some(since) => limit - now.saturating_sub(since),
                None => limit,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Tracked {
    fn now(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }
}

impl Since {
    fn waiting_since(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms - 1)),
        }
    }
}

/// One answer's note of since when hyper has owed it a look.
pub struct Stall {
    since: Arc<Since>,
    tracked: Arc<Tracked>,
}

impl Stall {
    /// Hyper asks for the body's next piece (whatever the body answers, it is no longer waiting).
    pub fn asked(&self) {
        self.since.0.store(0, Ordering::Relaxed);
    }

    /// The body handed hyper a piece, and waits for it to ask for the next.
    pub fn handed(&self) {
        self.since.0.store(self.tracked.now(), Ordering::Relaxed);
    }

    /// A waker that notes, when the body's source wakes it (the body has something), that the
    /// body waits from then, before it wakes hyper.
    pub fn waker(&self, waker: &Waker) -> Waker {
        Waker::from(Arc::new(HandOnWake {
            since: Arc::clone(&self.since),
            tracked: Arc::clone(&self.tracked),
            waker: waker.clone(),
        }))
    }
}

struct HandOnWake {
    since: Arc<Since>,
    tracked: Arc<Tracked>,
    waker: Waker,
}

impl Wake for HandOnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Only if hyper has not asked again meanwhile (a later poll clears or sets it itself).
        let _ = self.since.0.compare_exchange(0, self.tracked.now(), Ordering::Relaxed, Ordering::Relaxed);
        self.waker.wake_by_ref();
    }
}

/// The first slice of `data` to hand over, and what is left. The last slice of a large body is a
/// copy: hyper may hold it unsent for a client that grants no window, and it should not keep the
/// whole body's buffer (and its place in the budget of bytes held) with it.
pub fn slice(mut data: Bytes) -> (Bytes, Option<Bytes>) {
    if data.len() <= SLICE {
        return (data, None);
    }
    let first = data.split_to(SLICE);
    let rest = match data.len() {
        n if n <= SLICE => Bytes::copy_from_slice(&data),
        _ => data,
    };
    (first, Some(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_answer_hyper_does_not_come_back_for_is_stalled() {
        let stalls = Stalls::default();
        let limit = Duration::from_secs(60);
        let watch = {
            let stalls = stalls.clone();
            tokio::spawn(async move { stalls.stalled(limit).await })
        };
        // Asked for, waiting on its source (a silent stream): not stalled however long.
        let quiet = stalls.track();
        quiet.asked();
        // Handed a piece, asked again 59 s later: not stalled.
        let flowing = stalls.track();
        flowing.handed();
        tokio::time::sleep(Duration::from_secs(59)).await;
        flowing.asked();
        flowing.handed();
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!watch.is_finished());
        // The quiet one's source wakes it: it waits from then, and 60 s on hyper has not asked.
        quiet.waker(Waker::noop()).wake_by_ref();
        drop(flowing);
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!watch.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(watch.is_finished());
        // Gone bodies are let go.
        drop(quiet);
        assert_eq!(stalls.0.bodies.lock().iter().filter(|b| b.strong_count() > 0).count(), 0);
    }

    #[test]
    fn bodies_are_handed_over_in_slices_and_the_last_is_a_copy() {
        let body = Bytes::from(vec![7u8; SLICE * 2 + 10]);
        let (first, rest) = slice(body.clone());
        assert_eq!(first.len(), SLICE);
        let (second, rest) = slice(rest.unwrap());
        let (last, none) = slice(rest.unwrap());
        assert_eq!((second.len(), last.len(), none), (SLICE, 10, None));
        assert!(!std::ptr::eq(last.as_ptr(), body[SLICE * 2..].as_ptr()), "the last slice is a copy");
        let small = Bytes::from_static(b"small");
        assert_eq!(slice(small.clone()), (small, None));
    }
}
