//! SQL-level prepared statements of one session: `PREPARE p AS …` is remembered once allowed, so
//! `EXECUTE p` is decided on what p runs; an `EXECUTE` of a name sluice never saw prepared is
//! classified as SQL it cannot know.

use sluice_core::sql::{Kind, Operation, SqlAnalysis, SqlStatement};
use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct PreparedStatements {
    by_name: HashMap<String, SqlStatement>,
    /// Whether the session ever had a PREPARE let through (until then no name can be SQL's).
    ever: bool,
}

impl PreparedStatements {
    pub fn ever_prepared(&self) -> bool {
        self.ever
    }

    /// The analysis with every `EXECUTE name` replaced by what the named statement does.
    pub fn resolve<'a>(&self, analysis: &'a SqlAnalysis) -> Cow<'a, SqlAnalysis> {
        resolve_by(analysis, |name| self.by_name.get(name))
    }

    /// What this session's PREPARE of `name` runs, as sent.
    pub fn get(&self, name: &[u8]) -> Option<&SqlStatement> {
        std::str::from_utf8(name).ok().and_then(|name| self.by_name.get(name))
    }

    /// Takes note of the PREPAREs and DEALLOCATEs of a message the gateway let through.
    pub fn note_allowed(&mut self, analysis: &SqlAnalysis) {
        let SqlAnalysis::Parsed { statements } = analysis else { return };
        for statement in statements {
            if let Some(name) = &statement.prepares {
                self.ever = true;
                self.by_name.insert(name.clone(), statement.clone());
            }
            match statement.deallocates.as_deref() {
                Some("") => self.by_name.clear(),
                Some(name) => {
                    self.by_name.remove(name);
                }
                None => {}
            }
        }
    }
}

/// The analysis with every `EXECUTE name` replaced by what `prepared(name)` does (a name it does
/// not know runs SQL sluice cannot know).
pub fn resolve_by<'a, 'p>(
    analysis: &'a SqlAnalysis,
    prepared: impl Fn(&str) -> Option<&'p SqlStatement>,
) -> Cow<'a, SqlAnalysis> {
    let SqlAnalysis::Parsed { statements } = analysis else { return Cow::Borrowed(analysis) };
    if statements.iter().all(|s| s.executes.is_none()) {
        return Cow::Borrowed(analysis);
    }
    let statements = statements
        .iter()
        .map(|s| match &s.executes {
            None => s.clone(),
            Some(name) => resolve_execute(s, name, prepared(name)),
        })
        .collect();
    Cow::Owned(SqlAnalysis::Parsed { statements })
}

fn resolve_execute(statement: &SqlStatement, name: &str, prepared: Option<&SqlStatement>) -> SqlStatement {
    let mut resolved = statement.clone();
    match prepared {
        Some(prepared) => {
            for op in &prepared.operations {
                let mut op = op.clone();
                let through = format!("through EXECUTE {name}");
                op.context = Some(match op.context.take() {
                    Some(inner) => format!("{inner}, {through}"),
                    None => through,
                });
                resolved.operations.push(op);
            }
            resolved.functions.extend(prepared.functions.iter().cloned());
        }
        None => {
            let mut op = Operation::new(Kind::DynamicSql, None);
            op.context = Some(format!("as EXECUTE {name}, a statement sluice did not see prepared in this session"));
            resolved.operations.push(op);
        }
    }
    resolved
}

/// The SQL that runs the prepared statement `name`: `EXECUTE "name"`.
pub fn execute_text(name: &str) -> String {
    format!("EXECUTE \"{}\"", name.replace('"', "\"\""))
}
