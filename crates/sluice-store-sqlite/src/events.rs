//! Writes audit events into the SQLite store through one plain connection of its own, owned by the
//! recorder's thread: each batch is one transaction of single-row INSERTs prepared once. (Through
//! sqlx, binding and worker-thread hand-offs cost more than SQLite's own work per statement.)

use crate::sqlite::{configure, unavailable};
use rusqlite::{Connection, params};
use sluice_core::{AuditEvent, StatementRecord};
use sluice_store::StoreResult;
use std::path::Path;
use std::sync::OnceLock;

pub struct EventWriter {
    conn: Connection,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter").finish_non_exhaustive()
    }
}

const INSERT_AUTH: &str = "INSERT INTO auth_events (at, protocol, client_addr, user, connection, outcome, credential_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INSERT_SESSION: &str = "INSERT INTO sessions (id, protocol, identity, credential_id, connection, client_addr, \
     client_tls, application_name, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const END_SESSION: &str = "UPDATE sessions SET ended_at = ?1, end_reason = ?2 WHERE id = ?3";
pub(crate) const INSERT_ADMIN: &str =
    "INSERT INTO admin_events (at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)";
/// Bound values per statement row; SQLite allows 32,766 per statement.
const STATEMENT_COLUMNS: usize = 13;

/// Rows per multi-row INSERT of statements. Only these sizes are used: each is a distinct SQL
/// text the connection prepares once and keeps. At most 32 rows, so that SQLite's copies of the
/// bound texts (~6 per row) fit in the connection's lookaside slots (`.cargo/config.toml`).
const INSERT_SIZES: [usize; 4] = [32, 8, 2, 1];

/// The largest allowed INSERT that fits in `remaining` rows: how many rows it takes, and its SQL
/// (each size built once).
fn insert_for(remaining: usize) -> (usize, &'static str) {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        INSERT_SIZES
            .iter()
            .map(|&n| {
                let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
                format!(
                    "INSERT INTO statements (session_id, seq, path, text, started_at, duration_us, rows, tag, \
                     error_code, error_message, refused_by, decision, rule) VALUES {}",
                    vec![row; n].join(", ")
                )
            })
            .collect()
    });
    let at = INSERT_SIZES.iter().position(|&n| n <= remaining).unwrap_or(INSERT_SIZES.len() - 1);
    (INSERT_SIZES[at], &all[at])
}

impl EventWriter {
    /// Opens the store's file (its schema already in place: `SqliteStore::open` migrates it).
    pub(crate) fn open(path: &Path) -> StoreResult<EventWriter> {
        let conn = Connection::open(path).map_err(unavailable)?;
        conn.set_prepared_statement_cache_capacity(INSERT_SIZES.len() + 4);
        configure(&conn).map_err(unavailable)?;
        Ok(EventWriter { conn })
    }

    /// Writes a batch of events in one transaction.
    pub fn write(&mut self, events: &[AuditEvent]) -> StoreResult<()> {
        self.write_batch(events).map_err(unavailable)
    }

    fn write_batch(&mut self, events: &[AuditEvent]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for event in events {
            match event {
                AuditEvent::Auth { at_us, protocol, client_addr, user, connection, outcome, credential_id } => {
                    tx.prepare_cached(INSERT_AUTH)?.execute(params![
                        at_us,
                        protocol.as_str(),
                        client_addr,
                        user,
                        connection,
                        outcome.as_str(),
                        credential_id
                    ])?;
                }
                AuditEvent::SessionStarted {
                    session_id,
                    at_us,
                    protocol,
                    identity,
                    credential_id,
                    connection,
                    client_addr,
                    client_tls,
                    application_name,
                } => {
                    tx.prepare_cached(INSERT_SESSION)?.execute(params![
                        session_id,
                        protocol.as_str(),
                        identity,
                        credential_id,
                        connection,
                        client_addr,
                        client_tls,
                        application_name,
                        at_us
                    ])?;
                }
                AuditEvent::SessionEnded { session_id, at_us, reason } => {
                    tx.prepare_cached(END_SESSION)?.execute(params![at_us, reason, session_id])?;
                }
                AuditEvent::Admin(a) => {
                    tx.prepare_cached(INSERT_ADMIN)?.execute(params![
                        a.at_us,
                        a.actor,
                        a.action.as_str(),
                        a.subject,
                        a.detail
                    ])?;
                }
                AuditEvent::Statement(_) => {}
            }
        }
        // Statements are the bulk of the traffic: one multi-row INSERT per chunk, whose SQLite
        // program costs less per row than a one-row INSERT run once per row.
        let statements: Vec<&StatementRecord> = events
            .iter()
            .filter_map(|e| match e {
                AuditEvent::Statement(s) => Some(s),
                _ => None,
            })
            .collect();
        let mut rest = statements.as_slice();
        while !rest.is_empty() {
            let (rows, sql) = insert_for(rest.len());
            let (chunk, after) = rest.split_at(rows);
            rest = after;
            let mut insert = tx.prepare_cached(sql)?;
            for (i, s) in chunk.iter().enumerate() {
                let at = i * STATEMENT_COLUMNS;
                insert.raw_bind_parameter(at + 1, &*s.session_id)?;
                insert.raw_bind_parameter(at + 2, s.seq as i64)?;
                insert.raw_bind_parameter(at + 3, s.path)?;
                insert.raw_bind_parameter(at + 4, &*s.text)?;
                insert.raw_bind_parameter(at + 5, s.started_at_us)?;
                insert.raw_bind_parameter(at + 6, s.duration_us)?;
                insert.raw_bind_parameter(at + 7, s.rows as i64)?;
                insert.raw_bind_parameter(at + 8, s.tag.as_deref())?;
                insert.raw_bind_parameter(at + 9, s.error_code.as_deref())?;
                insert.raw_bind_parameter(at + 10, s.error_message.as_deref())?;
                insert.raw_bind_parameter(at + 11, s.refused_by())?;
                insert.raw_bind_parameter(at + 12, s.decision)?;
                insert.raw_bind_parameter(at + 13, s.rule.as_deref())?;
            }
            insert.raw_execute()?;
        }
        tx.commit()?;
        Ok(())
    }
}
