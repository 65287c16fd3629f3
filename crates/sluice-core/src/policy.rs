//! The `[policy]` section of the configuration as plain data: rules as operators write them, the
//! effects, presets and conditions they name. `sluice-policy` compiles and evaluates them.

use crate::review::ReviewRules;
use crate::scope::RuleScope;
use crate::sql::Kind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Review,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Review => "review",
            Effect::Deny => "deny",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Named rule sets an operator can apply without listing kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Only statements that cannot change state or have side effects; the upstream session is
    /// also opened with `default_transaction_read_only=on`. HTTP: GET, HEAD, OPTIONS and GraphQL
    /// queries. SSH: file transfers that read (SFTP reads, `scp` from the host, rsync from the
    /// host, git fetch and clone) and nothing else: no command line, since whether a command
    /// writes cannot be known.
    ReadOnly,
    /// Everything but schema changes, permission changes and server administration.
    NoDdl,
    /// HTTP: everything but administrative endpoints (a path segment `admin`, `_admin`,
    /// `internal`, `actuator` or `debug`, in any case; a GraphQL field whose name starts with
    /// `admin`).
    NoAdmin,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::ReadOnly => "read-only",
            Preset::NoDdl => "no-ddl",
            Preset::NoAdmin => "no-admin",
        }
    }

    /// The kinds of request the preset has a meaning for.
    pub fn protocols(self) -> &'static [RuleProtocol] {
        match self {
            Preset::ReadOnly => &[RuleProtocol::Sql, RuleProtocol::Http, RuleProtocol::Ssh],
            Preset::NoDdl => &[RuleProtocol::Sql],
            Preset::NoAdmin => &[RuleProtocol::Http],
        }
    }
}

/// The kind of request a rule is about, as one matcher per kind reads its match keys: `sql`
/// (statements for a database: PostgreSQL now, MySQL later), `http`, `ssh`, `kube`, `mcp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleProtocol {
    Sql,
    Http,
    Ssh,
    Kube,
    Mcp,
}

impl RuleProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleProtocol::Sql => "sql",
            RuleProtocol::Http => "http",
            RuleProtocol::Ssh => "ssh",
            RuleProtocol::Kube => "kube",
            RuleProtocol::Mcp => "mcp",
        }
    }

    /// The matcher that reads actions of `kind` (as `sluice_gate::Action::kind` names them).
    pub fn of_action(kind: &str) -> Option<RuleProtocol> {
        Some(match kind {
            "sql" => RuleProtocol::Sql,
            "http" => RuleProtocol::Http,
            "exec" => RuleProtocol::Ssh,
            "kube" => RuleProtocol::Kube,
            "tool" => RuleProtocol::Mcp,
            _ => return None,
        })
    }

    /// The matcher that reads requests a target of `protocol` serves.
    pub fn serving(protocol: crate::Protocol) -> RuleProtocol {
        match protocol {
            crate::Protocol::Postgres => RuleProtocol::Sql,
            crate::Protocol::Http => RuleProtocol::Http,
            crate::Protocol::Ssh => RuleProtocol::Ssh,
            crate::Protocol::Kube => RuleProtocol::Kube,
            crate::Protocol::Mcp => RuleProtocol::Mcp,
        }
    }
}

/// A condition on an operation beyond its kind and object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// An UPDATE or DELETE without a WHERE clause.
    NoWhere,
    /// The message holds more than one statement.
    MultiStatement,
}

/// One rule as written in the configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// The kind of request the rule is about. Unset: the kind its match keys belong to (`kinds`,
    /// `objects`, `functions`, `when` are SQL's; `methods`, `paths`, `query`, `headers`,
    /// `content_types`, `json`, `graphql`, `websocket` HTTP's; `programs`, `args`, `writes`, `sudo`, `shell`, `forwards`, `listens`, `operations`, `files` SSH's); for a preset, each kind it has a meaning for;
    /// with neither, every kind: a rule of scope only (`connections`, `identities`, `groups`)
    /// applies to every request there.
    #[serde(default)]
    pub protocol: Option<RuleProtocol>,
    /// Required unless `preset` is given (a preset carries its own allow and deny).
    #[serde(default)]
    pub effect: Option<Effect>,
    /// Connection name globs; empty means every connection.
    #[serde(default)]
    pub connections: Vec<String>,
    /// Identity name globs. With `groups`, a caller matching either is in scope; both empty means
    /// everyone.
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub preset: Option<Preset>,
    /// Empty means every kind (except `dynamic-sql`, which only a rule naming it matches).
    #[serde(default)]
    pub kinds: Vec<Kind>,
    /// Object globs, `schema.name` or `name` (any schema); empty means any object.
    #[serde(default)]
    pub objects: Vec<String>,
    /// Function name globs: calls of these functions match this rule (and count as operations of
    /// kind `function` even when they are not on the side-effect list).
    #[serde(default)]
    pub functions: Vec<String>,
    #[serde(default)]
    pub when: Vec<Condition>,
    /// HTTP: the methods the rule matches (any case); empty: every method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// HTTP: path patterns, matched against the normalised path the upstream sees: `{name}` is
    /// one segment, `*` any run within a segment, `**` any number of segments
    /// (`/v1/customers/{id}`, `/admin/**`); empty: every path.
    #[serde(default)]
    pub paths: Vec<String>,
    /// HTTP: query parameters that must be present, each with a glob its value must match
    /// (`"*"`: any value).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// HTTP: request headers that must be present, each with a glob its value must match.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP: media types (globs, `application/*json`) the body must have.
    #[serde(default)]
    pub content_types: Vec<String>,
    /// HTTP: conditions on the JSON body, all of which must hold.
    #[serde(default)]
    pub json: Vec<JsonCondition>,
    /// HTTP: the GraphQL operation's kind and top-level fields.
    #[serde(default)]
    pub graphql: Option<GraphqlMatchSpec>,
    /// HTTP: what the request has to do with a WebSocket: `none` (a plain request), `opening`
    /// (the upgrade) or `message` (a message the client sends on one); unset: any of them.
    #[serde(default)]
    pub websocket: Option<WebSocketMatch>,
    /// SSH: program globs, matched against the program as written and its file name (`rm`,
    /// `/usr/bin/*`); a refusing rule matches the wrappers that run a program too (`sudo`,
    /// `xargs`).
    #[serde(default)]
    pub programs: Vec<String>,
    /// SSH: argument globs. A refusing rule matches a command with any argument matching one (or
    /// any argument an expansion decides); an allowing rule only one whose every argument does.
    #[serde(default)]
    pub args: Vec<String>,
    /// SSH: path globs of files a redirection writes. A refusing rule matches a command writing
    /// any of them; an allowing rule must list every file a command writes (an allowing rule
    /// without `writes` matches only commands that write no file).
    #[serde(default)]
    pub writes: Vec<String>,
    /// SSH: `true` matches only commands run as another user (`sudo`, `su`, `doas`, …), `false`
    /// only the others. Unset: a refusing rule matches both, an allowing rule only the others.
    #[serde(default)]
    pub sudo: Option<bool>,
    /// SSH: `true` matches interactive shells (`ssh host` without a command), `false` nothing.
    /// Unset: a refusing rule about every command (no command keys) refuses shells too; an allowing
    /// rule never allows one.
    #[serde(default)]
    pub shell: Option<bool>,
    /// SSH: `host:port` globs a client may have the host connect to (`ssh -L`, `ssh -W`,
    /// `ProxyJump`), as the client names them (`db.internal:5432`, `10.0.0.*:443`). Forwarding
    /// matches no other rule that allows.
    #[serde(default)]
    pub forwards: Vec<String>,
    /// SSH: `address:port` globs the host may listen on for a client (`ssh -R`), its connections
    /// passed back to the client (`127.0.0.1:8080`, `localhost:*`). Remote forwarding matches no
    /// other rule that allows.
    #[serde(default)]
    pub listens: Vec<String>,
    /// SSH file transfers (SFTP, scp, rsync, git): the operations the rule matches (`read`,
    /// `list`, `write`, `remove`, `rename`, `mkdir`, `rmdir`, `setstat`, `link`); empty: every
    /// operation.
    #[serde(default)]
    pub operations: Vec<crate::exec::FileOp>,
    /// SSH file transfers: path globs (`*` matches any run of characters, `/` included:
    /// `/srv/app/*` is everything below /srv/app). A refusing rule matches an operation that may
    /// reach one of them; an allowing rule only one whose every path is certainly in them.
    #[serde(default)]
    pub files: Vec<String>,
    /// Shown to the client when the rule refuses.
    #[serde(default)]
    pub reason: Option<String>,
    /// The next step, shown as the error's HINT.
    #[serde(default)]
    pub hint: Option<String>,
    /// How reviews of this rule work (effect `review` only): mode, approvers, quorum, timeouts.
    #[serde(default)]
    pub review: Option<ReviewRules>,
}

/// A condition on a JSON request body, at a JSON pointer (`/amount`, `/items/0/sku`): give exactly
/// one of `exists`, `equals`, `in`, `matches` (a regular expression the whole string matches).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonCondition {
    pub pointer: String,
    #[serde(default)]
    pub exists: Option<bool>,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub matches: Option<String>,
}

/// What an HTTP rule asks of a request's relation to a WebSocket (`websocket = "message"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebSocketMatch {
    /// A request that neither opens a WebSocket nor is a message on one.
    None,
    /// The upgrade request that opens a WebSocket.
    Opening,
    /// A text or binary message the client sends on a WebSocket.
    Message,
}

impl WebSocketMatch {
    pub fn matches(self, websocket: Option<crate::http::WebSocket>) -> bool {
        use crate::http::WebSocket;
        match self {
            WebSocketMatch::None => websocket.is_none(),
            WebSocketMatch::Opening => websocket == Some(WebSocket::Opening),
            WebSocketMatch::Message => websocket == Some(WebSocket::Message),
        }
    }
}

/// What a rule asks of a GraphQL operation; empty lists match anything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlMatchSpec {
    /// `query`, `mutation`, `subscription`.
    #[serde(default)]
    pub operations: Vec<crate::http::GraphqlKind>,
    /// Top-level field name globs; the rule matches when the operation asks for any of them.
    #[serde(default)]
    pub fields: Vec<String>,
}

impl RuleSpec {
    /// The SQL matcher's keys this rule uses.
    pub fn sql_keys(&self) -> Vec<&'static str> {
        let used = [
            ("kinds", !self.kinds.is_empty()),
            ("objects", !self.objects.is_empty()),
            ("functions", !self.functions.is_empty()),
            ("when", !self.when.is_empty()),
        ];
        used.into_iter().filter_map(|(key, set)| set.then_some(key)).collect()
    }

    /// The HTTP matcher's keys this rule uses.
    pub fn http_keys(&self) -> Vec<&'static str> {
        let used = [
            ("methods", !self.methods.is_empty()),
            ("paths", !self.paths.is_empty()),
            ("query", !self.query.is_empty()),
            ("headers", !self.headers.is_empty()),
            ("content_types", !self.content_types.is_empty()),
            ("json", !self.json.is_empty()),
            ("graphql", self.graphql.is_some()),
            ("websocket", self.websocket.is_some()),
        ];
        used.into_iter().filter_map(|(key, set)| set.then_some(key)).collect()
    }

    /// The SSH matcher's keys this rule uses.
    pub fn ssh_keys(&self) -> Vec<&'static str> {
        let used = [
            ("programs", !self.programs.is_empty()),
            ("args", !self.args.is_empty()),
            ("writes", !self.writes.is_empty()),
            ("sudo", self.sudo.is_some()),
            ("shell", self.shell.is_some()),
            ("forwards", !self.forwards.is_empty()),
            ("listens", !self.listens.is_empty()),
        ];
        let mut keys: Vec<&'static str> = used.into_iter().filter_map(|(key, set)| set.then_some(key)).collect();
        keys.extend(self.file_keys());
        keys
    }

    /// The keys of the SSH matcher for commands this rule uses (part of `ssh_keys`).
    pub fn command_keys(&self) -> Vec<&'static str> {
        let used = [
            ("programs", !self.programs.is_empty()),
            ("args", !self.args.is_empty()),
            ("writes", !self.writes.is_empty()),
            ("sudo", self.sudo.is_some()),
        ];
        used.into_iter().filter_map(|(key, set)| set.then_some(key)).collect()
    }

    /// The keys of the SSH matcher for file transfers this rule uses (part of `ssh_keys`).
    pub fn file_keys(&self) -> Vec<&'static str> {
        let used = [("operations", !self.operations.is_empty()), ("files", !self.files.is_empty())];
        used.into_iter().filter_map(|(key, set)| set.then_some(key)).collect()
    }

    /// The kind of request the rule applies to (`None`: every kind), or why its keys contradict
    /// its `protocol` (or each other). A preset rule without a protocol applies to each kind the
    /// preset has a meaning for (see `Preset::protocols`).
    pub fn applies_to(&self) -> Result<Option<RuleProtocol>, String> {
        let keyed = [
            (RuleProtocol::Sql, self.sql_keys()),
            (RuleProtocol::Http, self.http_keys()),
            (RuleProtocol::Ssh, self.ssh_keys()),
        ];
        let mut by_keys = keyed.iter().filter(|(_, keys)| !keys.is_empty());
        let first = by_keys.next();
        if let (Some((a, a_keys)), Some((b, b_keys))) = (first, by_keys.next()) {
            return Err(format!(
                "{} {} {}'s and {} {} {}'s; write one rule for each",
                a_keys.join(", "),
                are(a_keys),
                upper(*a),
                b_keys.join(", "),
                are(b_keys),
                upper(*b)
            ));
        }
        match (self.protocol, first) {
            (protocol, None) => Ok(protocol),
            (None, Some((by_keys, _))) => Ok(Some(*by_keys)),
            (Some(given), Some((by_keys, _))) if given == *by_keys => Ok(Some(given)),
            (Some(given), Some((by_keys, keys))) => Err(format!(
                "{} {} {}'s, and this rule is for protocol {}; {} rules and {} rules are written separately",
                keys.join(", "),
                are(keys),
                upper(*by_keys),
                given.as_str(),
                upper(*by_keys),
                given.as_str()
            )),
        }
    }

    /// Who and where the rule applies to.
    pub fn scope(&self) -> RuleScope {
        RuleScope {
            connections: self.connections.clone(),
            identities: self.identities.clone(),
            groups: self.groups.clone(),
        }
    }
}

fn are(keys: &[&str]) -> &'static str {
    if keys.len() == 1 { "is" } else { "are" }
}

/// A protocol's name as prose writes it.
fn upper(protocol: RuleProtocol) -> String {
    protocol.as_str().to_ascii_uppercase()
}

/// The `[policy]` section.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// The effect when no rule matches an operation.
    #[serde(default = "default_effect")]
    pub default: Effect,
    /// Functions with side effects beyond the built-in list.
    #[serde(default)]
    pub side_effect_functions: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Built-in rules an operator may turn off (`[policy.builtin]`).
    #[serde(default)]
    pub builtin: BuiltinRules,
}

fn default_effect() -> Effect {
    Effect::Allow
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            default: default_effect(),
            side_effect_functions: Vec::new(),
            rules: Vec::new(),
            builtin: BuiltinRules::default(),
        }
    }
}

/// The built-in rules that guard what belongs to the operator rather than to sluice's own
/// analysis; both on unless turned off. (What sluice's analysis relies on is pinned only where the
/// policy in scope enforces something, and cannot be turned off: see `Policy::enforces_anything`.)
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BuiltinRules {
    /// `protected-setting`: the server's logging and auditing of the session, and library loading.
    pub protected_setting: bool,
    /// `protected-catalog`: password verifiers, foreign-server credentials, column statistics and
    /// TOAST relations.
    pub protected_catalog: bool,
}

impl Default for BuiltinRules {
    fn default() -> Self {
        BuiltinRules { protected_setting: true, protected_catalog: true }
    }
}

/// What policy needs to know about one configured connection.
#[derive(Clone, Debug)]
pub struct ConnectionPolicy {
    pub name: String,
    /// The kind of request the connection serves (what its preset means).
    pub protocol: RuleProtocol,
    /// A preset for everyone on this connection.
    pub preset: Option<Preset>,
    /// Overrides the policy-wide default.
    pub default: Option<Effect>,
    /// Schemas an unqualified name may resolve to (the connection's search_path, `$user` already
    /// replaced by the upstream user).
    pub search_path: Vec<String>,
}
