//! The one seam between a protocol adapter and the rest of the gateway. An adapter translates bytes
//! into calls on a `Gate` and applies what comes back; the binary provides the implementation that
//! ties configuration, policy and the store together.

use crate::advice::{Explanation, Permissions};
use crate::{Action, AuditEvent, AuthOutcome, Decision, Hold, Identity, Secret};
use std::future::Future;
use thiserror::Error;

/// What a client presented when it asked to open a session.
#[derive(Debug)]
pub struct OpenRequest<'a> {
    pub user: &'a str,
    pub secret: &'a Secret,
    /// The connection name the client asked for (the database name, for PostgreSQL).
    pub connection: &'a str,
    pub client_addr: &'a str,
}

/// A session the gateway agreed to open: who, where, and how to reach the upstream (`E` is the
/// adapter's own description of an upstream endpoint, including the held credential).
#[derive(Debug)]
pub struct Grant<E> {
    pub identity: Identity,
    pub connection: String,
    pub endpoint: E,
}

/// Why a session was not opened. The client is told only that authentication failed; the outcome
/// goes to the audit trail.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("authentication failed ({})", .0.as_str())]
    Auth(AuthOutcome),
    #[error("connection {connection:?} is misconfigured: {reason}")]
    Misconfigured { connection: String, reason: String },
    #[error("state store unavailable: {0}")]
    Store(String),
}

/// Session-wide context the adapter passes back on every decision.
#[derive(Clone, Copy, Debug)]
pub struct SessionInfo<'a> {
    pub session_id: &'a str,
    pub identity: &'a Identity,
    pub connection: &'a str,
    /// The client program as it names itself (PostgreSQL's `application_name`), when it does:
    /// lets a refusal give advice for that client.
    pub client_program: Option<&'a str>,
    /// The upstream session was opened read-only (`default_transaction_read_only=on`).
    pub upstream_read_only: bool,
    /// Whether the database may hold a column that a column rule in scope covers: `false` only
    /// where the adapter read its catalog and found none (see `Policy::decide_where`).
    pub masked_columns_here: bool,
}

/// Whether an open session may go on (see `Gate::session_standing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Valid,
    /// The credential it was opened with was revoked or has expired.
    CredentialEnded,
    /// It was opened with write access (an access grant, or a policy since changed) that it no
    /// longer has, and its upstream session is not read-only.
    AccessEnded,
}

pub trait Gate<E>: Send + Sync + 'static {
    /// Authenticates the caller and resolves the connection it asked for.
    fn open(&self, request: OpenRequest<'_>) -> impl Future<Output = Result<Grant<E>, OpenError>> + Send;

    /// Decides one action within an open session. May wait (a human review), hence the future.
    fn decide(&self, session: &SessionInfo<'_>, action: &Action<'_>) -> impl Future<Output = Decision> + Send;

    /// Waits for the review a `Decision::Hold` named and answers with what to do now: allow (the
    /// approval is used up), or refuse (denied, or not decided within the hold's timeout). Dropping
    /// the future stops the wait and leaves the review open.
    fn await_review(&self, session: &SessionInfo<'_>, hold: &Hold) -> impl Future<Output = Decision> + Send;

    /// Lets an adapter skip the policy for actions a session repeats. While this returns the
    /// same `Some(epoch)`, the gate's `Allow` for an action stays its answer for the same action
    /// in the same session, so an adapter may keep it: an allow decided between two calls that
    /// returned the same epoch may be given again whenever the call returns that epoch. `None`:
    /// keep nothing now.
    fn decision_epoch(&self, _session: &SessionInfo<'_>) -> Option<u64> {
        None
    }

    /// What the session's caller may do on its connection: rules, masking, reviews. For an agent
    /// that asks before acting.
    fn permissions(&self, session: &SessionInfo<'_>) -> Permissions;

    /// The decision `action` would get, without running it, opening a review or using an approval.
    fn explain(&self, session: &SessionInfo<'_>, action: &Action<'_>) -> Explanation;

    /// Whether the session may go on: not once the credential it was opened with has been
    /// revoked or has expired, nor once the write access its upstream session was opened with has
    /// ended. Adapters ask before relaying each batch of a client's messages and end the session
    /// when it is not `Valid`, whatever the messages are (a Bind of a statement prepared earlier as
    /// much as a new one).
    fn session_standing(&self, _session: &SessionInfo<'_>) -> Standing {
        Standing::Valid
    }

    /// Hands an event to the recorder. Must not block the caller.
    fn record(&self, event: AuditEvent);

    /// Whether adapters should build statement records at all.
    fn records_statements(&self) -> bool {
        true
    }
}
