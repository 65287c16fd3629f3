//! The hash-chained audit log in SQLite: every record appended to `audit_log` with its sequence
//! number, canonical bytes and chain hash, in its batch's transaction (actions are kept here only;
//! other kinds also go to a table of their own in the same transaction); signed checkpoints in
//! `audit_checkpoints`; and the reads `sluice audit verify` walks.

use crate::SqliteStore;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use sluice_audit::{Anchor, Chain, Checkpoint, CheckpointSigner, GENESIS, Hash, StoredRecord};
use sluice_core::AuditRecord;
use sluice_store::{AuditExportStore, StoreError, StoreResult};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bound values per appended record.
const COLUMNS: usize = 6;

/// Records per multi-row INSERT. Only these sizes are used: each is a distinct SQL text the
/// connection prepares once and keeps, and a multi-row INSERT's program costs less per row than a
/// one-row INSERT run once per row. At most 32 rows, so that SQLite's copies of the bound texts fit
/// in the connection's lookaside slots (`.cargo/config.toml`).
pub(crate) const INSERT_SIZES: [usize; 4] = [32, 8, 2, 1];

/// The largest allowed INSERT that fits in `remaining` records: how many it takes, and its SQL.
fn insert_for(remaining: usize) -> (usize, &'static str) {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        INSERT_SIZES
            .iter()
            .map(|&n| {
                let rows = vec!["(?, ?, ?, ?, ?, ?)"; n].join(", ");
                format!("INSERT INTO audit_log (seq, at, kind, session_id, record, hash) VALUES {rows}")
            })
            .collect()
    });
    let at = INSERT_SIZES.iter().position(|&n| n <= remaining).unwrap_or(INSERT_SIZES.len() - 1);
    (INSERT_SIZES[at], &all[at])
}

/// The store's chain identity (made when the log's table was created).
pub(crate) fn instance(conn: &rusqlite::Connection) -> rusqlite::Result<String> {
    conn.query_row("SELECT value FROM audit_meta WHERE key = 'instance'", [], |r| r.get(0))
}

/// The chain after the last stored record. Read in the writing transaction (an immediate one), so
/// that the command line appending to the same file cannot take the same place.
pub(crate) fn tail(tx: &Transaction<'_>, instance: &str) -> rusqlite::Result<Chain> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((seq, hash)) = last {
        return Ok(Chain::resume(instance, unsigned(seq), to_hash(&hash)));
    }
    // Retention never removes the newest record; should the log be empty all the same, the chain
    // goes on from the newest anchor rather than starting again at 1.
    let anchor: Option<(i64, Vec<u8>)> = tx
        .query_row("SELECT seq, hash FROM audit_anchors ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match anchor {
        Some((seq, hash)) => Chain::resume(instance, unsigned(seq), to_hash(&hash)),
        None => Chain::resume(instance, 0, GENESIS),
    })
}

/// SQLite's integers are signed; sequence numbers are not (a negative one, written by hand, reads
/// as 0, which verification finds out of place).
fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_hash(bytes: &[u8]) -> Hash {
    // A stored hash of another length cannot match any computed one: verification names it.
    bytes.try_into().unwrap_or([0xff; 32])
}

/// Appends `records` to the chain; the chain as it stands after them.
pub(crate) fn append(tx: &Transaction<'_>, instance: &str, records: &[AuditRecord]) -> rusqlite::Result<Chain> {
    let mut chain = tail(tx, instance)?;
    let mut rest = records;
    while !rest.is_empty() {
        let (rows, sql) = insert_for(rest.len());
        let (chunk, after) = rest.split_at(rows);
        rest = after;
        let mut insert = tx.prepare_cached(sql)?;
        for (i, record) in chunk.iter().enumerate() {
            let linked = chain.append(record);
            let at = i * COLUMNS;
            insert.raw_bind_parameter(at + 1, signed(linked.seq))?;
            insert.raw_bind_parameter(at + 2, record.at_us)?;
            insert.raw_bind_parameter(at + 3, record.event.kind())?;
            insert.raw_bind_parameter(at + 4, record.session.as_deref())?;
            insert.raw_bind_parameter(at + 5, linked.encoded)?;
            insert.raw_bind_parameter(at + 6, &linked.hash[..])?;
        }
        insert.raw_execute()?;
    }
    Ok(chain)
}

/// When the recorder signs checkpoints, and with which key.
pub struct Signing {
    signer: CheckpointSigner,
    every: u64,
    interval: Duration,
    appended: u64,
    last: Instant,
}

impl Signing {
    /// Sign a checkpoint once `every` records were appended since the last one, or once
    /// `interval` passed with any appended.
    pub fn new(signer: CheckpointSigner, every: u64, interval: Duration) -> Signing {
        Signing { signer, every: every.max(1), interval, appended: 0, last: Instant::now() }
    }

    /// `count` more records were appended; whether a checkpoint is due.
    pub(crate) fn due(&mut self, count: usize) -> bool {
        self.appended += count as u64;
        self.appended > 0 && (self.appended >= self.every || self.last.elapsed() >= self.interval)
    }

    /// Signs the chain's head, unless a checkpoint already covers it.
    pub(crate) fn sign(&mut self, tx: &Transaction<'_>, chain: &Chain, at_us: i64) -> rusqlite::Result<()> {
        self.appended = 0;
        self.last = Instant::now();
        let previous: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints", [], |r| r.get(0))?;
        let previous = unsigned(previous);
        if chain.last_seq() == 0 || previous >= chain.last_seq() {
            return Ok(());
        }
        let checkpoint = self.signer.sign(chain.instance(), chain.last_seq(), chain.head(), previous, at_us);
        tx.prepare_cached(
            "INSERT INTO audit_checkpoints (seq, hash, previous, at, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            signed(checkpoint.seq),
            &checkpoint.hash[..],
            signed(checkpoint.previous),
            checkpoint.at_us,
            checkpoint.key_id,
            checkpoint.signature
        ])?;
        Ok(())
    }
}

/// The oldest and newest sequence numbers in the log (`(0, 0)`: none).
fn bounds(c: &rusqlite::Connection) -> rusqlite::Result<(u64, u64)> {
    c.query_row("SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM audit_log", [], |r| {
        Ok((unsigned(r.get(0)?), unsigned(r.get(1)?)))
    })
}

/// The chain's hash at record `through`, recomputed from `before` (the hash before record
/// `first`); the inner error names the first record that does not chain.
fn chained_head(
    c: &rusqlite::Connection,
    first: u64,
    through: u64,
    before: Hash,
) -> rusqlite::Result<Result<Hash, String>> {
    let mut head = before;
    let mut expected = first;
    let mut records = c.prepare("SELECT seq, record, hash FROM audit_log WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq")?;
    let mut rows = records.query(params![signed(first), signed(through)])?;
    while let Some(row) = rows.next()? {
        let seq = unsigned(row.get(0)?);
        let record: String = row.get(1)?;
        head = sluice_audit::link(&head, record.as_bytes());
        if seq != expected || head != to_hash(&row.get::<_, Vec<u8>>(2)?) {
            return Ok(Err(chain_broken(expected, "it does not chain (run `sluice audit verify`)")));
        }
        expected += 1;
    }
    if expected != through + 1 {
        return Ok(Err(chain_broken(expected, "it is missing")));
    }
    Ok(Ok(head))
}

/// Why retention refuses to remove records whose chain does not hold.
fn chain_broken(seq: u64, why: &str) -> String {
    format!("retention removes nothing: record {seq}: {why}; the audit log is not as it was written")
}

/// Records removed per transaction, so that the recorder's writes go on between them.
const REMOVE_CHUNK: i64 = 20_000;

/// What retention asks for: remove records older than `max_age_us` or beyond the newest
/// `max_records`, but none after `delivered_through` (what every sink has delivered).
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub max_age_us: Option<i64>,
    pub max_records: Option<u64>,
    pub delivered_through: u64,
}

/// Records `first..=through` were removed; the chain goes on from the anchor at `through`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removed {
    pub first: u64,
    pub through: u64,
}

impl SqliteStore {
    /// Every retention anchor, in order.
    pub async fn audit_anchors(&self) -> StoreResult<Vec<Anchor>> {
        self.run(|c| {
            c.prepare("SELECT seq, hash, at, key_id, signature FROM audit_anchors ORDER BY seq")?
                .query_map([], |r| {
                    Ok(Anchor {
                        seq: unsigned(r.get(0)?),
                        hash: to_hash(&r.get::<_, Vec<u8>>(1)?),
                        at_us: r.get(2)?,
                        key_id: r.get(3)?,
                        signature: r.get(4)?,
                    })
                })?
                .collect()
        })
        .await
    }

    /// Removes the log's oldest records as `retention` says: first a signed anchor at the last
    /// record removed (the hash the rest chains from), then the records and checkpoints up to it,
    /// in chunks; then the sessions, authentication attempts and administrative events older than
    /// that record. `None` when nothing is due.
    pub async fn remove_old_records(
        &self,
        retention: Retention,
        signer: Arc<CheckpointSigner>,
        now_us: i64,
    ) -> StoreResult<Option<Removed>> {
        self.run(move |c| {
            let instance = instance(c)?;
            // Read without the write lock: what is due, and whether its chain holds.
            let (first, head) = bounds(c)?;
            let mut through = 0;
            if let Some(keep) = retention.max_records {
                through = through.max(head.saturating_sub(keep));
            }
            if let Some(age) = retention.max_age_us {
                let young: Option<i64> = c
                    .query_row("SELECT seq FROM audit_log WHERE at >= ?1 ORDER BY seq LIMIT 1", [now_us - age], |r| {
                        r.get(0)
                    })
                    .optional()?;
                through = through.max(young.map_or(head, |seq| unsigned(seq).saturating_sub(1)));
            }
            // The newest record always stays: the chain goes on from it, and an empty log would
            // restart the chain at 1.
            through = through.min(retention.delivered_through).min(head.saturating_sub(1));
            // A run cut short (a crash between the anchor and the deletes) is finished first.
            let (anchored, anchored_hash): (i64, Option<Vec<u8>>) = c.query_row(
                "SELECT COALESCE(MAX(seq), 0), (SELECT hash FROM audit_anchors ORDER BY seq DESC LIMIT 1) FROM audit_anchors",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let anchored = unsigned(anchored);
            if head == 0 || (through < first && anchored < first) {
                return Ok(Ok(None));
            }
            let verified = if through > anchored {
                // What is removed is checked first: evidence of tampering must not disappear behind
                // a valid anchor.
                let before = match (first, anchored_hash) {
                    (1, _) => GENESIS,
                    (n, Some(hash)) if n == anchored + 1 => to_hash(&hash),
                    (n, _) => return Ok(Err(chain_broken(n, "records before it are missing and no anchor covers them"))),
                };
                match chained_head(c, first, through, before)? {
                    Ok(head) => Some(head),
                    Err(broken) => return Ok(Err(broken)),
                }
            } else {
                None
            };
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(head) = verified {
                let hash: Vec<u8> =
                    tx.query_row("SELECT hash FROM audit_log WHERE seq = ?1", [signed(through)], |r| r.get(0))?;
                if to_hash(&hash) != head {
                    return Ok(Err(chain_broken(through, "it changed while retention checked the records before it")));
                }
                let anchor = signer.sign_anchor(&instance, through, head, now_us);
                tx.execute(
                    "INSERT INTO audit_anchors (seq, hash, at, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![signed(anchor.seq), &anchor.hash[..], anchor.at_us, anchor.key_id, anchor.signature],
                )?;
            }
            let through = through.max(anchored);
            // (A run cut short may have deleted the record at `through` already.)
            let through_at: i64 = tx.query_row(
                "SELECT COALESCE((SELECT at FROM audit_log WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1), \
                                 (SELECT MIN(at) FROM audit_log), 0)",
                [signed(through)],
                |r| r.get(0),
            )?;
            tx.commit()?;
            loop {
                let removed = c.execute(
                    "DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log WHERE seq <= ?1 ORDER BY seq LIMIT ?2)",
                    params![signed(through), REMOVE_CHUNK],
                )?;
                if removed == 0 {
                    break;
                }
            }
            let tx = c.transaction()?;
            tx.execute("DELETE FROM audit_checkpoints WHERE seq <= ?1", [signed(through)])?;
            tx.execute("DELETE FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?1", [through_at])?;
            tx.execute("DELETE FROM statements_before_chain WHERE started_at < ?1", [through_at])?;
            tx.execute("DELETE FROM auth_events WHERE at < ?1", [through_at])?;
            tx.execute("DELETE FROM admin_events WHERE at < ?1", [through_at])?;
            tx.commit()?;
            Ok(Ok(Some(Removed { first, through })))
        })
        .await?
        .map_err(StoreError::Corrupt)
    }

    /// The chain identity of this store's audit log.
    pub async fn audit_instance(&self) -> StoreResult<String> {
        self.run(|c| instance(c)).await
    }

    /// Every signed checkpoint, in order.
    pub async fn audit_checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        self.run(|c| {
            c.prepare("SELECT seq, hash, previous, at, key_id, signature FROM audit_checkpoints ORDER BY seq")?
                .query_map([], |r| {
                    Ok(Checkpoint {
                        seq: unsigned(r.get(0)?),
                        hash: to_hash(&r.get::<_, Vec<u8>>(1)?),
                        previous: unsigned(r.get(2)?),
                        at_us: r.get(3)?,
                        key_id: r.get(4)?,
                        signature: r.get(5)?,
                    })
                })?
                .collect()
        })
        .await
    }

    /// Up to `limit` records from sequence number `from` on, in order.
    pub async fn audit_records(&self, from: u64, limit: u64) -> StoreResult<Vec<StoredRecord>> {
        self.run(move |c| {
            c.prepare_cached("SELECT seq, record, hash FROM audit_log WHERE seq >= ?1 ORDER BY seq LIMIT ?2")?
                .query_map(params![signed(from), signed(limit)], |r| {
                    let hash = to_hash(&r.get::<_, Vec<u8>>(2)?);
                    Ok(StoredRecord { seq: unsigned(r.get(0)?), encoded: r.get(1)?, hash })
                })?
                .collect()
        })
        .await
    }

    /// A session's records in order, with the transitions of the reviews it asked for (which an
    /// approver's records carry without the session): what `sessions replay` plays.
    pub async fn session_records(&self, session: &str) -> StoreResult<Vec<StoredRecord>> {
        let session = session.to_string();
        self.run(move |c| {
            c.prepare_cached(
                "WITH own AS (SELECT seq, record, hash FROM audit_log WHERE session_id = ?1), \
                      reviews AS (SELECT DISTINCT json_extract(record, '$.event.review_id') AS id FROM own \
                                   WHERE json_extract(record, '$.event.kind') = 'review') \
                 SELECT seq, record, hash FROM own \
                 UNION \
                 SELECT seq, record, hash FROM audit_log \
                  WHERE kind = 'review' AND json_extract(record, '$.event.review_id') IN (SELECT id FROM reviews) \
                 ORDER BY seq",
            )?
            .query_map([session], |r| {
                let hash = to_hash(&r.get::<_, Vec<u8>>(2)?);
                Ok(StoredRecord { seq: unsigned(r.get(0)?), encoded: r.get(1)?, hash })
            })?
            .collect()
        })
        .await
    }

    /// The stored hash of record `seq`, if there is one.
    pub async fn audit_hash(&self, seq: u64) -> StoreResult<Option<Hash>> {
        self.run(move |c| {
            c.query_row("SELECT hash FROM audit_log WHERE seq = ?1", [signed(seq)], |r| r.get::<_, Vec<u8>>(0))
                .optional()
                .map(|h| h.as_deref().map(to_hash))
        })
        .await
    }
}

#[async_trait::async_trait]
impl AuditExportStore for SqliteStore {
    async fn audit_records(&self, from: u64, limit: u64) -> StoreResult<Vec<StoredRecord>> {
        SqliteStore::audit_records(self, from, limit).await
    }

    async fn audit_bounds(&self) -> StoreResult<(u64, u64)> {
        self.run(|c| bounds(c)).await
    }

    async fn export_cursor(&self, sink: &str) -> StoreResult<u64> {
        let sink = sink.to_string();
        self.run(move |c| {
            c.query_row("SELECT seq FROM audit_export_cursors WHERE sink = ?1", [sink], |r| r.get(0))
                .optional()
                .map(|seq| seq.map_or(0, unsigned))
        })
        .await
    }

    async fn set_export_cursor(&self, sink: &str, seq: u64, now_us: i64) -> StoreResult<()> {
        let sink = sink.to_string();
        self.run(move |c| {
            c.prepare_cached(
                "INSERT INTO audit_export_cursors (sink, seq, at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (sink) DO UPDATE SET seq = MAX(seq, excluded.seq), at = excluded.at",
            )?
            .execute(params![sink, signed(seq), now_us])
            .map(drop)
        })
        .await
    }

    fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        SqliteStore::appended(self)
    }
}
