//! Where the value of every column reference in a statement goes: out as a plain output column,
//! into a comparison, or into anything else. Masking reads this to prove that a masked value can
//! reach the client only where the server reports its column of origin (see `sluice_mask`'s
//! lineage check).
//!
//! The walk is closed by default: a reference counts as "computed" unless it sits, by itself, in
//! one of the few slots named here. A node type this code does not know therefore makes what is
//! under it computed, never an output.

use pg_query::protobuf::{AExprKind, SetOperation, SubLinkType};
use serde_json::{Map, Value};
use sluice_core::sql::{ColumnUse, Derived, Place};

/// What the slot being walked does with a value put in it.
#[derive(Clone, Debug)]
enum Slot {
    /// The output of a query that leaves as it is (top level, FROM subquery, CTE, RETURNING).
    Output,
    /// A predicate (WHERE, HAVING, JOIN … ON): comparisons of plain references are harmless here.
    Filter,
    /// An expression or anything else; the text says where.
    Computed(&'static str),
}

const IN_EXPRESSION: &str = "inside an expression";
const IN_SET_OPERATION: &str = "in a UNION, INTERSECT or EXCEPT, whose columns the server reports without their origin";
const IN_SUBQUERY_VALUE: &str = "as the value of a subquery";
const IN_VALUES: &str = "in a VALUES list";
const IN_FROM_FUNCTION: &str = "as an argument of a function in FROM";
const IN_CTE_SEARCH: &str = "in a CTE's SEARCH or CYCLE clause, whose columns carry the values";

/// The fields of other statements that hold a query whose output they pass on.
const QUERY_FIELDS: &[&str] = &["query", "stmt", "actions"];

/// Comparison operators whose result says nothing but true or false.
const COMPARISONS: &[&str] = &["=", "<>", "<", ">", "<=", ">=", "~~", "!~~", "~~*", "!~~*"];

/// The column uses and derived names of one statement (or one body's statement).
pub(crate) struct Flow {
    pub uses: Vec<ColumnUse>,
    pub derived: Vec<Derived>,
    /// Relation names and aliases met, in order (for `Derived::sources`).
    relations: Vec<String>,
    body: Option<String>,
}

impl Flow {
    /// `body`: set when the statement is inside a function body or DO block (where).
    pub fn new(body: Option<String>) -> Self {
        Flow { uses: Vec::new(), derived: Vec::new(), relations: Vec::new(), body }
    }

    /// Walks one statement's tree (`{"node": {…}}`).
    pub fn statement(&mut self, tree: &Value) {
        self.visit(tree, &Slot::Output);
    }

    fn visit(&mut self, value: &Value, slot: &Slot) {
        match value {
            Value::Object(map) => {
                if map.contains_key("relname") && map.contains_key("relpersistence") {
                    self.relation(map);
                    return;
                }
                for (key, child) in map {
                    if key.starts_with(|c: char| c.is_ascii_uppercase()) {
                        self.node(key, child, slot);
                    } else {
                        self.visit(child, slot);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.visit(item, slot)),
            _ => {}
        }
    }

    fn node(&mut self, name: &str, body: &Value, slot: &Slot) {
        let Some(map) = body.as_object() else { return };
        match name {
            "ColumnRef" => self.column(map, slot, None),
            "RangeVar" => self.relation(map),
            "SelectStmt" => {
                let out = if matches!(slot, Slot::Output) { Slot::Output } else { Slot::Computed(IN_SUBQUERY_VALUE) };
                self.select(map, &out);
            }
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" | "MergeWhenClause" | "OnConflictClause" => {
                self.clauses(map, &Slot::Computed(IN_EXPRESSION))
            }
            "ResTarget" => {
                let out = if matches!(slot, Slot::Output) { Slot::Output } else { Slot::Computed(IN_EXPRESSION) };
                self.target(map, &out);
            }
            "SubLink" => self.sublink(map, slot),
            "RangeSubselect" => {
                let start = self.mark();
                self.visit_field(map, "subquery", &Slot::Output);
                self.derive(map.get("alias"), &[], start);
            }
            "RangeFunction" => self.range_function(map),
            "JoinExpr" => self.join(map),
            "CommonTableExpr" => self.cte(map),
            "SortBy" => self.key(map.get("node"), &Slot::Computed(IN_EXPRESSION)),
            "GroupingSet" => self.keys(map.get("content")),
            "WindowDef" => {
                self.keys(map.get("partition_clause"));
                self.visit_field(map, "order_clause", &Slot::Computed(IN_EXPRESSION));
                self.visit_field(map, "start_offset", &Slot::Computed(IN_EXPRESSION));
                self.visit_field(map, "end_offset", &Slot::Computed(IN_EXPRESSION));
            }
            "BoolExpr" if matches!(slot, Slot::Filter) => self.visit(body, slot),
            "AExpr" if matches!(slot, Slot::Filter) => self.comparison(map),
            "NullTest" | "BooleanTest" if matches!(slot, Slot::Filter) => self.operand(map.get("arg")),
            // Bodies in a string are walked by the classifier, statement by statement; a SQL-standard
            // body is part of this tree.
            "DoStmt" => {}
            "CreateFunctionStmt" => {
                if let Some(body) = map.get("sql_body").filter(|b| !b.is_null()) {
                    let name = crate::classify::qualified_name(map.get("funcname"))
                        .map_or_else(|| "?".to_string(), |n| n.to_string());
                    let outer = self.body.replace(format!("inside the body of function {name}"));
                    self.visit(body, &Slot::Output);
                    self.body = outer;
                }
            }
            // Statements that hold a query (EXPLAIN, PREPARE, DECLARE, CREATE … AS) pass its
            // output on; what they do with it is the classifier's business.
            statement if statement.ends_with("Stmt") => {
                for (key, child) in map {
                    let inner =
                        if QUERY_FIELDS.contains(&key.as_str()) { slot } else { &Slot::Computed(IN_EXPRESSION) };
                    self.visit(child, inner);
                }
            }
            _ => {
                let inner = match slot {
                    Slot::Computed(where_) => Slot::Computed(where_),
                    _ => Slot::Computed(IN_EXPRESSION),
                };
                self.visit(body, &inner);
            }
        }
    }

    /// A SELECT (or one arm of a set operation) whose output columns go to `out`.
    fn select(&mut self, map: &Map<String, Value>, out: &Slot) {
        let set_operation = map.get("op").and_then(Value::as_i64).unwrap_or_default();
        if set_operation != 0 && set_operation != SetOperation::SetopNone as i64 {
            for arm in ["larg", "rarg"] {
                if let Some(arm) = map.get(arm).and_then(Value::as_object) {
                    self.select(arm, &Slot::Computed(IN_SET_OPERATION));
                }
            }
        }
        for (key, child) in map {
            match key.as_str() {
                "larg" | "rarg" => {}
                "target_list" => self.targets(child, out),
                _ => self.clause(key, child, &Slot::Computed(IN_EXPRESSION)),
            }
        }
    }

    /// The clauses of a statement, each walked for what it does with values; `other` for the rest.
    fn clauses(&mut self, map: &Map<String, Value>, other: &Slot) {
        for (key, child) in map {
            match key.as_str() {
                "target_list" => self.targets(child, &Slot::Output),
                "returning_clause" => self.visit_field_targets(child, "exprs"),
                "select_stmt" | "source_relation" | "relation" | "from_clause" | "using_clause" | "with_clause"
                | "merge_when_clauses" | "on_conflict_clause" => self.visit(child, &Slot::Output),
                _ => self.clause(key, child, other),
            }
        }
    }

    fn clause(&mut self, key: &str, child: &Value, other: &Slot) {
        match key {
            "where_clause" | "having_clause" | "condition" => self.visit(child, &Slot::Filter),
            "group_clause" | "distinct_clause" => self.keys(Some(child)),
            "values_lists" | "values" => self.visit(child, &Slot::Computed(IN_VALUES)),
            "from_clause" | "with_clause" | "into_clause" | "locking_clause" | "window_clause" | "sort_clause" => {
                self.visit(child, &Slot::Output)
            }
            _ => self.visit(child, other),
        }
    }

    fn visit_field_targets(&mut self, clause: &Value, field: &str) {
        if let Some(list) = clause.get(field) {
            self.targets(list, &Slot::Output);
        }
    }

    fn targets(&mut self, list: &Value, out: &Slot) {
        for item in list.as_array().map(Vec::as_slice).unwrap_or_default() {
            match item.pointer("/node/ResTarget").and_then(Value::as_object) {
                Some(target) => self.target(target, out),
                None => self.visit(item, &Slot::Computed(IN_EXPRESSION)),
            }
        }
    }

    /// One output column: a plain reference goes to `out`, anything else is computed.
    fn target(&mut self, map: &Map<String, Value>, out: &Slot) {
        let Some(val) = map.get("val") else { return };
        let alias = map.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
        match val.pointer("/node/ColumnRef").and_then(Value::as_object) {
            Some(column) => self.column(column, out, alias),
            None => self.visit(val, &Slot::Computed(IN_EXPRESSION)),
        }
        self.visit_field(map, "indirection", &Slot::Computed(IN_EXPRESSION));
    }

    /// Sort and grouping keys: a plain reference only orders or groups.
    fn keys(&mut self, list: Option<&Value>) {
        for item in list.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            self.key(Some(item), &Slot::Computed(IN_EXPRESSION));
        }
    }

    fn key(&mut self, item: Option<&Value>, otherwise: &Slot) {
        let Some(item) = item else { return };
        match item.pointer("/node/ColumnRef").and_then(Value::as_object) {
            Some(column) => self.use_column(column, Place::Compared, None),
            None => self.visit(item, otherwise),
        }
    }

    /// A predicate's comparison: its operands, when plain references, are only compared.
    fn comparison(&mut self, map: &Map<String, Value>) {
        let kind = map.get("kind").and_then(Value::as_i64).unwrap_or_default();
        let operator = map
            .get("name")
            .and_then(Value::as_array)
            .filter(|parts| parts.len() == 1)
            .and_then(|parts| parts[0].pointer("/node/String/sval"))
            .and_then(Value::as_str);
        let compares = match kind {
            k if [AExprKind::AexprOp, AExprKind::AexprOpAny, AExprKind::AexprOpAll].iter().any(|&o| o as i64 == k) => {
                operator.is_some_and(|o| COMPARISONS.contains(&o))
            }
            k => [
                AExprKind::AexprDistinct,
                AExprKind::AexprNotDistinct,
                AExprKind::AexprIn,
                AExprKind::AexprLike,
                AExprKind::AexprIlike,
                AExprKind::AexprBetween,
                AExprKind::AexprNotBetween,
                AExprKind::AexprBetweenSym,
                AExprKind::AexprNotBetweenSym,
            ]
            .iter()
            .any(|&o| o as i64 == k),
        };
        if !compares {
            map.values().for_each(|child| self.visit(child, &Slot::Computed(IN_EXPRESSION)));
            return;
        }
        self.operand(map.get("lexpr"));
        self.operand(map.get("rexpr"));
    }

    /// One side of a comparison (or each item of an IN list or BETWEEN's bounds).
    fn operand(&mut self, value: Option<&Value>) {
        let Some(value) = value else { return };
        if let Some(items) = value.pointer("/node/List/items").and_then(Value::as_array) {
            items.iter().for_each(|item| self.operand(Some(item)));
            return;
        }
        if value.pointer("/node/SubLink").is_some() {
            // `x = (SELECT …)`: the subquery's value is compared.
            self.visit(value, &Slot::Filter);
            return;
        }
        self.key(Some(value), &Slot::Computed(IN_EXPRESSION));
    }

    fn sublink(&mut self, map: &Map<String, Value>, slot: &Slot) {
        let kind = map.get("sub_link_type").and_then(Value::as_i64).unwrap_or_default();
        let operator_compares =
            map.get("oper_name").and_then(Value::as_array).map(Vec::as_slice).is_none_or(|parts| match parts {
                // `IN (SELECT …)` names no operator.
                [] => true,
                [only] => {
                    only.pointer("/node/String/sval").and_then(Value::as_str).is_some_and(|o| COMPARISONS.contains(&o))
                }
                _ => false,
            });
        let compared = matches!(slot, Slot::Filter);
        let out = match kind {
            k if k == SubLinkType::ExistsSublink as i64 => Slot::Filter,
            k if compared
                && operator_compares
                && (k == SubLinkType::AnySublink as i64 || k == SubLinkType::AllSublink as i64) =>
            {
                self.operand(map.get("testexpr"));
                Slot::Filter
            }
            // `WHERE x = (SELECT …)`: reached through `operand`, the value is compared.
            k if compared && k == SubLinkType::ExprSublink as i64 => Slot::Filter,
            _ => {
                self.visit_field(map, "testexpr", &Slot::Computed(IN_EXPRESSION));
                Slot::Computed(IN_SUBQUERY_VALUE)
            }
        };
        if let Some(select) =
            map.get("subselect").and_then(|s| s.pointer("/node/SelectStmt")).and_then(Value::as_object)
        {
            self.select(select, &out);
        } else {
            self.visit_field(map, "subselect", &Slot::Computed(IN_SUBQUERY_VALUE));
        }
    }

    fn range_function(&mut self, map: &Map<String, Value>) {
        let start = self.mark();
        self.visit_field(map, "functions", &Slot::Computed(IN_FROM_FUNCTION));
        let mut columns = Vec::new();
        let definitions = map.get("coldeflist").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for definition in definitions {
            if let Some(name) = definition.pointer("/node/ColumnDef/colname").and_then(Value::as_str) {
                columns.push(name.to_string());
            }
        }
        self.derive(map.get("alias"), &columns, start);
    }

    fn join(&mut self, map: &Map<String, Value>) {
        let start = self.mark();
        self.visit_field(map, "larg", &Slot::Output);
        self.visit_field(map, "rarg", &Slot::Output);
        self.visit_field(map, "quals", &Slot::Filter);
        for name in names(map.get("using_clause")) {
            self.push(name, None, Place::Merged, None);
        }
        if map.get("is_natural").and_then(Value::as_bool).unwrap_or(false) {
            self.push("*".to_string(), None, Place::Merged, None);
        }
        self.derive(map.get("alias"), &[], start);
        self.derive(map.get("join_using_alias"), &[], start);
    }

    fn cte(&mut self, map: &Map<String, Value>) {
        let start = self.mark();
        self.visit_field(map, "ctequery", &Slot::Output);
        let mut columns = names(map.get("aliascolnames"));
        for (clause, list) in [("search_clause", "search_col_list"), ("cycle_clause", "cycle_col_list")] {
            let Some(clause) = map.get(clause).filter(|c| !c.is_null()) else { continue };
            for name in names(clause.get(list)) {
                self.push(name, None, Place::Computed(IN_CTE_SEARCH.into()), None);
            }
            for column in ["search_seq_column", "cycle_mark_column", "cycle_path_column"] {
                if let Some(name) = clause.get(column).and_then(Value::as_str).filter(|n| !n.is_empty()) {
                    columns.push(name.to_string());
                }
            }
        }
        if let Some(name) = map.get("ctename").and_then(Value::as_str) {
            let sources = self.sources(start);
            self.derived.push(Derived { name: name.to_string(), columns, sources });
        }
    }

    fn column(&mut self, map: &Map<String, Value>, slot: &Slot, alias: Option<&str>) {
        let place = match slot {
            Slot::Output => Place::Output,
            Slot::Filter => Place::Compared,
            Slot::Computed(where_) => Place::Computed((*where_).to_string()),
        };
        self.use_column(map, place, alias);
    }

    fn use_column(&mut self, map: &Map<String, Value>, place: Place, alias: Option<&str>) {
        let fields = map.get("fields").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let part = |f: &Value| f.pointer("/node/String/sval").and_then(Value::as_str).unwrap_or("*").to_string();
        let Some((last, before)) = fields.split_last() else { return };
        let name = part(last);
        let qualifier = before.last().map(part);
        let alias = alias.map(str::to_string);
        self.push(name, qualifier, place, alias);
    }

    /// Records a use, inside the body being walked if any.
    fn push(&mut self, name: String, qualifier: Option<String>, place: Place, alias: Option<String>) {
        self.uses.push(ColumnUse { name, qualifier, place, alias, body: self.body.clone() });
    }

    fn relation(&mut self, map: &Map<String, Value>) {
        if let Some(name) = map.get("relname").and_then(Value::as_str) {
            self.relations.push(name.to_string());
        }
        if let Some(alias) = map.get("alias").and_then(|a| a.get("aliasname")).and_then(Value::as_str) {
            self.relations.push(alias.to_string());
        }
    }

    fn mark(&self) -> Mark {
        Mark { uses: self.uses.len(), relations: self.relations.len(), derived: self.derived.len() }
    }

    /// Every name met since `start` (see `mark`).
    fn sources(&self, start: Mark) -> Vec<String> {
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let met = self.uses[start.uses..].iter().flat_map(|u| std::iter::once(&u.name).chain(&u.qualifier));
        let derived = self.derived[start.derived..].iter().map(|d| &d.name);
        met.chain(&self.relations[start.relations..])
            .chain(derived)
            .filter(|name| seen.insert(name.as_str()))
            .cloned()
            .collect()
    }

    /// Records the name an alias gives to what was walked since `start`.
    fn derive(&mut self, alias: Option<&Value>, more_columns: &[String], start: Mark) {
        let Some(alias) = alias.filter(|a| !a.is_null()) else { return };
        let Some(name) = alias.get("aliasname").and_then(Value::as_str) else { return };
        let mut columns = names(alias.get("colnames"));
        columns.extend(more_columns.iter().cloned());
        let sources = self.sources(start);
        self.derived.push(Derived { name: name.to_string(), columns, sources });
    }

    fn visit_field(&mut self, map: &Map<String, Value>, field: &str, slot: &Slot) {
        if let Some(v) = map.get(field) {
            self.visit(v, slot);
        }
    }
}

/// How far the walk had got (see `Flow::sources`).
#[derive(Clone, Copy)]
struct Mark {
    uses: usize,
    relations: usize,
    derived: usize,
}

/// The names of a list of String nodes.
fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.pointer("/node/String/sval").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
