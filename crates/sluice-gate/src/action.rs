//! What a caller asks to do, reduced to what policy needs to know: one variant per kind of request
//! sluice understands. Adapters build them; the engine decides on them.

use crate::server::SqlServer;
use sluice_core::exec::ExecAction;
use sluice_core::http::HttpAction;
use sluice_core::sql::{SharedAnalysis, SqlAnalysis};
use std::borrow::Cow;

#[derive(Clone, Debug)]
pub enum Action<'a> {
    /// A statement for a SQL database (PostgreSQL now, MySQL later).
    Sql(SqlAction<'a>),
    /// A command line run on a host (SSH `exec`, later a shell's lines), read into the commands
    /// it runs (borrowed from the adapter).
    Exec(&'a ExecAction),
    /// A request to an internal HTTP API (borrowed from the adapter: deciding copies nothing).
    Http(&'a HttpAction),
    /// A request to the Kubernetes API.
    Kube(KubeAction),
    /// A call of an MCP tool.
    Tool(ToolAction),
}

impl Action<'_> {
    /// The kind of action, as rules and the audit trail name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Sql(_) => "sql",
            Action::Exec(_) => "exec",
            Action::Http(_) => "http",
            Action::Kube(_) => "kube",
            Action::Tool(_) => "tool",
        }
    }

    /// The action in one line, as a reviewer and the audit trail see it.
    pub fn summary(&self) -> Cow<'_, str> {
        match self {
            Action::Sql(sql) => Cow::Borrowed(sql.text),
            Action::Exec(exec) => Cow::Borrowed(&exec.line),
            Action::Http(http) => Cow::Owned(http.record_line(sluice_core::http::UNMASKED)),
            Action::Kube(kube) => Cow::Owned(kube.summary()),
            Action::Tool(tool) => Cow::Owned(format!("{}({})", tool.name, tool.arguments)),
        }
    }
}

/// One SQL message as the client sent it (a simple Query, or the text of a Parse) and what the
/// classifier found it does. The text is borrowed from the wire buffer: deciding costs no copy.
#[derive(Clone, Copy, Debug)]
pub struct SqlAction<'a> {
    pub text: &'a str,
    pub analysis: &'a SqlAnalysis,
    /// The classifier's shared analysis of `text` when `analysis` is it (not a resolution made for
    /// this run, such as what an `EXECUTE` runs): a session may then keep an allow for the text.
    pub shared: Option<&'a SharedAnalysis>,
    /// Whether the database may hold a column a column rule in scope covers: `false` only where
    /// the adapter read its catalog and found none. Policy checks that exist only to keep masking
    /// sound are then not needed.
    pub masked_columns_here: bool,
    /// Where the engine asks what only the server knows of the objects the statement reaches
    /// (see `SqlServer`); `None` where the adapter has no server to ask (then a check that needs
    /// one refuses).
    pub server: Option<&'a dyn SqlServer>,
}

/// A SQL dialect's grammar, as the engine needs it beyond what an action carries: the adapter
/// that speaks the dialect supplies it with each target (see `Target::with_sql`), so that the
/// engine knows no SQL grammar of its own.
pub trait SqlLanguage: Send + Sync {
    /// What a statement given as text (not over the wire: `sluice.explain`, the REST API's
    /// explain) does, as the adapter's classifier would find.
    fn analyze(&self, text: &str) -> SqlAnalysis;
    /// The form a review's approval is bound to: the same statement however it is spaced,
    /// commented or cased where case does not matter, and a different one for any other change.
    fn canonical(&self, text: &str) -> String;
}

/// A Kubernetes API request in the API server's own terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeAction {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// The API group; empty for the core group.
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl KubeAction {
    pub fn summary(&self) -> String {
        let mut s = self.verb.clone();
        s.push(' ');
        if !self.group.is_empty() {
            s.push_str(&self.group);
            s.push('/');
        }
        s.push_str(&self.resource);
        if let Some(sub) = &self.subresource {
            s.push('/');
            s.push_str(sub);
        }
        if let Some(name) = &self.name {
            s.push(' ');
            s.push_str(name);
        }
        if let Some(ns) = &self.namespace {
            s.push_str(" -n ");
            s.push_str(ns);
        }
        s
    }
}

/// A call of an MCP tool with its arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolAction {
    pub name: String,
    pub arguments: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_names_its_kind() {
        let analysis = SqlAnalysis::Unparseable { message: "x".into() };
        let sql = Action::Sql(SqlAction {
            text: "select 1",
            analysis: &analysis,
            shared: None,
            masked_columns_here: true,
            server: None,
        });
        let line = ExecAction {
            line: "ls -l".into(),
            request: sluice_core::exec::ExecRequest::Command,
            commands: Vec::new(),
            opaque: None,
            transfer: None,
        };
        let exec = Action::Exec(&line);
        let tool = Action::Tool(ToolAction { name: "query".into(), arguments: serde_json::json!({"q": 1}) });
        assert_eq!([sql.kind(), exec.kind(), tool.kind()], ["sql", "exec", "tool"]);
        assert_eq!(sql.summary(), "select 1");
        assert_eq!(exec.summary(), "ls -l");
        assert_eq!(tool.summary(), r#"query({"q":1})"#);
    }

    #[test]
    fn a_kube_action_reads_like_kubectl() {
        let get = KubeAction {
            verb: "get".into(),
            group: String::new(),
            resource: "pods".into(),
            subresource: Some("log".into()),
            namespace: Some("prod".into()),
            name: Some("web-1".into()),
        };
        assert_eq!(get.summary(), "get pods/log web-1 -n prod");
        let list = KubeAction {
            verb: "list".into(),
            group: "apps".into(),
            resource: "deployments".into(),
            subresource: None,
            namespace: None,
            name: None,
        };
        assert_eq!(Action::Kube(list).summary(), "list apps/deployments");
    }
}
