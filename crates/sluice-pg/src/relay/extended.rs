//! The extended protocol's messages from the client — Parse, Bind, Describe, Execute, Close and
//! Sync — read into typed views borrowed from the frame (`Parse`, `Bind`, `Subject`, `Execute`), and what the relay does with each:
//! statements are decided at Parse (and again at Bind when the decision may have moved since),
//! an approval for one run allows one Bind, and every Execute of a masked session is preceded by
//! sluice's own Describe of the portal.

use super::client::{ClientSide, held};
use super::*;

/// Parse: a statement's text prepared under a name (`""`: the unnamed statement).
pub(super) struct Parse<'a> {
    pub(super) name: &'a [u8],
    pub(super) query: &'a [u8],
}

/// Bind: a prepared statement bound into a portal (parameter values are not read).
pub(super) struct Bind<'a> {
    pub(super) portal: &'a [u8],
    pub(super) statement: &'a [u8],
}

/// Describe or Close: of a statement (`b'S'`) or a portal (`b'P'`), by name.
pub(super) struct Subject<'a> {
    pub(super) which: u8,
    pub(super) name: &'a [u8],
}

/// Execute of a portal (the row limit is not read).
pub(super) struct Execute<'a> {
    pub(super) portal: &'a [u8],
}

/// The two strings a Parse or a Bind starts with.
fn two_cstrs<'a>(body: &'a [u8], what: &str) -> Result<(&'a [u8], &'a [u8]), RelayEnd> {
    let mut r = Reader::new(body);
    r.cstr().zip(r.cstr()).ok_or_else(|| malformed(what))
}

impl<'a> Parse<'a> {
    pub(super) fn read(body: &'a [u8]) -> Result<Self, RelayEnd> {
        two_cstrs(body, "Parse").map(|(name, query)| Parse { name, query })
    }
}

impl<'a> Bind<'a> {
    pub(super) fn read(body: &'a [u8]) -> Result<Self, RelayEnd> {
        two_cstrs(body, "Bind").map(|(portal, statement)| Bind { portal, statement })
    }
}

impl<'a> Subject<'a> {
    pub(super) fn read(body: &'a [u8], what: &str) -> Result<Self, RelayEnd> {
        let mut r = Reader::new(body);
        r.u8().zip(r.cstr()).map(|(which, name)| Subject { which, name }).ok_or_else(|| malformed(what))
    }
}

impl<'a> Execute<'a> {
    pub(super) fn read(body: &'a [u8]) -> Result<Self, RelayEnd> {
        Reader::new(body).cstr().map(|portal| Execute { portal }).ok_or_else(|| malformed("Execute"))
    }
}

impl<S, R> ClientSide<'_, '_, '_, S, R>
where
    S: SessionGate,
    R: AsyncRead + Unpin,
{
    /// A Parse: its statement decided; kept under its name for the Binds (with the epoch of an
    /// allow, so a Bind in another epoch decides it again), or refused in place.
    pub(super) async fn parse(&mut self, Parse { name, query }: Parse<'_>) -> Result<(), RelayEnd> {
        let epoch = self.sql.gate.decision_epoch();
        let held = held!(self, Kind::Parse);
        let Decided { text, decision, answer, effects } = decide_message(self.ctx, &mut self.sql, query, held).await?;
        // Kept only if nothing changed while it was decided, and only for a plain allow.
        let epoch =
            epoch.filter(|e| matches!(decision, Decision::Allow { .. }) && self.sql.gate.decision_epoch() == Some(*e));
        let mut pending = Pending::new(Kind::Parse, Arc::clone(&text)).decided(&decision);
        self.closed_by_sluice.remove(name);
        let Some(refusal) = refusal_bytes(&decision, &text) else {
            let name = Bytes::copy_from_slice(name);
            // Another Parse under the name does not clear it: the server may refuse that Parse,
            // and the approved statement would stay bindable.
            if let Decision::Approved { review_id, .. } = decision {
                self.approved_once.insert(name.clone(), (review_id, false));
            }
            let mut t = self.tracker.lock();
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
            t.push(pending);
            if let Some(answer) = answer {
                let mut parse = BytesMut::new();
                codec::parse(&mut parse, &name, &answer);
                self.rewrite.replacement = Some(parse);
            }
            return Ok(());
        };
        // The server drops its unnamed statement before it parses a new one (so once it rejects
        // this one, nothing is left under ""); a named one stays.
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
        self.replace(marker, pending);
        Ok(())
    }

    /// A Bind: of a name SQL's PREPARE holds, decided as the EXECUTE it is; of a name a Parse
    /// holds, allowed by that Parse's decision (decided again if it was made in another epoch),
    /// once only where a review approved one run; of a name sluice saw nothing prepared under,
    /// refused.
    pub(super) async fn bind(&mut self, bind: Bind<'_>) -> Result<(), RelayEnd> {
        let named = self.tracker.lock().statements.get(bind.statement).cloned();
        // A name the server holds (or may hold, or will once a PREPARE sent before this Bind
        // runs) from SQL PREPARE runs what was prepared: decided as an EXECUTE of it, every
        // time, like one sent as SQL.
        let sql_prepared = named.as_ref().and_then(|n| n.sql.clone()).or_else(|| {
            let prepared = &self.sql.prepared;
            prepared.ever_prepared().then(|| prepared.get(bind.statement).cloned().map(Arc::new)).flatten()
        });
        let pending = Pending::new(Kind::Bind, Arc::clone(&self.no_text));
        let refused = match sql_prepared {
            Some(prepared) => self.bind_sql_prepared(&bind, prepared, pending).await?,
            None => self.bind_parsed(&bind, named, pending).await?,
        };
        if let Some((refusal, pending)) = refused {
            let (marker, pending) = refused_bind(bind.portal, refusal, pending);
            self.replace(marker, pending);
        }
        Ok(())
    }

    /// A Bind of a statement SQL's PREPARE made: the EXECUTE it amounts to, decided now. The
    /// refusal, if any, with the entry it answers; otherwise the entry is tracked.
    async fn bind_sql_prepared(
        &mut self,
        bind: &Bind<'_>,
        prepared: Arc<SqlStatement>,
        pending: Pending,
    ) -> Result<Option<((Bytes, &'static str), Pending)>, RelayEnd> {
        let text: Arc<str> = Arc::from(sluice_sql::execute_text(&String::from_utf8_lossy(bind.statement)));
        let analysis = self.sql.classified.classify(self.ctx.classifier, &text);
        // Resolved against what the name holds on the server, not what the session last sent
        // under it.
        let mut resolved = sluice_sql::resolve_by(&analysis, |_| Some(&*prepared)).into_owned();
        if let SqlAnalysis::Parsed { statements } = &mut resolved {
            statements.iter_mut().for_each(|s| s.executes = None);
        }
        let analysis: SharedAnalysis = Arc::new(resolved);
        let once =
            self.approved_once.get(bind.statement).map(|(id, _)| id).or(self.closed_by_sluice.get(bind.statement));
        let decision = match once {
            // A name a review approved one run of through the protocol, and SQL's too.
            Some(&review_id) => Decision::Deny(Refusal {
                rule: format!("review #{review_id}"),
                reason: format!("review #{review_id} approved one run of this prepared statement"),
                detail: None,
                hint: Some("send the statement again to ask for a new review".into()),
                cause: RefusalCause::Policy,
            }),
            None => {
                let held = held!(self, Kind::Execute);
                decide(self.ctx, &mut self.sql, &text, analysis, held).await?
            }
        };
        let refusal = refusal_bytes(&decision, &text);
        let pending = pending.decided(&decision);
        let named = Named { decision: pending.decision, rule: pending.rule.clone(), ..Named::sql(text, prepared) };
        self.portals.insert(Bytes::copy_from_slice(bind.portal), named);
        Ok(match refusal {
            Some(refusal) => Some((refusal, pending)),
            None => {
                self.tracker.lock().push(pending);
                None
            }
        })
    }

    /// A Bind of a statement a Parse prepared (`named`, as the tracker holds it). The refusal, if
    /// any, with the entry it answers; otherwise the entry is tracked.
    async fn bind_parsed(
        &mut self,
        bind: &Bind<'_>,
        mut named: Option<Named>,
        mut pending: Pending,
    ) -> Result<Option<((Bytes, &'static str), Pending)>, RelayEnd> {
        let statement = bind.statement;
        // Allowed in another epoch (a reload, a grant begun or ended since): decided again, as
        // the same text sent now would be. An approved run is the once-only bookkeeping's below.
        let stale = named.as_ref().is_some_and(|n| {
            n.decision == "allow"
                && !self.approved_once.contains_key(statement)
                && !self.closed_by_sluice.contains_key(statement)
                && (n.epoch.is_none() || n.epoch != self.sql.gate.decision_epoch())
        });
        let mut redecided_refusal = None;
        if let Some(n) = named.as_mut().filter(|_| stale) {
            let epoch = self.sql.gate.decision_epoch();
            let analysis = self.sql.classified.classify(self.ctx.classifier, &n.text);
            let text = Arc::clone(&n.text);
            let held = held!(self, Kind::Bind);
            let decision = decide(self.ctx, &mut self.sql, &text, analysis, held).await?;
            match refusal_bytes(&decision, &text) {
                Some(refusal) => {
                    pending = Pending::new(Kind::Bind, text).decided(&decision);
                    redecided_refusal = Some(refusal);
                }
                None => {
                    let keep = matches!(decision, Decision::Allow { .. }) && self.sql.gate.decision_epoch() == epoch;
                    n.epoch = epoch.filter(|_| keep);
                    if let Some(kept) = self.tracker.lock().statements.get_mut(statement) {
                        kept.epoch = n.epoch;
                    }
                }
            }
        }
        let refused = match (redecided_refusal, named) {
            (Some(refusal), _) => {
                self.portals.remove(bind.portal);
                Some(refusal)
            }
            (None, Some(named)) => {
                self.portals.insert(Bytes::copy_from_slice(bind.portal), named);
                let once = !self.approved_once.is_empty() || !self.closed_by_sluice.is_empty();
                match self.approved_once.get_mut(statement).filter(|_| once) {
                    Some((review_id, bound)) if *bound => Some(once_only_refusal(*review_id)),
                    Some((_, bound)) => {
                        *bound = true;
                        self.close_at_sync.push(Bytes::copy_from_slice(statement));
                        None
                    }
                    None if once => self.closed_by_sluice.get(statement).map(|id| once_only_refusal(*id)),
                    None => None,
                }
            }
            (None, None) => {
                self.portals.remove(bind.portal);
                Some(not_prepared(statement))
            }
        };
        Ok(match refused {
            Some(refusal) => Some((refusal, pending)),
            None => {
                self.tracker.lock().push(pending);
                None
            }
        })
    }

    /// A Describe: answered by the server; a portal described is one sluice need not describe
    /// again before its Execute.
    pub(super) fn describe(&mut self, describe: Subject<'_>) {
        if describe.which == b'P' {
            self.described_portal = Some(Bytes::copy_from_slice(describe.name));
        }
        self.tracker.lock().pending.push_back(Pending::new(Kind::Describe, Arc::clone(&self.no_text)));
    }

    /// An Execute: recorded under the statement its portal was bound from; with masking on,
    /// preceded by sluice's own Describe of the portal unless the client's came right before.
    pub(super) fn execute(&mut self, Execute { portal }: Execute<'_>, described: Option<&[u8]>) {
        let pending = match self.portals.get(portal) {
            Some(named) => {
                let mut pending = Pending::new(Kind::Execute, Arc::clone(&named.text));
                pending.decision = named.decision;
                pending.rule = named.rule.clone();
                pending.effects = named.effects.clone();
                pending
            }
            // A cursor SQL's DECLARE opened: what it runs was decided then.
            None => Pending::new(Kind::Execute, Arc::from(format!("<portal {}>", String::from_utf8_lossy(portal)))),
        };
        let mut t = self.tracker.lock();
        if self.ctx.masking.is_some() && described != Some(portal) {
            let mut describe = BytesMut::new();
            put_message(&mut describe, b'D', |b| {
                b.put_u8(b'P');
                put_cstr(b, portal);
            });
            t.pending.push_back(Pending::new(Kind::SluiceDescribe, Arc::clone(&self.no_text)));
            self.rewrite.before = Some(describe);
        }
        t.push(pending);
    }

    /// A Sync: followed by sluice's Close of every statement approved for one run and bound since
    /// the last one, and a Sync of its own.
    pub(super) fn sync(&mut self) {
        let mut t = self.tracker.lock();
        t.pending.push_back(Pending::new(Kind::Sync, Arc::clone(&self.no_text)));
        if self.close_at_sync.is_empty() {
            return;
        }
        let mut closing = BytesMut::new();
        close_approved(&mut closing, &self.close_at_sync);
        for _ in &self.close_at_sync {
            t.pending.push_back(Pending::new(Kind::SluiceClose, Arc::clone(&self.no_text)));
        }
        t.pending.push_back(Pending::new(Kind::SluiceSync, Arc::clone(&self.no_text)));
        self.ctx.sluice_owed.fetch_add(self.close_at_sync.len() + 1, Ordering::AcqRel);
        drop(t);
        for name in self.close_at_sync.drain(..) {
            if let Some((review_id, _)) = self.approved_once.remove(&name) {
                self.closed_by_sluice.insert(name, review_id);
            }
        }
        // The client's Sync, then sluice's Close messages and Sync.
        self.rewrite.after = Some(closing);
    }

    /// A Close of a statement (its name's effects follow the server's answer) or a portal.
    pub(super) fn close(&mut self, Subject { which, name }: Subject<'_>) {
        let mut pending = Pending::new(Kind::Close, Arc::clone(&self.no_text));
        match which {
            b'S' => pending.effects.push(NameEffect::Deallocate(Bytes::copy_from_slice(name))),
            _ => {
                self.portals.remove(name);
            }
        }
        self.tracker.lock().push(pending);
    }
}
