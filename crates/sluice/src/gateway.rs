//! The gateway's `Gate`: tokens from the store, connections from the configuration, held
//! credentials resolved at each session, and every event handed to the recorder. What the
//! configuration sets (connections, policy, masking) can be replaced while sluice runs (`reload`).

use crate::display::rfc3339;
use anyhow::{Context as _, Result};
use arc_swap::ArcSwap;
use sluice_approvals::{Approvals, StatementReview};
use sluice_config::{Config, ConnectionConfig, PasswordSource, UpstreamTls as TlsSetting};
use sluice_core::audit::now_us;
use sluice_approvals::ActiveGrant;
use sluice_config::AccessPolicy;
use sluice_core::advice::{Explanation, Permissions};
use sluice_core::policy::Policy;
use sluice_core::sql::SqlAnalysis;
use sluice_core::{
    Action, ActionKind, AuditEvent, AuthOutcome, Decision, Gate, Grant, Hold, Identity, OpenError, OpenRequest,
    Protocol, Secret, SessionInfo, Standing,
};
use sluice_mask::Masking;
use sluice_pg::tls::{Verification, client_config};
use sluice_pg::upstream::UpstreamTls;
use sluice_pg::{PgEndpoint, UpstreamTlsMode};
use sluice_store::vault::MasterKey;
use sluice_store::{Recorder, Store};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the masking token key is derived for (from the master key; see `MasterKey::derive`).
pub const MASK_TOKEN_PURPOSE: &str = "mask-token";

pub struct Gateway {
    store: Store,
    recorder: Recorder,
    key: MasterKey,
    settings: ArcSwap<Settings>,
    /// Shared with the recorder, which masks recorded texts with the same rules.
    masking: Arc<ArcSwap<Masking>>,
    /// Moves at every reload, so that allows a session kept are decided again.
    generation: AtomicU64,
    /// Tokens revoked or expired (by id), as last read from the store: sessions opened with one
    /// end at their next message (see `Gate::session_valid`).
    unusable_tokens: ArcSwap<HashSet<String>>,
    approvals: Arc<Approvals>,
    connect_rule: Arc<str>,
}

/// What the configuration file sets for sessions, replaced whole by a reload.
struct Settings {
    connections: HashMap<String, Prepared>,
    policy: Policy,
    record_statements: bool,
}

impl Settings {
    fn compile(config: &Config) -> Result<Settings> {
        let mut connections = HashMap::new();
        for (name, conn) in &config.connections {
            let tls = upstream_tls(conn).with_context(|| format!("connection {name}: upstream TLS"))?;
            connections.insert(name.clone(), Prepared { config: conn.clone(), tls });
        }
        Ok(Settings { connections, policy: config.compile_policy()?, record_statements: config.recording.statements })
    }
}

/// A configured connection with its TLS client configuration built once.
struct Prepared {
    config: ConnectionConfig,
    tls: UpstreamTls,
}

impl Gateway {
    pub fn new(
        config: &Config,
        store: Store,
        recorder: Recorder,
        key: MasterKey,
        masking: Arc<ArcSwap<Masking>>,
        approvals: Arc<Approvals>,
    ) -> Result<Gateway> {
        Ok(Gateway {
            store,
            recorder,
            key,
            settings: ArcSwap::from_pointee(Settings::compile(config)?),
            masking,
            generation: AtomicU64::new(0),
            unusable_tokens: ArcSwap::from_pointee(HashSet::new()),
            approvals,
            connect_rule: Arc::from("connect"),
        })
    }

    /// Replaces connections, policy and masking with what `config` sets, all at once, or nothing
    /// when any of it does not compile. Open sessions decide their next statement under the new
    /// policy; connections and masking apply to sessions opened from now on.
    pub fn reload(&self, config: &Config) -> Result<()> {
        let settings = Settings::compile(config)?;
        let masking = config.compile_masking(self.key.derive(MASK_TOKEN_PURPOSE))?;
        self.settings.store(Arc::new(settings));
        self.masking.store(Arc::new(masking));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Reads which tokens were revoked or expired (here or by another instance on the same store);
    /// sessions opened with one end at their next message.
    pub async fn refresh_unusable_tokens(&self) -> Result<(), sluice_store::StoreError> {
        let now: HashSet<String> = self.store.unusable_tokens(now_us()).await?.into_iter().collect();
        if **self.unusable_tokens.load() != now {
            self.unusable_tokens.store(Arc::new(now));
        }
        Ok(())
    }

    async fn identify(&self, request: &OpenRequest<'_>) -> Result<Identity, (AuthOutcome, Option<String>)> {
        let identity = self.store.identify(request.secret.expose()).await?;
        if identity.name != request.user {
            return Err((AuthOutcome::IdentityMismatch, Some(identity.credential_id)));
        }
        Ok(identity)
    }

    async fn password(&self, name: &str, conn: &ConnectionConfig) -> Result<Option<Secret>, String> {
        let source = conn.password_source()?;
        match source {
            PasswordSource::None => Ok(None),
            PasswordSource::Env(var) => std::env::var(&var)
                .map(|v| Some(Secret::new(v)))
                .map_err(|_| format!("its password variable {var} is not set in sluice's environment")),
            PasswordSource::File(path) => std::fs::read_to_string(&path)
                .map(|v| Some(Secret::new(v.trim_end_matches(['\n', '\r']))))
                .map_err(|e| format!("its password file {} cannot be read: {e}", path.display())),
            PasswordSource::Stored => {
                let sealed = self.store.credential(name).await.map_err(|e| e.to_string())?;
                let (nonce, sealed) =
                    sealed.ok_or_else(|| "no password is stored for it (run `sluice credential set`)".to_string())?;
                let clear = self.key.open(name, &nonce, &sealed).map_err(|e| e.to_string())?;
                String::from_utf8(clear)
                    .map(|v| Some(Secret::new(v)))
                    .map_err(|_| "its stored password is not UTF-8".into())
            }
        }
    }

    /// With masking rules in scope, a statement that would carry a masked column out through an
    /// expression is refused before anything else happens to it (a review included).
    fn lineage_check(&self, identity: &Identity, connection: &str, analysis: &SqlAnalysis, decision: Decision) -> Decision {
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
        self.settings.load().connections.get(connection).is_some_and(|c| c.config.permits(&identity.name, &identity.groups))
    }

    /// What applies to `identity` on `connection` (see `Gate::permissions`); also what the API
    /// answers an agent that asks with its token.
    pub fn permissions_for(&self, identity: &Identity, connection: &str) -> Permissions {
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

    /// The decision a statement would get (see `Gate::explain`).
    pub fn explain_for(&self, identity: &Identity, connection: &str, analysis: &SqlAnalysis) -> Explanation {
        let settings = self.settings.load();
        let (policy, _) = self.in_force(&settings, identity, connection);
        let decision = self.judge(policy, identity, connection, analysis, true);
        let operations = policy
            .explain(identity, connection, analysis)
            .iter()
            .map(|j| format!("{}: {} (rule {})", j.operation, j.effect, j.rule))
            .collect();
        let (reason, detail, hint) = match &decision {
            Decision::Review(r) | Decision::Deny(r) => (Some(r.reason.clone()), r.detail.clone(), r.hint.clone()),
            _ => (None, None, None),
        };
        let next_step = match &decision {
            Decision::Review(r) => {
                let review = policy.review_rules(&r.rule);
                let how = match review.mode.as_str() {
                    "wait" => format!("the statement is held up to {} until it is decided", review.timeout),
                    _ => "it is refused with the review's number; re-run it once approved".to_string(),
                };
                let values = if analysis.takes_parameters() {
                    "; it must be sent with its values in the text (no $1 parameters)"
                } else {
                    ""
                };
                Some(format!(
                    "running it opens a review that {} of group {} must approve; {how}{values}",
                    review.approvals,
                    review.approvers.join(", ")
                ))
            }
            Decision::Deny(_) => hint,
            _ => Some("run it".into()),
        };
        Explanation { decision: decision.effect(), rule: decision.rule().to_string(), reason, detail, next_step, operations }
    }

    fn audit_auth(&self, request: &OpenRequest<'_>, outcome: AuthOutcome, credential_id: Option<String>) {
        self.recorder.record(AuditEvent::Auth {
            at_us: now_us(),
            protocol: Protocol::Postgres,
            client_addr: request.client_addr.to_string(),
            user: request.user.to_string(),
            connection: request.connection.to_string(),
            outcome,
            credential_id,
        });
    }
}

impl Gate<PgEndpoint> for Gateway {
    async fn open(&self, request: OpenRequest<'_>) -> Result<Grant<PgEndpoint>, OpenError> {
        let identity = match self.identify(&request).await {
            Ok(identity) => identity,
            Err((outcome, credential_id)) => {
                self.audit_auth(&request, outcome, credential_id);
                return Err(OpenError::Auth(outcome));
            }
        };
        let credential_id = Some(identity.credential_id.clone());
        let settings = self.settings.load_full();
        let Some(prepared) = settings.connections.get(request.connection) else {
            self.audit_auth(&request, AuthOutcome::UnknownConnection, credential_id);
            return Err(OpenError::Auth(AuthOutcome::UnknownConnection));
        };
        if !prepared.config.permits(&identity.name, &identity.groups) {
            self.audit_auth(&request, AuthOutcome::NotPermitted, credential_id);
            return Err(OpenError::Auth(AuthOutcome::NotPermitted));
        }
        let password = match self.password(request.connection, &prepared.config).await {
            Ok(password) => password,
            Err(reason) => {
                return Err(OpenError::Misconfigured { connection: request.connection.to_string(), reason });
            }
        };
        self.audit_auth(&request, AuthOutcome::Success, credential_id);
        let store = self.store.clone();
        let token_id = identity.credential_id.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(&token_id, now_us()).await {
                tracing::warn!(error = %e, "could not note the token's last use");
            }
        });
        let conn = &prepared.config;
        let mut upstream_settings = vec![
            ("standard_conforming_strings".to_string(), "on".to_string()),
            // Statements are parsed as UTF-8: the server must read them the same way.
            ("client_encoding".to_string(), "UTF8".to_string()),
            ("search_path".to_string(), conn.search_path_setting()),
        ];
        let granted = self.approvals.grant_for(&identity, request.connection).is_some();
        if !granted && settings.policy.read_only(&identity, request.connection) {
            upstream_settings.push(("default_transaction_read_only".into(), "on".into()));
        }
        let masking = Some(self.masking.load().for_session(&identity, request.connection)).filter(|m| m.active());
        Ok(Grant {
            identity,
            connection: request.connection.to_string(),
            endpoint: PgEndpoint {
                host: conn.host.clone(),
                port: conn.port,
                database: conn.database_or(request.connection).to_string(),
                user: conn.user.clone(),
                password,
                tls: prepared.tls.clone(),
                settings: upstream_settings,
                masking,
            },
        })
    }

    async fn decide(&self, session: &SessionInfo<'_>, action: &Action<'_>) -> Decision {
        match &action.kind {
            ActionKind::Connect => Decision::Allow { rule: Arc::clone(&self.connect_rule) },
            ActionKind::Sql { text, analysis } => {
                let settings = self.settings.load_full();
                let (policy, grant) = self.in_force(&settings, session.identity, session.connection);
                match self.judge(policy, session.identity, session.connection, analysis, session.masked_columns_here) {
                    Decision::Review(refusal) => {
                        let rules = policy.review_rules(&refusal.rule);
                        let canonical = sluice_sql::canonical(text);
                        let ask = StatementReview {
                            identity: session.identity,
                            connection: session.connection,
                            session_id: session.session_id,
                            text,
                            canonical: &canonical,
                            client_program: session.client_program,
                            parameters: analysis.takes_parameters(),
                            refusal: &refusal,
                            rules: &rules,
                        };
                        self.approvals.review_statement(ask).await
                    }
                    Decision::Allow { rule } if let Some((grant, _)) = grant => {
                        Decision::Allow { rule: Arc::from(format!("grant #{}: {rule}", grant.review_id)) }
                    }
                    other => other,
                }
            }
        }
    }

    fn permissions(&self, session: &SessionInfo<'_>) -> Permissions {
        self.permissions_for(session.identity, session.connection)
    }

    fn explain(&self, session: &SessionInfo<'_>, action: &Action<'_>) -> Explanation {
        match &action.kind {
            ActionKind::Sql { analysis, .. } => self.explain_for(session.identity, session.connection, analysis),
            ActionKind::Connect => Explanation {
                decision: "allow",
                rule: self.connect_rule.to_string(),
                reason: None,
                detail: None,
                next_step: None,
                operations: Vec::new(),
            },
        }
    }

    async fn await_review(&self, session: &SessionInfo<'_>, hold: &Hold) -> Decision {
        self.approvals.await_review(session.session_id, hold).await
    }

    /// The policy, the masking rules and the configuration change only at a reload, which moves
    /// the epoch; an access grant replaces the policy while in force, so nothing is kept then, and
    /// a grant that arrives changes the epoch. (Both read before the check: a grant added or a
    /// reload made after it moves the epoch.)
    fn decision_epoch(&self, session: &SessionInfo<'_>) -> Option<u64> {
        let epoch = self.approvals.grants_generation() ^ (self.generation.load(Ordering::Acquire) << 40);
        self.approvals.grant_for(session.identity, session.connection).is_none().then_some(epoch)
    }

    fn session_standing(&self, session: &SessionInfo<'_>) -> Standing {
        // Asked before every batch of a client's messages: almost always nothing has been revoked.
        let unusable = self.unusable_tokens.load();
        if !unusable.is_empty() && unusable.contains(&session.identity.credential_id) {
            return Standing::CredentialEnded;
        }
        // A session opened with write access keeps an upstream that writes: once the policy in
        // force says read-only (its grant ended, or a reload), it must not go on.
        if !session.upstream_read_only
            && self.approvals.grant_for(session.identity, session.connection).is_none()
            && self.settings.load().policy.read_only(session.identity, session.connection)
        {
            return Standing::AccessEnded;
        }
        Standing::Valid
    }

    fn record(&self, event: AuditEvent) {
        self.recorder.record(event);
    }

    fn records_statements(&self) -> bool {
        self.settings.load().record_statements
    }
}

impl sluice_web::Advisor for Gateway {
    fn permissions(&self, identity: &Identity, connection: &str) -> Option<Permissions> {
        self.may_use(identity, connection).then(|| self.permissions_for(identity, connection))
    }

    fn explain(&self, identity: &Identity, connection: &str, statement: &str) -> Option<Explanation> {
        let analysis = sluice_sql::analyze(statement);
        self.may_use(identity, connection).then(|| self.explain_for(identity, connection, &analysis))
    }
}

fn upstream_tls(conn: &ConnectionConfig) -> Result<UpstreamTls> {
    let (mode, verification) = match conn.tls {
        TlsSetting::Disable => (UpstreamTlsMode::Disable, None),
        TlsSetting::Prefer => (UpstreamTlsMode::Prefer, Some(Verification::None)),
        TlsSetting::Require => (UpstreamTlsMode::Require, Some(Verification::None)),
        TlsSetting::VerifyCa => (UpstreamTlsMode::VerifyCa, Some(Verification::Chain)),
        TlsSetting::VerifyFull => (UpstreamTlsMode::VerifyFull, Some(Verification::Full)),
    };
    let config = verification.map(|v| client_config(v, conn.ca_file.as_deref())).transpose()?;
    Ok(UpstreamTls { mode, config, server_name: conn.tls_server_name.clone().unwrap_or_else(|| conn.host.clone()) })
}
