//! The SSH matcher for file transfers: how one rule's `operations` and `files` match one file
//! operation (of SFTP, scp, rsync or git). As for commands, what cannot be known (a path the host
//! expands, everything below a directory a pattern covers only in part) makes a refusing rule
//! match and an allowing rule not.

use sluice_core::exec::{FileAccess, FileOp};
use sluice_core::glob::glob_match;
use sluice_core::policy::RuleSpec;

#[derive(Debug)]
pub(crate) struct FileMatcher {
    /// Empty: every operation.
    operations: Vec<FileOp>,
    /// Empty: every path.
    files: Vec<String>,
    /// Matches no operation (a rule about commands).
    never: bool,
}

impl FileMatcher {
    pub(crate) fn compile(spec: &RuleSpec) -> Option<FileMatcher> {
        (!spec.file_keys().is_empty()).then(|| FileMatcher {
            operations: spec.operations.clone(),
            files: spec.files.clone(),
            never: false,
        })
    }

    /// Matches the operations that read (`true`) or those that write (`false`), on any path.
    pub(crate) fn reads(reads: bool) -> FileMatcher {
        let operations = FileOp::ALL.into_iter().filter(|op| op.reads() == reads).collect();
        FileMatcher { operations, files: Vec::new(), never: false }
    }

    pub(crate) fn never() -> FileMatcher {
        FileMatcher { operations: Vec::new(), files: Vec::new(), never: true }
    }

    /// Whether `access` matches; `allows`: the rule allows.
    pub(crate) fn matches(&self, access: &FileAccess, allows: bool) -> bool {
        if self.never || !(self.operations.is_empty() || self.operations.contains(&access.op)) {
            return false;
        }
        if self.files.is_empty() {
            return true;
        }
        match allows {
            true => access.literal && self.files.iter().any(|g| covers(g, access)),
            false => !access.literal || self.files.iter().any(|g| may_reach(g, access)),
        }
    }
}

/// Whether every path `access` reaches matches `pattern`.
fn covers(pattern: &str, access: &FileAccess) -> bool {
    // A trailing `*` that matches `dir/` matches whatever follows it too.
    glob_match(pattern, &access.path)
        && (!access.tree || (pattern.ends_with('*') && glob_match(pattern, &below(access))))
}

/// Whether some path `access` reaches may match `pattern`.
fn may_reach(pattern: &str, access: &FileAccess) -> bool {
    if glob_match(pattern, &access.path) {
        return true;
    }
    if !access.tree {
        return false;
    }
    // Below a directory: any pattern whose fixed beginning lies along the way there, or below it.
    let dir = below(access);
    let fixed = pattern.find(['*', '?']).map_or(pattern, |at| &pattern[..at]);
    match fixed.len() == pattern.len() {
        true => fixed.starts_with(&dir),
        false => fixed.starts_with(&dir) || dir.starts_with(fixed),
    }
}

/// The directory of a tree access with its trailing `/`.
fn below(access: &FileAccess) -> String {
    match access.path.ends_with('/') {
        true => access.path.clone(),
        false => format!("{}/", access.path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(op: FileOp, path: &str, tree: bool) -> FileAccess {
        FileAccess { op, path: path.into(), tree, literal: true }
    }

    fn matcher(operations: &[FileOp], files: &[&str]) -> FileMatcher {
        FileMatcher {
            operations: operations.to_vec(),
            files: files.iter().map(|f| f.to_string()).collect(),
            never: false,
        }
    }

    #[test]
    fn an_allow_covers_a_tree_only_when_its_pattern_covers_all_below() {
        let uploads = matcher(&[FileOp::Write], &["/srv/up/*"]);
        assert!(uploads.matches(&access(FileOp::Write, "/srv/up/a.txt", false), true));
        assert!(uploads.matches(&access(FileOp::Write, "/srv/up/dir", true), true));
        assert!(!uploads.matches(&access(FileOp::Write, "/srv/up", true), true), "/srv/up itself is not in /srv/up/*");
        assert!(!uploads.matches(&access(FileOp::Read, "/srv/up/a.txt", false), true), "another operation");
        let texts = matcher(&[], &["/srv/*.txt"]);
        assert!(texts.matches(&access(FileOp::Read, "/srv/a.txt", false), true));
        assert!(
            !texts.matches(&access(FileOp::Read, "/srv/d.txt", true), true),
            "a directory's files need not end in .txt"
        );
        let mut globbed = access(FileOp::Read, "/srv/up/*", false);
        globbed.literal = false;
        assert!(!uploads.matches(&globbed, true));
    }

    #[test]
    fn a_refusal_matches_what_a_tree_may_reach() {
        let keys = matcher(&[], &["/home/*/.ssh/*"]);
        assert!(keys.matches(&access(FileOp::Read, "/home/a/.ssh/id_ed25519", false), false));
        assert!(keys.matches(&access(FileOp::Read, "/home", true), false), "/home holds every .ssh");
        assert!(keys.matches(&access(FileOp::Read, "/home/a", true), false));
        assert!(!keys.matches(&access(FileOp::Read, "/srv", true), false));
        let anywhere = matcher(&[], &["*.pem"]);
        assert!(anywhere.matches(&access(FileOp::Read, "/srv", true), false));
        let shadow = matcher(&[], &["/etc/shadow"]);
        assert!(shadow.matches(&access(FileOp::Read, "/etc", true), false));
        assert!(shadow.matches(&access(FileOp::Read, "/", true), false));
        assert!(!shadow.matches(&access(FileOp::Read, "/etc/passwd", false), false));
        let mut unknown = access(FileOp::Read, "~other/x", false);
        unknown.literal = false;
        assert!(shadow.matches(&unknown, false), "a path the host expands may be any");
        assert!(!FileMatcher::never().matches(&access(FileOp::Read, "/etc/shadow", false), false));
        assert!(FileMatcher::reads(false).matches(&access(FileOp::Rename, "/x", false), false));
        assert!(!FileMatcher::reads(false).matches(&access(FileOp::List, "/x", false), false));
    }
}
