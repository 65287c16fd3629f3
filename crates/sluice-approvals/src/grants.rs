//! The access grants in force, kept in memory so that a statement pays one atomic load when there
//! are none and a short read lock when there are.

use parking_lot::RwLock;
use sluice_core::Identity;
use sluice_core::review::{Review, Subject};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
    /// Bumped by every change to the set, so a reload read before it cannot undo it (and so that
    /// decisions kept while it stayed the same can tell).
    generation: AtomicU64,
    active: RwLock<Vec<ActiveGrant>>,
}

impl Grants {
    /// The generation to pass to `reset` with the reviews read after it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces the set with the grants among `reviews` in force at `now_us`, unless a change was
    /// made here since `generation` was taken (the reviews may predate it; the next reload won't).
    pub fn reset(&self, generation: u64, reviews: &[Review], now_us: i64) {
        let active: Vec<ActiveGrant> = reviews.iter().filter_map(|r| grant_of(r, now_us)).collect();
        let mut slot = self.active.write();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let same = slot.len() == active.len()
            && slot.iter().zip(&active).all(|(a, b)| a.review_id == b.review_id && a.until_us == b.until_us);
        self.count.store(active.len(), Ordering::Release);
        *slot = active;
        // Decisions kept while no grant was in force must not outlive a grant that arrives here.
        if !same {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Adds or removes one review's grant after it changed.
    pub fn update(&self, review: &Review, now_us: i64) {
        let mut slot = self.active.write();
        slot.retain(|g| g.review_id != review.id && g.until_us > now_us);
        slot.extend(grant_of(review, now_us));
        self.count.store(slot.len(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether any grant may be in force (one atomic load: the hot path's whole cost without grants).
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// The newest grant in force for `identity` on `connection`.
    pub fn find(&self, identity: &Identity, connection: &str, now_us: i64) -> Option<ActiveGrant> {
        if !self.any() {
            return None;
        }
        let slot = self.active.read();
        slot.iter()
            .filter(|g| g.requester == identity.name && g.connection == connection && g.until_us > now_us)
            .max_by_key(|g| g.review_id)
            .cloned()
    }
}

fn grant_of(review: &Review, now_us: i64) -> Option<ActiveGrant> {
    let Subject::Access { policy, .. } = &review.subject else {
        return None;
    };
    review.grants_access(now_us).then(|| ActiveGrant {
        review_id: review.id,
        requester: review.requester.clone(),
        connection: review.connection.clone(),
        policy: policy.clone(),
        until_us: review.valid_until_us.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::review::{NewReview, ReviewRules};
    use sluice_core::span::Span;

    fn who(name: &str, groups: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            credential_id: "t".into(),
        }
    }

    fn approved_grant(id: i64, requester: &str, seconds: u64) -> Review {
        let mut review = NewReview {
            subject: Subject::Access { policy: "writer".into(), duration: Span::secs(seconds) },
            requester: requester.into(),
            connection: "shop".into(),
            rule: "writer".into(),
            reason: "r".into(),
            rules: ReviewRules { approvers: vec!["dba".into()], ..ReviewRules::default() },
        }
        .into_review(id, 0);
        review.approve(&who("bob", &["dba"]), None, 0).expect("bob approves");
        review
    }

    #[test]
    fn grants_apply_to_their_requester_and_connection_until_they_end() {
        let grants = Grants::default();
        assert!(grants.find(&who("agent", &[]), "shop", 1).is_none());
        grants.reset(grants.generation(), &[approved_grant(1, "agent", 60)], 1);
        assert_eq!(grants.find(&who("agent", &[]), "shop", 1).map(|g| g.review_id), Some(1));
        assert!(grants.find(&who("other", &[]), "shop", 1).is_none());
        assert!(grants.find(&who("agent", &[]), "elsewhere", 1).is_none());
        assert!(grants.find(&who("agent", &[]), "shop", 60_000_000).is_none(), "over after its duration");
        let mut revoked = approved_grant(1, "agent", 60);
        revoked.revoke(&who("agent", &[]), 2).expect("the requester may revoke");
        grants.update(&revoked, 2);
        assert!(grants.find(&who("agent", &[]), "shop", 3).is_none());
        // A reload read before the revocation does not bring the grant back.
        let stale = grants.generation() - 1;
        grants.reset(stale, &[approved_grant(1, "agent", 60)], 4);
        assert!(grants.find(&who("agent", &[]), "shop", 5).is_none());
    }

    #[test]
    fn the_generation_moves_with_every_change_to_the_set_and_only_then() {
        let grants = Grants::default();
        let start = grants.generation();
        grants.reset(start, &[], 1);
        assert_eq!(grants.generation(), start, "a reload that finds what was there changes nothing");
        grants.reset(start, &[approved_grant(1, "agent", 60)], 1);
        let loaded = grants.generation();
        assert_ne!(loaded, start, "a grant a reload brings in moves it");
        grants.reset(loaded, &[approved_grant(1, "agent", 60)], 2);
        assert_eq!(grants.generation(), loaded);
        grants.reset(loaded, &[], 3);
        assert_ne!(grants.generation(), loaded, "so does one a reload finds gone");
    }
}
