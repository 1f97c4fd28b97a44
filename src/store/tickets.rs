//! 12345 tickets in the store: one row per ticket number; an update changes that row.

use super::{Store, StoreError};
use crate::event::Ticket;
use crate::time::Ts;
use serde::Serialize;
use sqlx::Row;

/// A stored ticket, as the API shows it: the ticket and what the store keeps about it.
#[derive(Clone, Debug, Serialize)]
pub struct TicketRow {
    #[serde(flatten)]
    pub ticket: Ticket,
    /// Counted for the rules.
    pub fed: bool,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub updates: i64,
}

/// Whether storing a ticket may count it for the rules.
#[derive(Clone, Copy, Debug)]
pub enum Feed<'a> {
    /// Count it now, once (one instance).
    Now,
    /// Count it for this message of a Kafka topic (`topic:partition:offset`): once, and again
    /// when the same message is read again after a takeover (the restored state predates it).
    At(&'a str),
    /// Do not count it here: the instance whose partition carries its site will, from Kafka.
    Later,
}

/// Which tickets to list.
#[derive(Clone, Debug, Default)]
pub struct TicketFilter {
    pub site: Option<String>,
    /// Only those without a site.
    pub unmatched: bool,
    /// Only those of these sites (a department's).
    pub sites: Option<Vec<String>>,
    pub from: Option<Ts>,
    pub to: Option<Ts>,
    pub concern: Option<String>,
    pub limit: i64,
}

pub(super) fn row(r: &sqlx::any::AnyRow) -> Result<TicketRow, StoreError> {
    let problems: String = r.try_get("problems")?;
    let concern: String = r.try_get("concern")?;
    let matched_by: Option<String> = r.try_get("matched_by")?;
    let ticket = Ticket {
        number: r.try_get("number")?,
        channel: r.try_get("channel")?,
        category: r.try_get("category")?,
        concern: concern.into(),
        received_at: r.try_get("received_at")?,
        credit_code: r.try_get("credit_code")?,
        enterprise: r.try_get("enterprise")?,
        industry: r.try_get("industry")?,
        department: r.try_get("department")?,
        address: r.try_get("address")?,
        content: r.try_get("content")?,
        status: r.try_get("status")?,
        result: r.try_get("result")?,
        site: r.try_get("site")?,
        matched_by: matched_by.map(Into::into),
        problems: serde_json::from_str(&problems).unwrap_or_default(),
    };
    Ok(TicketRow {
        ticket,
        fed: r.try_get::<i64, _>("fed")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        updates: r.try_get("updates")?,
    })
}

impl std::ops::Deref for TicketRow {
    type Target = Ticket;
    fn deref(&self) -> &Ticket {
        &self.ticket
    }
}

impl Store {
    /// Store a ticket, or update the one with its number (what it says now replaces what it
    /// said; a site it was matched or assigned to stays). Returns the stored row and whether it
    /// now has a site it has not been counted for yet (then it is marked counted).
    pub async fn put_ticket(
        &self,
        t: &Ticket,
        now: Ts,
        feed: Feed<'_>,
    ) -> Result<(TicketRow, bool), StoreError> {
        let mut tx = self.writer.begin().await?;
        let problems = serde_json::to_string(&t.problems).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO tickets (number, channel, category, concern, received_at, credit_code, enterprise, \
             industry, department, address, content, status, result, site, matched_by, problems, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) \
             ON CONFLICT (number) DO UPDATE SET \
               channel = coalesce(excluded.channel, tickets.channel), category = coalesce(excluded.category, tickets.category), \
               concern = CASE WHEN excluded.category IS NULL THEN tickets.concern ELSE excluded.concern END, \
               received_at = coalesce(excluded.received_at, tickets.received_at), \
               credit_code = coalesce(excluded.credit_code, tickets.credit_code), enterprise = coalesce(excluded.enterprise, tickets.enterprise), \
               industry = coalesce(excluded.industry, tickets.industry), department = coalesce(excluded.department, tickets.department), \
               address = coalesce(excluded.address, tickets.address), content = coalesce(excluded.content, tickets.content), \
               status = coalesce(excluded.status, tickets.status), result = coalesce(excluded.result, tickets.result), \
               site = coalesce(tickets.site, excluded.site), matched_by = coalesce(tickets.matched_by, excluded.matched_by), \
               problems = excluded.problems, updated_at = excluded.updated_at, updates = tickets.updates + 1",
        )
        .bind(&t.number)
        .bind(&t.channel)
        .bind(&t.category)
        .bind(t.concern.as_ref())
        .bind(t.received_at)
        .bind(&t.credit_code)
        .bind(&t.enterprise)
        .bind(&t.industry)
        .bind(&t.department)
        .bind(&t.address)
        .bind(&t.content)
        .bind(&t.status)
        .bind(&t.result)
        .bind(&t.site)
        .bind(t.matched_by.as_deref())
        .bind(&problems)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let feed = Self::mark_fed(&mut tx, &t.number, feed).await?;
        let r = sqlx::query("SELECT * FROM tickets WHERE number = $1")
            .bind(&t.number)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((row(&r)?, feed))
    }

    /// Mark a ticket counted if it has a site and a time and was not counted yet (or was counted
    /// by this very message, read again).
    async fn mark_fed(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        number: &str,
        feed: Feed<'_>,
    ) -> Result<bool, StoreError> {
        let by = match feed {
            Feed::Later => return Ok(false),
            Feed::Now => None,
            Feed::At(pos) => Some(pos),
        };
        let n = sqlx::query(
            "UPDATE tickets SET fed = 1, fed_by = $2 WHERE number = $1 AND fed = 0 AND site IS NOT NULL AND received_at IS NOT NULL",
        )
        .bind(number)
        .bind(by)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if n == 1 {
            return Ok(true);
        }
        let Some(by) = by else { return Ok(false) };
        let again: Option<Option<String>> =
            sqlx::query_scalar("SELECT fed_by FROM tickets WHERE number = $1")
                .bind(number)
                .fetch_optional(&mut **tx)
                .await?;
        Ok(again.flatten().as_deref() == Some(by))
    }

    /// An operator assigns an unmatched (or wrongly matched, not yet counted) ticket to a site.
    /// `None` if there is no such ticket; else the row and whether it is now to be counted.
    pub async fn assign_ticket(
        &self,
        number: &str,
        site: &str,
        now: Ts,
        feed: Feed<'_>,
    ) -> Result<Option<(TicketRow, bool)>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let n = sqlx::query(
            "UPDATE tickets SET site = $2, matched_by = 'manual', updated_at = $3 WHERE number = $1 AND fed = 0",
        )
        .bind(number)
        .bind(site)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let feed = n == 1 && Self::mark_fed(&mut tx, number, feed).await?;
        let r = sqlx::query("SELECT * FROM tickets WHERE number = $1")
            .bind(number)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        r.map(|r| row(&r).map(|t| (t, feed))).transpose()
    }

    pub async fn ticket(&self, number: &str) -> Result<Option<TicketRow>, StoreError> {
        let r = sqlx::query("SELECT * FROM tickets WHERE number = $1")
            .bind(number)
            .fetch_optional(&self.pool)
            .await?;
        r.map(|r| row(&r)).transpose()
    }

    /// Tickets, newest first.
    pub async fn tickets(&self, f: &TicketFilter) -> Result<Vec<TicketRow>, StoreError> {
        // conditions with `$N` placeholders, and the values to bind in that order
        enum Arg<'a> {
            Text(&'a str),
            Int(i64),
        }
        let mut sql = String::from("SELECT * FROM tickets WHERE 1 = 1");
        let mut args: Vec<Arg> = Vec::new();
        fn cond<'a>(sql: &mut String, args: &mut Vec<Arg<'a>>, text: &str, arg: Arg<'a>) {
            args.push(arg);
            sql.push_str(&format!("{text}${}", args.len()));
        }
        if f.unmatched {
            sql.push_str(" AND site IS NULL");
        }
        if let Some(s) = &f.site {
            cond(&mut sql, &mut args, " AND site = ", Arg::Text(s));
        }
        if let Some(sites) = &f.sites {
            if sites.is_empty() {
                sql.push_str(" AND 1 = 0");
            }
            for (i, s) in sites.iter().enumerate() {
                cond(
                    &mut sql,
                    &mut args,
                    if i == 0 { " AND site IN (" } else { ", " },
                    Arg::Text(s),
                );
                if i + 1 == sites.len() {
                    sql.push(')');
                }
            }
        }
        if let Some(c) = &f.concern {
            cond(&mut sql, &mut args, " AND concern = ", Arg::Text(c));
        }
        if let Some(t) = f.from {
            cond(&mut sql, &mut args, " AND received_at >= ", Arg::Int(t));
        }
        if let Some(t) = f.to {
            cond(&mut sql, &mut args, " AND received_at <= ", Arg::Int(t));
        }
        cond(
            &mut sql,
            &mut args,
            " ORDER BY coalesce(received_at, created_at) DESC LIMIT ",
            Arg::Int(f.limit.clamp(1, 1000)),
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = match a {
                Arg::Text(s) => q.bind(s),
                Arg::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Feed;
    use crate::hotline::{check, TicketIn};
    use crate::store::Store;

    #[tokio::test]
    async fn a_ticket_is_stored_updated_and_assigned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = Store::open(&dir.path().join("t.db"), false)
            .await
            .expect("store");
        let pg = crate::store::tests::pg_store("tickets").await;
        for s in [sqlite, pg] {
            let reg = crate::config::sites::load(
            "sites.yaml",
            "sites:\n  - {id: cs-01, name: 工地, kind: construction, department: zjj, keywords: [东湖路]}\n",
        )
        .expect("sites");
            let t = |json: &str| {
                let t: TicketIn = serde_json::from_str(json).expect("json");
                check(t, &reg, chrono_tz::UTC, 1_800_000_000_000).expect("kept")
            };
            // unmatched: kept, not counted
            let (r, feed) = s
            .put_ticket(&t(r#"{"number":"T1","category":"噪声","content":"很吵","received_at":1795000000000}"#), 1, Feed::Now)
            .await
            .expect("put");
            assert_eq!((r.site.as_deref(), feed, r.updates), (None, false, 0));
            let unmatched = s
                .tickets(&super::TicketFilter {
                    unmatched: true,
                    limit: 10,
                    ..Default::default()
                })
                .await
                .expect("list");
            assert_eq!(unmatched.len(), 1);
            // an operator assigns it: counted once
            let (r, feed) = s
                .assign_ticket("T1", "cs-01", 2, Feed::Now)
                .await
                .expect("assign")
                .expect("exists");
            assert_eq!(
                (r.site.as_deref(), r.matched_by.as_deref(), feed),
                (Some("cs-01"), Some("manual"), true)
            );
            assert!(s
                .assign_ticket("T1", "cs-01", 3, Feed::Now)
                .await
                .expect("again")
                .is_some_and(|(_, f)| !f));
            // an update of the same ticket: status and result change, the site stays, not counted again
            let (r, feed) = s
                .put_ticket(
                    &t(r#"{"number":"T1","status":"已办结","result":"已责令停止夜间施工"}"#),
                    4,
                    Feed::Now,
                )
                .await
                .expect("update");
            assert_eq!(
                (r.site.as_deref(), feed, r.updates),
                (Some("cs-01"), false, 1)
            );
            assert_eq!(r.status.as_deref(), Some("已办结"));
            assert_eq!(
                r.content.as_deref(),
                Some("很吵"),
                "what the update did not say stays"
            );
            // matched on arrival: counted at once
            let (r, feed) = s
            .put_ticket(&t(r#"{"number":"T2","category":"扬尘","content":"东湖路工地灰大","received_at":1795000000000}"#), 5, Feed::Now)
            .await
            .expect("put");
            assert_eq!((r.site.as_deref(), feed), (Some("cs-01"), true));
            assert_eq!(
                s.ticket("T2").await.expect("get").map(|t| t.ticket.concern),
                Some("dust".into())
            );
            assert!(s
                .assign_ticket("nope", "cs-01", 6, Feed::Now)
                .await
                .expect("none")
                .is_none());
            // from Kafka: counted by its message once, and again only when that very message
            // is read again (after a takeover); an update at another position is not counted
            let t3 = r#"{"number":"T3","category":"扬尘","content":"东湖路又起灰","received_at":1795000000000}"#;
            for (pos, counted) in [("tk:0:5", true), ("tk:0:5", true), ("tk:0:9", false)] {
                let (_, feed) = s.put_ticket(&t(t3), 7, Feed::At(pos)).await.expect("put");
                assert_eq!(feed, counted, "{pos}");
            }
            // posted to another instance: stored there, counted where its site's partition is
            let t4 = r#"{"number":"T4","category":"扬尘","content":"东湖路","received_at":1795000000000}"#;
            let (_, feed) = s.put_ticket(&t(t4), 8, Feed::Later).await.expect("put");
            assert!(!feed);
            let (_, feed) = s
                .put_ticket(&t(t4), 9, Feed::At("tk:0:12"))
                .await
                .expect("put");
            assert!(feed);
        }
    }
}
