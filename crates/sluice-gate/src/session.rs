//! The seam between an adapter and the engine: the adapter opens a session with what the client
//! presented, then asks the session object to decide each action, and hands it what became of them.

use crate::action::Action;
use crate::grant::{SessionGrant, Target};
use crate::outcome::Outcome;
use sluice_core::advice::{Explanation, Permissions};
use sluice_core::{AuthOutcome, Decision, Hold, Identity, Protocol, Secret};
use std::future::Future;
use std::sync::Arc;
use thiserror::Error;

/// The credential a client presented.
#[derive(Debug)]
pub enum Presented<'a> {
    /// A sluice token, with the identity the client says it belongs to.
    Token { user: &'a str, secret: &'a Secret },
    /// A sluice token alone (an HTTP bearer token): it names its identity itself.
    Bearer { secret: &'a Secret },
    /// A public key registered to the identity (`sluice identity add-key`), its possession
    /// proven to the adapter (an SSH signature): its SHA-256 fingerprint (`SHA256:…`).
    Key { user: &'a str, fingerprint: &'a str },
}

impl Presented<'_> {
    /// The name the client gave, for the record.
    pub fn user(&self) -> &str {
        match self {
            Presented::Token { user, .. } | Presented::Key { user, .. } => user,
            Presented::Bearer { .. } => "(bearer token)",
        }
    }
}

/// Where a client connects from and how.
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo<'a> {
    pub protocol: Protocol,
    pub addr: &'a str,
    pub tls: bool,
    /// The client program as it names itself (PostgreSQL's `application_name`), when it does:
    /// lets a refusal give advice for that client.
    pub program: Option<&'a str>,
}

/// A client asking to open a session on a target.
#[derive(Debug)]
pub struct OpenRequest<'a> {
    pub presented: Presented<'a>,
    /// The target's name (the database name, for PostgreSQL).
    pub target: &'a str,
    pub client: ClientInfo<'a>,
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
    /// The gateway takes no new sessions for now, for this reason (open sessions go on).
    #[error("new sessions are refused: {0}")]
    Refused(String),
}

/// Whether an open session may go on (see `SessionGate::standing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Valid,
    /// The credential it was opened with was revoked or has expired.
    CredentialEnded,
    /// It was opened with write access (an access grant, or a policy since changed) that it no
    /// longer has, and its upstream session is not read-only.
    AccessEnded,
}

/// The engine as an adapter sees it.
pub trait Gate: Send + Sync + 'static {
    type Session: SessionGate;

    /// Authenticates the caller and opens a session on the target it asked for. Every attempt is
    /// recorded, whatever its outcome.
    fn open(
        &self,
        request: OpenRequest<'_>,
    ) -> impl Future<Output = Result<(SessionGrant, Self::Session), OpenError>> + Send;

    /// The targets of `protocol` as configured now (a reload changes them): for an adapter that
    /// routes requests by something other than a target's name (HTTP: a path prefix, a host).
    fn targets(&self, protocol: Protocol) -> Vec<Target>;

    /// Whether a public key (its `SHA256:` fingerprint) is registered to some identity and can be
    /// used now: asked before a client proves it holds the key, so that one offering keys sluice
    /// does not know is told so at once (nothing is recorded: `open` records the attempt).
    fn key_usable(&self, fingerprint: &str) -> impl Future<Output = bool> + Send;
}

/// One open session. Owned by the adapter's task that reads the client: `&mut self` keeps the
/// session's own caches free of locks.
pub trait SessionGate: Send + Sync + 'static {
    type Log: SessionLog;

    /// The session's id, as the audit trail names it.
    fn id(&self) -> &Arc<str>;

    fn principal(&self) -> &Identity;

    /// The upstream could not be opened: recorded as such, and the session is over.
    fn upstream_failed(self);

    /// The upstream is open and the client was told: the session starts (and is recorded).
    fn started(&mut self);

    /// Decides one action. May wait (a review in wait mode), hence the future.
    fn decide(&mut self, action: &Action<'_>) -> impl Future<Output = Decision> + Send;

    /// Waits for the review a `Decision::Hold` named and answers with what to do now: allow (the
    /// approval is used up), or refuse (denied, or not decided within the hold's timeout). Dropping
    /// the future stops the wait and leaves the review open. The future borrows nothing: a session
    /// serving several requests at once (HTTP/2) decides others while one waits.
    fn await_review(&self, hold: &Hold) -> impl Future<Output = Decision> + Send + 'static;

    /// Lets an adapter keep a decision it built on an allow (a prepared statement bound again):
    /// while this returns the same `Some(epoch)`, an allow the session was given stands. `None`:
    /// keep nothing now.
    fn decision_epoch(&self) -> Option<u64>;

    /// Whether the session may go on: not once the credential it was opened with has been revoked
    /// or has expired, nor once the write access its upstream session was opened with has ended.
    /// Adapters ask before relaying each batch of a client's messages and end the session when it
    /// is not `Valid`, whatever the messages are.
    fn standing(&self) -> Standing;

    /// What the caller may do on the target: rules, masking, reviews. For an agent that asks
    /// before acting.
    fn permissions(&self) -> Permissions;

    /// The decision `action` would get, without running it, opening a review or using an approval.
    fn explain(&self, action: &Action<'_>) -> impl Future<Output = Explanation> + Send;

    /// Where the adapter's other task hands what became of the actions.
    fn log(&self) -> Self::Log;

    /// The session is over (and is recorded so, with `reason`).
    fn end(self, reason: String);
}

/// Takes what became of a session's actions. Cheap to clone; never blocks.
pub trait SessionLog: Clone + Send + Sync + 'static {
    /// Whether outcomes are recorded at all: when not, an adapter need not build them.
    fn records_outcomes(&self) -> bool;

    /// One action finished (`seq` counts the session's actions from 1).
    fn finish(&self, seq: u64, outcome: Outcome);

    /// How much of each action's result to keep for the record (`None`: none).
    fn result_excerpt(&self) -> Option<sluice_core::ExcerptLimits>;

    /// A stretch of an interactive terminal's recording, masked (see `AuditEvent::Terminal`):
    /// `terminal` is the action that opened it, `size` its columns and rows.
    fn terminal(&self, terminal: u64, size: (u32, u32), events: String);
}
