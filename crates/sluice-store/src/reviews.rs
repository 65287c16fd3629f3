//! Reviews and access grants in the store, with every transition as an event. A review is kept as
//! JSON beside the columns it is looked up by; each change is a compare-and-swap on a version
//! number, so two approvers (or two sessions using one approval) can never both win.

use crate::{Store, StoreError};
use serde::Serialize;
use sluice_core::review::{NewReview, Review, ReviewError, Status, Subject};
use sqlx::Row;

/// Which reviews to list.
#[derive(Clone, Debug, Default)]
pub struct ReviewFilter {
    /// As of now (a pending review past its expiry counts as expired).
    pub status: Option<Status>,
    /// `statement` or `access`.
    pub kind: Option<String>,
    pub requester: Option<String>,
    pub limit: i64,
}

/// One transition of a review.
#[derive(Clone, Debug, Serialize)]
pub struct ReviewEvent {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub comment: Option<String>,
}

/// Changes of one review are retried this often when another writer got there first.
const CAS_ATTEMPTS: usize = 8;

impl Store {
    /// Creates a review and its `requested` event.
    pub async fn insert_review(&self, new: NewReview, now_us: i64) -> Result<Review, StoreError> {
        let mut tx = self.pool.begin().await?;
        let hash = match &new.subject {
            Subject::Statement { hash, .. } => Some(hash.clone()),
            Subject::Access { .. } => None,
        };
        let id: i64 = sqlx::query(
            "INSERT INTO reviews (kind, status, requester, connection, statement_hash, created_at, body) \
             VALUES (?, 'pending', ?, ?, ?, ?, '{}') RETURNING id",
        )
        .bind(new.subject.kind())
        .bind(&new.requester)
        .bind(&new.connection)
        .bind(hash)
        .bind(now_us)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let review = new.into_review(id, now_us);
        sqlx::query("UPDATE reviews SET body = ? WHERE id = ?").bind(body(&review)?).bind(id).execute(&mut *tx).await?;
        insert_event(&mut tx, id, now_us, &review.requester, "requested", Some(&review.reason)).await?;
        tx.commit().await?;
        Ok(review)
    }

    pub async fn review(&self, id: i64) -> Result<Option<Review>, StoreError> {
        let row = sqlx::query("SELECT body FROM reviews WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(parse_row).transpose()
    }

    /// Reviews newest first.
    pub async fn reviews(&self, filter: &ReviewFilter, now_us: i64) -> Result<Vec<Review>, StoreError> {
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
        let mut sql = sqlx::QueryBuilder::new("SELECT body FROM reviews WHERE 1 = 1");
        if let Some(stored) = stored {
            sql.push(" AND status IN (");
            let mut list = sql.separated(", ");
            for s in stored {
                list.push_bind(*s);
            }
            sql.push(")");
        }
        if let Some(kind) = &filter.kind {
            sql.push(" AND kind = ").push_bind(kind);
        }
        if let Some(requester) = &filter.requester {
            sql.push(" AND requester = ").push_bind(requester);
        }
        sql.push(" ORDER BY id DESC");
        let rows = sql.build().fetch_all(&self.pool).await?;
        let limit = usize::try_from(filter.limit).ok().filter(|&n| n > 0).unwrap_or(usize::MAX);
        // Parsed only up to the limit (newest first).
        rows.iter()
            .map(parse_row)
            .filter(|r| r.as_ref().map_or(true, |r| filter.status.is_none_or(|s| r.status_at(now_us) == s)))
            .take(limit)
            .collect()
    }

    /// Applies `change` to review `id` and stores the result with an event, unless another
    /// writer changed it first (then it is read again and `change` retried). The inner error is
    /// the state machine's refusal; nothing is stored then.
    pub async fn update_review<T>(
        &self,
        id: i64,
        actor: &str,
        now_us: i64,
        mut change: impl FnMut(&mut Review) -> Result<(T, &'static str, Option<String>), ReviewError>,
    ) -> Result<Result<(T, Review), ReviewError>, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let row = sqlx::query("SELECT body, version FROM reviews WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("there is no review #{id}")))?;
            let version: i64 = row.try_get(1)?;
            let mut review = parse_row(&row)?;
            let (value, action, comment) = match change(&mut review) {
                Ok(done) => done,
                Err(e) => return Ok(Err(e)),
            };
            let mut tx = self.pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE reviews SET body = ?, status = ?, version = version + 1 WHERE id = ? AND version = ?",
            )
            .bind(body(&review)?)
            .bind(review.status.as_str())
            .bind(id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 1 {
                insert_event(&mut tx, id, now_us, actor, action, comment.as_deref()).await?;
                tx.commit().await?;
                return Ok(Ok((value, review)));
            }
        }
        Err(StoreError::Corrupt(format!("review #{id} kept changing under us; try again")))
    }

    /// Reviews of this exact statement by this requester on this connection that are still
    /// pending or approved (newest first), for reuse and for running an approval.
    pub async fn open_reviews_of(
        &self,
        requester: &str,
        connection: &str,
        hash: &str,
        now_us: i64,
    ) -> Result<Vec<Review>, StoreError> {
        let rows = sqlx::query(
            "SELECT body FROM reviews WHERE requester = ? AND connection = ? AND statement_hash = ? \
             AND status IN ('pending', 'approved') ORDER BY id DESC",
        )
        .bind(requester)
        .bind(connection)
        .bind(hash)
        .fetch_all(&self.pool)
        .await?;
        let mut reviews = parse_rows(&rows)?;
        reviews.retain(|r| matches!(r.status_at(now_us), Status::Pending | Status::Approved));
        Ok(reviews)
    }

    /// Access grants approved and not yet over.
    pub async fn active_grants(&self, now_us: i64) -> Result<Vec<Review>, StoreError> {
        let rows = sqlx::query("SELECT body FROM reviews WHERE kind = 'access' AND status = 'approved'")
            .fetch_all(&self.pool)
            .await?;
        let mut reviews = parse_rows(&rows)?;
        reviews.retain(|r| r.grants_access(now_us));
        Ok(reviews)
    }

    /// Records a transition that does not change the review itself (a wait that timed out).
    pub async fn add_review_event(
        &self,
        id: i64,
        now_us: i64,
        actor: &str,
        action: &str,
        comment: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_event(&mut tx, id, now_us, actor, action, comment).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn review_events(&self, id: i64) -> Result<Vec<ReviewEvent>, StoreError> {
        let rows = sqlx::query("SELECT at, actor, action, comment FROM review_events WHERE review_id = ? ORDER BY id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ReviewEvent {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    comment: r.try_get(3)?,
                })
            })
            .collect()
    }
}

async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: i64,
    at: i64,
    actor: &str,
    action: &str,
    comment: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO review_events (review_id, at, actor, action, comment) VALUES (?, ?, ?, ?, ?)")
        .bind(id)
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(comment)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn body(review: &Review) -> Result<String, StoreError> {
    serde_json::to_string(review).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reviews from rows whose first column is the stored body.
fn parse_rows(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<Review>, StoreError> {
    rows.iter().map(parse_row).collect()
}

fn parse_row(row: &sqlx::sqlite::SqliteRow) -> Result<Review, StoreError> {
    parse(&row.try_get::<String, _>(0)?)
}

fn parse(body: &str) -> Result<Review, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Identity;
    use sluice_core::review::{ReviewRules, Subject};

    fn who(name: &str, groups: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            credential_id: "t".into(),
        }
    }

    async fn store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sluice-reviews-{}", rand::random::<u64>()));
        (Store::open(&dir.join("s.db")).await.unwrap(), dir)
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
        let (_, approved) = store
            .update_review(review.id, "bob", 2_000, |r| Ok((r.approve(&bob, None, 2_000)?, "approved", None)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(approved.status, Status::Approved);
        store.close().await;
        let store = Store::open(&dir.join("s.db")).await.unwrap();
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
        let refused = store
            .update_review(review.id, "agent", 2_000, |r| Ok((r.approve(&agent, None, 2_000)?, "approved", None)))
            .await;
        assert_eq!(refused.unwrap().unwrap_err(), ReviewError::OwnRequest(review.id));
        assert_eq!(store.review(review.id).await.unwrap().unwrap().status, Status::Pending);
        assert_eq!(store.review_events(review.id).await.unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
