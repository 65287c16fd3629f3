//! What the server still owes the relay, in the order it will answer: the expected-reply queue
//! (`Tracker`), what each pending message is and what it does to prepared statement names, and how
//! an extended-protocol pipeline fails up to Sync.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) struct Pending {
    pub(super) kind: Kind,
    pub(super) text: Arc<str>,
    pub(super) started: Instant,
    pub(super) started_at_us: i64,
    pub(super) rows: u64,
    pub(super) tag: Option<Arc<str>>,
    pub(super) error: Option<ServerMessage>,
    /// What the gateway decided, and by which rule.
    pub(super) decision: &'static str,
    pub(super) rule: Option<Arc<str>>,
    /// Set when sluice refused this message: the error to show instead of the server's, and its code.
    pub(super) refusal: Option<(Bytes, &'static str)>,
    /// What the message does to prepared statement names, in statement order, applied as the
    /// server confirms each (see `Tracker::statements`) to the names as they were when it was sent.
    pub(super) effects: Vec<NameEffect>,
    pub(super) sent_at_generation: u64,
    pub(super) probe: Probe,
    /// For a fast-path call: the type its result has, and the format asked for, to mask it in.
    pub(super) fast_path: Option<(u32, i16)>,
    /// The first rows of its result, when the record keeps them.
    pub(super) result: Option<Box<sluice_core::ResultExcerpt>>,
}

/// Where a statement sluice cannot parse stands in the server's own parse of it (see `probe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Probe {
    None,
    /// Sent: the server's error, if its raw parser raised it, is the client's as it is.
    Sent,
    /// The server parsed it (its ParseComplete and CloseComplete are dropped): sluice's own
    /// refusal replaces the marker's error that follows.
    Parsed,
}

/// What a message does to the session's prepared statement names once the server confirms it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum NameEffect {
    /// SQL `PREPARE name` (its CommandComplete), and what it prepared.
    Prepare(Bytes, Arc<SqlStatement>),
    /// SQL `DEALLOCATE name` (its CommandComplete), or a protocol Close of the statement (CloseComplete).
    Deallocate(Bytes),
    /// `DEALLOCATE ALL` or `DISCARD ALL`.
    DeallocateAll,
}

impl NameEffect {
    /// The effects of a statement text's PREPAREs and DEALLOCATEs, in order (usually none).
    pub(super) fn of(analysis: &SqlAnalysis) -> Vec<NameEffect> {
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
    pub(super) fn confirmed_by(&self, tag: &[u8]) -> bool {
        match self {
            NameEffect::Prepare(..) => tag == b"PREPARE",
            NameEffect::Deallocate(_) => tag == b"DEALLOCATE",
            NameEffect::DeallocateAll => tag == b"DEALLOCATE ALL" || tag == b"DISCARD ALL",
        }
    }
}

impl Pending {
    pub(super) fn new(kind: Kind, text: Arc<str>) -> Self {
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
            result: None,
        }
    }

    /// Whether sluice's refusal replaces the server's `error`: not where a probe of a statement
    /// sluice cannot parse met the server's own syntax error, which the client gets exactly.
    pub(super) fn replaces(&self, error: &ServerMessage) -> bool {
        self.refusal.is_some() && !(self.probe == Probe::Sent && error.from_raw_parser())
    }

    pub(super) fn decided(mut self, decision: &Decision) -> Self {
        self.decision = decision.effect();
        self.rule = Some(match decision {
            Decision::Allow { rule } => Arc::clone(rule),
            other => Arc::from(other.rule()),
        });
        self
    }
}

/// The start time of messages that are never recorded.
pub(super) fn untimed() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// State shared by the two directions: what the server still owes, in order.
pub struct Tracker {
    pub(super) pending: VecDeque<Pending>,
    /// After an error in an extended-protocol pipeline the server skips every message up to Sync,
    /// a simple Query included.
    pub(super) skipping: bool,
    pub(super) seq: u64,
    /// The prepared statements the server holds, by name: each protocol Parse as sent (a Bind
    /// pipelined behind it needs it), each SQL PREPARE once confirmed; removed as the server
    /// confirms a Close, DEALLOCATE or DISCARD sent after them. A Bind of a name not here is refused.
    pub(super) statements: FastMap<Bytes, Named>,
    /// Counts the Parses sent, so that a removal confirmed later spares a statement prepared
    /// again under the name after it was sent.
    pub(super) generation: u64,
    /// The statement held for a review, if one is (recorded as interrupted if the session ends).
    pub(super) holding: Option<(i64, Pending)>,
    /// Statements whose result is complete, recorded once the client has been sent it (recording
    /// is then off the statement's round trip), with a note on what happened to them.
    pub(super) finished: VecDeque<(Pending, Option<&'static str>)>,
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
    pub(super) fn confirm(&mut self, tag: &[u8]) {
        let Some(front) = self.pending.front_mut() else { return };
        if front.effects.first().is_some_and(|e| e.confirmed_by(tag)) {
            let effect = front.effects.remove(0);
            let sent_at = front.sent_at_generation;
            self.apply(effect, sent_at);
        }
    }

    /// Applies a confirmed effect of a message sent when `generation` Parses had been.
    pub(super) fn apply(&mut self, effect: NameEffect, sent_at: u64) {
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
    pub(super) fn apply_all(&mut self, message: &mut Pending) {
        for effect in std::mem::take(&mut message.effects) {
            self.apply(effect, message.sent_at_generation);
        }
    }

    /// Puts a message in the reply queue, noting when it was sent relative to Parses.
    pub(super) fn push(&mut self, mut pending: Pending) {
        if !pending.effects.is_empty() {
            pending.sent_at_generation = self.generation;
        }
        self.pending.push_back(pending);
    }
}

/// What the client prepared or bound under a name: the text and deciding rule, for the records
/// of the Executes that run it, and what running it does to statement names.
#[derive(Clone)]
pub(super) struct Named {
    pub(super) text: Arc<str>,
    pub(super) decision: &'static str,
    pub(super) rule: Option<Arc<str>>,
    pub(super) effects: Vec<NameEffect>,
    /// For prepared statements: the Parse's count (see `Tracker::generation`).
    pub(super) generation: u64,
    /// What SQL's PREPARE put under the name, if the name may run it: a Bind is then decided as
    /// an EXECUTE of it. (A Parse sent while SQL's statement holds the name keeps it: the server
    /// refuses that Parse unless a removal sent before it lands first, which clears it.)
    pub(super) sql: Option<Arc<SqlStatement>>,
    /// The gate's decision epoch its allow was given in (see `Gate::decision_epoch`): a Bind in
    /// another epoch (a reload, a grant begun or ended) decides the statement again.
    pub(super) epoch: Option<u64>,
}

impl Named {
    /// A statement SQL's PREPARE made: bound, it runs as `EXECUTE name`.
    pub(super) fn sql(text: Arc<str>, prepared: Arc<SqlStatement>) -> Named {
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

/// An extended-protocol message failed: the server skips everything up to Sync. The error goes to
/// the client as sluice's own when sluice refused the message, and into the record of the statement
/// it belongs to: a Bind's (a bad parameter, a constant folded at planning), or that of sluice's
/// Describe, is the error of the Execute that follows.
pub(super) fn pipeline_failed(
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
pub(super) fn front_is_sluices(tracker: &Mutex<Tracker>) -> bool {
    tracker.lock().pending.front().is_some_and(|p| matches!(p.kind, Kind::SluiceClose | Kind::SluiceSync))
}
