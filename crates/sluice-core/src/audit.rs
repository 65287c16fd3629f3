//! Everything sluice records, in one envelope: when, who, in which session, and what happened —
//! an authentication attempt, a session's start and end, an action with its verdict and outcome,
//! a review's transition, an administrative change. The engine builds every record (adapters
//! describe outcomes; they never build events); the log that keeps them numbers them in its
//! instance's order. Records are plain data; the store decides how to keep them.

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
    /// Not looked at: the gateway refuses new sessions for now (an audit export's backlog is
    /// full).
    SessionsRefused,
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
            AuthOutcome::SessionsRefused => "sessions_refused",
        }
    }
}

/// Who an event is about: an identity and the credential it proved itself with; for a failed
/// authentication, the name the caller claimed (and the token's id when the token exists); for the
/// command line, `cli:<os user>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub credential_id: Option<String>,
}

impl Principal {
    pub fn new(name: impl Into<String>, credential_id: Option<String>) -> Arc<Principal> {
        Arc::new(Principal { name: name.into(), credential_id })
    }
}

/// One audit event in its envelope. Times are microseconds since the Unix epoch.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    pub at_us: i64,
    /// Shared by a session's records.
    pub principal: Arc<Principal>,
    /// The session it happened in, if any.
    pub session: Option<Arc<str>>,
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl AuditRecord {
    /// A record of `event`, happening now.
    pub fn now(principal: Arc<Principal>, session: Option<Arc<str>>, event: AuditEvent) -> AuditRecord {
        AuditRecord { at_us: now_us(), principal, session, event }
    }
}

/// What happened, with its kind's own detail.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A credential presented to open a session on a target, whatever came of it.
    Authentication {
        protocol: Protocol,
        client_addr: String,
        target: String,
        outcome: AuthOutcome,
    },
    SessionStarted {
        protocol: Protocol,
        target: String,
        client_addr: String,
        client_tls: bool,
        /// The program the client says it is (PostgreSQL's `application_name`).
        client_program: Option<String>,
    },
    SessionEnded {
        reason: String,
    },
    /// An action decided and, when allowed, carried out.
    Action(ActionRecord),
    /// An action that can change state, allowed: written durably before it is forwarded, so that
    /// nothing changes unrecorded (its outcome follows as an `Action`).
    ActionDecided {
        /// The kind of action (`sql`, …).
        action: &'static str,
        /// The action in one line, masked on the way to the store like an `Action`'s.
        text: Arc<str>,
        verdict: &'static str,
        rule: Option<Arc<str>>,
    },
    /// A stretch of an interactive terminal's output as the client saw it (masked), as asciicast
    /// v2 event lines (`[seconds, "o", "text"]`, seconds from the terminal's start; `"r"` for a
    /// resize): `sluice sessions replay --terminal` plays them, `--cast` writes them as a file.
    Terminal {
        /// The terminal's number in its session (the session's action that opened it).
        terminal: u64,
        /// Its size when it opened, in columns and rows.
        width: u32,
        height: u32,
        events: String,
    },
    /// A review requested, approved, denied, used, revoked, or waited on in vain.
    Review {
        review_id: i64,
        transition: String,
        comment: Option<String>,
    },
    /// A change to sluice itself rather than through it.
    Admin {
        action: AdminAction,
        subject: String,
        detail: Option<String>,
    },
}

impl AuditEvent {
    /// The event's kind, as its `kind` field names it.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Authentication { .. } => "authentication",
            AuditEvent::SessionStarted { .. } => "session_started",
            AuditEvent::SessionEnded { .. } => "session_ended",
            AuditEvent::Action(_) => "action",
            AuditEvent::ActionDecided { .. } => "action_decided",
            AuditEvent::Terminal { .. } => "terminal",
            AuditEvent::Review { .. } => "review",
            AuditEvent::Admin { .. } => "admin",
        }
    }
}

/// One finished action: the record's `at_us` is when it started.
#[derive(Clone, Debug, Serialize)]
pub struct ActionRecord {
    /// Its place in its session.
    pub seq: u64,
    /// The action in one line (a statement's text), masked on the way to the store.
    pub text: Arc<str>,
    pub duration_us: i64,
    /// What the gateway decided: `allow`, `deny` or `review`.
    pub verdict: &'static str,
    /// The rule that decided (`default` when none matched).
    pub rule: Option<Arc<str>>,
    pub detail: ActionDetail,
}

impl ActionRecord {
    /// The deciding rule when the gateway refused the action.
    pub fn refused_by(&self) -> Option<&str> {
        (self.verdict != "allow").then_some(self.rule.as_deref()).flatten()
    }
}

/// The protocol's own account of an action.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum ActionDetail {
    /// A SQL statement.
    Sql {
        /// `simple` (Query message) or `extended` (Parse/Bind/Execute).
        path: &'static str,
        rows: u64,
        /// The command tag (`SELECT 3`, `INSERT 0 1`) of the last completed command.
        tag: Option<Arc<str>>,
        /// The SQLSTATE of the error that ended it, sluice's or the server's.
        error_code: Option<String>,
        error_message: Option<String>,
        /// The first rows of its result, as the client received them (`[recording]
        /// result_rows`); absent when none are kept or it returned none.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<Box<ResultExcerpt>>,
    },
    /// An HTTP request.
    Http {
        /// The status the client got (sluice's own for a refusal or an upstream failure).
        status: u16,
        request_bytes: u64,
        response_bytes: u64,
        /// What went wrong, when sluice answered for the upstream.
        error: Option<String>,
        /// The beginnings of the request and response bodies, masked (`[recording] result_rows`
        /// above 0); absent when none are kept.
        #[serde(skip_serializing_if = "Option::is_none")]
        excerpts: Option<Box<HttpExcerpts>>,
    },
    /// A command run on a host (SSH `exec`).
    Exec {
        /// The command's exit status; absent when it did not run to an end (refused, the host
        /// unreachable, the client gone).
        exit_status: Option<u32>,
        /// What the client sent to its input, and what came back (output and errors, masked).
        input_bytes: u64,
        output_bytes: u64,
        /// What went wrong, when sluice answered for the host.
        error: Option<String>,
    },
}

/// The beginnings of an HTTP exchange's bodies, masked and cut to `[recording]
/// result_max_bytes` each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HttpExcerpts {
    pub request: Option<String>,
    pub response: Option<String>,
}

/// The first rows of an action's result as the client received them (masked), cut to a size:
/// what `sessions replay` shows of it. Serialized as `{"columns": [..], "rows": [[..], ..]}`, with
/// `"truncated": true` when rows or bytes were left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultExcerpt {
    /// Shared by every result of the same shape (an adapter keeps them between statements).
    pub columns: Arc<[String]>,
    /// The kept rows' values, row after row (`None` for SQL NULL): one allocation for them all.
    values: Vec<Option<String>>,
    /// Where each row ends in `values`.
    row_ends: Vec<u32>,
    pub truncated: bool,
    /// Bytes of values kept so far.
    kept_bytes: usize,
    /// Bytes of values the record keeps (`fit_budget`).
    budget: usize,
}

/// Bytes read beyond a result's budget, for the masking that runs before it is applied.
const DETECTION_MARGIN: usize = 256;

/// Cuts `value` to at most `len` bytes on a character boundary, marking the cut with `…`;
/// whether it was cut.
fn cut(value: &mut String, len: usize) -> bool {
    if value.len() <= len {
        return false;
    }
    let mut end = len;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
    value.push('…');
    true
}

impl ResultExcerpt {
    pub fn new(columns: Arc<[String]>) -> ResultExcerpt {
        ResultExcerpt { columns, ..ResultExcerpt::default() }
    }

    /// Whether a row that has arrived should be kept: when not, the excerpt notes that rows were
    /// left out.
    pub fn wants_row(&mut self, limits: ExcerptLimits) -> bool {
        let wanted = self.row_ends.len() < limits.rows && self.kept_bytes < limits.bytes;
        self.truncated |= !wanted;
        wanted
    }

    /// How much of a value an adapter need read: the budget and a margin, so that what is masked
    /// before the values are cut to the budget (`fit_budget`) sees a secret that straddles it whole.
    pub fn read_limit(limits: ExcerptLimits) -> usize {
        limits.bytes + DETECTION_MARGIN
    }

    /// Keeps a row; values are cut (on a character boundary) where the budget and its margin
    /// run out.
    pub fn push_row(&mut self, limits: ExcerptLimits, values: impl IntoIterator<Item = Option<String>>) {
        self.budget = limits.bytes;
        for value in values {
            let value = value.map(|mut value| {
                let left = Self::read_limit(limits).saturating_sub(self.kept_bytes);
                self.truncated |= cut(&mut value, left);
                self.kept_bytes += value.len();
                value
            });
            self.values.push(value);
        }
        self.row_ends.push(u32::try_from(self.values.len()).unwrap_or(u32::MAX));
    }

    /// Cuts the values to the byte budget: done once they are masked.
    pub fn fit_budget(&mut self) {
        let mut used = 0;
        for value in self.values.iter_mut().flatten() {
            self.truncated |= cut(value, self.budget.saturating_sub(used));
            used += value.len();
        }
    }

    /// The kept rows, each a slice of its values.
    pub fn rows(&self) -> impl Iterator<Item = &[Option<String>]> {
        let starts = std::iter::once(0).chain(self.row_ends.iter().copied());
        starts.zip(self.row_ends.iter().copied()).map(|(start, end)| &self.values[start as usize..end as usize])
    }

    /// Every value kept, for a pass over them (masking them on the way to the store, before
    /// `fit_budget`).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut String> {
        self.values.iter_mut().flatten()
    }

    /// Replaces the column names that `rename` changes (the names are shared between excerpts:
    /// copied only when one changes).
    pub fn rename_columns(&mut self, mut rename: impl FnMut(&str) -> Option<String>) {
        let renamed: Vec<(usize, String)> =
            self.columns.iter().enumerate().filter_map(|(i, name)| rename(name).map(|new| (i, new))).collect();
        if !renamed.is_empty() {
            let columns = Arc::make_mut(&mut self.columns);
            for (i, name) in renamed {
                columns[i] = name;
            }
        }
    }
}

impl Serialize for ResultExcerpt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = if self.truncated { 3 } else { 2 };
        let mut out = serializer.serialize_struct("ResultExcerpt", fields)?;
        out.serialize_field("columns", &self.columns)?;
        out.serialize_field("rows", &self.rows().collect::<Vec<_>>())?;
        if self.truncated {
            out.serialize_field("truncated", &true)?;
        }
        out.end()
    }
}

/// How much of each result is kept for the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExcerptLimits {
    pub rows: usize,
    /// Bytes of values, all rows together; a value that would pass it is cut.
    pub bytes: usize,
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
    /// The configuration file was read and put in force (at start or by a reload).
    ConfigurationLoaded,
    /// A reload was refused: the file does not load or compile; the running configuration stays.
    ConfigurationRefused,
    /// Retention removed the oldest records of the audit log (up to a signed anchor).
    AuditRecordsRemoved,
}

impl AdminAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::TokenMinted => "token-minted",
            AdminAction::TokenRevoked => "token-revoked",
            AdminAction::CredentialSet => "credential-set",
            AdminAction::CredentialDeleted => "credential-deleted",
            AdminAction::ApiAuthenticationFailed => "api-authentication-failed",
            AdminAction::ConfigurationLoaded => "configuration-loaded",
            AdminAction::ConfigurationRefused => "configuration-refused",
            AdminAction::AuditRecordsRemoved => "audit-records-removed",
        }
    }
}

/// A durable write under way: resolves once the record is on disk, or with why it cannot be.
pub type DurableWrite = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// Where audit events go.
pub trait AuditSink: Send + Sync + 'static {
    /// Records `record` in the next batch. Must not block the caller.
    fn record(&self, record: AuditRecord);

    /// Records `record` and resolves once it is durable (sharing the flush with every record
    /// asked for meanwhile); an error means it was not recorded.
    fn record_durable(&self, record: AuditRecord) -> DurableWrite;
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
