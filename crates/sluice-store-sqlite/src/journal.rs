//! The decision journal: records that must be durable before their action goes ahead (a change,
//! before it is forwarded) are appended to a plain file and flushed — one write and one flush for
//! every record waiting, whatever their number — and chained into the SQLite log with the next
//! batch, after which the journal is emptied. A gateway killed in between leaves them here, and
//! the next start chains those the log does not hold yet. A change thus costs a line in a file
//! and a share of one flush, not a SQLite transaction of its own.

use crate::EventWriter;
use serde::Deserialize;
use sluice_core::{AuditEvent, AuditRecord, Principal};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    /// Whether anything was appended since the journal was last emptied.
    holds: bool,
}

impl Journal {
    /// The journal beside the store's file (`sluice.db` → `sluice.db-decisions`), created 0600.
    pub(crate) fn open(store: &Path) -> io::Result<Journal> {
        let mut name = store.as_os_str().to_owned();
        name.push("-decisions");
        let path = PathBuf::from(name);
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
        Ok(Journal { file, path, holds: true })
    }

    /// Appends `lines` (whole lines) and flushes them to the disk.
    pub(crate) fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        self.holds = true;
        self.file.write_all(lines)?;
        self.file.sync_data()
    }

    /// Empties the journal: everything in it is in the log now (written by a committed batch).
    pub(crate) fn clear(&mut self) -> io::Result<()> {
        if self.holds {
            self.file.set_len(0)?;
            self.holds = false;
        }
        Ok(())
    }

    /// Chains what a previous run journaled and the log does not hold yet; how many records that
    /// was. A last line cut short was never flushed whole, so its action never went ahead.
    pub(crate) fn recover(&mut self, writer: &mut EventWriter) -> io::Result<usize> {
        let text = std::fs::read_to_string(&self.path)?;
        let mut missing = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Some(record) = parse(line) else {
                tracing::warn!(journal = %self.path.display(), "skipping a journal line that was not written whole");
                continue;
            };
            let known = writer.holds_decision(record.session.as_deref(), record.at_us).map_err(io::Error::other)?;
            if !known {
                missing.push(record);
            }
        }
        if !missing.is_empty() {
            writer.write(&missing).map_err(io::Error::other)?;
        }
        self.holds = true;
        self.clear()?;
        Ok(missing.len())
    }
}

/// A journaled record: the canonical form of an `action_decided` record.
#[derive(Deserialize)]
struct Line {
    at_us: i64,
    principal: LinePrincipal,
    session: Option<String>,
    event: LineEvent,
}

#[derive(Deserialize)]
struct LinePrincipal {
    name: String,
    credential_id: Option<String>,
}

#[derive(Deserialize)]
struct LineEvent {
    kind: String,
    action: String,
    text: String,
    verdict: String,
    rule: Option<String>,
}

fn parse(line: &str) -> Option<AuditRecord> {
    let Line { at_us, principal, session, event } = serde_json::from_str(line).ok()?;
    if event.kind != "action_decided" {
        return None;
    }
    let action = ["sql", "exec", "http", "kube", "tool"].into_iter().find(|k| *k == event.action)?;
    let verdict = ["allow", "review", "deny"].into_iter().find(|v| *v == event.verdict)?;
    Some(AuditRecord {
        at_us,
        principal: Principal::new(principal.name, principal.credential_id),
        session: session.map(Arc::from),
        event: AuditEvent::ActionDecided {
            action,
            text: Arc::from(event.text),
            verdict,
            rule: event.rule.map(Arc::from),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journaled_decision_reads_back_as_it_was_and_a_cut_line_does_not() {
        let record = AuditRecord {
            at_us: 42,
            principal: Principal::new("agent", Some("t_1".into())),
            session: Some(Arc::from("s_1")),
            event: AuditEvent::ActionDecided {
                action: "sql",
                text: Arc::from("UPDATE t SET a = '\"x\"'"),
                verdict: "allow",
                rule: Some(Arc::from("writes")),
            },
        };
        let line = sluice_audit::encode("i_1", 0, &record);
        let back = parse(&line).expect("parsed");
        assert_eq!(sluice_audit::encode("i_1", 0, &back), line);
        assert!(parse(&line[..line.len() - 3]).is_none());
    }
}
