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
    /// A TCP connection from the host to `host:port` (`ssh -L`, `ssh -W`, `ProxyJump`).
    Forward(String),
    /// The host listening on `address:port`, its connections passed back to the client
    /// (`ssh -R`).
    Listen(String),
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
    /// A file transfer (an SFTP operation; `scp -f`, `rsync --server`, `git-upload-pack`): it is
    /// decided by the files it reads and writes, not as a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
}

/// What a file transfer does to files on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// `sftp`, `scp`, `rsync`, `git`.
    pub program: String,
    pub files: Vec<FileAccess>,
}

/// One operation on a file (or, `tree`, on everything below a directory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAccess {
    pub op: FileOp,
    /// Absolute and without `.` or `..` segments when `literal`; else as written (a glob the
    /// host expands, `~user`), which no allowing rule matches.
    pub path: String,
    /// The operation reaches everything below `path` too (`scp -r`, rsync, a git repository).
    pub tree: bool,
    pub literal: bool,
}

/// What is done to a file. `read` and `list` change nothing; every other operation writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileOp {
    /// Reading a file's contents or attributes (open for reading, stat, readlink, realpath).
    Read,
    /// Listing a directory.
    List,
    /// Creating or changing a file's contents.
    Write,
    Remove,
    /// Renaming (or moving) a file: decided for its old and its new path.
    Rename,
    Mkdir,
    Rmdir,
    /// Changing a file's mode, owner or times.
    Setstat,
    /// Making a symbolic or hard link (decided for the link and its target).
    Link,
}

impl FileOp {
    pub const ALL: [FileOp; 9] = [
        FileOp::Read,
        FileOp::List,
        FileOp::Write,
        FileOp::Remove,
        FileOp::Rename,
        FileOp::Mkdir,
        FileOp::Rmdir,
        FileOp::Setstat,
        FileOp::Link,
    ];

    /// Whether it leaves the host's files as they were.
    pub fn reads(self) -> bool {
        matches!(self, FileOp::Read | FileOp::List)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FileOp::Read => "read",
            FileOp::List => "list",
            FileOp::Write => "write",
            FileOp::Remove => "remove",
            FileOp::Rename => "rename",
            FileOp::Mkdir => "mkdir",
            FileOp::Rmdir => "rmdir",
            FileOp::Setstat => "setstat",
            FileOp::Link => "link",
        }
    }
}

impl FileAccess {
    /// The access as a reader would write it (`write /srv/up/**`).
    pub fn summary(&self) -> String {
        format!("{} {}{}", self.op.as_str(), self.path, if self.tree { "/**" } else { "" })
    }
}

/// `path` made absolute (relative to `home`) with its `.` and `..` segments resolved as the host
/// would resolve them lexically; `..` above `/` stays at `/`.
pub fn normalize_path(home: &str, path: &str) -> String {
    let joined = match path.starts_with('/') {
        true => path.to_string(),
        false => format!("{home}/{path}"),
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
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
            ExecRequest::Forward(to) => format!("(forward to {to})"),
            ExecRequest::Listen(on) => format!("(listen on {on})"),
        };
        ExecAction { line, request, commands: Vec::new(), opaque: None, transfer: None }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    #[test]
    fn a_path_is_made_absolute_and_its_dots_resolved() {
        assert_eq!(normalize_path("/home/a", "x/./y"), "/home/a/x/y");
        assert_eq!(normalize_path("/home/a", "../../../etc/shadow"), "/etc/shadow");
        assert_eq!(normalize_path("/home/a", "/srv//up/../x/"), "/srv/x");
        assert_eq!(normalize_path("/home/a", "."), "/home/a");
        assert_eq!(normalize_path("/", ""), "/");
    }
}
