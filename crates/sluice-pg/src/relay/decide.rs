//! Deciding a Query's, Parse's, Bind's or fast-path call's statement: classified, resolved against
//! the session's PREPAREs, and asked of the engine's session, which asks back what only the
//! server's catalog can tell (views and functions carrying masked columns, volatile functions).

use super::*;

/// A fast-path FunctionCall (`body`), decided as the `SELECT schema.function($1, …)` it amounts
/// to: the catalog names the function by its OID. Its result is masked as a value of the type the
/// function returns.
pub(super) async fn decide_fast_path<S, R>(
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
    let refused = |text: Arc<str>, reason: String, hint: &str| {
        let decision = Decision::Deny(Refusal {
            rule: "fast-path".into(),
            reason,
            detail: None,
            hint: Some(hint.into()),
            cause: RefusalCause::Unsupported,
        });
        let refusal = refusal_bytes(&decision, &text);
        (Pending::new(Kind::Simple, text).decided(&decision), refusal)
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
                    let reason = format!("fast-path call of function {oid}, which the database does not have");
                    return Ok(refused(unknown, reason, "call the function by name with SELECT"));
                }
                Err(e) => {
                    let reason = format!("sluice could not look up fast-path function {oid} in the catalog: {e}");
                    return Ok(refused(unknown, reason, "try again, or call the function by name with SELECT"));
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
        let reason = "this function is answered by sluice, which a fast-path call cannot be".to_string();
        return Ok(refused(decided.text, reason, "call it with SELECT"));
    }
    let refusal = refusal_bytes(&decided.decision, &decided.text);
    let mut pending = Pending::new(Kind::Simple, decided.text).decided(&decided.decision);
    pending.fast_path = Some((returns, format));
    Ok((pending, refusal))
}

/// A Query's or Parse's text and what the gateway made of it.
pub(super) struct Decided {
    pub(super) text: Arc<str>,
    pub(super) decision: Decision,
    /// The query that answers a call of sluice's own functions instead (see `answer_builtin`).
    pub(super) answer: Option<String>,
    /// What running it does to prepared statement names.
    pub(super) effects: Vec<NameEffect>,
}

/// The text of a Query or Parse and the decision on it. Statements are decided as UTF-8 text; bytes
/// that are not UTF-8 would be judged on a lossy reading of what the server runs, so they are refused.
pub(super) async fn decide_message<S, R>(
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
pub(super) async fn answer_builtin<S: SessionGate>(
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
            let server = ServerCatalog(ctx);
            let action = Action::Sql(SqlAction {
                text: &statement,
                analysis: &resolved,
                shared: None,
                masked_columns_here: true,
                server: Some(&server),
            });
            let explanation = sql.gate.explain(&action).await;
            ("sluice.explain()", explanation.rows())
        }
    };
    (Decision::Allow { rule: Arc::from(rule) }, Some(sluice_sql::answer_query(&rows)))
}

/// What a session keeps of SQL between its statements, and the engine's session it asks.
pub(super) struct SessionSql<'g, S> {
    pub(super) gate: &'g mut S,
    pub(super) classified: SessionClassifier,
    /// Statements prepared with SQL's PREPARE, for the EXECUTEs that run them.
    pub(super) prepared: PreparedStatements,
    /// A statement was allowed only because no column rule in scope reached the database (a role
    /// assumed, the search_path or string mode changed, dynamic SQL): should one reach it later,
    /// the session cannot go on (see `masked_columns_here`).
    pub(super) relied_on_no_masking: bool,
}

impl<'g, S> SessionSql<'g, S> {
    pub(super) fn new(gate: &'g mut S) -> Self {
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
pub(super) async fn decide<S, R>(
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
        // What an EXECUTE runs is resolved afresh each time: no allow is kept for it.
        let shared = matches!(resolved, Cow::Borrowed(_)).then_some(&analysis);
        let server = ServerCatalog(ctx);
        let action = Action::Sql(SqlAction {
            text,
            analysis: &resolved,
            shared,
            masked_columns_here: masked_here,
            server: Some(&server),
        });
        let decision = sql.gate.decide(&action).await;
        sql.relied_on_no_masking |= !masked_here && decision.allows();
        decision
    };
    let decision = match decision {
        // Boxed: waiting is rare, and its future would otherwise make every decision's larger
        // (futures are moved whole at each await).
        Decision::Hold(h) => Box::pin(hold(ctx, &*sql.gate, text, &h, held, cancelled)).await?,
        decision => decision,
    };
    if decision.allows() {
        sql.prepared.note_allowed(&analysis);
    }
    Ok(decision)
}

/// The server's catalog as the engine asks it, after policy (see `sluice_gate::SqlServer`): which
/// views and functions carry a masked column, and which called functions PostgreSQL marks
/// VOLATILE. Both readings are shared by the sessions on the database and kept for a second; a
/// name the last reading does not know is read afresh (it may be new).
pub(super) struct ServerCatalog<'c, 'a, S: SessionGate>(pub(super) &'c Context<'a, S>);

impl<S: SessionGate> SqlServer for ServerCatalog<'_, '_, S> {
    fn reached<'x>(&'x self, analysis: &'x SqlAnalysis) -> ServerAnswer<'x, Option<Arc<CatalogRules>>> {
        let ctx = self.0;
        let Some(session) = ctx.masking.as_ref().filter(|m| m.has_column_rules()) else {
            return Box::pin(std::future::ready(Ok(None)));
        };
        // Mostly answered from the readings of the last second: a small ready future then.
        if let Some(answer) = ctx.reached_as_read(analysis) {
            return Box::pin(std::future::ready(Ok(answer)));
        }
        Box::pin(async move {
            if !ctx.has_masked_columns(session).await {
                return Ok(None);
            }
            // (A function name that exists nowhere costs a reading each time; the server refuses it anyway.)
            let reached = ctx.reached_knowing(session, |r| r.calls_unknown_function(analysis)).await;
            reached.map(Some).map_err(|e| e.to_string())
        })
    }

    fn may_write<'x>(&'x self, called: &'x [&'x ObjectName]) -> ServerAnswer<'x, Option<ObjectName>> {
        Box::pin(async move {
            let ctx = self.0;
            let read = |fresh_for| ctx.catalog.functions(ctx.endpoint, ctx.lookup_timeout, fresh_for);
            let functions = match read(FRESH_FOR).await {
                Ok(known) if called.iter().any(|c| !known.knows(&c.name)) => read(Duration::ZERO).await,
                other => other,
            };
            let functions = functions.map_err(|e| e.to_string())?;
            Ok(called.iter().find(|c| functions.volatile(c.schema.as_deref(), &c.name)).map(|c| (*c).clone()))
        })
    }
}

pub(super) fn not_utf8() -> Decision {
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
pub(super) fn executes_approved(
    analysis: &SqlAnalysis,
    approved_once: &FastMap<Bytes, (i64, bool)>,
) -> Option<Refusal> {
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

/// Whether the database may hold a column that a column rule in scope covers, as the decision of
/// `analysis` should assume: read from the catalog (cached for a second) only when the session has
/// column rules and the decision depends on it, or the session relied on there being none before
/// (then a column that has come to exist since ends the session: what it set is not what sluice's
/// masking reads under). Anything unknown counts as yes.
pub(super) async fn masked_columns_here<S: SessionGate>(
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
pub(super) fn unparseable(decision: &Decision) -> bool {
    matches!(decision, Decision::Deny(r) if r.cause == RefusalCause::Unparseable && r.rule == "unparseable")
}
