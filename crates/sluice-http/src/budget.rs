//! The bytes of bodies sluice holds at once, across every client (`http.max_buffered_bytes`):
//! each body read whole, and each stream's held events, take their share of it as they grow and
//! give it back when they leave, so that many clients together cannot make sluice hold more
//! than the operator allows — each body's own cap bounds one request, not a thousand.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The listener's budget, shared by its connections.
#[derive(Clone, Debug)]
pub struct Budget(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    total: usize,
    used: AtomicUsize,
}

/// The budget has no room for a body to grow (other bodies in flight hold it).
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error(
    "sluice is holding as many bytes of bodies as it may at once ({total} bytes, http.max_buffered_bytes), for other requests in flight"
)]
pub struct Exhausted {
    pub total: usize,
}

impl Budget {
    pub fn new(total: usize) -> Budget {
        Budget(Arc::new(Inner { total, used: AtomicUsize::new(0) }))
    }

    /// An empty share, to grow as a body does.
    pub fn share(&self) -> Share {
        Share { budget: self.clone(), held: 0 }
    }

    /// Bytes held by all shares now.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.0.used.load(Ordering::Acquire)
    }
}

/// What one body holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct Share {
    budget: Budget,
    held: usize,
}

impl Share {
    /// Makes the share exactly `bytes`: growing it fails, leaving it as it was, when the budget
    /// has no room; shrinking always succeeds.
    pub fn fit(&mut self, bytes: usize) -> Result<(), Exhausted> {
        let inner = &self.budget.0;
        if bytes <= self.held {
            inner.used.fetch_sub(self.held - bytes, Ordering::AcqRel);
        } else {
            let more = bytes - self.held;
            inner
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    used.checked_add(more).filter(|&now| now <= inner.total)
                })
                .map_err(|_| Exhausted { total: inner.total })?;
        }
        self.held = bytes;
        Ok(())
    }

    /// Up to `bytes` of this share moved to a new one, without giving them back in between (so
    /// that no other body can take them meanwhile).
    pub fn split(&mut self, bytes: usize) -> Share {
        let moved = bytes.min(self.held);
        self.held -= moved;
        Share { budget: self.budget.clone(), held: moved }
    }

    /// `data` as `Bytes` that hold this share (fitted to its length) until the last of them is
    /// dropped: a body keeps its place in the budget until hyper has sent it.
    pub fn hold<T: AsRef<[u8]> + Send + 'static>(mut self, data: T) -> Bytes {
        // A body that grew in cleaning (a masked value longer than the original) may not find
        // the room: it keeps what it had, since it is sent either way.
        let _ = self.fit(data.as_ref().len());
        Bytes::from_owner(Held { data, _share: self })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.0.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// A body's bytes with the share they hold.
struct Held<T> {
    data: T,
    _share: Share,
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Held<T> {
    fn as_ref(&self) -> &[u8] {
        self.data.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_grow_within_the_budget_and_give_back_what_they_held() {
        let budget = Budget::new(100);
        let mut a = budget.share();
        let mut b = budget.share();
        a.fit(60).unwrap();
        assert_eq!(b.fit(41).unwrap_err().total, 100);
        assert_eq!(budget.used(), 60, "a refused growth holds nothing more");
        b.fit(40).unwrap();
        a.fit(10).unwrap();
        b.fit(90).unwrap();
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 90);
        let mut part = b.split(30);
        assert_eq!((part.held, b.held), (30, 60));
        assert_eq!(budget.used(), 90, "a split moves bytes, it takes and gives back none");
        part.fit(0).unwrap();
        assert_eq!(budget.used(), 60);
        let bytes = b.hold(vec![7; 5]);
        assert_eq!(budget.used(), 5, "held bytes keep only their length");
        let copy = bytes.clone();
        drop(bytes);
        assert_eq!(budget.used(), 5, "until the last reference goes");
        assert_eq!(&copy[..], &[7; 5]);
        drop(copy);
        assert_eq!(budget.used(), 0);
    }
}
