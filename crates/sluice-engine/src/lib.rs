//! The decision pipeline every adapter shares: authentication, held credentials, access grants,
//! policy, the masking lineage check, reviews, kept allows and every audit event. Adapters reach it
//! through `sluice_gate::Gate`; it knows no bytes of any protocol. What the configuration sets
//! (targets, policy, masking) can be replaced while sluice runs (`Engine::reload`).

pub mod compile;
mod credentials;
mod session;

use credentials::CredentialError;
pub use session::{EngineLog, EngineSession};

use arc_swap::ArcSwap;
use sluice_approvals::{AccessPolicy, ActiveGrant, Approvals};
use sluice_config::{Config, ConnectionConfig};
use sluice_core::advice::{Explanation, Permissions};
use sluice_core::audit::now_us;
use sluice_core::sql::SqlAnalysis;
use sluice_core::{
    AdminAction, AuditEvent, AuditRecord, AuditSink, AuthOutcome, Decision, ExcerptLimits, Identity, Principal,
    Protocol,
};
use sluice_gate::{Gate, Obligations, OpenError, OpenRequest, Presented, SessionGrant, Target};
use sluice_mask::Masking;
use sluice_policy::Policy;
use sluice_store::vault::MasterKey;
use sluice_store::{CredentialVault, TokenStore};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// What the masking token key is derived for (from the master key; see `MasterKey::derive`).
pub const MASK_TOKEN_PURPOSE: &str = "mask-token";

/// What the engine knows of a target's protocol options, from its adapter.
#[derive(Clone, Debug)]
pub struct TargetFacts {
    pub protocol: Protocol,
    /// The schemas unqualified SQL names resolve to, for the SQL policy (empty for protocols
    /// without SQL).
    pub sql_search_path: Vec<String>,
    /// One line for an operator (`sluice check`): where the target is and how it is reached.
    pub summary: String,
}

/// The adapters' view of configured connections: each protocol's options are checked by its own
/// adapter, never by the configuration crate or the engine.
pub trait TargetPreparer: Send + Sync + 'static {
    /// Checks a connection's protocol options, reading no file and no network; the error names
    /// the option at fault.
    fn describe(&self, name: &str, config: &ConnectionConfig) -> Result<TargetFacts, String>;
    /// Builds, once per reload, what every session on the target needs (a TLS client
    /// configuration, say).
    fn prepare(&self, name: &str, config: &ConnectionConfig) -> Result<Target, String>;
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Policy(#[from] sluice_policy::PolicyError),
    #[error(transparent)]
    Masking(#[from] sluice_mask::MaskError),
}

/// Why a statement cannot be explained on a connection.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExplainError {
    /// No such connection, or not one the identity may use (the same answer for both, so that
    /// nothing can be enumerated).
    #[error("no such connection that this identity may use")]
    NotUsable,
    /// The connection's requests are not SQL.
    #[error("the connection does not take SQL")]
    NotSql,
}

/// The record of an administrative change or refusal, by `actor`: the command line's token and
/// credential commands (`cli:<os user>`, made outside a running engine), the API's refused calls.
pub fn admin_record(actor: Arc<Principal>, action: AdminAction, subject: &str, detail: Option<String>) -> AuditRecord {
    let event = AuditEvent::Admin { action, subject: subject.to_string(), detail };
    AuditRecord::now(actor, None, event)
}

/// The record that ends a session a previous run left open: it was killed, so nothing recorded
/// the end then.
pub fn orphaned_session_end(principal: Arc<Principal>, session: &str) -> AuditRecord {
    let reason = "gateway stopped before the session ended".to_string();
    AuditRecord::now(principal, Some(Arc::from(session)), AuditEvent::SessionEnded { reason })
}

/// A connection whose protocol options its adapter refuses (or cannot prepare).
#[derive(Debug, Error)]
#[error("connection {name}: {reason}")]
pub struct TargetError {
    pub name: String,
    pub reason: String,
}

/// Everything the engine is built from besides the configuration.
pub struct Parts {
    pub tokens: Arc<dyn TokenStore>,
    pub vault: Arc<dyn CredentialVault>,
    pub audit: Arc<dyn AuditSink>,
    pub key: MasterKey,
    /// Shared with the recorder, which masks recorded texts with the same rules.
    pub masking: Arc<ArcSwap<Masking>>,
    pub approvals: Arc<Approvals>,
    pub targets: Arc<dyn TargetPreparer>,
}

/// The engine; cheap to share (sessions hold its core).
pub struct Engine {
    core: Arc<EngineCore>,
}

pub(crate) struct EngineCore {
    tokens: Arc<dyn TokenStore>,
    vault: Arc<dyn CredentialVault>,
    audit: Arc<dyn AuditSink>,
    key: MasterKey,
    targets: Arc<dyn TargetPreparer>,
    settings: ArcSwap<Settings>,
    masking: Arc<ArcSwap<Masking>>,
    /// Moves at every reload, so that allows a session kept are decided again.
    generation: AtomicU64,
    /// Tokens revoked or expired (by id), as last read from the store: sessions opened with one
    /// end at their next message (see `SessionGate::standing`).
    unusable_tokens: ArcSwap<HashSet<String>>,
    approvals: Arc<Approvals>,
    /// Why new sessions are refused for now (an audit export's backlog is full), if they are.
    refusing_sessions: arc_swap::ArcSwapOption<String>,
}

/// What the configuration file sets for sessions, replaced whole by a reload.
struct Settings {
    connections: HashMap<String, Prepared>,
    policy: Policy,
    record_statements: bool,
    /// How much of each result a recorded action keeps (`[recording] result_rows`).
    result_excerpt: Option<ExcerptLimits>,
    /// Changes are forwarded only once their decision is durable (`[recording]`).
    changes_before_forwarding: bool,
}

/// A configured connection with what its adapter prepared for it.
struct Prepared {
    config: ConnectionConfig,
    target: Target,
}

impl Settings {
    fn compile(config: &Config, targets: &dyn TargetPreparer) -> Result<Settings, EngineError> {
        let mut connections = HashMap::new();
        for (name, conn) in &config.connections {
            let target = targets.prepare(name, conn).map_err(|reason| TargetError { name: name.clone(), reason })?;
            connections.insert(name.clone(), Prepared { config: conn.clone(), target });
        }
        Ok(Settings {
            connections,
            policy: compile::policy(config, &compile::connection_policies(config, targets)?)?,
            record_statements: config.recording.statements,
            result_excerpt: (config.recording.result_rows > 0).then_some(ExcerptLimits {
                rows: config.recording.result_rows,
                bytes: config.recording.result_max_bytes,
            }),
            changes_before_forwarding: config.recording.changes_before_forwarding,
        })
    }
}

impl Engine {
    pub fn new(config: &Config, parts: Parts) -> Result<Engine, EngineError> {
        let settings = Settings::compile(config, &*parts.targets)?;
        Ok(Engine {
            core: Arc::new(EngineCore {
                tokens: parts.tokens,
                vault: parts.vault,
                audit: parts.audit,
                key: parts.key,
                targets: parts.targets,
                settings: ArcSwap::from_pointee(settings),
                masking: parts.masking,
                generation: AtomicU64::new(0),
                unusable_tokens: ArcSwap::from_pointee(HashSet::new()),
                approvals: parts.approvals,
                refusing_sessions: arc_swap::ArcSwapOption::empty(),
            }),
        })
    }

    /// Replaces targets, policy and masking with what `config` sets, all at once, or nothing when
    /// any of it does not compile. Open sessions decide their next action under the new policy;
    /// targets and masking apply to sessions opened from now on.
    pub fn reload(&self, config: &Config) -> Result<(), EngineError> {
        let core = &self.core;
        let settings = Settings::compile(config, &*core.targets)?;
        let masking = compile::masking(config, core.key.derive(MASK_TOKEN_PURPOSE))?;
        core.settings.store(Arc::new(settings));
        core.masking.store(Arc::new(masking));
        core.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Refuses new sessions, saying `reason`, until called with `None`. Open sessions go on.
    pub fn refuse_new_sessions(&self, reason: Option<String>) {
        self.core.refusing_sessions.store(reason.map(Arc::new));
    }

    /// Reads which tokens were revoked or expired (here or by another instance on the same store);
    /// sessions opened with one end at their next message.
    pub async fn refresh_unusable_tokens(&self) -> Result<(), sluice_store::StoreError> {
        let core = &self.core;
        let now: HashSet<String> = core.tokens.unusable_tokens(now_us()).await?.into_iter().collect();
        if **core.unusable_tokens.load() != now {
            core.unusable_tokens.store(Arc::new(now));
        }
        Ok(())
    }

    /// Records a call of the REST API whose token proved nothing (`request`: its method and path).
    pub fn record_api_refusal(&self, token_id: Option<String>, request: &str, outcome: AuthOutcome) {
        let name = token_id.as_ref().map_or_else(|| "unknown".to_string(), |id| format!("token {id}"));
        let actor = Principal::new(name, token_id);
        let detail = Some(outcome.as_str().to_string());
        self.core.audit.record(admin_record(actor, AdminAction::ApiAuthenticationFailed, request, detail));
    }

    /// Records that the configuration file at `path` was put in force, or why a reload of it was
    /// refused (`refused`); `detail` says which file content (its digest) or what was wrong.
    pub fn record_configuration(&self, path: &str, refused: bool, detail: String) {
        let action = if refused { AdminAction::ConfigurationRefused } else { AdminAction::ConfigurationLoaded };
        let actor = Principal::new("sluice", None);
        self.core.audit.record(admin_record(actor, action, path, Some(detail)));
    }

    /// Records that retention removed the oldest audit records (`detail`: which, and why).
    pub fn record_audit_removal(&self, detail: String) {
        let actor = Principal::new("sluice", None);
        self.core.audit.record(admin_record(actor, AdminAction::AuditRecordsRemoved, "audit log", Some(detail)));
    }

    /// What `identity` may do on `connection`, when it may use it at all: what an agent that asks
    /// with its token is told.
    pub fn permissions(&self, identity: &Identity, connection: &str) -> Option<Permissions> {
        self.core.may_use(identity, connection).then(|| self.core.permissions_for(identity, connection))
    }

    /// The decision a statement would get on `connection`, read in the connection's SQL dialect.
    pub fn explain_statement(
        &self,
        identity: &Identity,
        connection: &str,
        statement: &str,
    ) -> Result<Explanation, ExplainError> {
        if !self.core.may_use(identity, connection) {
            return Err(ExplainError::NotUsable);
        }
        let language = self.core.settings.load().connections.get(connection).and_then(|p| p.target.sql().cloned());
        let language = language.ok_or(ExplainError::NotSql)?;
        Ok(self.core.explain_sql(identity, connection, &language.analyze(statement)))
    }
}

impl Gate for Engine {
    type Session = EngineSession;

    async fn key_usable(&self, fingerprint: &str) -> bool {
        self.core.tokens.identify_key(fingerprint).await.is_ok()
    }

    fn targets(&self, protocol: Protocol) -> Vec<Target> {
        let settings = self.core.settings.load();
        settings.connections.values().filter(|p| p.target.protocol == protocol).map(|p| p.target.clone()).collect()
    }

    async fn open(&self, request: OpenRequest<'_>) -> Result<(SessionGrant, EngineSession), OpenError> {
        let core = &self.core;
        if let Some(reason) = core.refusing_sessions.load_full() {
            core.audit_auth(&request, AuthOutcome::SessionsRefused, None);
            return Err(OpenError::Refused(reason.to_string()));
        }
        let identity = core.authenticate(&request).await?;
        let credential_id = Some(identity.credential_id.clone());
        let settings = core.settings.load_full();
        let Some(prepared) = settings.connections.get(request.target) else {
            core.audit_auth(&request, AuthOutcome::UnknownConnection, credential_id);
            return Err(OpenError::Auth(AuthOutcome::UnknownConnection));
        };
        if !prepared.config.permits(&identity.name, &identity.groups) {
            core.audit_auth(&request, AuthOutcome::NotPermitted, credential_id);
            return Err(OpenError::Auth(AuthOutcome::NotPermitted));
        }
        let credential = match credentials::resolve(&*core.vault, &core.key, request.target, &prepared.config).await {
            Ok(credential) => credential,
            Err(CredentialError::Store(reason)) => {
                core.audit_auth(&request, AuthOutcome::StoreUnavailable, credential_id);
                return Err(OpenError::Store(format!("the held credential could not be read: {reason}")));
            }
            Err(CredentialError::Missing(reason)) => {
                core.audit_auth(&request, AuthOutcome::TargetMisconfigured, credential_id);
                return Err(OpenError::Misconfigured { connection: request.target.to_string(), reason });
            }
        };
        core.audit_auth(&request, AuthOutcome::Success, credential_id);
        core.note_token_used(&identity.credential_id);
        let granted = core.approvals.grant_for(&identity, request.target).is_some();
        let obligations = Obligations {
            masking: Some(core.masking.load().for_session(&identity, request.target)).filter(|m| m.active()),
            read_only: !granted && settings.policy.read_only(&identity, request.target),
        };
        let session = EngineSession::new(Arc::clone(core), &identity, &request, &prepared.target, &obligations);
        let grant = SessionGrant { principal: identity, target: prepared.target.clone(), credential, obligations };
        Ok((grant, session))
    }
}

impl EngineCore {
    /// The identity the presented credential proves, or the recorded reason it proves none.
    async fn authenticate(&self, request: &OpenRequest<'_>) -> Result<Identity, OpenError> {
        let (user, proven) = match &request.presented {
            Presented::Token { user, secret } => (Some(*user), self.tokens.identify(secret.expose()).await),
            Presented::Bearer { secret } => (None, self.tokens.identify(secret.expose()).await),
            Presented::Key { user, fingerprint } => (Some(*user), self.tokens.identify_key(fingerprint).await),
        };
        match proven {
            Ok(identity) if user.is_none_or(|user| identity.name == user) => Ok(identity),
            Ok(identity) => Err(self.refuse(request, AuthOutcome::IdentityMismatch, Some(identity.credential_id))),
            Err((outcome, id)) => Err(self.refuse(request, outcome, id)),
        }
    }

    /// Records a failed authentication and says how it failed.
    fn refuse(&self, request: &OpenRequest<'_>, outcome: AuthOutcome, credential_id: Option<String>) -> OpenError {
        self.audit_auth(request, outcome, credential_id);
        match outcome {
            AuthOutcome::StoreUnavailable => OpenError::Store("the token could not be looked up".into()),
            outcome => OpenError::Auth(outcome),
        }
    }

    fn audit_auth(&self, request: &OpenRequest<'_>, outcome: AuthOutcome, credential_id: Option<String>) {
        let principal = Principal::new(request.presented.user(), credential_id);
        self.audit.record(AuditRecord::now(
            principal,
            None,
            AuditEvent::Authentication {
                protocol: request.client.protocol,
                client_addr: request.client.addr.to_string(),
                target: request.target.to_string(),
                outcome,
            },
        ));
    }

    /// Notes the token's last use, off the session's path.
    fn note_token_used(&self, token_id: &str) {
        let (tokens, token_id) = (Arc::clone(&self.tokens), token_id.to_string());
        tokio::spawn(async move {
            if let Err(e) = tokens.touch_token(&token_id, now_us()).await {
                tracing::warn!(error = %e, "could not note the token's last use");
            }
        });
    }

    /// Moves whenever a decision kept by a session may no longer hold: at a reload, and when an
    /// access grant arrives or ends. `None` while a grant is in force for the caller (its policy
    /// replaces the configured one, and nothing is kept then).
    fn decision_epoch(&self, identity: &Identity, connection: &str) -> Option<u64> {
        let epoch = self.approvals.grants_generation() ^ (self.generation.load(Ordering::Acquire) << 40);
        self.approvals.grant_for(identity, connection).is_none().then_some(epoch)
    }

    /// With masking rules in scope, a statement that would carry a masked column out through an
    /// expression is refused before anything else happens to it (a review included).
    fn lineage_check(
        &self,
        identity: &Identity,
        connection: &str,
        analysis: &SqlAnalysis,
        decision: Decision,
    ) -> Decision {
        let masking = self.masking.load();
        if !masking.has_column_rules() {
            return decision;
        }
        match masking.lineage_problem(identity, connection, analysis) {
            None => decision,
            Some(problem) => Decision::Deny(sluice_mask::lineage_refusal(problem)),
        }
    }

    /// The policy in force for a caller on a connection, and the access grant it comes from: while
    /// a grant is in force its policy replaces the configured one.
    fn in_force<'s>(
        &'s self,
        settings: &'s Settings,
        identity: &Identity,
        connection: &str,
    ) -> (&'s Policy, Option<(ActiveGrant, &'s AccessPolicy)>) {
        let grant = self.approvals.grant_for(identity, connection);
        (grant.as_ref().map_or(&settings.policy, |(_, access)| &access.policy), grant)
    }

    /// `policy`'s decision on a statement, before any review, then the masking lineage check.
    fn judge(
        &self,
        policy: &Policy,
        identity: &Identity,
        connection: &str,
        analysis: &SqlAnalysis,
        masked_columns_here: bool,
    ) -> Decision {
        match policy.decide_where(identity, connection, analysis, masked_columns_here) {
            decision @ (Decision::Allow { .. } | Decision::Review(_)) => {
                self.lineage_check(identity, connection, analysis, decision)
            }
            other => other,
        }
    }

    /// Whether `identity` may open sessions on `connection`.
    fn may_use(&self, identity: &Identity, connection: &str) -> bool {
        self.settings
            .load()
            .connections
            .get(connection)
            .is_some_and(|c| c.config.permits(&identity.name, &identity.groups))
    }

    /// What applies to `identity` on `connection`: rules, masking, reviews.
    fn permissions_for(&self, identity: &Identity, connection: &str) -> Permissions {
        let settings = self.settings.load();
        let (policy, grant) = self.in_force(&settings, identity, connection);
        let (masked_columns, detectors) = self.masking.load().views_for(identity, connection);
        Permissions {
            identity: identity.name.clone(),
            groups: identity.groups.clone(),
            connection: connection.to_string(),
            default: policy.default_for(connection),
            read_only: grant.is_none() && settings.policy.read_only(identity, connection),
            grant: grant.as_ref().map(|(g, access)| {
                format!("#{} under access policy {} until {}", g.review_id, access.name, rfc3339(g.until_us))
            }),
            rules: policy.rules_for(identity, connection),
            masked_columns,
            detectors,
            pinned_settings: policy.pinned_settings(identity, connection),
            access_policies: self
                .approvals
                .access_policies()
                .iter()
                .filter(|a| a.scope.contains(identity, connection))
                .map(|a| a.name.clone())
                .collect(),
        }
    }

    /// The decision a statement would get, without running it, opening a review or using an
    /// approval, and what to do next.
    fn explain_sql(&self, identity: &Identity, connection: &str, analysis: &SqlAnalysis) -> Explanation {
        let settings = self.settings.load();
        let (policy, _) = self.in_force(&settings, identity, connection);
        let decision = self.judge(policy, identity, connection, analysis, true);
        let operations = policy
            .explain(identity, connection, analysis)
            .iter()
            .map(|j| format!("{}: {} (rule {})", j.operation, j.effect, j.rule))
            .collect();
        let values = analysis.takes_parameters();
        explanation(policy, &decision, values, operations)
    }
}

/// An explanation of `decision`, with the next step for the caller.
fn explanation(policy: &Policy, decision: &Decision, takes_parameters: bool, operations: Vec<String>) -> Explanation {
    let (reason, detail, hint) = match decision {
        Decision::Review(r) | Decision::Deny(r) => (Some(r.reason.clone()), r.detail.clone(), r.hint.clone()),
        _ => (None, None, None),
    };
    let next_step = match decision {
        Decision::Review(r) => {
            let review = policy.review_rules(&r.rule);
            let how = match review.mode.as_str() {
                "wait" => format!("the statement is held up to {} until it is decided", review.timeout),
                _ => "it is refused with the review's number; re-run it once approved".to_string(),
            };
            let values =
                if takes_parameters { "; it must be sent with its values in the text (no $1 parameters)" } else { "" };
            Some(format!(
                "running it opens a review that {} of group {} must approve; {how}{values}",
                review.approvals,
                review.approvers.join(", ")
            ))
        }
        Decision::Deny(_) => hint,
        _ => Some("run it".into()),
    };
    Explanation {
        decision: decision.effect(),
        rule: decision.rule().to_string(),
        reason,
        detail,
        next_step,
        operations,
    }
}

/// A time as RFC 3339, to the microsecond.
pub fn rfc3339(us: i64) -> String {
    use time::macros::format_description;
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| us.to_string())
}
