//! Rows for the history archive (`crate::archive::export`): what changed since a moment of the
//! store's clock, and every row of a span of event time.

use super::{tickets::TicketRow, Filter, Store, StoreError, WarningRow};
use crate::time::Ts;
use sqlx::Row;

/// A transition with its warning's rule and site.
#[derive(Clone, Debug, PartialEq)]
pub struct TransitionRow {
    pub warning_id: String,
    pub seq: i64,
    pub kind: String,
    pub level: String,
    pub rule: String,
    pub site: String,
    pub at: Ts,
    pub stored_at: Ts,
}

/// Event times of rows stored or changed at or after `since` (store clock, ms; `None`: all),
/// by table: warnings (raised), transitions (at), tickets (received, or stored when the ticket
/// does not say).
#[derive(Debug, Default)]
pub struct Changed {
    pub warnings: Vec<Ts>,
    pub transitions: Vec<Ts>,
    pub tickets: Vec<Ts>,
}

impl Store {
    pub async fn changed_since(&self, since: Option<Ts>) -> Result<Changed, StoreError> {
        let since = since.unwrap_or(i64::MIN);
        let times = |sql: &'static str| async move {
            let rows = sqlx::query(sql).bind(since).fetch_all(&self.pool).await?;
            rows.iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<Vec<Ts>, sqlx::Error>>()
        };
        Ok(Changed {
            warnings: times("SELECT DISTINCT raised_at FROM warnings WHERE updated_at >= $1").await?,
            transitions: times("SELECT DISTINCT at FROM transitions WHERE stored_at >= $1").await?,
            tickets: times(
                "SELECT DISTINCT COALESCE(received_at, created_at) FROM tickets WHERE updated_at >= $1",
            )
            .await?,
        })
    }

    /// Warnings raised in `[from, to)`.
    pub async fn warnings_between(&self, from: Ts, to: Ts) -> Result<Vec<WarningRow>, StoreError> {
        let (list, _) = self
            .list(&Filter {
                from: Some(from),
                to: Some(to),
                limit: i64::MAX,
                ..Default::default()
            })
            .await?;
        Ok(list)
    }

    /// Transitions made in `[from, to)` (event time).
    pub async fn transitions_between(
        &self,
        from: Ts,
        to: Ts,
    ) -> Result<Vec<TransitionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.warning_id, t.seq, t.kind, t.level, w.rule, w.site, t.at, t.stored_at \
             FROM transitions t JOIN warnings w ON w.id = t.warning_id \
             WHERE t.at >= $1 AND t.at < $2 ORDER BY t.at, t.warning_id, t.seq",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TransitionRow {
                    warning_id: r.try_get("warning_id")?,
                    seq: r.try_get("seq")?,
                    kind: r.try_get("kind")?,
                    level: r.try_get("level")?,
                    rule: r.try_get("rule")?,
                    site: r.try_get("site")?,
                    at: r.try_get("at")?,
                    stored_at: r.try_get("stored_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Tickets received in `[from, to)` (stored then, when the ticket does not say).
    pub async fn tickets_between(&self, from: Ts, to: Ts) -> Result<Vec<TicketRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM tickets WHERE COALESCE(received_at, created_at) >= $1 \
             AND COALESCE(received_at, created_at) < $2 ORDER BY number",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::tickets::row).collect()
    }
}
