//! What a SQL message does, as a classifier found it: every operation on every object, every
//! function called, in every statement. Policy decides on this; a protocol adapter produces it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// What an operation does. Names are what operators write in rules (`kinds = ["delete"]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// SELECT, TABLE, VALUES, SHOW, FETCH, plain EXPLAIN.
    Read,
    /// Row locks: SELECT … FOR UPDATE/SHARE, LOCK TABLE.
    Lock,
    Insert,
    Update,
    Delete,
    Merge,
    Create,
    Alter,
    Drop,
    Truncate,
    /// GRANT, REVOKE, role membership, default privileges.
    Grant,
    /// COPY … TO STDOUT (or a query copied out).
    CopyTo,
    /// COPY … FROM STDIN.
    CopyFrom,
    /// COPY to or from a file on the database server.
    CopyFile,
    /// COPY … PROGRAM: a shell command on the database server.
    CopyProgram,
    /// SET / RESET of a run-time setting.
    Set,
    /// SET ROLE or SET SESSION AUTHORIZATION to another role (the object): only a rule naming this
    /// kind decides it, as for dynamic SQL.
    AssumeRole,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, PREPARE TRANSACTION…
    Transaction,
    /// CALL of a procedure.
    Call,
    /// A DO block (its statements are classified too).
    Do,
    /// VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, REFRESH MATERIALIZED VIEW.
    Maintenance,
    /// LISTEN, UNLISTEN.
    Listen,
    /// NOTIFY.
    Notify,
    /// Session housekeeping: DEALLOCATE, DISCARD, CLOSE.
    Session,
    /// Server administration: ALTER SYSTEM, LOAD.
    Admin,
    /// A call of a function with side effects (the built-in list plus the configured one).
    Function,
    /// SQL built at run time (PL/pgSQL EXECUTE, query_to_xml…) or a body in a language sluice cannot
    /// read: what runs cannot be known, so only a rule naming this kind can allow it.
    DynamicSql,
    /// A statement sluice classifies no further.
    Other,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Read,
        Kind::Lock,
        Kind::Insert,
        Kind::Update,
        Kind::Delete,
        Kind::Merge,
        Kind::Create,
        Kind::Alter,
        Kind::Drop,
        Kind::Truncate,
        Kind::Grant,
        Kind::CopyTo,
        Kind::CopyFrom,
        Kind::CopyFile,
        Kind::CopyProgram,
        Kind::Set,
        Kind::Transaction,
        Kind::Call,
        Kind::Do,
        Kind::Maintenance,
        Kind::Listen,
        Kind::Notify,
        Kind::Session,
        Kind::Admin,
        Kind::Function,
        Kind::DynamicSql,
        Kind::AssumeRole,
        Kind::Other,
    ];

    /// The name used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Lock => "lock",
            Kind::Insert => "insert",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Merge => "merge",
            Kind::Create => "create",
            Kind::Alter => "alter",
            Kind::Drop => "drop",
            Kind::Truncate => "truncate",
            Kind::Grant => "grant",
            Kind::CopyTo => "copy-to",
            Kind::CopyFrom => "copy-from",
            Kind::CopyFile => "copy-file",
            Kind::CopyProgram => "copy-program",
            Kind::Set => "set",
            Kind::Transaction => "transaction",
            Kind::Call => "call",
            Kind::Do => "do",
            Kind::Maintenance => "maintenance",
            Kind::Listen => "listen",
            Kind::Notify => "notify",
            Kind::Session => "session",
            Kind::Admin => "admin",
            Kind::Function => "function",
            Kind::DynamicSql => "dynamic-sql",
            Kind::AssumeRole => "assume-role",
            Kind::Other => "other",
        }
    }

    /// How the operation reads in a refusal's DETAIL ("DELETE on public.orders").
    fn verb(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Lock => "lock",
            Kind::Insert => "INSERT",
            Kind::Update => "UPDATE",
            Kind::Delete => "DELETE",
            Kind::Merge => "MERGE",
            Kind::Create => "CREATE",
            Kind::Alter => "ALTER",
            Kind::Drop => "DROP",
            Kind::Truncate => "TRUNCATE",
            Kind::Grant => "GRANT/REVOKE",
            Kind::CopyTo => "COPY TO",
            Kind::CopyFrom => "COPY FROM",
            Kind::CopyFile => "COPY with a server-side file",
            Kind::CopyProgram => "COPY … PROGRAM",
            Kind::Set => "SET",
            Kind::Transaction => "transaction control",
            Kind::Call => "CALL",
            Kind::Do => "DO block",
            Kind::Maintenance => "maintenance",
            Kind::Listen => "LISTEN",
            Kind::Notify => "NOTIFY",
            Kind::Session => "session command",
            Kind::Admin => "server administration",
            Kind::Function => "call of",
            Kind::DynamicSql => "dynamic SQL",
            Kind::AssumeRole => "switch to role",
            Kind::Other => "statement",
        }
    }

    /// Operations that act on rows or relations, which a plain EXPLAIN only plans.
    pub fn is_data_or_ddl(self) -> bool {
        !matches!(self, Kind::Function | Kind::DynamicSql | Kind::Set | Kind::AssumeRole)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A relation, function or setting as written in the statement (names already case-folded by the
/// parser). `schema` is `None` when the statement left the name unqualified.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ObjectName {
    pub schema: Option<String>,
    pub name: String,
}

impl ObjectName {
    pub fn bare(name: impl Into<String>) -> Self {
        ObjectName { schema: None, name: name.into() }
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One thing a statement does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Operation {
    pub kind: Kind,
    pub object: Option<ObjectName>,
    /// Where in the statement it was found ("inside a WITH clause"), `None` at the top level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// An UPDATE or DELETE without a WHERE clause.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_where: bool,
}

impl Operation {
    pub fn new(kind: Kind, object: Option<ObjectName>) -> Self {
        Operation { kind, object, context: None, no_where: false }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.object) {
            (Kind::Function, Some(o)) => write!(f, "call of {o}()")?,
            (Kind::Set, Some(o)) => write!(f, "change of setting {o}")?,
            (Kind::AssumeRole, Some(o)) => write!(f, "switch to role {o}")?,
            (kind, Some(o)) => write!(f, "{} on {o}", kind.verb())?,
            (kind, None) => f.write_str(kind.verb())?,
        }
        if self.no_where {
            f.write_str(" without a WHERE clause")?;
        }
        if let Some(context) = &self.context {
            write!(f, " {context}")?;
        }
        Ok(())
    }
}

/// One statement of a message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SqlStatement {
    /// The top-level statement type as PostgreSQL names it (`SelectStmt`, `DeleteStmt`…).
    pub statement: String,
    pub operations: Vec<Operation>,
    /// Every function called, with side effects or not (policy decides which matter).
    pub functions: Vec<ObjectName>,
    /// `PREPARE name AS …`: the name, so a later `EXECUTE name` can be decided on what it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepares: Option<String>,
    /// `EXECUTE name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executes: Option<String>,
    /// `DEALLOCATE name` (`Some("")` for DEALLOCATE ALL / DISCARD ALL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deallocates: Option<String>,
    /// Every output column (SELECT lists, RETURNING, UPDATE SET) at any depth, for masking lineage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    /// Relation aliases (`FROM customers c`): alias, relation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<(String, ObjectName)>,
    /// Every column reference (and star) at any depth, with what becomes of its value: what masking
    /// needs to prove that a masked value reaches the client only where the rule masks it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<ColumnUse>,
    /// Names given to what a subquery, CTE, function in FROM or join produces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub derived: Vec<Derived>,
    /// It takes bound parameters (`$1`): its text alone does not say what it will do.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub parameters: bool,
    /// What a plain EXPLAIN plans without running it (`operations` holds reads in their place):
    /// policy refuses the EXPLAIN of a statement it would refuse, so a plan never reads as "this
    /// would work".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<Operation>,
}

/// One output column as written: the column names its expression refers to (the last part of
/// each reference, `*` for a star) and whether it is nothing but one plain column reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    pub refs: Vec<String>,
    /// A plain reference (`ssn`, `c.ssn`, `c.*`): the server reports where it comes from.
    pub bare: bool,
    /// `AS name`, or the SET column of an UPDATE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Where it is written when that is inside a body run later (`inside the body of function f`,
    /// `inside a DO block`): what such an output becomes is out of sight of masking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// One column reference (`ssn`, `c.ssn`, `c.*`, `*`), or a column named by a join's USING.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ColumnUse {
    /// The last part of the reference (`*` for a star). A reference may also name a whole row
    /// (`c`, `row_to_json(c)`): the parser alone cannot tell which.
    pub name: String,
    /// The part before the last (`c` in `c.ssn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    pub place: Place,
    /// `AS name` of a plain output column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Inside a function body or DO block: where (see `Target::body`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// What becomes of a referenced column's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "place", content = "how")]
pub enum Place {
    /// A plain output column of a query (or RETURNING): the value leaves as it is, and the server
    /// reports the column it comes from.
    Output,
    /// An operand of a comparison (`=`, `<`, LIKE, IN, BETWEEN, IS NULL…) or a sort or grouping
    /// key: only a true/false or an order comes of it.
    Compared,
    /// Anything else: the value goes into an expression, a set operation, a VALUES list, a
    /// subquery's value… (the text says where), and what comes out has no column of origin.
    Computed(String),
    /// Merged by a join's USING or NATURAL into a column the server reports without origin.
    Merged,
}

/// A name given to what a subquery, CTE, function in FROM or join produces (`(…) s(x, y)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Derived {
    pub name: String,
    /// Its column alias list, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Every column, relation and alias name met inside it.
    pub sources: Vec<String>,
}

/// What a whole message (one simple Query, or the text of one Parse) does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum SqlAnalysis {
    Parsed {
        statements: Vec<SqlStatement>,
    },
    /// The parser rejected it (or a body inside it): refused, with the parser's words.
    Unparseable {
        message: String,
    },
}

impl SqlAnalysis {
    /// Whether any statement takes bound parameters (`$1`).
    pub fn takes_parameters(&self) -> bool {
        matches!(self, SqlAnalysis::Parsed { statements } if statements.iter().any(|s| s.parameters))
    }
}

/// A shared analysis, as the classifier's cache hands it out.
pub type SharedAnalysis = Arc<SqlAnalysis>;
