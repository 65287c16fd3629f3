//! Reviews and access grants in SQLite: a review is kept as JSON beside the columns it is looked
//! up by, with a version number for the compare-and-swap, and every transition as an event.

use crate::sqlite::SqliteStore;
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use sluice_core::review::{NewReview, Review, Status, Subject};
use sluice_store::{ReviewEvent, ReviewFilter, ReviewStore, StoreError, StoreResult};
use std::time::Duration;

/// How often a session waiting on a review looks at the store for a decision made elsewhere
/// (another instance, or the command line).
const WATCH_POLL: Duration = Duration::from_millis(500);

#[async_trait]
impl ReviewStore for SqliteStore {
    async fn insert_review(&self, new: NewReview, now_us: i64) -> StoreResult<Review> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let hash = match &new.subject {
                Subject::Statement { hash, .. } => Some(hash.clone()),
                Subject::Access { .. } => None,
            };
            let id: i64 = tx.query_row(
                "INSERT INTO reviews (kind, status, requester, connection, statement_hash, created_at, body) \
                 VALUES (?1, 'pending', ?2, ?3, ?4, ?5, '{}') RETURNING id",
                params![new.subject.kind(), new.requester, new.connection, hash, now_us],
                |r| r.get(0),
            )?;
            let review = new.into_review(id, now_us);
            tx.execute("UPDATE reviews SET body = ?1 WHERE id = ?2", params![body(&review)?, id])?;
            let requested = ReviewEvent {
                at: now_us,
                actor: review.requester.clone(),
                action: "requested".into(),
                comment: Some(review.reason.clone()),
            };
            insert_event(&tx, id, &requested)?;
            tx.commit()?;
            Ok(review)
        })
        .await
    }

    async fn review(&self, id: i64) -> StoreResult<Option<Review>> {
        Ok(self.versioned_review(id).await?.map(|(review, _)| review))
    }

    async fn versioned_review(&self, id: i64) -> StoreResult<Option<(Review, i64)>> {
        let row = self
            .run(move |c| {
                c.query_row("SELECT body, version FROM reviews WHERE id = ?1", [id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()
            })
            .await?;
        row.map(|(body, version)| Ok((parse(&body)?, version))).transpose()
    }

    async fn swap_review(&self, review: &Review, version: i64, event: &ReviewEvent) -> StoreResult<bool> {
        let stored = body(review).map_err(|e| StoreError::Corrupt(format!("a review: {e}")))?;
        let (id, status, event) = (review.id, review.status.as_str(), event.clone());
        self.run(move |c| {
            let tx = c.transaction()?;
            let updated = tx.execute(
                "UPDATE reviews SET body = ?1, status = ?2, version = version + 1 WHERE id = ?3 AND version = ?4",
                params![stored, status, id, version],
            )?;
            if updated != 1 {
                return Ok(false);
            }
            insert_event(&tx, id, &event)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn reviews(&self, filter: &ReviewFilter, now_us: i64) -> StoreResult<Vec<Review>> {
        // Pending and approved reviews may have run out since they were stored: select on the
        // stored status, then judge each as of now.
        let stored: Option<&[&str]> = filter.status.map(|s| match s {
            Status::Pending => &["pending"][..],
            Status::Approved => &["approved"][..],
            Status::Expired => &["pending", "approved", "expired"][..],
            Status::Denied => &["denied"][..],
            Status::Consumed => &["consumed"][..],
            Status::Revoked => &["revoked"][..],
        });
        let mut sql = String::from("SELECT body FROM reviews WHERE 1 = 1");
        let mut values: Vec<Value> = Vec::new();
        if let Some(stored) = stored {
            sql.push_str(&format!(" AND status IN ({})", vec!["?"; stored.len()].join(", ")));
            values.extend(stored.iter().map(|s| Value::from(s.to_string())));
        }
        if let Some(kind) = &filter.kind {
            sql.push_str(" AND kind = ?");
            values.push(kind.clone().into());
        }
        if let Some(requester) = &filter.requester {
            sql.push_str(" AND requester = ?");
            values.push(requester.clone().into());
        }
        sql.push_str(" ORDER BY id DESC");
        let bodies = self.bodies(sql, values).await?;
        let limit = usize::try_from(filter.limit).ok().filter(|&n| n > 0).unwrap_or(usize::MAX);
        // Parsed only up to the limit (newest first).
        bodies
            .iter()
            .map(|b| parse(b))
            .filter(|r| r.as_ref().map_or(true, |r| filter.status.is_none_or(|s| r.status_at(now_us) == s)))
            .take(limit)
            .collect()
    }

    async fn open_reviews_of(
        &self,
        requester: &str,
        target: &str,
        hash: &str,
        now_us: i64,
    ) -> StoreResult<Vec<Review>> {
        let bodies = self
            .bodies(
                "SELECT body FROM reviews WHERE requester = ? AND connection = ? AND statement_hash = ? \
                 AND status IN ('pending', 'approved') ORDER BY id DESC"
                    .into(),
                vec![requester.to_string().into(), target.to_string().into(), hash.to_string().into()],
            )
            .await?;
        let mut reviews = parse_all(&bodies)?;
        reviews.retain(|r| matches!(r.status_at(now_us), Status::Pending | Status::Approved));
        Ok(reviews)
    }

    async fn active_grants(&self, now_us: i64) -> StoreResult<Vec<Review>> {
        let bodies = self
            .bodies("SELECT body FROM reviews WHERE kind = 'access' AND status = 'approved'".into(), vec![])
            .await?;
        let mut reviews = parse_all(&bodies)?;
        reviews.retain(|r| r.grants_access(now_us));
        Ok(reviews)
    }

    async fn add_review_event(&self, id: i64, event: &ReviewEvent) -> StoreResult<()> {
        let event = event.clone();
        self.run(move |c| insert_event(c, id, &event)).await
    }

    async fn review_events(&self, id: i64) -> StoreResult<Vec<ReviewEvent>> {
        self.run(move |c| {
            c.prepare("SELECT at, actor, action, comment FROM review_events WHERE review_id = ?1 ORDER BY id")?
                .query_map([id], |r| {
                    Ok(ReviewEvent { at: r.get(0)?, actor: r.get(1)?, action: r.get(2)?, comment: r.get(3)? })
                })?
                .collect()
        })
        .await
    }

    async fn watch_review(&self, id: i64, within: Duration) -> StoreResult<()> {
        let deadline = tokio::time::Instant::now() + within;
        let seen = self.review_version(id).await?;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            tokio::time::sleep_until((now + WATCH_POLL).min(deadline)).await;
            if self.review_version(id).await? != seen {
                return Ok(());
            }
        }
    }
}

impl SqliteStore {
    async fn review_version(&self, id: i64) -> StoreResult<Option<i64>> {
        self.run(move |c| c.query_row("SELECT version FROM reviews WHERE id = ?1", [id], |r| r.get(0)).optional()).await
    }

    /// The stored bodies a query selects as its first column.
    async fn bodies(&self, sql: String, values: Vec<Value>) -> StoreResult<Vec<String>> {
        self.run(move |c| c.prepare(&sql)?.query_map(params_from_iter(values), |r| r.get(0))?.collect()).await
    }
}

fn insert_event(c: &Connection, id: i64, event: &ReviewEvent) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO review_events (review_id, at, actor, action, comment) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, event.at, event.actor, event.action, event.comment],
    )
    .map(drop)
}

/// A review as stored; one that cannot be written as JSON fails the statement (nothing stored).
fn body(review: &Review) -> rusqlite::Result<String> {
    serde_json::to_string(review).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn parse_all(bodies: &[String]) -> StoreResult<Vec<Review>> {
    bodies.iter().map(|b| parse(b)).collect()
}

fn parse(body: &str) -> StoreResult<Review> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("a stored review: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Identity;
    use sluice_core::review::{ReviewError, ReviewRules, Subject};
    use sluice_store::update_review;

    fn who(name: &str, groups: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            credential_id: "t".into(),
        }
    }

    async fn store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sluice-reviews-{}", rand::random::<u64>()));
        (SqliteStore::open(&dir.join("s.db")).await.unwrap(), dir)
    }

    fn new(text: &str) -> NewReview {
        NewReview {
            subject: Subject::statement(text),
            requester: "agent".into(),
            connection: "shop".into(),
            rule: "deletes".into(),
            reason: "deletes need a review".into(),
            rules: ReviewRules { approvers: vec!["dba".into()], ..ReviewRules::default() },
        }
    }

    #[tokio::test]
    async fn a_review_survives_a_reopen_with_its_history() {
        let (store, dir) = store().await;
        let review = store.insert_review(new("DELETE FROM t"), 1_000).await.unwrap();
        let bob = who("bob", &["dba"]);
        let (_, approved) =
            update_review(&store, review.id, "bob", 2_000, |r| Ok((r.approve(&bob, None, 2_000)?, "approved", None)))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(approved.status, Status::Approved);
        store.close().await;
        let store = SqliteStore::open(&dir.join("s.db")).await.unwrap();
        let again = store.review(review.id).await.unwrap().unwrap();
        assert_eq!(again, approved);
        let events: Vec<_> = store.review_events(review.id).await.unwrap().into_iter().map(|e| e.action).collect();
        assert_eq!(events, ["requested", "approved"]);
        let hash = sluice_core::review::statement_hash("DELETE FROM t");
        assert_eq!(store.open_reviews_of("agent", "shop", &hash, 3_000).await.unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_refused_change_stores_nothing() {
        let (store, dir) = store().await;
        let review = store.insert_review(new("DELETE FROM t"), 1_000).await.unwrap();
        let agent = who("agent", &["dba"]);
        let refused = update_review(&store, review.id, "agent", 2_000, |r| {
            Ok((r.approve(&agent, None, 2_000)?, "approved", None))
        })
        .await;
        assert_eq!(refused.unwrap().unwrap_err(), ReviewError::OwnRequest(review.id));
        assert_eq!(store.review(review.id).await.unwrap().unwrap().status, Status::Pending);
        assert_eq!(store.review_events(review.id).await.unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
