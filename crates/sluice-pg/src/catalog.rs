//! Names of tables and columns by OID, as masking rules need them: a RowDescription identifies a
//! column only by its table's OID and column number. Looked up on the upstream server through a
//! short side connection with the session's own credential, cached per upstream database.

use crate::upstream::{self, PgEndpoint, UpstreamError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a table's names are trusted before they are looked up again (a renamed column).
pub const FRESH_FOR: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Table {
    pub schema: String,
    pub name: String,
    columns: HashMap<i16, String>,
}

impl Table {
    pub fn column(&self, number: i16) -> Option<&str> {
        self.columns.get(&number).map(String::as_str)
    }
}

type Cached = HashMap<u32, (Instant, Arc<Table>)>;

#[derive(Default)]
pub struct Catalog {
    databases: Mutex<HashMap<String, Cached>>,
}

impl Catalog {
    /// The tables among `oids`; those the server does not know (a dropped table) are absent.
    pub async fn tables(
        &self,
        endpoint: &PgEndpoint,
        oids: &[u32],
        timeout: Duration,
    ) -> Result<HashMap<u32, Arc<Table>>, UpstreamError> {
        let key = format!("{}:{}/{}", endpoint.host, endpoint.port, endpoint.database);
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let databases = self.databases.lock().unwrap_or_else(|p| p.into_inner());
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
            "SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
             WHERE c.oid IN ({}) AND a.attnum > 0 AND NOT a.attisdropped",
            list.join(",")
        );
        let rows = upstream::query_once(endpoint, &sql, timeout).await?;
        let mut fetched: HashMap<u32, Table> = HashMap::new();
        for row in rows {
            let [Some(oid), Some(schema), Some(name), Some(number), Some(column)] = <[Option<String>; 5]>::try_from(row)
                .map_err(|_| UpstreamError::Protocol("catalog query returned an unexpected row".into()))?
            else {
                continue;
            };
            let (Ok(oid), Ok(number)) = (oid.parse::<u32>(), number.parse::<i16>()) else { continue };
            fetched
                .entry(oid)
                .or_insert_with(|| Table { schema, name, columns: HashMap::new() })
                .columns
                .insert(number, column);
        }
        let now = Instant::now();
        let mut databases = self.databases.lock().unwrap_or_else(|p| p.into_inner());
        let cached = databases.entry(key).or_default();
        for (oid, table) in fetched {
            let table = Arc::new(table);
            cached.insert(oid, (now, Arc::clone(&table)));
            found.insert(oid, table);
        }
        Ok(found)
    }
}
