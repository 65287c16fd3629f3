//! The protocol-free heart of sluice: who is calling, what they want to do, what was decided, and
//! what gets recorded. Nothing here does I/O; adapters and the store build on these types.

pub mod action;
pub mod advice;
pub mod audit;
pub mod glob;
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
pub use audit::{AdminAction, AdminRecord, AuditEvent, AuditSink, AuthOutcome, StatementRecord};
pub use identity::Identity;
pub use secret::Secret;
