//! A command line run on a host, as policy reads it: every simple command it would run (those in
//! pipelines, lists, subshells, substitutions, and those that wrappers such as `sudo`, `env`,
//! `xargs` or `sh -c '…'` run), each with its program, arguments and redirections. What cannot be
//! read for certain (a program named by an expansion, `eval`, `sh -c "$X"`) is said so, and is
//! never allowed.

use serde::{Deserialize, Serialize};

/// What an SSH client asked a channel to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecRequest {
    /// `exec`: one command line.
    Command,
    /// An interactive shell.
    Shell,
    /// A subsystem (`sftp`).
    Subsystem(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecAction {
    /// The line as the client sent it (for a shell or a subsystem, what it is).
    pub line: String,
    pub request: ExecRequest,
    /// Every simple command the line runs, in the order they appear.
    pub commands: Vec<Command>,
    /// Why part of the line cannot be read for certain; such a line is refused or reviewed by
    /// policy, never allowed.
    pub opaque: Option<String>,
}

/// One program run with its arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The program as written (`rm`, `/bin/rm`), then its arguments, each after quote removal.
    /// A word with expansions in it is kept as written, and `literal` says which.
    pub argv: Vec<String>,
    /// For each word of `argv`: whether its value is certain (no expansion of any kind).
    pub literal: Vec<bool>,
    /// Files opened by redirections.
    pub redirects: Vec<Redirect>,
    /// The wrappers that run it, outermost first (`sudo`, `env`, `xargs`, `sh -c`, `find -exec`).
    pub via: Vec<String>,
    /// Run as another user: under `sudo`, `su`, `doas`, `runuser` or `pkexec`.
    pub elevated: bool,
}

impl Command {
    /// The program as written; `None` for a line of redirections alone.
    pub fn program(&self) -> Option<&str> {
        self.argv.first().map(String::as_str)
    }

    /// The program's file name (`rm` for `/bin/rm`).
    pub fn program_name(&self) -> Option<&str> {
        self.program().map(|p| p.rsplit('/').next().unwrap_or(p))
    }

    pub fn args(&self) -> &[String] {
        self.argv.get(1..).unwrap_or_default()
    }

    /// The command as a reader would write it.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for via in &self.via {
            s.push_str(via);
            s.push(' ');
        }
        s.push_str(&self.argv.join(" "));
        for r in &self.redirects {
            s.push_str(if r.writes { " > " } else { " < " });
            s.push_str(&r.target);
        }
        s
    }
}

/// A file a redirection opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// Opened for writing (`>`, `>>`, `>|`, `&>`, `<>`), else for reading.
    pub writes: bool,
    /// The path as written after quote removal (or as written, when not `literal`).
    pub target: String,
    pub literal: bool,
}

impl ExecAction {
    /// A request that is not a command line (a shell, a subsystem).
    pub fn session(request: ExecRequest) -> ExecAction {
        let line = match &request {
            ExecRequest::Command => String::new(),
            ExecRequest::Shell => "(interactive shell)".into(),
            ExecRequest::Subsystem(name) => format!("(subsystem {name})"),
        };
        ExecAction { line, request, commands: Vec::new(), opaque: None }
    }
}
