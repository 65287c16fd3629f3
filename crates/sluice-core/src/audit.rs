//! Everything the gateway records: authentication attempts, sessions and the statements in them.
//! Events are plain data; the store decides how to keep them.

use crate::Protocol;
use serde::Serialize;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthOutcome {
    Success,
    UnknownToken,
    RevokedToken,
    ExpiredToken,
    IdentityMismatch,
    Malformed,
    UnknownConnection,
    NotPermitted,
    /// Authenticated, but the upstream could not be opened.
    UpstreamUnavailable,
    /// The state store could not be read, so the credential could not be checked.
    StoreUnavailable,
    /// Authenticated, but the target's held credential cannot be had (see the gateway's log).
    TargetMisconfigured,
}

impl AuthOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthOutcome::Success => "success",
            AuthOutcome::UnknownToken => "unknown_token",
            AuthOutcome::RevokedToken => "revoked_token",
            AuthOutcome::ExpiredToken => "expired_token",
            AuthOutcome::IdentityMismatch => "identity_mismatch",
            AuthOutcome::Malformed => "malformed",
            AuthOutcome::UnknownConnection => "unknown_connection",
            AuthOutcome::NotPermitted => "not_permitted",
            AuthOutcome::UpstreamUnavailable => "upstream_unavailable",
            AuthOutcome::StoreUnavailable => "store_unavailable",
            AuthOutcome::TargetMisconfigured => "target_misconfigured",
        }
    }
}

/// One finished statement. Times are microseconds since the Unix epoch.
#[derive(Clone, Debug, Serialize)]
pub struct StatementRecord {
    pub session_id: Arc<str>,
    pub seq: u64,
    /// `simple` (Query message) or `extended` (Parse/Bind/Execute).
    pub path: &'static str,
    pub text: Arc<str>,
    pub started_at_us: i64,
    pub duration_us: i64,
    pub rows: u64,
    /// The command tag (`SELECT 3`, `INSERT 0 1`) of the last completed command.
    pub tag: Option<Arc<str>>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// What the gateway decided: `allow`, `deny` or `review`.
    pub decision: &'static str,
    /// The rule that decided (`default` when none matched).
    pub rule: Option<Arc<str>>,
}

impl StatementRecord {
    /// The deciding rule when the gateway refused the statement.
    pub fn refused_by(&self) -> Option<&str> {
        (self.decision != "allow").then_some(self.rule.as_deref()).flatten()
    }
}

/// What an operator or a caller did to sluice itself rather than through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminAction {
    TokenMinted,
    TokenRevoked,
    CredentialSet,
    CredentialDeleted,
    /// A call of the REST API whose token proved nothing.
    ApiAuthenticationFailed,
}

impl AdminAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::TokenMinted => "token-minted",
            AdminAction::TokenRevoked => "token-revoked",
            AdminAction::CredentialSet => "credential-set",
            AdminAction::CredentialDeleted => "credential-deleted",
            AdminAction::ApiAuthenticationFailed => "api-authentication-failed",
        }
    }
}

/// One administrative event. Times are microseconds since the Unix epoch.
#[derive(Clone, Debug, Serialize)]
pub struct AdminRecord {
    pub at_us: i64,
    /// Who did it: `cli:<os user>` for the command line, an identity for the API, `unknown` for
    /// a caller that proved none.
    pub actor: String,
    pub action: AdminAction,
    /// What it was done to: a token id, a connection, an API path.
    pub subject: String,
    /// Anything else worth keeping (the identity a token was minted for, why a call was refused);
    /// never a secret.
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    Auth {
        at_us: i64,
        protocol: Protocol,
        client_addr: String,
        user: String,
        connection: String,
        outcome: AuthOutcome,
        credential_id: Option<String>,
    },
    SessionStarted {
        session_id: String,
        at_us: i64,
        protocol: Protocol,
        identity: String,
        credential_id: String,
        connection: String,
        client_addr: String,
        client_tls: bool,
        application_name: Option<String>,
    },
    SessionEnded {
        session_id: String,
        at_us: i64,
        reason: String,
    },
    Statement(StatementRecord),
    Admin(AdminRecord),
}

/// Where audit events go. Must not block the caller.
pub trait AuditSink: Send + Sync + 'static {
    fn record(&self, event: AuditEvent);
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
