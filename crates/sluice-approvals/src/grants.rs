//! The access grants in force, kept in memory so that a statement pays one atomic load when there
//! are none and a short read lock when there are.

use sluice_core::review::{Review, Subject};
use sluice_core::Identity;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

/// A grant in force: who, where, under which access policy, until when.
#[derive(Clone, Debug)]
pub struct ActiveGrant {
    pub review_id: i64,
    pub requester: String,
    pub connection: String,
    pub policy: String,
    pub until_us: i64,
}

#[derive(Default)]
pub struct Grants {
    count: AtomicUsize,
    active: RwLock<Vec<ActiveGrant>>,
}

impl Grants {
    /// Replaces the set with the grants among `reviews` in force at `now_us`.
    pub fn reset(&self, reviews: &[Review], now_us: i64) {
        let active: Vec<ActiveGrant> = reviews.iter().filter_map(|r| grant_of(r, now_us)).collect();
        let mut slot = self.active.write().unwrap_or_else(|p| p.into_inner());
        self.count.store(active.len(), Ordering::Release);
        *slot = active;
    }

    /// Adds or removes one review's grant after it changed.
    pub fn update(&self, review: &Review, now_us: i64) {
        let mut slot = self.active.write().unwrap_or_else(|p| p.into_inner());
        slot.retain(|g| g.review_id != review.id && g.until_us > now_us);
        slot.extend(grant_of(review, now_us));
        self.count.store(slot.len(), Ordering::Release);
    }

    /// The newest grant in force for `identity` on `connection`.
    pub fn find(&self, identity: &Identity, connection: &str, now_us: i64) -> Option<ActiveGrant> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let slot = self.active.read().unwrap_or_else(|p| p.into_inner());
        slot.iter()
            .filter(|g| g.requester == identity.name && g.connection == connection && g.until_us > now_us)
            .max_by_key(|g| g.review_id)
            .cloned()
    }
}

fn grant_of(review: &Review, now_us: i64) -> Option<ActiveGrant> {
    let Subject::Access { policy, .. } = &review.subject else { return None };
    review.grants_access(now_us).then(|| ActiveGrant {
        review_id: review.id,
        requester: review.requester.clone(),
        connection: review.connection.clone(),
        policy: policy.clone(),
        until_us: review.valid_until_us.unwrap_or(0),
    })
}
