//! Names of tables and columns by OID, as masking rules need them: a RowDescription identifies a
//! column only by its table's OID and column number; and the views and functions a masked column
//! reaches (see `sluice_mask::CatalogRules`). Looked up on the upstream server through a short
//! side connection with the session's own credential, cached per upstream database.

use crate::upstream::{self, PgEndpoint, UpstreamError};
use parking_lot::Mutex;
use sluice_mask::{CatalogRules, Function, Masking, SessionMasking, View};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a table's names are trusted before they are looked up again (a renamed column).
pub const FRESH_FOR: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// A view or materialized view.
    pub view: bool,
    columns: HashMap<i16, String>,
}

impl Table {
    pub fn column(&self, number: i16) -> Option<&str> {
        self.columns.get(&number).map(String::as_str)
    }
}

type Cached = HashMap<u32, (Instant, Arc<Table>)>;

/// Columns as `(schema, relation, column)`, and when they were read.
type ColumnsRead = (Instant, Arc<Vec<[String; 3]>>);

#[derive(Default)]
pub struct Catalog {
    databases: Mutex<HashMap<String, Cached>>,
    /// Per database: what the column rules reach through its views and functions.
    reached: Mutex<HashMap<String, Reached>>,
    /// Per database: its functions by volatility, and when they were read.
    functions: Mutex<HashMap<String, (Instant, Arc<Functions>)>>,
    /// Per database and column-name patterns: the columns whose names match, as
    /// `(schema, relation, column)`, and when they were read.
    candidates: Mutex<HashMap<(String, Vec<String>), ColumnsRead>>,
}

/// How long the columns a column rule may cover are trusted: briefly, since a decision that lets
/// dynamic SQL through rests on there being none.
pub const CANDIDATES_FRESH_FOR: Duration = Duration::from_secs(1);

/// A function as a fast-path call needs it: its name, how many arguments it takes, the OID of the
/// type it returns.
#[derive(Debug)]
pub struct FunctionByOid {
    pub schema: String,
    pub name: String,
    pub args: usize,
    pub returns: u32,
}

/// The functions of one database, for read-only sessions: which user-defined ones PostgreSQL marks
/// VOLATILE (they may have effects beyond reading; `pg_catalog`'s are sluice-core's list).
#[derive(Debug, Default)]
pub struct Functions {
    /// Every function name there is, to tell one made since.
    names: std::collections::HashSet<String>,
    /// `(schema, name)` of every volatile function outside the system schemas.
    volatile: Vec<(String, String)>,
}

impl Functions {
    pub fn knows(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Whether a call may reach a volatile user-defined function (an unqualified name: one of any
    /// schema, since the search path decides).
    pub fn volatile(&self, schema: Option<&str>, name: &str) -> bool {
        self.volatile.iter().any(|(s, n)| n == name && schema.is_none_or(|schema| schema == s))
    }
}

/// Every function's name, schema, and whether it is a volatile one outside the system schemas.
const FUNCTIONS_SQL: &str = "\
    SELECT p.proname::text, n.nspname::text, \
           (p.provolatile = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema'))::text \
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";

/// When read, for which masking configuration (its address), what it gave.
type Reached = (Instant, usize, Arc<CatalogRules>);

/// Every view and materialized view outside the system schemas: one row per view (`v`), per
/// column (`c`) and per relation its definition reads (`r`); and every function or procedure in
/// SQL or PL/pgSQL (`f`), with its definition; and the name of every function there is (`n`).
/// Told apart by the first value.
const OBJECTS_SQL: &str = "\
    SELECT 'v', v.oid::text, n.nspname::text, v.relname::text, pg_catalog.pg_get_viewdef(v.oid) \
      FROM pg_catalog.pg_class v JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace \
     WHERE v.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
    UNION ALL \
    SELECT 'c', v.oid::text, a.attnum::text, a.attname::text, NULL \
      FROM pg_catalog.pg_class v JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace \
      JOIN pg_catalog.pg_attribute a ON a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped \
     WHERE v.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
    UNION ALL \
    SELECT DISTINCT 'r', v.oid::text, tn.nspname::text, t.relname::text, NULL \
      FROM pg_catalog.pg_class v JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace \
      JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid \
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
           AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
      JOIN pg_catalog.pg_class t ON t.oid = d.refobjid AND t.oid <> v.oid \
      JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
     WHERE v.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
    UNION ALL \
    SELECT 'f', p.oid::text, n.nspname::text, p.proname::text, pg_catalog.pg_get_functiondef(p.oid) \
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
      JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE p.prokind IN ('f', 'p') AND l.lanname IN ('sql', 'plpgsql') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
    UNION ALL \
    SELECT DISTINCT 'n', '', '', p.proname::text, NULL FROM pg_catalog.pg_proc p";

impl Catalog {
    /// What the column rules of `masking` reach through the database's views and functions (see
    /// `Masking::catalog_rules`), and when that was read; read again when the last reading is
    /// older than `fresh_for`.
    pub async fn reached(
        &self,
        endpoint: &PgEndpoint,
        masking: &Masking,
        timeout: Duration,
        fresh_for: Duration,
    ) -> Result<(Instant, Arc<CatalogRules>), UpstreamError> {
        let key = database_key(endpoint);
        let config = masking as *const Masking as usize;
        {
            let cached = self.reached.lock();
            if let Some((at, _, rules)) = cached.get(&key).filter(|(at, c, _)| *c == config && at.elapsed() < fresh_for)
            {
                return Ok((*at, Arc::clone(rules)));
            }
        }
        let rows = query_retrying(endpoint, OBJECTS_SQL, timeout).await?;
        let (views, functions, names) = objects_from_rows(rows);
        let rules = Arc::new(masking.catalog_rules(&views, functions, names));
        let now = Instant::now();
        let mut cached = self.reached.lock();
        cached.insert(key, (now, config, Arc::clone(&rules)));
        Ok((now, rules))
    }

    /// The database's functions by volatility, read again when older than `fresh_for`.
    pub async fn functions(
        &self,
        endpoint: &PgEndpoint,
        timeout: Duration,
        fresh_for: Duration,
    ) -> Result<Arc<Functions>, UpstreamError> {
        let key = database_key(endpoint);
        {
            let cached = self.functions.lock();
            if let Some((_, functions)) = cached.get(&key).filter(|(at, _)| at.elapsed() < fresh_for) {
                return Ok(Arc::clone(functions));
            }
        }
        let rows = query_retrying(endpoint, FUNCTIONS_SQL, timeout).await?;
        let mut functions = Functions::default();
        for row in rows {
            let Ok([Some(name), Some(schema), Some(volatile)]) = <[Option<String>; 3]>::try_from(row) else { continue };
            if volatile == "true" {
                functions.volatile.push((schema, name.clone()));
            }
            functions.names.insert(name);
        }
        let functions = Arc::new(functions);
        self.functions.lock().insert(key, (Instant::now(), Arc::clone(&functions)));
        Ok(functions)
    }

    /// Whether this database has a column (of a table, view or foreign table) that a column rule
    /// of `masking` covers.
    pub async fn has_masked_columns(
        &self,
        endpoint: &PgEndpoint,
        masking: &SessionMasking,
        timeout: Duration,
    ) -> Result<bool, UpstreamError> {
        let likes = masking.column_name_likes();
        let key = (database_key(endpoint), likes);
        let cached = {
            let cache = self.candidates.lock();
            cache.get(&key).filter(|(at, _)| at.elapsed() < CANDIDATES_FRESH_FOR).map(|(_, c)| Arc::clone(c))
        };
        let candidates = match cached {
            Some(candidates) => candidates,
            None => {
                let quoted: Vec<String> = key.1.iter().map(|l| format!("'{}'", l.replace('\'', "''"))).collect();
                let sql = format!(
                    "SELECT n.nspname, c.relname, a.attname FROM pg_catalog.pg_attribute a \
                     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                       AND a.attname::text LIKE ANY (ARRAY[{}]::text[])",
                    quoted.join(", ")
                );
                let rows = query_retrying(endpoint, &sql, timeout).await?;
                let found: Vec<[String; 3]> = rows
                    .into_iter()
                    .filter_map(|row| match <[Option<String>; 3]>::try_from(row) {
                        Ok([Some(schema), Some(relation), Some(column)]) => Some([schema, relation, column]),
                        _ => None,
                    })
                    .collect();
                let found = Arc::new(found);
                self.candidates.lock().insert(key, (Instant::now(), Arc::clone(&found)));
                found
            }
        };
        Ok(candidates.iter().any(|[schema, relation, column]| masking.column(schema, relation, column).is_some()))
    }

    /// The function with `oid` (a fast-path call names its function so), or `None` when the
    /// server has none.
    pub async fn function_by_oid(
        &self,
        endpoint: &PgEndpoint,
        oid: u32,
        timeout: Duration,
    ) -> Result<Option<FunctionByOid>, UpstreamError> {
        let sql = format!(
            "SELECT n.nspname, p.proname, p.pronargs, p.prorettype FROM pg_catalog.pg_proc p \
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = {oid}"
        );
        let rows = upstream::query_once(endpoint, &sql, timeout).await?;
        Ok(rows.into_iter().next().and_then(|row| match <[Option<String>; 4]>::try_from(row) {
            Ok([Some(schema), Some(name), Some(args), Some(returns)]) => {
                Some(FunctionByOid { schema, name, args: args.parse().ok()?, returns: returns.parse().ok()? })
            }
            _ => None,
        }))
    }

    /// The tables among `oids`; those the server does not know (a dropped table) are absent.
    pub async fn tables(
        &self,
        endpoint: &PgEndpoint,
        oids: &[u32],
        timeout: Duration,
    ) -> Result<HashMap<u32, Arc<Table>>, UpstreamError> {
        let key = database_key(endpoint);
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let databases = self.databases.lock();
            let cached = databases.get(&key);
            for &oid in oids {
                match cached.and_then(|c| c.get(&oid)).filter(|(at, _)| at.elapsed() < FRESH_FOR) {
                    Some((_, table)) => {
                        found.insert(oid, Arc::clone(table));
                    }
                    None if !missing.contains(&oid) => missing.push(oid),
                    None => {}
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let list: Vec<String> = missing.iter().map(u32::to_string).collect();
        let sql = format!(
            "SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname, c.relkind IN ('v', 'm') \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
             WHERE c.oid IN ({}) AND a.attnum > 0 AND NOT a.attisdropped",
            list.join(",")
        );
        let rows = upstream::query_once(endpoint, &sql, timeout).await?;
        let mut fetched: HashMap<u32, Table> = HashMap::new();
        for row in rows {
            let [Some(oid), Some(schema), Some(name), Some(number), Some(column), Some(view)] =
                <[Option<String>; 6]>::try_from(row)
                    .map_err(|_| UpstreamError::Protocol("catalog query returned an unexpected row".into()))?
            else {
                continue;
            };
            let (Ok(oid), Ok(number)) = (oid.parse::<u32>(), number.parse::<i16>()) else { continue };
            fetched
                .entry(oid)
                .or_insert_with(|| Table { schema, name, view: view == "t", columns: HashMap::new() })
                .columns
                .insert(number, column);
        }
        let now = Instant::now();
        let mut databases = self.databases.lock();
        let cached = databases.entry(key).or_default();
        for (oid, table) in fetched {
            let table = Arc::new(table);
            cached.insert(oid, (now, Arc::clone(&table)));
            found.insert(oid, table);
        }
        Ok(found)
    }
}

/// `upstream::query_once`, run again (up to three times in all) when DDL of another session made
/// the catalog change under it: a relation dropped between the query's snapshot and the
/// server's reading of its definition ("could not open relation with OID …", "cache lookup
/// failed …").
async fn query_retrying(
    endpoint: &PgEndpoint,
    sql: &str,
    timeout: Duration,
) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
    let mut attempt = 1;
    loop {
        match upstream::query_once(endpoint, sql, timeout).await {
            Err(UpstreamError::Refused(e))
                if attempt < 3
                    && (e.message.starts_with("could not open relation with OID")
                        || e.message.starts_with("cache lookup failed")) =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Which upstream database a cached reading is of.
fn database_key(endpoint: &PgEndpoint) -> String {
    format!("{}:{}/{}", endpoint.host, endpoint.port, endpoint.database)
}

/// The views and functions in the rows of `OBJECTS_SQL`, their definitions classified.
fn objects_from_rows(rows: Vec<Vec<Option<String>>>) -> (Vec<View>, Vec<Function>, Vec<String>) {
    let mut views: HashMap<String, View> = HashMap::new();
    let mut functions = Vec::new();
    let mut names = Vec::new();
    let mut columns: Vec<(String, i16, String)> = Vec::new();
    let mut reads: Vec<(String, String, String)> = Vec::new();
    for row in rows {
        let Ok([Some(kind), Some(oid), Some(a), Some(b), definition]) = <[Option<String>; 5]>::try_from(row) else {
            continue;
        };
        match kind.as_str() {
            "v" => {
                let definition = definition.unwrap_or_default();
                let view = View {
                    schema: a,
                    name: b,
                    columns: Vec::new(),
                    reads: Vec::new(),
                    outputs: sluice_sql::output_refs(&definition),
                    definition: sluice_sql::analyze(&definition),
                };
                views.insert(oid, view);
            }
            "c" => columns.push((oid, a.parse().unwrap_or(i16::MAX), b)),
            "f" => functions.push(Function {
                schema: a,
                name: b,
                definition: sluice_sql::analyze(definition.as_deref().unwrap_or_default()),
            }),
            "n" => names.push(b),
            _ => reads.push((oid, a, b)),
        }
    }
    columns.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    for (oid, _, name) in columns {
        if let Some(view) = views.get_mut(&oid) {
            view.columns.push(name);
        }
    }
    for (oid, schema, name) in reads {
        if let Some(view) = views.get_mut(&oid) {
            view.reads.push((schema, name));
        }
    }
    (views.into_values().collect(), functions, names)
}
