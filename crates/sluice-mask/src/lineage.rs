//! Whether a statement would carry a masked column out of reach of masking: inside an output
//! expression, into a table, or through COPY. Read from the parsed statement, by name, against the
//! column rules in scope.

use crate::ColumnRule;
use sluice_core::sql::{Kind, ObjectName, SqlAnalysis, SqlStatement};

pub(crate) fn problem<'a>(rules: impl Iterator<Item = &'a ColumnRule> + Clone, analysis: &SqlAnalysis) -> Option<String> {
    let SqlAnalysis::Parsed { statements } = analysis else { return None };
    if rules.clone().next().is_none() {
        return None;
    }
    statements.iter().find_map(|s| statement_problem(rules.clone(), s))
}

fn statement_problem<'a>(rules: impl Iterator<Item = &'a ColumnRule> + Clone, statement: &SqlStatement) -> Option<String> {
    let covers_table = |o: &ObjectName| rules.clone().any(|r| r.covers_table(o.schema.as_deref(), &o.name));
    let covers_column_name = |c: &str| rules.clone().any(|r| r.covers_column_name(c));
    let covered: Vec<&ObjectName> = statement
        .operations
        .iter()
        .filter_map(|op| op.object.as_ref().filter(|o| op.kind != Kind::Function && covers_table(o)))
        .collect();
    if covered.is_empty() {
        return None;
    }
    if statement.operations.iter().any(|op| op.kind == Kind::CopyTo) {
        return Some(format!("COPY … TO of {} would bypass its masked columns", covered[0]));
    }
    // Names that stand for a masked column: the columns themselves, their aliases in
    // subqueries, and the covered tables and their aliases (whole-row references).
    let mut tainted: Vec<&str> = Vec::new();
    for t in &statement.targets {
        tainted.extend(t.refs.iter().map(String::as_str).filter(|r| covers_column_name(r)));
    }
    tainted.extend(covered.iter().map(|o| o.name.as_str()));
    tainted.extend(
        statement.aliases.iter().filter(|(_, o)| covered.iter().any(|c| c.name == o.name)).map(|(a, _)| a.as_str()),
    );
    loop {
        let before = tainted.len();
        for t in statement.targets.iter().filter(|t| t.bare) {
            if let (Some(alias), true) = (&t.alias, t.refs.iter().any(|r| tainted.contains(&r.as_str()))) {
                if !tainted.contains(&alias.as_str()) {
                    tainted.push(alias);
                }
            }
        }
        if tainted.len() == before {
            break;
        }
    }
    let writes = statement.operations.iter().any(|op| matches!(op.kind, Kind::Insert | Kind::Update | Kind::Merge | Kind::Create));
    for t in &statement.targets {
        let hit = t.refs.iter().find(|r| *r == "*" && !t.bare || tainted.contains(&r.as_str()));
        let Some(hit) = hit else { continue };
        if let Some(body) = &t.body {
            return Some(format!(
                "\"{hit}\" is (or may be) a masked column of {}, read {body}: what a body returns, stores or raises is out of reach of masking",
                covered[0]
            ));
        }
        if !t.bare {
            return Some(format!(
                "\"{hit}\" is (or may be) a masked column of {}, used inside an expression whose result sluice cannot mask",
                covered[0]
            ));
        }
        if writes {
            return Some(format!(
                "\"{hit}\" is (or may be) a masked column of {}; copying it into a table would take it out of reach of masking",
                covered[0]
            ));
        }
    }
    None
}
