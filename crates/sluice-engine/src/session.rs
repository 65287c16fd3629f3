//! One open session as the engine keeps it: who, on which target, the allows it may reuse, and the
//! audit events of its life (start, actions, end).

use crate::{EngineCore, explanation};
use sluice_approvals::{ActiveGrant, StatementReview};
use sluice_core::advice::{Explanation, Permissions};
use sluice_core::sql::{SharedAnalysis, SqlAnalysis};
use sluice_core::{
    ActionRecord, AuditEvent, AuditRecord, AuditSink, AuthOutcome, Decision, ExcerptLimits, Hold, Identity, Principal,
    Protocol, Refusal, RefusalCause, ids,
};
use sluice_gate::{
    Action, ClientInfo, ExecAction, HttpAction, Obligations, OpenRequest, Outcome, SessionGate, SessionLog, SqlAction,
    SqlLanguage, Standing, Target,
};
use sluice_mask::SessionMasking;
use sluice_policy::Policy;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// Kept allows by address: looked up on every statement, so hashed with foldhash (several times
/// cheaper than SipHash on a word) and seeded per process.
type KeptAllows = HashMap<usize, KeptAllow, foldhash::fast::RandomState>;

/// Why a check that needs the database server could not be made.
const NO_SERVER: &str = "the adapter gave no way to ask the server";

/// Allows a session keeps; past this it starts over.
const MAX_KEPT_ALLOWS: usize = 256;

pub struct EngineSession {
    core: Arc<EngineCore>,
    id: Arc<str>,
    identity: Identity,
    /// Who the session's audit records are about (shared by them all).
    principal: Arc<Principal>,
    target: String,
    protocol: Protocol,
    client_addr: String,
    client_tls: bool,
    client_program: Option<String>,
    /// The upstream session was opened read-only (see `Obligations::read_only`).
    upstream_read_only: bool,
    /// The target's SQL dialect, for the canonical form a review binds to.
    sql_language: Option<Arc<dyn SqlLanguage>>,
    /// The review a statement that can change state is held for, and its text: recorded durably
    /// when the approval arrives.
    held_change: Option<HeldChange>,
    /// The masking the session was opened with: its column rules decide what the lineage check
    /// of views and functions looks for.
    masking: Option<SessionMasking>,
    /// Allows given for statements this session repeats, by the address of their shared analysis,
    /// which the entry holds so that no other analysis can take the address.
    kept: KeptAllows,
    started: bool,
    ended: bool,
}

/// An action that can change state, held for a review: recorded durably when approved.
#[derive(Clone)]
struct HeldChange {
    review_id: i64,
    kind: &'static str,
    text: Arc<str>,
}

struct KeptAllow {
    _analysis: SharedAnalysis,
    epoch: u64,
    /// The session's own copy: cloning the policy's would write memory every session shares.
    rule: Arc<str>,
    /// The allow rested on the server's catalog too: it is asked again each time.
    asked_server: bool,
}

impl EngineSession {
    pub(crate) fn new(
        core: Arc<EngineCore>,
        identity: &Identity,
        request: &OpenRequest<'_>,
        target: &Target,
        obligations: &Obligations,
    ) -> Self {
        let ClientInfo { protocol, addr, tls, program } = request.client;
        EngineSession {
            core,
            id: Arc::from(ids::new_id("s_")),
            identity: identity.clone(),
            principal: Principal::new(&identity.name, Some(identity.credential_id.clone())),
            target: request.target.to_string(),
            protocol,
            client_addr: addr.to_string(),
            client_tls: tls,
            client_program: program.map(str::to_string),
            upstream_read_only: obligations.read_only,
            sql_language: target.sql().cloned(),
            held_change: None,
            masking: obligations.masking.clone(),
            kept: KeptAllows::default(),
            started: false,
            ended: false,
        }
    }

    async fn decide_sql(&mut self, sql: &SqlAction<'_>) -> Decision {
        // A decision that rested on there being no masked column stands only as long as that
        // holds, and one on a resolution made for this run (an EXECUTE) is not the text's: neither
        // is kept.
        let keep = sql.shared.filter(|_| sql.masked_columns_here);
        let epoch = keep.and_then(|_| self.core.decision_epoch(&self.identity, &self.target));
        if let (Some(shared), Some(e)) = (keep, epoch)
            && let Some(kept) = self.kept.get(&Arc::as_ptr(shared).addr()).filter(|k| k.epoch == e)
        {
            let (rule, asked_server) = (Arc::clone(&kept.rule), kept.asked_server);
            // The server's catalog may have changed since: asked again (its readings are cached).
            return match asked_server {
                false => Decision::Allow { rule },
                true => match self.server_checks(sql).await {
                    Ok(_) => Decision::Allow { rule },
                    Err(refusal) => Decision::Deny(refusal),
                },
            };
        }
        let settings = self.core.settings.load_full();
        let (policy, grant) = self.core.in_force(&settings, &self.identity, &self.target);
        let judged = self.core.judge(policy, &self.identity, &self.target, sql.analysis, sql.masked_columns_here);
        // What only the server can tell is asked once the policy would let the statement through
        // (or review it).
        let (judged, asked_server) = match judged {
            judged @ (Decision::Allow { .. } | Decision::Review(_)) => match self.server_checks(sql).await {
                Ok(asked) => (judged, asked),
                Err(refusal) => (Decision::Deny(refusal), true),
            },
            other => (other, false),
        };
        let decision = match judged {
            Decision::Review(refusal) => {
                // A target without a dialect binds the approval to the text exactly.
                let canonical = match &self.sql_language {
                    Some(language) => language.canonical(sql.text),
                    None => sql.text.to_string(),
                };
                self.review(policy, &refusal, sql.text, &canonical, sql.analysis.takes_parameters()).await
            }
            other => under_grant(other, grant.as_ref().map(|(g, _)| g)),
        };
        if let (Some(shared), Some(e), Decision::Allow { rule }) = (keep, epoch, &decision)
            && self.core.decision_epoch(&self.identity, &self.target) == Some(e)
        {
            if self.kept.len() >= MAX_KEPT_ALLOWS {
                self.kept.clear();
            }
            let kept = KeptAllow { _analysis: Arc::clone(shared), epoch: e, rule: Arc::from(&**rule), asked_server };
            self.kept.insert(Arc::as_ptr(shared).addr(), kept);
        }
        decision
    }

    /// The checks of a statement only the database server can answer, made after policy, for
    /// tables, views and functions alike (tables were checked with the policy, from the statement
    /// itself): in a read-only session, a call of a user function the server says may write; with
    /// column rules, a view or function that carries a masked column into a computation. `Ok(true)`
    /// when the server was asked. What cannot be asked is refused.
    async fn server_checks(&self, sql: &SqlAction<'_>) -> Result<bool, Refusal> {
        let mut asked = false;
        if self.upstream_read_only {
            let called = sluice_policy::user_functions(sql.analysis);
            if !called.is_empty() {
                asked = true;
                let server = sql.server.ok_or_else(|| sluice_policy::volatility_unknown(NO_SERVER))?;
                match server.may_write(&called).await {
                    Ok(None) => {}
                    Ok(Some(function)) => return Err(sluice_policy::volatile_call_refusal(&function)),
                    Err(e) => return Err(sluice_policy::volatility_unknown(&e)),
                }
            }
        }
        let Some(masking) = self.masking.as_ref().filter(|m| m.has_column_rules()) else { return Ok(asked) };
        if !matches!(sql.analysis, SqlAnalysis::Parsed { .. }) {
            return Ok(asked);
        }
        let server = sql.server.ok_or_else(|| sluice_mask::lineage_unknown(NO_SERVER))?;
        match server.reached(sql.analysis).await {
            // No view or function of the database carries a masked column: nothing to check.
            Ok(None) => Ok(true),
            Ok(Some(reached)) if reached.is_empty() => Ok(true),
            Ok(Some(reached)) => match masking.catalog_problem(&reached, sql.analysis) {
                None => Ok(true),
                Some(problem) => Err(sluice_mask::lineage_refusal(problem)),
            },
            Err(e) => Err(sluice_mask::lineage_unknown(&e)),
        }
    }

    /// An action of a kind no policy rule can match yet: the target's default decides.
    async fn decide_unmatched(&mut self, action: &Action<'_>) -> Decision {
        let settings = self.core.settings.load_full();
        let (policy, _) = self.core.in_force(&settings, &self.identity, &self.target);
        let summary = action.summary();
        match policy.decide_unmatched(&self.identity, &self.target, action.kind(), &summary) {
            Decision::Review(refusal) => self.review(policy, &refusal, &summary, &summary, false).await,
            other => other,
        }
    }

    /// Opens (or finds) the review a `review` decision asks for.
    async fn review(
        &self,
        policy: &Policy,
        refusal: &Refusal,
        text: &str,
        canonical: &str,
        parameters: bool,
    ) -> Decision {
        let rules = policy.review_rules(&refusal.rule);
        let ask = StatementReview {
            identity: &self.identity,
            connection: &self.target,
            session_id: &self.id,
            text,
            canonical,
            client_program: self.client_program.as_deref(),
            parameters,
            refusal,
            rules: &rules,
        };
        // Boxed: a review is rare, and its future (store calls, notifications) would otherwise
        // make every decision's larger (futures are moved whole at each await).
        Box::pin(self.core.approvals.review_statement(ask)).await
    }

    /// "No record, no execution": a statement that can change state is let through only once its
    /// decision is durable in the audit log (reads are recorded in batches after they ran). A
    /// held one is recorded when its approval arrives (`await_review`).
    async fn recorded_before_forwarding(&mut self, sql: &SqlAction<'_>, decision: Decision) -> Decision {
        let watched = match &decision {
            Decision::Allow { .. } | Decision::Approved { .. } => None,
            Decision::Hold(hold) => Some(hold.review_id),
            Decision::Review(_) | Decision::Deny(_) => return decision,
        };
        let settings = self.core.settings.load();
        if !settings.changes_before_forwarding {
            return decision;
        }
        let (policy, _) = self.core.in_force(&settings, &self.identity, &self.target);
        let changes = policy.changes_state(sql.analysis, &self.target);
        drop(settings);
        let changes = match changes {
            Some(changes) => changes,
            None => Box::pin(self.calls_writing_function(sql)).await,
        };
        match (changes, watched) {
            (false, _) => decision,
            (true, Some(review_id)) => {
                self.held_change = Some(HeldChange { review_id, kind: "sql", text: Arc::from(sql.text) });
                decision
            }
            (true, None) => Box::pin(self.durable().record("sql", sql.text, decision)).await,
        }
    }

    /// Whether the user-defined functions a statement calls may write, as the server says; when
    /// it cannot say, they may.
    async fn calls_writing_function(&self, sql: &SqlAction<'_>) -> bool {
        let called = sluice_policy::user_functions(sql.analysis);
        match sql.server {
            Some(server) => !matches!(server.may_write(&called).await, Ok(None)),
            None => true,
        }
    }

    /// Where an allowed change's decision is written durably.
    fn durable(&self) -> Durable {
        Durable {
            audit: Arc::clone(&self.core.audit),
            principal: Arc::clone(&self.principal),
            session: Arc::clone(&self.id),
        }
    }

    /// Decides an HTTP request by the HTTP rules; a request that can change state is let through
    /// only once its decision is durable, as a SQL change is.
    async fn decide_http(&mut self, http: &HttpAction) -> Decision {
        let settings = self.core.settings.load_full();
        let (policy, grant) = self.core.in_force(&settings, &self.identity, &self.target);
        // The parts of a line that are escaped are masked as they are (see `HttpAction::record_line`).
        let mask = |part: &str| self.masking.as_ref().and_then(|m| m.masking().mask_text(part));
        let decision = match policy.decide_http(&self.identity, &self.target, http) {
            Decision::Review(refusal) => {
                self.review(policy, &refusal, &http.review_text(&mask), &http.canonical(), false).await
            }
            other => under_grant(other, grant.as_ref().map(|(g, _)| g)),
        };
        if http.reads_only() || !settings.changes_before_forwarding {
            return decision;
        }
        match &decision {
            Decision::Allow { .. } | Decision::Approved { .. } => {
                Box::pin(self.durable().record("http", &http.decided_line(&mask), decision)).await
            }
            Decision::Hold(hold) => {
                let text = Arc::from(http.decided_line(&mask));
                self.held_change = Some(HeldChange { review_id: hold.review_id, kind: "http", text });
                decision
            }
            Decision::Review(_) | Decision::Deny(_) => decision,
        }
    }

    /// A command line: reviewed bound to its exact text (a command differing by one character is
    /// another command), recorded durably before it runs (any command may change state).
    async fn decide_exec(&mut self, exec: &ExecAction) -> Decision {
        let settings = self.core.settings.load_full();
        let (policy, grant) = self.core.in_force(&settings, &self.identity, &self.target);
        let decision = match policy.decide_exec(&self.identity, &self.target, exec) {
            Decision::Review(refusal) => self.review(policy, &refusal, &exec.line, &exec.line, false).await,
            other => under_grant(other, grant.as_ref().map(|(g, _)| g)),
        };
        // A transfer that only reads changes nothing: it is recorded as reads are.
        let reads = exec.transfer.as_ref().is_some_and(|t| t.files.iter().all(|f| f.op.reads()));
        if !settings.changes_before_forwarding || reads {
            return decision;
        }
        match &decision {
            Decision::Allow { .. } | Decision::Approved { .. } => {
                Box::pin(self.durable().record("exec", &exec.line, decision)).await
            }
            Decision::Hold(hold) => {
                let text = Arc::from(exec.line.as_str());
                self.held_change = Some(HeldChange { review_id: hold.review_id, kind: "exec", text });
                decision
            }
            Decision::Review(_) | Decision::Deny(_) => decision,
        }
    }

    fn record(&self, event: AuditEvent) {
        let session = Some(Arc::clone(&self.id));
        self.core.audit.record(AuditRecord::now(Arc::clone(&self.principal), session, event));
    }

    fn record_end(&mut self, reason: String) {
        self.ended = true;
        if self.started {
            self.record(AuditEvent::SessionEnded { reason });
        }
    }
}

impl SessionGate for EngineSession {
    type Log = EngineLog;

    fn id(&self) -> &Arc<str> {
        &self.id
    }

    fn principal(&self) -> &Identity {
        &self.identity
    }

    fn upstream_failed(mut self) {
        self.ended = true;
        self.record(AuditEvent::Authentication {
            protocol: self.protocol,
            client_addr: self.client_addr.clone(),
            target: self.target.clone(),
            outcome: AuthOutcome::UpstreamUnavailable,
        });
    }

    fn started(&mut self) {
        self.started = true;
        self.record(AuditEvent::SessionStarted {
            protocol: self.protocol,
            target: self.target.clone(),
            client_addr: self.client_addr.clone(),
            client_tls: self.client_tls,
            client_program: self.client_program.clone(),
        });
    }

    async fn decide(&mut self, action: &Action<'_>) -> Decision {
        match action {
            Action::Sql(sql) => {
                let decision = self.decide_sql(sql).await;
                self.recorded_before_forwarding(sql, decision).await
            }
            Action::Http(http) => self.decide_http(http).await,
            Action::Exec(exec) => self.decide_exec(exec).await,
            other => self.decide_unmatched(other).await,
        }
    }

    fn await_review(&self, hold: &Hold) -> impl Future<Output = Decision> + Send + 'static {
        let (approvals, id, hold) = (Arc::clone(&self.core.approvals), Arc::clone(&self.id), hold.clone());
        let held = self.held_change.clone().filter(|h| h.review_id == hold.review_id);
        let durable = self.durable();
        async move {
            let decision = approvals.await_review(&id, &hold).await;
            match (&decision, held) {
                (Decision::Approved { .. }, Some(held)) => {
                    Box::pin(durable.record(held.kind, &held.text, decision)).await
                }
                _ => decision,
            }
        }
    }

    fn decision_epoch(&self) -> Option<u64> {
        self.core.decision_epoch(&self.identity, &self.target)
    }

    fn standing(&self) -> Standing {
        // Asked before every batch of a client's messages: almost always nothing has been revoked.
        let unusable = self.core.unusable_tokens.load();
        if !unusable.is_empty() && unusable.contains(&self.identity.credential_id) {
            return Standing::CredentialEnded;
        }
        // A session opened with write access keeps an upstream that writes: once the policy in
        // force says read-only (its grant ended, or a reload), it must not go on.
        if !self.upstream_read_only
            && self.core.approvals.grant_for(&self.identity, &self.target).is_none()
            && self.core.settings.load().policy.read_only(&self.identity, &self.target)
        {
            return Standing::AccessEnded;
        }
        Standing::Valid
    }

    fn permissions(&self) -> Permissions {
        self.core.permissions_for(&self.identity, &self.target)
    }

    async fn explain(&self, action: &Action<'_>) -> Explanation {
        match action {
            Action::Sql(sql) => {
                let explanation = self.core.explain_sql(&self.identity, &self.target, sql.analysis);
                if explanation.decision == "deny" {
                    return explanation;
                }
                match self.server_checks(sql).await {
                    Ok(_) => explanation,
                    Err(refusal) => {
                        Explanation { operations: explanation.operations, ..Explanation::refused(&refusal) }
                    }
                }
            }
            other => {
                let settings = self.core.settings.load();
                let (policy, _) = self.core.in_force(&settings, &self.identity, &self.target);
                let decision = match other {
                    Action::Http(http) => policy.decide_http(&self.identity, &self.target, http),
                    Action::Exec(exec) => policy.decide_exec(&self.identity, &self.target, exec),
                    other => policy.decide_unmatched(&self.identity, &self.target, other.kind(), &other.summary()),
                };
                explanation(policy, &decision, false, Vec::new())
            }
        }
    }

    fn log(&self) -> EngineLog {
        EngineLog {
            audit: Arc::clone(&self.core.audit),
            session_id: Arc::clone(&self.id),
            principal: Arc::clone(&self.principal),
            records: self.core.settings.load().record_statements,
            excerpt: self.core.settings.load().result_excerpt,
        }
    }

    fn end(mut self, reason: String) {
        self.record_end(reason);
    }
}

impl Drop for EngineSession {
    /// A session an adapter let go of without ending it still ends in the audit trail.
    fn drop(&mut self) {
        if !self.ended {
            self.record_end("the adapter dropped the session without ending it".into());
        }
    }
}

/// An allow given under an access grant names the grant.
fn under_grant(decision: Decision, grant: Option<&ActiveGrant>) -> Decision {
    match (decision, grant) {
        (Decision::Allow { rule }, Some(grant)) => {
            Decision::Allow { rule: Arc::from(format!("grant #{}: {rule}", grant.review_id)) }
        }
        (other, _) => other,
    }
}

/// Where a session writes the decision on a change before it is forwarded.
struct Durable {
    audit: Arc<dyn AuditSink>,
    principal: Arc<Principal>,
    session: Arc<str>,
}

impl Durable {
    /// Writes an allowed action's decision durably; if it cannot be, the action is refused.
    async fn record(&self, kind: &'static str, text: &str, decision: Decision) -> Decision {
        let event = AuditEvent::ActionDecided {
            action: kind,
            text: Arc::from(text),
            verdict: decision.effect(),
            rule: Some(Arc::from(decision.rule())),
        };
        let record = AuditRecord::now(Arc::clone(&self.principal), Some(Arc::clone(&self.session)), event);
        match self.audit.record_durable(record).await {
            Ok(()) => decision,
            Err(reason) => Decision::Deny(Refusal {
                rule: "audit".into(),
                reason: "sluice forwards no change it cannot record, and the audit log cannot be written now".into(),
                detail: Some(reason),
                hint: Some(format!(
                    "send the {} again once the gateway's store is writable (an operator sees why in sluice's \
                     log); reads still work",
                    if kind == "sql" { "statement" } else { "request" }
                )),
                cause: RefusalCause::Policy,
            }),
        }
    }
}

/// Where an adapter hands what became of a session's actions.
#[derive(Clone)]
pub struct EngineLog {
    audit: Arc<dyn AuditSink>,
    session_id: Arc<str>,
    principal: Arc<Principal>,
    records: bool,
    excerpt: Option<ExcerptLimits>,
}

impl SessionLog for EngineLog {
    fn records_outcomes(&self) -> bool {
        self.records
    }

    fn result_excerpt(&self) -> Option<ExcerptLimits> {
        self.excerpt.filter(|_| self.records)
    }

    fn finish(&self, seq: u64, outcome: Outcome) {
        if !self.records {
            return;
        }
        // The text is masked on the recorder's thread (errors arrive masked already).
        let action = ActionRecord {
            seq,
            text: outcome.text,
            duration_us: outcome.duration_us,
            verdict: outcome.decision,
            rule: outcome.rule,
            detail: outcome.detail,
        };
        let session = Some(Arc::clone(&self.session_id));
        let principal = Arc::clone(&self.principal);
        let at_us = outcome.started_at_us;
        self.audit.record(AuditRecord { at_us, principal, session, event: AuditEvent::Action(action) });
    }

    fn terminal(&self, terminal: u64, (width, height): (u32, u32), events: String) {
        // Recorded whatever `record_statements` says: a terminal is the session itself.
        let event = AuditEvent::Terminal { terminal, width, height, events };
        let session = Some(Arc::clone(&self.session_id));
        self.audit.record(AuditRecord::now(Arc::clone(&self.principal), session, event));
    }
}
