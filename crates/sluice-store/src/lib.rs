//! What sluice keeps, as traits: tokens, the credential vault, reviews (compare-and-swap plus a
//! watch for decisions) and the audit sink. The engine, approvals and the web API depend on these
//! only; `sluice-store-sqlite` implements them for the embedded store, and a PostgreSQL store for
//! several instances will implement them too. Sealing under the master key and private state files
//! live here because every store shares them.

pub mod private;
pub mod vault;

use async_trait::async_trait;
use serde::Serialize;
use sluice_audit::StoredRecord;
use sluice_core::review::{NewReview, Review, ReviewError, Status};
use sluice_core::{AuthOutcome, Identity, token};
use std::time::Duration;
use thiserror::Error;

pub use sluice_core::AuditSink;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The store could not be read or written (its driver's message).
    #[error("state store: {0}")]
    Unavailable(String),
    #[error("state store: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Vault(String),
    #[error("{0}")]
    NotFound(String),
    #[error("state store: a stored record cannot be read: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A minted token as stored: its secret only as a digest.
#[derive(Clone, Debug, Serialize)]
pub struct TokenRow {
    pub id: String,
    pub identity: String,
    pub groups: Vec<String>,
    #[serde(skip)]
    pub digest: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// Tokens, kept as digests.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    async fn insert_token(&self, token: &TokenRow) -> StoreResult<()>;
    async fn token(&self, id: &str) -> StoreResult<Option<TokenRow>>;
    /// Every token, oldest first.
    async fn tokens(&self) -> StoreResult<Vec<TokenRow>>;
    /// Marks a token revoked; false when no such token exists.
    async fn revoke_token(&self, id: &str, at_us: i64) -> StoreResult<bool>;
    async fn touch_token(&self, id: &str, at_us: i64) -> StoreResult<()>;
    /// The ids of tokens that can no longer be used at `now_us`: revoked, or past their expiry.
    async fn unusable_tokens(&self, now_us: i64) -> StoreResult<Vec<String>>;

    /// The identity a presented token proves, or why it proves none (with the token id when the
    /// token exists, for the audit trail). A store that cannot be read is `StoreUnavailable`,
    /// never a bad token.
    async fn identify(&self, presented: &str) -> Result<Identity, (AuthOutcome, Option<String>)> {
        let Some((id, secret)) = token::parse(presented) else {
            return Err((AuthOutcome::Malformed, None));
        };
        let row = match self.token(id).await {
            Ok(Some(row)) => row,
            Ok(None) => return Err((AuthOutcome::UnknownToken, None)),
            Err(e) => {
                tracing::error!(error = %e, "token lookup failed");
                return Err((AuthOutcome::StoreUnavailable, None));
            }
        };
        let known = Some(row.id.clone());
        if !token::verify(secret, &row.digest) {
            return Err((AuthOutcome::UnknownToken, known));
        }
        if row.revoked_at.is_some() {
            return Err((AuthOutcome::RevokedToken, known));
        }
        if row.expires_at.is_some_and(|at| at <= sluice_core::audit::now_us()) {
            return Err((AuthOutcome::ExpiredToken, known));
        }
        Ok(Identity { name: row.identity, groups: row.groups, credential_id: row.id })
    }

    /// The identity a public key registered to it proves (`fingerprint`: `SHA256:…`), or why it
    /// proves none, as `identify` says for tokens.
    async fn identify_key(&self, fingerprint: &str) -> Result<Identity, (AuthOutcome, Option<String>)> {
        let digest = token::key_digest(fingerprint);
        let rows = match self.tokens().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "key lookup failed");
                return Err((AuthOutcome::StoreUnavailable, None));
            }
        };
        // The newest registration of the key decides (an older one may have been revoked).
        let Some(row) = rows.into_iter().rev().find(|r| r.digest == digest) else {
            return Err((AuthOutcome::UnknownToken, None));
        };
        let known = Some(row.id.clone());
        if row.revoked_at.is_some() {
            return Err((AuthOutcome::RevokedToken, known));
        }
        if row.expires_at.is_some_and(|at| at <= sluice_core::audit::now_us()) {
            return Err((AuthOutcome::ExpiredToken, known));
        }
        Ok(Identity { name: row.identity, groups: row.groups, credential_id: row.id })
    }
}

/// Held credentials, sealed under the master key (`vault::MasterKey`) by the caller: the store
/// only ever sees ciphertext.
#[async_trait]
pub trait CredentialVault: Send + Sync + 'static {
    /// Stores (or replaces) the sealed credential of a target.
    async fn put_credential(&self, target: &str, nonce: &[u8], sealed: &[u8], at_us: i64) -> StoreResult<()>;
    /// The sealed credential of a target as (nonce, sealed bytes).
    async fn credential(&self, target: &str) -> StoreResult<Option<(Vec<u8>, Vec<u8>)>>;
    /// False when the target had none.
    async fn delete_credential(&self, target: &str) -> StoreResult<bool>;
}

/// Which reviews to list.
#[derive(Clone, Debug, Default)]
pub struct ReviewFilter {
    /// As of now (a pending review past its expiry counts as expired).
    pub status: Option<Status>,
    /// `statement` or `access`.
    pub kind: Option<String>,
    pub requester: Option<String>,
    pub limit: i64,
}

/// One transition of a review.
#[derive(Clone, Debug, Serialize)]
pub struct ReviewEvent {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub comment: Option<String>,
}

/// Reviews and access grants, with every transition as an event. Every change is a
/// compare-and-swap on a version, so two approvers (or two sessions using one approval) can never
/// both win; `update_review` runs the read-change-swap loop.
#[async_trait]
pub trait ReviewStore: Send + Sync + 'static {
    /// Creates a review and its `requested` event.
    async fn insert_review(&self, new: NewReview, now_us: i64) -> StoreResult<Review>;
    async fn review(&self, id: i64) -> StoreResult<Option<Review>>;
    /// A review with the version its next swap must name.
    async fn versioned_review(&self, id: i64) -> StoreResult<Option<(Review, i64)>>;
    /// Stores `review` over `version` together with `event`, unless another writer changed it
    /// since (then nothing is stored and the answer is false).
    async fn swap_review(&self, review: &Review, version: i64, event: &ReviewEvent) -> StoreResult<bool>;
    /// Reviews newest first, their status judged as of `now_us`.
    async fn reviews(&self, filter: &ReviewFilter, now_us: i64) -> StoreResult<Vec<Review>>;
    /// Reviews of this exact statement by this requester on this target that are still pending
    /// or approved (newest first), for reuse and for running an approval.
    async fn open_reviews_of(&self, requester: &str, target: &str, hash: &str, now_us: i64)
    -> StoreResult<Vec<Review>>;
    /// Access grants approved and not yet over.
    async fn active_grants(&self, now_us: i64) -> StoreResult<Vec<Review>>;
    /// Records a transition that does not change the review itself (a wait that timed out).
    async fn add_review_event(&self, id: i64, event: &ReviewEvent) -> StoreResult<()>;
    async fn review_events(&self, id: i64) -> StoreResult<Vec<ReviewEvent>>;
    /// Returns once review `id` has changed since this call began, or `within` has passed,
    /// whichever is first (SQLite looks periodically; a PostgreSQL store will LISTEN).
    /// Decisions made in this process reach waiting sessions sooner, through `sluice-approvals`.
    async fn watch_review(&self, id: i64, within: Duration) -> StoreResult<()>;
}

/// The audit log as its exports read it: records in order from a sequence number, and each
/// sink's cursor (the last record it has delivered), kept with the log so that a restart resumes
/// every sink where it stopped.
#[async_trait]
pub trait AuditExportStore: Send + Sync + 'static {
    /// Up to `limit` records from sequence number `from` on, in order.
    async fn audit_records(&self, from: u64, limit: u64) -> StoreResult<Vec<StoredRecord>>;
    /// The sequence numbers of the oldest record kept (retention drops older ones) and of the
    /// newest, in one read (`(0, 0)`: none yet).
    async fn audit_bounds(&self) -> StoreResult<(u64, u64)>;
    /// The last record `sink` delivered (0: none yet).
    async fn export_cursor(&self, sink: &str) -> StoreResult<u64>;
    async fn set_export_cursor(&self, sink: &str, seq: u64, now_us: i64) -> StoreResult<()>;
    /// Changes when records are appended by this process (its value: the newest sequence number
    /// it appended); records appended by another process are found by asking `audit_bounds`.
    fn appended(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Changes of one review are retried this often when another writer got there first.
const CAS_ATTEMPTS: usize = 8;

/// Applies `change` to review `id` and stores the result with the event it names, unless another
/// writer changed the review first (then it is read again and `change` retried). The inner error
/// is the state machine's refusal; nothing is stored then.
pub async fn update_review<T>(
    store: &dyn ReviewStore,
    id: i64,
    actor: &str,
    now_us: i64,
    mut change: impl FnMut(&mut Review) -> Result<(T, &'static str, Option<String>), ReviewError>,
) -> StoreResult<Result<(T, Review), ReviewError>> {
    for _ in 0..CAS_ATTEMPTS {
        let (mut review, version) = store
            .versioned_review(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("there is no review #{id}")))?;
        let (value, action, comment) = match change(&mut review) {
            Ok(done) => done,
            Err(e) => return Ok(Err(e)),
        };
        let event = ReviewEvent { at: now_us, actor: actor.to_string(), action: action.to_string(), comment };
        if store.swap_review(&review, version, &event).await? {
            return Ok(Ok((value, review)));
        }
    }
    Err(StoreError::Corrupt(format!("review #{id} kept changing under us; try again")))
}
