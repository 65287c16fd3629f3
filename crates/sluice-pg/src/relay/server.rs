//! Upstream → client: the server's replies matched to what is pending, masked where the result's
//! shape says so, and the finished statements recorded. The loop reads, frames and writes
//! (deferring small writes, see `coalesce`); `ServerSide` masks each frame (`mask_frame`) and
//! matches it to what the client is owed (`track`), one method per group of replies.

use super::*;
use sluice_core::{ExcerptLimits, ResultExcerpt};

/// What the server side keeps between frames.
struct ServerSide<'c, 'a, S: SessionGate> {
    ctx: &'c Context<'a, S>,
    tracker: &'c Mutex<Tracker>,
    /// Why the server ended the session, when it sent a FATAL error before closing.
    fatal: Option<String>,
    /// DataRows of the command in progress; counted here so a row costs no lock.
    data_rows: u64,
    last_tag: Option<Arc<str>>,
    /// Masking: the masker, the plan for the rows in progress, and the COPY OUT in progress.
    masker: Option<ResponseMasker>,
    plan: Option<Arc<RowPlan>>,
    copy: Option<CopyFormat>,
    /// The first rows of the result in progress, kept for the record when the log asks for them:
    /// the limits, the result's columns, and what is kept so far.
    excerpt_limits: Option<ExcerptLimits>,
    /// The shape of the result in progress, and the last one described (kept for the next
    /// statement of the same shape).
    shape: Option<Arc<excerpt::Shape>>,
    last_shape: Option<Arc<excerpt::Shape>>,
    excerpt: Option<ResultExcerpt>,
}

/// Upstream → client: one loop over the server's frames, each masked and matched to what is
/// pending, written to the client as it came except where masking or a refusal rewrote it.
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
    let mut side = ServerSide {
        ctx,
        tracker,
        fatal: None,
        data_rows: 0,
        last_tag: None,
        masker: ctx.masking.clone().map(ResponseMasker::new),
        plan: None,
        copy: None,
        excerpt_limits: ctx.log.result_excerpt(),
        shape: None,
        last_shape: None,
        excerpt: None,
    };
    let mut out = BytesMut::new();
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
            if side.masker.is_some() {
                if head.tag == b'T' {
                    side.describe_rows(body).await;
                } else {
                    side.mask_frame(head.tag, body, &mut rewritten);
                }
            }
            let drop_frame = side.track(head.tag, body, &mut rewritten);
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
                return match side.fatal {
                    Some(why) => RelayEnd::UpstreamFatal(why),
                    None => RelayEnd::UpstreamGone("connection closed".into()),
                };
            }
            Ok(_) => {}
            Err(e) => return RelayEnd::UpstreamGone(e.to_string()),
        }
    }
}

impl<S: SessionGate> ServerSide<'_, '_, S> {
    /// A RowDescription: the plan its rows are masked by (rows always follow the description that
    /// shapes them: the result's own, or the portal's, described right before its Execute).
    async fn describe_rows(&mut self, body: &[u8]) {
        let Some(m) = self.masker.as_mut() else { return };
        let plan = match m.cached_plan(body) {
            Some(plan) => plan,
            None => {
                let plan = Arc::new(row_plan(self.ctx, m.session(), body).await);
                m.remember_plan(body, &plan);
                plan
            }
        };
        self.plan = Some(plan);
    }

    /// Masks one frame (other than a RowDescription) into `rewritten` where its shape says so;
    /// `rewritten` stays empty when the frame goes out as it came. Called once per frame from the
    /// relay loop: inlined there, as the compiler chose until the crate graph grew.
    #[inline]
    fn mask_frame(&mut self, tag: u8, body: &[u8], rewritten: &mut BytesMut) {
        let Some(m) = self.masker.as_mut() else { return };
        match tag {
            b'D' => {
                let plan = self.plan.get_or_insert_with(|| {
                    tracing::warn!(session = %self.ctx.session_id, "a row arrived with no description; masking it as of unknown shape");
                    Arc::new(RowPlan::unknown(m.session().has_column_rules()))
                });
                if plan.is_active() {
                    m.data_row(plan, body, rewritten);
                }
            }
            b'H' => self.copy = Some(mask::copy_format(body)),
            b'd' => {
                if let Some(format) = self.copy {
                    m.copy_data(format, body, rewritten);
                }
            }
            b'E' | b'N' => {
                m.notice(tag, body, rewritten);
            }
            b'A' => {
                m.notification(body, rewritten);
            }
            b'V' => {
                // A fast-path call's result; a type sluice does not know is scanned whole.
                let (type_oid, format) =
                    self.tracker.lock().pending.front().and_then(|p| p.fast_path).unwrap_or((0, 0));
                m.function_result(type_oid, format, body, rewritten);
            }
            b'S' => {
                m.parameter_status(body, rewritten);
            }
            _ => {}
        }
        if matches!(tag, b'n' | b'C' | b'E' | b's' | b'I' | b'Z' | b'c') {
            self.plan = None;
            self.copy = None;
        }
    }

    /// Matches one frame, as the client will see it (`rewritten` when masking rewrote it), to
    /// what is pending. True when the frame answers sluice's own message and must not reach the
    /// client. An error may be swapped, in `rewritten`, for the refusal it stands for. Called
    /// once per frame: inlined into the relay loop.
    #[inline]
    fn track(&mut self, tag: u8, original: &[u8], rewritten: &mut BytesMut) -> bool {
        let body = if rewritten.is_empty() { original } else { &rewritten[HEADER_LEN..] };
        match tag {
            b'D' => {
                self.data_rows += 1;
                if let Some(limits) = self.excerpt_limits {
                    let shape = self.shape.as_deref();
                    let excerpt = self.excerpt.get_or_insert_with(|| {
                        ResultExcerpt::new(shape.map_or_else(|| Arc::from([]), |s| Arc::clone(&s.names)))
                    });
                    excerpt::capture(excerpt, limits, shape, body);
                }
            }
            b'C' => {
                // The next result is described anew, or its columns go unnamed (never misnamed).
                self.shape = None;
                self.command_complete(cstr_prefix(body));
            }
            b'I' | b's' => {
                // A suspended portal's next Execute comes without a description: its rows go
                // unnamed rather than named after another result.
                self.shape = None;
                self.portal_done();
            }
            b'S' => {
                let mut r = Reader::new(body);
                if r.cstr() == Some(b"standard_conforming_strings") {
                    self.ctx.backslash_strings.store(r.cstr() == Some(b"off"), Ordering::Release);
                }
            }
            b'1' | b'2' => return self.parse_or_bind_complete(tag),
            b'T' | b'n' => {
                if tag == b'T' && self.excerpt_limits.is_some() {
                    self.shape = Some(excerpt::shape(body, &mut self.last_shape));
                    self.excerpt = None;
                }
                return self.described();
            }
            // (Checked without the lock first: almost always nothing of sluice's is owed.)
            b'3' | b'Z' | b'E'
                if self.ctx.sluice_owed.load(Ordering::Acquire) > 0 && front_is_sluices(self.tracker) =>
            {
                let error = (tag == b'E').then(|| ServerMessage::parse(body));
                self.sluices_answered(tag, error);
                return true;
            }
            b'3' => return self.close_complete(),
            b'E' => {
                let message = ServerMessage::parse(body);
                self.error(message, rewritten);
            }
            b'Z' => self.ready_for_query(),
            _ => {}
        }
        false
    }

    /// CommandComplete: the rows and tag go to the statement in front; an Execute's ends there.
    fn command_complete(&mut self, tag: &[u8]) {
        let rows = if self.data_rows > 0 { self.data_rows } else { tag_rows(tag) };
        self.data_rows = 0;
        let excerpt = self.excerpt.take();
        let mut t = self.tracker.lock();
        t.confirm(tag);
        if let Some(front) = t.pending.front_mut() {
            front.rows += rows;
            // A query of several statements keeps its first result's rows.
            if front.result.is_none() {
                front.result = excerpt.map(Box::new);
            }
            front.tag = Some(same_tag(&mut self.last_tag, tag));
            if front.kind == Kind::Execute {
                let p = t.pending.pop_front().expect("front exists");
                t.finished.push_back((p, None));
            }
        }
    }

    /// EmptyQueryResponse or PortalSuspended: an Execute in front ends there.
    fn portal_done(&mut self) {
        let mut t = self.tracker.lock();
        if t.pending.front().is_some_and(|p| p.kind == Kind::Execute) {
            let mut p = t.pending.pop_front().expect("front exists");
            p.rows += std::mem::take(&mut self.data_rows);
            p.result = self.excerpt.take().map(Box::new);
            t.finished.push_back((p, None));
        }
    }

    /// ParseComplete or BindComplete; the ParseComplete of a probe (see `probe`) is sluice's.
    fn parse_or_bind_complete(&mut self, tag: u8) -> bool {
        let expected = if tag == b'1' { Kind::Parse } else { Kind::Bind };
        let mut t = self.tracker.lock();
        if let Some(front) = t.pending.front_mut()
            && front.probe != Probe::None
            && tag == b'1'
        {
            front.probe = Probe::Parsed;
            return true;
        }
        if t.pending.front().is_some_and(|p| p.kind == expected) {
            t.pending.pop_front();
        }
        false
    }

    /// RowDescription or NoData answering a Describe (a statement's after its
    /// ParameterDescription); the answer to sluice's own Describe is not the client's.
    fn described(&mut self) -> bool {
        let mut t = self.tracker.lock();
        match t.pending.front().map(|p| p.kind) {
            Some(Kind::Describe) => {
                t.pending.pop_front();
                false
            }
            Some(Kind::SluiceDescribe) => {
                t.pending.pop_front();
                true
            }
            _ => false,
        }
    }

    /// An answer to sluice's own Close and Sync of statements approved for one run (`error`: the
    /// server refused a Close, and skips the others up to sluice's Sync).
    fn sluices_answered(&mut self, tag: u8, error: Option<ServerMessage>) {
        let mut t = self.tracker.lock();
        let mut answered = 0;
        match (tag, error) {
            (b'3', _) => {
                t.pending.pop_front();
                answered = 1;
            }
            (_, Some(error)) => {
                tracing::warn!(session = %self.ctx.session_id, error = %error.message,
                    "closing a statement approved for one run failed");
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
        self.ctx.sluice_owed.fetch_sub(answered, Ordering::AcqRel);
    }

    /// CloseComplete: a Close's name effects apply now; a probe's is sluice's.
    fn close_complete(&mut self) -> bool {
        let mut t = self.tracker.lock();
        if t.pending.front().is_some_and(|p| p.probe != Probe::None) {
            return true;
        }
        if t.pending.front().is_some_and(|p| p.kind == Kind::Close)
            && let Some(mut close) = t.pending.pop_front()
        {
            t.apply_all(&mut close);
        }
        false
    }

    /// An ErrorResponse: it ends the statement in front (a simple query's, swapped for sluice's
    /// refusal where it answers a refusal marker), or the pipeline up to Sync.
    fn error(&mut self, message: ServerMessage, rewritten: &mut BytesMut) {
        let partial_rows = std::mem::take(&mut self.data_rows);
        self.excerpt = None;
        self.shape = None;
        let mut t = self.tracker.lock();
        if message.is_fatal() {
            self.fatal = Some(format!("{} ({})", message.message, message.code));
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
            // An error at Sync (a deferred constraint at commit), or one no message asked for
            // (the server shutting down).
            Some(Kind::Sync | Kind::SluiceClose | Kind::SluiceSync) | None => {}
            // An extended-protocol message failed: the server skips everything up to Sync. A
            // Bind's error (a bad parameter, a constant folded at planning), or that of sluice's
            // Describe, is the Execute's that follows it.
            Some(_) => {
                if let Some(failed) = t.pending.pop_front() {
                    pipeline_failed(&mut t, failed, (partial_rows, message), rewritten);
                }
            }
        }
    }

    /// ReadyForQuery: what the server answered up to here is finished (statements it skipped
    /// after an error in the same pipeline, noted as not executed).
    fn ready_for_query(&mut self) {
        let mut t = self.tracker.lock();
        let skipped = std::mem::take(&mut t.skipping);
        while let Some(p) = t.pending.pop_front() {
            let note = (skipped && p.refusal.is_none())
                .then_some("not executed: an earlier message in the same pipeline failed");
            match p.kind {
                Kind::Sync => break,
                // A simple query ends with its own ReadyForQuery, unless an error before it in a
                // pipeline made the server skip it.
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
}

/// A command tag as recorded: the previous one again when it is the same (a session mostly
/// repeats `SELECT 1` and the like), so that recording it costs no allocation.
pub(super) fn same_tag(last: &mut Option<Arc<str>>, tag: &[u8]) -> Arc<str> {
    match last {
        Some(same) if same.as_bytes() == tag => Arc::clone(same),
        _ => Arc::clone(last.insert(Arc::from(String::from_utf8_lossy(tag)))),
    }
}

/// The plan for a RowDescription: each column's type class and format, and its column rule.
pub(super) async fn row_plan<S: SessionGate>(
    ctx: &Context<'_, S>,
    session: &SessionMasking,
    description: &[u8],
) -> RowPlan {
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
pub(super) async fn column_masks<S: SessionGate>(
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
