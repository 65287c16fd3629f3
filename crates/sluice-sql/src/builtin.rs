//! sluice's own functions, which an agent calls from its SQL client to ask before acting:
//! `SELECT sluice.policy()` (what may I do here?) and `SELECT sluice.explain('…')` (would this
//! statement pass?). sluice answers them itself; they never reach the server as written.
//!
//! Only the plain forms are recognised, `SELECT sluice.f(…)` and `SELECT * FROM sluice.f(…)`, with
//! a string literal for the statement: anything more (a WHERE clause, a join, a `$1` parameter)
//! would need the server to compute with sluice's answer, so it is refused with the forms to use.

use pg_query::NodeEnum;
use pg_query::protobuf::{Node, SelectStmt, SetOperation, a_const};
use sluice_core::sql::{SqlAnalysis, SqlStatement};

/// The schema sluice's functions live in.
pub const SCHEMA: &str = "sluice";

/// A call of one of sluice's own functions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuiltinCall {
    /// `sluice.policy()`: the rules, masking and reviews that apply to the caller here.
    Policy,
    /// `sluice.explain('statement')`: the decision the statement would get, without running it.
    Explain(String),
}

/// Whether a classified message calls a function in schema `sluice` at all: the cheap test that
/// keeps `builtin_call`'s parse off the path of every other statement.
pub fn calls_builtin(analysis: &SqlAnalysis) -> bool {
    let SqlAnalysis::Parsed { statements } = analysis else { return false };
    statements.iter().any(|s: &SqlStatement| s.functions.iter().any(|f| f.schema.as_deref() == Some(SCHEMA)))
}

/// The builtin call `text` is, or why it is not one that sluice can answer.
pub fn builtin_call(text: &str) -> Result<BuiltinCall, String> {
    let usage = "call sluice's functions alone: SELECT sluice.policy(), or SELECT sluice.explain('the statement') \
                 (the statement as a string literal, quotes doubled; not a $1 parameter)";
    let parsed = pg_query::parse(text, 0).map_err(|e| e.to_string())?;
    let [raw] = parsed.protobuf.stmts.as_slice() else { return Err(usage.into()) };
    let Some(NodeEnum::SelectStmt(select)) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
        return Err(usage.into());
    };
    let call = plain_select_of_one_call(select).ok_or(usage)?;
    let Some(NodeEnum::FuncCall(call)) = call.node.as_ref() else { return Err(usage.into()) };
    let name: Vec<&str> = call.funcname.iter().filter_map(string_of).collect();
    let plain = call.agg_order.is_empty()
        && call.agg_filter.is_none()
        && call.over.is_none()
        && !call.agg_star
        && !call.agg_distinct
        && !call.func_variadic;
    if !plain {
        return Err(usage.into());
    }
    match (name.as_slice(), call.args.as_slice()) {
        ([SCHEMA, "policy"], []) => Ok(BuiltinCall::Policy),
        ([SCHEMA, "explain"], [argument]) => match argument.node.as_ref() {
            Some(NodeEnum::AConst(constant)) => match &constant.val {
                Some(a_const::Val::Sval(s)) => Ok(BuiltinCall::Explain(s.sval.clone())),
                _ => Err(usage.into()),
            },
            _ => Err(usage.into()),
        },
        ([SCHEMA, other], _) => Err(format!("sluice has no function {other} with these arguments; {usage}")),
        _ => Err(usage.into()),
    }
}

/// `SELECT f(…)` or `SELECT * FROM f(…)` and nothing else: the call node.
fn plain_select_of_one_call(s: &SelectStmt) -> Option<&Node> {
    let bare = s.distinct_clause.is_empty()
        && s.into_clause.is_none()
        && s.where_clause.is_none()
        && s.group_clause.is_empty()
        && s.having_clause.is_none()
        && s.window_clause.is_empty()
        && s.values_lists.is_empty()
        && s.sort_clause.is_empty()
        && s.limit_offset.is_none()
        && s.limit_count.is_none()
        && s.locking_clause.is_empty()
        && s.with_clause.is_none()
        && s.op == SetOperation::SetopNone as i32;
    let [target] = s.target_list.as_slice() else { return None };
    let Some(NodeEnum::ResTarget(target)) = target.node.as_ref() else { return None };
    let value = target.val.as_deref()?;
    if !bare {
        return None;
    }
    match s.from_clause.as_slice() {
        [] => Some(value),
        [from] => {
            let Some(NodeEnum::ColumnRef(star)) = value.node.as_ref() else { return None };
            let [field] = star.fields.as_slice() else { return None };
            if !matches!(field.node, Some(NodeEnum::AStar(_))) {
                return None;
            }
            let Some(NodeEnum::RangeFunction(range)) = from.node.as_ref() else { return None };
            if range.lateral || range.ordinality || range.is_rowsfrom || !range.coldeflist.is_empty() {
                return None;
            }
            let [function] = range.functions.as_slice() else { return None };
            let Some(NodeEnum::List(list)) = function.node.as_ref() else { return None };
            list.items.first()
        }
        _ => None,
    }
}

fn string_of(node: &Node) -> Option<&str> {
    match node.node.as_ref() {
        Some(NodeEnum::String(s)) => Some(&s.sval),
        _ => None,
    }
}

/// A query whose result is `rows` as two text columns, `item` and `value`: how sluice's answer
/// reaches the client through the server, in whatever protocol and format the client asked for.
/// Every value is a string literal (quotes doubled; the session's `standard_conforming_strings`
/// is pinned on, so backslashes are literal).
pub fn answer_query(rows: &[(String, String)]) -> String {
    let literal = |s: &str| format!("'{}'", s.replace('\0', "").replace('\'', "''"));
    if rows.is_empty() {
        return "SELECT NULL::text AS item, NULL::text AS value WHERE false".into();
    }
    let values: Vec<String> = rows.iter().map(|(k, v)| format!("({}, {})", literal(k), literal(v))).collect();
    format!("SELECT item, value FROM (VALUES {}) AS sluice(item, value)", values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_forms_are_recognised() {
        assert_eq!(builtin_call("SELECT sluice.policy()"), Ok(BuiltinCall::Policy));
        assert_eq!(builtin_call("select * from SLUICE.POLICY() ;"), Ok(BuiltinCall::Policy));
        assert_eq!(
            builtin_call("SELECT sluice.explain('DELETE FROM t WHERE a = ''x''') AS answer"),
            Ok(BuiltinCall::Explain("DELETE FROM t WHERE a = 'x'".into()))
        );
        assert_eq!(
            builtin_call("SELECT * FROM sluice.explain($$DROP TABLE t$$)"),
            Ok(BuiltinCall::Explain("DROP TABLE t".into()))
        );
    }

    #[test]
    fn anything_that_would_compute_with_the_answer_is_refused() {
        for text in [
            "SELECT sluice.explain($1)",
            "SELECT sluice.explain('x') FROM orders",
            "SELECT sluice.policy() WHERE true",
            "SELECT sluice.policy(), 1",
            "SELECT upper(sluice.explain('x'))",
            "SELECT * FROM sluice.policy() AS p(a text)",
            "SELECT * FROM sluice.policy(), orders",
            "SELECT sluice.policy() UNION SELECT 'x'",
            "WITH x AS (SELECT 1) SELECT sluice.policy()",
            "SELECT sluice.policy(); SELECT 1",
            "SELECT sluice.explain(42)",
            "SELECT sluice.unknown()",
            "SELECT count(*) FROM sluice.policy()",
        ] {
            assert!(builtin_call(text).is_err(), "{text}");
        }
    }

    #[test]
    fn the_answer_quotes_every_value() {
        let query = answer_query(&[("reason".into(), "it's a \\ test\0".into())]);
        assert_eq!(query, "SELECT item, value FROM (VALUES ('reason', 'it''s a \\ test')) AS sluice(item, value)");
        assert!(pg_query::parse(&query, 0).is_ok());
        assert!(pg_query::parse(&answer_query(&[]), 0).is_ok());
    }
}
