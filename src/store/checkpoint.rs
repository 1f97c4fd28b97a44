//! Engine checkpoints: per Kafka partition, the state of the sites it carries at an offset
//! (see `migrations/0003_checkpoints.sql`). Saved by the instance that owns the partition,
//! read by the one that takes it over.

use super::{values, Store, StoreError};
use crate::time::Ts;
use sqlx::Row;

/// One partition's checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read: everything before it is in `state`.
    pub next_offset: i64,
    /// Fingerprint of the rules and sites the state was taken under.
    pub config: String,
    /// The partition's own watermark then (`None`: idle or nothing read).
    pub watermark: Option<Ts>,
    pub state: Vec<u8>,
    pub instance: String,
    pub saved_at: Ts,
    /// The ownership epoch it was taken in ([`Store::take_partitions`]).
    pub epoch: i64,
}

impl Store {
    /// An instance was given these partitions: the next ownership epoch of each (its
    /// checkpoints carry it; one of an older epoch never replaces one of a newer).
    pub async fn take_partitions(
        &self,
        group: &str,
        list: &[(String, i32)],
    ) -> Result<Vec<(String, i32, i64)>, StoreError> {
        let mut out = Vec::with_capacity(list.len());
        let mut tx = self.writer.begin().await?;
        for (topic, part) in list {
            let epoch: i64 = sqlx::query_scalar(
                "INSERT INTO partition_epochs (grp, topic, part, epoch) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (grp, topic, part) DO UPDATE SET epoch = partition_epochs.epoch + 1 \
                 RETURNING epoch",
            )
            .bind(group)
            .bind(topic)
            .bind(*part as i64)
            .fetch_one(&mut *tx)
            .await?;
            out.push((topic.clone(), *part, epoch));
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Save checkpoints of partitions for consumer group `group`, in one transaction (the
    /// partitions of the readings and tickets topics that carry the same sites go together). A
    /// checkpoint never moves back: one of an older ownership epoch, or of the same epoch and an
    /// older offset, is ignored.
    pub async fn save_checkpoints(
        &self,
        group: &str,
        list: &[Checkpoint],
    ) -> Result<(), StoreError> {
        if list.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for chunk in list.chunks(super::CHUNK) {
            let sql = format!(
                "INSERT INTO checkpoints (grp, topic, part, next_offset, config, watermark, state, instance, saved_at, epoch) VALUES {} \
                 ON CONFLICT (grp, topic, part) DO UPDATE SET next_offset = excluded.next_offset, watermark = excluded.watermark, \
                   epoch = excluded.epoch, \
                   config = excluded.config, state = excluded.state, instance = excluded.instance, \
                   saved_at = excluded.saved_at \
                 WHERE checkpoints.epoch < excluded.epoch \
                   OR (checkpoints.epoch = excluded.epoch AND checkpoints.next_offset <= excluded.next_offset)",
                values(chunk.len(), 10)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                q = q
                    .bind(group)
                    .bind(&c.topic)
                    .bind(c.partition as i64)
                    .bind(c.next_offset)
                    .bind(&c.config)
                    .bind(c.watermark)
                    .bind(&c.state)
                    .bind(&c.instance)
                    .bind(c.saved_at)
                    .bind(c.epoch);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The lowest watermark of the partitions of `topic` others have (not in `mine`), as their
    /// owners last checkpointed them, if at or after `since`: event time here waits for it
    /// (`None`: nothing to wait for).
    pub async fn others_watermark(
        &self,
        group: &str,
        topic: &str,
        mine: &[i32],
        since: Ts,
    ) -> Result<Option<Ts>, StoreError> {
        let rows = sqlx::query(
            "SELECT part, watermark FROM checkpoints WHERE grp = $1 AND topic = $2 AND watermark IS NOT NULL AND saved_at >= $3",
        )
        .bind(group)
        .bind(topic)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut low: Option<Ts> = None;
        for r in &rows {
            let part = r.try_get::<i64, _>("part")? as i32;
            if !mine.contains(&part) {
                let w: i64 = r.try_get("watermark")?;
                low = Some(low.map_or(w, |l| l.min(w)));
            }
        }
        Ok(low)
    }

    /// The checkpoints stored for these (topic, partition)s (none for one never checkpointed).
    pub async fn checkpoints(
        &self,
        group: &str,
        wanted: &[(String, i32)],
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT topic, part, next_offset, config, watermark, state, instance, saved_at, epoch FROM checkpoints \
             WHERE grp = $1 ORDER BY topic, part",
        )
        .bind(group)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let topic: String = r.try_get("topic")?;
            let partition = r.try_get::<i64, _>("part")? as i32;
            if wanted.iter().any(|(t, p)| *t == topic && *p == partition) {
                out.push(Checkpoint {
                    topic,
                    partition,
                    next_offset: r.try_get("next_offset")?,
                    config: r.try_get("config")?,
                    watermark: r.try_get("watermark")?,
                    state: r.try_get("state")?,
                    instance: r.try_get("instance")?,
                    saved_at: r.try_get("saved_at")?,
                    epoch: r.try_get("epoch")?,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(topic: &str, partition: i32, next_offset: i64, state: &[u8]) -> Checkpoint {
        Checkpoint {
            topic: topic.into(),
            partition,
            next_offset,
            config: "c1".into(),
            watermark: Some(1_000),
            state: state.to_vec(),
            instance: "yj-1".into(),
            saved_at: 1,
            epoch: 1,
        }
    }

    #[tokio::test]
    async fn a_checkpoint_moves_forward_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = Store::open(&dir.path().join("y.db"), false)
            .await
            .expect("open");
        let pg = crate::store::tests::pg_store("checkpoints").await;
        for s in [sqlite, pg] {
            s.save_checkpoints(
                "g",
                &[
                    cp("readings", 0, 10, &[1, 2, 0, 255]),
                    cp("tickets", 0, 3, &[]),
                ],
            )
            .await
            .expect("save");
            // an older one (a late writer) does not replace a newer one
            s.save_checkpoints("g", &[cp("readings", 0, 5, &[9])])
                .await
                .expect("save old");
            s.save_checkpoints("g", &[cp("readings", 1, 7, &[7])])
                .await
                .expect("save other");
            let got = s
                .checkpoints("g", &[("readings".into(), 0), ("tickets".into(), 0)])
                .await
                .expect("load");
            assert_eq!(
                got,
                vec![
                    cp("readings", 0, 10, &[1, 2, 0, 255]),
                    cp("tickets", 0, 3, &[])
                ]
            );
            assert!(s
                .checkpoints("other", &[("readings".into(), 0)])
                .await
                .expect("load")
                .is_empty());
            // fencing: each assignment takes the next epoch; a checkpoint of the older epoch
            // (an instance that lost the partition and has not noticed) no longer lands, even
            // further along
            let taken = s
                .take_partitions("g", &[("readings".into(), 0), ("readings".into(), 0)])
                .await
                .expect("epochs");
            assert_eq!(taken.iter().map(|t| t.2).collect::<Vec<_>>(), [1, 2]);
            let newer = Checkpoint {
                epoch: 2,
                ..cp("readings", 0, 11, &[2])
            };
            s.save_checkpoints("g", std::slice::from_ref(&newer))
                .await
                .expect("newer epoch");
            s.save_checkpoints("g", &[cp("readings", 0, 50, &[3])])
                .await
                .expect("zombie");
            let got = s
                .checkpoints("g", &[("readings".into(), 0)])
                .await
                .expect("load");
            assert_eq!(got, vec![newer]);
        }
    }
}
