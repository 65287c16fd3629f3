//! sluice's state store: tokens (as digests), sealed upstream credentials, and the record of sessions,
//! statements and authentication attempts. SQLite, embedded, is the default; the types here are what a
//! PostgreSQL-backed store for several instances will implement too.

mod events;
pub mod private;
mod recorder;
mod reviews;
mod schema;
mod sqlite;
pub mod vault;

pub use events::EventWriter;
pub use recorder::{Recorder, RecorderTask, TextFilter};
pub use reviews::{ReviewEvent, ReviewFilter};
pub use sqlite::{AdminRow, AuthRow, SessionFilter, SessionRow, StatementRow, Store, TokenRow};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Vault(String),
    #[error("{0}")]
    NotFound(String),
    #[error("state store: a stored review cannot be read: {0}")]
    Corrupt(String),
}
