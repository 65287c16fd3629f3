//! The rule engine every protocol shares: rules compiled once (presets expanded, each rule filed
//! under the kind of request it is about), scope, the connection's default and search_path,
//! review settings, what a caller is shown of the rules, and the decision on actions of protocols
//! other than SQL. The SQL matcher's judging of a message is in `sql`.

use crate::PolicyError;
use crate::pg::SIDE_EFFECT_FUNCTIONS;
use crate::rule::{Rule, compile_rule};
use sluice_core::exec::{ExecAction, ExecRequest, Transfer};
use sluice_core::glob::glob_match;
use sluice_core::http::HttpAction;
use sluice_core::policy::{BuiltinRules, ConnectionPolicy, Effect, PolicySpec, RuleProtocol, RuleSpec};
use sluice_core::review::ReviewRules;
use sluice_core::scope::RuleScope;
use sluice_core::sql::Kind;
use sluice_core::{Decision, Identity, Refusal, RefusalCause};
use std::collections::HashMap;
use std::sync::Arc;

/// How strict a decision is: deny, then review, then allow.
fn severity(decision: &Decision) -> u8 {
    match decision {
        Decision::Deny(_) => 3,
        Decision::Review(_) => 2,
        _ => 1,
    }
}

/// The strictest of several decisions (the first of them at its severity); `None` for none.
fn strictest(decisions: impl Iterator<Item = Decision>) -> Option<Decision> {
    decisions.fold(None, |strictest: Option<Decision>, decision| match &strictest {
        Some(s) if severity(&decision) <= severity(s) => strictest,
        _ => Some(decision),
    })
}

/// Who is asking, and where.
pub(crate) struct Scope<'a> {
    pub(crate) identity: &'a Identity,
    pub(crate) connection: &'a str,
    /// The database may hold a column that a column rule covers (see `Policy::decide_where`);
    /// whether one in scope does is asked only where a judgement depends on it (`masking`).
    pub(crate) masked_here: bool,
}

#[derive(Debug)]
pub(crate) struct ConnectionRules {
    pub(crate) default: Effect,
    pub(crate) search_path: Vec<String>,
    /// The kind of request the connection serves.
    pub(crate) protocol: RuleProtocol,
}

/// The compiled policy.
#[derive(Debug)]
pub struct Policy {
    /// The rules SQL statements are judged by: SQL's own and those of scope only.
    pub(crate) rules: Vec<Rule>,
    /// Rules for the other kinds of request (HTTP, SSH, …), judged by `decide_unmatched`.
    pub(crate) other_rules: Vec<Rule>,
    pub(crate) default: Effect,
    pub(crate) default_rule: Arc<str>,
    pub(crate) connections: HashMap<String, ConnectionRules>,
    pub(crate) side_effect_functions: Vec<String>,
    /// Function globs named by some rule: calls of them are operations too.
    pub(crate) ruled_functions: Vec<String>,
    pub(crate) builtin: BuiltinRules,
    /// Where column masking applies (the scopes of the masking configuration's column rules).
    pub(crate) masked: Vec<RuleScope>,
}

impl Policy {
    pub fn compile(spec: &PolicySpec, connections: &[ConnectionPolicy]) -> Result<Policy, PolicyError> {
        let mut rules = Vec::new();
        for conn in connections {
            if let Some(preset) = conn.preset {
                let spec = RuleSpec {
                    name: format!("connection {}: {}", conn.name, preset.as_str()),
                    protocol: Some(conn.protocol),
                    connections: vec![conn.name.clone()],
                    preset: Some(preset),
                    ..RuleSpec::default()
                };
                compile_rule(&spec, &mut rules)?;
            }
        }
        for spec in &spec.rules {
            compile_rule(spec, &mut rules)?;
        }
        let (rules, other_rules): (Vec<Rule>, Vec<Rule>) =
            rules.into_iter().partition(|r| r.protocol.is_none_or(|p| p == RuleProtocol::Sql));
        let ruled_functions = rules.iter().flat_map(|r| r.functions.iter().cloned()).collect();
        let side_effect_functions = SIDE_EFFECT_FUNCTIONS
            .iter()
            .map(|s| s.to_string())
            .chain(spec.side_effect_functions.iter().cloned())
            .collect();
        let connections = connections
            .iter()
            .map(|c| {
                let rules = ConnectionRules {
                    default: c.default.unwrap_or(spec.default),
                    search_path: c.search_path.clone(),
                    protocol: c.protocol,
                };
                (c.name.clone(), rules)
            })
            .collect();
        Ok(Policy {
            rules,
            other_rules,
            default: spec.default,
            default_rule: Arc::from("default"),
            connections,
            side_effect_functions,
            ruled_functions,
            builtin: spec.builtin,
            masked: Vec::new(),
        })
    }

    /// Tells the policy where column masking applies: there a session keeps its role, and dynamic
    /// SQL (which could read a masked column unseen) needs a rule.
    pub fn with_column_masking(mut self, scopes: Vec<RuleScope>) -> Policy {
        self.masked = scopes;
        self
    }

    pub(crate) fn masks_columns(&self, identity: &Identity, connection: &str) -> bool {
        self.masked.iter().any(|s| s.contains(identity, connection))
    }

    /// Whether anything the policy does for `identity` on `connection` could be bypassed by a
    /// statement sluice misreads or cannot read: a rule that refuses or reviews, a default that is
    /// not allow, a read-only preset, or column masking. Where nothing is enforced, sluice follows
    /// the session instead of pinning it (role, string lexing) and lets dynamic SQL
    /// through: there is nothing it could get around.
    pub fn enforces_anything(&self, identity: &Identity, connection: &str) -> bool {
        self.enforces(&Scope { identity, connection, masked_here: true })
    }

    pub(crate) fn enforces(&self, scope: &Scope<'_>) -> bool {
        self.default_for(scope.connection) != Effect::Allow
            || self.masking(scope)
            || self
                .rules
                .iter()
                .any(|r| r.effect != Effect::Allow && r.scope.contains(scope.identity, scope.connection))
    }

    /// Whether column masking is in force in `scope`: a column rule is in scope, and the database
    /// may hold a column it covers.
    pub(crate) fn masking(&self, scope: &Scope<'_>) -> bool {
        scope.masked_here && self.masks_columns(scope.identity, scope.connection)
    }

    /// Whether `identity` may only read on `connection` (a read-only preset applies), in which
    /// case the upstream session is opened read-only as a second line of defence. Only a SQL
    /// connection has such a session: on another, the preset's rules for its protocol decide.
    pub fn read_only(&self, identity: &Identity, connection: &str) -> bool {
        // Asked before each batch of a session's messages: the rules first, since almost always
        // none is read-only.
        self.rules.iter().any(|r| r.read_only && r.scope.contains(identity, connection))
            && self.connections.get(connection).is_none_or(|c| c.protocol == RuleProtocol::Sql)
    }

    /// Decides an action of a kind other than SQL and HTTP (`kind`: `exec`, `kube`, `tool`;
    /// `summary` names it) by the rules for its protocol and the rules of scope only; where none
    /// is in scope, the connection's default applies, under the rule name `default`.
    pub fn decide_unmatched(&self, identity: &Identity, connection: &str, kind: &str, summary: &str) -> Decision {
        // Their matchers have no match keys yet, so each rule matches every such request in its
        // scope.
        self.decide_by(identity, connection, kind, summary, |_| true)
    }

    /// Decides an HTTP request by the HTTP rules in scope (and those of scope only).
    pub fn decide_http(&self, identity: &Identity, connection: &str, action: &HttpAction) -> Decision {
        let summary = action.summary();
        self.decide_by(identity, connection, "http", &summary, |rule| {
            rule.http.as_ref().is_none_or(|m| m.matches(action, rule.effect == Effect::Allow))
        })
    }

    /// A command line: each command it runs is decided, and the line gets the strictest answer. A
    /// line that cannot be read for certain is refused.
    pub fn decide_exec(&self, identity: &Identity, connection: &str, action: &ExecAction) -> Decision {
        if let Some(why) = &action.opaque {
            return Decision::Deny(Refusal {
                rule: "unreadable-command".into(),
                reason: format!("sluice cannot tell for certain what this command line runs: {why}"),
                detail: Some(action.line.clone()),
                hint: Some(
                    "write the command with its program and arguments spelled out (no variables, substitutions or \
                     eval choosing what runs), or ask an operator to run it"
                        .into(),
                ),
                cause: RefusalCause::Policy,
            });
        }
        if let Some(transfer) = &action.transfer {
            return self.decide_transfer(identity, connection, action, transfer);
        }
        // A shell or a forward is decided as a whole, by the rules about it and the refusals of
        // every command.
        let refuses_all = |rule: &Rule| rule.exec.is_none() && rule.effect != Effect::Allow;
        match &action.request {
            ExecRequest::Shell => {
                return self.decide_by(identity, connection, "exec", &action.line, |rule| {
                    rule.shell.unwrap_or_else(|| refuses_all(rule))
                });
            }
            ExecRequest::Forward(to) => {
                return self.decide_by(identity, connection, "exec", &action.line, |rule| match &rule.forwards {
                    Some(globs) => globs.iter().any(|g| glob_match(g, to)),
                    None => refuses_all(rule),
                });
            }
            ExecRequest::Listen(on) => {
                return self.decide_by(identity, connection, "exec", &action.line, |rule| match &rule.listens {
                    Some(globs) => globs.iter().any(|g| glob_match(g, on)),
                    None => refuses_all(rule),
                });
            }
            ExecRequest::Command | ExecRequest::Subsystem(_) => {}
        }
        let decisions = action.commands.iter().map(|command| {
            self.decide_by(identity, connection, "exec", &command.summary(), |rule| match &rule.exec {
                Some(m) => m.matches(command, rule.effect == Effect::Allow),
                None => rule.effect != Effect::Allow || crate::exec::plain_allow_matches(command),
            })
        });
        // A line that runs nothing (assignments alone) is decided as the connection's default.
        strictest(decisions)
            .unwrap_or_else(|| self.decide_by(identity, connection, "exec", &action.line, |r| r.exec.is_none()))
    }

    /// A file transfer: each file operation is decided by the rules about files (and those of
    /// scope only: an allow without keys allows reads), and the transfer gets the strictest answer.
    fn decide_transfer(
        &self,
        identity: &Identity,
        connection: &str,
        action: &ExecAction,
        transfer: &Transfer,
    ) -> Decision {
        let decisions = transfer.files.iter().map(|access| {
            let summary = format!("{} {}", transfer.program, access.summary());
            self.decide_by(identity, connection, "exec", &summary, |rule| match &rule.files {
                Some(m) => m.matches(access, rule.effect == Effect::Allow),
                None => rule.exec.is_none() && (rule.effect != Effect::Allow || access.op.reads()),
            })
        });
        strictest(decisions).unwrap_or_else(|| {
            self.decide_by(identity, connection, "exec", &action.line, |r| r.exec.is_none() && r.files.is_none())
        })
    }

    /// The strictest of the rules for `kind` (and of scope only) in scope that `matches`; where
    /// none is, the connection's default.
    fn decide_by(
        &self,
        identity: &Identity,
        connection: &str,
        kind: &str,
        summary: &str,
        matches: impl Fn(&Rule) -> bool,
    ) -> Decision {
        let protocol = RuleProtocol::of_action(kind);
        let mut best: Option<&Rule> = None;
        let candidates = self.other_rules.iter().filter(|r| r.protocol == protocol);
        for rule in candidates.chain(self.rules.iter().filter(|r| r.protocol.is_none())) {
            if best.is_none_or(|b| rule.effect > b.effect) && rule.scope.contains(identity, connection) && matches(rule)
            {
                best = Some(rule);
            }
        }
        if let Some(rule) = best {
            let refusal = || Refusal {
                rule: rule.name.to_string(),
                reason: rule.reason.clone(),
                detail: Some(summary.to_string()),
                hint: rule.hint.clone(),
                cause: RefusalCause::Policy,
            };
            return match rule.effect {
                Effect::Allow => Decision::Allow { rule: Arc::clone(&rule.name) },
                Effect::Review => Decision::Review(refusal()),
                Effect::Deny => Decision::Deny(refusal()),
            };
        }
        let effect = self.default_for(connection);
        let hint = match effect {
            Effect::Allow => return Decision::Allow { rule: Arc::clone(&self.default_rule) },
            Effect::Review => "this needs a human approval before it runs; it was not run".to_string(),
            Effect::Deny => format!(
                "no rule covers this {kind} request for \"{}\" on connection \"{connection}\", and its default is deny; \
                 an operator can add a rule",
                identity.name
            ),
        };
        let refusal = Refusal {
            rule: self.default_rule.to_string(),
            reason: format!("the default for connection \"{connection}\" is {}", effect.as_str()),
            detail: Some(summary.to_string()),
            hint: Some(hint),
            cause: RefusalCause::Policy,
        };
        if effect == Effect::Review { Decision::Review(refusal) } else { Decision::Deny(refusal) }
    }

    /// The rules that apply to `identity` on `connection`, as it may read them.
    pub fn rules_for(&self, identity: &Identity, connection: &str) -> Vec<sluice_core::advice::RuleView> {
        // The rules about what the connection serves, and those of scope only.
        let serves = self.connections.get(connection).map_or(RuleProtocol::Sql, |c| c.protocol);
        self.rules
            .iter()
            .chain(&self.other_rules)
            .filter(|r| r.scope.contains(identity, connection) && r.protocol.is_none_or(|p| p == serves))
            .map(|r| sluice_core::advice::RuleView {
                name: r.name.to_string(),
                effect: r.effect,
                protocol: r.protocol.map_or("any", RuleProtocol::as_str),
                matches: r.shown.clone(),
                // A rule that names functions and no kinds is about calls of them only; a rule
                // about another kind of request has no SQL kinds.
                kinds: match r.kinds {
                    _ if r.protocol.is_some_and(|p| p != RuleProtocol::Sql) => Vec::new(),
                    None if !r.functions.is_empty() => vec![Kind::Function.as_str()],
                    kinds => Kind::ALL
                        .iter()
                        .filter(|k| {
                            kinds.map_or(!matches!(k, Kind::DynamicSql | Kind::AssumeRole), |set| set.contains(**k))
                        })
                        .map(|k| k.as_str())
                        .collect(),
                },
                objects: r.objects.clone(),
                functions: r.functions.clone(),
                when: r.when.clone(),
                reason: r.reason.clone(),
                review: r.review.as_deref().cloned(),
            })
            .collect()
    }

    /// What happens on `connection` to an operation no rule covers.
    pub fn default_for(&self, connection: &str) -> Effect {
        self.connections.get(connection).map_or(self.default, |c| c.default)
    }

    /// How reviews asked for by the rule named `rule` work (the defaults when it sets none).
    pub fn review_rules(&self, rule: &str) -> Arc<ReviewRules> {
        self.rules
            .iter()
            .chain(&self.other_rules)
            .find(|r| &*r.name == rule && r.effect == Effect::Review)
            .and_then(|r| r.review.clone())
            .unwrap_or_else(|| Arc::new(ReviewRules::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::exec::{Command, ExecRequest, FileAccess, FileOp};
    use sluice_core::policy::{Condition, Preset};
    use sluice_core::sql::{ObjectName, Operation, SqlAnalysis, SqlStatement};

    fn identity(name: &str, groups: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            credential_id: "t".into(),
        }
    }

    fn conn(name: &str, preset: Option<Preset>) -> ConnectionPolicy {
        ConnectionPolicy {
            name: name.into(),
            protocol: RuleProtocol::Sql,
            preset,
            default: None,
            search_path: vec!["app".into(), "public".into()],
        }
    }

    #[test]
    fn an_action_no_rule_can_match_gets_the_connection_default() {
        let spec = PolicySpec { default: Effect::Deny, ..PolicySpec::default() };
        let open = ConnectionPolicy { default: Some(Effect::Allow), ..conn("open", None) };
        let policy = Policy::compile(&spec, &[conn("shop", None), open]).unwrap();
        let me = identity("ann", &[]);
        let denied = policy.decide_unmatched(&me, "shop", "http", "DELETE /users/1");
        let Decision::Deny(refusal) = &denied else { panic!("{denied:?}") };
        assert_eq!((refusal.rule.as_str(), refusal.detail.as_deref()), ("default", Some("DELETE /users/1")));
        assert!(refusal.hint.as_deref().is_some_and(|h| h.contains("no rule covers this http request")), "{refusal:?}");
        assert_eq!(
            policy.decide_unmatched(&me, "open", "kube", "get pods"),
            Decision::Allow { rule: "default".into() }
        );
    }

    #[test]
    fn each_rule_applies_to_its_protocol_and_a_rule_of_scope_only_to_all() {
        let spec = PolicySpec {
            rules: vec![
                RuleSpec { protocol: Some(RuleProtocol::Http), ..rule("http-reviewed", Effect::Review) },
                RuleSpec { kinds: vec![Kind::Read], ..rule("sql-reads-denied", Effect::Deny) },
                RuleSpec { groups: vec!["interns".into()], ..rule("interns-nowhere", Effect::Deny) },
            ],
            ..PolicySpec::default()
        };
        let policy = Policy::compile(&spec, &[conn("shop", None)]).unwrap();
        let (ann, intern) = (identity("ann", &[]), identity("ivy", &["interns"]));
        // HTTP: the HTTP rule, not the SQL one; the scope-only rule beats it for interns.
        let Decision::Review(r) = policy.decide_unmatched(&ann, "shop", "http", "GET /v1/x") else { panic!() };
        assert_eq!((r.rule.as_str(), r.detail.as_deref()), ("http-reviewed", Some("GET /v1/x")));
        let Decision::Deny(r) = policy.decide_unmatched(&intern, "shop", "http", "GET /v1/x") else { panic!() };
        assert_eq!(r.rule, "interns-nowhere");
        assert_eq!(policy.review_rules("http-reviewed").approvers, ["approvers"]);
        // SSH: neither the HTTP nor the SQL rule applies.
        assert_eq!(policy.decide_unmatched(&ann, "shop", "exec", "ls"), Decision::Allow { rule: "default".into() });
        // SQL: the HTTP rule never applies; the SQL and scope-only ones do.
        let read = statement(vec![op(Kind::Read, Some("orders"))]);
        assert_eq!(policy.decide(&ann, "shop", &read).rule(), "sql-reads-denied");
        let write = statement(vec![op(Kind::Update, Some("orders"))]);
        assert_eq!(effect(&policy, &ann, "shop", &write), "allow");
        assert_eq!(policy.decide(&intern, "shop", &write).rule(), "interns-nowhere");
    }

    #[test]
    fn a_read_only_preset_means_each_protocols_read_only_and_pins_only_sql_sessions() {
        let preset = RuleSpec { preset: Some(Preset::ReadOnly), ..rule("everyone-reads", Effect::Deny) };
        let spec = PolicySpec { rules: vec![RuleSpec { effect: None, ..preset }], ..PolicySpec::default() };
        let api = ConnectionPolicy { protocol: RuleProtocol::Http, ..conn("api", None) };
        let policy = Policy::compile(&spec, &[conn("shop", None), api]).unwrap();
        let ann = identity("ann", &["agents"]);
        assert!(policy.read_only(&ann, "shop"), "a SQL session is opened read-only");
        assert!(!policy.read_only(&ann, "api"), "an HTTP connection has no read-only session to open");
        let get = HttpAction::new("GET", "/v1/x").unwrap();
        let post = HttpAction::new("POST", "/v1/x").unwrap();
        assert_eq!(policy.decide_http(&ann, "api", &get).effect(), "allow");
        let Decision::Deny(refusal) = policy.decide_http(&ann, "api", &post) else { panic!() };
        assert_eq!(refusal.rule, "everyone-reads");
        assert!(refusal.hint.unwrap().contains("only GET, HEAD, OPTIONS and GraphQL queries"));
        // A WebSocket opens with a GET, but its messages may do anything: not a read.
        let socket = HttpAction { websocket: Some(sluice_core::http::WebSocket::Opening), ..get };
        let Decision::Deny(refusal) = policy.decide_http(&ann, "api", &socket) else { panic!() };
        assert!(refusal.hint.unwrap().contains("not WebSockets"));
    }

    #[test]
    fn a_rule_is_validated_by_its_protocols_matcher() {
        let mixed =
            RuleSpec { protocol: Some(RuleProtocol::Http), kinds: vec![Kind::Delete], ..rule("m", Effect::Deny) };
        let spec = PolicySpec { rules: vec![mixed], ..PolicySpec::default() };
        let err = Policy::compile(&spec, &[]).unwrap_err().to_string();
        assert!(err.contains("kinds is SQL's, and this rule is for protocol http"), "{err}");
        let both = RuleSpec { kinds: vec![Kind::Delete], methods: vec!["DELETE".into()], ..rule("b", Effect::Deny) };
        let err = both.applies_to().unwrap_err();
        assert_eq!(err, "kinds is SQL's and methods is HTTP's; write one rule for each");
        let preset =
            RuleSpec { protocol: Some(RuleProtocol::Ssh), preset: Some(Preset::NoDdl), ..rule("p", Effect::Deny) };
        let spec = PolicySpec { rules: vec![RuleSpec { effect: None, ..preset }], ..PolicySpec::default() };
        let err = Policy::compile(&spec, &[]).unwrap_err().to_string();
        assert!(err.contains("the preset no-ddl has no meaning for protocol ssh"), "{err}");
        let both = RuleSpec { programs: vec!["rm".into()], files: vec!["/srv/*".into()], ..rule("f", Effect::Deny) };
        let err = Policy::compile(&PolicySpec { rules: vec![both], ..PolicySpec::default() }, &[]).unwrap_err();
        assert!(err.to_string().contains("write one rule for each"), "{err}");
        // The linter: a rule about a kind of request no connection in its scope serves.
        let spec = PolicySpec {
            rules: vec![
                RuleSpec { protocol: Some(RuleProtocol::Http), ..rule("api", Effect::Deny) },
                RuleSpec {
                    protocol: Some(RuleProtocol::Sql),
                    connections: vec!["billing".into()],
                    ..rule("db", Effect::Deny)
                },
            ],
            ..PolicySpec::default()
        };
        let text = Policy::check(&spec, &[("shop".into(), RuleProtocol::Sql), ("billing".into(), RuleProtocol::Http)])
            .join("\n");
        assert!(text.contains("rule \"db\" can never apply: it is about sql requests"), "{text}");
        assert!(!text.contains("rule \"api\" can never apply"), "{text}");
    }

    fn statement(ops: Vec<Operation>) -> SqlAnalysis {
        SqlAnalysis::Parsed { statements: vec![SqlStatement { operations: ops, ..SqlStatement::default() }] }
    }

    fn op(kind: Kind, object: Option<&str>) -> Operation {
        let object = object.map(|o| match o.split_once('.') {
            Some((s, n)) => ObjectName { schema: Some(s.into()), name: n.into() },
            None => ObjectName::bare(o),
        });
        Operation::new(kind, object)
    }

    fn transfer(program: &str, files: &[(FileOp, &str, bool)]) -> ExecAction {
        let files = files
            .iter()
            .map(|(op, path, tree)| FileAccess { op: *op, path: path.to_string(), tree: *tree, literal: true })
            .collect();
        ExecAction {
            line: format!("{program} …"),
            request: ExecRequest::Command,
            commands: Vec::new(),
            opaque: None,
            transfer: Some(Transfer { program: program.into(), files }),
        }
    }

    fn rule_of(decision: Decision) -> String {
        match decision {
            Decision::Allow { rule } => format!("allow {rule}"),
            Decision::Deny(r) => format!("deny {}", r.rule),
            Decision::Review(r) => format!("review {}", r.rule),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn read_only_on_a_host_allows_transfers_that_read_and_no_command() {
        let host = ConnectionPolicy { protocol: RuleProtocol::Ssh, ..conn("web1", Some(Preset::ReadOnly)) };
        let open = PolicySpec { default: Effect::Allow, ..PolicySpec::default() };
        let policy = Policy::compile(&open, &[host]).unwrap();
        let me = identity("ann", &[]);
        let decide = |action: &ExecAction| rule_of(policy.decide_exec(&me, "web1", action));
        let read_only = "connection web1: read-only";
        assert_eq!(decide(&transfer("scp", &[(FileOp::Read, "/srv/a", false)])), format!("allow {read_only}"));
        assert_eq!(decide(&transfer("git", &[(FileOp::Read, "/srv/r.git", true)])), format!("allow {read_only}"));
        assert_eq!(
            decide(&transfer("sftp", &[(FileOp::Read, "/a", false), (FileOp::Rename, "/b", false)])),
            format!("deny {read_only}")
        );
        let ls = ExecAction {
            commands: vec![Command { argv: vec!["ls".into()], literal: vec![true], ..Command::default() }],
            transfer: None,
            ..transfer("ls", &[])
        };
        assert_eq!(decide(&ls), format!("deny {read_only}"), "whether a command writes cannot be known");
    }

    #[test]
    fn an_interactive_shell_needs_a_rule_of_its_own() {
        let spec: PolicySpec = toml::from_str(
            r#"
            default = "allow"
            [[rules]]
            name = "ops-shells"
            effect = "allow"
            groups = ["ops"]
            shell = true
            [[rules]]
            name = "look"
            effect = "allow"
            programs = ["ls"]
            [[rules]]
            name = "no-root"
            effect = "deny"
            sudo = true
            "#,
        )
        .unwrap();
        let ro = ConnectionPolicy { protocol: RuleProtocol::Ssh, ..conn("ro", Some(Preset::ReadOnly)) };
        let host = ConnectionPolicy { protocol: RuleProtocol::Ssh, default: Some(Effect::Deny), ..conn("web1", None) };
        let policy = Policy::compile(&spec, &[host, ro]).unwrap();
        let shell = ExecAction::session(ExecRequest::Shell);
        let (ops, agent) = (identity("olga", &["ops"]), identity("ann", &[]));
        assert_eq!(rule_of(policy.decide_exec(&ops, "web1", &shell)), "allow ops-shells");
        assert_eq!(
            rule_of(policy.decide_exec(&agent, "web1", &shell)),
            "deny default",
            "a rule about ls allows no shell"
        );
        assert_eq!(rule_of(policy.decide_exec(&ops, "ro", &shell)), "deny connection ro: read-only");
    }

    #[test]
    fn a_caller_is_shown_the_rules_about_what_the_connection_serves() {
        let spec: PolicySpec = toml::from_str(
            r#"
            [[rules]]
            name = "no-deletes"
            effect = "deny"
            methods = ["DELETE"]
            paths = ["/v1/customers/{id}"]
            [[rules]]
            name = "sql-only"
            effect = "deny"
            kinds = ["drop"]
            [[rules]]
            name = "look"
            effect = "allow"
            programs = ["ls"]
            [[rules]]
            name = "everyone-reviewed"
            effect = "review"
            identities = ["ann"]
            "#,
        )
        .unwrap();
        let api = ConnectionPolicy { protocol: RuleProtocol::Http, ..conn("api", Some(Preset::ReadOnly)) };
        let policy = Policy::compile(&spec, &[api]).unwrap();
        let shown: Vec<(String, &str, Vec<String>)> = policy
            .rules_for(&identity("ann", &[]), "api")
            .into_iter()
            .map(|r| (r.name, r.protocol, r.matches))
            .collect();
        let names: Vec<&str> = shown.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["everyone-reviewed", "connection api: read-only", "connection api: read-only", "no-deletes"]
        );
        assert_eq!(shown[0].1, "any");
        assert_eq!(
            shown[3].2,
            vec![r#"methods = ["DELETE"]"#.to_string(), r#"paths = ["/v1/customers/{id}"]"#.to_string()]
        );
        assert!(shown[1].2[0].contains("GET, HEAD, OPTIONS"), "{shown:?}");
    }

    #[test]
    fn forwarding_is_allowed_only_to_what_a_rule_names() {
        let spec: PolicySpec = toml::from_str(
            r#"
            default = "allow"
            [[rules]]
            name = "to-the-database"
            effect = "allow"
            forwards = ["db.internal:5432", "10.0.0.*:443"]
            [[rules]]
            name = "look"
            effect = "allow"
            programs = ["ls"]
            "#,
        )
        .unwrap();
        let host = ConnectionPolicy { protocol: RuleProtocol::Ssh, default: Some(Effect::Deny), ..conn("web1", None) };
        let policy = Policy::compile(&spec, &[host]).unwrap();
        let me = identity("ann", &[]);
        let forward =
            |to: &str| rule_of(policy.decide_exec(&me, "web1", &ExecAction::session(ExecRequest::Forward(to.into()))));
        assert_eq!(forward("db.internal:5432"), "allow to-the-database");
        assert_eq!(forward("10.0.0.7:443"), "allow to-the-database");
        assert_eq!(forward("db.internal:22"), "deny default");
        assert_eq!(forward("169.254.169.254:80"), "deny default");
        let listen =
            |on: &str| rule_of(policy.decide_exec(&me, "web1", &ExecAction::session(ExecRequest::Listen(on.into()))));
        assert_eq!(listen("db.internal:5432"), "deny default", "a rule about forwarding to allows no listening");
    }

    #[test]
    fn file_rules_decide_each_operation_by_its_path() {
        let spec: PolicySpec = toml::from_str(
            r#"
            default = "deny"
            [[rules]]
            name = "uploads"
            effect = "allow"
            operations = ["write", "mkdir", "read", "list"]
            files = ["/srv/up/*"]
            [[rules]]
            name = "no-keys"
            effect = "deny"
            operations = ["read"]
            files = ["*.pem", "/home/*/.ssh/*"]
            [[rules]]
            name = "look"
            effect = "allow"
            programs = ["ls"]
            "#,
        )
        .unwrap();
        let host = ConnectionPolicy { protocol: RuleProtocol::Ssh, ..conn("web1", None) };
        let policy = Policy::compile(&spec, &[host]).unwrap();
        let me = identity("ann", &[]);
        let decide = |action: &ExecAction| rule_of(policy.decide_exec(&me, "web1", action));
        assert_eq!(decide(&transfer("sftp", &[(FileOp::Write, "/srv/up/a.txt", false)])), "allow uploads");
        assert_eq!(decide(&transfer("rsync", &[(FileOp::Write, "/srv/up/site", true)])), "allow uploads");
        assert_eq!(
            decide(&transfer("rsync", &[(FileOp::Read, "/srv/up/site", true)])),
            "deny no-keys",
            "*.pem may be below"
        );
        assert_eq!(decide(&transfer("sftp", &[(FileOp::Remove, "/srv/up/a.txt", false)])), "deny default");
        assert_eq!(decide(&transfer("scp", &[(FileOp::Read, "/srv/up/tls.pem", false)])), "deny no-keys");
        assert_eq!(decide(&transfer("rsync", &[(FileOp::Read, "/home", true)])), "deny no-keys");
        assert_eq!(decide(&transfer("sftp", &[(FileOp::Read, "/etc/passwd", false)])), "deny default");
        // A rule about commands says nothing of transfers.
        let ls = transfer("sftp", &[(FileOp::List, "/srv", false)]);
        assert_eq!(decide(&ls), "deny default");
    }

    fn rule(name: &str, effect: Effect) -> RuleSpec {
        RuleSpec { name: name.into(), effect: Some(effect), ..RuleSpec::default() }
    }

    fn effect(policy: &Policy, who: &Identity, connection: &str, analysis: &SqlAnalysis) -> &'static str {
        policy.decide(who, connection, analysis).effect()
    }

    #[test]
    fn deny_beats_review_beats_allow() {
        let spec = PolicySpec {
            default: Effect::Deny,
            rules: vec![
                RuleSpec { kinds: vec![Kind::Delete], ..rule("allow-deletes", Effect::Allow) },
                RuleSpec {
                    kinds: vec![Kind::Delete],
                    objects: vec!["public.orders".into()],
                    ..rule("no-order-deletes", Effect::Deny)
                },
                RuleSpec { kinds: vec![Kind::Delete], when: vec![Condition::NoWhere], ..rule("bulk", Effect::Review) },
            ],
            ..PolicySpec::default()
        };
        let policy = Policy::compile(&spec, &[conn("shop", None)]).unwrap();
        let me = identity("agent", &[]);
        assert_eq!(effect(&policy, &me, "shop", &statement(vec![op(Kind::Delete, Some("public.carts"))])), "allow");
        // Unqualified `orders` may resolve to public.orders: the deny applies.
        assert_eq!(effect(&policy, &me, "shop", &statement(vec![op(Kind::Delete, Some("orders"))])), "deny");
        let mut bulk = op(Kind::Delete, Some("public.carts"));
        bulk.no_where = true;
        assert_eq!(effect(&policy, &me, "shop", &statement(vec![bulk])), "review");
        // Nothing matches a read: the default applies, and the rule is named "default".
        let read = statement(vec![op(Kind::Read, Some("public.carts"))]);
        assert_eq!(policy.decide(&me, "shop", &read).rule(), "default");
        assert_eq!(effect(&policy, &me, "shop", &read), "deny");
    }

    #[test]
    fn every_operation_must_pass() {
        let policy = Policy::compile(&PolicySpec::default(), &[conn("ro", Some(Preset::ReadOnly))]).unwrap();
        let me = identity("agent", &[]);
        let mixed = statement(vec![op(Kind::Read, Some("t")), op(Kind::Delete, Some("t"))]);
        match policy.decide(&me, "ro", &mixed) {
            Decision::Deny(r) => {
                assert_eq!(r.rule, "connection ro: read-only");
                assert_eq!(r.detail.as_deref(), Some("DELETE on t"));
            }
            other => panic!("{other:?}"),
        }
        assert!(policy.read_only(&me, "ro"));
        assert!(!policy.read_only(&me, "other"));
    }

    #[test]
    fn scope_by_identity_group_and_connection() {
        let spec = PolicySpec {
            rules: vec![
                RuleSpec {
                    connections: vec!["prod-*".into()],
                    groups: vec!["interns".into()],
                    preset: Some(Preset::NoDdl),
                    ..RuleSpec::default()
                }
                .named("interns"),
            ],
            ..PolicySpec::default()
        };
        let policy = Policy::compile(&spec, &[conn("prod-eu", None), conn("dev", None)]).unwrap();
        let drop = statement(vec![op(Kind::Drop, Some("public.t"))]);
        assert_eq!(effect(&policy, &identity("ann", &["interns"]), "prod-eu", &drop), "deny");
        assert_eq!(effect(&policy, &identity("ann", &["interns"]), "dev", &drop), "allow");
        assert_eq!(effect(&policy, &identity("bob", &["dba"]), "prod-eu", &drop), "allow");
    }

    #[test]
    fn built_in_refusals_cannot_be_allowed_by_accident() {
        // A policy that enforces something (here: no DROP), and an allow rule for everything else.
        let spec = PolicySpec {
            rules: vec![
                rule("anything", Effect::Allow),
                RuleSpec { kinds: vec![Kind::Drop], ..rule("no-drops", Effect::Deny) },
            ],
            ..PolicySpec::default()
        };
        let policy = Policy::compile(&spec, &[conn("c", None)]).unwrap();
        let me = identity("a", &[]);
        let set = statement(vec![op(Kind::Set, Some("standard_conforming_strings"))]);
        assert_eq!(policy.decide(&me, "c", &set).rule(), "protected-setting");
        for setting in ["log_statement", "log_min_duration_statement", "session_preload_libraries", "pgaudit.log"] {
            let set = statement(vec![Operation::new(Kind::Set, Some(ObjectName::bare(setting)))]);
            assert_eq!(policy.decide(&me, "c", &set).rule(), "protected-setting", "{setting}");
        }
        assert_eq!(effect(&policy, &me, "c", &statement(vec![op(Kind::Set, Some("work_mem"))])), "allow");
        for relation in [
            "pg_authid",
            "pg_catalog.pg_shadow",
            "pg_stats",
            "pg_catalog.pg_statistic",
            "pg_toast.pg_toast_16384",
            "pg_toast_16384",
            "information_schema.user_mapping_options",
            "pg_user_mappings",
        ] {
            let read = statement(vec![op(Kind::Read, Some(relation))]);
            assert_eq!(policy.decide(&me, "c", &read).rule(), "protected-catalog", "{relation}");
        }
        for relation in ["customers", "public.pg_stats", "pg_class", "pg_roles"] {
            assert_eq!(
                effect(&policy, &me, "c", &statement(vec![op(Kind::Read, Some(relation))])),
                "allow",
                "{relation}"
            );
        }
        let dynamic = statement(vec![op(Kind::DynamicSql, None)]);
        assert_eq!(policy.decide(&me, "c", &dynamic).rule(), "dynamic-sql");
        let spec = PolicySpec {
            rules: vec![RuleSpec { kinds: vec![Kind::DynamicSql], ..rule("dyn", Effect::Allow) }],
            ..PolicySpec::default()
        };
        let policy = Policy::compile(&spec, &[conn("c", None)]).unwrap();
        assert_eq!(effect(&policy, &me, "c", &dynamic), "allow");
        let bad = SqlAnalysis::Unparseable { message: "syntax error".into() };
        assert_eq!(policy.decide(&me, "c", &bad).rule(), "unparseable");
    }

    #[test]
    fn where_nothing_is_enforced_the_session_is_followed_not_pinned() {
        let me = identity("a", &[]);
        let allow_all = Policy::compile(&PolicySpec::default(), &[conn("c", None)]).unwrap();
        let set = |name: &str| statement(vec![op(Kind::Set, Some(name))]);
        let role = statement(vec![Operation::new(Kind::AssumeRole, Some(ObjectName::bare("reporting")))]);
        let dynamic = statement(vec![op(Kind::DynamicSql, None)]);
        assert!(!allow_all.enforces_anything(&me, "c"));
        for setting in ["search_path", "standard_conforming_strings", "role"] {
            assert_eq!(effect(&allow_all, &me, "c", &set(setting)), "allow", "{setting}");
        }
        assert_eq!(effect(&allow_all, &me, "c", &role), "allow");
        assert_eq!(effect(&allow_all, &me, "c", &dynamic), "allow");
        // Pinned whatever the policy: the encoding sluice parses in, and the operator's logging.
        assert_eq!(allow_all.decide(&me, "c", &set("client_encoding")).rule(), "protected-setting");
        assert_eq!(allow_all.decide(&me, "c", &set("log_statement")).rule(), "protected-setting");
        assert!(!allow_all.pinned_settings(&me, "c").contains(&"search_path"));

        // Column masking in scope: the role stays, dynamic SQL needs a rule, names are pinned.
        let masked = Policy::compile(&PolicySpec::default(), &[conn("c", None)])
            .unwrap()
            .with_column_masking(vec![RuleScope::default()]);
        assert_eq!(masked.decide(&me, "c", &role).rule(), "assume-role");
        assert_eq!(masked.decide(&me, "c", &dynamic).rule(), "dynamic-sql");
        assert_eq!(masked.decide(&me, "c", &set("standard_conforming_strings")).rule(), "protected-setting");
        // A rule naming the kind decides which roles may be assumed.
        let spec = PolicySpec {
            rules: vec![RuleSpec {
                kinds: vec![Kind::AssumeRole],
                objects: vec!["report*".into()],
                ..rule("reporting-role", Effect::Allow)
            }],
            ..PolicySpec::default()
        };
        let ruled = Policy::compile(&spec, &[conn("c", None)]).unwrap().with_column_masking(vec![RuleScope::default()]);
        assert_eq!(effect(&ruled, &me, "c", &role), "allow");
        let admin = statement(vec![Operation::new(Kind::AssumeRole, Some(ObjectName::bare("postgres")))]);
        assert_eq!(ruled.decide(&me, "c", &admin).rule(), "assume-role");
        // A read-only preset keeps the role whatever the rules say.
        let ro = Policy::compile(&spec, &[conn("ro", Some(Preset::ReadOnly))]).unwrap();
        assert_eq!(effect(&ro, &me, "ro", &role), "deny");
    }

    #[test]
    fn the_search_path_is_pinned_only_where_a_rule_names_objects_by_schema() {
        let me = identity("a", &[]);
        let set_path = statement(vec![op(Kind::Set, Some("search_path"))]);
        // Rules by kind alone, or by unqualified name, do not depend on where a name resolves.
        let spec = PolicySpec {
            rules: vec![
                RuleSpec { kinds: vec![Kind::Drop], ..rule("no-drops", Effect::Deny) },
                RuleSpec { objects: vec!["secrets".into()], ..rule("no-secrets", Effect::Deny) },
            ],
            ..PolicySpec::default()
        };
        let by_kind = Policy::compile(&spec, &[conn("c", None)]).unwrap();
        assert_eq!(effect(&by_kind, &me, "c", &set_path), "allow");
        // A rule by schema does: the refusal names it and the search_path kept.
        for (name, effect_of_rule, pattern) in
            [("app-only", Effect::Allow, "app.*"), ("no-secrets", Effect::Deny, "public.secrets")]
        {
            let spec = PolicySpec {
                rules: vec![RuleSpec { objects: vec![pattern.into()], ..rule(name, effect_of_rule) }],
                ..PolicySpec::default()
            };
            let policy = Policy::compile(&spec, &[conn("c", None)]).unwrap();
            match policy.decide(&me, "c", &set_path) {
                Decision::Deny(r) => {
                    assert_eq!(r.rule, "protected-setting");
                    assert!(r.reason.contains(&format!("rule \"{name}\" names objects by schema")), "{}", r.reason);
                    assert!(r.reason.contains("app, public"), "{}", r.reason);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn operators_can_turn_off_the_built_in_rules_for_their_own_things() {
        let me = identity("a", &[]);
        let spec = PolicySpec {
            builtin: BuiltinRules { protected_setting: false, protected_catalog: false },
            ..PolicySpec::default()
        };
        let policy = Policy::compile(&spec, &[conn("c", None)]).unwrap();
        let set = |name: &str| statement(vec![op(Kind::Set, Some(name))]);
        assert_eq!(effect(&policy, &me, "c", &set("log_statement")), "allow");
        assert_eq!(effect(&policy, &me, "c", &statement(vec![op(Kind::Read, Some("pg_authid"))])), "allow");
        // What sluice itself relies on stays.
        assert_eq!(policy.decide(&me, "c", &set("client_encoding")).rule(), "protected-setting");
    }

    #[test]
    fn side_effect_functions_are_operations() {
        let policy = Policy::compile(&PolicySpec::default(), &[conn("ro", Some(Preset::ReadOnly))]).unwrap();
        let call = SqlAnalysis::Parsed {
            statements: vec![SqlStatement {
                operations: vec![op(Kind::Read, None)],
                functions: vec![
                    ObjectName::bare("now"),
                    ObjectName { schema: Some("pg_catalog".into()), name: "pg_terminate_backend".into() },
                ],
                ..SqlStatement::default()
            }],
        };
        match policy.decide(&identity("a", &[]), "ro", &call) {
            Decision::Deny(r) => assert_eq!(r.detail.as_deref(), Some("call of pg_catalog.pg_terminate_backend()")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn check_finds_shadowed_and_conflicting_rules() {
        let spec = PolicySpec {
            rules: vec![
                RuleSpec { kinds: vec![Kind::Delete], ..rule("no-deletes", Effect::Deny) },
                RuleSpec {
                    kinds: vec![Kind::Delete],
                    objects: vec!["public.tmp".into()],
                    ..rule("tmp-deletes", Effect::Allow)
                },
                RuleSpec { connections: vec!["nowhere".into()], ..rule("ghost", Effect::Deny) },
                RuleSpec { kinds: vec![Kind::Delete], ..rule("no-deletes", Effect::Allow) },
            ],
            ..PolicySpec::default()
        };
        let findings = Policy::check(&spec, &[("shop".to_string(), RuleProtocol::Sql)]);
        let text = findings.join("\n");
        assert!(text.contains("\"tmp-deletes\" is unreachable"), "{text}");
        assert!(text.contains("\"nowhere\" matches no configured connection"), "{text}");
        assert!(text.contains("same name"), "{text}");
        assert!(text.contains("different effects"), "{text}");
    }

    #[test]
    fn a_narrower_caller_scope_does_not_shadow() {
        let spec = PolicySpec {
            rules: vec![
                RuleSpec { identities: vec!["bob".into()], ..rule("no-bob", Effect::Deny) },
                RuleSpec {
                    identities: vec!["bob".into()],
                    groups: vec!["agents".into()],
                    ..rule("agents", Effect::Allow)
                },
                RuleSpec { groups: vec!["agents".into()], kinds: vec![Kind::Read], ..rule("reads", Effect::Review) },
            ],
            ..PolicySpec::default()
        };
        let text = Policy::check(&spec, &[("shop".into(), RuleProtocol::Sql)]).join("\n");
        assert!(!text.contains("\"agents\" is unreachable"), "{text}");
        assert!(!text.contains("\"reads\" is unreachable"), "{text}");
    }

    #[test]
    fn rules_must_say_what_they_do() {
        let spec =
            PolicySpec { rules: vec![RuleSpec { name: "x".into(), ..RuleSpec::default() }], ..PolicySpec::default() };
        assert!(Policy::compile(&spec, &[]).is_err());
        let both = RuleSpec { preset: Some(Preset::ReadOnly), ..rule("y", Effect::Allow) };
        let spec = PolicySpec { rules: vec![both], ..PolicySpec::default() };
        assert!(Policy::compile(&spec, &[]).is_err());
    }

    trait Named {
        fn named(self, name: &str) -> Self;
    }

    impl Named for RuleSpec {
        fn named(mut self, name: &str) -> Self {
            self.name = name.into();
            self
        }
    }
}
