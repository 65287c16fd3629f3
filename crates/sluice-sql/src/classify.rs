//! Classification of one SQL message with libpg_query: the parse tree is walked in full (CTEs,
//! subqueries, EXPLAIN, PREPARE, DO and function bodies), so what is found is what PostgreSQL would
//! run. A message that does not parse is unparseable; a body inside it that does not parse is
//! dynamic SQL (what it runs is unknown).
//!
//! The walk works on the tree's serde form, keyed by PostgreSQL's node names, so a node type this
//! code does not name is still descended into: nothing is skipped by omission.
//!
//! Invariant the cache relies on: the value of a numeric literal never changes the result.

use crate::flow::Flow;
use pg_query::protobuf::{CmdType, DiscardMode, ObjectType, OnConflictAction, VariableSetKind};
use serde_json::{Map, Value};
use sluice_core::sql::{ColumnUse, Derived, Kind, ObjectName, Operation, Place, SqlAnalysis, SqlStatement, Target};

/// How deep bodies may nest (a DO block holding SQL holding a function body…).
const MAX_BODY_DEPTH: usize = 8;

/// Built-in functions that run SQL handed to them as a string (PostgreSQL 13–17; see
/// `scripts/pg-function-lists.py`): `(name, which argument holds the SQL, how many arguments the
/// form that runs SQL takes, 0 for every form)`. A literal string is classified as SQL written
/// there would be, as a body whose results have no origin; anything else is dynamic SQL.
const SQL_STRING_FUNCTIONS: &[(&str, usize, usize)] = &[
    ("query_to_xml", 0, 0),
    ("query_to_xmlschema", 0, 0),
    ("query_to_xml_and_xmlschema", 0, 0),
    ("ts_stat", 0, 0),
    ("ts_rewrite", 1, 2),
];

/// Built-in functions that read a whole relation named by their first argument: a literal name
/// is a read of that relation, whose every column goes out computed; anything else is dynamic.
const TABLE_BY_NAME_FUNCTIONS: &[&str] =
    &["table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema", "currtid2"];

/// Functions of the `pageinspect` extension that read a relation's raw pages by name — a table's,
/// its TOAST relation's or an index's, whatever a rule denies — and hand back its values.
const RAW_PAGE_FUNCTIONS: &[&str] = &["get_raw_page", "bt_page_items"];

/// Built-in functions that read what sluice cannot name before they run: every table of a schema
/// or database, or the rows of an open cursor (as text without column origin).
const UNNAMED_READ_FUNCTIONS: &[&str] = &[
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
];

/// Classifies a message as PostgreSQL (with `standard_conforming_strings=on`) would parse it.
pub fn analyze(text: &str) -> SqlAnalysis {
    match statements(text) {
        Ok(statements) => SqlAnalysis::Parsed { statements },
        Err(message) => SqlAnalysis::Unparseable { message },
    }
}

fn statements(text: &str) -> Result<Vec<SqlStatement>, String> {
    let parsed = parse(text, 0)?;
    let mut out = Vec::with_capacity(parsed.len());
    for (statement, tree) in parsed {
        let mut walker = Walker::new(statement_text(text, &statement)?, 0);
        let name = tree_statement_name(&tree);
        walker.walk(&tree);
        walker.flow(&tree);
        if let Some(e) = walker.error {
            return Err(e);
        }
        if walker.ops.is_empty() {
            let kind = match name.as_str() {
                "SelectStmt" | "DeclareCursorStmt" | "ExplainStmt" | "PrepareStmt" | "ExecuteStmt" => Kind::Read,
                _ => Kind::Other,
            };
            walker.op(kind, None);
        }
        out.push(SqlStatement {
            statement: name,
            operations: walker.ops,
            functions: walker.functions,
            prepares: walker.prepares,
            executes: walker.executes,
            deallocates: walker.deallocates,
            targets: walker.targets,
            aliases: walker.aliases,
            uses: walker.uses,
            derived: walker.derived,
            parameters: walker.parameters,
            planned: walker.planned,
        });
    }
    Ok(out)
}

/// The column names each output column of a query refers to, in output order (the branches of a
/// UNION merged column by column), as masking reads a view's definition. `None` when `text` is
/// not a single query.
pub fn output_refs(text: &str) -> Option<Vec<Vec<String>>> {
    let parsed = parse(text, 0).ok()?;
    let [(_, tree)] = parsed.as_slice() else { return None };
    select_outputs(tree.pointer("/node/SelectStmt")?)
}

fn select_outputs(select: &Value) -> Option<Vec<Vec<String>>> {
    let targets = select.get("target_list").and_then(Value::as_array).filter(|t| !t.is_empty());
    let Some(targets) = targets else {
        // A set operation: each output column reads what either branch puts there.
        let mut left = select_outputs(select.get("larg")?)?;
        let right = select_outputs(select.get("rarg")?)?;
        if left.len() != right.len() {
            return None;
        }
        for (l, r) in left.iter_mut().zip(right) {
            l.extend(r.into_iter().filter(|name| !l.contains(name)).collect::<Vec<_>>());
        }
        return Some(left);
    };
    targets
        .iter()
        .map(|t| {
            let mut refs = Vec::new();
            column_refs(t.pointer("/node/ResTarget/val")?, &mut refs);
            Some(refs)
        })
        .collect()
}

/// Where one statement sits in the message (byte offsets, as PostgreSQL reports them).
struct Location {
    start: usize,
    len: usize,
}

/// Parses with libpg_query; each statement's location and its tree in serde form.
fn parse(text: &str, mode: i32) -> Result<Vec<(Location, Value)>, String> {
    let result = std::panic::catch_unwind(|| pg_query::parse(text, mode))
        .map_err(|_| "the parser failed on this statement".to_string())?;
    let result = result.map_err(|e| match e {
        pg_query::Error::Parse(message) => message,
        pg_query::Error::Conversion(_) => "the statement contains a NUL byte".into(),
        pg_query::Error::Decode(_) => "the statement is nested too deeply for sluice to classify".into(),
        other => other.to_string(),
    })?;
    let mut out = Vec::with_capacity(result.protobuf.stmts.len());
    for raw in &result.protobuf.stmts {
        let tree = serde_json::to_value(&raw.stmt).map_err(|e| format!("cannot read the parse tree: {e}"))?;
        let location = Location { start: raw.stmt_location.max(0) as usize, len: raw.stmt_len.max(0) as usize };
        out.push((location, tree));
    }
    Ok(out)
}

/// One statement's text; a body inside it is parsed again from exactly this text.
fn statement_text<'t>(text: &'t str, at: &Location) -> Result<&'t str, String> {
    let end = if at.len == 0 { text.len() } else { at.start.saturating_add(at.len) };
    text.get(at.start..end).ok_or_else(|| "the parser reported a statement outside the message".to_string())
}

/// `{"node": {"SelectStmt": {…}}}` → `SelectStmt`.
fn tree_statement_name(tree: &Value) -> String {
    tree.get("node")
        .and_then(Value::as_object)
        .and_then(|m| m.keys().next())
        .cloned()
        .unwrap_or_else(|| "EmptyStmt".into())
}

/// Walks one statement's tree, collecting what it does.
struct Walker<'t> {
    /// The statement's own text, for bodies that must be parsed again (DO, CREATE FUNCTION).
    text: &'t str,
    depth: usize,
    ops: Vec<Operation>,
    functions: Vec<ObjectName>,
    /// Where the walk is ("inside a WITH clause"), innermost last.
    contexts: Vec<String>,
    /// CTE names visible at this point of the walk.
    ctes: Vec<String>,
    /// How a relation met now is accessed.
    access: Kind,
    /// Inside a plain EXPLAIN: relations are planned, not touched.
    plan_only: bool,
    /// What the plain EXPLAIN plans (see `SqlStatement::planned`).
    planned: Vec<Operation>,
    prepares: Option<String>,
    executes: Option<String>,
    deallocates: Option<String>,
    targets: Vec<Target>,
    aliases: Vec<(String, ObjectName)>,
    uses: Vec<ColumnUse>,
    derived: Vec<Derived>,
    parameters: bool,
    error: Option<String>,
    /// Inside a function body or DO block: where, for the outputs met (see `Target::body`).
    body: Option<String>,
}

impl<'t> Walker<'t> {
    fn new(text: &'t str, depth: usize) -> Self {
        Walker {
            text,
            depth,
            ops: Vec::new(),
            functions: Vec::new(),
            contexts: Vec::new(),
            ctes: Vec::new(),
            access: Kind::Read,
            plan_only: false,
            planned: Vec::new(),
            prepares: None,
            executes: None,
            deallocates: None,
            targets: Vec::new(),
            aliases: Vec::new(),
            uses: Vec::new(),
            derived: Vec::new(),
            parameters: false,
            error: None,
            body: None,
        }
    }

    /// Adds where the values of this tree's column references go (see `flow`).
    fn flow(&mut self, tree: &Value) {
        let mut flow = Flow::new(self.body.clone());
        flow.statement(tree);
        self.uses.extend(flow.uses);
        self.derived.extend(flow.derived);
    }

    fn fail(&mut self, message: String) {
        self.error.get_or_insert(message);
    }

    fn op(&mut self, kind: Kind, object: Option<ObjectName>) {
        self.op_with(kind, object, false);
    }

    fn op_with(&mut self, kind: Kind, object: Option<ObjectName>, no_where: bool) {
        let context = (!self.contexts.is_empty()).then(|| {
            let mut inner_first = self.contexts.clone();
            inner_first.reverse();
            inner_first.join(", ")
        });
        let mut op = Operation { kind, object, context, no_where };
        if self.plan_only && kind.is_data_or_ddl() {
            if kind != Kind::Read && !self.planned.contains(&op) {
                self.planned.push(op.clone());
            }
            op.kind = Kind::Read;
        }
        if !self.ops.contains(&op) {
            self.ops.push(op);
        }
    }

    fn walk(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                if map.contains_key("relname") && map.contains_key("relpersistence") {
                    self.range_var(map);
                    return;
                }
                for (key, child) in map {
                    if key.starts_with(|c: char| c.is_ascii_uppercase()) {
                        self.node(key, child);
                    } else {
                        self.walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.walk(item)),
            _ => {}
        }
    }

    fn node(&mut self, name: &str, body: &Value) {
        let Some(map) = body.as_object() else { return };
        match name {
            "SelectStmt" => self.select(map),
            "InsertStmt" => self.modify(map, Kind::Insert),
            "UpdateStmt" => self.modify(map, Kind::Update),
            "DeleteStmt" => self.modify(map, Kind::Delete),
            "MergeStmt" => self.modify(map, Kind::Merge),
            "CopyStmt" => self.copy(map),
            "ExplainStmt" => self.explain(map),
            "PrepareStmt" => {
                let name = str_field(map, "name").to_string();
                self.within(format!("inside PREPARE {name}"), |w| w.walk_field(map, "query"));
                self.prepares = Some(name);
            }
            "ExecuteStmt" => {
                self.executes = Some(str_field(map, "name").to_string());
                self.walk_field(map, "params");
            }
            "DeallocateStmt" => {
                self.op(Kind::Session, None);
                let all = map.get("isall").and_then(Value::as_bool).unwrap_or(false);
                self.deallocates = Some(if all { String::new() } else { str_field(map, "name").to_string() });
            }
            "DiscardStmt" => {
                self.op(Kind::Session, None);
                if int_field(map, "target") == DiscardMode::DiscardAll as i64 {
                    self.deallocates = Some(String::new());
                }
            }
            "ClosePortalStmt" => self.op(Kind::Session, None),
            "FetchStmt" | "VariableShowStmt" => self.op(Kind::Read, None),
            "VariableSetStmt" => self.set(map),
            "TransactionStmt" => {
                self.op(Kind::Transaction, None);
                self.read_write_options(map);
            }
            "ConstraintsSetStmt" => self.op(Kind::Transaction, None),
            "CallStmt" => {
                let call = map.get("funccall").and_then(Value::as_object);
                let name = call.and_then(|c| qualified_name(c.get("funcname")));
                self.op(Kind::Call, name);
                if let Some(call) = call {
                    self.walk_field(call, "args");
                }
            }
            "DoStmt" => self.do_block(map),
            "CreateFunctionStmt" => self.create_function(map),
            "ListenStmt" | "UnlistenStmt" => self.op(Kind::Listen, None),
            "NotifyStmt" => self.op(Kind::Notify, None),
            "LoadStmt" | "AlterSystemStmt" => self.op(Kind::Admin, None),
            "TruncateStmt" => self.accessing(Kind::Truncate, body),
            "LockStmt" => self.accessing(Kind::Lock, body),
            "VacuumStmt" | "ClusterStmt" | "ReindexStmt" | "CheckPointStmt" | "RefreshMatViewStmt" => {
                self.accessing(Kind::Maintenance, body)
            }
            "GrantStmt" | "GrantRoleStmt" | "AlterDefaultPrivilegesStmt" => self.accessing(Kind::Grant, body),
            "DropStmt" => self.drop(map),
            "FuncCall" => self.func_call(map),
            "ParamRef" => self.parameters = true,
            "ResTarget" => {
                self.target(map);
                self.walk(body);
            }
            statement if statement.ends_with("Stmt") => {
                let kind = ddl_kind(statement);
                self.accessing(kind, body);
            }
            _ => self.walk(body),
        }
    }

    /// Walks `body` with relations accessed as `kind`; the statement counts as one such operation
    /// even when it names no relation.
    fn accessing(&mut self, kind: Kind, body: &Value) {
        let before = self.ops.len();
        let saved = std::mem::replace(&mut self.access, kind);
        self.walk(body);
        self.access = saved;
        if !self.ops[before..].iter().any(|o| o.kind == kind) {
            self.op(kind, None);
        }
    }

    fn within(&mut self, context: String, f: impl FnOnce(&mut Self)) {
        self.contexts.push(context);
        f(self);
        self.contexts.pop();
    }

    /// Walks what runs later, inside a function body or DO block (`where_` names it).
    fn in_body(&mut self, where_: String, f: impl FnOnce(&mut Self)) {
        let outer = self.body.replace(where_);
        f(self);
        self.body = outer;
    }

    fn walk_field(&mut self, map: &Map<String, Value>, field: &str) {
        if let Some(v) = map.get(field) {
            self.walk(v);
        }
    }

    fn walk_except(&mut self, map: &Map<String, Value>, skip: &[&str]) {
        for (key, child) in map {
            if !skip.contains(&key.as_str()) {
                if key.starts_with(|c: char| c.is_ascii_uppercase()) {
                    self.node(key, child);
                } else {
                    self.walk(child);
                }
            }
        }
    }

    /// Notes an output column for masking lineage.
    fn target(&mut self, map: &Map<String, Value>) {
        let Some(val) = map.get("val") else { return };
        let bare = val.pointer("/node/ColumnRef").is_some();
        let mut refs = Vec::new();
        column_refs(val, &mut refs);
        let alias = Some(str_field(map, "name")).filter(|n| !n.is_empty()).map(str::to_string);
        let target = Target { refs, bare, alias, body: self.body.clone() };
        if !self.targets.contains(&target) {
            self.targets.push(target);
        }
    }

    fn range_var(&mut self, map: &Map<String, Value>) {
        let name = relation_name(map);
        if let Some(alias) = map.get("alias").and_then(|a| a.get("aliasname")).and_then(Value::as_str) {
            self.aliases.push((alias.to_string(), name.clone()));
        }
        if name.schema.is_none() && self.ctes.contains(&name.name) {
            return;
        }
        self.op(self.access, Some(name));
    }

    /// Registers a WITH clause's names as its queries are walked. Returns the scope mark to
    /// restore when the statement ends.
    fn with_clause(&mut self, map: &Map<String, Value>) -> usize {
        let mark = self.ctes.len();
        let Some(with) = map.get("with_clause").and_then(Value::as_object) else {
            return mark;
        };
        let recursive = with.get("recursive").and_then(Value::as_bool).unwrap_or(false);
        let ctes: Vec<&Map<String, Value>> = with
            .get("ctes")
            .and_then(Value::as_array)
            .map(|items| {
                items.iter().filter_map(|c| c.pointer("/node/CommonTableExpr").and_then(Value::as_object)).collect()
            })
            .unwrap_or_default();
        if recursive {
            self.ctes.extend(ctes.iter().map(|c| str_field(c, "ctename").to_string()));
        }
        for cte in ctes {
            self.within("inside a WITH clause".into(), |w| w.walk_field(cte, "ctequery"));
            if !recursive {
                self.ctes.push(str_field(cte, "ctename").to_string());
            }
        }
        mark
    }

    fn select(&mut self, map: &Map<String, Value>) {
        let mark = self.with_clause(map);
        let saved = self.access;
        let locking = map.get("locking_clause").and_then(Value::as_array).is_some_and(|l| !l.is_empty());
        self.access = if locking { Kind::Lock } else { Kind::Read };
        if let Some(into) = map.get("into_clause").and_then(Value::as_object)
            && let Some(rel) = into.get("rel").and_then(Value::as_object)
        {
            self.within("as SELECT … INTO".into(), |w| w.op(Kind::Create, Some(relation_name(rel))));
        }
        for arm in ["larg", "rarg"] {
            if let Some(arm) = map.get(arm).and_then(Value::as_object) {
                self.select(arm);
            }
        }
        self.walk_except(map, &["with_clause", "into_clause", "larg", "rarg"]);
        self.access = saved;
        self.ctes.truncate(mark);
    }

    /// INSERT, UPDATE, DELETE, MERGE: the target is modified; everything else in it is read.
    fn modify(&mut self, map: &Map<String, Value>, kind: Kind) {
        let mark = self.with_clause(map);
        if let Some(target) = map.get("relation").and_then(Value::as_object) {
            let no_where =
                matches!(kind, Kind::Update | Kind::Delete) && map.get("where_clause").is_none_or(Value::is_null);
            self.op_with(kind, Some(relation_name(target)), no_where);
            let upsert = map
                .get("on_conflict_clause")
                .and_then(Value::as_object)
                .is_some_and(|c| int_field(c, "action") == OnConflictAction::OnconflictUpdate as i64);
            if upsert {
                self.within("as INSERT … ON CONFLICT DO UPDATE".into(), |w| {
                    w.op(Kind::Update, Some(relation_name(target)))
                });
            }
            // A MERGE is also each operation its WHEN clauses perform on the target, so that a
            // rule on `delete` or `update` covers `MERGE … WHEN MATCHED THEN DELETE`.
            let actions =
                map.get("merge_when_clauses").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for action in actions.iter().filter_map(|a| a.pointer("/node/MergeWhenClause").and_then(Value::as_object)) {
                let performs = match int_field(action, "command_type") {
                    c if c == CmdType::CmdUpdate as i64 => Kind::Update,
                    c if c == CmdType::CmdDelete as i64 => Kind::Delete,
                    c if c == CmdType::CmdInsert as i64 => Kind::Insert,
                    c if c == CmdType::CmdNothing as i64 => continue,
                    // An action this code does not know: fail closed.
                    _ => {
                        self.fail("a MERGE action sluice cannot classify".into());
                        continue;
                    }
                };
                self.within("as an action of MERGE".into(), |w| w.op(performs, Some(relation_name(target))));
            }
        }
        let saved = std::mem::replace(&mut self.access, Kind::Read);
        self.walk_except(map, &["with_clause", "relation"]);
        self.access = saved;
        self.ctes.truncate(mark);
    }

    fn copy(&mut self, map: &Map<String, Value>) {
        let from = map.get("is_from").and_then(Value::as_bool).unwrap_or(false);
        let kind = if from { Kind::CopyFrom } else { Kind::CopyTo };
        match map.get("relation").and_then(Value::as_object) {
            Some(rel) => self.op(kind, Some(relation_name(rel))),
            None => self.op(kind, None),
        }
        let file = str_field(map, "filename");
        if map.get("is_program").and_then(Value::as_bool).unwrap_or(false) {
            self.op(Kind::CopyProgram, Some(ObjectName::bare(file)));
        } else if !file.is_empty() {
            self.op(Kind::CopyFile, Some(ObjectName::bare(file)));
        }
        let saved = std::mem::replace(&mut self.access, Kind::Read);
        self.walk_except(map, &["relation"]);
        self.access = saved;
    }

    /// EXPLAIN ANALYZE runs its statement; a plain EXPLAIN only plans it (functions the planner
    /// may fold are still counted).
    fn explain(&mut self, map: &Map<String, Value>) {
        let analyze = map.get("options").and_then(Value::as_array).is_some_and(|options| {
            options
                .iter()
                .filter_map(|o| o.pointer("/node/DefElem"))
                .any(|d| d.get("defname").and_then(Value::as_str) == Some("analyze") && !is_false(d.get("arg")))
        });
        if analyze {
            self.within("inside EXPLAIN ANALYZE".into(), |w| w.walk_field(map, "query"));
        } else {
            let saved = std::mem::replace(&mut self.plan_only, true);
            self.within("inside EXPLAIN".into(), |w| w.walk_field(map, "query"));
            self.plan_only = saved;
        }
    }

    fn set(&mut self, map: &Map<String, Value>) {
        let kind = int_field(map, "kind");
        let name = str_field(map, "name").to_ascii_lowercase();
        if kind == VariableSetKind::VarResetAll as i64 {
            self.op(Kind::Set, Some(ObjectName::bare("all")));
        } else if kind == VariableSetKind::VarSetMulti as i64 {
            // SET TRANSACTION / SESSION CHARACTERISTICS: the options are what changes.
            self.op(Kind::Set, Some(ObjectName::bare(name)));
            self.read_write_options(map);
        } else if matches!(name.as_str(), "role" | "session_authorization") && back_to_own_user(map, kind) {
            // `RESET ROLE`, `SET ROLE NONE`, `SET SESSION AUTHORIZATION DEFAULT`: back to the user
            // the session was opened as, which is where it starts.
            self.within("back to the connection's own user".into(), |w| w.op(Kind::Set, None));
        } else if let Some(role) = assumed_role(map, &name, kind) {
            self.op(Kind::AssumeRole, Some(ObjectName::bare(role)));
        } else if name == "client_encoding" && sets_utf8(map) {
            // What sluice pins already: no change (libraries send it by default).
            self.within("to UTF8, which it already is".into(), |w| w.op(Kind::Set, None));
        } else {
            self.op(Kind::Set, Some(ObjectName::bare(name)));
        }
    }

    /// `READ WRITE` in BEGIN / SET TRANSACTION turns off a read-only session's protection.
    fn read_write_options(&mut self, map: &Map<String, Value>) {
        let items = map.get("options").or_else(|| map.get("args")).and_then(Value::as_array);
        for def in items.into_iter().flatten().filter_map(|o| o.pointer("/node/DefElem")) {
            if def.get("defname").and_then(Value::as_str) == Some("transaction_read_only") && is_false(def.get("arg")) {
                self.within("as READ WRITE".into(), |w| {
                    w.op(Kind::Set, Some(ObjectName::bare("transaction_read_only")))
                });
            }
        }
    }

    fn drop(&mut self, map: &Map<String, Value>) {
        let removes_relations = [ObjectType::ObjectTable, ObjectType::ObjectView, ObjectType::ObjectMatview]
            .iter()
            .any(|t| int_field(map, "remove_type") == *t as i64);
        let objects = map.get("objects").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let before = self.ops.len();
        for object in objects {
            let name = match object.get("node").and_then(Value::as_object).and_then(|o| o.iter().next()) {
                Some((tag, body)) if tag == "List" => qualified_name(body.get("items")),
                Some((tag, body)) if tag == "ObjectWithArgs" => qualified_name(body.get("objname")),
                Some((tag, body)) if tag == "String" => body.get("sval").and_then(Value::as_str).map(ObjectName::bare),
                _ => None,
            };
            if name.is_some() || removes_relations {
                self.op(Kind::Drop, name);
            }
        }
        if self.ops.len() == before {
            self.op(Kind::Drop, None);
        }
    }

    fn func_call(&mut self, map: &Map<String, Value>) {
        if let Some(name) = qualified_name(map.get("funcname")) {
            if name.name == "set_config" {
                // set_config(name, value, is_local): the first argument names the setting.
                let setting = map
                    .get("args")
                    .and_then(Value::as_array)
                    .and_then(|args| args.first())
                    .and_then(|a| a.pointer("/node/AConst/val/Sval/sval"))
                    .and_then(Value::as_str)
                    .map_or_else(|| "(computed)".to_string(), str::to_ascii_lowercase);
                self.within("through set_config()".into(), |w| w.op(Kind::Set, Some(ObjectName::bare(setting))));
            }
            self.reading_function(&name.name, map);
            if !self.functions.contains(&name) {
                self.functions.push(name);
            }
        }
        self.walk_except(map, &["funcname"]);
    }

    /// Functions that run a SQL string or read a relation they are given by name (see
    /// `SQL_STRING_FUNCTIONS`, `TABLE_BY_NAME_FUNCTIONS`, `UNNAMED_READ_FUNCTIONS`).
    fn reading_function(&mut self, function: &str, map: &Map<String, Value>) {
        let args = map.get("args").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let literal =
            |at: usize| args.get(at).and_then(|a| a.pointer("/node/AConst/val/Sval/sval")).and_then(Value::as_str);
        let dynamic = |w: &mut Self, what: &str| {
            let context = format!("through {function}(), which {what}");
            w.within(context, |w| w.op(Kind::DynamicSql, None));
        };
        let runs_sql =
            SQL_STRING_FUNCTIONS.iter().find(|(f, _, forms)| *f == function && (*forms == 0 || *forms == args.len()));
        if let Some(&(_, at, _)) = runs_sql {
            match literal(at) {
                Some(query) => {
                    let context = format!("inside the query string of {function}()");
                    self.in_body(context.clone(), |w| w.within(context.clone(), |w| w.nested_sql(query, 0, &context)));
                }
                None => dynamic(self, "runs SQL built at run time"),
            }
        } else if TABLE_BY_NAME_FUNCTIONS.contains(&function) {
            match literal(0).and_then(relation_from_text) {
                Some(relation) => {
                    let context = format!("through {function}()");
                    let qualifier = Some(relation.name.clone());
                    self.within(context.clone(), |w| w.op(Kind::Read, Some(relation)));
                    let place = Place::Computed(format!("as a whole table read {context}"));
                    self.uses.push(ColumnUse { name: "*".into(), qualifier, place, alias: None, body: None });
                }
                None => dynamic(self, "reads a table named at run time"),
            }
        } else if UNNAMED_READ_FUNCTIONS.contains(&function) {
            dynamic(self, "reads tables or a cursor sluice cannot name before it runs");
        } else if RAW_PAGE_FUNCTIONS.contains(&function) {
            dynamic(self, "reads a relation's raw pages, past every rule on its table");
        }
    }

    fn do_block(&mut self, map: &Map<String, Value>) {
        self.op(Kind::Do, None);
        let language = def_elem_str(map.get("args"), "language").unwrap_or("plpgsql").to_ascii_lowercase();
        if language != "plpgsql" {
            let context = format!("in a DO block in language {language}, which sluice cannot read");
            self.within(context, |w| w.op(Kind::DynamicSql, None));
            return;
        }
        self.in_body("inside a DO block".into(), |w| w.plpgsql("inside a DO block".into()));
    }

    fn create_function(&mut self, map: &Map<String, Value>) {
        let name = qualified_name(map.get("funcname"));
        let shown = name.as_ref().map_or_else(|| "?".to_string(), ToString::to_string);
        self.op(Kind::Create, name);
        let context = format!("inside the body of function {shown}");
        self.in_body(context.clone(), |w| w.function_body(map, &shown, context));
    }

    fn function_body(&mut self, map: &Map<String, Value>, shown: &str, context: String) {
        let language = def_elem_str(map.get("options"), "language").unwrap_or("sql").to_ascii_lowercase();
        if let Some(body) = map.get("sql_body").filter(|b| !b.is_null()) {
            self.within(context, |w| w.walk(body));
            return;
        }
        match language.as_str() {
            "plpgsql" => self.plpgsql(context),
            "sql" => {
                let bodies = def_elem(map.get("options"), "as")
                    .and_then(|a| a.pointer("/node/List/items"))
                    .and_then(Value::as_array)
                    .map(|items| {
                        items.iter().filter_map(|i| i.pointer("/node/String/sval")?.as_str()).collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                for body in bodies {
                    self.nested_sql(body, 0, &context);
                }
            }
            other => {
                let context = format!("in the body of function {shown}, in language {other}, which sluice cannot read");
                self.within(context, |w| w.op(Kind::DynamicSql, None));
            }
        }
    }

    /// A body sluice's parser rejects: the server may still accept it (its checks need the
    /// catalog, as `%TYPE` does, or its grammar differs), so what it runs is unknown, as for a
    /// body in C. The server's own error, if it has one, reaches the client when the statement runs.
    fn unreadable_body(&mut self, context: &str, message: &str) {
        self.within(format!("{context}, which sluice cannot read ({message})"), |w| w.op(Kind::DynamicSql, None));
    }

    /// Parses this statement's PL/pgSQL and classifies every SQL statement and expression in it.
    fn plpgsql(&mut self, context: String) {
        let text = self.text;
        let parsed = std::panic::catch_unwind(|| pg_query::parse_plpgsql(text))
            .map_err(|_| "the PL/pgSQL parser failed on this body".to_string())
            .and_then(|r| {
                r.map_err(|e| match e {
                    pg_query::Error::Parse(m) => m,
                    other => other.to_string(),
                })
            });
        match parsed {
            Ok(tree) => self.within(context, |w| w.walk_plpgsql(&tree)),
            Err(message) => self.unreadable_body(&context, &message),
        }
    }

    fn walk_plpgsql(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    match key.as_str() {
                        "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => {
                            self.within("as EXECUTE of a string built at run time".into(), |w| {
                                w.op(Kind::DynamicSql, None)
                            });
                            self.walk_plpgsql(child);
                        }
                        "dynquery" if !child.is_null() => {
                            self.within("as a query string opened at run time".into(), |w| {
                                w.op(Kind::DynamicSql, None)
                            });
                            self.walk_plpgsql(child);
                        }
                        "PLpgSQL_expr" => {
                            let query = child.get("query").and_then(Value::as_str).unwrap_or_default();
                            let mode = child.get("parseMode").and_then(Value::as_i64).unwrap_or(0);
                            self.nested_sql(query, mode as i32, "in PL/pgSQL");
                        }
                        _ => self.walk_plpgsql(child),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.walk_plpgsql(item)),
            _ => {}
        }
    }

    /// Classifies SQL found inside a body and adds what it does to this statement.
    fn nested_sql(&mut self, query: &str, mode: i32, context: &str) {
        if self.depth >= MAX_BODY_DEPTH {
            self.fail("bodies are nested too deeply for sluice to classify".into());
            return;
        }
        match parse(query, mode) {
            Err(message) => self.unreadable_body(context, &message),
            Ok(statements) => {
                for (at, tree) in statements {
                    let Ok(inner_text) = statement_text(query, &at) else {
                        self.fail(format!("{context}: the parser reported a statement outside the body"));
                        return;
                    };
                    let mut inner = Walker::new(inner_text, self.depth + 1);
                    inner.contexts = self.contexts.clone();
                    inner.plan_only = self.plan_only;
                    inner.body = self.body.clone();
                    inner.walk(&tree);
                    inner.flow(&tree);
                    if let Some(e) = inner.error {
                        self.fail(e);
                    }
                    for op in inner.ops {
                        if !self.ops.contains(&op) {
                            self.ops.push(op);
                        }
                    }
                    for op in inner.planned {
                        if !self.planned.contains(&op) {
                            self.planned.push(op);
                        }
                    }
                    for f in inner.functions {
                        if !self.functions.contains(&f) {
                            self.functions.push(f);
                        }
                    }
                    for t in inner.targets {
                        if !self.targets.contains(&t) {
                            self.targets.push(t);
                        }
                    }
                    self.aliases.extend(inner.aliases);
                    self.uses.extend(inner.uses);
                    self.derived.extend(inner.derived);
                }
            }
        }
    }
}

/// Statement types not handled one by one, by what their name says they do.
/// The last part of every column reference in an expression, subqueries included (`*` for stars).
fn column_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(fields) = map.get("ColumnRef").and_then(|c| c.get("fields")).and_then(Value::as_array) {
                let last = fields.last().map(|f| match f.pointer("/node/String/sval").and_then(Value::as_str) {
                    Some(name) => name.to_string(),
                    None => "*".to_string(),
                });
                if let Some(last) = last.filter(|l| !out.contains(l)) {
                    out.push(last);
                }
                return;
            }
            map.values().for_each(|v| column_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| column_refs(v, out)),
        _ => {}
    }
}

/// A relation named in a string, as a `regclass` input reads it (`public.t`, `"Odd Name"`); `None`
/// when it is not a plain one- or two-part name.
fn relation_from_text(text: &str) -> Option<ObjectName> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    loop {
        let (part, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let mut name = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') if quoted[i + 1..].starts_with('"') => {
                        name.push('"');
                        chars.next();
                    }
                    (i, '"') => break i + 1,
                    (_, c) => name.push(c),
                }
            };
            (name, &quoted[end..])
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            let word = &rest[..end];
            if word.is_empty() || !word.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                return None;
            }
            (word.to_lowercase(), &rest[end..])
        };
        parts.push(part);
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None if after.is_empty() => break,
            None => return None,
        }
    }
    match parts.as_slice() {
        [name] => Some(ObjectName::bare(name)),
        [schema, name] => Some(ObjectName { schema: Some(schema.clone()), name: name.clone() }),
        _ => None,
    }
}

fn ddl_kind(statement: &str) -> Kind {
    const CREATE: &[&str] =
        &["Create", "Define", "ViewStmt", "IndexStmt", "CompositeTypeStmt", "RuleStmt", "ImportForeignSchemaStmt"];
    const ALTER: &[&str] = &["Alter", "Rename", "Comment", "SecLabel", "ReassignOwned"];
    if CREATE.iter().any(|p| statement.starts_with(p)) {
        Kind::Create
    } else if ALTER.iter().any(|p| statement.starts_with(p)) {
        Kind::Alter
    } else if statement.starts_with("Drop") {
        Kind::Drop
    } else {
        Kind::Other
    }
}

fn relation_name(map: &Map<String, Value>) -> ObjectName {
    let schema = str_field(map, "schemaname");
    ObjectName { schema: (!schema.is_empty()).then(|| schema.to_string()), name: str_field(map, "relname").to_string() }
}

/// A name given as a list of String nodes (`["public", "orders"]`).
pub(crate) fn qualified_name(list: Option<&Value>) -> Option<ObjectName> {
    let parts: Vec<&str> = list?
        .as_array()?
        .iter()
        .filter_map(|p| p.pointer("/node/String/sval").or_else(|| p.pointer("/String/sval")))
        .filter_map(Value::as_str)
        .collect();
    let (name, qualifiers) = parts.split_last()?;
    Some(ObjectName { schema: qualifiers.last().map(|s| s.to_string()), name: name.to_string() })
}

fn str_field<'v>(map: &'v Map<String, Value>, field: &str) -> &'v str {
    map.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn int_field(map: &Map<String, Value>, field: &str) -> i64 {
    map.get(field).and_then(Value::as_i64).unwrap_or_default()
}

fn def_elem<'v>(list: Option<&'v Value>, name: &str) -> Option<&'v Value> {
    list?
        .as_array()?
        .iter()
        .filter_map(|o| o.pointer("/node/DefElem"))
        .find(|d| d.get("defname").and_then(Value::as_str) == Some(name))?
        .get("arg")
}

fn def_elem_str<'v>(list: Option<&'v Value>, name: &str) -> Option<&'v str> {
    def_elem(list, name)?.pointer("/node/String/sval")?.as_str()
}

/// Whether a SET of `role` or `session_authorization` returns to the session's own user.
fn back_to_own_user(map: &Map<String, Value>, kind: i64) -> bool {
    if kind == VariableSetKind::VarReset as i64 || kind == VariableSetKind::VarSetDefault as i64 {
        return true;
    }
    let args = map.get("args").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let none = args.first().and_then(|a| a.pointer("/node/AConst/val/Sval/sval")).and_then(Value::as_str);
    kind == VariableSetKind::VarSetValue as i64
        && str_field(map, "name").eq_ignore_ascii_case("role")
        && args.len() == 1
        && none.is_some_and(|v| v.eq_ignore_ascii_case("none"))
}

/// The role a `SET [LOCAL] ROLE name` or `SET SESSION AUTHORIZATION name` switches to (a name or
/// a string; the parser has already folded an unquoted name to lower case).
fn assumed_role(map: &Map<String, Value>, name: &str, kind: i64) -> Option<String> {
    if !matches!(name, "role" | "session_authorization") || kind != VariableSetKind::VarSetValue as i64 {
        return None;
    }
    let args = map.get("args").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let [only] = args else { return None };
    only.pointer("/node/AConst/val/Sval/sval").and_then(Value::as_str).map(str::to_string)
}

/// Whether a SET's value is UTF8 under one of the names PostgreSQL accepts for it.
fn sets_utf8(map: &Map<String, Value>) -> bool {
    let args = map.get("args").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let [only] = args else { return false };
    only.pointer("/node/AConst/val/Sval/sval").and_then(Value::as_str).is_some_and(|v| {
        let v: String = v.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        v == "utf8" || v == "unicode"
    })
}

/// Whether an option's argument explicitly says no (`false`, `off`, `READ WRITE`'s 0). A missing
/// argument means yes; a number other than the keyword's 0 also counts as yes, which keeps the
/// result independent of literal values.
fn is_false(arg: Option<&Value>) -> bool {
    let Some(node) = arg.and_then(|a| a.get("node")) else {
        return false;
    };
    if let Some(s) = node.pointer("/String/sval").and_then(Value::as_str) {
        return matches!(s.to_ascii_lowercase().as_str(), "false" | "off" | "no");
    }
    if let Some(b) = node.pointer("/Boolean/boolval").and_then(Value::as_bool) {
        return !b;
    }
    node.pointer("/AConst/val/Ival").is_some_and(|i| i.get("ival").and_then(Value::as_i64).unwrap_or(0) == 0)
        || node
            .pointer("/AConst/val/Boolval")
            .is_some_and(|b| !b.get("boolval").and_then(Value::as_bool).unwrap_or(false))
}
