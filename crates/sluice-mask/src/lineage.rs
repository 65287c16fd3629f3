//! Whether a statement would carry a masked column out of reach of masking. A masked value may
//! reach the client only as a plain output column, which the server reports with its table and
//! column so the rule masks it, and may otherwise only be compared (a filter, a join condition, a
//! sort key). Any other use — inside an expression, a set operation, a VALUES list, a subquery's
//! value, a whole row, a function body, a copy into a table, COPY — is refused. Read from the
//! parsed statement (see `sluice_sql`'s flow), by name, against the column rules in scope.

use crate::ColumnRule;
use sluice_core::sql::{ColumnUse, Kind, ObjectName, Place, SqlAnalysis, SqlStatement};
use std::collections::{HashMap, HashSet};

/// Why a statement would carry a masked column out of reach of masking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: String,
    /// The column rules in scope on the table concerned.
    pub detail: String,
    /// The table, when the statement is a COPY … TO of it (which a SELECT can replace).
    pub copied: Option<String>,
}

pub(crate) fn problem<'a>(
    rules: impl Iterator<Item = &'a ColumnRule> + Clone,
    analysis: &SqlAnalysis,
) -> Option<Problem> {
    let SqlAnalysis::Parsed { statements } = analysis else { return None };
    rules.clone().next()?;
    statements.iter().find_map(|s| statement_problem(rules.clone(), s))
}

fn statement_problem<'a>(
    rules: impl Iterator<Item = &'a ColumnRule> + Clone,
    statement: &SqlStatement,
) -> Option<Problem> {
    let covers_table = |o: &ObjectName| rules.clone().any(|r| r.covers_table(o.schema.as_deref(), &o.name));
    let covered: Vec<&ObjectName> = statement
        .operations
        .iter()
        .filter_map(|op| op.object.as_ref().filter(|o| op.kind != Kind::Function && covers_table(o)))
        .collect();
    if covered.is_empty() {
        return None;
    }
    let table = covered[0];
    let problem = |reason: String, copied: Option<String>| {
        let in_scope: Vec<String> = rules
            .clone()
            .filter(|r| r.covers_table(table.schema.as_deref(), &table.name))
            .map(|r| {
                format!("{} (rule {})", r.columns.iter().map(|c| c.join(".")).collect::<Vec<_>>().join(", "), r.name)
            })
            .collect();
        Some(Problem { reason, detail: format!("masked columns in scope: {}", in_scope.join("; ")), copied })
    };
    if statement.operations.iter().any(|op| op.kind == Kind::CopyTo) {
        let reason = format!("COPY … TO of {table} would bypass its masked columns: COPY rows carry no column origin");
        return problem(reason, Some(table.to_string()));
    }
    let carriers = Carriers::of(rules.clone(), statement, &covered);
    let writes = statement
        .operations
        .iter()
        .any(|op| matches!(op.kind, Kind::Insert | Kind::Update | Kind::Merge | Kind::Create));
    for used in statement.uses.iter().filter(|u| carriers.carries(u)) {
        let shown = shown(used);
        match &used.place {
            Place::Compared => {}
            Place::Output if carriers.is_row(used) => {
                return problem(
                    format!(
                        "{shown} is a whole row of {table} (or of a query over it), which the server sends as one value \
                     without its columns' origin, so its masked columns could not be masked"
                    ),
                    None,
                );
            }
            Place::Output => {
                if let Some(body) = &used.body {
                    return problem(
                        format!(
                            "{shown} is (or may be) a masked column of {table}, read {body}: what a body returns, stores \
                         or raises is out of reach of masking"
                        ),
                        None,
                    );
                }
                if writes {
                    return problem(
                        format!(
                            "{shown} is (or may be) a masked column of {table}; copying it into a table would take it \
                         out of reach of masking"
                        ),
                        None,
                    );
                }
            }
            Place::Computed(where_) => {
                let inside = used.body.as_ref().map(|b| format!(" {b}")).unwrap_or_default();
                return problem(
                    format!(
                        "{shown} is (or may be) a masked column of {table}, or a row holding one, used {where_}{inside}: \
                     what comes out of that has no column of origin, so sluice could not mask it"
                    ),
                    None,
                );
            }
            Place::Merged => {
                return problem(
                    format!(
                        "{shown} is (or may be) a masked column of {table}, merged by a join's USING or NATURAL into a \
                     column the server reports without origin; join with ON instead"
                    ),
                    None,
                );
            }
        }
    }
    None
}

/// The names in a statement that stand for a masked value: the masked columns themselves, the
/// covered relations and their aliases (whole rows), and every name given to something computed
/// or selected from these — an output column's alias, a subquery's or CTE's name and column
/// aliases, a function in FROM — followed until nothing new is found. By name, so a column of
/// another table with the same name counts too: that errs towards refusing.
struct Carriers<'s> {
    names: HashSet<&'s str>,
    rows: HashSet<&'s str>,
}

impl<'s> Carriers<'s> {
    /// Follows the names from the masked columns and covered relations along every edge the
    /// statement has (an alias, a derived name, a relation alias), once each: linear in the size
    /// of the statement, whatever order its names come in.
    fn of<'a>(
        rules: impl Iterator<Item = &'a ColumnRule> + Clone,
        statement: &'s SqlStatement,
        covered: &[&'s ObjectName],
    ) -> Self {
        let covers_column_name = |c: &str| rules.clone().any(|r| r.covers_column_name(c));
        // name → (name it gives its value to, whether that one is a whole row).
        let mut edges: HashMap<&str, Vec<(&str, bool)>> = HashMap::new();
        for used in statement.uses.iter().filter(|u| u.place == Place::Output) {
            if let Some(alias) = &used.alias {
                edges.entry(used.name.as_str()).or_default().push((alias, false));
            }
        }
        for derived in &statement.derived {
            for source in &derived.sources {
                let to = edges.entry(source.as_str()).or_default();
                to.push((&derived.name, true));
                to.extend(derived.columns.iter().map(|c| (c.as_str(), false)));
            }
        }
        for (alias, relation) in &statement.aliases {
            edges.entry(relation.name.as_str()).or_default().push((alias, true));
        }
        let mut carriers = Carriers { names: HashSet::new(), rows: HashSet::new() };
        let mut queue: Vec<&str> = Vec::new();
        for object in covered {
            carriers.rows.insert(&object.name);
            if carriers.names.insert(&object.name) {
                queue.push(&object.name);
            }
        }
        for used in &statement.uses {
            if covers_column_name(&used.name) && carriers.names.insert(&used.name) {
                queue.push(&used.name);
            }
        }
        while let Some(name) = queue.pop() {
            for &(to, row) in edges.get(name).map(Vec::as_slice).unwrap_or_default() {
                if row {
                    carriers.rows.insert(to);
                }
                if carriers.names.insert(to) {
                    queue.push(to);
                }
            }
        }
        carriers
    }

    fn carries(&self, used: &ColumnUse) -> bool {
        if used.name == "*" {
            return used.qualifier.as_deref().is_none_or(|q| self.rows.contains(q));
        }
        self.names.contains(used.name.as_str())
    }

    /// Whether the reference may name a whole row that holds a masked column.
    fn is_row(&self, used: &ColumnUse) -> bool {
        used.name != "*" && self.rows.contains(used.name.as_str())
    }
}

/// A reference as written (`c.ssn`, `c.*`).
fn shown(used: &ColumnUse) -> String {
    match &used.qualifier {
        Some(q) => format!("\"{q}.{}\"", used.name),
        None => format!("\"{}\"", used.name),
    }
}

#[cfg(test)]
mod tests {
    use crate::{MaskingSpec, TokenKey};
    use sluice_core::Identity;

    /// The review's set-up: column rules on customers' ssn, card and api_key.
    fn problem(sql: &str) -> Option<String> {
        full(sql).map(|p| p.reason)
    }

    fn full(sql: &str) -> Option<super::Problem> {
        let spec: MaskingSpec = toml::from_str(
            r#"
            [[columns]]
            name = "pii"
            columns = ["public.customers.ssn", "public.customers.card", "public.customers.api_key"]
            action = "redact"
            "#,
        )
        .unwrap();
        let masking = crate::compile(&spec, TokenKey::new([7; 32])).unwrap();
        let who = Identity { name: "agent".into(), groups: vec![], credential_id: "t".into() };
        masking.lineage_problem(&who, "prod", &sluice_sql::analyze(sql))
    }

    #[track_caller]
    fn refused(sql: &str, says: &str) {
        let why = problem(sql).unwrap_or_else(|| panic!("not refused: {sql}"));
        assert!(why.contains(says), "{sql}: {why}");
    }

    #[track_caller]
    fn allowed(sql: &str) {
        assert_eq!(problem(sql), None, "{sql}");
    }

    #[test]
    fn every_shape_that_computes_on_a_masked_value_is_refused() {
        // The review's examples.
        refused("SELECT reverse(x) FROM (SELECT ssn FROM customers) s(x)", "inside an expression");
        refused(
            "WITH s(x) AS (SELECT card FROM customers) SELECT translate(x,'0123456789','abcdefghij') FROM s",
            "\"x\"",
        );
        refused("SELECT v.x FROM customers c, LATERAL (VALUES (reverse(c.ssn))) v(x)", "\"c.ssn\"");
        refused("VALUES (reverse((SELECT api_key FROM customers WHERE id=1)))", "api_key");
        refused("SELECT * FROM reverse((SELECT ssn FROM customers WHERE id=2)) t", "ssn");
        refused("SELECT translate(row_to_json(s)::text, 'a', 'b') FROM (SELECT * FROM customers) s", "\"s\"");
        refused("SELECT api_key FROM customers UNION ALL SELECT NULL WHERE false", "UNION");
        refused("SELECT 1 FROM customers WHERE translate(ssn,'-','x')::int = 0", "inside an expression");
        // Variants.
        refused("SELECT x FROM customers c, LATERAL (VALUES (c.ssn)) v(x)", "VALUES");
        refused("SELECT y FROM (SELECT x AS y FROM (SELECT ssn AS x FROM customers) a) b WHERE length(y) > 3", "\"y\"");
        refused("SELECT (SELECT ssn FROM customers LIMIT 1)", "subquery");
        refused("SELECT ssn COLLATE \"C\" FROM customers", "inside an expression");
        refused("SELECT (SELECT c.ssn) FROM customers c", "subquery");
        refused(
            "SELECT id FROM customers WHERE ssn = ANY (SELECT reverse(ssn) FROM customers)",
            "inside an expression",
        );
        // Names followed whatever order they come in.
        refused("SELECT upper(c) FROM (SELECT b AS c, a AS b, ssn AS a FROM customers) t", "\"c\"");
        refused("SELECT ARRAY(SELECT card FROM customers)", "subquery");
        refused("SELECT s FROM (SELECT ssn FROM customers) s", "whole row");
        refused("SELECT c FROM customers c", "whole row");
        refused("SELECT row_to_json(c.*) FROM customers c", "\"c.*\"");
        refused("SELECT t.a FROM customers c, LATERAL (SELECT c.ssn) t(a) WHERE t.a::int = 1", "\"t.a\"");
        refused("SELECT * FROM customers a FULL JOIN customers b USING (ssn)", "USING");
        refused("SELECT * FROM customers NATURAL JOIN other", "NATURAL");
        refused("SELECT ssn FROM customers INTERSECT SELECT ssn FROM customers", "INTERSECT");
        refused("SELECT ssn FROM customers WHERE ssn ~ '^1'", "inside an expression");
        refused("SELECT CASE WHEN ssn LIKE '1%' THEN 1 END FROM customers", "inside an expression");
        refused("SELECT id FROM customers ORDER BY reverse(ssn)", "inside an expression");
        refused("SELECT min(card) FROM customers", "inside an expression");
        refused("SELECT * FROM customers WHERE ssn OPERATOR(pg_catalog.=) '1'", "inside an expression");
        refused("SELECT f.x FROM customers c, LATERAL unnest(ARRAY[c.ssn]) f(x)", "function in FROM");
        refused(
            "WITH RECURSIVE t(ssn) AS (SELECT ssn FROM customers) SEARCH DEPTH FIRST BY ssn SET o SELECT o FROM t",
            "SEARCH",
        );
        refused("INSERT INTO copy SELECT ssn FROM customers", "copying it into a table");
        refused("UPDATE customers SET name = ssn", "copying it into a table");
        refused("COPY customers TO STDOUT", "COPY");
        refused("SELECT * FROM customers WHERE (SELECT ssn FROM customers LIMIT 1)::int = 1", "subquery");
        refused("PREPARE p AS SELECT upper(card) FROM customers", "inside an expression");
        refused("DECLARE c CURSOR FOR SELECT md5(api_key) FROM customers", "inside an expression");
    }

    #[test]
    fn plain_outputs_and_comparisons_are_allowed() {
        allowed("SELECT ssn, card, api_key FROM customers");
        allowed("SELECT * FROM customers");
        allowed("SELECT c.* FROM customers c");
        allowed("SELECT x FROM (SELECT ssn FROM customers) s(x)");
        allowed("WITH s AS (SELECT card AS k FROM customers) SELECT k FROM s");
        allowed("SELECT id, ssn FROM customers WHERE ssn = $1 AND card LIKE '4%' AND api_key IS NOT NULL");
        allowed("SELECT id FROM customers WHERE ssn IN ('1', '2') OR card BETWEEN 'a' AND 'b' ORDER BY ssn");
        allowed("SELECT a.id FROM customers a JOIN customers b ON a.ssn = b.ssn");
        allowed("SELECT id FROM customers c WHERE EXISTS (SELECT ssn FROM customers d WHERE d.card = c.card)");
        allowed("SELECT id FROM customers WHERE ssn IN (SELECT ssn FROM customers WHERE id < 3)");
        allowed("SELECT ssn, count(*) FROM customers GROUP BY ssn");
        allowed("SELECT upper(name), length(email) FROM customers");
        allowed("SELECT reverse(ssn) FROM other");
        allowed("DELETE FROM customers WHERE ssn = '1' RETURNING id, ssn");
        allowed("SELECT id FROM customers WHERE ssn IS DISTINCT FROM card");
    }

    #[test]
    fn a_problem_names_the_rules_and_whether_a_select_would_do() {
        let p = full("SELECT upper(ssn) FROM public.customers").unwrap();
        assert_eq!(
            p.detail,
            "masked columns in scope: public.customers.ssn, public.customers.card, public.customers.api_key (rule pii)"
        );
        assert_eq!(p.copied, None);
        assert_eq!(full("COPY public.customers TO STDOUT").unwrap().copied.as_deref(), Some("public.customers"));
    }
}
