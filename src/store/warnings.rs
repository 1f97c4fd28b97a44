//! Warnings and their timelines: transitions recorded idempotently with the deliveries they
//! owe (one transaction), the list and one warning as the API reads them, the lifecycle steps
//! a department takes, the warnings still firing at a restart.

use super::*;

impl Store {
    /// Store transitions with their timeline entries and owed deliveries, all in one
    /// transaction. Returns, per transition, whether it was new (a transition seen before,
    /// after a restart re-read the same input, changes nothing).
    pub async fn record(&self, batch: &[NewTransition], now: Ts) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.writer.begin().await?;
        // which transitions are new (a transition stored before changes nothing)
        let fresh = insert_transitions(&mut tx, batch, now).await?;
        let mut departments: Vec<(&str, &str)> = Vec::new();
        let mut timeline = Vec::new();
        let mut deliveries = Vec::new();
        for (t, _) in batch.iter().zip(&fresh).filter(|(_, f)| **f) {
            let ack_due = t.deadlines.ack.map(|d| now + d);
            let handle_due = t.deadlines.handle.map(|d| now + d);
            match t.kind {
                TransitionKind::Raise => {
                    sqlx::query(
                        "INSERT INTO warnings (id, rule, site, site_kind, subject, level, level_rank, status, active, seq, title, message, doc, \
                           raised_at, stored_at, updated_at, ack_due, handle_due, ack_within, supervisor, episode_start) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', 1, $8, $9, $10, $11, $12, $13, $13, $14, $15, $16, $17, $18) \
                         ON CONFLICT (id) DO UPDATE SET level = $6, level_rank = $7, active = 1, seq = $8, message = $10, doc = $11, \
                           updated_at = $13, cleared_at = NULL, \
                           status = CASE WHEN warnings.status IN ('cleared', 'closed') THEN 'open' ELSE warnings.status END, \
                           ack_due = CASE WHEN warnings.status IN ('cleared', 'closed') THEN $14 ELSE warnings.ack_due END, \
                           handle_due = CASE WHEN warnings.status IN ('cleared', 'closed') THEN $15 ELSE warnings.handle_due END, \
                           overdue_step = CASE WHEN warnings.status IN ('cleared', 'closed') THEN 0 ELSE warnings.overdue_step END, \
                           handle_overdue = CASE WHEN warnings.status IN ('cleared', 'closed') THEN 0 ELSE warnings.handle_overdue END, \
                           acked_at = CASE WHEN warnings.status IN ('cleared', 'closed') THEN NULL ELSE warnings.acked_at END, \
                           handled_at = CASE WHEN warnings.status IN ('cleared', 'closed') THEN NULL ELSE warnings.handled_at END, \
                           closed_at = NULL",
                    )
                    .bind(&t.id)
                    .bind(&t.rule)
                    .bind(&t.site)
                    .bind(&t.site_kind)
                    .bind(&t.subject)
                    .bind(t.level.as_str())
                    .bind(t.level.index() as i64)
                    .bind(t.seq as i64)
                    .bind(&t.title)
                    .bind(&t.message)
                    .bind(&t.doc)
                    .bind(t.raised_at)
                    .bind(now)
                    .bind(ack_due)
                    .bind(handle_due)
                    .bind(t.deadlines.ack)
                    .bind(&t.supervisor)
                    .bind(t.episode_start)
                    .execute(&mut *tx)
                    .await?;
                }
                TransitionKind::Escalate | TransitionKind::DeEscalate => {
                    // a sharper level may bring the deadlines forward, never back
                    sqlx::query(
                        "UPDATE warnings SET level = $2, level_rank = $3, seq = $4, message = $5, doc = $6, updated_at = $7, \
                           ack_due = CASE WHEN acked_at IS NULL AND $8 IS NOT NULL THEN CASE WHEN ack_due < $8 THEN ack_due ELSE $8 END ELSE ack_due END, \
                           handle_due = CASE WHEN handled_at IS NULL AND $9 IS NOT NULL THEN CASE WHEN handle_due < $9 THEN handle_due ELSE $9 END ELSE handle_due END, \
                           ack_within = coalesce($10, ack_within) \
                         WHERE id = $1",
                    )
                    .bind(&t.id)
                    .bind(t.level.as_str())
                    .bind(t.level.index() as i64)
                    .bind(t.seq as i64)
                    .bind(&t.message)
                    .bind(&t.doc)
                    .bind(now)
                    .bind(if t.kind == TransitionKind::Escalate { ack_due } else { None })
                    .bind(if t.kind == TransitionKind::Escalate { handle_due } else { None })
                    .bind(if t.kind == TransitionKind::Escalate { t.deadlines.ack } else { None })
                    .execute(&mut *tx)
                    .await?;
                }
                TransitionKind::Clear => {
                    sqlx::query(
                        "UPDATE warnings SET active = 0, seq = $2, doc = $3, updated_at = $4, cleared_at = $4, \
                           status = CASE WHEN status = 'open' THEN 'cleared' ELSE status END \
                         WHERE id = $1",
                    )
                    .bind(&t.id)
                    .bind(t.seq as i64)
                    .bind(&t.doc)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            departments.extend(t.departments.iter().map(|d| (t.id.as_str(), d.as_str())));
            let detail = serde_json::json!({
                "seq": t.seq,
                "level": t.level.as_str(),
                "previous_level": t.previous.map(Level::as_str),
                "value": t.value,
                "threshold": t.threshold,
                "event_time": t.at,
                "message": t.message,
            });
            timeline.push(TimelineRow {
                warning_id: t.id.clone(),
                at: now,
                kind: timeline_kind(t),
                actor: "engine",
                detail: detail.to_string(),
            });
            deliveries.extend(t.deliveries.iter().map(|(dep, chan)| DeliveryRow {
                warning_id: &t.id,
                seq: t.seq as i64,
                purpose: "transition",
                department: dep,
                channel: chan,
                doc: &t.doc,
            }));
        }
        for chunk in departments.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO warning_departments (warning_id, department) VALUES {} ON CONFLICT DO NOTHING",
                values(chunk.len(), 2)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (w, d) in chunk {
                q = q.bind(*w).bind(*d);
            }
            q.execute(&mut *tx).await?;
        }
        add_timelines(&mut tx, &timeline).await?;
        add_deliveries(&mut tx, &deliveries, now).await?;
        tx.commit().await?;
        Ok(fresh)
    }

    pub async fn list(&self, f: &Filter) -> Result<(Vec<WarningRow>, i64), StoreError> {
        const WHERE: &str = "WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR level = $2) \
             AND ($3 IS NULL OR id IN (SELECT warning_id FROM warning_departments WHERE department = $3)) \
             AND ($4 IS NULL OR site = $4) AND ($5 IS NULL OR rule = $5) \
             AND ($6 IS NULL OR raised_at >= $6) AND ($7 IS NULL OR raised_at < $7)";
        let sql = format!(
            "SELECT {WARNING_COLUMNS} FROM warnings {WHERE} ORDER BY stored_at DESC, id LIMIT $8 OFFSET $9"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&f.status)
            .bind(&f.level)
            .bind(&f.department)
            .bind(&f.site)
            .bind(&f.rule)
            .bind(f.from)
            .bind(f.to)
            .bind(f.limit)
            .bind(f.offset)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM warnings {WHERE}"
        )))
        .bind(&f.status)
        .bind(&f.level)
        .bind(&f.department)
        .bind(&f.site)
        .bind(&f.rule)
        .bind(f.from)
        .bind(f.to)
        .fetch_one(&self.pool)
        .await?;
        let list = rows.iter().map(warning_row).collect::<Result<_, _>>()?;
        Ok((list, total))
    }

    pub async fn get(&self, id: &str) -> Result<Option<WarningRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WARNING_COLUMNS} FROM warnings WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(warning_row).transpose()?)
    }

    pub async fn timeline(&self, id: &str) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, actor, detail FROM timeline WHERE warning_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("detail")?;
                Ok(TimelineEntry {
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    actor: r.try_get("actor")?,
                    detail: serde_json::from_str(&detail)?,
                })
            })
            .collect()
    }

    /// Acknowledge, report on, or close a warning, with a timeline entry naming the actor.
    pub async fn act(
        &self,
        id: &str,
        action: &Action,
        actor: &str,
        now: Ts,
    ) -> Result<Result<WarningRow, ActError>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM warnings WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(status) = status else {
            return Ok(Err(ActError::NotFound));
        };
        if status == "closed" {
            return Ok(Err(ActError::Conflict("the warning is closed".into())));
        }
        let (kind, detail) = match action {
            Action::Ack { note } => {
                if status != "open" && status != "cleared" {
                    return Ok(Err(ActError::Conflict(format!(
                        "the warning is already {status}"
                    ))));
                }
                sqlx::query("UPDATE warnings SET status = 'acknowledged', acked_at = $2, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                ("acknowledged", serde_json::json!({ "note": note }))
            }
            Action::Feedback { measures, result } => {
                sqlx::query(
                    "UPDATE warnings SET status = 'handled', acked_at = coalesce(acked_at, $2), handled_at = $2, updated_at = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                (
                    "feedback",
                    serde_json::json!({ "measures": measures, "result": result }),
                )
            }
            Action::Close {
                note,
                without_feedback,
            } => {
                if !without_feedback && status != "handled" && status != "cleared" {
                    return Ok(Err(ActError::Conflict(
                        "post feedback (measures taken, result) before closing".into(),
                    )));
                }
                sqlx::query("UPDATE warnings SET status = 'closed', closed_at = $2, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                ("closed", serde_json::json!({ "note": note }))
            }
        };
        add_timeline(&mut tx, id, now, kind, actor, detail).await?;
        tx.commit().await?;
        match self.get(id).await? {
            Some(w) => Ok(Ok(w)),
            None => Ok(Err(ActError::NotFound)),
        }
    }

    /// Warnings whose condition still held when the service stopped (to resume their state):
    /// (row, episode start).
    pub async fn active(&self) -> Result<Vec<(WarningRow, Ts)>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WARNING_COLUMNS}, episode_start FROM warnings WHERE active = 1"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((warning_row(r)?, r.try_get("episode_start")?)))
            .collect()
    }
}

pub(super) fn warning_row(r: &sqlx::any::AnyRow) -> Result<WarningRow, sqlx::Error> {
    let deps: Option<String> = r.try_get("departments")?;
    let mut departments: Vec<String> = deps
        .map(|d| d.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    departments.sort();
    Ok(WarningRow {
        id: r.try_get("id")?,
        rule: r.try_get("rule")?,
        site: r.try_get("site")?,
        site_kind: r.try_get("site_kind")?,
        subject: r.try_get("subject")?,
        level: r.try_get("level")?,
        status: r.try_get("status")?,
        active: r.try_get::<i64, _>("active")? != 0,
        seq: r.try_get("seq")?,
        title: r.try_get("title")?,
        message: r.try_get("message")?,
        departments,
        raised_at: r.try_get("raised_at")?,
        stored_at: r.try_get("stored_at")?,
        updated_at: r.try_get("updated_at")?,
        ack_due: r.try_get("ack_due")?,
        handle_due: r.try_get("handle_due")?,
        acked_at: r.try_get("acked_at")?,
        handled_at: r.try_get("handled_at")?,
        closed_at: r.try_get("closed_at")?,
        cleared_at: r.try_get("cleared_at")?,
        overdue_step: r.try_get("overdue_step")?,
        supervisor: r.try_get("supervisor")?,
        doc: r.try_get("doc")?,
    })
}

pub(super) fn timeline_kind(t: &NewTransition) -> &'static str {
    match t.kind {
        TransitionKind::Raise if t.reopened => "reopened",
        TransitionKind::Raise => "raised",
        TransitionKind::Escalate => "escalated",
        TransitionKind::DeEscalate => "de-escalated",
        TransitionKind::Clear => "cleared",
    }
}

/// `($1, $2), ($3, $4)`: the placeholders of `rows` rows of `cols` values.
pub(super) fn values(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        s.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "${}", r * cols + c + 1);
        }
        s.push(')');
    }
    s
}

/// The transitions into `transitions`; whether each was new (one stored before changes nothing).
pub(super) async fn insert_transitions(
    tx: &mut sqlx::AnyConnection,
    batch: &[NewTransition],
    now: Ts,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut inserted: std::collections::HashSet<(String, i64)> = Default::default();
    for chunk in batch.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO transitions (warning_id, seq, kind, level, at, stored_at, doc) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING warning_id, seq",
            values(chunk.len(), 7)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in chunk {
            q = q
                .bind(&t.id)
                .bind(t.seq as i64)
                .bind(t.kind.as_str())
                .bind(t.level.as_str())
                .bind(t.at)
                .bind(now)
                .bind(&t.doc);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        for r in &rows {
            inserted.insert((r.try_get("warning_id")?, r.try_get("seq")?));
        }
    }
    Ok(batch
        .iter()
        .map(|t| inserted.contains(&(t.id.clone(), t.seq as i64)))
        .collect())
}

pub(super) async fn add_timelines(
    tx: &mut sqlx::AnyConnection,
    rows: &[TimelineRow<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO timeline (warning_id, at, kind, actor, detail) VALUES {}",
            values(chunk.len(), 5)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(&r.warning_id)
                .bind(r.at)
                .bind(r.kind)
                .bind(r.actor)
                .bind(&r.detail);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

pub(super) async fn add_deliveries(
    tx: &mut sqlx::AnyConnection,
    rows: &[DeliveryRow<'_>],
    now: Ts,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO outbox (key, warning_id, seq, purpose, department, channel, doc, state, next_at, created_at) \
             VALUES {} ON CONFLICT DO NOTHING",
            values(chunk.len(), 10)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(format!(
                    "{}:{}:{}:{}:{}",
                    r.warning_id, r.seq, r.purpose, r.department, r.channel
                ))
                .bind(r.warning_id)
                .bind(r.seq)
                .bind(r.purpose)
                .bind(r.department)
                .bind(r.channel)
                .bind(r.doc)
                .bind("pending")
                .bind(now)
                .bind(now);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

pub(super) async fn add_timeline(
    tx: &mut sqlx::AnyConnection,
    id: &str,
    at: Ts,
    kind: &str,
    actor: &str,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let row = TimelineRow {
        warning_id: id.to_string(),
        at,
        kind,
        actor,
        detail: detail.to_string(),
    };
    add_timelines(tx, std::slice::from_ref(&row)).await
}
