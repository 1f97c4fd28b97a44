//! Deadlines: warnings not acknowledged or handled in time, climbing the escalation ladder one
//! step at a time, each step noticed once.

use super::*;

impl Store {
    /// Warnings whose acknowledgement or handling deadline has passed without the next notice
    /// having gone out: at the ack deadline a reminder to the departments, one ack window later a
    /// copy to the supervising unit; at the handling deadline a copy to the supervising unit.
    pub async fn overdue(&self, now: Ts) -> Result<Vec<Overdue>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WARNING_COLUMNS}, ack_within, handle_overdue FROM warnings \
             WHERE status NOT IN ('closed', 'cleared') AND ( \
               (acked_at IS NULL AND ack_due IS NOT NULL AND ((overdue_step = 0 AND ack_due <= $1) \
                  OR (overdue_step = 1 AND ack_due + coalesce(ack_within, 0) <= $1))) \
               OR (handled_at IS NULL AND handle_due IS NOT NULL AND handle_overdue = 0 AND handle_due <= $1))"
        )))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let w = warning_row(r)?;
            let ack_within: Option<i64> = r.try_get("ack_within")?;
            let handle_overdue: i64 = r.try_get("handle_overdue")?;
            if w.acked_at.is_none() {
                if let Some(due) = w.ack_due {
                    let next = if w.overdue_step == 0 {
                        Some((1, due))
                    } else if w.overdue_step == 1 && due + ack_within.unwrap_or(0) <= now {
                        Some((2, due + ack_within.unwrap_or(0)))
                    } else {
                        None
                    };
                    if let Some((step, due)) = next.filter(|(_, d)| *d <= now) {
                        out.push(Overdue {
                            id: w.id.clone(),
                            seq: w.seq,
                            what: "ack",
                            step,
                            due,
                            departments: w.departments.clone(),
                            supervisor: w.supervisor.clone(),
                            doc: w.doc.clone(),
                        });
                    }
                }
            }
            if w.handled_at.is_none() && handle_overdue == 0 {
                if let Some(due) = w.handle_due.filter(|d| *d <= now) {
                    out.push(Overdue {
                        id: w.id.clone(),
                        seq: w.seq,
                        what: "handle",
                        step: 2,
                        due,
                        departments: w.departments.clone(),
                        supervisor: w.supervisor.clone(),
                        doc: w.doc,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Record that an overdue notice went out: the ladder step, a timeline entry, and the
    /// deliveries it owes, in one transaction. Returns false (and records nothing) when the step
    /// was taken already: by another instance sharing the store, or by this one a moment ago.
    pub async fn notice(
        &self,
        o: &Overdue,
        kind: &str,
        deliveries: &[(String, String)],
        doc: &str,
        now: Ts,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let purpose = if o.step == 1 {
            "reminder"
        } else {
            "supervisor"
        };
        let taken = if o.what == "ack" {
            sqlx::query("UPDATE warnings SET overdue_step = $2 WHERE id = $1 AND overdue_step < $2")
                .bind(&o.id)
                .bind(o.step)
                .execute(&mut *tx)
                .await?
        } else {
            sqlx::query(
                "UPDATE warnings SET handle_overdue = 1 WHERE id = $1 AND handle_overdue = 0",
            )
            .bind(&o.id)
            .execute(&mut *tx)
            .await?
        };
        if taken.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let to: Vec<&str> = deliveries.iter().map(|(d, _)| d.as_str()).collect();
        add_timeline(
            &mut tx,
            &o.id,
            now,
            kind,
            "deadline",
            serde_json::json!({ "overdue": o.what, "due": o.due, "to": to }),
        )
        .await?;
        let purpose = format!("{purpose}-{}", o.what);
        let rows: Vec<DeliveryRow<'_>> = deliveries
            .iter()
            .map(|(dep, chan)| DeliveryRow {
                warning_id: &o.id,
                seq: o.seq,
                purpose: &purpose,
                department: dep,
                channel: chan,
                doc,
            })
            .collect();
        add_deliveries(&mut tx, &rows, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}
