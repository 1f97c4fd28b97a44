//! Several instances in one Kafka consumer group (`[cluster]`). The group splits the partitions
//! of the readings topic (and the same partitions of the tickets topic) among the instances, and
//! with them the sites they carry (producers key messages by site id). This instance:
//!
//! - processes only messages of its partitions, and judges silence only for their sites;
//! - checkpoints, every `checkpoint_every` and whenever a partition is taken away, the window and
//!   alert state of each partition's sites together with the partition's next offset, in the
//!   shared store, after the transitions that state has produced are stored;
//! - on assignment, restores the state of each partition from its checkpoint and reads on from
//!   its offset (from the beginning when it has none).
//!
//! Replaying what came after a checkpoint produces the transitions it produced before, and the
//! store keeps each transition once: a warning is neither lost nor doubled when an instance dies.

use super::Pipeline;
use crate::config::service::ClusterSettings;
use crate::engine::handover::SitesState;
use crate::store::checkpoint::Checkpoint;
use crate::store::now_ms;
use crate::store::tickets::Feed;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use yujing_connectors::kafka::{GroupEvent, KafkaMessage, KafkaProducer};

/// This instance's share of the group.
pub struct Cluster {
    pub settings: ClusterSettings,
    pub group: String,
    pub readings: String,
    pub tickets: Option<String>,
    /// Passes tickets on to the partition of the site they matched.
    pub producer: Option<KafkaProducer>,
    /// (topic, partition) -> the next offset to read (`None`: nothing read or restored yet).
    owned: BTreeMap<(String, i32), Option<i64>>,
    /// (topic, partition) -> the ownership epoch taken when it was assigned (fencing).
    epochs: BTreeMap<(String, i32), i64>,
    /// Partition count of the readings topic.
    partitions: i32,
    /// Site index -> its readings partition.
    site_partition: Vec<i32>,
    last_saved: Instant,
}

impl Cluster {
    pub fn new(
        settings: ClusterSettings,
        kafka: &crate::config::service::KafkaSettings,
        producer: Option<KafkaProducer>,
    ) -> Cluster {
        let group = kafka.group_id.clone();
        let readings = kafka.readings_topic.clone().unwrap_or_default();
        let tickets = kafka.tickets_topic.clone();
        Cluster {
            settings,
            group,
            readings,
            tickets,
            producer,
            owned: BTreeMap::new(),
            epochs: BTreeMap::new(),
            partitions: 0,
            site_partition: Vec::new(),
            last_saved: Instant::now(),
        }
    }
}

impl Pipeline {
    /// Site index -> the readings partition that carries it (the producers' partitioner),
    /// worked out again when the partition count or the sites change.
    fn map_sites(&self, c: &mut Cluster) {
        c.site_partition = self
            .engine
            .config
            .registry
            .sites
            .iter()
            .map(|s| {
                c.settings
                    .partitioner
                    .partition(s.id.as_bytes(), c.partitions)
            })
            .collect();
    }

    /// Site index -> whether the readings partition `p` carries it.
    fn sites_of(c: &Cluster, p: i32) -> Vec<bool> {
        c.site_partition.iter().map(|&q| q == p).collect()
    }

    /// Site index -> whether any partition this instance has carries it.
    fn owned_sites(c: &Cluster) -> Vec<bool> {
        c.site_partition
            .iter()
            .map(|&p| c.owned.keys().any(|(t, q)| *q == p && *t == c.readings))
            .collect()
    }

    pub(super) async fn on_group(&mut self, ev: GroupEvent) {
        match ev {
            GroupEvent::Messages(batch) => {
                let Some(c) = &self.cluster else { return };
                // a partition taken away meanwhile is the new owner's to read
                let owns = |m: &KafkaMessage| {
                    c.owned
                        .keys()
                        .any(|(t, p)| *p == m.partition && **t == *m.topic)
                };
                let mine: Vec<KafkaMessage> = if batch.iter().all(owns) {
                    batch
                } else {
                    batch.into_iter().filter(owns).collect()
                };
                self.on_kafka(&mine).await;
                if let Some(c) = self.cluster.as_mut() {
                    // the newest offset per partition of the batch
                    let mut newest: Vec<(&str, i32, i64)> = Vec::new();
                    for m in &mine {
                        match newest
                            .iter_mut()
                            .find(|(t, p, _)| *p == m.partition && **t == *m.topic)
                        {
                            Some(n) => n.2 = n.2.max(m.offset),
                            None => newest.push((&m.topic, m.partition, m.offset)),
                        }
                    }
                    for (topic, partition, offset) in newest {
                        if let Some((_, next)) = c
                            .owned
                            .iter_mut()
                            .find(|((t, p), _)| *p == partition && t == topic)
                        {
                            *next = Some(next.unwrap_or(0).max(offset + 1));
                        }
                    }
                }
            }
            GroupEvent::Assigned {
                partitions,
                counts,
                reply,
            } => {
                let offsets = self.assigned(partitions, counts).await;
                let _ = reply.send(offsets);
            }
            GroupEvent::Revoked { partitions, reply } => {
                self.revoked(&partitions).await;
                let _ = reply.send(());
            }
        }
    }

    async fn assigned(
        &mut self,
        partitions: Vec<(String, i32)>,
        counts: Vec<(String, i32)>,
    ) -> Vec<(String, i32, Option<i64>)> {
        let Some(mut c) = self.cluster.take() else {
            return Vec::new();
        };
        let count = |t: &str| counts.iter().find(|(x, _)| x == t).map(|(_, n)| *n);
        c.partitions = match count(&c.readings).filter(|n| *n > 0) {
            Some(n) => n,
            // metadata did not answer: what was known, else the highest partition given (which
            // may be short of the real count: said loudly)
            None if c.partitions > 0 => c.partitions,
            None => {
                let n = partitions.iter().map(|(_, p)| p + 1).max().unwrap_or(1);
                tracing::error!(
                    assumed = n,
                    "the readings topic's partition count is unknown (no metadata); sites may be judged by the wrong instance until the next rebalance"
                );
                n
            }
        };
        if let Some(t) = &c.tickets {
            if let Some(n) = count(t).filter(|n| *n != c.partitions && *n > 0) {
                tracing::error!(
                    tickets = n,
                    readings = c.partitions,
                    "the tickets topic must have as many partitions as the readings topic (a site's tickets and readings must reach the same instance)"
                );
            }
        }
        self.map_sites(&mut c);
        let fingerprint = self.engine.fingerprint();
        // without the checkpoints and a new ownership epoch the partitions cannot be taken: wait
        // for the store
        let epochs = loop {
            match self.store.take_partitions(&c.group, &partitions).await {
                Ok(e) => break e,
                Err(e) => {
                    tracing::error!(error = %e, "cannot take the partitions' ownership epochs; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        for (t, p, e) in epochs {
            c.epochs.insert((t, p), e);
        }
        let stored = loop {
            match self.store.checkpoints(&c.group, &partitions).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read checkpoints; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut offsets = Vec::new();
        let mut restored = 0usize;
        for (t, p) in &partitions {
            let cp = stored.iter().find(|x| x.topic == *t && x.partition == *p);
            let usable = cp.filter(|x| x.config == fingerprint);
            if cp.is_some() && usable.is_none() {
                tracing::warn!(topic = %t, partition = p, "checkpoint taken under other rules or sites: its windows start empty (firing warnings resume from the store), reading on from its offset");
            }
            let start = cp.map(|x| x.next_offset);
            if let Some(x) = usable.filter(|x| !x.state.is_empty()) {
                match SitesState::decode(&x.state) {
                    Ok(st) => {
                        restored += st.entries();
                        self.engine.import_sites(st);
                    }
                    Err(e) => {
                        tracing::error!(topic = %t, partition = p, error = %e, "damaged checkpoint: its windows start empty (firing warnings resume from the store), reading on from its offset");
                    }
                }
            }
            // no usable checkpoint: everything the partition still holds, from the earliest
            offsets.push((t.clone(), *p, start));
            c.owned.insert((t.clone(), *p), start);
            if *t == c.readings {
                // its backlog may be older than what the other partitions delivered
                let i = self
                    .engine
                    .expect_source(&super::kafka_source_name(t, *p), now_ms());
                self.set_kafka_source(t, *p, i);
            }
        }
        let owned = Self::owned_sites(&c);
        self.engine.set_owned(Some(owned));
        tracing::info!(
            instance = %c.settings.instance,
            partitions = ?partitions.iter().filter(|(t, _)| *t == c.readings).map(|(_, p)| p).collect::<Vec<_>>(),
            restored,
            "partitions assigned"
        );
        self.metrics
            .cluster_partitions
            .set(c.owned.keys().filter(|(t, _)| *t == c.readings).count() as i64);
        self.cluster = Some(c);
        // warnings firing at sites whose state did not come back (no usable checkpoint) resume
        // their episodes from the store (those that came back are left as they are)
        if let Err(e) = self.resume().await {
            tracing::error!(error = %e, "cannot resume firing warnings from the store");
        }
        self.refresh_bound().await;
        offsets
    }

    async fn revoked(&mut self, partitions: &[(String, i32)]) {
        self.checkpoint(Some(partitions)).await;
        let Some(mut c) = self.cluster.take() else {
            return;
        };
        for (t, p) in partitions {
            if *t == c.readings {
                let sites = Self::sites_of(&c, *p);
                self.engine.forget_sites(&sites);
            }
            if let Some(i) = self.kafka_source_of(t, *p) {
                self.engine.retire_source(i);
            }
            c.owned.remove(&(t.clone(), *p));
            c.epochs.remove(&(t.clone(), *p));
        }
        let owned = Self::owned_sites(&c);
        self.engine.set_owned(Some(owned));
        self.metrics
            .cluster_partitions
            .set(c.owned.keys().filter(|(t, _)| *t == c.readings).count() as i64);
        tracing::info!(instance = %c.settings.instance, "partitions revoked");
        self.cluster = Some(c);
    }

    /// Store a ticket read from Kafka. One instance counts it at once. In a cluster it is
    /// counted by its message (again if that message is read again after a takeover); a ticket
    /// that matched a site another partition carries is sent on to that partition instead.
    pub(super) async fn store_ticket(
        &mut self,
        m: &KafkaMessage,
        t: &crate::event::Ticket,
        now: crate::time::Ts,
    ) -> Result<(crate::store::tickets::TicketRow, bool), crate::store::StoreError> {
        let Some(c) = &self.cluster else {
            return self.store.put_ticket(t, now, Feed::Now).await;
        };
        let elsewhere = t.site.as_deref().filter(|site| {
            c.settings
                .partitioner
                .partition(site.as_bytes(), c.partitions)
                != m.partition
        });
        match (elsewhere, &c.producer) {
            (Some(site), Some(producer)) => {
                let taken = self.store.put_ticket(t, now, Feed::Later).await?;
                if let Err(e) = producer.send(&m.topic, site, &m.payload, &[]).await {
                    tracing::error!(ticket = %t.number, site, error = %e, "cannot pass a ticket on to its site's partition; it stays uncounted");
                } else {
                    tracing::info!(ticket = %t.number, site, "ticket passed on to its site's partition");
                }
                Ok(taken)
            }
            _ => {
                let pos = format!("{}:{}:{}", m.topic, m.partition, m.offset);
                self.store.put_ticket(t, now, Feed::At(&pos)).await
            }
        }
    }

    /// In a cluster, an MQTT message (one of the shared subscription's) is passed on to the
    /// Kafka partition of its site, for the instance that has the site; what cannot be decoded
    /// is dead-lettered here. Returns false when Kafka did not take it: then the message is not
    /// acknowledged, and the broker delivers it again.
    pub(super) async fn pass_on_mqtt(
        &mut self,
        m: &yujing_connectors::mqtt::Message,
        site: &str,
        device: &str,
    ) -> bool {
        let tz = self.engine.config.settings.timezone;
        let mut readings = Vec::new();
        let res = crate::decode::json::decode(&m.payload, Some(site), Some(device), tz, &mut |r| {
            readings.push((r.ts, r.metric.to_string(), r.value));
        });
        if let Err(e) = &res {
            self.count_reject(e.reason);
            self.dead
                .write("mqtt", e.reason, &e.detail, &m.topic, &m.payload)
                .await;
        }
        self.pass_on(site, device, &readings, "mqtt").await
    }

    /// Pass a device's readings on to the Kafka partition of its site (one message per
    /// timestamp, as the readings topic carries them). False when Kafka did not take them
    /// within 30 s of retries: the caller leaves them unacknowledged, to come again.
    pub(super) async fn pass_on(
        &mut self,
        site: &str,
        device: &str,
        readings: &[(crate::time::Ts, String, f64)],
        connector: &str,
    ) -> bool {
        let Some(c) = &self.cluster else { return true };
        let Some(producer) = &c.producer else {
            return true;
        };
        let mut by_ts: BTreeMap<crate::time::Ts, serde_json::Map<String, serde_json::Value>> =
            BTreeMap::new();
        for (ts, metric, value) in readings {
            by_ts
                .entry(*ts)
                .or_default()
                .insert(metric.clone(), serde_json::json!(value));
        }
        for (ts, values) in by_ts {
            let doc =
                serde_json::json!({ "ts": ts, "site": site, "device": device, "values": values })
                    .to_string();
            let start = Instant::now();
            loop {
                match producer.send(&c.readings, site, doc.as_bytes(), &[]).await {
                    Ok(_) => break,
                    Err(e) if start.elapsed() < Duration::from_secs(30) => {
                        tracing::warn!(site, device, error = %e, "cannot pass readings on to Kafka; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::error!(site, device, error = %e, "cannot pass readings on to Kafka; left to the sender to send again");
                        return false;
                    }
                }
            }
        }
        self.metrics
            .readings
            .with_label_values(&[connector])
            .inc_by(readings.len() as u64);
        true
    }

    /// After a reload (the engine may be new): judge silence again only for this instance's
    /// sites, and let its partitions hold event time back again.
    pub(super) fn rebind_cluster(&mut self) {
        let Some(mut c) = self.cluster.take() else {
            return;
        };
        // the sites may have changed
        self.map_sites(&mut c);
        let owned = Self::owned_sites(&c);
        self.engine.set_owned(Some(owned));
        for (t, p) in c.owned.keys() {
            if *t == c.readings {
                let i = self.engine.source(&super::kafka_source_name(t, *p));
                self.set_kafka_source(t, *p, i);
            }
        }
        self.cluster = Some(c);
    }

    /// Every `checkpoint_every`: checkpoint the partitions this instance has.
    pub(super) async fn checkpoint_due(&mut self) {
        let due = self.cluster.as_ref().is_some_and(|c| {
            c.last_saved.elapsed() >= Duration::from_millis(c.settings.checkpoint_every as u64)
        });
        if due {
            self.checkpoint(None).await;
        }
    }

    /// Checkpoint these partitions (all of this instance's with `None`). The transitions their
    /// state has produced are stored first, so a checkpoint is never ahead of the store.
    pub(super) async fn checkpoint(&mut self, which: Option<&[(String, i32)]>) {
        if self.cluster.is_none() {
            return;
        }
        let now = now_ms();
        self.flush(now).await;
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let fingerprint = self.engine.fingerprint();
        let mut list = Vec::new();
        for ((t, p), next) in &c.owned {
            if which.is_some_and(|w| !w.iter().any(|(wt, wp)| wt == t && wp == p)) {
                continue;
            }
            let Some(next) = next else { continue };
            let state = if *t == c.readings {
                match self.engine.export_sites(&Self::sites_of(c, *p)).encode() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(partition = p, error = %e, "cannot encode a checkpoint");
                        continue;
                    }
                }
            } else {
                Vec::new()
            };
            let watermark = (*t == c.readings)
                .then(|| self.kafka_source_of(t, *p))
                .flatten()
                .and_then(|i| self.engine.source_watermark(i));
            list.push(Checkpoint {
                topic: t.clone(),
                partition: *p,
                next_offset: *next,
                config: fingerprint.clone(),
                watermark,
                state,
                instance: c.settings.instance.clone(),
                saved_at: now,
                epoch: c.epochs.get(&(t.clone(), *p)).copied().unwrap_or(0),
            });
        }
        let group = c.group.clone();
        match self.store.save_checkpoints(&group, &list).await {
            Ok(()) => {
                self.metrics.checkpoints.with_label_values(&["saved"]).inc();
            }
            Err(e) => {
                self.metrics
                    .checkpoints
                    .with_label_values(&["failed"])
                    .inc();
                tracing::error!(error = %e, "cannot save checkpoints; a takeover would read more again");
            }
        }
        if let Some(c) = self.cluster.as_mut() {
            c.last_saved = Instant::now();
        }
        self.refresh_bound().await;
    }

    /// Event time here waits for the partitions other instances have (their last checkpointed
    /// watermarks): should one of them die, its partitions' state, restored here, is not behind
    /// this instance's windows. (The store is read again with every checkpoint.)
    async fn refresh_bound(&mut self) {
        let Some(c) = &self.cluster else { return };
        let mine: Vec<i32> = c
            .owned
            .keys()
            .filter(|(t, _)| *t == c.readings)
            .map(|(_, p)| *p)
            .collect();
        // rows not refreshed for a minute belong to no live instance (a deleted partition, a
        // long gone member): they no longer hold time
        let since = now_ms() - 60_000;
        match self
            .store
            .others_watermark(&c.group, &c.readings, &mine, since)
            .await
        {
            Ok(bound) => self
                .engine
                .set_watermark_bound(bound.unwrap_or(crate::time::Ts::MAX)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the other instances' watermarks");
            }
        }
    }
}
