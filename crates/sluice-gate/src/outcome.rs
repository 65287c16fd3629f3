//! What became of an action once the adapter relayed (or refused) it: handed to the session's log,
//! which turns it into the audit event. Adapters describe; they never build events.

use std::sync::Arc;

/// One finished action. Times are microseconds since the Unix epoch.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The action as recorded (a statement's text; masked on the way to the store).
    pub text: Arc<str>,
    pub started_at_us: i64,
    pub duration_us: i64,
    /// What the gateway decided: `allow`, `deny` or `review`.
    pub decision: &'static str,
    /// The rule that decided.
    pub rule: Option<Arc<str>>,
    pub detail: OutcomeDetail,
}

/// The protocol's own account of what happened.
#[derive(Clone, Debug)]
pub enum OutcomeDetail {
    Sql {
        /// `simple` (Query message) or `extended` (Parse/Bind/Execute).
        path: &'static str,
        rows: u64,
        /// The command tag (`SELECT 3`, `INSERT 0 1`) of the last completed command.
        tag: Option<Arc<str>>,
        /// The SQLSTATE of the error that ended it, sluice's or the server's.
        error_code: Option<String>,
        error_message: Option<String>,
    },
}
