//! The relay between an authenticated client and its upstream session. Bytes flow through as slices
//! of one read buffer per direction; only the messages the gateway must see are decoded: Query,
//! Parse, Bind, Describe, Execute, Close and Sync from the client, and every answer to them from the
//! server (the reply queue follows PostgreSQL exactly, including the skip to Sync after an error).
//! Every statement is decided before it is forwarded and recorded when its result is complete.
//! With masking on, RowDescription, DataRow, CopyData, notices and notifications are read too, and
//! a frame is rewritten only when something in it must be masked (see `mask`).
//!
//! Masking never relies on a remembered shape: rows are masked by the RowDescription that
//! immediately precedes them. A simple query sends its own; before every Execute, sluice sends a
//! Describe of the portal and consumes the answer (unless the client described that portal just
//! before), so SQL PREPARE, DECLARE, CLOSE, transaction ends and name reuse cannot make a plan stale.
//!
//! A refused message is replaced, in place, by one the server rejects at parse time (see
//! `REFUSAL_MARKER`); the server's error is then swapped for sluice's own. That keeps every response
//! in order and gives exactly PostgreSQL's semantics after an error: the rest of the pipeline up to
//! Sync is skipped and an open transaction is aborted.
//!
//! The modules: `client` and `server` (the two directions), the client's messages by group
//! (`simple`: Query and FunctionCall; `extended`: Parse, Bind, Describe, Execute, Close, Sync),
//! `decide` (what is asked of the engine, and the catalog it may ask back), `hold` (waiting on a
//! review), `refusal` (refusals on the wire), `tracker` (what the server still owes), `coalesce`
//! (writes of large responses).

// The relay's prelude: every module below starts with `use super::*`.
use crate::FastMap;
use crate::catalog::{CANDIDATES_FRESH_FOR, Catalog, FRESH_FOR};
use crate::codec::{self, FrameError, HEADER_LEN, Reader, peek_frame, put_cstr, put_message, tag_rows};
use crate::error::{PgError, ServerMessage, sqlstate};
use crate::mask::{self, CopyFormat, Field, ResponseMasker, RowPlan};
use crate::upstream::{PgEndpoint, UpstreamError};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use sluice_core::audit::now_us;
use sluice_core::review::SAME_STATEMENT;
use sluice_core::sql::{ObjectName, SharedAnalysis, SqlAnalysis, SqlStatement};
use sluice_core::{Decision, Refusal, RefusalCause};
use sluice_gate::{
    Action, ActionDetail, Outcome, ServerAnswer, SessionGate, SessionLog, SqlAction, SqlServer, Standing,
};
use sluice_mask::{CatalogRules, ColumnMask, MaskAction, SessionMasking};
use sluice_policy::depends_on_column_masking;
use sluice_sql::cache::SessionClassifier;
use sluice_sql::{BuiltinCall, Classifier, PreparedStatements};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

mod client;
mod coalesce;
mod decide;
mod excerpt;
mod extended;
mod hold;
mod refusal;
mod server;
mod simple;
mod tracker;

pub use client::client_to_upstream;
pub use server::upstream_to_client;
pub use tracker::Tracker;

use coalesce::*;
use decide::*;
use hold::*;
use refusal::*;
use tracker::*;

/// The server's own frames are trusted up to PostgreSQL's 1 GiB field limit.
const MAX_SERVER_FRAME: usize = (1 << 30) + 1024;

const READ_CHUNK: usize = 16 * 1024;

/// A read buffer larger than this is given back once the session is idle.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

/// Why a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client's socket closed or failed without Terminate.
    ClientGone(String),
    /// The client broke the protocol; it is told so.
    ClientProtocol(PgError),
    /// The credential the session was opened with was revoked or expired; the client is told so.
    CredentialEnded(PgError),
    /// The write access the session was opened with ended; the client is told so.
    AccessEnded(PgError),
    /// The session changed state sluice follows only where no column rule reaches the database,
    /// and now one does; the client is told so.
    MaskingArrived(PgError),
    /// The upstream closed or failed.
    UpstreamGone(String),
    /// The upstream ended the session with a FATAL error, already passed to the client.
    UpstreamFatal(String),
}

impl RelayEnd {
    pub fn describe(&self) -> String {
        match self {
            RelayEnd::ClientTerminated => "client terminated".into(),
            RelayEnd::ClientGone(why) => format!("client disconnected: {why}"),
            RelayEnd::ClientProtocol(e) => format!("client protocol error: {}", e.message),
            RelayEnd::CredentialEnded(_) => "its token was revoked or expired".into(),
            RelayEnd::AccessEnded(_) => "the write access it was opened with ended".into(),
            RelayEnd::MaskingArrived(_) => {
                "a column rule came to reach its database after it changed its role, search_path or string mode".into()
            }
            RelayEnd::UpstreamGone(why) => format!("upstream lost: {why}"),
            RelayEnd::UpstreamFatal(why) => format!("upstream ended the session: {why}"),
        }
    }
}

pub struct Context<'a, S: SessionGate> {
    /// Where what became of each statement goes.
    pub log: S::Log,
    pub session_id: Arc<str>,
    pub classifier: &'a Classifier,
    pub max_message_bytes: usize,
    /// Masking obligations for this session's responses (and its recording); `None` when there
    /// is nothing to mask.
    pub masking: Option<SessionMasking>,
    /// Where column names are looked up for masking rules, and how long that may take.
    pub catalog: &'a Catalog,
    pub endpoint: &'a PgEndpoint,
    pub lookup_timeout: std::time::Duration,
    /// Messages for the client that do not answer anything it sent (a held statement's notice).
    pub notices: mpsc::UnboundedSender<Bytes>,
    /// Woken by the client's cancel request.
    pub cancel: Arc<Notify>,
    /// Answers the server owes to messages sluice sent itself (see `close_approved`).
    pub sluice_owed: AtomicUsize,
    /// What the column rules reach through the server's views and functions, as last read (see
    /// `reached`).
    pub reached: Mutex<Option<(Instant, Arc<CatalogRules>)>>,
    /// Whether the database has a column a column rule in scope covers, and when that was read
    /// (see `has_masked_columns`).
    pub masked_columns: Mutex<Option<(Instant, bool)>>,
    /// The server reported `standard_conforming_strings` off: plain literals take backslash
    /// escapes, and statements are read accordingly (see `sluice_sql::lexing`).
    pub backslash_strings: AtomicBool,
}

impl<S: SessionGate> Context<'_, S> {
    /// What the column rules reach through this session's database's views and functions, as read
    /// within `FRESH_FOR` — or read again at once when `lacks` says that reading lacks an object
    /// the statement or result names (one made since may carry a masked column).
    async fn reached_knowing(
        &self,
        masking: &SessionMasking,
        lacks: impl Fn(&CatalogRules) -> bool,
    ) -> Result<Arc<CatalogRules>, UpstreamError> {
        let reached = self.reached(masking, FRESH_FOR).await?;
        if lacks(&reached) { self.reached(masking, Duration::ZERO).await } else { Ok(reached) }
    }

    /// What `reached_knowing` would answer from this session's readings alone, without reading
    /// the catalog: `None` when a reading is stale or lacks what `analysis` names. (The common
    /// case, answered without building the future of a catalog read.)
    fn reached_as_read(&self, analysis: &SqlAnalysis) -> Option<Option<Arc<CatalogRules>>> {
        if !self.masked_columns_as_read()? {
            return Some(None);
        }
        let rules = self.reached_read_within(FRESH_FOR)?;
        (!rules.calls_unknown_function(analysis)).then_some(Some(rules))
    }

    /// `has_masked_columns` as last read, while that reading is fresh.
    fn masked_columns_as_read(&self) -> Option<bool> {
        (*self.masked_columns.lock()).filter(|(at, _)| at.elapsed() < CANDIDATES_FRESH_FOR).map(|(_, found)| found)
    }

    /// `reached` as last read, while that reading is younger than `fresh_for`.
    fn reached_read_within(&self, fresh_for: Duration) -> Option<Arc<CatalogRules>> {
        self.reached.lock().as_ref().filter(|(at, _)| at.elapsed() < fresh_for).map(|(_, rules)| Arc::clone(rules))
    }

    /// Whether this session's database has a column that a column rule in scope covers, as read
    /// within the last second; yes when the catalog cannot be read. Where it has none, nothing a
    /// statement reads can be masked: the views and functions need not be read (which would lock,
    /// for an instant, every table a view reads) and policy may follow the session.
    async fn has_masked_columns(&self, masking: &SessionMasking) -> bool {
        if let Some(found) = self.masked_columns_as_read() {
            return found;
        }
        let found = self.catalog.has_masked_columns(self.endpoint, masking, self.lookup_timeout).await.unwrap_or(true);
        *self.masked_columns.lock() = Some((Instant::now(), found));
        found
    }

    /// What the column rules reach through this session's database's views and functions; read
    /// through the shared catalog, remembered here while younger than `fresh_for`.
    async fn reached(&self, masking: &SessionMasking, fresh_for: Duration) -> Result<Arc<CatalogRules>, UpstreamError> {
        if let Some(rules) = self.reached_read_within(fresh_for) {
            return Ok(rules);
        }
        let (at, rules) =
            self.catalog.reached(self.endpoint, masking.masking(), self.lookup_timeout, fresh_for).await?;
        *self.reached.lock() = Some((at, Arc::clone(&rules)));
        Ok(rules)
    }

    fn record(&self, tracker: &mut Tracker, p: Pending, path_override: Option<&str>) {
        tracker.seq += 1;
        if !self.log.records_outcomes() {
            return;
        }
        let (error_code, error_message) = match (&p.refusal, &p.error) {
            (Some((_, code)), _) => (Some(code.to_string()), None),
            (None, Some(e)) => (Some(e.code.clone()), Some(e.message.clone())),
            (None, None) => (None, path_override.map(str::to_string)),
        };
        let path = if p.kind == Kind::Simple { "simple" } else { "extended" };
        self.log.finish(
            tracker.seq,
            Outcome {
                text: p.text,
                started_at_us: p.started_at_us,
                duration_us: p.started.elapsed().as_micros() as i64,
                decision: p.decision,
                rule: p.rule,
                detail: ActionDetail::Sql {
                    path,
                    rows: p.rows,
                    tag: p.tag,
                    error_code,
                    error_message,
                    result: p.result,
                },
            },
        );
    }

    /// The review a statement of this session is held for right now.
    pub fn holding(tracker: &Mutex<Tracker>) -> Option<i64> {
        tracker.lock().holding.as_ref().map(|(id, _)| *id)
    }

    /// Records the statements whose results went out (see `Tracker::finished`).
    fn record_finished(&self, t: &mut Tracker) {
        while let Some((p, note)) = t.finished.pop_front() {
            self.record(t, p, note);
        }
    }

    /// Records the statements that finished, then whatever the server still owed when the
    /// session ended.
    pub fn record_interrupted(&self, tracker: &Mutex<Tracker>, why: &str) {
        let mut t = tracker.lock();
        self.record_finished(&mut t);
        let note = format!("interrupted: {why}");
        if let Some((id, mut p)) = t.holding.take() {
            p.decision = "review";
            p.rule = Some(Arc::from(format!("review #{id}")));
            self.record(&mut t, p, Some(&format!("{note} (held for review #{id})")));
        }
        while let Some(p) = t.pending.pop_front() {
            if matches!(p.kind, Kind::Simple | Kind::Parse | Kind::Execute) {
                self.record(&mut t, p, Some(&note));
            }
        }
    }
}

pub(super) fn malformed(what: &str) -> RelayEnd {
    RelayEnd::ClientProtocol(PgError::fatal(sqlstate::PROTOCOL_VIOLATION, format!("malformed {what} message")))
}

/// The bytes before the first NUL (a whole body when there is none).
pub(super) fn cstr_prefix(body: &[u8]) -> &[u8] {
    body.iter().position(|&b| b == 0).map_or(body, |end| &body[..end])
}
