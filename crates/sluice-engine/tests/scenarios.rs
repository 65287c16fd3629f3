//! Scenarios: a fake adapter drives sessions of actions through the real engine (a real SQLite
//! store in a temporary directory, the real policy, approvals and masking; no sockets) and checks
//! the verdicts it gets and the audit events the engine emits, in order.

use arc_swap::ArcSwap;
use sluice_approvals::{Approvals, Notifier};
use sluice_config::{Config, ConnectionConfig};
use sluice_core::audit::DurableWrite;
use sluice_core::review::Outcome as ReviewOutcome;
use sluice_core::span::Span;
use sluice_core::sql::{ObjectName, SharedAnalysis, SqlAnalysis};
use sluice_core::{AuditEvent, AuditRecord, AuditSink, AuthOutcome, Decision, Identity, Protocol, Secret, ids, token};
use sluice_engine::{Engine, EngineSession, MASK_TOKEN_PURPOSE, Parts, TargetFacts, TargetPreparer};
use sluice_gate::{
    Action, ActionDetail, ClientInfo, Gate, HttpAction, OpenError, OpenRequest, Outcome, Presented, ServerAnswer,
    SessionGate, SessionGrant, SessionLog, SqlAction, SqlLanguage, SqlServer, Standing, Target,
};
use sluice_mask::{CatalogRules, Masking, View};
use sluice_store::vault::MasterKey;
use sluice_store::{ReviewStore, TokenRow, TokenStore};
use sluice_store_sqlite::SqliteStore;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const CONFIG: &str = r#"
[connections.shop]
host = "127.0.0.1"
user = "app"
password = "none"

[connections.reports]
host = "127.0.0.1"
user = "app"
password = "none"
policy = "read-only"

[connections.broken]
host = "127.0.0.1"
user = "app"
password = "env:SLUICE_SCENARIO_VARIABLE_NOBODY_SETS"

[[policy.rules]]
name = "no-drops"
effect = "deny"
kinds = ["drop"]
reason = "tables are not dropped through sluice"

[[policy.rules]]
name = "deletes-need-review"
effect = "review"
kinds = ["delete"]
reason = "deletes need a second pair of eyes"
review = { approvers = ["dba"] }

[[policy.rules]]
name = "truncates-wait"
effect = "review"
kinds = ["truncate"]
reason = "truncates are held until approved"
review = { mode = "wait", approvers = ["dba"], timeout = "30s" }

[masking]
enabled = true

[[masking.columns]]
name = "customer-ssn"
columns = ["public.customers.ssn"]
action = "redact"
connections = ["shop"]

[[access.policies]]
name = "backfill"
connections = ["reports"]
max_duration = "1h"
default = "allow"
rules = [{ name = "never-drop", effect = "deny", kinds = ["drop"] }]
review = { approvers = ["dba"] }
"#;

/// The audit trail as the engine emitted it; durable records are marked, and can be made to fail.
#[derive(Default)]
struct Trail {
    records: Mutex<Vec<AuditRecord>>,
    durable: Mutex<Vec<bool>>,
    store_broken: AtomicBool,
}

impl AuditSink for Trail {
    fn record(&self, record: AuditRecord) {
        self.records.lock().unwrap().push(record);
        self.durable.lock().unwrap().push(false);
    }

    fn record_durable(&self, record: AuditRecord) -> DurableWrite {
        if self.store_broken.load(Ordering::Relaxed) {
            return Box::pin(std::future::ready(Err("disk full".to_string())));
        }
        self.records.lock().unwrap().push(record);
        self.durable.lock().unwrap().push(true);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Trail {
    fn take(&self) -> Vec<AuditRecord> {
        self.durable.lock().unwrap().clear();
        std::mem::take(&mut *self.records.lock().unwrap())
    }

    /// Which of the records since the last `take` were asked for durably.
    fn durability(&self) -> Vec<bool> {
        self.durable.lock().unwrap().clone()
    }
}

/// The fake adapter's targets: no options of its own.
struct NoOptions;

impl TargetPreparer for NoOptions {
    fn describe(&self, name: &str, _config: &ConnectionConfig) -> Result<TargetFacts, String> {
        Ok(TargetFacts { protocol: Protocol::Postgres, sql_search_path: vec!["public".into()], summary: name.into() })
    }

    fn prepare(&self, name: &str, _config: &ConnectionConfig) -> Result<Target, String> {
        Ok(Target::new(name, Protocol::Postgres, Arc::new(())).with_sql(Arc::new(PostgresGrammar)))
    }
}

/// The adapter's SQL dialect, as sluice-pg supplies it.
struct PostgresGrammar;

impl SqlLanguage for PostgresGrammar {
    fn analyze(&self, text: &str) -> SqlAnalysis {
        sluice_sql::analyze(text)
    }

    fn canonical(&self, text: &str) -> String {
        sluice_sql::canonical(text)
    }
}

struct Harness {
    engine: Engine,
    approvals: Arc<Approvals>,
    store: Arc<SqliteStore>,
    trail: Arc<Trail>,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(text: &str) -> Config {
    let config = sluice_config::parse(text, "scenario.toml".as_ref()).expect("the scenario's configuration is valid");
    sluice_engine::compile::check(&config, "scenario.toml".as_ref(), &NoOptions)
        .expect("the scenario's configuration compiles");
    config
}

async fn harness() -> Harness {
    let dir = std::env::temp_dir().join(ids::new_id("sluice-engine-scenario-"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).await.unwrap());
    let config = config(CONFIG);
    let key = MasterKey::from_hex(&"ab".repeat(32)).unwrap();
    let masking = Arc::new(sluice_engine::compile::masking(&config, key.derive(MASK_TOKEN_PURPOSE)).unwrap());
    let notifier = Notifier::new(Vec::new(), "http://127.0.0.1:1".into(), Arc::clone(&masking));
    let trail = Arc::new(Trail::default());
    let approvals = Arc::new(
        Approvals::new(
            store.clone() as Arc<dyn ReviewStore>,
            sluice_engine::compile::access(
                &config,
                &sluice_engine::compile::connection_policies(&config, &NoOptions).unwrap(),
            )
            .unwrap(),
            notifier,
            Arc::clone(&trail) as Arc<dyn AuditSink>,
        )
        .await
        .unwrap(),
    );
    let parts = Parts {
        tokens: store.clone(),
        vault: store.clone(),
        audit: Arc::clone(&trail) as Arc<dyn AuditSink>,
        key,
        masking: Arc::new(ArcSwap::new(masking)),
        approvals: Arc::clone(&approvals),
        targets: Arc::new(NoOptions),
    };
    let engine = Engine::new(&config, parts).unwrap();
    Harness { engine, approvals, store, trail, dir }
}

impl Harness {
    /// Mints a token for `identity` in `groups`, as `sluice token create` does.
    async fn token(&self, identity: &str, groups: &[&str]) -> Secret {
        let minted = token::mint();
        let row = TokenRow {
            id: minted.id.clone(),
            identity: identity.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            digest: minted.digest,
            description: None,
            created_at: sluice_core::audit::now_us(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        self.store.insert_token(&row).await.unwrap();
        Secret::new(minted.clear)
    }

    async fn open(
        &self,
        user: &str,
        secret: &Secret,
        target: &str,
    ) -> Result<(SessionGrant, EngineSession), OpenError> {
        let client =
            ClientInfo { protocol: Protocol::Postgres, addr: "127.0.0.1:5000", tls: false, program: Some("psql") };
        let request = OpenRequest { presented: Presented::Token { user, secret }, target, client };
        self.engine.open(request).await
    }

    /// A session of `identity` on `target`, started.
    async fn session(&self, identity: &str, groups: &[&str], target: &str) -> (SessionGrant, EngineSession) {
        let secret = self.token(identity, groups).await;
        let (grant, mut session) = self.open(identity, &secret, target).await.expect("the session opens");
        session.started();
        (grant, session)
    }
}

fn approver() -> Identity {
    Identity { name: "dana".into(), groups: vec!["dba".into()], credential_id: "t_dana".into() }
}

/// An SQL action as the adapter builds it for a statement the classifier read (and shares).
fn sql(text: &str) -> (String, SharedAnalysis) {
    (text.to_string(), Arc::new(sluice_sql::analyze(text)))
}

async fn decide<S: SessionGate>(session: &mut S, statement: &(String, SharedAnalysis)) -> Decision {
    decide_on(session, statement, &Server::default()).await
}

/// Decides a statement with `server` answering what only the database server knows.
async fn decide_on<S: SessionGate>(
    session: &mut S,
    (text, analysis): &(String, SharedAnalysis),
    server: &Server,
) -> Decision {
    let action = SqlAction { text, analysis, shared: Some(analysis), masked_columns_here: true, server: Some(server) };
    session.decide(&Action::Sql(action)).await
}

/// The database server as the fake adapter answers for it: the views and functions column rules
/// reach (`None`: no masked column in the database), the functions that may write, or no answer at
/// all; counts how often the engine asked.
#[derive(Default)]
struct Server {
    reached: Option<Arc<CatalogRules>>,
    writes: Vec<&'static str>,
    unreachable: bool,
    asked: AtomicUsize,
}

impl Server {
    fn answer<T: Send + 'static>(&self, answer: T) -> ServerAnswer<'_, T> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let answer = if self.unreachable { Err("the catalog could not be read".to_string()) } else { Ok(answer) };
        Box::pin(async move { answer })
    }
}

impl SqlServer for Server {
    fn reached<'a>(&'a self, _: &'a SqlAnalysis) -> ServerAnswer<'a, Option<Arc<CatalogRules>>> {
        self.answer(self.reached.clone())
    }

    fn may_write<'a>(&'a self, called: &'a [&'a ObjectName]) -> ServerAnswer<'a, Option<ObjectName>> {
        self.answer(called.iter().find(|f| self.writes.contains(&f.name.as_str())).map(|f| (*f).clone()))
    }
}

fn review_id(decision: &Decision) -> i64 {
    let Decision::Review(refusal) = decision else { panic!("expected a review, got {decision:?}") };
    let at = refusal.reason.find("review #").unwrap_or_else(|| panic!("the refusal names no review: {refusal:?}"));
    refusal.reason[at + 8..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

fn kinds(records: &[AuditRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| match &r.event {
            AuditEvent::Authentication { outcome, .. } => format!("auth:{}", outcome.as_str()),
            AuditEvent::SessionStarted { .. } => "started".into(),
            AuditEvent::SessionEnded { .. } => "ended".into(),
            AuditEvent::Action(a) => format!("statement:{}:{}", a.verdict, a.rule.as_deref().unwrap_or("-")),
            AuditEvent::ActionDecided { verdict, rule, .. } => {
                format!("decided:{verdict}:{}", rule.as_deref().unwrap_or("-"))
            }
            AuditEvent::Review { review_id, transition, .. } => format!("review #{review_id}:{transition}"),
            AuditEvent::Admin { action, .. } => format!("admin:{}", action.as_str()),
            AuditEvent::Terminal { terminal, .. } => format!("terminal #{terminal}"),
        })
        .collect()
}

fn outcome(text: &str, decision: &Decision) -> Outcome {
    Outcome {
        text: Arc::from(text),
        started_at_us: 1,
        duration_us: 2,
        decision: decision.effect(),
        rule: Some(Arc::from(decision.rule())),
        detail: ActionDetail::Sql {
            path: "simple",
            rows: 1,
            tag: Some(Arc::from("SELECT 1")),
            error_code: None,
            error_message: None,
            result: None,
        },
    }
}

#[tokio::test]
async fn an_allowed_session_is_audited_from_authentication_to_its_end_in_order() {
    let h = harness().await;
    let (grant, mut session) = h.session("ann", &["agents"], "shop").await;
    assert_eq!((grant.principal.name.as_str(), grant.target.name.as_str()), ("ann", "shop"));
    assert!(grant.credential.is_none(), "the connection holds no credential (password = \"none\")");
    let select = sql("SELECT id FROM orders");
    let decision = decide(&mut session, &select).await;
    assert_eq!(decision, Decision::Allow { rule: "default".into() });
    let log = session.log();
    assert!(log.records_outcomes());
    log.finish(1, outcome(&select.0, &decision));
    let id = session.id().to_string();
    session.end("client terminated".into());

    let events = h.trail.take();
    assert_eq!(kinds(&events), ["auth:success", "started", "statement:allow:default", "ended"]);
    // One envelope: who (the identity and its token), in which session, when; then the kind's detail.
    let token_id = events[0].principal.credential_id.clone().expect("the token is named");
    for record in &events {
        assert_eq!((record.principal.name.as_str(), record.principal.credential_id.as_ref()), ("ann", Some(&token_id)));
        assert!(record.at_us > 0);
    }
    assert_eq!(events[0].session, None, "authentication comes before the session");
    assert!(events[1..].iter().all(|r| r.session.as_deref() == Some(id.as_str())));
    let AuditEvent::Action(action) = &events[2].event else { unreachable!() };
    let ActionDetail::Sql { rows, .. } = action.detail else { panic!("{:?}", action.detail) };
    assert_eq!((action.seq, &*action.text, rows), (1, "SELECT id FROM orders", 1));
    let AuditEvent::SessionEnded { reason } = &events[3].event else { unreachable!() };
    assert_eq!(reason, "client terminated");
}

#[tokio::test]
async fn a_denied_statement_names_its_rule_what_matched_and_the_next_step() {
    let h = harness().await;
    let (_, mut session) = h.session("ann", &["agents"], "shop").await;
    let Decision::Deny(refusal) = decide(&mut session, &sql("DROP TABLE orders")).await else { panic!("not denied") };
    assert_eq!(refusal.rule, "no-drops");
    assert_eq!(refusal.reason, "tables are not dropped through sluice");
    assert!(refusal.detail.as_deref().is_some_and(|d| d.contains("orders")), "{refusal:?}");
    assert!(refusal.hint.as_deref().is_some_and(|h| h.contains("sluice policy explain")), "{refusal:?}");
}

#[tokio::test]
async fn authentication_failures_are_refused_and_audited_with_their_outcome() {
    let h = harness().await;
    let secret = h.token("ann", &[]).await;
    let wrong_user = h.open("bob", &secret, "shop").await.err().expect("refused");
    assert!(matches!(wrong_user, OpenError::Auth(AuthOutcome::IdentityMismatch)), "{wrong_user:?}");
    let unknown = h.open("ann", &Secret::new(token::mint().clear), "shop").await.err().expect("refused");
    assert!(matches!(unknown, OpenError::Auth(AuthOutcome::UnknownToken)), "{unknown:?}");
    let malformed = h.open("ann", &Secret::new("hunter2"), "shop").await.err().expect("refused");
    assert!(matches!(malformed, OpenError::Auth(AuthOutcome::Malformed)), "{malformed:?}");
    let nowhere = h.open("ann", &secret, "nowhere").await.err().expect("refused");
    assert!(matches!(nowhere, OpenError::Auth(AuthOutcome::UnknownConnection)), "{nowhere:?}");
    assert_eq!(
        kinds(&h.trail.take()),
        ["auth:identity_mismatch", "auth:unknown_token", "auth:malformed", "auth:unknown_connection"]
    );
}

#[tokio::test]
async fn a_target_whose_credential_cannot_be_had_is_refused_naming_why_and_audited() {
    let h = harness().await;
    let secret = h.token("ann", &[]).await;
    let Err(OpenError::Misconfigured { connection, reason }) = h.open("ann", &secret, "broken").await else {
        panic!("a session opened without its credential")
    };
    assert_eq!(connection, "broken");
    assert!(reason.contains("SLUICE_SCENARIO_VARIABLE_NOBODY_SETS"), "{reason}");
    assert_eq!(kinds(&h.trail.take()), ["auth:target_misconfigured"]);
}

#[tokio::test]
async fn a_store_that_cannot_be_read_is_a_store_failure_not_a_bad_token() {
    let h = harness().await;
    let secret = h.token("ann", &[]).await;
    h.store.close().await;
    let failed = h.open("ann", &secret, "shop").await.err().expect("refused");
    assert!(matches!(failed, OpenError::Store(_)), "{failed:?}");
    assert_eq!(kinds(&h.trail.take()), ["auth:store_unavailable"]);
}

#[tokio::test]
async fn a_review_in_retry_mode_refuses_until_approved_then_allows_exactly_one_run() {
    let h = harness().await;
    let (_, mut session) = h.session("ann", &["agents"], "shop").await;
    let delete = sql("DELETE FROM orders WHERE id = 7");
    let first = decide(&mut session, &delete).await;
    let id = review_id(&first);
    // Asking again before a decision names the same review.
    assert_eq!(review_id(&decide(&mut session, &delete).await), id);
    // The review is of the statement, in the target's dialect, not of its spelling.
    let respelt = sql("delete from ORDERS\n  where id = 7; -- once more");
    assert_eq!(review_id(&decide(&mut session, &respelt).await), id);

    let (approved, _) = h.approvals.approve(&approver(), id, None).await.unwrap();
    assert_eq!(approved, ReviewOutcome::Approved);
    let run = decide(&mut session, &delete).await;
    assert!(matches!(run, Decision::Approved { review_id, .. } if review_id == id), "{run:?}");
    // The approval is used up: the same statement asks for a new review.
    let again = decide(&mut session, &delete).await;
    let next = review_id(&again);
    assert_ne!(next, id);
    // Every transition is an audit record: who asked, who approved, which session ran it.
    let reviews: Vec<(String, String, Option<String>)> = h
        .trail
        .take()
        .into_iter()
        .filter(|r| matches!(r.event, AuditEvent::Review { .. }))
        .map(|r| {
            (
                kinds(std::slice::from_ref(&r)).remove(0),
                r.principal.name.clone(),
                r.session.as_deref().map(str::to_string),
            )
        })
        .collect();
    let session_id = Some(session.id().to_string());
    assert_eq!(
        reviews,
        [
            (format!("review #{id}:requested"), "ann".to_string(), session_id.clone()),
            (format!("review #{id}:approved"), "dana".to_string(), None),
            (format!("review #{id}:ran"), "ann".to_string(), session_id.clone()),
            (format!("review #{next}:requested"), "ann".to_string(), session_id),
        ]
    );
}

#[tokio::test]
async fn a_review_in_wait_mode_holds_the_statement_until_an_approver_decides() {
    let h = harness().await;
    let (_, mut session) = h.session("ann", &["agents"], "shop").await;
    let Decision::Hold(hold) = decide(&mut session, &sql("TRUNCATE orders")).await else { panic!("not held") };
    assert_eq!(hold.rule, "truncates-wait");
    assert!(hold.notice.contains(&format!("#{}", hold.review_id)), "{hold:?}");
    let approvals = Arc::clone(&h.approvals);
    let review_id = hold.review_id;
    let approving = tokio::spawn(async move { approvals.approve(&approver(), review_id, None).await.map(|(o, _)| o) });
    let released = session.await_review(&hold).await;
    assert!(matches!(released, Decision::Approved { review_id: id, .. } if id == review_id), "{released:?}");
    assert_eq!(approving.await.unwrap().unwrap(), ReviewOutcome::Approved);
}

#[tokio::test]
async fn an_access_grant_replaces_the_policy_while_in_force_and_lifts_read_only() {
    let h = harness().await;
    let secret = h.token("ann", &["agents"]).await;
    let (before, mut session) = h.open("ann", &secret, "reports").await.unwrap();
    session.started();
    assert!(before.obligations.read_only, "the read-only preset opens the upstream read-only");
    let insert = sql("INSERT INTO totals VALUES (1)");
    let Decision::Deny(refusal) = decide(&mut session, &insert).await else {
        panic!("a read-only preset allowed a write")
    };
    assert_eq!(refusal.rule, "connection reports: read-only");

    let ann = Identity { name: "ann".into(), groups: vec!["agents".into()], credential_id: "t".into() };
    let asked =
        h.approvals.request_access(&ann, "reports", None, Span::parse("30m").unwrap(), "backfill").await.unwrap();
    h.approvals.approve(&approver(), asked.id, None).await.unwrap();
    let granted = decide(&mut session, &insert).await;
    assert_eq!(granted, Decision::Allow { rule: format!("grant #{}: default", asked.id).into() });
    let Decision::Deny(refusal) = decide(&mut session, &sql("DROP TABLE totals")).await else { panic!("allowed") };
    assert_eq!(refusal.rule, "never-drop", "the access policy's own rules apply under the grant");
    // The session was opened read-only: its upstream stays so, and it may go on.
    assert_eq!(session.standing(), Standing::Valid);
    let (after, _) = h.open("ann", &secret, "reports").await.unwrap();
    assert!(!after.obligations.read_only, "a session opened under the grant may write");
}

#[tokio::test]
async fn masking_obligations_are_handed_out_where_a_column_rule_is_in_scope() {
    let h = harness().await;
    let (shop, _) = h.session("ann", &[], "shop").await;
    let masking = shop.obligations.masking.expect("the column rule's connection gets masking obligations");
    assert!(masking.has_column_rules());
    let (reports, _) = h.session("ann", &[], "reports").await;
    let masking = reports.obligations.masking.expect("content detectors apply everywhere");
    assert!(!masking.has_column_rules(), "the column rule is scoped to shop");
}

#[tokio::test]
async fn a_kept_allow_is_decided_again_after_a_reload_changes_the_policy() {
    let h = harness().await;
    let (_, mut session) = h.session("ann", &[], "reports").await;
    let select = sql("SELECT id FROM orders");
    for _ in 0..2 {
        assert_eq!(
            decide(&mut session, &select).await,
            Decision::Allow { rule: "connection reports: read-only".into() }
        );
    }
    let stricter = CONFIG.replace("kinds = [\"drop\"]\nreason", "kinds = [\"drop\", \"read\"]\nreason");
    h.engine.reload(&config(&stricter)).unwrap();
    let Decision::Deny(refusal) = decide(&mut session, &select).await else { panic!("a kept allow outlived a reload") };
    assert_eq!(refusal.rule, "no-drops");
}

#[tokio::test]
async fn a_revoked_token_ends_the_standing_of_sessions_opened_with_it() {
    let h = harness().await;
    let secret = h.token("ann", &[]).await;
    let (_, session) = h.open("ann", &secret, "shop").await.unwrap();
    assert_eq!(session.standing(), Standing::Valid);
    let (id, _) = token::parse(secret.expose()).unwrap();
    h.store.revoke_token(id, sluice_core::audit::now_us()).await.unwrap();
    h.engine.refresh_unusable_tokens().await.unwrap();
    assert_eq!(session.standing(), Standing::CredentialEnded);
}

#[tokio::test]
async fn http_actions_get_the_targets_default_or_their_rule_when_decided_and_explained() {
    let h = harness().await;
    let (_, mut session) = h.session("ann", &[], "shop").await;
    let delete = HttpAction::new("DELETE", "/users/7").unwrap();
    let http = Action::Http(&delete);
    assert_eq!(session.decide(&http).await, Decision::Allow { rule: "default".into() });
    let denying = CONFIG.replacen("password = \"none\"\n", "password = \"none\"\ndefault = \"deny\"\n", 1);
    h.engine.reload(&config(&denying)).unwrap();
    let Decision::Deny(refusal) = session.decide(&http).await else { panic!("allowed under a deny default") };
    assert_eq!((refusal.rule.as_str(), refusal.detail.as_deref()), ("default", Some("DELETE /users/7")));
    assert_eq!(session.explain(&http).await.decision, "deny");
    // An HTTP rule decides it, and an explanation says so as the decision would.
    let ruled = format!(
        "{CONFIG}\n[[policy.rules]]\nname = \"no-user-deletes\"\neffect = \"deny\"\nmethods = [\"DELETE\"]\npaths = [\"/users/{{id}}\"]\n"
    );
    h.engine.reload(&config(&ruled)).unwrap();
    let explained = session.explain(&http).await;
    assert_eq!((explained.decision, explained.rule.as_str()), ("deny", "no-user-deletes"));
    assert_eq!(session.decide(&http).await.rule(), "no-user-deletes");
    let get = HttpAction::new("GET", "/users/7").unwrap();
    let get = Action::Http(&get);
    assert_eq!(session.explain(&get).await.decision, "allow");
}

#[tokio::test]
async fn a_session_dropped_without_ending_still_ends_in_the_audit_trail() {
    let h = harness().await;
    let (_, session) = h.session("ann", &[], "shop").await;
    drop(session);
    let (_, unstarted) = h.open("ann", &h.token("ann", &[]).await, "shop").await.unwrap();
    unstarted.upstream_failed();
    assert_eq!(
        kinds(&h.trail.take()),
        ["auth:success", "started", "ended", "auth:success", "auth:upstream_unavailable"]
    );
}

/// A view over `public.customers` (whose `ssn` column rule applies on shop), as the server's
/// catalog describes it.
fn customer_view(masking: &Masking) -> Arc<CatalogRules> {
    let view = View {
        schema: "public".into(),
        name: "customer_view".into(),
        columns: vec!["id".into(), "ssn".into()],
        reads: vec![("public".into(), "customers".into())],
        definition: sluice_sql::analyze("SELECT id, ssn FROM public.customers"),
        outputs: None,
    };
    Arc::new(masking.catalog_rules(&[view], Vec::new(), Vec::new()))
}

#[tokio::test]
async fn views_are_checked_for_masked_columns_after_policy_with_the_servers_catalog() {
    let h = harness().await;
    let (grant, mut session) = h.session("ann", &[], "shop").await;
    let masking = grant.obligations.masking.expect("shop has a column rule");
    let server = Server { reached: Some(customer_view(masking.masking())), ..Server::default() };
    // The policy refuses first: the server is not asked.
    let Decision::Deny(refusal) = decide_on(&mut session, &sql("DROP TABLE customer_view"), &server).await else {
        panic!("a drop was not refused")
    };
    assert_eq!(refusal.rule, "no-drops");
    assert_eq!(server.asked.load(Ordering::Relaxed), 0, "a statement the policy refuses costs no catalog read");
    // Computing on a view column that carries a masked column is refused like doing so on the table.
    let computed = sql("SELECT upper(ssn) FROM customer_view");
    let Decision::Deny(refusal) = decide_on(&mut session, &computed, &server).await else {
        panic!("a computation on a masked view column was allowed")
    };
    assert_eq!(refusal.rule, "masking");
    assert!(server.asked.load(Ordering::Relaxed) >= 1);
    // Reading it as it is (masked on the way out) is allowed, and so is the same on the table.
    let plain = sql("SELECT id, ssn FROM customer_view");
    assert_eq!(decide_on(&mut session, &plain, &server).await, Decision::Allow { rule: "default".into() });
    let Decision::Deny(on_table) = decide(&mut session, &sql("SELECT upper(ssn) FROM customers")).await else {
        panic!("a computation on the masked table column was allowed")
    };
    assert_eq!(on_table.rule, "masking");
    // A catalog that cannot be read refuses rather than lets through what it could not check,
    // even a statement allowed (and kept) before.
    let unreachable = Server { unreachable: true, ..Server::default() };
    let Decision::Deny(refusal) = decide_on(&mut session, &plain, &unreachable).await else {
        panic!("allowed although the views could not be checked")
    };
    assert!(refusal.reason.contains("cannot read the server's views"), "{refusal:?}");
    // explain asks the same questions.
    let action = SqlAction {
        text: &computed.0,
        analysis: &computed.1,
        shared: None,
        masked_columns_here: true,
        server: Some(&server),
    };
    assert_eq!(session.explain(&Action::Sql(action)).await.rule, "masking");
}

#[tokio::test]
async fn a_read_only_session_may_not_call_a_function_the_server_says_may_write() {
    let h = harness().await;
    let (grant, mut session) = h.session("ann", &[], "reports").await;
    assert!(grant.obligations.read_only);
    let server = Server { writes: vec!["touch_audit"], ..Server::default() };
    let Decision::Deny(refusal) = decide_on(&mut session, &sql("SELECT touch_audit()"), &server).await else {
        panic!("a volatile function ran in a read-only session")
    };
    assert_eq!((refusal.rule.as_str(), refusal.detail.as_deref()), ("read-only", Some("call of touch_audit()")));
    assert!(refusal.hint.as_deref().is_some_and(|h| h.contains("STABLE")), "{refusal:?}");
    let stable = sql("SELECT lower(name) FROM orders");
    assert!(decide_on(&mut session, &stable, &server).await.allows());
    // PostgreSQL's own functions need no asking; in a session that may write, nothing is asked.
    let asked = server.asked.load(Ordering::Relaxed);
    decide_on(&mut session, &sql("SELECT pg_catalog.now()"), &server).await;
    assert_eq!(server.asked.load(Ordering::Relaxed), asked);
    let (_, mut writer) = h.session("ann", &[], "shop").await;
    let writes_ok = Server { writes: vec!["touch_audit"], ..Server::default() };
    let called = sql("SELECT touch_audit()");
    assert!(decide_on(&mut writer, &called, &writes_ok).await.allows());
    let unreachable = Server { unreachable: true, ..Server::default() };
    let Decision::Deny(refusal) = decide_on(&mut session, &called, &unreachable).await else {
        panic!("allowed although the function could not be checked")
    };
    assert!(refusal.reason.contains("cannot read the server's functions"), "{refusal:?}");
}

#[tokio::test]
async fn a_change_is_allowed_only_once_its_decision_is_durable_and_reads_are_not_waited_on() {
    let h = harness().await;
    let (_, mut session) = h.session("ann", &["agents"], "shop").await;
    h.trail.take();
    let server = Server { writes: vec!["bump_counter"], ..Server::default() };
    for read in ["SELECT * FROM orders", "BEGIN", "SELECT count(*) FROM orders", "SELECT harmless(1)"] {
        assert!(decide_on(&mut session, &sql(read), &server).await.allows(), "{read}");
    }
    assert!(h.trail.take().is_empty(), "a read is recorded with its outcome, in a batch, not before it runs");

    let changes = [
        "INSERT INTO orders VALUES (1)",
        "SELECT bump_counter()",
        "SELECT nextval('s')",
        "SELECT pg_catalog.setval('s', 1)",
    ];
    for change in changes {
        assert!(decide_on(&mut session, &sql(change), &server).await.allows(), "{change}");
        assert_eq!(h.trail.durability(), [true], "{change}");
        let [record] = &h.trail.take()[..] else { panic!("one record for {change}") };
        let AuditEvent::ActionDecided { action, text, verdict, .. } = &record.event else { panic!("{record:?}") };
        assert_eq!((*action, &**text, *verdict), ("sql", change, "allow"));
        assert_eq!(record.session.as_deref(), Some(&**session.id()));
    }
    // No record, no execution: a change that cannot be recorded is refused, saying why and what next.
    h.trail.store_broken.store(true, Ordering::Relaxed);
    let refused = decide(&mut session, &sql("UPDATE orders SET total = 0")).await;
    let Decision::Deny(refusal) = refused else { panic!("{refused:?}") };
    assert_eq!(refusal.rule, "audit");
    assert_eq!(refusal.detail.as_deref(), Some("disk full"));
    assert!(refusal.hint.unwrap().contains("send the statement again"));
    assert!(decide(&mut session, &sql("SELECT 1")).await.allows(), "reads go on");
}
