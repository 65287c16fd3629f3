//! Writes audit records into the SQLite store through one plain connection of its own, owned by the
//! recorder's thread: each batch is one transaction, its actions in multi-row INSERTs prepared
//! once. Every record is appended to the hash-chained log (`audit_log`), and each kind also goes
//! to its table (sessions, statements, authentication attempts, administrative events), which
//! the command line queries.

use crate::audit_log::{self, Signing};
use crate::sqlite::{configure, unavailable};
use rusqlite::{Connection, TransactionBehavior, params};
use sluice_core::audit::now_us;
use sluice_core::{ActionDetail, ActionRecord, AuditEvent, AuditRecord};
use sluice_store::StoreResult;
use std::path::Path;
use std::sync::OnceLock;

pub struct EventWriter {
    conn: Connection,
    /// The chain identity of the store's log.
    instance: String,
    /// The recorder's key and cadence for signed checkpoints (`None`: the command line's writer).
    signing: Option<Signing>,
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
const INSERT_ADMIN: &str = "INSERT INTO admin_events (at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)";
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
        // Every commit reaches the disk before the writer reports it: a durable record is then
        // durable against a power cut too, not only against the gateway being killed.
        conn.pragma_update(None, "synchronous", "full").map_err(unavailable)?;
        let instance = audit_log::instance(&conn).map_err(unavailable)?;
        Ok(EventWriter { conn, instance, signing: None })
    }

    /// The writer signs checkpoints of the chain as `signing` says.
    pub fn with_signing(self, signing: Signing) -> EventWriter {
        EventWriter { signing: Some(signing), ..self }
    }

    /// Writes a batch of records in one transaction.
    pub fn write(&mut self, records: &[AuditRecord]) -> StoreResult<()> {
        self.write_batch(records).map_err(unavailable)
    }

    /// Signs a checkpoint of the chain as it stands, unless one covers it already (at shutdown).
    pub fn checkpoint(&mut self) -> StoreResult<()> {
        let Some(signing) = &mut self.signing else { return Ok(()) };
        let signed = (|| {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let chain = audit_log::append(&tx, &self.instance, &[])?;
            signing.sign(&tx, &chain, now_us())?;
            tx.commit()
        })();
        signed.map_err(unavailable)
    }

    fn write_batch(&mut self, records: &[AuditRecord]) -> rusqlite::Result<()> {
        // Immediate: the chain's tail is read and extended under the write lock, so a command line
        // writing to the same file meanwhile waits instead of forking the chain.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for record in records {
            let AuditRecord { at_us, principal, session, event } = record;
            let (who, credential) = (&principal.name, &principal.credential_id);
            match event {
                AuditEvent::Authentication { protocol, client_addr, target, outcome } => {
                    tx.prepare_cached(INSERT_AUTH)?.execute(params![
                        at_us,
                        protocol.as_str(),
                        client_addr,
                        who,
                        target,
                        outcome.as_str(),
                        credential
                    ])?;
                }
                AuditEvent::SessionStarted { protocol, target, client_addr, client_tls, client_program } => {
                    tx.prepare_cached(INSERT_SESSION)?.execute(params![
                        session.as_deref(),
                        protocol.as_str(),
                        who,
                        credential.as_deref().unwrap_or_default(),
                        target,
                        client_addr,
                        client_tls,
                        client_program,
                        at_us
                    ])?;
                }
                AuditEvent::SessionEnded { reason } => {
                    tx.prepare_cached(END_SESSION)?.execute(params![at_us, reason, session.as_deref()])?;
                }
                AuditEvent::Admin { action, subject, detail } => {
                    tx.prepare_cached(INSERT_ADMIN)?.execute(params![at_us, who, action.as_str(), subject, detail])?;
                }
                // Kept with the review itself, in the transaction that changed it (`review_events`).
                AuditEvent::Review { .. } => {}
                // In the chained log only: the action's outcome follows as an `Action`.
                AuditEvent::ActionDecided { .. } => {}
                AuditEvent::Action(_) => {}
            }
        }
        // Actions are the bulk of the traffic: one multi-row INSERT per chunk, whose SQLite
        // program costs less per row than a one-row INSERT run once per row.
        let actions: Vec<(&AuditRecord, &ActionRecord)> = records
            .iter()
            .filter_map(|r| match &r.event {
                AuditEvent::Action(a) => Some((r, a)),
                _ => None,
            })
            .collect();
        let mut rest = actions.as_slice();
        while !rest.is_empty() {
            let (rows, sql) = insert_for(rest.len());
            let (chunk, after) = rest.split_at(rows);
            rest = after;
            let mut insert = tx.prepare_cached(sql)?;
            for (i, (record, a)) in chunk.iter().enumerate() {
                let ActionDetail::Sql { path, rows, tag, error_code, error_message } = &a.detail;
                let at = i * STATEMENT_COLUMNS;
                insert.raw_bind_parameter(at + 1, record.session.as_deref())?;
                insert.raw_bind_parameter(at + 2, a.seq as i64)?;
                insert.raw_bind_parameter(at + 3, *path)?;
                insert.raw_bind_parameter(at + 4, &*a.text)?;
                insert.raw_bind_parameter(at + 5, record.at_us)?;
                insert.raw_bind_parameter(at + 6, a.duration_us)?;
                insert.raw_bind_parameter(at + 7, *rows as i64)?;
                insert.raw_bind_parameter(at + 8, tag.as_deref())?;
                insert.raw_bind_parameter(at + 9, error_code.as_deref())?;
                insert.raw_bind_parameter(at + 10, error_message.as_deref())?;
                insert.raw_bind_parameter(at + 11, a.refused_by())?;
                insert.raw_bind_parameter(at + 12, a.verdict)?;
                insert.raw_bind_parameter(at + 13, a.rule.as_deref())?;
            }
            insert.raw_execute()?;
        }
        let chain = audit_log::append(&tx, &self.instance, records)?;
        if let Some(signing) = self.signing.as_mut()
            && signing.due(records.len())
            && let Err(e) = signing.sign(&tx, &chain, now_us())
        {
            // The records matter more than the signature: they are kept, and the next batch signs.
            tracing::error!(error = %e, "could not sign an audit checkpoint");
        }
        tx.commit()?;
        Ok(())
    }
}
