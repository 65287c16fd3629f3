//! Reviews in motion: turning a policy's `review` into a held statement or a refusal that names
//! the review, using an approval exactly once, deciding reviews for the API, and the just-in-time
//! access grants that switch an identity to a more permissive policy for a while. The state
//! machine is `sluice_core::review`; everything durable is in the store.

mod access;
mod grants;
mod notify;
mod waiters;

pub use access::AccessPolicy;
pub use grants::ActiveGrant;
pub use notify::Notifier;

use grants::Grants;
use sluice_core::audit::now_us;
use sluice_core::review::{
    NewReview, Outcome, Review, ReviewError, ReviewMode, ReviewRules, SAME_STATEMENT, Status, Subject, statement_hash,
};
use sluice_core::span::Span;
use sluice_core::{AuditEvent, AuditRecord, AuditSink, Decision, Hold, Identity, Principal, Refusal, RefusalCause};
use sluice_store::{ReviewEvent, ReviewFilter, ReviewStore, StoreError, update_review};
use std::sync::Arc;
use thiserror::Error;
use waiters::Waiters;

#[derive(Debug, Error)]
pub enum ApprovalError {
    #[error("there is no review #{0}")]
    NotFound(i64),
    #[error(transparent)]
    Refused(#[from] ReviewError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooMany(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reviews and grants, shared by the gateway (which asks and waits) and the API (which decides).
pub struct Approvals {
    store: Arc<dyn ReviewStore>,
    access: Vec<AccessPolicy>,
    waiters: Arc<Waiters>,
    grants: Grants,
    notifier: Notifier,
    /// Where every transition of a review is recorded (the store keeps them with the review too).
    audit: Arc<dyn AuditSink>,
    /// When each identity last asked for access, newest last (see `ACCESS_REQUESTS_PER_WINDOW`).
    asked: parking_lot::Mutex<std::collections::HashMap<String, std::collections::VecDeque<std::time::Instant>>>,
}

/// The longest reason or comment a person may write (characters): an approver reads it whole.
pub const MAX_TEXT_CHARS: usize = 2000;

/// How many access requests one identity may make in `ACCESS_REQUEST_WINDOW`: enough for honest
/// retries, too few to bury approvers.
pub const ACCESS_REQUESTS_PER_WINDOW: usize = 10;
pub const ACCESS_REQUEST_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// Refuses a text longer than `MAX_TEXT_CHARS`.
fn bounded(what: &str, text: &str) -> Result<(), ApprovalError> {
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(ApprovalError::Invalid(format!(
            "the {what} is {chars} characters long; write at most {MAX_TEXT_CHARS} (link to details instead)"
        )));
    }
    Ok(())
}

/// The statement a review was asked for, and where it came from.
pub struct StatementReview<'a> {
    pub identity: &'a Identity,
    pub connection: &'a str,
    pub session_id: &'a str,
    pub text: &'a str,
    /// The statement as its protocol's parser reads it (for SQL: the same tokens, whatever the
    /// spacing, comments, trailing semicolons or keyword case): what an approval is bound to.
    pub canonical: &'a str,
    /// It takes bound parameters (`$1`): an approval of its text would not say what runs.
    pub parameters: bool,
    /// The client program as it names itself, for advice that fits it.
    pub client_program: Option<&'a str>,
    /// The policy's refusal: rule, reason, what matched.
    pub refusal: &'a Refusal,
    pub rules: &'a ReviewRules,
}

impl Approvals {
    /// Loads the grants in force from the store.
    pub async fn new(
        store: Arc<dyn ReviewStore>,
        access: Vec<AccessPolicy>,
        notifier: Notifier,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Approvals, StoreError> {
        let grants = Grants::default();
        let now = now_us();
        grants.reset(grants.generation(), &store.active_grants(now).await?, now);
        Ok(Approvals {
            store,
            access,
            waiters: Arc::new(Waiters::default()),
            grants,
            notifier,
            audit,
            asked: parking_lot::Mutex::default(),
        })
    }

    /// Reloads the grants in force from the store (grants decided by another instance, and
    /// grants run out), so that the in-memory set never lags the store by more than one call.
    pub async fn refresh_grants(&self) -> Result<(), StoreError> {
        let generation = self.grants.generation();
        let now = now_us();
        let active = self.store.active_grants(now).await?;
        self.grants.reset(generation, &active, now);
        Ok(())
    }

    pub fn access_policies(&self) -> &[AccessPolicy] {
        &self.access
    }

    pub fn access_policy(&self, name: &str) -> Option<&AccessPolicy> {
        self.access.iter().find(|a| a.name == name)
    }

    /// A number that changes whenever the set of grants does.
    pub fn grants_generation(&self) -> u64 {
        self.grants.generation()
    }

    /// The access grant in force for `identity` on `connection`, with its compiled policy.
    pub fn grant_for(&self, identity: &Identity, connection: &str) -> Option<(ActiveGrant, &AccessPolicy)> {
        if !self.grants.any() {
            return None;
        }
        let grant = self.grants.find(identity, connection, now_us())?;
        let policy = self.access_policy(&grant.policy)?;
        Some((grant, policy))
    }

    /// What happens to a statement the policy sent to review: an approved review of the exact
    /// statement is used up and the statement runs; otherwise the open review (or a new one) is
    /// named in a refusal (`retry`) or the statement is held (`wait`).
    pub async fn review_statement(&self, ask: StatementReview<'_>) -> Decision {
        match self.try_review_statement(&ask).await {
            Ok(decision) => decision,
            Err(e) => {
                tracing::error!(error = %e, "review store unavailable; refusing the statement");
                Decision::Deny(Refusal {
                    rule: ask.refusal.rule.clone(),
                    reason: format!(
                        "{} — and sluice cannot reach its review store to ask for approval",
                        ask.refusal.reason
                    ),
                    detail: Some(e.to_string()),
                    hint: Some(
                        "try again in a moment; if it persists, tell an operator (sluice's state store is failing)"
                            .into(),
                    ),
                    cause: RefusalCause::Policy,
                })
            }
        }
    }

    async fn try_review_statement(&self, ask: &StatementReview<'_>) -> Result<Decision, ApprovalError> {
        if ask.parameters {
            return Ok(Decision::Deny(Refusal {
                rule: ask.refusal.rule.clone(),
                reason: format!(
                    "{} — and a statement under review must carry its values in its text: it has $n parameters",
                    ask.refusal.reason
                ),
                detail: ask.refusal.detail.clone(),
                hint: Some(values_in_text_hint(ask.client_program)),
                cause: RefusalCause::Policy,
            }));
        }
        let now = now_us();
        let hash = statement_hash(ask.canonical);
        let open = self.store.open_reviews_of(&ask.identity.name, ask.connection, &hash, now).await?;
        // Oldest approval first: it runs out first.
        for review in open.iter().rev().filter(|r| r.status_at(now) == Status::Approved) {
            if self.consume(review.id, ask.session_id).await?.is_some() {
                return Ok(approved(review));
            }
        }
        let (review, asked_before) = match open.into_iter().find(|r| r.status_at(now) == Status::Pending) {
            Some(review) => (review, true),
            None => {
                let new = NewReview {
                    subject: Subject::Statement { text: ask.text.to_string(), hash },
                    requester: ask.identity.name.clone(),
                    connection: ask.connection.to_string(),
                    rule: ask.refusal.rule.clone(),
                    reason: ask.refusal.reason.clone(),
                    rules: ask.rules.clone(),
                };
                (self.request(new, now, ask.identity, Some(ask.session_id)).await?, false)
            }
        };
        let state = match asked_before {
            false => "requested (pending approval)".to_string(),
            true => {
                let waited = u64::try_from((now - review.created_at_us) / 1_000_000).unwrap_or(0);
                format!("still pending (requested {} ago)", Span::secs(waited))
            }
        };
        Ok(match review.mode {
            ReviewMode::Retry => Decision::Review(self.pending_refusal(&review, ask.refusal, &state)),
            ReviewMode::Wait => Decision::Hold(Hold {
                review_id: review.id,
                rule: review.rule.clone(),
                notice: format!(
                    "sluice: review #{} {state} under rule \"{}\" ({}); holding the statement for up to {}",
                    review.id, review.rule, review.reason, ask.rules.timeout
                ),
                hint: format!(
                    "a member of {} approves with `sluice review approve {}` ({}); cancel the query to stop waiting",
                    groups(&review.approvers),
                    review.id,
                    self.notifier.review_url(review.id)
                ),
                timeout: ask.rules.timeout.0,
            }),
        })
    }

    /// The refusal of a statement whose review is pending, with the next step.
    fn pending_refusal(&self, review: &Review, refusal: &Refusal, state: &str) -> Refusal {
        let quorum = match review.approvals_needed {
            1 => String::new(),
            n => format!(" ({n} approvals needed, {} so far)", review.votes.len()),
        };
        Refusal {
            rule: review.rule.clone(),
            reason: format!("{} — review #{} {state}{quorum}", review.reason, review.id),
            detail: refusal.detail.clone(),
            hint: Some(format!(
                "ask a member of {} to approve review #{} (`sluice review approve {}`, or {}); then re-run \
                 {SAME_STATEMENT} on this connection: it runs once, within {} of the approval",
                groups(&review.approvers),
                review.id,
                review.id,
                self.notifier.review_url(review.id),
                review.valid_for
            )),
            cause: RefusalCause::Pending { review_id: review.id },
        }
    }

    /// Uses up an approved statement review for `session_id`; `None` when it is no longer
    /// approved (another session used it, it ran out).
    async fn consume(&self, id: i64, session_id: &str) -> Result<Option<Review>, ApprovalError> {
        let now = now_us();
        let used = self
            .transition(id, None, Some(session_id), now, |r| {
                let status = r.status_at(now);
                if status != Status::Approved || !matches!(r.subject, Subject::Statement { .. }) {
                    return Err(ReviewError::NotPending { id: r.id, status });
                }
                r.status = Status::Consumed;
                r.ended_at_us = Some(now);
                r.ended_by = Some(session_id.to_string());
                Ok(((), "ran", None))
            })
            .await?;
        Ok(used.ok().map(|((), review)| review))
    }

    /// Waits for the review a hold named; see `Gate::await_review`.
    pub async fn await_review(&self, session_id: &str, hold: &Hold) -> Decision {
        let mut waiting = self.waiters.watch(hold.review_id);
        let deadline = tokio::time::Instant::now() + hold.timeout;
        // A decision made in this process wakes the wait at once; one made elsewhere (another
        // instance on the same store, or this one before a restart) is seen at the next look.
        let decided = loop {
            match self.store.review(hold.review_id).await {
                Ok(Some(review)) if review.status_at(now_us()) != Status::Pending => break review,
                Ok(Some(_)) => {}
                Ok(None) => return store_failure(hold, "the review is no longer in the store"),
                Err(e) => return store_failure(hold, &e.to_string()),
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return self.timed_out(session_id, hold).await;
            }
            tokio::select! {
                woken = waiting.rx.changed() => match woken {
                    Ok(()) => {
                        let woken = waiting.rx.borrow_and_update().clone();
                        if let Some(review) = woken {
                            break review;
                        }
                    }
                    Err(_) => return store_failure(hold, "the review registry closed"),
                },
                watched = self.store.watch_review(hold.review_id, left) => {
                    if let Err(e) = watched {
                        return store_failure(hold, &e.to_string());
                    }
                }
            }
        };
        drop(waiting);
        let now = now_us();
        match decided.status_at(now) {
            Status::Approved => match self.consume(decided.id, session_id).await {
                Ok(Some(_)) => approved(&decided),
                Ok(None) => Decision::Deny(self.ended(&decided, "its approval was already used by another session")),
                Err(e) => store_failure(hold, &e.to_string()),
            },
            Status::Denied => Decision::Deny(Refusal {
                rule: decided.rule.clone(),
                reason: format!(
                    "review #{} was denied by {}: {}",
                    decided.id,
                    decided.denied_by.as_deref().unwrap_or("an approver"),
                    decided.denial_reason.as_deref().unwrap_or("no reason given")
                ),
                detail: None,
                hint: Some("do not retry the same statement; address the reason, or ask the approver".into()),
                cause: RefusalCause::Policy,
            }),
            status => Decision::Deny(self.ended(&decided, &format!("it is {status}"))),
        }
    }

    fn ended(&self, review: &Review, why: &str) -> Refusal {
        Refusal {
            rule: review.rule.clone(),
            reason: format!("review #{} cannot release this statement: {why}", review.id),
            detail: None,
            hint: Some("re-run the statement to ask for a new review".into()),
            cause: RefusalCause::Policy,
        }
    }

    async fn timed_out(&self, session_id: &str, hold: &Hold) -> Decision {
        let note = format!("stopped waiting after {}", Span(hold.timeout));
        let event = ReviewEvent {
            at: now_us(),
            actor: session_id.to_string(),
            action: "wait-timed-out".into(),
            comment: Some(note.clone()),
        };
        if let Err(e) = self.store.add_review_event(hold.review_id, &event).await {
            tracing::warn!(error = %e, review = hold.review_id, "could not record a wait that timed out");
        }
        let review = self.store.review(hold.review_id).await;
        if let Ok(Some(review)) = &review {
            self.recorded(review, None, Some(session_id), "wait-timed-out", Some(note));
        }
        let expires = match review {
            Ok(Some(r)) => format!(" (it stays open until it expires, {} after it was requested)", expires_after(&r)),
            _ => String::new(),
        };
        Decision::Deny(Refusal {
            rule: hold.rule.clone(),
            reason: format!("review #{} was not decided within {}{expires}", hold.review_id, Span(hold.timeout)),
            detail: None,
            hint: Some(format!(
                "once review #{} is approved, re-run {SAME_STATEMENT}: it runs once without waiting",
                hold.review_id
            )),
            cause: RefusalCause::Policy,
        })
    }

    /// Approves review `id` as `who`; a statement held for it is released when the quorum is met.
    pub async fn approve(
        &self,
        who: &Identity,
        id: i64,
        comment: Option<String>,
    ) -> Result<(Outcome, Review), ApprovalError> {
        bounded("comment", comment.as_deref().unwrap_or_default())?;
        let now = now_us();
        let (outcome, review) = self
            .transition(id, Some(who), None, now, |r| {
                let outcome = r.approve(who, comment.clone(), now)?;
                let action = if outcome == Outcome::Approved { "approved" } else { "approval-counted" };
                Ok((outcome, action, comment.clone()))
            })
            .await
            .map_err(|e| not_found(id, e))??;
        if outcome == Outcome::Approved {
            self.decided(&review, "approved", &who.name, now);
        }
        Ok((outcome, review))
    }

    pub async fn deny(&self, who: &Identity, id: i64, reason: &str) -> Result<Review, ApprovalError> {
        bounded("reason", reason)?;
        let now = now_us();
        let ((), review) = self
            .transition(id, Some(who), None, now, |r| {
                r.deny(who, reason, now)?;
                Ok(((), "denied", Some(reason.to_string())))
            })
            .await
            .map_err(|e| not_found(id, e))??;
        self.decided(&review, "denied", &who.name, now);
        Ok(review)
    }

    /// Ends an access grant early (or withdraws a pending access request).
    pub async fn revoke(&self, who: &Identity, id: i64) -> Result<Review, ApprovalError> {
        let now = now_us();
        let ((), review) = self
            .transition(id, Some(who), None, now, |r| {
                r.revoke(who, now)?;
                Ok(((), "revoked", None))
            })
            .await
            .map_err(|e| not_found(id, e))??;
        self.decided(&review, "revoked", &who.name, now);
        Ok(review)
    }

    /// Stores a new review asked for by `who` (in `session`, for a statement), records and
    /// announces it.
    async fn request(
        &self,
        new: NewReview,
        now: i64,
        who: &Identity,
        session: Option<&str>,
    ) -> Result<Review, StoreError> {
        let review = self.store.insert_review(new, now).await?;
        self.recorded(&review, Some(who), session, "requested", Some(review.reason.clone()));
        tracing::info!(review = review.id, requester = %review.requester, rule = %review.rule, kind = review.subject.kind(), "review requested");
        self.notifier.send("requested", &review, &who.name);
        Ok(review)
    }

    /// Applies `change` to review `id` as `actor` (`None`: a session of the requester's, named
    /// `session`), through the store's compare-and-swap (`sluice_store::update_review`), and
    /// records the transition.
    async fn transition<T>(
        &self,
        id: i64,
        actor: Option<&Identity>,
        session: Option<&str>,
        now: i64,
        mut change: impl FnMut(&mut Review) -> Result<(T, &'static str, Option<String>), ReviewError>,
    ) -> Result<Result<(T, Review), ReviewError>, StoreError> {
        let mut made = None;
        let name = actor.map_or_else(|| session.unwrap_or("sluice"), |who| who.name.as_str());
        let changed = update_review(&*self.store, id, name, now, |r| {
            let (value, action, comment) = change(r)?;
            made = Some((action, comment.clone()));
            Ok((value, action, comment))
        })
        .await?;
        if let (Ok((_, review)), Some((action, comment))) = (&changed, made) {
            self.recorded(review, actor, session, action, comment);
        }
        Ok(changed)
    }

    /// The audit record of a review's transition: by `actor`, or (`None`) by a session of the
    /// review's requester.
    fn recorded(
        &self,
        review: &Review,
        actor: Option<&Identity>,
        session: Option<&str>,
        transition: &str,
        comment: Option<String>,
    ) {
        let principal = match actor {
            Some(who) => Principal::new(&who.name, Some(who.credential_id.clone())),
            None => Principal::new(&review.requester, None),
        };
        let event = AuditEvent::Review { review_id: review.id, transition: transition.to_string(), comment };
        self.audit.record(AuditRecord::now(principal, session.map(Arc::from), event));
    }

    fn decided(&self, review: &Review, event: &'static str, actor: &str, now: i64) {
        tracing::info!(review = review.id, actor, "review {event}");
        self.waiters.decided(review);
        if matches!(review.subject, Subject::Access { .. }) {
            self.grants.update(review, now);
        }
        self.notifier.send(event, review, actor);
    }

    /// Asks for access under an access policy on a connection for `duration`.
    /// Counts an access request against the identity's allowance (in this process).
    fn count_access_request(&self, who: &Identity) -> Result<(), ApprovalError> {
        let now = std::time::Instant::now();
        let mut asked = self.asked.lock();
        asked.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < ACCESS_REQUEST_WINDOW));
        let times = asked.entry(who.name.clone()).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= ACCESS_REQUEST_WINDOW) {
            times.pop_front();
        }
        if times.len() >= ACCESS_REQUESTS_PER_WINDOW {
            let wait = times.front().map_or(ACCESS_REQUEST_WINDOW, |t| ACCESS_REQUEST_WINDOW - now.duration_since(*t));
            return Err(ApprovalError::TooMany(format!(
                "{} made {ACCESS_REQUESTS_PER_WINDOW} access requests in the last {} minutes; try again in {} s, \
                 or ask an approver about the requests already open",
                who.name,
                ACCESS_REQUEST_WINDOW.as_secs() / 60,
                wait.as_secs() + 1
            )));
        }
        times.push_back(now);
        Ok(())
    }

    pub async fn request_access(
        &self,
        who: &Identity,
        connection: &str,
        policy: Option<&str>,
        duration: Span,
        reason: &str,
    ) -> Result<Review, ApprovalError> {
        if reason.trim().is_empty() {
            return Err(ApprovalError::Invalid("say why you need the access (--reason)".into()));
        }
        bounded("reason", reason)?;
        let usable: Vec<&AccessPolicy> = self.access.iter().filter(|a| a.scope.contains(who, connection)).collect();
        let chosen = match policy {
            Some(name) => match self.access_policy(name) {
                None => {
                    return Err(ApprovalError::Invalid(format!(
                        "there is no access policy {name:?}{}",
                        choices(&usable)
                    )));
                }
                Some(a) if !a.scope.contains(who, connection) => {
                    return Err(ApprovalError::Invalid(format!(
                        "access policy {name:?} cannot be granted to {:?} on connection {connection:?}{}",
                        who.name,
                        choices(&usable)
                    )));
                }
                Some(a) => a,
            },
            None => match usable.as_slice() {
                [only] => *only,
                [] => {
                    return Err(ApprovalError::Invalid(format!(
                        "no access policy can be granted to {:?} on connection {connection:?}; an operator defines them \
                         under [[access.policies]]",
                        who.name
                    )));
                }
                _ => {
                    return Err(ApprovalError::Invalid(format!(
                        "name the access policy (--policy){}",
                        choices(&usable)
                    )));
                }
            },
        };
        if duration.0.is_zero() || duration > chosen.max_duration {
            return Err(ApprovalError::Invalid(format!(
                "access policy {:?} can be granted for up to {}",
                chosen.name, chosen.max_duration
            )));
        }
        self.count_access_request(who)?;
        let new = NewReview {
            subject: Subject::Access { policy: chosen.name.clone(), duration },
            requester: who.name.clone(),
            connection: connection.to_string(),
            rule: chosen.name.clone(),
            reason: reason.to_string(),
            rules: chosen.review.clone(),
        };
        Ok(self.request(new, now_us(), who, None).await?)
    }

    pub async fn list(&self, filter: &ReviewFilter) -> Result<Vec<Review>, ApprovalError> {
        Ok(self.store.reviews(filter, now_us()).await?)
    }

    pub async fn show(&self, id: i64) -> Result<(Review, Vec<ReviewEvent>), ApprovalError> {
        let review = self.store.review(id).await?.ok_or(ApprovalError::NotFound(id))?;
        let events = self.store.review_events(id).await?;
        Ok((review, events))
    }

    /// How many sessions hold a statement for review `id` right now.
    pub fn holding(&self, id: i64) -> usize {
        self.waiters.holding(id)
    }

    pub fn review_url(&self, id: i64) -> String {
        self.notifier.review_url(id)
    }

    /// Statement text as a caller who may not see it exactly gets it (masked like a recording).
    pub fn masked(&self, text: &str) -> String {
        self.notifier.masked(text)
    }
}

/// The decision for a statement whose approval was just used up.
fn approved(review: &Review) -> Decision {
    Decision::Approved { rule: Arc::from(format!("{} (review #{})", review.rule, review.id)), review_id: review.id }
}

fn not_found(id: i64, e: StoreError) -> ApprovalError {
    match e {
        StoreError::NotFound(_) => ApprovalError::NotFound(id),
        e => ApprovalError::Store(e),
    }
}

fn store_failure(hold: &Hold, why: &str) -> Decision {
    Decision::Deny(Refusal {
        rule: hold.rule.clone(),
        reason: format!("sluice lost track of review #{} while holding the statement", hold.review_id),
        detail: Some(why.to_string()),
        hint: Some(format!("once review #{} is approved, re-run {SAME_STATEMENT}", hold.review_id)),
        cause: RefusalCause::Policy,
    })
}

fn expires_after(review: &Review) -> Span {
    Span::secs(u64::try_from((review.expires_at_us - review.created_at_us) / 1_000_000).unwrap_or(0))
}

fn groups(list: &[String]) -> String {
    match list {
        [one] => format!("group \"{one}\""),
        many => format!("groups {}", many.iter().map(|g| format!("\"{g}\"")).collect::<Vec<_>>().join(" or ")),
    }
}

fn choices(usable: &[&AccessPolicy]) -> String {
    if usable.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = usable.iter().map(|a| a.name.as_str()).collect();
    format!(" (you can ask for: {})", names.join(", "))
}

/// The next step for a statement under review that carries `$n` parameters: the general fix, and
/// the way to do it in the client when the client names itself.
fn values_in_text_hint(client_program: Option<&str>) -> String {
    let general = "send it with its values written in the SQL text instead of $1 placeholders, so the approver \
                   sees exactly what will run";
    let program = client_program.unwrap_or_default().to_ascii_lowercase();
    let specific = [
        ("postgresql jdbc", "with pgjdbc: a java.sql.Statement, or preferQueryMode=simple on the connection"),
        ("psycopg", "with psycopg 3: a ClientCursor (conn.cursor(psycopg.ClientCursor)), which quotes the values into the text"),
        ("asyncpg", "asyncpg always sends parameters separately: run this one statement through psql or a driver with client-side binding"),
        ("node-postgres", "with node-postgres: build the text with client.escapeLiteral() for each value"),
        ("psql", "in psql: write the values in the statement instead of using \\bind"),
    ]
    .into_iter()
    .find(|(name, _)| program.starts_with(name));
    match specific {
        Some((_, how)) => format!("{general}; {how}"),
        None => format!("{general} (most drivers have a mode that binds values on the client side)"),
    }
}
