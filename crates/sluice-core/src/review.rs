//! Reviews: a human sign-off on one exact statement, or on time-boxed access under a more
//! permissive policy. This is the state machine only — who may approve, when a review is decided,
//! when an approval may be used — the store keeps reviews and the gateway acts on them.

use crate::Identity;
use crate::span::Span;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

/// How the client experiences a review of its statement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewMode {
    /// Refuse at once naming the review; the same statement runs once after approval.
    #[default]
    Retry,
    /// Hold the statement until it is decided (or the wait times out).
    Wait,
}

impl ReviewMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewMode::Retry => "retry",
            ReviewMode::Wait => "wait",
        }
    }
}

/// Who may approve and how a review of a rule behaves, as written under a rule (`review = {…}`)
/// or an access policy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewRules {
    pub mode: ReviewMode,
    /// Groups whose members may approve or deny. The requester never may, whatever their groups.
    pub approvers: Vec<String>,
    /// Distinct approvals needed.
    pub approvals: u32,
    /// How long a client in `wait` mode is held before it gets an error (the review stays open).
    pub timeout: Span,
    /// How long a review may stay undecided.
    pub expires_after: Span,
    /// How long an approved statement may be run (once) after the approval.
    pub valid_for: Span,
}

/// The longest any review setting or grant may last.
pub const MAX_SPAN: Span = Span::secs(366 * 86_400);

/// The group allowed to approve when a rule names none.
pub const DEFAULT_APPROVER_GROUP: &str = "approvers";

impl Default for ReviewRules {
    fn default() -> Self {
        ReviewRules {
            mode: ReviewMode::Retry,
            approvers: vec![DEFAULT_APPROVER_GROUP.into()],
            approvals: 1,
            timeout: Span::secs(300),
            expires_after: Span::secs(86_400),
            valid_for: Span::secs(3600),
        }
    }
}

impl ReviewRules {
    pub fn check(&self) -> Result<(), String> {
        if self.approvers.is_empty() {
            return Err("name at least one approver group (a review nobody may approve can never pass)".into());
        }
        if self.approvals == 0 {
            return Err("approvals must be at least 1".into());
        }
        if self.timeout.0.is_zero() || self.expires_after.0.is_zero() || self.valid_for.0.is_zero() {
            return Err("timeout, expires_after and valid_for must be longer than 0s".into());
        }
        if [self.timeout, self.expires_after, self.valid_for].iter().any(|s| *s > MAX_SPAN) {
            return Err(format!("timeout, expires_after and valid_for can be at most {MAX_SPAN}"));
        }
        Ok(())
    }
}

/// What is being asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// One exact statement, bound by its SHA-256.
    Statement { text: String, hash: String },
    /// Access under a named policy for a while after approval.
    Access { policy: String, duration: Span },
}

impl Subject {
    pub fn statement(text: &str) -> Subject {
        Subject::Statement { text: text.to_string(), hash: statement_hash(text) }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Statement { .. } => "statement",
            Subject::Access { .. } => "access",
        }
    }
}

/// How refusals and notices name what an approval releases, so that every message says the same.
pub const SAME_STATEMENT: &str = "the same statement (spacing, comments and keyword case may differ; values may not)";

/// The SHA-256 (hex) that binds an approval to a statement: of its canonical form (for SQL, its
/// tokens as the server's lexer reads them; see `StatementReview::canonical`).
pub fn statement_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    /// Undecided past its expiry, or approved and not used (or, for access, over) in time.
    Expired,
    /// An approved statement that has run.
    Consumed,
    /// An access grant ended early.
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Consumed => "consumed",
            Status::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [Status::Pending, Status::Approved, Status::Denied, Status::Expired, Status::Consumed, Status::Revoked]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub approver: String,
    pub at_us: i64,
    pub comment: Option<String>,
}

/// A review as stored. Times are microseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub id: i64,
    pub subject: Subject,
    pub requester: String,
    pub connection: String,
    /// The policy rule that asked for the review (or the access policy asked for).
    pub rule: String,
    pub reason: String,
    pub mode: ReviewMode,
    pub approvers: Vec<String>,
    pub approvals_needed: u32,
    pub created_at_us: i64,
    /// Undecided past this, the review is expired.
    pub expires_at_us: i64,
    pub status: Status,
    pub votes: Vec<Vote>,
    pub decided_at_us: Option<i64>,
    pub denied_by: Option<String>,
    pub denial_reason: Option<String>,
    /// For statements: how long after approval it may run; for access: how long the grant lasts.
    pub valid_for: Span,
    /// Set on approval: the end of the window to run the statement, or of the grant.
    pub valid_until_us: Option<i64>,
    pub ended_at_us: Option<i64>,
    /// The session that ran the approved statement, or who revoked the grant.
    pub ended_by: Option<String>,
}

/// A review to be created.
#[derive(Clone, Debug)]
pub struct NewReview {
    pub subject: Subject,
    pub requester: String,
    pub connection: String,
    pub rule: String,
    pub reason: String,
    pub rules: ReviewRules,
}

impl NewReview {
    /// The stored form, once the store has given it an id.
    pub fn into_review(self, id: i64, now_us: i64) -> Review {
        let valid_for = match &self.subject {
            Subject::Access { duration, .. } => *duration,
            Subject::Statement { .. } => self.rules.valid_for,
        };
        Review {
            id,
            subject: self.subject,
            requester: self.requester,
            connection: self.connection,
            rule: self.rule,
            reason: self.reason,
            mode: self.rules.mode,
            approvers: self.rules.approvers,
            approvals_needed: self.rules.approvals,
            created_at_us: now_us,
            expires_at_us: now_us.saturating_add(self.rules.expires_after.as_us()),
            status: Status::Pending,
            votes: Vec::new(),
            decided_at_us: None,
            denied_by: None,
            denial_reason: None,
            valid_for,
            valid_until_us: None,
            ended_at_us: None,
            ended_by: None,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("review #{id} is {status}, not pending")]
    NotPending { id: i64, status: Status },
    #[error("you requested review #{0}; someone else must approve or deny it")]
    OwnRequest(i64),
    #[error("review #{id} may be decided by members of {groups}; you are in none of them")]
    NotAnApprover { id: i64, groups: String },
    #[error("you already approved review #{0}")]
    AlreadyApproved(i64),
    #[error("a denial needs a reason")]
    ReasonRequired,
    #[error("review #{id} is {status}; only an active access grant can be revoked")]
    NotRevocable { id: i64, status: Status },
    #[error("only the requester or an approver of review #{0} may revoke it")]
    NotAllowedToRevoke(i64),
}

/// What a decision did to a review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An approval was counted; more are needed.
    Counted {
        have: u32,
        need: u32,
    },
    Approved,
    Denied,
}

impl Review {
    /// The status as of `now`: pending and approved reviews run out.
    pub fn status_at(&self, now_us: i64) -> Status {
        match self.status {
            Status::Pending if now_us >= self.expires_at_us => Status::Expired,
            Status::Approved if self.valid_until_us.is_some_and(|until| now_us >= until) => Status::Expired,
            status => status,
        }
    }

    /// Whether `who` may approve or deny this review.
    pub fn may_decide(&self, who: &Identity) -> Result<(), ReviewError> {
        if who.name == self.requester {
            return Err(ReviewError::OwnRequest(self.id));
        }
        if !self.approvers.iter().any(|g| who.in_group(g)) {
            return Err(ReviewError::NotAnApprover { id: self.id, groups: quoted(&self.approvers) });
        }
        Ok(())
    }

    fn ensure_pending(&mut self, now_us: i64) -> Result<(), ReviewError> {
        match self.status_at(now_us) {
            Status::Pending => Ok(()),
            status => {
                self.status = status;
                Err(ReviewError::NotPending { id: self.id, status })
            }
        }
    }

    pub fn approve(&mut self, who: &Identity, comment: Option<String>, now_us: i64) -> Result<Outcome, ReviewError> {
        self.ensure_pending(now_us)?;
        self.may_decide(who)?;
        if self.votes.iter().any(|v| v.approver == who.name) {
            return Err(ReviewError::AlreadyApproved(self.id));
        }
        self.votes.push(Vote { approver: who.name.clone(), at_us: now_us, comment });
        let have = self.votes.len() as u32;
        if have < self.approvals_needed {
            return Ok(Outcome::Counted { have, need: self.approvals_needed });
        }
        self.status = Status::Approved;
        self.decided_at_us = Some(now_us);
        self.valid_until_us = Some(now_us.saturating_add(self.valid_for.as_us()));
        Ok(Outcome::Approved)
    }

    pub fn deny(&mut self, who: &Identity, reason: &str, now_us: i64) -> Result<Outcome, ReviewError> {
        if reason.trim().is_empty() {
            return Err(ReviewError::ReasonRequired);
        }
        self.ensure_pending(now_us)?;
        self.may_decide(who)?;
        self.status = Status::Denied;
        self.decided_at_us = Some(now_us);
        self.denied_by = Some(who.name.clone());
        self.denial_reason = Some(reason.to_string());
        Ok(Outcome::Denied)
    }

    /// Ends an active access grant (or withdraws a pending request) early.
    pub fn revoke(&mut self, who: &Identity, now_us: i64) -> Result<(), ReviewError> {
        let status = self.status_at(now_us);
        if !matches!(self.subject, Subject::Access { .. }) || !matches!(status, Status::Approved | Status::Pending) {
            return Err(ReviewError::NotRevocable { id: self.id, status });
        }
        if who.name != self.requester && self.may_decide(who).is_err() {
            return Err(ReviewError::NotAllowedToRevoke(self.id));
        }
        self.status = Status::Revoked;
        self.ended_at_us = Some(now_us);
        self.ended_by = Some(who.name.clone());
        Ok(())
    }

    /// An approved access grant in force at `now`.
    pub fn grants_access(&self, now_us: i64) -> bool {
        matches!(self.subject, Subject::Access { .. }) && self.status_at(now_us) == Status::Approved
    }
}

fn quoted(groups: &[String]) -> String {
    groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, groups: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            credential_id: "t".into(),
        }
    }

    fn review(approvals: u32) -> Review {
        let rules = ReviewRules { approvers: vec!["dba".into()], approvals, ..ReviewRules::default() };
        NewReview {
            subject: Subject::statement("DELETE FROM orders"),
            requester: "agent".into(),
            connection: "shop".into(),
            rule: "deletes".into(),
            reason: "deletes need a review".into(),
            rules,
        }
        .into_review(7, 1_000)
    }

    #[test]
    fn the_requester_can_never_approve_even_as_an_approver() {
        let mut r = review(1);
        assert_eq!(r.approve(&who("agent", &["dba"]), None, 2_000), Err(ReviewError::OwnRequest(7)));
        assert_eq!(r.status, Status::Pending);
    }

    #[test]
    fn only_approver_groups_decide() {
        let mut r = review(1);
        assert!(matches!(r.approve(&who("eve", &["agents"]), None, 2_000), Err(ReviewError::NotAnApprover { .. })));
        assert!(matches!(r.deny(&who("eve", &["agents"]), "no", 2_000), Err(ReviewError::NotAnApprover { .. })));
    }

    #[test]
    fn a_quorum_needs_distinct_approvers() {
        let mut r = review(2);
        let alice = who("alice", &["dba"]);
        assert_eq!(r.approve(&alice, None, 2_000), Ok(Outcome::Counted { have: 1, need: 2 }));
        assert_eq!(r.approve(&alice, None, 2_100), Err(ReviewError::AlreadyApproved(7)));
        assert_eq!(r.approve(&who("bob", &["dba"]), Some("ok".into()), 2_200), Ok(Outcome::Approved));
        assert_eq!(r.status, Status::Approved);
        assert_eq!(r.valid_until_us, Some(2_200 + 3_600_000_000));
    }

    #[test]
    fn denial_needs_a_reason_and_ends_the_review() {
        let mut r = review(1);
        let bob = who("bob", &["dba"]);
        assert_eq!(r.deny(&bob, "  ", 2_000), Err(ReviewError::ReasonRequired));
        assert_eq!(r.deny(&bob, "not during business hours", 2_000), Ok(Outcome::Denied));
        assert_eq!(
            r.approve(&who("carol", &["dba"]), None, 2_100),
            Err(ReviewError::NotPending { id: 7, status: Status::Denied })
        );
    }

    #[test]
    fn undecided_reviews_and_unused_approvals_expire() {
        let mut r = review(1);
        let late = r.expires_at_us;
        assert_eq!(r.status_at(late), Status::Expired);
        assert_eq!(
            r.approve(&who("bob", &["dba"]), None, late),
            Err(ReviewError::NotPending { id: 7, status: Status::Expired })
        );
        let mut r = review(1);
        r.approve(&who("bob", &["dba"]), None, 2_000).unwrap();
        assert_eq!(r.status_at(2_001), Status::Approved);
        assert_eq!(r.status_at(r.valid_until_us.unwrap()), Status::Expired);
    }

    #[test]
    fn access_grants_last_their_duration_and_can_be_revoked() {
        let mut r = NewReview {
            subject: Subject::Access { policy: "writer".into(), duration: Span::secs(60) },
            requester: "agent".into(),
            connection: "shop".into(),
            rule: "writer".into(),
            reason: "fix a row".into(),
            rules: ReviewRules { approvers: vec!["dba".into()], ..ReviewRules::default() },
        }
        .into_review(8, 0);
        assert!(!r.grants_access(1));
        r.approve(&who("bob", &["dba"]), None, 10).unwrap();
        assert!(r.grants_access(11));
        assert!(!r.grants_access(10 + 60_000_000));
        assert_eq!(r.revoke(&who("eve", &["agents"]), 12), Err(ReviewError::NotAllowedToRevoke(8)));
        r.revoke(&who("agent", &[]), 12).unwrap();
        assert!(!r.grants_access(13));
        assert_eq!(r.status, Status::Revoked);
    }

    #[test]
    fn statements_are_bound_by_their_exact_bytes() {
        assert_eq!(statement_hash("DELETE FROM t"), statement_hash("DELETE FROM t"));
        assert_ne!(statement_hash("DELETE FROM t"), statement_hash("DELETE FROM t "));
    }
}
