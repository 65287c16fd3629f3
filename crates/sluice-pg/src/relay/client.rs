//! Client → upstream: frames read from the client, decided, and forwarded (or replaced).

use super::*;

/// Client → upstream.
///
/// Long, on purpose for now: one loop over the frames of one read buffer, whose branches (one per
/// message type) share the buffer's marks, the pending replacement and the session's name maps;
/// the decisions themselves are in `decide`, the wire forms of refusals in `refusal`. Splitting the
/// branches into a handler per message group, over a struct holding that state, is the next step.
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
