//! What became of an action once the adapter relayed (or refused) it: handed to the session's log,
//! which turns it into the audit record. Adapters describe; they never build records.

use std::sync::Arc;

pub use sluice_core::ActionDetail;

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
    /// The protocol's own account of what happened.
    pub detail: ActionDetail,
}
