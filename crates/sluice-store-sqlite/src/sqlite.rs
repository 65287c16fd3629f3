//! The embedded SQLite store (WAL mode; one writer, many readers, including the CLI while the
//! gateway runs), through rusqlite: a small pool of connections for the store traits and the
//! command line's queries, and the audit writer's own connection (`EventWriter`).

use crate::events::EventWriter;
use crate::schema::MIGRATIONS;
use async_trait::async_trait;
use deadpool_sqlite::{Config, Hook, HookError, Pool, PoolConfig, Runtime};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde::Serialize;
use sluice_core::{AuditRecord, Principal};
use sluice_store::{CredentialVault, StoreError, StoreResult, TokenRow, TokenStore};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Connections in the pool: token lookups at session start, reviews, and the CLI's listings.
/// SQLite serialises writers anyway; a few readers are plenty.
const POOL_SIZE: usize = 4;

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: Pool,
    path: Arc<Path>,
    /// The newest sequence number this process appended to the audit log (see `EventWriter`).
    appended: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub protocol: String,
    pub identity: String,
    pub credential_id: String,
    pub connection: String,
    pub client_addr: String,
    pub client_tls: bool,
    pub application_name: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub statements: i64,
}

/// Which recorded sessions to list.
#[derive(Clone, Debug)]
pub struct SessionFilter {
    /// Started at or after this time (µs since the epoch).
    pub since_us: Option<i64>,
    /// Started strictly after this time: what `--follow` has not shown yet.
    pub after_us: Option<i64>,
    pub identity: Option<String>,
    pub connection: Option<String>,
    /// Only sessions with at least one statement decided so (`allow`, `review`, `deny`).
    pub verdict: Option<String>,
    pub limit: i64,
}

impl SessionFilter {
    pub fn latest(limit: i64) -> SessionFilter {
        SessionFilter { since_us: None, after_us: None, identity: None, connection: None, verdict: None, limit }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StatementRow {
    pub seq: i64,
    pub path: String,
    pub text: String,
    pub started_at: i64,
    pub duration_us: i64,
    pub rows: i64,
    pub tag: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub refused_by: Option<String>,
    pub decision: Option<String>,
    pub rule: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuthRow {
    pub at: i64,
    pub protocol: String,
    pub client_addr: String,
    pub user: String,
    pub connection: String,
    pub outcome: String,
    pub credential_id: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdminRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: Option<String>,
}

/// A driver error as the store traits report it.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Settings every connection of the store uses (WAL itself is kept in the file).
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "normal")?;
    // Statement journals (every insert of a batch, since foreign keys may abort it) and sorts
    // stay in memory: on disk they cost the recorder a page write per recorded action.
    conn.pragma_update(None, "temp_store", "memory")?;
    conn.pragma_update(None, "foreign_keys", true)
}

/// How many statements session `s` recorded, counted in the tables under the `statements` view
/// (through the view, SQLite would read every recorded action for each session).
const STATEMENT_COUNT: &str = "((SELECT COUNT(*) FROM audit_log a WHERE a.session_id = s.id AND a.kind = 'action') \
     + (SELECT COUNT(*) FROM statements_before_chain b WHERE b.session_id = s.id))";

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            sluice_store::private::ensure_dir(dir)?;
        }
        sluice_store::private::ensure_file(path)?;
        let mut config = Config::new(path);
        config.pool = Some(PoolConfig::new(POOL_SIZE));
        let pool = config
            .builder(Runtime::Tokio1)
            .map_err(unavailable)?
            .post_create(Hook::sync_fn(|conn, _| {
                let conn = conn.lock().map_err(|_| HookError::message("a store connection was poisoned"))?;
                configure(&conn).map_err(HookError::Backend)
            }))
            .build()
            .map_err(unavailable)?;
        let store = SqliteStore { pool, path: Arc::from(path), appended: Arc::new(tokio::sync::watch::Sender::new(0)) };
        store.run(migrate).await?;
        Ok(store)
    }

    /// Runs `work` on one of the pool's connections, on a blocking thread.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.pool.get().await.map_err(unavailable)?;
        conn.interact(work).await.map_err(unavailable)?.map_err(unavailable)
    }

    /// Sessions a previous run left open (it was killed before recording their end): their ids
    /// and who they were of, for the records that end them.
    pub async fn orphaned_sessions(&self) -> StoreResult<Vec<(String, Arc<Principal>)>> {
        self.run(|c| {
            c.prepare("SELECT id, identity, credential_id FROM sessions WHERE ended_at IS NULL ORDER BY started_at")?
                .query_map([], |r| Ok((r.get(0)?, Principal::new(r.get::<_, String>(1)?, Some(r.get(2)?)))))?
                .collect()
        })
        .await
    }

    /// Writes `records` now, in one transaction, chained like the recorder's.
    pub async fn record_all(&self, records: Vec<AuditRecord>) -> StoreResult<()> {
        let mut writer = self.event_writer()?;
        tokio::task::spawn_blocking(move || writer.write(&records)).await.map_err(unavailable)?
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection of its own for writing audit events (see `EventWriter`).
    pub fn event_writer(&self) -> StoreResult<EventWriter> {
        EventWriter::open(&self.path, Arc::clone(&self.appended))
    }

    /// Changes when this process appends to the audit log (see `AuditExportStore::appended`).
    pub fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Recorded sessions that match `filter`, newest first.
    pub async fn sessions(&self, filter: &SessionFilter) -> StoreResult<Vec<SessionRow>> {
        let mut sql = format!("SELECT s.*, {STATEMENT_COUNT} AS statement_count FROM sessions s WHERE 1 = 1");
        let mut values: Vec<Value> = Vec::new();
        let mut and = |clause: &str, value: Value| {
            sql.push_str(clause);
            values.push(value);
        };
        if let Some(since) = filter.since_us {
            and(" AND s.started_at >= ?", since.into());
        }
        if let Some(after) = filter.after_us {
            and(" AND s.started_at > ?", after.into());
        }
        if let Some(identity) = &filter.identity {
            and(" AND s.identity = ?", identity.clone().into());
        }
        if let Some(connection) = &filter.connection {
            and(" AND s.connection = ?", connection.clone().into());
        }
        if let Some(verdict) = &filter.verdict {
            // From the tables under the `statements` view: through the view, SQLite would read
            // every recorded action for each session.
            and(
                " AND ? IN (SELECT json_extract(a.record, '$.event.verdict') FROM audit_log a \
                 WHERE a.session_id = s.id AND a.kind = 'action' \
                 UNION ALL SELECT b.decision FROM statements_before_chain b WHERE b.session_id = s.id)",
                verdict.clone().into(),
            );
        }
        and(" ORDER BY s.started_at DESC LIMIT ?", filter.limit.into());
        self.run(move |c| c.prepare(&sql)?.query_map(params_from_iter(values), session_row)?.collect()).await
    }

    pub async fn session(&self, id: &str) -> StoreResult<Option<(SessionRow, Vec<StatementRow>)>> {
        let id = id.to_string();
        self.run(move |c| {
            let session = c
                .query_row(
                    &format!("SELECT s.*, {STATEMENT_COUNT} AS statement_count FROM sessions s WHERE s.id = ?1"),
                    [&id],
                    session_row,
                )
                .optional()?;
            let Some(session) = session else { return Ok(None) };
            let statements = c
                .prepare("SELECT * FROM statements WHERE session_id = ?1 ORDER BY seq")?
                .query_map([&id], |r| {
                    Ok(StatementRow {
                        seq: r.get("seq")?,
                        path: r.get("path")?,
                        text: r.get("text")?,
                        started_at: r.get("started_at")?,
                        duration_us: r.get("duration_us")?,
                        rows: r.get("rows")?,
                        tag: r.get("tag")?,
                        error_code: r.get("error_code")?,
                        error_message: r.get("error_message")?,
                        refused_by: r.get("refused_by")?,
                        decision: r.get("decision")?,
                        rule: r.get("rule")?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some((session, statements)))
        })
        .await
    }

    /// Recent authentication attempts, newest first.
    pub async fn auth_events(&self, limit: i64) -> StoreResult<Vec<AuthRow>> {
        self.run(move |c| {
            c.prepare("SELECT * FROM auth_events ORDER BY id DESC LIMIT ?1")?
                .query_map([limit], |r| {
                    Ok(AuthRow {
                        at: r.get("at")?,
                        protocol: r.get("protocol")?,
                        client_addr: r.get("client_addr")?,
                        user: r.get("user")?,
                        connection: r.get("connection")?,
                        outcome: r.get("outcome")?,
                        credential_id: r.get("credential_id")?,
                    })
                })?
                .collect()
        })
        .await
    }

    /// Writes one audit record at once (for the command line, which runs no recorder).
    pub async fn record(&self, record: AuditRecord) -> StoreResult<()> {
        self.record_all(vec![record]).await
    }

    /// Recent administrative events, newest first.
    pub async fn admin_events(&self, limit: i64) -> StoreResult<Vec<AdminRow>> {
        self.run(move |c| {
            c.prepare("SELECT * FROM admin_events ORDER BY id DESC LIMIT ?1")?
                .query_map([limit], |r| {
                    Ok(AdminRow {
                        at: r.get("at")?,
                        actor: r.get("actor")?,
                        action: r.get("action")?,
                        subject: r.get("subject")?,
                        detail: r.get("detail")?,
                    })
                })?
                .collect()
        })
        .await
    }

    pub async fn close(&self) {
        self.pool.close();
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "wal")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    let groups_json: String = r.get("groups_json")?;
    Ok(TokenRow {
        id: r.get("id")?,
        identity: r.get("identity")?,
        groups: serde_json::from_str(&groups_json).unwrap_or_default(),
        digest: r.get("digest")?,
        description: r.get("description")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        revoked_at: r.get("revoked_at")?,
        last_used_at: r.get("last_used_at")?,
    })
}

fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get("id")?,
        protocol: r.get("protocol")?,
        identity: r.get("identity")?,
        credential_id: r.get("credential_id")?,
        connection: r.get("connection")?,
        client_addr: r.get("client_addr")?,
        client_tls: r.get("client_tls")?,
        application_name: r.get("application_name")?,
        started_at: r.get("started_at")?,
        ended_at: r.get("ended_at")?,
        end_reason: r.get("end_reason")?,
        statements: r.get("statement_count")?,
    })
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn insert_token(&self, token: &TokenRow) -> StoreResult<()> {
        let token = token.clone();
        let groups = serde_json::to_string(&token.groups).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.run(move |c| {
            c.execute(
                "INSERT INTO tokens (id, identity, groups_json, digest, description, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    token.id,
                    token.identity,
                    groups,
                    token.digest,
                    token.description,
                    token.created_at,
                    token.expires_at
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn token(&self, id: &str) -> StoreResult<Option<TokenRow>> {
        let id = id.to_string();
        self.run(move |c| c.query_row("SELECT * FROM tokens WHERE id = ?1", [id], token_row).optional()).await
    }

    async fn tokens(&self) -> StoreResult<Vec<TokenRow>> {
        self.run(|c| c.prepare("SELECT * FROM tokens ORDER BY created_at")?.query_map([], token_row)?.collect()).await
    }

    async fn revoke_token(&self, id: &str, at_us: i64) -> StoreResult<bool> {
        let id = id.to_string();
        let changed = self
            .run(move |c| {
                c.execute("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?1) WHERE id = ?2", params![at_us, id])
            })
            .await?;
        Ok(changed > 0)
    }

    async fn touch_token(&self, id: &str, at_us: i64) -> StoreResult<()> {
        let id = id.to_string();
        self.run(move |c| c.execute("UPDATE tokens SET last_used_at = ?1 WHERE id = ?2", params![at_us, id]).map(drop))
            .await
    }

    async fn unusable_tokens(&self, now_us: i64) -> StoreResult<Vec<String>> {
        self.run(move |c| {
            c.prepare(
                "SELECT id FROM tokens WHERE revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= ?1)",
            )?
            .query_map([now_us], |r| r.get(0))?
            .collect()
        })
        .await
    }
}

#[async_trait]
impl CredentialVault for SqliteStore {
    async fn put_credential(&self, target: &str, nonce: &[u8], sealed: &[u8], at_us: i64) -> StoreResult<()> {
        let (target, nonce, sealed) = (target.to_string(), nonce.to_vec(), sealed.to_vec());
        self.run(move |c| {
            c.execute(
                "INSERT INTO credentials (connection, nonce, sealed, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(connection) DO UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed, \
                 updated_at = excluded.updated_at",
                params![target, nonce, sealed, at_us],
            )
            .map(drop)
        })
        .await
    }

    async fn credential(&self, target: &str) -> StoreResult<Option<(Vec<u8>, Vec<u8>)>> {
        let target = target.to_string();
        self.run(move |c| {
            c.query_row("SELECT nonce, sealed FROM credentials WHERE connection = ?1", [target], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .await
    }

    async fn delete_credential(&self, target: &str) -> StoreResult<bool> {
        let target = target.to_string();
        let deleted = self.run(move |c| c.execute("DELETE FROM credentials WHERE connection = ?1", [target])).await?;
        Ok(deleted > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::{ActionDetail, ActionRecord, AdminAction, AuditEvent, AuthOutcome, Principal, Protocol};

    async fn temp_store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(sluice_core::ids::new_id("sluice-store-test-"));
        let store = SqliteStore::open(&dir.join("s.db")).await.unwrap();
        (store, dir)
    }

    fn at(at_us: i64, who: &str, credential: Option<&str>, session: Option<&str>, event: AuditEvent) -> AuditRecord {
        let principal = Principal::new(who, credential.map(str::to_string));
        AuditRecord { at_us, principal, session: session.map(Arc::from), event }
    }

    fn statement(seq: u64, text: String, tag: Option<&str>, rule: Option<&str>) -> AuditEvent {
        AuditEvent::Action(ActionRecord {
            seq,
            text: text.into(),
            duration_us: 10,
            verdict: "allow",
            rule: rule.map(Arc::from),
            detail: ActionDetail::Sql {
                path: "simple",
                rows: seq,
                tag: tag.map(Arc::from),
                error_code: None,
                error_message: None,
                result: None,
            },
        })
    }

    fn started(target: &str) -> AuditEvent {
        AuditEvent::SessionStarted {
            protocol: Protocol::Postgres,
            target: target.into(),
            client_addr: "127.0.0.1:2".into(),
            client_tls: true,
            client_program: Some("psql".into()),
        }
    }

    #[tokio::test]
    async fn records_sessions_statements_auth_and_admin_events() {
        let (store, dir) = temp_store().await;
        let events = vec![
            at(
                1,
                "mallory",
                None,
                None,
                AuditEvent::Authentication {
                    protocol: Protocol::Postgres,
                    client_addr: "127.0.0.1:1".into(),
                    target: "shop".into(),
                    outcome: AuthOutcome::UnknownToken,
                },
            ),
            at(2, "agent", Some("t1"), Some("s1"), started("shop")),
            at(3, "agent", Some("t1"), Some("s1"), statement(1, "select 1".into(), Some("SELECT 1"), Some("default"))),
            at(4, "agent", Some("t1"), Some("s1"), AuditEvent::SessionEnded { reason: "client terminated".into() }),
        ];
        store.event_writer().unwrap().write(&events).unwrap();
        let admin = AuditEvent::Admin { action: AdminAction::TokenMinted, subject: "t2".into(), detail: None };
        store.record(at(5, "cli:ops", None, None, admin)).await.unwrap();
        let sessions = store.sessions(&SessionFilter::latest(10)).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!((sessions[0].identity.as_str(), sessions[0].credential_id.as_str()), ("agent", "t1"));
        assert_eq!(sessions[0].application_name.as_deref(), Some("psql"));
        assert_eq!(sessions[0].statements, 1);
        assert_eq!(sessions[0].end_reason.as_deref(), Some("client terminated"));
        let (_, statements) = store.session("s1").await.unwrap().unwrap();
        assert_eq!(statements[0].text, "select 1");
        assert_eq!((statements[0].rows, statements[0].started_at), (1, 3));
        assert_eq!(statements[0].decision.as_deref(), Some("allow"));
        assert_eq!(statements[0].rule.as_deref(), Some("default"));
        let auth = store.auth_events(10).await.unwrap();
        assert_eq!((auth[0].user.as_str(), auth[0].outcome.as_str()), ("mallory", "unknown_token"));
        let admin = store.admin_events(10).await.unwrap();
        assert_eq!((admin[0].actor.as_str(), admin[0].action.as_str()), ("cli:ops", "token-minted"));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn large_batches_of_statements_are_written_whole() {
        let (store, dir) = temp_store().await;
        let mut events = vec![at(0, "agent", Some("t"), Some("big"), started("shop"))];
        events.extend((1..=1234).map(|seq| {
            at(seq as i64, "agent", Some("t"), Some("big"), statement(seq, format!("select {seq}"), None, None))
        }));
        store.event_writer().unwrap().write(&events).unwrap();
        let (_, statements) = store.session("big").await.unwrap().unwrap();
        assert_eq!(statements.len(), 1234);
        assert_eq!(statements[1233].text, "select 1234");
        assert_eq!(statements[1233].rows, 1234);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn tokens_can_be_listed_and_revoked() {
        let (store, dir) = temp_store().await;
        let row = TokenRow {
            id: "abc".into(),
            identity: "agent".into(),
            groups: vec!["agents".into()],
            digest: String::new(),
            description: None,
            created_at: 1,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        store.insert_token(&TokenRow { digest: "d1".into(), ..row }).await.unwrap();
        assert_eq!(store.token("abc").await.unwrap().unwrap().digest, "d1");
        assert!(store.revoke_token("abc", 5).await.unwrap());
        assert!(!store.revoke_token("nope", 5).await.unwrap());
        assert_eq!(store.tokens().await.unwrap()[0].revoked_at, Some(5));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
