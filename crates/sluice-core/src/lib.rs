//! sluice's shared vocabulary: who is calling, what an SQL statement does, what was decided and
//! why, what gets recorded, and the configuration's policy and masking sections as plain data.
//! Nothing here does I/O; every other crate builds on these types.

pub mod action;
pub mod advice;
pub mod audit;
pub mod exec;
pub mod glob;
pub mod http;
pub mod identity;
pub mod ids;
pub mod mask_spec;
pub mod policy;
pub mod review;
pub mod scope;
pub mod secret;
pub mod span;
pub mod sql;
pub mod token;

pub use action::{Decision, Hold, Protocol, Refusal, RefusalCause};
pub use audit::{
    ActionDetail, ActionRecord, AdminAction, AuditEvent, AuditRecord, AuditSink, AuthOutcome, ExcerptLimits,
    HttpExcerpts, Principal, ResultExcerpt,
};
pub use identity::Identity;
pub use secret::Secret;

/// An error with its causes, one after the other: a client library's own message is often just
/// "error sending request", and the cause is what an operator needs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
