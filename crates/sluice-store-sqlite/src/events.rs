//! Writes audit records into the SQLite store through one plain connection of its own, owned by the
//! recorder's thread: each batch is one transaction. Every record is appended to the hash-chained
//! log (`audit_log`, see `audit_log`); sessions, authentication attempts and administrative events
//! also go to tables of their own, which the command line queries (actions, the bulk of the
//! traffic, are read from the log itself through the `statements` view).

use crate::audit_log::{self, Signing};
use crate::sqlite::{configure, unavailable};
use rusqlite::{Connection, TransactionBehavior, params};
use sluice_core::audit::now_us;
use sluice_core::{AuditEvent, AuditRecord};
use sluice_store::StoreResult;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

pub struct EventWriter {
    conn: Connection,
    /// The chain identity of the store's log.
    instance: String,
    /// The recorder's key and cadence for signed checkpoints (`None`: the command line's writer).
    signing: Option<Signing>,
    /// Told the newest sequence number after every commit (the exports wait on it).
    appended: Arc<watch::Sender<u64>>,
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
impl EventWriter {
    /// Opens the store's file (its schema already in place: `SqliteStore::open` migrates it).
    pub(crate) fn open(path: &Path, appended: Arc<watch::Sender<u64>>) -> StoreResult<EventWriter> {
        let conn = Connection::open(path).map_err(unavailable)?;
        conn.set_prepared_statement_cache_capacity(audit_log::INSERT_SIZES.len() + 6);
        configure(&conn).map_err(unavailable)?;
        // Every commit reaches the disk before the writer reports it: the decision journal is
        // emptied after a batch that holds its records, which must then be on the disk too.
        conn.pragma_update(None, "synchronous", "full").map_err(unavailable)?;
        let instance = audit_log::instance(&conn).map_err(unavailable)?;
        Ok(EventWriter { conn, instance, signing: None, appended })
    }

    /// The chain identity of the store's log.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether the log holds the `action_decided` record of `session` made at `at_us` (the
    /// journal's recovery asks, so that a record is never chained twice).
    pub(crate) fn holds_decision(&self, session: Option<&str>, at_us: i64) -> rusqlite::Result<bool> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM audit_log WHERE session_id IS ?1 AND at = ?2 AND kind = 'action_decided')",
            )?
            .query_row(params![session, at_us], |r| r.get(0))
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
            let chain = audit_log::tail(&tx, &self.instance)?;
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
                // Actions are in the chained log only (the `statements` view reads them there).
                AuditEvent::Action(_) | AuditEvent::ActionDecided { .. } | AuditEvent::Terminal { .. } => {}
            }
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
        self.appended.send_replace(chain.last_seq());
        Ok(())
    }
}
