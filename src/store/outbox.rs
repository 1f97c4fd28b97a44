//! The outbox: deliveries claimed under a lease (so two dispatchers never send one twice),
//! their outcomes with retry times, the counts for `/metrics`, retries an operator asks for.

use super::*;

impl Store {
    /// Claim up to `limit` deliveries that are due; a claim holds them for `lease` ms (should a
    /// worker die mid-delivery, they fall due again when it runs out, or at the next start).
    pub async fn claim(
        &self,
        now: Ts,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "UPDATE outbox SET leased_until = $2 WHERE id IN ( \
               SELECT id FROM outbox WHERE state = 'pending' AND next_at <= $1 \
               AND (leased_until IS NULL OR leased_until <= $1) ORDER BY next_at, id LIMIT $3) \
             AND state = 'pending' AND (leased_until IS NULL OR leased_until <= $1) \
             RETURNING *",
        )
        .bind(now)
        .bind(now + lease)
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        let mut items: Vec<OutboxItem> = rows.iter().map(outbox_row).collect::<Result<_, _>>()?;
        items.sort_by_key(|i| (i.next_at, i.id));
        Ok(items)
    }

    /// At start, no delivery is under way: leases of a process that died are void. (Only for a
    /// store of one instance: in a shared one, another instance's leases are its own and run out
    /// by themselves.)
    pub async fn release_leases(&self) -> Result<u64, StoreError> {
        let r = sqlx::query("UPDATE outbox SET leased_until = NULL WHERE leased_until IS NOT NULL")
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected())
    }

    /// The earliest time a pending delivery falls due.
    pub async fn next_due(&self) -> Result<Option<Ts>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT min(CASE WHEN leased_until > next_at THEN leased_until ELSE next_at END) \
                 FROM outbox WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Record delivery outcomes (state, attempts, a timeline entry each) in one transaction.
    pub async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        let delivered: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed.is_none()).collect();
        for chunk in delivered.chunks(CHUNK) {
            let ids: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_error = NULL, leased_until = NULL, \
                 delivered_at = $1 WHERE id IN ({})",
                ids.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(chunk.iter().map(|o| o.at).max().unwrap_or(0));
            for o in chunk {
                q = q.bind(o.item);
            }
            q.execute(&mut *tx).await?;
        }
        let mut timeline = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            let kind = match &o.failed {
                None => "delivered",
                Some((error, retry_at)) => {
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, leased_until = NULL, \
                           state = CASE WHEN $3 IS NULL THEN 'dead' ELSE 'pending' END, next_at = coalesce($3, next_at) WHERE id = $1",
                    )
                    .bind(o.item)
                    .bind(error)
                    .bind(retry_at)
                    .execute(&mut *tx)
                    .await?;
                    if retry_at.is_some() {
                        "delivery_failed"
                    } else {
                        "delivery_dead"
                    }
                }
            };
            timeline.push(TimelineRow {
                warning_id: o.warning_id.clone(),
                at: o.at,
                kind,
                actor: "dispatch",
                detail: o.detail.to_string(),
            });
        }
        add_timelines(&mut tx, &timeline).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deliveries in one state (`pending`, `delivered`, `dead`), newest first.
    pub async fn deliveries(
        &self,
        state: Option<&str>,
        warning: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR warning_id = $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(state)
        .bind(warning)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(outbox_row).collect::<Result<_, _>>()?)
    }

    /// Put a dead delivery back in the queue (an admin fixed the endpoint).
    pub async fn retry_delivery(&self, id: i64, now: Ts) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE outbox SET state = 'pending', attempts = 0, next_at = $1 WHERE id = $2 AND state = 'dead'")
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Deliveries waiting and given up, for `/metrics` (counted through the state index: the
    /// delivered ones, which pile up, are never scanned).
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::with_capacity(2);
        for state in ["pending", "dead"] {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE state = $1")
                .bind(state)
                .fetch_one(&self.pool)
                .await?;
            out.push((state.to_string(), n));
        }
        Ok(out)
    }
}

pub(super) fn outbox_row(r: &sqlx::any::AnyRow) -> Result<OutboxItem, sqlx::Error> {
    Ok(OutboxItem {
        id: r.try_get("id")?,
        key: r.try_get("key")?,
        warning_id: r.try_get("warning_id")?,
        seq: r.try_get("seq")?,
        purpose: r.try_get("purpose")?,
        department: r.try_get("department")?,
        channel: r.try_get("channel")?,
        doc: r.try_get("doc")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        next_at: r.try_get("next_at")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
        last_error: r.try_get("last_error")?,
    })
}
