//! HTTP/2 answers the client holds back with flow control: a client can read every byte of the
//! connection (so no write ever waits, and the send timeout never starts) while granting a stream
//! no window, and hyper then never asks the stream's body for more. Each answer's body notes
//! since when hyper has owed it a look (`Stall`); the connection is closed when one has waited
//! `send_timeout_secs` (`Stalls::stalled`). Bodies are also handed over in slices, so that what
//! hyper has taken and cannot send is a slice, not a whole answer, and each piece's last byte is
//! handed alone: hyper asks for the next piece only once the stream's window has room again, so
//! the body (and its watch) lives until what it handed before has gone, not just been queued.

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
            since: Arc::downgrade(&self.since),
            tracked: Arc::clone(&self.tracked),
            waker: waker.clone(),
        }))
    }
}

/// Holds the note weakly: a source may keep a waker after the body is gone, and a note kept so
/// would look to the watch like an answer waiting for ever.
struct HandOnWake {
    since: Weak<Since>,
    tracked: Arc<Tracked>,
    waker: Waker,
}

impl Wake for HandOnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Only if hyper has not asked again meanwhile (a later poll clears or sets it itself).
        if let Some(since) = self.since.upgrade() {
            let _ = since.0.compare_exchange(0, self.tracked.now(), Ordering::Relaxed, Ordering::Relaxed);
        }
        self.waker.wake_by_ref();
    }
}

/// The first piece of `data` to hand over, and what is left: at most `SLICE` bytes, and a piece's
/// last byte alone. Hyper queues a piece whole for a stream with any window at all, and asks for
/// the next only once the queue has gone out; the last byte handed alone (with the end of the
/// stream) so keeps the body, and its watch, until the rest has been sent. The last slice of a
/// large piece is a copy: hyper may hold it unsent for a client that grants no window, and it
/// should not keep the whole piece's buffer (and its place in the budget of bytes held) with it.
pub fn slice(mut data: Bytes) -> (Bytes, Option<Bytes>) {
    match data.len() {
        0 | 1 => (data, None),
        n if n <= SLICE => {
            let last = data.split_off(n - 1);
            (data, Some(last))
        }
        _ => {
            let first = data.split_to(SLICE);
            let rest = match data.len() {
                n if n <= SLICE => Bytes::copy_from_slice(&data),
                _ => data,
            };
            (first, Some(rest))
        }
    }
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
    fn bodies_are_handed_over_in_slices_the_last_a_copy_and_its_last_byte_alone() {
        let body = Bytes::from(vec![7u8; SLICE * 2 + 10]);
        let mut pieces = Vec::new();
        let mut rest = Some(body.clone());
        while let Some(left) = rest {
            let (piece, more) = slice(left);
            pieces.push(piece);
            rest = more;
        }
        let lengths: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(lengths, [SLICE, SLICE, 9, 1]);
        assert!(!std::ptr::eq(pieces[2].as_ptr(), body[SLICE * 2..].as_ptr()), "the last slice is a copy");
        let small = Bytes::from_static(b"small");
        assert_eq!(slice(small), (Bytes::from_static(b"smal"), Some(Bytes::from_static(b"l"))));
        assert_eq!(slice(Bytes::from_static(b"l")), (Bytes::from_static(b"l"), None));
        assert_eq!(slice(Bytes::new()), (Bytes::new(), None));
    }

    #[test]
    fn a_waker_kept_after_its_body_is_gone_notes_nothing() {
        let stalls = Stalls::default();
        let stall = stalls.track();
        stall.asked();
        let waker = stall.waker(Waker::noop());
        drop(stall);
        waker.wake_by_ref();
        assert_eq!(stalls.0.bodies.lock().iter().filter(|b| b.strong_count() > 0).count(), 0);
    }
}
