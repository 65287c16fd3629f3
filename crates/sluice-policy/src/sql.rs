//! The SQL matcher: how the rule engine judges a SQL message — every operation of every statement
//! against the rules in scope (kinds, objects and functions under the connection's search_path,
//! conditions), the built-in checks (protected settings and catalogs, side-effect functions,
//! dynamic SQL, plain EXPLAIN of what would be refused), and the settings a session may not
//! change. PostgreSQL's own names are in `pg`.

use crate::Policy;
use crate::pg::{
    ALWAYS_PINNED, ANALYSIS_SETTINGS, PROTECTED_SETTINGS, READ_ONLY_SETTINGS, is_protected_setting, protected_catalog,
    read_only_hint,
};
use crate::policy::{ConnectionRules, Scope};
use crate::rule::{Rule, object_matches};
use serde::Serialize;
use sluice_core::policy::{Effect, RuleProtocol};
use sluice_core::sql::{Kind, ObjectName, Operation, SqlAnalysis, SqlStatement};
use sluice_core::{Decision, Identity, Refusal, RefusalCause};
use std::borrow::Cow;
use std::sync::Arc;

/// How one operation was judged. It borrows from the policy and the statement, so that judging
/// a statement the policy allows allocates nothing.
#[derive(Clone, Debug, Serialize)]
pub struct Judgement<'a> {
    pub operation: Cow<'a, Operation>,
    pub effect: Effect,
    pub rule: Arc<str>,
    #[serde(skip)]
    reason: Cow<'a, str>,
    #[serde(skip)]
    hint: Option<Cow<'a, str>>,
}

impl<'a> Judgement<'a> {
    fn builtin(op: Cow<'a, Operation>, rule: &str, reason: String, hint: &'static str) -> Judgement<'a> {
        Judgement {
            operation: op,
            effect: Effect::Deny,
            rule: Arc::from(rule),
            reason: Cow::Owned(reason),
            hint: Some(Cow::Borrowed(hint)),
        }
    }

    fn into_decision(self, identity: &Identity, connection: &str) -> Decision {
        let hint = match (self.effect, self.hint) {
            (Effect::Allow, _) => return Decision::Allow { rule: self.rule },
            (_, Some(hint)) => hint.into_owned(),
            (Effect::Review, None) => "this statement needs a human approval before it runs; it was not run".into(),
            (Effect::Deny, None) => format!(
                "the policy does not allow this for \"{}\" on connection \"{connection}\"; \
                 `sluice policy explain` shows why, an operator can change the rule",
                identity.name
            ),
        };
        let refusal = Refusal {
            rule: self.rule.to_string(),
            reason: self.reason.into_owned(),
            detail: Some(self.operation.to_string()),
            hint: Some(hint),
            cause: RefusalCause::Policy,
        };
        if self.effect == Effect::Review { Decision::Review(refusal) } else { Decision::Deny(refusal) }
    }
}

impl Policy {
    /// Whether running `analysis` on `connection` may change what the database holds or do
    /// anything beyond reading (the audit log then records the decision durably before the
    /// statement is forwarded): `Some(false)` only for reads, COPY out, transaction control,
    /// session housekeeping, settings and LISTEN that call no side-effect function (the built-in
    /// list and the configured one), no volatile built-in not known to be free of effects, and
    /// no user-defined function; `None` when user-defined functions are called (only the server
    /// can tell whether they write, see `user_functions`); `Some(true)` for everything else, a
    /// statement not understood included.
    pub fn changes_state(&self, analysis: &SqlAnalysis, connection: &str) -> Option<bool> {
        let SqlAnalysis::Parsed { statements } = analysis else { return Some(true) };
        let beyond_reading = statements.iter().flat_map(|s| &s.operations).any(|op| {
            !matches!(op.kind, Kind::Read | Kind::CopyTo | Kind::Transaction | Kind::Session | Kind::Set | Kind::Listen)
        });
        let search_path = self.connections.get(connection).map_or(&[][..], |c| c.search_path.as_slice());
        let side_effects = || {
            statements.iter().flat_map(|s| &s.functions).any(|f| {
                let builtin = f.schema.as_deref().is_none_or(|s| s == "pg_catalog");
                (builtin && crate::volatile::is_unsafe_volatile(&f.name))
                    || self.side_effect_functions.iter().any(|p| object_matches(p, f, search_path))
            })
        };
        match beyond_reading || side_effects() {
            true => Some(true),
            false => crate::user_functions(analysis).is_empty().then_some(false),
        }
    }

    /// The rule that makes the search_path matter, if one does: a rule in scope that names objects
    /// or functions by schema (`public.orders`, `app.*`) decides an unqualified name by where the
    /// connection's search_path resolves it, which the session must then not change. (Masking
    /// reads an unqualified name in any schema.)
    fn pins_search_path(&self, scope: &Scope<'_>) -> Option<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.scope.contains(scope.identity, scope.connection))
            .find(|r| r.objects.iter().chain(&r.functions).any(|p| p.contains('.')))
    }

    /// The settings no statement of `identity` on `connection` may change.
    pub fn pinned_settings(&self, identity: &Identity, connection: &str) -> Vec<&'static str> {
        let scope = Scope { identity, connection, masked_here: true };
        PROTECTED_SETTINGS.iter().copied().filter(|s| !s.starts_with('(')).filter(|s| self.pins(s, &scope)).collect()
    }

    /// Whether a change of `setting` (lower case) is refused in `scope`.
    fn pins(&self, setting: &str, scope: &Scope<'_>) -> bool {
        if ALWAYS_PINNED.contains(&setting) {
            true
        } else if READ_ONLY_SETTINGS.contains(&setting) {
            self.read_only(scope.identity, scope.connection)
        } else if ANALYSIS_SETTINGS.contains(&setting) {
            self.enforces(scope)
        } else if setting == "search_path" {
            self.pins_search_path(scope).is_some()
        } else {
            self.builtin.protected_setting && is_protected_setting(setting)
        }
    }

    /// Decides one message.
    pub fn decide(&self, identity: &Identity, connection: &str, analysis: &SqlAnalysis) -> Decision {
        self.decide_where(identity, connection, analysis, true)
    }

    /// Decides one message where the adapter knows whether the database may hold a column that a
    /// column rule in scope covers: `false` only when it read the catalog and found none, so that a
    /// column rule elsewhere costs the session nothing (it is then followed, not pinned: see
    /// `enforces_anything`).
    pub fn decide_where(
        &self,
        identity: &Identity,
        connection: &str,
        analysis: &SqlAnalysis,
        masked_columns_here: bool,
    ) -> Decision {
        let scope = Scope { identity, connection, masked_here: masked_columns_here };
        let statements = match analysis {
            SqlAnalysis::Unparseable { message } => {
                return Decision::Deny(Refusal {
                    rule: "unparseable".into(),
                    // The parser's own words: the client is told exactly what the server would say.
                    reason: message.clone(),
                    detail: None,
                    hint: Some("fix the statement; sluice only forwards SQL it can parse".into()),
                    cause: RefusalCause::Unparseable,
                });
            }
            SqlAnalysis::Parsed { statements } => statements,
        };
        let mut worst: Option<Judgement> = None;
        self.judge_all(&scope, statements, |j| {
            let stricter = worst.as_ref().is_none_or(|w| j.effect > w.effect);
            if stricter {
                worst = Some(j);
            }
            worst.as_ref().is_some_and(|w| w.effect == Effect::Deny)
        });
        if worst.as_ref().is_none_or(|w| w.effect != Effect::Deny)
            && let Some(refusal) = self.planned_refusal(&scope, statements)
        {
            return Decision::Deny(refusal);
        }
        match worst {
            None => Decision::Allow { rule: Arc::clone(&self.default_rule) },
            Some(j) => j.into_decision(identity, connection),
        }
    }

    /// A plain EXPLAIN of a statement policy would refuse is refused with that refusal: its plan
    /// would otherwise read as "this would work". (One under review may be explained: the plan is
    /// what an approver wants to see.)
    fn planned_refusal(&self, scope: &Scope<'_>, statements: &[SqlStatement]) -> Option<Refusal> {
        if statements.iter().all(|s| s.planned.is_empty()) {
            return None;
        }
        let planned: Vec<SqlStatement> = statements
            .iter()
            .map(|s| SqlStatement { operations: s.planned.clone(), ..SqlStatement::default() })
            .collect();
        let mut denied = None;
        self.judge_all(scope, &planned, |j| {
            if j.effect == Effect::Deny {
                denied = Some(j.into_decision(scope.identity, scope.connection));
            }
            denied.is_some()
        });
        let Some(Decision::Deny(refusal)) = denied else { return None };
        Some(Refusal {
            reason: format!("EXPLAIN of a statement the policy refuses: {}", refusal.reason),
            hint: Some(format!(
                "the plan is not shown because running the statement would be refused; {}",
                refusal.hint.unwrap_or_default()
            )),
            ..refusal
        })
    }

    /// Every operation of a message with its judgement (for `sluice policy explain`).
    pub fn explain<'a>(
        &'a self,
        identity: &Identity,
        connection: &str,
        analysis: &'a SqlAnalysis,
    ) -> Vec<Judgement<'a>> {
        let mut all = Vec::new();
        if let SqlAnalysis::Parsed { statements } = analysis {
            let scope = Scope { identity, connection, masked_here: true };
            self.judge_all(&scope, statements, |j| {
                all.push(j);
                false
            });
        }
        all
    }

    /// Calls `each` with the judgement of every operation until it returns true.
    fn judge_all<'a>(
        &'a self,
        scope: &Scope<'_>,
        statements: &'a [SqlStatement],
        mut each: impl FnMut(Judgement<'a>) -> bool,
    ) {
        let fallback = ConnectionRules { default: self.default, search_path: Vec::new(), protocol: RuleProtocol::Sql };
        let conn = self.connections.get(scope.connection).unwrap_or(&fallback);
        let multi = statements.len() > 1;
        for statement in statements {
            for op in &statement.operations {
                if each(self.judge(scope, conn, Cow::Borrowed(op), multi)) {
                    return;
                }
            }
            for function in &statement.functions {
                if self.is_ruled_function(function, &conn.search_path) {
                    let op = Operation::new(Kind::Function, Some(function.clone()));
                    if each(self.judge(scope, conn, Cow::Owned(op), multi)) {
                        return;
                    }
                }
            }
        }
    }

    /// Whether a call counts as an operation: a side-effect function (built-in list and
    /// configured), one a rule names, or a volatile built-in not known to be free of effects.
    fn is_ruled_function(&self, function: &ObjectName, search_path: &[String]) -> bool {
        let builtin = function.schema.as_deref().is_none_or(|s| s == "pg_catalog");
        (builtin && crate::volatile::is_unsafe_volatile(&function.name))
            || self
                .side_effect_functions
                .iter()
                .chain(&self.ruled_functions)
                .any(|p| object_matches(p, function, search_path))
    }

    fn judge<'a>(
        &'a self,
        scope: &Scope<'_>,
        conn: &ConnectionRules,
        op: Cow<'a, Operation>,
        multi: bool,
    ) -> Judgement<'a> {
        if op.kind == Kind::Set
            && let Some(setting) = &op.object
            && self.pins(&setting.name, scope)
        {
            let hint = match setting.name.as_str() {
                s if s.ends_with("_preload_libraries") || s == "dynamic_library_path" || s == "jit_provider" => {
                    "loading server libraries is an operator's job, as LOAD is"
                }
                s if ["log_", "debug_print_", "track_", "pgaudit."].iter().any(|p| s.starts_with(p))
                    || s == "compute_query_id"
                    || s == "session_replication_role" =>
                {
                    "what the database logs and audits of a session (and whether its triggers fire) is set by an operator"
                }
                "search_path" => "schema-qualify names instead",
                "standard_conforming_strings" | "backslash_quote" => {
                    "write strings in the standard form (E'…' where a backslash escape is meant): sluice's policy \
                     reads every statement as the server's standard lexing does"
                }
                // Reached through set_config(), whose value sluice does not read as a role: SET ROLE
                // is the form a rule of kind assume-role can allow.
                "role" | "session_authorization" => {
                    "use SET ROLE name instead of set_config(), and ask an operator for a rule that allows kind \
                     \"assume-role\" for the role if it is refused"
                }
                "(computed)" => "call set_config() with the setting's name as a literal so it can be checked",
                _ => "sluice relies on this setting's value and does not let a session change it",
            };
            let reason = match self.pins_search_path(scope).filter(|_| setting.name == "search_path") {
                Some(rule) => format!(
                    "rule \"{}\" names objects by schema, and sluice resolves an unqualified name under the \
                     connection's search_path ({}), which this session therefore keeps",
                    rule.name,
                    conn.search_path.join(", ")
                ),
                None => format!("sluice pins the setting {} for this session", setting.name),
            };
            return Judgement::builtin(op, "protected-setting", reason, hint);
        }
        let relation = !matches!(
            op.kind,
            Kind::Function | Kind::Set | Kind::AssumeRole | Kind::CopyFile | Kind::CopyProgram | Kind::Call
        );
        if relation
            && self.builtin.protected_catalog
            && let Some(holds) = op.object.as_ref().and_then(protected_catalog)
        {
            let reason = format!(
                "{} holds {holds}, which no session reads through sluice",
                op.object.as_ref().map_or_else(String::new, ToString::to_string)
            );
            let hint = "for sizes and row estimates use EXPLAIN or pg_class.reltuples; credentials and sample \
                        values stay with the operator";
            return Judgement::builtin(op, "protected-catalog", reason, hint);
        }
        let mut best: Option<&Rule> = None;
        // Scope is checked per operation rather than collected once: a message has few operations,
        // and this keeps a decision free of allocation.
        for rule in self.rules.iter().filter(|r| r.scope.contains(scope.identity, scope.connection)) {
            if rule.matches(&op, multi, &conn.search_path) && best.is_none_or(|b| rule.effect > b.effect) {
                best = Some(rule);
                if rule.effect == Effect::Deny {
                    break;
                }
            }
        }
        match best {
            Some(rule) => {
                let read_only_hint = if rule.read_only { read_only_hint(&op) } else { None };
                Judgement {
                    effect: rule.effect,
                    rule: Arc::clone(&rule.name),
                    reason: Cow::Borrowed(&rule.reason),
                    hint: read_only_hint.map(Cow::Owned).or_else(|| rule.hint.as_deref().map(Cow::Borrowed)),
                    operation: op,
                }
            }
            None if op.kind == Kind::DynamicSql && self.enforces(scope) => Judgement::builtin(
                op,
                "dynamic-sql",
                "the SQL it would run is not known before it runs".into(),
                "run the statements themselves instead of building them at run time, or ask an operator for a \
                     rule that allows kind \"dynamic-sql\"",
            ),
            None if op.kind == Kind::AssumeRole
                && (self.read_only(scope.identity, scope.connection) || self.masking(scope)) =>
            {
                let role = op.object.as_ref().map_or_else(String::new, |o| o.name.clone());
                let reason = format!(
                    "this session runs as the connection's upstream user, which {} relies on; no rule lets it switch to role {role}",
                    if self.read_only(scope.identity, scope.connection) {
                        "its read-only protection"
                    } else {
                        "column masking"
                    }
                );
                let hint = "leave the role as it is, or ask an operator for a rule that allows kind \"assume-role\" for this role";
                Judgement::builtin(op, "assume-role", reason, hint)
            }
            None => Judgement {
                operation: op,
                effect: conn.default,
                rule: Arc::clone(&self.default_rule),
                reason: Cow::Borrowed("no rule allows it and the connection's default is to refuse"),
                hint: None,
            },
        }
    }
}
