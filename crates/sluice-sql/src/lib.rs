//! SQL classification with PostgreSQL's own parser (libpg_query): what a message does, cached by
//! text, and the per-session memory of SQL-level prepared statements. Fails closed: what does not
//! parse is reported unparseable, never guessed at.

pub mod builtin;
pub mod cache;
pub mod canonical;
pub mod classify;
mod flow;
pub mod lexing;
pub mod position;
pub mod prepared;

pub use builtin::{BuiltinCall, answer_query, builtin_call, calls_builtin};
pub use cache::Classifier;
pub use canonical::canonical;
pub use classify::{analyze, output_refs};
pub use lexing::with_standard_strings;
pub use position::error_position;
pub use prepared::{PreparedStatements, execute_text, resolve_by};
