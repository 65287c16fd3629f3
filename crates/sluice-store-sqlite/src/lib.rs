//! sluice's embedded state store: the store traits of `sluice-store` (tokens as digests, sealed
//! credentials, reviews) on SQLite, the record of sessions, statements, authentication attempts
//! and administrative events, and the recorder that writes audit events off the hot path.

mod audit_log;
mod events;
mod journal;
mod recorder;
mod reviews;
mod schema;
mod sqlite;

pub use audit_log::{Removed, Retention, Signing};
pub use events::EventWriter;
pub use recorder::{Recorder, RecorderTask, TextFilter};
pub use sqlite::{AdminRow, AuthRow, SessionFilter, SessionRow, SqliteStore, StatementRow};
