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

use crate::FastMap;
use crate::catalog::{CANDIDATES_FRESH_FOR, Catalog, FRESH_FOR};
use crate::codec::{self, FrameError, HEADER_LEN, Reader, peek_frame, put_cstr, put_message, tag_rows};
use crate::error::{PgError, ServerMessage, sqlstate};
use crate::mask::{self, CopyFormat, Field, ResponseMasker, RowPlan};
use crate::upstream::{PgEndpoint, UpstreamError};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use sluice_core::advice::Explanation;
use sluice_core::audit::now_us;
use sluice_core::policy::depends_on_column_masking;
use sluice_core::review::SAME_STATEMENT;
use sluice_core::sql::{ObjectName, SharedAnalysis, SqlAnalysis, SqlStatement};
use sluice_core::{Decision, Refusal, RefusalCause};
use sluice_gate::{Action, Outcome, OutcomeDetail, SessionGate, SessionLog, SqlAction, Standing};
use sluice_mask::{CatalogRules, ColumnMask, MaskAction, SessionMasking};
use sluice_sql::cache::SessionClassifier;
use sluice_sql::{BuiltinCall, Classifier, PreparedStatements};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

/// Text the server cannot parse; sent in place of a refused statement.
const REFUSAL_MARKER: &str = "sluice refused this statement";
/// The server's own frames are trusted up to PostgreSQL's 1 GiB field limit.
const MAX_SERVER_FRAME: usize = (1 << 30) + 1024;
const READ_CHUNK: usize = 16 * 1024;
/// How much of a large response the relay gathers before writing (see `defer_write`).
const COALESCE_BYTES: usize = 256 * 1024;
/// How long frames may wait for the rest of a message that ends a read (see `defer_write`).
const MAX_DEFER: std::time::Duration = std::time::Duration::from_millis(1);
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Simple,
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
    Sync,
    /// The Describe of a portal sluice sends before an Execute: its answer sets the plan for the
    /// rows and is not the client's.
    SluiceDescribe,
    /// A Close and a Sync sluice itself sent after a statement approved for one run: their
    /// CloseComplete and ReadyForQuery are not the client's and are dropped.
    SluiceClose,
    SluiceSync,
}

/// A message whose response the relay is waiting for, in the order the server will answer.
struct Pending {
    kind: Kind,
    text: Arc<str>,
    started: Instant,
    started_at_us: i64,
    rows: u64,
    tag: Option<Arc<str>>,
    error: Option<ServerMessage>,
    /// What the gateway decided, and by which rule.
    decision: &'static str,
    rule: Option<Arc<str>>,
    /// Set when sluice refused this message: the error to show instead of the server's, and its code.
    refusal: Option<(Bytes, &'static str)>,
    /// What the message does to prepared statement names, in statement order, applied as the
    /// server confirms each (see `Tracker::statements`) to the names as they were when it was sent.
    effects: Vec<NameEffect>,
    sent_at_generation: u64,
    probe: Probe,
    /// For a fast-path call: the type its result has, and the format asked for, to mask it in.
    fast_path: Option<(u32, i16)>,
}

/// Where a statement sluice cannot parse stands in the server's own parse of it (see `probe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    None,
    /// Sent: the server's error, if its raw parser raised it, is the client's as it is.
    Sent,
    /// The server parsed it (its ParseComplete and CloseComplete are dropped): sluice's own
    /// refusal replaces the marker's error that follows.
    Parsed,
}

/// What a message does to the session's prepared statement names once the server confirms it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NameEffect {
    /// SQL `PREPARE name` (its CommandComplete), and what it prepared.
    Prepare(Bytes, Arc<SqlStatement>),
    /// SQL `DEALLOCATE name` (its CommandComplete), or a protocol Close of the statement (CloseComplete).
    Deallocate(Bytes),
    /// `DEALLOCATE ALL` or `DISCARD ALL`.
    DeallocateAll,
}

impl NameEffect {
    /// The effects of a statement text's PREPAREs and DEALLOCATEs, in order (usually none).
    fn of(analysis: &SqlAnalysis) -> Vec<NameEffect> {
        let SqlAnalysis::Parsed { statements } = analysis else { return Vec::new() };
        let mut effects = Vec::new();
        for s in statements {
            if let Some(name) = &s.prepares {
                effects.push(NameEffect::Prepare(Bytes::copy_from_slice(name.as_bytes()), Arc::new(s.clone())));
            }
            match s.deallocates.as_deref() {
                Some("") => effects.push(NameEffect::DeallocateAll),
                Some(name) => effects.push(NameEffect::Deallocate(Bytes::copy_from_slice(name.as_bytes()))),
                None => {}
            }
        }
        effects
    }

    /// Whether a CommandComplete tag confirms this effect.
    fn confirmed_by(&self, tag: &[u8]) -> bool {
        match self {
            NameEffect::Prepare(..) => tag == b"PREPARE",
            NameEffect::Deallocate(_) => tag == b"DEALLOCATE",
            NameEffect::DeallocateAll => tag == b"DEALLOCATE ALL" || tag == b"DISCARD ALL",
        }
    }
}

impl Pending {
    fn new(kind: Kind, text: Arc<str>) -> Self {
        // Only statements are recorded; the messages tracked for order alone need no clock.
        let (started, started_at_us) = match kind {
            Kind::Simple | Kind::Parse | Kind::Execute => (Instant::now(), now_us()),
            _ => (untimed(), 0),
        };
        Pending {
            kind,
            text,
            started,
            started_at_us,
            rows: 0,
            tag: None,
            error: None,
            decision: "allow",
            rule: None,
            refusal: None,
            effects: Vec::new(),
            sent_at_generation: 0,
            probe: Probe::None,
            fast_path: None,
        }
    }

    /// Whether sluice's refusal replaces the server's `error`: not where a probe of a statement
    /// sluice cannot parse met the server's own syntax error, which the client gets exactly.
    fn replaces(&self, error: &ServerMessage) -> bool {
        self.refusal.is_some() && !(self.probe == Probe::Sent && error.from_raw_parser())
    }

    fn decided(mut self, decision: &Decision) -> Self {
        self.decision = decision.effect();
        self.rule = Some(match decision {
            Decision::Allow { rule } => Arc::clone(rule),
            other => Arc::from(other.rule()),
        });
        self
    }
}

/// A fast-path FunctionCall (`body`), decided as the `SELECT schema.function($1, …)` it amounts
/// to: the catalog names the function by its OID. Its result is masked as a value of the type the
/// function returns.
async fn decide_fast_path<S, R>(
    ctx: &Context<'_, S>,
    sql: &mut SessionSql<'_, S>,
    calls: &mut FastMap<u32, (Arc<str>, u32)>,
    body: &[u8],
    held: Held<'_, R>,
) -> Result<(Pending, Option<(Bytes, &'static str)>), RelayEnd>
where
    S: SessionGate,
    R: AsyncRead + Unpin,
{
    let refused = |text: Arc<str>, message: String, hint: String| {
        let mut pending = Pending::new(Kind::Simple, text);
        pending.decision = "deny";
        pending.rule = Some(Arc::from("fast-path"));
        let error = PgError::error(sqlstate::FEATURE_NOT_SUPPORTED, message).with_hint(hint);
        (pending, Some((error.to_bytes().freeze(), sqlstate::FEATURE_NOT_SUPPORTED)))
    };
    let mut r = Reader::new(body);
    let (Some(oid), Some(format)) = (r.i32(), body.len().checked_sub(2).and_then(|at| Reader::new(&body[at..]).i16()))
    else {
        return Err(malformed("FunctionCall"));
    };
    let oid = oid as u32;
    let (text, returns) = match calls.get(&oid) {
        Some((text, returns)) => (Arc::clone(text), *returns),
        None => {
            let unknown: Arc<str> = Arc::from(format!("<fast-path call of function {oid}>"));
            let function = match ctx.catalog.function_by_oid(ctx.endpoint, oid, ctx.lookup_timeout).await {
                Ok(Some(found)) => found,
                Ok(None) => {
                    let message = format!("sluice: fast-path call of function {oid}, which the database does not have");
                    return Ok(refused(unknown, message, "call the function by name with SELECT".into()));
                }
                Err(e) => {
                    let message = format!("sluice could not look up fast-path function {oid} in the catalog: {e}");
                    return Ok(refused(unknown, message, "try again, or call the function by name with SELECT".into()));
                }
            };
            let params: Vec<String> = (1..=function.args).map(|n| format!("${n}")).collect();
            let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            let text = format!("SELECT {}.{}({})", quote(&function.schema), quote(&function.name), params.join(", "));
            let text: Arc<str> = Arc::from(text);
            calls.insert(oid, (Arc::clone(&text), function.returns));
            (text, function.returns)
        }
    };
    let decided = decide_message(ctx, sql, text.as_bytes(), held).await?;
    if decided.answer.is_some() {
        let message = "sluice: this function is answered by sluice, which a fast-path call cannot be".to_string();
        return Ok(refused(decided.text, message, "call it with SELECT".into()));
    }
    let refusal = refusal_bytes(&decided.decision, &decided.text);
    let mut pending = Pending::new(Kind::Simple, decided.text).decided(&decided.decision);
    pending.fast_path = Some((returns, format));
    Ok((pending, refusal))
}

/// The start time of messages that are never recorded.
fn untimed() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// State shared by the two directions: what the server still owes, in order.
pub struct Tracker {
    pending: VecDeque<Pending>,
    /// After an error in an extended-protocol pipeline the server skips every message up to Sync,
    /// a simple Query included.
    skipping: bool,
    seq: u64,
    /// The prepared statements the server holds, by name: each protocol Parse as sent (a Bind
    /// pipelined behind it needs it), each SQL PREPARE once confirmed; removed as the server
    /// confirms a Close, DEALLOCATE or DISCARD sent after them. A Bind of a name not here is refused.
    statements: FastMap<Bytes, Named>,
    /// Counts the Parses sent, so that a removal confirmed later spares a statement prepared
    /// again under the name after it was sent.
    generation: u64,
    /// The statement held for a review, if one is (recorded as interrupted if the session ends).
    holding: Option<(i64, Pending)>,
    /// Statements whose result is complete, recorded once the client has been sent it (recording
    /// is then off the statement's round trip), with a note on what happened to them.
    finished: VecDeque<(Pending, Option<&'static str>)>,
}

impl Tracker {
    pub fn new() -> Self {
        Tracker {
            pending: VecDeque::with_capacity(16),
            skipping: false,
            seq: 0,
            statements: FastMap::default(),
            generation: 0,
            holding: None,
            finished: VecDeque::new(),
        }
    }

    /// Applies the name effect of the front message that a CommandComplete `tag` confirms.
    fn confirm(&mut self, tag: &[u8]) {
        let Some(front) = self.pending.front_mut() else { return };
        if front.effects.first().is_some_and(|e| e.confirmed_by(tag)) {
            let effect = front.effects.remove(0);
            let sent_at = front.sent_at_generation;
            self.apply(effect, sent_at);
        }
    }

    /// Applies a confirmed effect of a message sent when `generation` Parses had been.
    fn apply(&mut self, effect: NameEffect, sent_at: u64) {
        match effect {
            NameEffect::Prepare(name, prepared) => {
                let text = Arc::from(sluice_sql::execute_text(&String::from_utf8_lossy(&name)));
                self.statements.insert(name, Named { generation: sent_at, ..Named::sql(text, prepared) });
            }
            NameEffect::Deallocate(name) => {
                if let Some(named) = self.statements.get_mut(&name) {
                    if named.generation <= sent_at {
                        self.statements.remove(&name);
                    } else {
                        named.sql = None;
                    }
                }
            }
            // The unnamed statement is not one of "all".
            NameEffect::DeallocateAll => {
                self.statements.retain(|name, n| name.is_empty() || n.generation > sent_at);
                self.statements.values_mut().for_each(|n| n.sql = None);
            }
        }
    }

    /// Applies every effect of a message the server has processed (a Close, or a failed Parse).
    fn apply_all(&mut self, message: &mut Pending) {
        for effect in std::mem::take(&mut message.effects) {
            self.apply(effect, message.sent_at_generation);
        }
    }

    /// Puts a message in the reply queue, noting when it was sent relative to Parses.
    fn push(&mut self, mut pending: Pending) {
        if !pending.effects.is_empty() {
            pending.sent_at_generation = self.generation;
        }
        self.pending.push_back(pending);
    }
}

/// What the client prepared or bound under a name: the text and deciding rule, for the records
/// of the Executes that run it, and what running it does to statement names.
#[derive(Clone)]
struct Named {
    text: Arc<str>,
    decision: &'static str,
    rule: Option<Arc<str>>,
    effects: Vec<NameEffect>,
    /// For prepared statements: the Parse's count (see `Tracker::generation`).
    generation: u64,
    /// What SQL's PREPARE put under the name, if the name may run it: a Bind is then decided as
    /// an EXECUTE of it. (A Parse sent while SQL's statement holds the name keeps it: the server
    /// refuses that Parse unless a removal sent before it lands first, which clears it.)
    sql: Option<Arc<SqlStatement>>,
    /// The gate's decision epoch its allow was given in (see `Gate::decision_epoch`): a Bind in
    /// another epoch (a reload, a grant begun or ended) decides the statement again.
    epoch: Option<u64>,
}

impl Named {
    /// A statement SQL's PREPARE made: bound, it runs as `EXECUTE name`.
    fn sql(text: Arc<str>, prepared: Arc<SqlStatement>) -> Named {
        Named {
            text,
            decision: "allow",
            rule: None,
            effects: Vec::new(),
            generation: 0,
            sql: Some(prepared),
            epoch: None,
        }
    }
}

pub struct Context<'a, S: SessionGate> {
    /// Where what became of each statement goes.
    pub log: S::Log,
    pub session_id: Arc<str>,
    /// The upstream session was opened read-only (see `Obligations::read_only`).
    pub upstream_read_only: bool,
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

    /// Whether this session's database has a column that a column rule in scope covers, as read
    /// within the last second; yes when the catalog cannot be read. Where it has none, nothing a
    /// statement reads can be masked: the views and functions need not be read (which would lock,
    /// for an instant, every table a view reads) and policy may follow the session.
    async fn has_masked_columns(&self, masking: &SessionMasking) -> bool {
        if let Some((at, found)) = *self.masked_columns.lock()
            && at.elapsed() < CANDIDATES_FRESH_FOR
        {
            return found;
        }
        let found = self.catalog.has_masked_columns(self.endpoint, masking, self.lookup_timeout).await.unwrap_or(true);
        *self.masked_columns.lock() = Some((Instant::now(), found));
        found
    }

    /// What the column rules reach through this session's database's views and functions; read
    /// through the shared catalog, remembered here while younger than `fresh_for`.
    async fn reached(&self, masking: &SessionMasking, fresh_for: Duration) -> Result<Arc<CatalogRules>, UpstreamError> {
        if let Some((at, rules)) = &*self.reached.lock()
            && at.elapsed() < fresh_for
        {
            return Ok(Arc::clone(rules));
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
                detail: OutcomeDetail::Sql { path, rows: p.rows, tag: p.tag, error_code, error_message },
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

/// Client → upstream.
pub async fn client_to_upstream<S, R, W>(
    ctx: &Context<'_, S>,
    gate: &mut S,
    tracker: &Mutex<Tracker>,
    client: &mut R,
    upstream: &mut W,
) -> RelayEnd
where
    S: SessionGate,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::new();
    // Text, deciding rule and name effects of each prepared statement and portal, for the Executes.
    let mut portals: FastMap<Bytes, Named> = FastMap::default();
    // Prepared statements a review approved for one run: the review, and whether the statement was
    // bound. At the first Sync after its Bind sluice closes it upstream, so nothing can bind it
    // again (see `close_approved`). A Parse or Close from the client does not clear an entry: the
    // server may skip or refuse either.
    let mut approved_once: FastMap<Bytes, (i64, bool)> = FastMap::default();
    let mut close_at_sync: Vec<Bytes> = Vec::new();
    // Statements sluice closed that way, until the client prepares the name again: binding one is
    // refused with sluice's reason rather than the server's "does not exist".
    let mut closed_by_sluice: FastMap<Bytes, i64> = FastMap::default();
    let mut sql = SessionSql::new(gate);
    // The statement each fast-path function OID amounts to, as the catalog named it, and the
    // type it returns.
    let mut fast_path_calls: FastMap<u32, (Arc<str>, u32)> = FastMap::default();
    // Sync carries no text; one shared empty string spares an allocation per Sync.
    let no_text: Arc<str> = Arc::from("");
    let masking = ctx.masking.is_some();
    // The portal the client's previous message described: an Execute of it right after needs no
    // Describe from sluice (the client's own answer precedes the rows).
    let mut described_portal: Option<Bytes> = None;
    // Extended-protocol messages sent since the last Sync: the server may be skipping to the
    // next Sync after an error among them, and a probe's own Sync would end that early.
    let mut unsynced = false;
    // Bytes the client sent while a statement was held; they follow what is in `buf`.
    let mut early = BytesMut::new();
    loop {
        if !early.is_empty() {
            buf.extend_from_slice(&early);
            early.clear();
        } else {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            match client.read_buf(&mut buf).await {
                Ok(0) => return RelayEnd::ClientGone("connection closed without Terminate".into()),
                Ok(_) => {}
                Err(e) => return RelayEnd::ClientGone(e.to_string()),
            }
        }
        if let Some(end) = standing_end(&*sql.gate) {
            return end;
        }
        // `consumed` bytes at the front of `buf` are whole frames already handled; those not yet
        // written to `out` start at `pass_from`.
        let mut consumed = 0;
        let mut terminated = false;
        out.clear();
        let mut pass_from = 0;
        loop {
            let head = match peek_frame(&buf[consumed..], ctx.max_message_bytes) {
                Ok(Some(head)) => head,
                Ok(None) => {
                    if let Some(len) = codec::declared_len(&buf[consumed..]) {
                        buf.reserve(len.saturating_sub(buf.len() - consumed));
                    }
                    break;
                }
                Err(FrameError::TooLarge { tag, len, max }) => {
                    return RelayEnd::ClientProtocol(
                        PgError::fatal(
                            sqlstate::PROGRAM_LIMIT,
                            format!("message {:?} of {len} bytes is over sluice's limit of {max} bytes", tag as char),
                        )
                        .with_hint("raise postgres.max_message_bytes in sluice's configuration, or send less at once"),
                    );
                }
                Err(FrameError::BadLength(n)) => {
                    return RelayEnd::ClientProtocol(PgError::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("invalid message length {n}"),
                    ));
                }
            };
            let frame = &buf[consumed..consumed + head.len];
            let body = &frame[HEADER_LEN..];
            let mut replacement: Option<(BytesMut, Pending)> = None;
            // Messages sluice sends after this one (already tracked).
            let mut injected: Option<BytesMut> = None;
            // A message sluice sends before this one (already tracked).
            let mut before: Option<BytesMut> = None;
            // Only a Describe of a portal directly before its Execute spares sluice's own (a Flush
            // between them sends nothing the server answers).
            let described = if head.tag == b'H' { described_portal.clone() } else { described_portal.take() };
            match head.tag {
                b'Q' => {
                    let held = Held {
                        tracker,
                        kind: Kind::Simple,
                        approved_once: &approved_once,
                        client: &mut *client,
                        early: &mut early,
                    };
                    let decided = match decide_message(ctx, &mut sql, cstr_prefix(body), held).await {
                        Ok(decided) => decided,
                        Err(end) => return end,
                    };
                    let refusal = refusal_bytes(&decided.decision, &decided.text);
                    let mut pending = Pending::new(Kind::Simple, decided.text).decided(&decided.decision);
                    match (refusal, decided.answer) {
                        (Some(refusal), _) if unparseable(&decided.decision) && !unsynced => {
                            tracker.lock().statements.remove(&b""[..]);
                            pending.refusal = Some(refusal);
                            pending.probe = Probe::Sent;
                            replacement = Some((probe(b"", &pending.text, true), pending));
                        }
                        (Some(refusal), _) => replacement = Some(refused_simple(pending, refusal)),
                        (None, Some(answer)) => {
                            let mut query = BytesMut::new();
                            codec::query(&mut query, &answer);
                            replacement = Some((query, pending));
                        }
                        (None, None) => {
                            pending.effects = decided.effects;
                            tracker.lock().push(pending);
                        }
                    }
                }
                b'P' => {
                    let mut r = Reader::new(body);
                    let (Some(name), Some(query)) = (r.cstr(), r.cstr()) else {
                        return malformed("Parse");
                    };
                    let held = Held {
                        tracker,
                        kind: Kind::Parse,
                        approved_once: &approved_once,
                        client: &mut *client,
                        early: &mut early,
                    };
                    let epoch = sql.gate.decision_epoch();
                    let Decided { text, decision, answer, effects } =
                        match decide_message(ctx, &mut sql, query, held).await {
                            Ok(decided) => decided,
                            Err(end) => return end,
                        };
                    // Kept only if nothing changed while it was decided, and only for a plain allow.
                    let epoch = epoch.filter(|e| {
                        matches!(decision, Decision::Allow { .. }) && sql.gate.decision_epoch() == Some(*e)
                    });
                    let mut pending = Pending::new(Kind::Parse, Arc::clone(&text)).decided(&decision);
                    closed_by_sluice.remove(name);
                    match refusal_bytes(&decision, &text) {
                        None => {
                            let name = Bytes::copy_from_slice(name);
                            // Another Parse under the name does not clear it: the server may
                            // refuse that Parse, and the approved statement would stay bindable.
                            if let Decision::Approved { review_id, .. } = decision {
                                approved_once.insert(name.clone(), (review_id, false));
                            }
                            let mut t = tracker.lock();
                            t.generation += 1;
                            let sql = t.statements.get(&name).and_then(|n| n.sql.clone());
                            let named = Named {
                                text,
                                decision: pending.decision,
                                rule: pending.rule.clone(),
                                effects,
                                generation: t.generation,
                                sql,
                                epoch,
                            };
                            t.statements.insert(name.clone(), named);
                            match answer {
                                Some(answer) => {
                                    let mut parse = BytesMut::new();
                                    codec::parse(&mut parse, &name, &answer);
                                    replacement = Some((parse, pending));
                                }
                                None => t.push(pending),
                            }
                        }
                        Some(refusal) => {
                            // The server drops its unnamed statement before it parses a new one (so
                            // once it rejects this one, nothing is left under ""); a named one stays.
                            if name.is_empty() {
                                pending.effects.push(NameEffect::Deallocate(Bytes::new()));
                            }
                            let marker = if unparseable(&decision) {
                                pending.probe = Probe::Sent;
                                probe(name, &text, false)
                            } else {
                                let mut marker = BytesMut::new();
                                codec::parse(&mut marker, name, REFUSAL_MARKER);
                                marker
                            };
                            pending.refusal = Some(refusal);
                            replacement = Some((marker, pending));
                        }
                    }
                }
                b'B' => {
                    let mut r = Reader::new(body);
                    let (Some(portal), Some(statement)) = (r.cstr(), r.cstr()) else {
                        return malformed("Bind");
                    };
                    let pending = Pending::new(Kind::Bind, Arc::clone(&no_text));
                    let portal_name = Bytes::copy_from_slice(portal);
                    let named = tracker.lock().statements.get(statement).cloned();
                    // A name the server holds (or may hold, or will once a PREPARE sent before
                    // this Bind runs) from SQL PREPARE runs what was prepared: decided as an
                    // EXECUTE of it, every time, like one sent as SQL.
                    let sql_prepared = named.as_ref().and_then(|n| n.sql.clone()).or_else(|| {
                        sql.prepared
                            .ever_prepared()
                            .then(|| sql.prepared.get(statement).cloned().map(Arc::new))
                            .flatten()
                    });
                    if let Some(prepared) = sql_prepared {
                        let text: Arc<str> = Arc::from(sluice_sql::execute_text(&String::from_utf8_lossy(statement)));
                        let analysis = sql.classified.classify(ctx.classifier, &text);
                        // Resolved against what the name holds on the server, not what the
                        // session last sent under it.
                        let mut resolved = sluice_sql::resolve_by(&analysis, |_| Some(&*prepared)).into_owned();
                        if let SqlAnalysis::Parsed { statements } = &mut resolved {
                            statements.iter_mut().for_each(|s| s.executes = None);
                        }
                        let analysis: SharedAnalysis = Arc::new(resolved);
                        let held = Held {
                            tracker,
                            kind: Kind::Execute,
                            approved_once: &approved_once,
                            client: &mut *client,
                            early: &mut early,
                        };
                        let decision =
                            match approved_once.get(statement).map(|(id, _)| id).or(closed_by_sluice.get(statement)) {
                                // A name a review approved one run of through the protocol, and SQL's too.
                                Some(&review_id) => Decision::Deny(Refusal {
                                    rule: format!("review #{review_id}"),
                                    reason: format!("review #{review_id} approved one run of this prepared statement"),
                                    detail: None,
                                    hint: Some("send the statement again to ask for a new review".into()),
                                    cause: RefusalCause::Policy,
                                }),
                                None => match decide(ctx, &mut sql, &text, analysis, held).await {
                                    Ok(decision) => decision,
                                    Err(end) => return end,
                                },
                            };
                        let refusal = refusal_bytes(&decision, &text);
                        let pending = pending.decided(&decision);
                        let named = Named {
                            decision: pending.decision,
                            rule: pending.rule.clone(),
                            ..Named::sql(text, prepared)
                        };
                        portals.insert(portal_name, named);
                        match refusal {
                            Some(refusal) => replacement = Some(refused_bind(portal, refusal, pending)),
                            None => tracker.lock().push(pending),
                        }
                    } else {
                        // Allowed in another epoch (a reload, a grant begun or ended since): decided
                        // again, as the same text sent now would be. An approved run is the
                        // once-only bookkeeping's below.
                        let stale = named.as_ref().is_some_and(|n| {
                            n.decision == "allow"
                                && !approved_once.contains_key(statement)
                                && !closed_by_sluice.contains_key(statement)
                                && (n.epoch.is_none() || n.epoch != sql.gate.decision_epoch())
                        });
                        let (mut named, mut pending) = (named, pending);
                        let mut redecided_refusal = None;
                        if let Some(n) = named.as_mut().filter(|_| stale) {
                            let epoch = sql.gate.decision_epoch();
                            let analysis = sql.classified.classify(ctx.classifier, &n.text);
                            let held = Held {
                                tracker,
                                kind: Kind::Bind,
                                approved_once: &approved_once,
                                client: &mut *client,
                                early: &mut early,
                            };
                            let text = Arc::clone(&n.text);
                            let decision = match decide(ctx, &mut sql, &text, analysis, held).await {
                                Ok(decision) => decision,
                                Err(end) => return end,
                            };
                            match refusal_bytes(&decision, &text) {
                                Some(refusal) => {
                                    pending = Pending::new(Kind::Bind, text).decided(&decision);
                                    redecided_refusal = Some(refusal);
                                }
                                None => {
                                    let keep = matches!(decision, Decision::Allow { .. })
                                        && sql.gate.decision_epoch() == epoch;
                                    n.epoch = epoch.filter(|_| keep);
                                    if let Some(kept) = tracker.lock().statements.get_mut(statement) {
                                        kept.epoch = n.epoch;
                                    }
                                }
                            }
                        }
                        let refused = match (redecided_refusal, named) {
                            (Some(refusal), _) => {
                                portals.remove(portal);
                                Some(refusal)
                            }
                            (None, Some(named)) => {
                                portals.insert(portal_name, named);
                                let once = !approved_once.is_empty() || !closed_by_sluice.is_empty();
                                match approved_once.get_mut(statement).filter(|_| once) {
                                    Some((review_id, bound)) if *bound => Some(once_only_refusal(*review_id)),
                                    Some((_, bound)) => {
                                        *bound = true;
                                        close_at_sync.push(Bytes::copy_from_slice(statement));
                                        None
                                    }
                                    None if once => closed_by_sluice.get(statement).map(|id| once_only_refusal(*id)),
                                    None => None,
                                }
                            }
                            (None, None) => {
                                portals.remove(portal);
                                Some(not_prepared(statement))
                            }
                        };
                        match refused {
                            Some(refusal) => replacement = Some(refused_bind(portal, refusal, pending)),
                            None => tracker.lock().push(pending),
                        }
                    }
                }
                b'D' => {
                    let mut r = Reader::new(body);
                    let (Some(which), Some(name)) = (r.u8(), r.cstr()) else {
                        return malformed("Describe");
                    };
                    if which == b'P' {
                        described_portal = Some(Bytes::copy_from_slice(name));
                    }
                    tracker.lock().pending.push_back(Pending::new(Kind::Describe, Arc::clone(&no_text)));
                }
                b'E' => {
                    let Some(portal) = Reader::new(body).cstr() else {
                        return malformed("Execute");
                    };
                    let pending = match portals.get(portal) {
                        Some(named) => {
                            let mut pending = Pending::new(Kind::Execute, Arc::clone(&named.text));
                            pending.decision = named.decision;
                            pending.rule = named.rule.clone();
                            pending.effects = named.effects.clone();
                            pending
                        }
                        // A cursor SQL's DECLARE opened: what it runs was decided then.
                        None => Pending::new(
                            Kind::Execute,
                            Arc::from(format!("<portal {}>", String::from_utf8_lossy(portal))),
                        ),
                    };
                    let mut t = tracker.lock();
                    if masking && described.as_deref() != Some(portal) {
                        let mut describe = BytesMut::new();
                        put_message(&mut describe, b'D', |b| {
                            b.put_u8(b'P');
                            put_cstr(b, portal);
                        });
                        t.pending.push_back(Pending::new(Kind::SluiceDescribe, Arc::clone(&no_text)));
                        before = Some(describe);
                    }
                    t.push(pending);
                }
                b'S' => {
                    let mut t = tracker.lock();
                    t.pending.push_back(Pending::new(Kind::Sync, Arc::clone(&no_text)));
                    if !close_at_sync.is_empty() {
                        let mut closing = BytesMut::new();
                        close_approved(&mut closing, &close_at_sync);
                        for _ in &close_at_sync {
                            t.pending.push_back(Pending::new(Kind::SluiceClose, Arc::clone(&no_text)));
                        }
                        t.pending.push_back(Pending::new(Kind::SluiceSync, Arc::clone(&no_text)));
                        ctx.sluice_owed.fetch_add(close_at_sync.len() + 1, Ordering::AcqRel);
                        drop(t);
                        for name in close_at_sync.drain(..) {
                            if let Some((review_id, _)) = approved_once.remove(&name) {
                                closed_by_sluice.insert(name, review_id);
                            }
                        }
                        // The client's Sync, then sluice's Close messages and Sync.
                        injected = Some(closing);
                    }
                }
                b'C' => {
                    let mut r = Reader::new(body);
                    let (Some(which), Some(name)) = (r.u8(), r.cstr()) else {
                        return malformed("Close");
                    };
                    let mut pending = Pending::new(Kind::Close, Arc::clone(&no_text));
                    match which {
                        b'S' => pending.effects.push(NameEffect::Deallocate(Bytes::copy_from_slice(name))),
                        _ => {
                            portals.remove(name);
                        }
                    }
                    tracker.lock().push(pending);
                }
                b'F' => {
                    let held = Held {
                        tracker,
                        kind: Kind::Simple,
                        approved_once: &approved_once,
                        client: &mut *client,
                        early: &mut early,
                    };
                    // Answered by a FunctionCallResponse (or an error) and ReadyForQuery, as a
                    // simple query is.
                    match decide_fast_path(ctx, &mut sql, &mut fast_path_calls, body, held).await {
                        Ok((pending, Some(refusal))) => replacement = Some(refused_simple(pending, refusal)),
                        Ok((pending, None)) => tracker.lock().push(pending),
                        Err(end) => return end,
                    }
                }
                b'X' => terminated = true,
                b'H' | b'd' | b'c' | b'f' => {}
                other => {
                    return RelayEnd::ClientProtocol(PgError::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("invalid frontend message type {:?}", other as char),
                    ));
                }
            }
            if let Some(extra) = before {
                out.extend_from_slice(&buf[pass_from..consumed]);
                out.extend_from_slice(&extra);
                pass_from = consumed;
            }
            if let Some((marker, pending)) = replacement {
                out.extend_from_slice(&buf[pass_from..consumed]);
                out.extend_from_slice(&marker);
                tracker.lock().push(pending);
                pass_from = consumed + head.len;
            }
            if let Some(extra) = injected {
                out.extend_from_slice(&buf[pass_from..consumed + head.len]);
                out.extend_from_slice(&extra);
                pass_from = consumed + head.len;
            }
            match head.tag {
                b'S' => unsynced = false,
                b'P' | b'B' | b'D' | b'E' | b'C' => unsynced = true,
                _ => {}
            }
            consumed += head.len;
            if terminated {
                break;
            }
        }
        let written = if out.is_empty() {
            upstream.write_all(&buf[..consumed]).await
        } else {
            out.extend_from_slice(&buf[pass_from..consumed]);
            upstream.write_all(&out).await
        };
        if let Err(e) = written.and(upstream.flush().await) {
            return RelayEnd::UpstreamGone(e.to_string());
        }
        buf.advance(consumed);
        if terminated {
            return RelayEnd::ClientTerminated;
        }
    }
}

/// Upstream → client.
pub async fn upstream_to_client<S, R, W>(
    ctx: &Context<'_, S>,
    tracker: &Mutex<Tracker>,
    upstream: &mut R,
    mut buf: BytesMut,
    client: &mut W,
    notices: &mut mpsc::UnboundedReceiver<Bytes>,
) -> RelayEnd
where
    S: SessionGate,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    let mut fatal: Option<String> = None;
    // DataRows of the command in progress; counted here so a row costs no lock.
    let mut data_rows: u64 = 0;
    let mut last_tag: Option<Arc<str>> = None;
    // Masking: the plan for the rows in progress, the COPY OUT in progress, and a frame rewritten.
    let mut masker = ctx.masking.clone().map(ResponseMasker::new);
    let mut plan: Option<Arc<RowPlan>> = None;
    let mut copy: Option<CopyFormat> = None;
    let mut rewritten = BytesMut::new();
    // `consumed` bytes at the front of `buf` are whole frames already handled, not yet written;
    // those not yet copied to `out` start at `pass_from`. They survive a read when the write is
    // deferred (see `defer_write`).
    let mut consumed = 0;
    let mut pass_from = 0;
    // While frames are deferred: when they must go out even if the server sends nothing more.
    let mut flush_by = Box::pin(tokio::time::sleep(std::time::Duration::ZERO));
    let mut deferring = false;
    loop {
        loop {
            let head = match peek_frame(&buf[consumed..], MAX_SERVER_FRAME) {
                Ok(Some(head)) => head,
                Ok(None) => {
                    if let Some(len) = codec::declared_len(&buf[consumed..]) {
                        buf.reserve(len.saturating_sub(buf.len() - consumed));
                    }
                    break;
                }
                Err(e) => {
                    return RelayEnd::UpstreamGone(format!("invalid frame from the server: {e:?}"));
                }
            };
            let body = &buf[consumed + HEADER_LEN..consumed + head.len];
            rewritten.clear();
            if let Some(m) = masker.as_mut() {
                match head.tag {
                    b'D' => {
                        // Rows always follow the RowDescription that shapes them: the result's own
                        // (simple protocol) or the portal's, described right before its Execute.
                        let plan = plan.get_or_insert_with(|| {
                            tracing::warn!(session = %ctx.session_id, "a row arrived with no description; masking it as of unknown shape");
                            Arc::new(RowPlan::unknown(m.session().has_column_rules()))
                        });
                        if plan.is_active() {
                            m.data_row(plan, body, &mut rewritten);
                        }
                    }
                    b'T' => {
                        plan = Some(match m.cached_plan(body) {
                            Some(p) => p,
                            None => {
                                let p = Arc::new(row_plan(ctx, m.session(), body).await);
                                m.remember_plan(body, &p);
                                p
                            }
                        });
                    }
                    b'H' => copy = Some(mask::copy_format(body)),
                    b'd' => {
                        if let Some(format) = copy {
                            m.copy_data(format, body, &mut rewritten);
                        }
                    }
                    b'E' | b'N' => {
                        m.notice(head.tag, body, &mut rewritten);
                    }
                    b'A' => {
                        m.notification(body, &mut rewritten);
                    }
                    b'V' => {
                        // A fast-path call's result; a type sluice does not know is scanned whole.
                        let (type_oid, format) =
                            tracker.lock().pending.front().and_then(|p| p.fast_path).unwrap_or((0, 0));
                        m.function_result(type_oid, format, body, &mut rewritten);
                    }
                    b'S' => {
                        m.parameter_status(body, &mut rewritten);
                    }
                    _ => {}
                }
                if matches!(head.tag, b'n' | b'C' | b'E' | b's' | b'I' | b'Z' | b'c') {
                    plan = None;
                    copy = None;
                }
            }
            // The body the gateway reads is what the client will see.
            let body = if rewritten.is_empty() { body } else { &rewritten[HEADER_LEN..] };
            let mut drop_frame = false;
            match head.tag {
                b'D' => data_rows += 1,
                b'C' => {
                    let tag = cstr_prefix(body);
                    let rows = if data_rows > 0 { data_rows } else { tag_rows(tag) };
                    data_rows = 0;
                    let mut t = tracker.lock();
                    t.confirm(tag);
                    if let Some(front) = t.pending.front_mut() {
                        front.rows += rows;
                        front.tag = Some(same_tag(&mut last_tag, tag));
                        if front.kind == Kind::Execute {
                            let p = t.pending.pop_front().expect("front exists");
                            t.finished.push_back((p, None));
                        }
                    }
                }
                b'I' | b's' => {
                    let mut t = tracker.lock();
                    if t.pending.front().is_some_and(|p| p.kind == Kind::Execute) {
                        let mut p = t.pending.pop_front().expect("front exists");
                        p.rows += std::mem::take(&mut data_rows);
                        t.finished.push_back((p, None));
                    }
                }
                b'S' => {
                    let mut r = Reader::new(body);
                    if r.cstr() == Some(b"standard_conforming_strings") {
                        ctx.backslash_strings.store(r.cstr() == Some(b"off"), Ordering::Release);
                    }
                }
                b'1' | b'2' => {
                    let expected = if head.tag == b'1' { Kind::Parse } else { Kind::Bind };
                    let mut t = tracker.lock();
                    if let Some(front) = t.pending.front_mut()
                        && front.probe != Probe::None
                        && head.tag == b'1'
                    {
                        front.probe = Probe::Parsed;
                        drop_frame = true;
                    } else if t.pending.front().is_some_and(|p| p.kind == expected) {
                        t.pending.pop_front();
                    }
                }
                // A Describe is answered by a RowDescription or NoData (a statement's after its
                // ParameterDescription); the answer to sluice's own is not the client's.
                b'T' | b'n' => {
                    let mut t = tracker.lock();
                    match t.pending.front().map(|p| p.kind) {
                        Some(Kind::Describe) => {
                            t.pending.pop_front();
                        }
                        Some(Kind::SluiceDescribe) => {
                            t.pending.pop_front();
                            drop_frame = true;
                        }
                        _ => {}
                    }
                }
                // The answers to sluice's own Close and Sync are not the client's.
                // (Checked without the lock first: almost always nothing of sluice's is owed.)
                b'3' | b'Z' | b'E' if ctx.sluice_owed.load(Ordering::Acquire) > 0 && front_is_sluices(tracker) => {
                    let mut t = tracker.lock();
                    let mut answered = 0;
                    match head.tag {
                        b'3' => {
                            t.pending.pop_front();
                            answered = 1;
                        }
                        b'E' => {
                            tracing::warn!(session = %ctx.session_id, error = %ServerMessage::parse(body).message,
                                "closing a statement approved for one run failed");
                            // The server skips the other Closes up to sluice's Sync.
                            while t.pending.front().is_some_and(|p| p.kind == Kind::SluiceClose) {
                                t.pending.pop_front();
                                answered += 1;
                            }
                        }
                        _ => {
                            while let Some(p) = t.pending.pop_front() {
                                answered += 1;
                                if p.kind == Kind::SluiceSync {
                                    break;
                                }
                            }
                        }
                    }
                    ctx.sluice_owed.fetch_sub(answered, Ordering::AcqRel);
                    drop_frame = true;
                }
                b'3' => {
                    let mut t = tracker.lock();
                    if t.pending.front().is_some_and(|p| p.probe != Probe::None) {
                        drop_frame = true;
                    } else if t.pending.front().is_some_and(|p| p.kind == Kind::Close)
                        && let Some(mut close) = t.pending.pop_front()
                    {
                        t.apply_all(&mut close);
                    }
                }
                b'E' => {
                    let message = ServerMessage::parse(body);
                    let partial_rows = std::mem::take(&mut data_rows);
                    let mut t = tracker.lock();
                    if message.is_fatal() {
                        fatal = Some(format!("{} ({})", message.message, message.code));
                    }
                    match t.pending.front().map(|p| p.kind) {
                        // A simple query's error ends it; its ReadyForQuery follows.
                        Some(Kind::Simple) => {
                            if let Some(front) = t.pending.front_mut() {
                                front.rows += partial_rows;
                                if front.replaces(&message)
                                    && let Some((substitute, _)) = &front.refusal
                                {
                                    rewritten.clear();
                                    rewritten.extend_from_slice(substitute);
                                }
                                front.error.get_or_insert(message);
                            }
                        }
                        // An error at Sync (a deferred constraint at commit), or one no message
                        // asked for (the server shutting down).
                        Some(Kind::Sync | Kind::SluiceClose | Kind::SluiceSync) | None => {}
                        // An extended-protocol message failed: the server skips everything up to
                        // Sync. A Bind's error (a bad parameter, a constant folded at planning), or
                        // that of sluice's Describe, is the Execute's that follows it.
                        Some(_) => {
                            if let Some(failed) = t.pending.pop_front() {
                                let partial = (partial_rows, message);
                                pipeline_failed(&mut t, failed, partial, &mut rewritten);
                            }
                        }
                    }
                }
                b'Z' => {
                    let mut t = tracker.lock();
                    let skipped = std::mem::take(&mut t.skipping);
                    while let Some(p) = t.pending.pop_front() {
                        let note = (skipped && p.refusal.is_none())
                            .then_some("not executed: an earlier message in the same pipeline failed");
                        match p.kind {
                            Kind::Sync => break,
                            // A simple query ends with its own ReadyForQuery, unless an error
                            // before it in a pipeline made the server skip it.
                            Kind::Simple if !skipped => {
                                t.finished.push_back((p, None));
                                break;
                            }
                            Kind::Simple => t.finished.push_back((p, note)),
                            Kind::Parse if p.refusal.is_some() => t.finished.push_back((p, None)),
                            Kind::Execute => t.finished.push_back((p, note)),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            if !rewritten.is_empty() || drop_frame {
                out.extend_from_slice(&buf[pass_from..consumed]);
                if !drop_frame {
                    out.extend_from_slice(&rewritten);
                }
                pass_from = consumed + head.len;
            }
            consumed += head.len;
        }
        if consumed > 0 {
            if defer_write(&buf, consumed) {
                if !deferring {
                    deferring = true;
                    flush_by.as_mut().reset(tokio::time::Instant::now() + MAX_DEFER);
                }
            } else {
                deferring = false;
                if let Err(e) = write_frames(client, &mut buf, &mut consumed, &mut pass_from, &mut out).await {
                    return RelayEnd::ClientGone(e.to_string());
                }
                if buf.is_empty() && buf.capacity() > KEEP_BUFFER_BYTES {
                    // A large result grew the buffer; an idle session does not keep it.
                    buf = BytesMut::with_capacity(READ_CHUNK);
                }
            }
        }
        if !deferring {
            let mut t = tracker.lock();
            if !t.finished.is_empty() {
                ctx.record_finished(&mut t);
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            biased;
            read = upstream.read_buf(&mut buf) => read,
            () = &mut flush_by, if deferring => {
                deferring = false;
                if let Err(e) = write_frames(client, &mut buf, &mut consumed, &mut pass_from, &mut out).await {
                    return RelayEnd::ClientGone(e.to_string());
                }
                continue;
            }
            Some(notice) = notices.recv() => {
                // Between two whole batches of the server's messages, so never inside one.
                deferring = false;
                let written = write_frames(client, &mut buf, &mut consumed, &mut pass_from, &mut out).await;
                if let Err(e) = written.and(client.write_all(&notice).await).and(client.flush().await) {
                    return RelayEnd::ClientGone(e.to_string());
                }
                continue;
            }
        };
        if !matches!(read, Ok(n) if n > 0) {
            // The whole frames gathered before the server went away are still the client's.
            let _ = write_frames(client, &mut buf, &mut consumed, &mut pass_from, &mut out).await;
        }
        match read {
            Ok(0) => {
                return match fatal {
                    Some(why) => RelayEnd::UpstreamFatal(why),
                    None => RelayEnd::UpstreamGone("connection closed".into()),
                };
            }
            Ok(_) => {}
            Err(e) => return RelayEnd::UpstreamGone(e.to_string()),
        }
    }
}

/// A command tag as recorded: the previous one again when it is the same (a session mostly
/// repeats `SELECT 1` and the like), so that recording it costs no allocation.
fn same_tag(last: &mut Option<Arc<str>>, tag: &[u8]) -> Arc<str> {
    match last {
        Some(same) if same.as_bytes() == tag => Arc::clone(same),
        _ => Arc::clone(last.insert(Arc::from(String::from_utf8_lossy(tag)))),
    }
}

/// Whether to read more before writing the `consumed` bytes of whole frames at the front of `buf`.
/// When the server's bytes end inside a message, it is streaming a large response: PostgreSQL
/// flushes mid-message when its 8 KiB send buffer is full. Writing what is whole at once would
/// wake the client for every 8 KiB, twice the wake-ups of a direct connection, which on a busy
/// host costs more than the relay itself; gathering up to `COALESCE_BYTES` first lets the client
/// take the result in a few large reads. The rest of the split message usually follows within
/// microseconds, but a server producing rows slowly may keep it for a long time, so frames never
/// wait more than `MAX_DEFER`.
fn defer_write(buf: &[u8], consumed: usize) -> bool {
    buf.len() > consumed && consumed < COALESCE_BYTES
}

/// Writes the frames handled so far and drops them from `buf`: `out` holds what was rewritten up to
/// `pass_from`, and the rest up to `consumed` goes as it came. Leaves `out` empty and both marks at 0.
async fn write_frames<W: AsyncWrite + Unpin>(
    client: &mut W,
    buf: &mut BytesMut,
    consumed: &mut usize,
    pass_from: &mut usize,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    if *consumed == 0 {
        return Ok(());
    }
    let written = if out.is_empty() {
        client.write_all(&buf[*pass_from..*consumed]).await
    } else {
        out.extend_from_slice(&buf[*pass_from..*consumed]);
        client.write_all(out).await
    };
    out.clear();
    buf.advance(*consumed);
    *consumed = 0;
    *pass_from = 0;
    written?;
    client.flush().await
}

/// An extended-protocol message failed: the server skips everything up to Sync. The error goes to
/// the client as sluice's own when sluice refused the message, and into the record of the statement
/// it belongs to: a Bind's (a bad parameter, a constant folded at planning), or that of sluice's
/// Describe, is the error of the Execute that follows.
fn pipeline_failed(
    t: &mut Tracker,
    mut failed: Pending,
    (rows, message): (u64, ServerMessage),
    rewritten: &mut BytesMut,
) {
    if failed.replaces(&message)
        && let Some((substitute, _)) = &failed.refusal
    {
        rewritten.clear();
        rewritten.extend_from_slice(substitute);
    }
    if failed.kind == Kind::Parse {
        t.apply_all(&mut failed);
    }
    let owner = match failed.kind {
        Kind::Bind | Kind::SluiceDescribe => {
            while t.pending.front().is_some_and(|p| matches!(p.kind, Kind::Describe | Kind::SluiceDescribe)) {
                t.pending.pop_front();
            }
            match t.pending.front().map(|p| p.kind) {
                Some(Kind::Execute) => t.pending.pop_front().map(|p| Pending { refusal: failed.refusal, ..p }),
                _ => None,
            }
        }
        Kind::Parse | Kind::Execute => Some(failed),
        _ => None,
    };
    if let Some(mut p) = owner {
        p.rows += rows;
        p.error = Some(message);
        t.finished.push_back((p, None));
    }
    t.skipping = true;
}

/// Whether the server is answering a message sluice sent itself (see `close_approved`).
fn front_is_sluices(tracker: &Mutex<Tracker>) -> bool {
    tracker.lock().pending.front().is_some_and(|p| matches!(p.kind, Kind::SluiceClose | Kind::SluiceSync))
}

/// The plan for a RowDescription: each column's type class and format, and its column rule.
async fn row_plan<S: SessionGate>(ctx: &Context<'_, S>, session: &SessionMasking, description: &[u8]) -> RowPlan {
    let strict = session.has_column_rules();
    let Some(fields) = mask::row_description(description) else {
        return RowPlan::unknown(strict);
    };
    let masks = if strict { column_masks(ctx, session, &fields).await } else { Vec::new() };
    RowPlan::new(&fields, &masks)
}

/// The column rule of each described field: table and column names looked up by OID, matched
/// against the session's rules. When the names cannot be looked up, every column that comes from
/// a table is masked to NULL (fail closed).
async fn column_masks<S: SessionGate>(
    ctx: &Context<'_, S>,
    session: &SessionMasking,
    fields: &[Field],
) -> Vec<Option<ColumnMask>> {
    let oids: Vec<u32> = fields.iter().map(|f| f.table_oid).filter(|&oid| oid != 0).collect();
    if oids.is_empty() {
        return Vec::new();
    }
    let looked_up = match ctx.catalog.tables(ctx.endpoint, &oids, ctx.lookup_timeout).await {
        Ok(tables) => {
            let system = |schema: &str| matches!(schema, "pg_catalog" | "information_schema");
            let unknown_view = |views: &CatalogRules| {
                tables.values().any(|t| t.view && !system(&t.schema) && !views.knows(&t.schema, &t.name))
            };
            let views = if tables.values().any(|t| t.view) && ctx.has_masked_columns(session).await {
                ctx.reached_knowing(session, unknown_view).await
            } else {
                Ok(Arc::default())
            };
            views.map(|views| (tables, views))
        }
        Err(e) => Err(e),
    };
    match looked_up {
        Ok((tables, views)) => fields
            .iter()
            .map(|f| {
                let table = tables.get(&f.table_oid)?;
                let column = table.column(f.column)?;
                session
                    .column(&table.schema, &table.name, column)
                    .or_else(|| session.view_column(&views, &table.schema, &table.name, column))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(session = %ctx.session_id, error = %e, "cannot look up column names for masking; masking every table column");
            let unresolved = ColumnMask { label: Arc::from("unresolved-column"), action: MaskAction::Null };
            fields.iter().map(|f| (f.table_oid != 0).then(|| unresolved.clone())).collect()
        }
    }
}

/// A Query's or Parse's text and what the gateway made of it.
struct Decided {
    text: Arc<str>,
    decision: Decision,
    /// The query that answers a call of sluice's own functions instead (see `answer_builtin`).
    answer: Option<String>,
    /// What running it does to prepared statement names.
    effects: Vec<NameEffect>,
}

/// The text of a Query or Parse and the decision on it. Statements are decided as UTF-8 text; bytes
/// that are not UTF-8 would be judged on a lossy reading of what the server runs, so they are refused.
async fn decide_message<S, R>(
    ctx: &Context<'_, S>,
    sql: &mut SessionSql<'_, S>,
    query: &[u8],
    held: Held<'_, R>,
) -> Result<Decided, RelayEnd>
where
    S: SessionGate,
    R: AsyncRead + Unpin,
{
    let Ok(text) = std::str::from_utf8(query) else {
        let text = Arc::from(String::from_utf8_lossy(query).as_ref());
        return Ok(Decided { text, decision: not_utf8(), answer: None, effects: Vec::new() });
    };
    let text: Arc<str> = Arc::from(text);
    // With standard_conforming_strings off (where the policy enforces nothing, or changed where
    // sluice could not see it), plain literals are read with backslash escapes, as the server
    // reads them. (Where the policy enforces something the setting stays on: a statement
    // pipelined behind a change would be read before the server reports it.)
    let escaped =
        if ctx.backslash_strings.load(Ordering::Acquire) { sluice_sql::with_standard_strings(&text) } else { None };
    let analysis = sql.classified.classify(ctx.classifier, escaped.as_deref().unwrap_or(&text));
    if sluice_sql::calls_builtin(&analysis) {
        let (decision, answer) = answer_builtin(ctx, sql, &text).await;
        return Ok(Decided { text, decision, answer, effects: Vec::new() });
    }
    let effects = NameEffect::of(&analysis);
    let decision = decide(ctx, sql, &text, analysis, held).await?;
    Ok(Decided { text, decision, answer: None, effects })
}

/// sluice's own functions, `sluice.policy()` and `sluice.explain('…')`: answered by the gateway,
/// never by the server. The answer travels as a query of constant rows that replaces the message,
/// so the client gets it in whatever protocol, pipeline and format it asked for (and masked like
/// any result).
async fn answer_builtin<S: SessionGate>(
    ctx: &Context<'_, S>,
    sql: &mut SessionSql<'_, S>,
    text: &str,
) -> (Decision, Option<String>) {
    let call = match sluice_sql::builtin_call(text) {
        Ok(call) => call,
        Err(usage) => {
            let refusal = Refusal {
                rule: "sluice-functions".into(),
                reason: usage,
                detail: None,
                hint: Some("SELECT sluice.policy() lists what applies to you on this connection".into()),
                cause: RefusalCause::Policy,
            };
            return (Decision::Deny(refusal), None);
        }
    };
    let (rule, rows) = match call {
        BuiltinCall::Policy => ("sluice.policy()", sql.gate.permissions().rows()),
        BuiltinCall::Explain(statement) => {
            let analysis = sql.classified.classify(ctx.classifier, &statement);
            let resolved = sql.prepared.resolve(&analysis);
            let explanation = match through_server_objects(ctx, &resolved).await {
                Some(refusal) => Explanation::refused(&refusal),
                None => sql.gate.explain(&Action::Sql(SqlAction {
                    text: &statement,
                    analysis: &resolved,
                    shared: None,
                    masked_columns_here: true,
                })),
            };
            ("sluice.explain()", explanation.rows())
        }
    };
    (Decision::Allow { rule: Arc::from(rule) }, Some(sluice_sql::answer_query(&rows)))
}

/// What a session keeps of SQL between its statements, and the engine's session it asks.
struct SessionSql<'g, S> {
    gate: &'g mut S,
    classified: SessionClassifier,
    /// Statements prepared with SQL's PREPARE, for the EXECUTEs that run them.
    prepared: PreparedStatements,
    /// A statement was allowed only because no column rule in scope reached the database (a role
    /// assumed, the search_path or string mode changed, dynamic SQL): should one reach it later,
    /// the session cannot go on (see `masked_columns_here`).
    relied_on_no_masking: bool,
}

impl<'g, S> SessionSql<'g, S> {
    fn new(gate: &'g mut S) -> Self {
        SessionSql {
            gate,
            classified: SessionClassifier::default(),
            prepared: PreparedStatements::default(),
            relied_on_no_masking: false,
        }
    }
}

/// Decides a classified message: resolves SQL-level EXECUTEs against this session's PREPAREs and
/// asks the gate; a statement held for a review is waited for here (see `hold`).
async fn decide<S, R>(
    ctx: &Context<'_, S>,
    sql: &mut SessionSql<'_, S>,
    text: &str,
    analysis: SharedAnalysis,
    held: Held<'_, R>,
) -> Result<Decision, RelayEnd>
where
    S: SessionGate,
    R: AsyncRead + Unpin,
{
    if let Some(refusal) = executes_approved(&analysis, held.approved_once) {
        return Ok(Decision::Deny(refusal));
    }
    // Listening for a cancel from here on: one sent while the review is being created counts too.
    let cancelled = ctx.cancel.notified();
    let decision = {
        let resolved = sql.prepared.resolve(&analysis);
        let masked_here = masked_columns_here(ctx, sql, &resolved).await?;
        match through_server_objects(ctx, &resolved).await {
            Some(refusal) => Decision::Deny(refusal),
            None => {
                // What an EXECUTE runs is resolved afresh each time: no allow is kept for it.
                let shared = matches!(resolved, Cow::Borrowed(_)).then_some(&analysis);
                let action =
                    Action::Sql(SqlAction { text, analysis: &resolved, shared, masked_columns_here: masked_here });
                let decision = sql.gate.decide(&action).await;
                sql.relied_on_no_masking |= !masked_here && decision.allows();
                decision
            }
        }
    };
    let decision = match decision {
        Decision::Hold(h) => hold(ctx, &*sql.gate, text, &h, held, cancelled).await?,
        decision => decision,
    };
    if decision.allows() {
        sql.prepared.note_allowed(&analysis);
    }
    Ok(decision)
}

/// With column rules in scope, a statement that computes on (or copies) view columns carrying a
/// masked column is refused as one doing so with the column itself is (the gateway checks the
/// columns of tables), and so is one calling a function whose body reads a masked column. When
/// the catalog cannot be read, that cannot be ruled out: refused.
/// A read-only session's call of a volatile user-defined function is refused first (see
/// `volatile_user_function`).
async fn through_server_objects<S: SessionGate>(ctx: &Context<'_, S>, analysis: &SqlAnalysis) -> Option<Refusal> {
    if let Some(refusal) = volatile_user_function(ctx, analysis).await {
        return Some(refusal);
    }
    let session = ctx.masking.as_ref().filter(|m| m.has_column_rules())?;
    if !matches!(analysis, SqlAnalysis::Parsed { .. }) || !ctx.has_masked_columns(session).await {
        return None;
    }
    // (A function name that exists nowhere costs a reading each time; the server refuses it anyway.)
    match ctx.reached_knowing(session, |r| r.calls_unknown_function(analysis)).await {
        Ok(reached) if reached.is_empty() => None,
        Ok(reached) => session.catalog_problem(&reached, analysis).map(sluice_mask::lineage_refusal),
        Err(e) => Some(Refusal {
            rule: "masking".into(),
            reason: format!(
                "sluice cannot read the server's views and functions to check them for masked columns: {e}"
            ),
            detail: None,
            hint: Some(
                "retry in a moment; if it persists, the upstream server is unreachable or refuses catalog reads".into(),
            ),
            cause: RefusalCause::Policy,
        }),
    }
}

/// In a session whose upstream is read-only: a call of a user-defined function PostgreSQL marks
/// VOLATILE (it may have effects the read-only transaction does not stop: an advisory lock, a
/// dblink call), refused naming it.
async fn volatile_user_function<S: SessionGate>(ctx: &Context<'_, S>, analysis: &SqlAnalysis) -> Option<Refusal> {
    if !ctx.upstream_read_only {
        return None;
    }
    let SqlAnalysis::Parsed { statements } = analysis else { return None };
    let called: Vec<&ObjectName> =
        statements.iter().flat_map(|s| &s.functions).filter(|f| f.schema.as_deref() != Some("pg_catalog")).collect();
    if called.is_empty() {
        return None;
    }
    let read = |fresh_for| ctx.catalog.functions(ctx.endpoint, ctx.lookup_timeout, fresh_for);
    // A name the last reading does not know may be a function made since.
    let functions = match read(FRESH_FOR).await {
        Ok(known) if called.iter().any(|c| !known.knows(&c.name)) => read(Duration::ZERO).await,
        other => other,
    };
    let hint = |what: &str| {
        Some(format!("{what}; otherwise leave it out, or ask an operator for a connection where it is allowed"))
    };
    match functions {
        Ok(functions) => called.iter().find(|c| functions.volatile(c.schema.as_deref(), &c.name)).map(|f| Refusal {
            rule: "read-only".into(),
            reason: format!(
                "this session is read-only, and {f}() is a user-defined function PostgreSQL marks VOLATILE: \
                 it may have effects beyond reading"
            ),
            detail: Some(format!("call of {f}()")),
            hint: hint("if it only reads, its owner can say so with ALTER FUNCTION … STABLE"),
            cause: RefusalCause::Policy,
        }),
        Err(e) => Some(Refusal {
            rule: "read-only".into(),
            reason: format!("sluice cannot read the server's functions to tell whether a call has side effects: {e}"),
            detail: None,
            hint: Some("retry in a moment; if it persists, the upstream server refuses catalog reads".into()),
            cause: RefusalCause::Policy,
        }),
    }
}

fn not_utf8() -> Decision {
    Decision::Deny(Refusal {
        rule: "encoding".into(),
        reason: "the statement is not valid UTF-8".into(),
        detail: None,
        hint: Some("send statements in UTF-8 (sluice sets client_encoding to UTF8 for every session)".into()),
        cause: RefusalCause::Unparseable,
    })
}

/// SQL `EXECUTE name` of a prepared statement a review approved for one run (Parse and SQL
/// PREPARE share one namespace): refused, so the run stays the one Bind sluice counts.
fn executes_approved(analysis: &SqlAnalysis, approved_once: &FastMap<Bytes, (i64, bool)>) -> Option<Refusal> {
    let sluice_core::sql::SqlAnalysis::Parsed { statements } = analysis else { return None };
    if approved_once.is_empty() {
        return None;
    }
    let (name, (review_id, _)) = statements
        .iter()
        .filter_map(|s| s.executes.as_deref())
        .find_map(|name| approved_once.get_key_value(name.as_bytes()).map(|(_, v)| (name, v)))?;
    Some(Refusal {
        rule: format!("review #{review_id}"),
        reason: format!("review #{review_id} approved one run of prepared statement \"{name}\" through the protocol"),
        detail: None,
        hint: Some("bind it (Bind/Execute) once, or send the statement itself to ask for a new review".into()),
        cause: RefusalCause::Policy,
    })
}

/// What holding a statement needs besides the gate: the tracker (to name the review if the session
/// ends), and the client, which is still read so that a hang-up ends the wait.
struct Held<'a, R> {
    tracker: &'a Mutex<Tracker>,
    kind: Kind,
    /// Statements approved for one run (SQL `EXECUTE` of them is refused).
    approved_once: &'a FastMap<Bytes, (i64, bool)>,
    client: &'a mut R,
    /// What the client sent while it waited, handled once the held statement is.
    early: &'a mut BytesMut,
}

/// Holds a statement for its review: tells the client (a NoticeResponse), then waits for the
/// gate's answer, a cancel request, or the client hanging up.
/// How the session ends if it may not go on (see `Gate::session_standing`).
fn standing_end<S: SessionGate>(gate: &S) -> Option<RelayEnd> {
    match gate.standing() {
        Standing::Valid => None,
        Standing::CredentialEnded => {
            let e = PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                format!(
                    "sluice: the token this session was opened with ({}) has been revoked or has expired",
                    gate.principal().credential_id
                ),
            )
            .with_hint("reconnect with a valid token; `sluice token list` shows each token's state");
            Some(RelayEnd::CredentialEnded(e))
        }
        Standing::AccessEnded => {
            let e = PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION,
                "sluice: the write access this session was opened with has ended (its access grant expired \
                 or was revoked, or the policy changed), and its upstream session is not read-only",
            )
            .with_hint("reconnect: a new session is read-only; `sluice access request` asks for write access again");
            Some(RelayEnd::AccessEnded(e))
        }
    }
}

/// How often a held statement's session checks that it may still go on.
const HOLD_STANDING_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

async fn hold<S, R>(
    ctx: &Context<'_, S>,
    gate: &S,
    text: &str,
    hold: &sluice_core::Hold,
    held: Held<'_, R>,
    cancelled: tokio::sync::futures::Notified<'_>,
) -> Result<Decision, RelayEnd>
where
    S: SessionGate,
    R: AsyncRead + Unpin,
{
    let notice = PgError::notice(hold.notice.clone()).with_hint(hold.hint.clone());
    // The session's other direction writes it between two of the server's messages.
    let _ = ctx.notices.send(notice.to_bytes().freeze());
    held.tracker.lock().holding = Some((hold.review_id, Pending::new(held.kind, Arc::from(text))));
    tokio::pin!(cancelled);
    let waited = gate.await_review(hold);
    tokio::pin!(waited);
    let mut standing = tokio::time::interval(HOLD_STANDING_CHECK);
    let outcome = loop {
        let room = ctx.max_message_bytes.saturating_sub(held.early.len());
        tokio::select! {
            decision = &mut waited => break Ok(decision),
            // A token revoked (or write access ended) while the statement waits: it never runs.
            _ = standing.tick() => if let Some(end) = standing_end(gate) {
                break Err(end);
            },
            _ = &mut cancelled => break Ok(Decision::Deny(Refusal {
                rule: hold.rule.clone(),
                reason: format!("canceling statement due to user request (review #{} stays open)", hold.review_id),
                detail: None,
                hint: Some(format!("once review #{} is approved, re-run {SAME_STATEMENT}: it runs once", hold.review_id)),
                cause: RefusalCause::Cancelled,
            })),
            read = held.client.read_buf(held.early), if room > 0 => match read {
                Ok(0) => break Err(RelayEnd::ClientGone(format!("hung up while review #{} was pending", hold.review_id))),
                Ok(_) => {}
                Err(e) => break Err(RelayEnd::ClientGone(e.to_string())),
            },
        }
    };
    if outcome.is_ok() {
        // Decided: the statement is the relay's again. (A client gone keeps it, to be recorded.)
        held.tracker.lock().holding = None;
    }
    outcome
}

/// The client's error for a refusal of `text` (`None` when the decision allows). A statement refused
/// as unparseable gets exactly the server's syntax error — its message and position, no word of
/// sluice — so clients fix their SQL as usual; that sluice refused it is in the recording.
fn refusal_bytes(decision: &Decision, text: &str) -> Option<(Bytes, &'static str)> {
    let (refusal, what) = match decision {
        Decision::Allow { .. } | Decision::Approved { .. } => return None,
        Decision::Deny(r) => (r, "refused by rule"),
        Decision::Review(r) => (r, "needs approval under rule"),
        // Resolved by `decide` before anything asks for bytes; refused if it ever gets here.
        Decision::Hold(h) => {
            let error = PgError::error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("sluice: review #{} is still open", h.review_id),
            )
            .with_hint(h.hint.clone());
            return Some((error.to_bytes().freeze(), sqlstate::INSUFFICIENT_PRIVILEGE));
        }
    };
    let code = match refusal.cause {
        RefusalCause::Policy => sqlstate::INSUFFICIENT_PRIVILEGE,
        RefusalCause::Unparseable => sqlstate::SYNTAX_ERROR,
        RefusalCause::Cancelled => sqlstate::QUERY_CANCELED,
    };
    if refusal.cause == RefusalCause::Unparseable {
        let mut error = PgError::error(code, refusal.reason.clone());
        error.position = sluice_sql::error_position(text);
        return Some((error.to_bytes().freeze(), code));
    }
    let mut error = PgError::error(code, format!("sluice: {what} \"{}\": {}", refusal.rule, refusal.reason));
    error.detail = refusal.detail.clone();
    error.hint = refusal.hint.clone();
    Some((error.to_bytes().freeze(), code))
}

/// Whether the database may hold a column that a column rule in scope covers, as the decision of
/// `analysis` should assume: read from the catalog (cached for a second) only when the session has
/// column rules and the decision depends on it, or the session relied on there being none before
/// (then a column that has come to exist since ends the session: what it set is not what sluice's
/// masking reads under). Anything unknown counts as yes.
async fn masked_columns_here<S: SessionGate>(
    ctx: &Context<'_, S>,
    sql: &SessionSql<'_, S>,
    analysis: &SqlAnalysis,
) -> Result<bool, RelayEnd> {
    let Some(masking) = ctx.masking.as_ref().filter(|m| m.has_column_rules()) else { return Ok(true) };
    if !sql.relied_on_no_masking && !depends_on_column_masking(analysis) {
        return Ok(true);
    }
    let here = ctx.has_masked_columns(masking).await;
    if here && sql.relied_on_no_masking {
        let e = PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "sluice: a column that a masking rule covers now exists in this database, and this session changed its \
             role, search_path or string mode (or ran dynamic SQL) while none did",
        )
        .with_hint(
            "reconnect: in a new session those stay as the connection sets them, so masking can read every statement",
        );
        return Err(RelayEnd::MaskingArrived(e));
    }
    Ok(here)
}

/// Whether a decision refuses a statement sluice's parser rejects (not one that is not UTF-8: the
/// server would be asked about a reading of it that is not what the client sent).
fn unparseable(decision: &Decision) -> bool {
    matches!(decision, Decision::Deny(r) if r.cause == RefusalCause::Unparseable && r.rule == "unparseable")
}

/// What sluice sends in place of a statement its parser rejects, so that the client gets the
/// server's own syntax error (message, position, hint: its grammar, which may differ from
/// libpg_query's): a Parse of the text under `name`, which runs nothing, then a Close of it and
/// a Parse of the refusal marker. Where the server's raw parser rejects the text, it skips the
/// rest up to Sync and its error goes to the client as it is. Where the server parses it, the
/// statement is closed again (nothing can bind it) and sluice's refusal replaces the marker's
/// error. Either way the server's transaction fails, as it would have. `sync` ends a simple
/// Query's stand-in.
fn probe(name: &[u8], text: &str, sync: bool) -> BytesMut {
    let mut out = BytesMut::new();
    codec::parse(&mut out, name, text);
    codec::close_statement(&mut out, name);
    codec::parse(&mut out, name, REFUSAL_MARKER);
    if sync {
        codec::sync(&mut out);
    }
    out
}

/// A simple-protocol message refused in place: the marker query the server will reject, and the
/// pending entry whose error replaces the server's.
fn refused_simple(mut pending: Pending, refusal: (Bytes, &'static str)) -> (BytesMut, Pending) {
    let mut marker = BytesMut::new();
    codec::query(&mut marker, REFUSAL_MARKER);
    pending.refusal = Some(refusal);
    (marker, pending)
}

/// Close messages for the prepared statements a review approved for one run, and a Sync: sent right
/// after the client's Sync that ends their pipeline, so no later message can bind them again (a
/// Close of a statement that does not exist is not an error).
fn close_approved(out: &mut BytesMut, names: &[Bytes]) {
    for name in names {
        codec::close_statement(out, name);
    }
    codec::sync(out);
}

/// The refusal of a second Bind of a prepared statement a review approved for one run.
fn once_only_refusal(review_id: i64) -> (Bytes, &'static str) {
    let error = PgError::error(
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("sluice: review #{review_id} approved one run of this prepared statement, and it has run"),
    )
    .with_hint("send the statement again (Parse) to ask for a new review");
    (error.to_bytes().freeze(), sqlstate::INSUFFICIENT_PRIVILEGE)
}

/// The refusal of a Bind of a name sluice saw no statement prepared under.
fn not_prepared(statement: &[u8]) -> (Bytes, &'static str) {
    let error = PgError::error(
        sqlstate::INVALID_SQL_STATEMENT_NAME,
        format!(
            "sluice: prepared statement \"{}\" was not prepared in this session",
            String::from_utf8_lossy(statement)
        ),
    )
    .with_hint("prepare it first (Parse, or SQL PREPARE), then bind it");
    (error.to_bytes().freeze(), sqlstate::INVALID_SQL_STATEMENT_NAME)
}

/// A refused Bind: replaced by a Bind of a statement that does not exist, so the server refuses it
/// in order (and skips the rest up to Sync) and sluice's error replaces its.
fn refused_bind(portal: &[u8], refusal: (Bytes, &'static str), mut pending: Pending) -> (BytesMut, Pending) {
    let mut marker = BytesMut::new();
    put_message(&mut marker, b'B', |b| {
        put_cstr(b, portal);
        put_cstr(b, REFUSAL_MARKER.as_bytes());
        b.put_i16(0);
        b.put_i16(0);
        b.put_i16(0);
    });
    pending.refusal = Some(refusal);
    (marker, pending)
}

fn malformed(what: &str) -> RelayEnd {
    RelayEnd::ClientProtocol(PgError::fatal(sqlstate::PROTOCOL_VIOLATION, format!("malformed {what} message")))
}

/// The bytes before the first NUL (a whole body when there is none).
fn cstr_prefix(body: &[u8]) -> &[u8] {
    body.iter().position(|&b| b == 0).map_or(body, |end| &body[..end])
}
