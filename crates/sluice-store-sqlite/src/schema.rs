//! The store's schema, applied in order and tracked with SQLite's `user_version`.

pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    identity      TEXT NOT NULL,
    groups_json   TEXT NOT NULL,
    digest        TEXT NOT NULL,
    description   TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    last_used_at  INTEGER
);
CREATE TABLE credentials (
    connection    TEXT PRIMARY KEY,
    nonce         BLOB NOT NULL,
    sealed        BLOB NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    protocol         TEXT NOT NULL,
    identity         TEXT NOT NULL,
    credential_id    TEXT NOT NULL,
    connection       TEXT NOT NULL,
    client_addr      TEXT NOT NULL,
    client_tls       INTEGER NOT NULL,
    application_name TEXT,
    started_at       INTEGER NOT NULL,
    ended_at         INTEGER,
    end_reason       TEXT
);
CREATE INDEX sessions_started ON sessions(started_at);
CREATE TABLE statements (
    session_id     TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    path           TEXT NOT NULL,
    text           TEXT NOT NULL,
    started_at     INTEGER NOT NULL,
    duration_us    INTEGER NOT NULL,
    rows           INTEGER NOT NULL,
    tag            TEXT,
    error_code     TEXT,
    error_message  TEXT,
    refused_by     TEXT,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE auth_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             INTEGER NOT NULL,
    protocol       TEXT NOT NULL,
    client_addr    TEXT NOT NULL,
    user           TEXT NOT NULL,
    connection     TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    credential_id  TEXT
);
"#,
    r#"
ALTER TABLE statements ADD COLUMN decision TEXT;
ALTER TABLE statements ADD COLUMN rule TEXT;
"#,
    r#"
CREATE TABLE reviews (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL,
    requester       TEXT NOT NULL,
    connection      TEXT NOT NULL,
    statement_hash  TEXT,
    created_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL DEFAULT 0,
    body            TEXT NOT NULL
);
CREATE INDEX reviews_match ON reviews(requester, connection, statement_hash, status);
CREATE INDEX reviews_status ON reviews(status, kind);
CREATE TABLE review_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    review_id  INTEGER NOT NULL REFERENCES reviews(id),
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    comment    TEXT
);
CREATE INDEX review_events_review ON review_events(review_id);
"#,
    r#"
CREATE TABLE admin_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    subject  TEXT NOT NULL,
    detail   TEXT
);
"#,
    r#"
CREATE TABLE audit_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
INSERT INTO audit_meta (key, value) VALUES ('instance', 'i_' || lower(hex(randomblob(8))));
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    session_id  TEXT,
    record      TEXT NOT NULL,
    hash        BLOB NOT NULL
);
CREATE INDEX audit_log_session ON audit_log(session_id) WHERE session_id IS NOT NULL;
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL,
    previous   INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    key_id     TEXT NOT NULL,
    signature  BLOB NOT NULL
);
"#,
    // Actions are read from the chained log: the table they were written to before it is kept
    // (renamed) for what it holds, and `statements` becomes a view over both.
    r#"
ALTER TABLE statements RENAME TO statements_before_chain;
CREATE VIEW statements AS
SELECT session_id,
       json_extract(record, '$.event.seq') AS seq,
       json_extract(record, '$.event.detail.path') AS path,
       json_extract(record, '$.event.text') AS text,
       at AS started_at,
       json_extract(record, '$.event.duration_us') AS duration_us,
       json_extract(record, '$.event.detail.rows') AS rows,
       json_extract(record, '$.event.detail.tag') AS tag,
       json_extract(record, '$.event.detail.error_code') AS error_code,
       json_extract(record, '$.event.detail.error_message') AS error_message,
       CASE WHEN json_extract(record, '$.event.verdict') <> 'allow' THEN json_extract(record, '$.event.rule') END
           AS refused_by,
       json_extract(record, '$.event.verdict') AS decision,
       json_extract(record, '$.event.rule') AS rule
  FROM audit_log
 WHERE kind = 'action'
UNION ALL
SELECT session_id, seq, path, text, started_at, duration_us, rows, tag, error_code, error_message, refused_by,
       decision, rule
  FROM statements_before_chain;
"#,
    r#"
CREATE TABLE audit_export_cursors (
    sink  TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL,
    at    INTEGER NOT NULL
);
"#,
    // A review's transitions by its approvers carry no session: `sessions replay` finds them by
    // the review's id among the log's (few) review records.
    r#"
CREATE INDEX audit_log_reviews ON audit_log(json_extract(record, '$.event.review_id')) WHERE kind = 'review';
"#,
    // Retention: each removal of the log's oldest records leaves a signed anchor where what
    // remains starts.
    r#"
CREATE TABLE audit_anchors (
    seq        INTEGER PRIMARY KEY,
    hash       BLOB NOT NULL,
    at         INTEGER NOT NULL,
    key_id     TEXT NOT NULL,
    signature  BLOB NOT NULL
);
"#,
    // HTTP exchanges are actions too: their protocol stands as the path, their status as the tag
    // (`HTTP 200`), the error sluice answered with as the message.
    r#"
DROP VIEW statements;
CREATE VIEW statements AS
SELECT session_id,
       json_extract(record, '$.event.seq') AS seq,
       COALESCE(json_extract(record, '$.event.detail.path'), json_extract(record, '$.event.detail.protocol')) AS path,
       json_extract(record, '$.event.text') AS text,
       at AS started_at,
       json_extract(record, '$.event.duration_us') AS duration_us,
       COALESCE(json_extract(record, '$.event.detail.rows'), 0) AS rows,
       COALESCE(json_extract(record, '$.event.detail.tag'),
                'HTTP ' || json_extract(record, '$.event.detail.status')) AS tag,
       json_extract(record, '$.event.detail.error_code') AS error_code,
       COALESCE(json_extract(record, '$.event.detail.error_message'),
                json_extract(record, '$.event.detail.error')) AS error_message,
       CASE WHEN json_extract(record, '$.event.verdict') <> 'allow' THEN json_extract(record, '$.event.rule') END
           AS refused_by,
       json_extract(record, '$.event.verdict') AS decision,
       json_extract(record, '$.event.rule') AS rule
  FROM audit_log
 WHERE kind = 'action'
UNION ALL
SELECT session_id, seq, path, text, started_at, duration_us, rows, tag, error_code, error_message, refused_by,
       decision, rule
  FROM statements_before_chain;
"#,
];
