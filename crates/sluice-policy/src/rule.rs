//! Rules compiled from their specification, and how one rule matches one SQL operation: kinds
//! (as a bit set), objects and functions by glob under the connection's search_path, conditions.

use crate::PolicyError;
use crate::exec::ExecMatcher;
use crate::files::FileMatcher;
use crate::http::HttpMatcher;
use crate::pg::implicit_schemas;
use sluice_core::glob::glob_match;
use sluice_core::policy::{Condition, Effect, Preset, RuleProtocol, RuleSpec};
use sluice_core::review::ReviewRules;
use sluice_core::scope::RuleScope;
use sluice_core::sql::{Kind, ObjectName, Operation};
use std::sync::Arc;

/// A set of kinds as a bit mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KindSet(u32);

impl KindSet {
    pub(crate) const ALL: KindSet = KindSet(u32::MAX);

    pub(crate) fn of(kinds: &[Kind]) -> KindSet {
        KindSet(kinds.iter().fold(0, |m, k| m | (1 << *k as u32)))
    }

    pub(crate) fn without(self, kinds: &[Kind]) -> KindSet {
        KindSet(self.0 & !KindSet::of(kinds).0)
    }

    pub(crate) fn complement(self) -> KindSet {
        KindSet(!self.0)
    }

    pub(crate) fn contains(self, kind: Kind) -> bool {
        self.0 & (1 << kind as u32) != 0
    }
}

/// A compiled rule. A preset rule compiles into two: its allow and its deny.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: Arc<str>,
    pub(crate) effect: Effect,
    /// The kind of request it is about; `None`: every kind (a rule of scope only).
    pub(crate) protocol: Option<RuleProtocol>,
    pub(crate) scope: RuleScope,
    /// `None`: every kind but dynamic SQL.
    pub(crate) kinds: Option<KindSet>,
    pub(crate) objects: Vec<String>,
    pub(crate) functions: Vec<String>,
    pub(crate) when: Vec<Condition>,
    pub(crate) reason: String,
    pub(crate) hint: Option<String>,
    /// Compiled from the read-only preset: its callers get a read-only upstream session too.
    pub(crate) read_only: bool,
    pub(crate) review: Option<Arc<ReviewRules>>,
    /// What an HTTP rule matches; `None`: every request in its scope.
    pub(crate) http: Option<HttpMatcher>,
    /// What an SSH rule matches of each command; `None`: every command in its scope.
    pub(crate) exec: Option<ExecMatcher>,
    /// What an SSH rule matches of each file operation of a transfer; `None`: those an allow
    /// without keys allows (reads) or a refusal refuses (all).
    pub(crate) files: Option<FileMatcher>,
    /// Whether an SSH rule matches interactive shells; `None`: as a refusal about every command
    /// does (see `RuleSpec::shell`).
    pub(crate) shell: Option<bool>,
    /// The `host:port` globs an SSH rule matches forwarding to; `None`: as `shell`.
    pub(crate) forwards: Option<Vec<String>>,
    /// The `address:port` globs an SSH rule matches remote forwarding on; `None`: as `shell`.
    pub(crate) listens: Option<Vec<String>>,
    /// Its HTTP or SSH match keys as written, for the caller's view of the rules.
    pub(crate) shown: Vec<String>,
}

/// A rule's HTTP and SSH match keys as written (`programs = ["ls"]`), or what its preset does.
fn shown(spec: &RuleSpec) -> Vec<String> {
    let value = |v: serde_json::Value| v.to_string();
    let keys = [
        ("methods", value(serde_json::json!(spec.methods))),
        ("paths", value(serde_json::json!(spec.paths))),
        ("query", value(serde_json::json!(spec.query))),
        ("headers", value(serde_json::json!(spec.headers))),
        ("content_types", value(serde_json::json!(spec.content_types))),
        ("json", value(serde_json::json!(spec.json))),
        ("graphql", value(serde_json::json!(spec.graphql))),
        ("websocket", value(serde_json::json!(spec.websocket))),
        ("programs", value(serde_json::json!(spec.programs))),
        ("args", value(serde_json::json!(spec.args))),
        ("writes", value(serde_json::json!(spec.writes))),
        ("sudo", value(serde_json::json!(spec.sudo))),
        ("shell", value(serde_json::json!(spec.shell))),
        ("forwards", value(serde_json::json!(spec.forwards))),
        ("listens", value(serde_json::json!(spec.listens))),
        ("operations", value(serde_json::json!(spec.operations))),
        ("files", value(serde_json::json!(spec.files))),
    ];
    let used = [spec.http_keys(), spec.ssh_keys()].concat();
    keys.into_iter().filter(|(key, _)| used.contains(key)).map(|(key, value)| format!("{key} = {value}")).collect()
}

impl Rule {
    pub(crate) fn matches(&self, op: &Operation, multi_statement: bool, search_path: &[String]) -> bool {
        // An unqualified name matches where the connection's search_path resolves it (which
        // sluice then keeps: see `Policy::pins_search_path`).
        let kind_ok = match op.kind {
            Kind::Function if !self.functions.is_empty() => {
                op.object.as_ref().is_some_and(|f| self.functions.iter().any(|p| object_matches(p, f, search_path)))
            }
            _ if self.kinds.is_none() && !self.functions.is_empty() => false,
            // Only a rule naming these kinds decides them.
            Kind::DynamicSql | Kind::AssumeRole => self.kinds.is_some_and(|k| k.contains(op.kind)),
            kind => self.kinds.is_none_or(|k| k.contains(kind)),
        };
        let object_ok = self.objects.is_empty()
            || op.object.as_ref().is_some_and(|o| self.objects.iter().any(|p| object_matches(p, o, search_path)));
        let when_ok = self.when.iter().all(|c| match c {
            Condition::NoWhere => op.no_where,
            Condition::MultiStatement => multi_statement,
        });
        kind_ok && object_ok && when_ok
    }
}

/// Does `pattern` (`schema.name` or `name`, globs allowed) name `object`? An unqualified object is
/// matched against every schema it could resolve to, so a deny on any of them applies.
pub(crate) fn object_matches(pattern: &str, object: &ObjectName, search_path: &[String]) -> bool {
    match pattern.rsplit_once('.') {
        None => glob_match(pattern, &object.name),
        Some((schema_pattern, name_pattern)) => {
            glob_match(name_pattern, &object.name)
                && match &object.schema {
                    Some(schema) => glob_match(schema_pattern, schema),
                    None => implicit_schemas(search_path).any(|s| glob_match(schema_pattern, s)),
                }
        }
    }
}

/// The kinds a preset allows; every other kind it denies (dynamic SQL and assuming a role always
/// need a rule of their own).
pub(crate) fn preset_allows(preset: Preset) -> KindSet {
    match preset {
        Preset::ReadOnly => {
            KindSet::of(&[Kind::Read, Kind::CopyTo, Kind::Set, Kind::Transaction, Kind::Session, Kind::Listen])
        }
        // (No SQL rule is compiled from an HTTP preset: see `Preset::protocols`.)
        Preset::NoDdl | Preset::NoAdmin => KindSet::ALL
            .without(&[Kind::Create, Kind::Alter, Kind::Drop, Kind::Truncate, Kind::Grant, Kind::Admin])
            .without(&[Kind::DynamicSql, Kind::AssumeRole]),
    }
}

/// A SQL preset's deny (of every kind it does not allow) and allow.
fn sql_preset(preset: Preset, reason: Option<&String>, base: &Base<'_>) -> (Rule, Rule) {
    let allowed = preset_allows(preset);
    let reason = reason.cloned().unwrap_or_else(|| match preset {
        Preset::ReadOnly => "this session is read-only".into(),
        _ => "schema and permission changes are not allowed here".into(),
    });
    let mut deny = base(Effect::Deny, Some(allowed.complement()), reason);
    deny.read_only = preset == Preset::ReadOnly;
    if deny.hint.is_none() {
        deny.hint = Some(match preset {
            Preset::ReadOnly => "only statements that read are allowed (SELECT, SHOW, EXPLAIN, COPY … TO STDOUT); ask an operator for write access if the task needs it".into(),
            _ => "data statements are allowed, schema changes are not; ask an operator to run the migration".into(),
        });
    }
    (deny, base(Effect::Allow, Some(allowed), String::new()))
}

/// An HTTP preset's deny and allow.
fn http_preset(preset: Preset, reason: Option<&String>, base: &Base<'_>) -> (Rule, Rule) {
    let (refused, allowed) = match preset {
        Preset::NoAdmin => (HttpMatcher::Admin(true), HttpMatcher::Admin(false)),
        _ => (HttpMatcher::Reads(false), HttpMatcher::Reads(true)),
    };
    let reason = reason.cloned().unwrap_or_else(|| match preset {
        Preset::NoAdmin => "administrative endpoints are not reachable here".into(),
        _ => "this API is read-only here".into(),
    });
    let (refuses, allows) = match preset {
        Preset::NoAdmin => ("administrative endpoints", "every other request"),
        _ => (
            "every request but GET, HEAD, OPTIONS and GraphQL queries (WebSockets too)",
            "GET, HEAD, OPTIONS and GraphQL queries",
        ),
    };
    let mut deny = Rule { http: Some(refused), shown: vec![refuses.into()], ..base(Effect::Deny, None, reason) };
    if deny.hint.is_none() {
        deny.hint = Some(match preset {
            Preset::NoAdmin => format!(
                "paths with a segment {} and GraphQL fields starting with admin are refused; ask an operator if the task needs one",
                crate::http::ADMIN_SEGMENTS.join(", ")
            ),
            _ => "only GET, HEAD, OPTIONS and GraphQL queries are allowed (not WebSockets, whose messages may do anything the upstream takes); ask an operator for write access if the task needs it".into(),
        });
    }
    (deny, Rule { http: Some(allowed), shown: vec![allows.into()], ..base(Effect::Allow, None, String::new()) })
}

/// SSH's read-only preset: its deny refuses every command line and every file operation that
/// writes; its allow allows the file operations that read.
fn ssh_preset(reason: Option<&String>, base: &Base<'_>) -> (Rule, Rule) {
    let reason = reason.cloned().unwrap_or_else(|| "this host is read-only here".into());
    let mut deny = Rule {
        files: Some(FileMatcher::reads(false)),
        shown: vec!["every command line, shell and forward; file operations that write".into()],
        ..base(Effect::Deny, None, reason)
    };
    if deny.hint.is_none() {
        deny.hint = Some(
            "only file transfers that read are allowed (sftp get, scp from the host, rsync from the host, git fetch and \
             clone); commands are not, since what a command writes cannot be known; ask an operator for a rule if the \
             task needs one"
                .into(),
        );
    }
    let allow = Rule {
        exec: Some(ExecMatcher::never()),
        files: Some(FileMatcher::reads(true)),
        shown: vec!["file operations that read (read, list), on any path".into()],
        ..base(Effect::Allow, None, String::new())
    };
    (deny, allow)
}

/// Builds a rule of the spec being compiled with an effect, kinds and reason.
type Base<'a> = dyn Fn(Effect, Option<KindSet>, String) -> Rule + 'a;

pub(crate) fn compile_rule(spec: &RuleSpec, out: &mut Vec<Rule>) -> Result<(), PolicyError> {
    let problem = |p: &str| PolicyError::Rule { rule: spec.name.clone(), problem: p.to_string() };
    if spec.name.trim().is_empty() {
        return Err(problem("every rule needs a name (refusals cite it)"));
    }
    let protocol = spec.applies_to().map_err(|p| problem(&p))?;
    let base = |effect: Effect, kinds: Option<KindSet>, reason: String| Rule {
        name: Arc::from(spec.name.as_str()),
        effect,
        protocol,
        scope: spec.scope(),
        kinds,
        objects: spec.objects.clone(),
        functions: spec.functions.clone(),
        when: spec.when.clone(),
        reason,
        hint: spec.hint.clone(),
        read_only: false,
        review: None,
        http: None,
        exec: None,
        files: None,
        shell: None,
        forwards: None,
        listens: None,
        shown: shown(spec),
    };
    match (spec.preset, spec.effect) {
        (Some(_), Some(_)) => Err(problem("give either a preset or an effect, not both")),
        (Some(_), None) if !spec.kinds.is_empty() || !spec.functions.is_empty() || !spec.when.is_empty() => {
            Err(problem(
                "a preset rule can be scoped (connections, identities, groups, objects) but not given kinds, functions or conditions",
            ))
        }
        (Some(_), None) if !spec.http_keys().is_empty() || !spec.ssh_keys().is_empty() => Err(problem(&format!(
            "a preset rule can be scoped (connections, identities, groups) but not given {}",
            [spec.http_keys(), spec.ssh_keys()].concat().join(", ")
        ))),
        (Some(preset), None) => {
            let protocols = match protocol {
                Some(p) if preset.protocols().contains(&p) => vec![p],
                Some(p) => {
                    return Err(problem(&format!(
                        "the preset {} has no meaning for protocol {}",
                        preset.as_str(),
                        p.as_str()
                    )));
                }
                None => preset.protocols().to_vec(),
            };
            for protocol in protocols {
                let (deny, allow) = match protocol {
                    RuleProtocol::Http => http_preset(preset, spec.reason.as_ref(), &base),
                    RuleProtocol::Ssh => ssh_preset(spec.reason.as_ref(), &base),
                    _ => sql_preset(preset, spec.reason.as_ref(), &base),
                };
                out.push(Rule { protocol: Some(protocol), ..deny });
                out.push(Rule { protocol: Some(protocol), ..allow });
            }
            Ok(())
        }
        (None, None) => Err(problem("give an effect (allow, review or deny) or a preset")),
        (None, Some(effect)) => {
            let kinds = if spec.kinds.is_empty() { None } else { Some(KindSet::of(&spec.kinds)) };
            let reason = spec.reason.clone().unwrap_or_else(|| format!("policy rule {}", spec.name));
            let mut rule = base(effect, kinds, reason);
            rule.http = HttpMatcher::compile(spec)?;
            rule.exec = ExecMatcher::compile(spec);
            rule.files = FileMatcher::compile(spec);
            rule.shell = spec.shell;
            rule.forwards = (!spec.forwards.is_empty()).then(|| spec.forwards.clone());
            rule.listens = (!spec.listens.is_empty()).then(|| spec.listens.clone());
            let kinds = [
                !spec.command_keys().is_empty(),
                !spec.file_keys().is_empty(),
                spec.shell.is_some(),
                !spec.forwards.is_empty(),
                !spec.listens.is_empty(),
            ];
            if kinds.iter().filter(|k| **k).count() > 1 {
                return Err(problem(
                    "programs, args, writes and sudo match commands, operations and files match file transfers, shell \
                     matches interactive shells, forwards and listens match forwarding; write one rule for each",
                ));
            }
            if rule.files.is_none() && rule.exec.is_some() {
                rule.files = Some(FileMatcher::never());
            }
            match (&spec.review, effect) {
                (Some(_), Effect::Allow | Effect::Deny) => {
                    return Err(problem("only a rule with effect \"review\" can have review settings"));
                }
                (Some(review), Effect::Review) => {
                    review.check().map_err(|p| problem(&format!("review: {p}")))?;
                    rule.review = Some(Arc::new(review.clone()));
                }
                (None, _) => {}
            }
            out.push(rule);
            Ok(())
        }
    }
}
