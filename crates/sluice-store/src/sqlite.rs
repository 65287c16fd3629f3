//! The embedded SQLite store (WAL mode; one writer, many readers, including the CLI while the
//! gateway runs).

use crate::StoreError;
use crate::events::EventWriter;
use crate::schema::MIGRATIONS;
use serde::Serialize;
use sluice_core::{AdminRecord, AuthOutcome, Identity, token};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: SqlitePool,
    path: Arc<Path>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TokenRow {
    pub id: String,
    pub identity: String,
    pub groups: Vec<String>,
    #[serde(skip)]
    pub digest: String,
    pub description: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
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

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            crate::private::ensure_dir(dir)?;
        }
        crate::private::ensure_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        let store = Store { pool, path: Arc::from(path) };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let version: i64 = sqlx::query("PRAGMA user_version").fetch_one(&mut *conn).await?.try_get(0)?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::raw_sql(*migration).execute(&mut *tx).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {}", index + 1)))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    pub async fn insert_token(&self, token: &TokenRow, digest: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tokens (id, identity, groups_json, digest, description, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.identity)
        .bind(serde_json::to_string(&token.groups).unwrap_or_else(|_| "[]".into()))
        .bind(digest)
        .bind(&token.description)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The ids of tokens that can no longer be used at `now`: revoked, or past their expiry.
    pub async fn unusable_tokens(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query_scalar(
            "SELECT id FROM tokens WHERE revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= ?)",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM tokens WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| token_row(&r)).transpose()
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY created_at").fetch_all(&self.pool).await?;
        rows.iter().map(token_row).collect()
    }

    /// Marks a token revoked; false when no such token exists.
    pub async fn revoke_token(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn touch_token(&self, id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE tokens SET last_used_at = ? WHERE id = ?").bind(at).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn put_credential(
        &self,
        connection: &str,
        nonce: &[u8],
        sealed: &[u8],
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO credentials (connection, nonce, sealed, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT(connection) DO UPDATE SET nonce = excluded.nonce, sealed = excluded.sealed, \
             updated_at = excluded.updated_at",
        )
        .bind(connection)
        .bind(nonce)
        .bind(sealed)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The sealed credential of a connection as (nonce, sealed bytes).
    pub async fn credential(&self, connection: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let row = sqlx::query("SELECT nonce, sealed FROM credentials WHERE connection = ?")
            .bind(connection)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("nonce")?, r.try_get("sealed")?)),
            None => None,
        })
    }

    pub async fn delete_credential(&self, connection: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM credentials WHERE connection = ?").bind(connection).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sessions a previous run left open (it was killed): closed now with that reason.
    pub async fn close_orphaned_sessions(&self, at: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE sessions SET ended_at = ?, end_reason = 'gateway stopped before the session ended' \
             WHERE ended_at IS NULL",
        )
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// A connection of its own for writing audit events (see `EventWriter`).
    pub fn event_writer(&self) -> Result<EventWriter, StoreError> {
        EventWriter::open(&self.path)
    }

    /// Recorded sessions that match `filter`, newest first.
    pub async fn sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRow>, StoreError> {
        let mut query = sqlx::QueryBuilder::new(
            "SELECT s.*, (SELECT COUNT(*) FROM statements t WHERE t.session_id = s.id) AS statement_count \
             FROM sessions s WHERE 1 = 1",
        );
        if let Some(since) = filter.since_us {
            query.push(" AND s.started_at >= ").push_bind(since);
        }
        if let Some(after) = filter.after_us {
            query.push(" AND s.started_at > ").push_bind(after);
        }
        if let Some(identity) = &filter.identity {
            query.push(" AND s.identity = ").push_bind(identity);
        }
        if let Some(connection) = &filter.connection {
            query.push(" AND s.connection = ").push_bind(connection);
        }
        if let Some(verdict) = &filter.verdict {
            query
                .push(" AND EXISTS (SELECT 1 FROM statements v WHERE v.session_id = s.id AND v.decision = ")
                .push_bind(verdict)
                .push(")");
        }
        query.push(" ORDER BY s.started_at DESC LIMIT ").push_bind(filter.limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(session_row).collect()
    }

    pub async fn session(&self, id: &str) -> Result<Option<(SessionRow, Vec<StatementRow>)>, StoreError> {
        let row = sqlx::query(
            "SELECT s.*, (SELECT COUNT(*) FROM statements t WHERE t.session_id = s.id) AS statement_count \
             FROM sessions s WHERE s.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let session = session_row(&row)?;
        let rows = sqlx::query("SELECT * FROM statements WHERE session_id = ? ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        let statements = rows
            .iter()
            .map(|r| {
                Ok(StatementRow {
                    seq: r.try_get("seq")?,
                    path: r.try_get("path")?,
                    text: r.try_get("text")?,
                    started_at: r.try_get("started_at")?,
                    duration_us: r.try_get("duration_us")?,
                    rows: r.try_get("rows")?,
                    tag: r.try_get("tag")?,
                    error_code: r.try_get("error_code")?,
                    error_message: r.try_get("error_message")?,
                    refused_by: r.try_get("refused_by")?,
                    decision: r.try_get("decision")?,
                    rule: r.try_get("rule")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some((session, statements)))
    }

    pub async fn auth_events(&self, limit: i64) -> Result<Vec<AuthRow>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM auth_events ORDER BY id DESC LIMIT ?").bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AuthRow {
                    at: r.try_get("at")?,
                    protocol: r.try_get("protocol")?,
                    client_addr: r.try_get("client_addr")?,
                    user: r.try_get("user")?,
                    connection: r.try_get("connection")?,
                    outcome: r.try_get("outcome")?,
                    credential_id: r.try_get("credential_id")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Records an administrative event at once (for the command line, which runs no recorder).
    pub async fn record_admin(&self, event: &AdminRecord) -> Result<(), StoreError> {
        sqlx::query(crate::events::INSERT_ADMIN)
            .bind(event.at_us)
            .bind(&event.actor)
            .bind(event.action.as_str())
            .bind(&event.subject)
            .bind(&event.detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Recent administrative events, newest first.
    pub async fn admin_events(&self, limit: i64) -> Result<Vec<AdminRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM admin_events ORDER BY id DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AdminRow {
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject: r.try_get("subject")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn token_row(r: &sqlx::sqlite::SqliteRow) -> Result<TokenRow, StoreError> {
    let groups_json: String = r.try_get("groups_json")?;
    Ok(TokenRow {
        id: r.try_get("id")?,
        identity: r.try_get("identity")?,
        groups: serde_json::from_str(&groups_json).unwrap_or_default(),
        digest: r.try_get("digest")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

fn session_row(r: &sqlx::sqlite::SqliteRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: r.try_get("id")?,
        protocol: r.try_get("protocol")?,
        identity: r.try_get("identity")?,
        credential_id: r.try_get("credential_id")?,
        connection: r.try_get("connection")?,
        client_addr: r.try_get("client_addr")?,
        client_tls: r.try_get("client_tls")?,
        application_name: r.try_get("application_name")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        end_reason: r.try_get("end_reason")?,
        statements: r.try_get("statement_count")?,
    })
}

impl Store {
    /// The identity a presented token proves, or why it proves none (with the token id when the
    /// token exists, for the audit trail).
    pub async fn identify(&self, presented: &str) -> Result<Identity, (AuthOutcome, Option<String>)> {
        let Some((id, secret)) = token::parse(presented) else {
            return Err((AuthOutcome::Malformed, None));
        };
        let row = match self.token(id).await {
            Ok(Some(row)) => row,
            Ok(None) => return Err((AuthOutcome::UnknownToken, None)),
            Err(e) => {
                tracing::error!(error = %e, "token lookup failed");
                return Err((AuthOutcome::StoreUnavailable, None));
            }
        };
        let known = Some(row.id.clone());
        if !token::verify(secret, &row.digest) {
            return Err((AuthOutcome::UnknownToken, known));
        }
        if row.revoked_at.is_some() {
            return Err((AuthOutcome::RevokedToken, known));
        }
        if row.expires_at.is_some_and(|at| at <= sluice_core::audit::now_us()) {
            return Err((AuthOutcome::ExpiredToken, known));
        }
        Ok(Identity { name: row.identity, groups: row.groups, credential_id: row.id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::{AuditEvent, AuthOutcome, Protocol, StatementRecord};

    async fn temp_store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(sluice_core::ids::new_id("sluice-store-test-"));
        let store = Store::open(&dir.join("s.db")).await.unwrap();
        (store, dir)
    }

    #[tokio::test]
    async fn records_sessions_statements_and_auth() {
        let (store, dir) = temp_store().await;
        let events = vec![
            AuditEvent::Auth {
                at_us: 1,
                protocol: Protocol::Postgres,
                client_addr: "127.0.0.1:1".into(),
                user: "mallory".into(),
                connection: "shop".into(),
                outcome: AuthOutcome::UnknownToken,
                credential_id: None,
            },
            AuditEvent::SessionStarted {
                session_id: "s1".into(),
                at_us: 2,
                protocol: Protocol::Postgres,
                identity: "agent".into(),
                credential_id: "t1".into(),
                connection: "shop".into(),
                client_addr: "127.0.0.1:2".into(),
                client_tls: true,
                application_name: Some("psql".into()),
            },
            AuditEvent::Statement(StatementRecord {
                session_id: "s1".into(),
                seq: 1,
                path: "simple",
                text: "select 1".into(),
                started_at_us: 3,
                duration_us: 10,
                rows: 1,
                tag: Some("SELECT 1".into()),
                error_code: None,
                error_message: None,
                decision: "allow",
                rule: Some("default".into()),
            }),
            AuditEvent::SessionEnded { session_id: "s1".into(), at_us: 4, reason: "client terminated".into() },
        ];
        store.event_writer().unwrap().write(&events).unwrap();
        let sessions = store.sessions(&SessionFilter::latest(10)).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].statements, 1);
        assert_eq!(sessions[0].end_reason.as_deref(), Some("client terminated"));
        let (_, statements) = store.session("s1").await.unwrap().unwrap();
        assert_eq!(statements[0].text, "select 1");
        assert_eq!(statements[0].rows, 1);
        assert_eq!(statements[0].decision.as_deref(), Some("allow"));
        assert_eq!(statements[0].rule.as_deref(), Some("default"));
        let auth = store.auth_events(10).await.unwrap();
        assert_eq!(auth[0].outcome, "unknown_token");
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn large_batches_of_statements_are_written_whole() {
        let (store, dir) = temp_store().await;
        let statement = |seq| {
            AuditEvent::Statement(StatementRecord {
                session_id: "big".into(),
                seq,
                path: "extended",
                text: format!("select {seq}").into(),
                started_at_us: seq as i64,
                duration_us: 1,
                rows: seq,
                tag: None,
                error_code: None,
                error_message: None,
                decision: "allow",
                rule: None,
            })
        };
        let mut events = vec![AuditEvent::SessionStarted {
            session_id: "big".into(),
            at_us: 0,
            protocol: Protocol::Postgres,
            identity: "agent".into(),
            credential_id: "t".into(),
            connection: "shop".into(),
            client_addr: "c".into(),
            client_tls: false,
            application_name: None,
        }];
        events.extend((1..=1234).map(statement));
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
        store.insert_token(&row, "d1").await.unwrap();
        assert_eq!(store.token("abc").await.unwrap().unwrap().digest, "d1");
        assert!(store.revoke_token("abc", 5).await.unwrap());
        assert!(!store.revoke_token("nope", 5).await.unwrap());
        assert_eq!(store.tokens().await.unwrap()[0].revoked_at, Some(5));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
