//! Kafka (rdkafka, librdkafka bundled): a consumer that hands messages upstream and stores each
//! one's offset only once upstream says it is processed (committed from there by librdkafka's
//! auto-commit of stored offsets), and an idempotent producer for warnings and dead letters.
//!
//! A restart (kill -9 included) resumes at the last stored offset: what was taken but not yet
//! processed is read again, and upstream's idempotency (stored transitions are unique) keeps that
//! from doubling anything.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::TopicPartitionList;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::mqtt::LinkState;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("kafka: delivery failed: {0}")]
    Delivery(String),
}

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`
    pub brokers: String,
    pub group_id: String,
    /// Further librdkafka settings (`session.timeout.ms`, `security.protocol`, ...).
    pub client: Vec<(String, String)>,
}

/// librdkafka settings only a consumer takes (a producer warns about them).
const CONSUMER_ONLY: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "group.instance.id",
    "partition.assignment.strategy",
    "fetch.min.bytes",
    "fetch.wait.max.ms",
];

impl KafkaConfig {
    fn base(&self, consumer: bool) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        if consumer {
            // topics created after the start (auto-created on first produce) are seen soon
            c.set("topic.metadata.refresh.interval.ms", "10000");
        }
        for (k, v) in &self.client {
            if consumer || !CONSUMER_ONLY.contains(&k.as_str()) {
                c.set(k, v);
            }
        }
        c
    }
}

/// One message, owned (the topic name shared by the messages of a topic).
#[derive(Clone, Debug)]
pub struct KafkaMessage {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Marks messages processed: their offsets are stored, and committed with the next commit.
#[derive(Clone)]
pub struct KafkaAcker {
    consumer: Arc<StreamConsumer>,
}

impl KafkaAcker {
    /// Mark processed, per (topic, partition), every message up to and including `offset`.
    pub fn ack_many(&self, upto: &[(String, i32, i64)]) -> Result<(), KafkaError> {
        if upto.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in upto {
            tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(offset + 1))?;
        }
        self.consumer.store_offsets(&tpl)?;
        Ok(())
    }

    /// Commit what is stored now (at shutdown, after the last message was processed).
    pub fn commit(&self) {
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // nothing stored yet is not a problem
            tracing::debug!(error = %e, "kafka: final commit");
        }
    }
}

/// Topic names, allocated once each (not once per message).
#[derive(Default)]
struct TopicNames(Vec<Arc<str>>);

impl TopicNames {
    fn get(&mut self, name: &str) -> Arc<str> {
        match self.0.iter().find(|t| &***t == name) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = Arc::from(name);
                self.0.push(t.clone());
                t
            }
        }
    }

    /// A message as the pipeline takes it, its topic name shared.
    fn owned(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) -> KafkaMessage {
        KafkaMessage {
            topic: self.get(m.topic()),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        }
    }
}

/// Messages handed upstream at once, at most.
const BATCH: usize = 512;

/// Subscribe to `topics` in the consumer group and forward every message until `stop`, in
/// batches of what is ready.
pub fn subscribe(
    cfg: &KafkaConfig,
    topics: &[String],
    tx: mpsc::Sender<Vec<KafkaMessage>>,
    state: watch::Sender<LinkState>,
    stop: CancellationToken,
) -> Result<(KafkaAcker, tokio::task::JoinHandle<()>), KafkaError> {
    let consumer: StreamConsumer = cfg
        .base(true)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        // an offset is stored only once its message is processed (KafkaAcker::ack)
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Warning)
        .create()?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    let consumer = Arc::new(consumer);
    let acker = KafkaAcker {
        consumer: consumer.clone(),
    };
    let handle = tokio::spawn(async move {
        use futures_util::FutureExt;
        let mut names = TopicNames::default();
        let mut owned = |m: &rdkafka::message::BorrowedMessage<'_>| names.owned(m);
        let mut up = false;
        loop {
            let m = tokio::select! {
                m = consumer.recv() => m,
                _ = stop.cancelled() => break,
            };
            match m {
                Ok(m) => {
                    if !up {
                        up = true;
                        let _ = state.send(LinkState::Up);
                    }
                    // what else is ready goes along in the same batch (one hand-over, not one
                    // per message)
                    let mut batch = vec![owned(&m)];
                    drop(m);
                    while batch.len() < BATCH {
                        match consumer.recv().now_or_never() {
                            Some(Ok(m)) => batch.push(owned(&m)),
                            _ => break,
                        }
                    }
                    if tx.send(batch).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    if up {
                        up = false;
                        let _ = state.send(LinkState::Down);
                    }
                    tracing::warn!(error = %e, "kafka: receive failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.cancelled() => break,
                    }
                }
            }
        }
        // tx drops here: upstream drains what it has
    });
    Ok((acker, handle))
}

/// An idempotent producer (acks from all in-sync replicas, no duplicates on retry).
#[derive(Clone)]
pub struct KafkaProducer {
    producer: FutureProducer,
    timeout: Duration,
}

impl KafkaProducer {
    pub fn new(cfg: &KafkaConfig, timeout: Duration) -> Result<KafkaProducer, KafkaError> {
        let producer: FutureProducer = cfg
            .base(false)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Warning)
            .create()?;
        Ok(KafkaProducer { producer, timeout })
    }

    /// Send one message and wait for the broker's acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(i32, i64), KafkaError> {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let record = FutureRecord::to(topic).key(key).payload(payload).headers(h);
        match self.producer.send(record, self.timeout).await {
            Ok(d) => Ok((d.partition, d.offset)),
            Err((e, _)) => Err(KafkaError::Delivery(e.to_string())),
        }
    }
}

/// What a consumer in a shared group hands upstream: messages, and the moments its partitions
/// move (see [`subscribe_group`]).
pub enum GroupEvent {
    Messages(Vec<KafkaMessage>),
    /// These (topic, partition)s are now this consumer's (`partitions` also tells each topic's
    /// partition count). Reply with the offset to start each at (`None`: the committed offset,
    /// else the earliest).
    Assigned {
        partitions: Vec<(String, i32)>,
        counts: Vec<(String, i32)>,
        reply: std::sync::mpsc::Sender<Vec<(String, i32, Option<i64>)>>,
    },
    /// These are taken away: reply once what they carried is saved.
    Revoked {
        partitions: Vec<(String, i32)>,
        reply: std::sync::mpsc::Sender<()>,
    },
}

struct GroupContext {
    tx: mpsc::Sender<GroupEvent>,
}

impl rdkafka::ClientContext for GroupContext {}

impl rdkafka::consumer::ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr as E;
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        match err {
            E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut counts: Vec<(String, i32)> = Vec::new();
                for (t, _) in &partitions {
                    if counts.iter().any(|(c, _)| c == t) {
                        continue;
                    }
                    let n = consumer
                        .fetch_metadata(Some(t), Duration::from_secs(10))
                        .ok()
                        .and_then(|m| {
                            m.topics()
                                .iter()
                                .find(|x| x.name() == t)
                                .map(|x| x.partitions().len() as i32)
                        })
                        .unwrap_or(0);
                    counts.push((t.clone(), n));
                }
                let (reply, answer) = std::sync::mpsc::channel();
                let sent = self.tx.blocking_send(GroupEvent::Assigned {
                    partitions: partitions.clone(),
                    counts,
                    reply,
                });
                if sent.is_ok() {
                    // wait as long as it takes: taking the partitions without their offsets
                    // would read them from the beginning on top of their restored state
                    match answer.recv() {
                        Ok(offsets) => {
                            for (t, p, o) in offsets {
                                if let Some(o) = o {
                                    let _ =
                                        tpl.set_partition_offset(&t, p, rdkafka::Offset::Offset(o));
                                }
                            }
                        }
                        Err(_) => tracing::debug!("kafka: partitions assigned while stopping"),
                    }
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "kafka: cannot take the assigned partitions");
                }
            }
            _ => {
                if err != E::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::error!(error = ?err, "kafka: rebalance failed; giving up the partitions");
                }
                let (reply, answer) = std::sync::mpsc::channel();
                if self
                    .tx
                    .blocking_send(GroupEvent::Revoked { partitions, reply })
                    .is_ok()
                    && answer.recv().is_err()
                {
                    tracing::debug!("kafka: partitions revoked while stopping");
                }
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "kafka: cannot give up the partitions");
                }
            }
        }
    }
}

/// Join `topics` in a group shared with other instances, on a thread of its own (a rebalance
/// waits there for upstream to save or restore state). Offsets are not committed to Kafka:
/// upstream keeps them with its state (checkpoints) and says where to start on assignment; a
/// partition it has none for starts at the earliest message. Runs until `stop`.
pub fn subscribe_group(
    cfg: &KafkaConfig,
    topics: &[String],
    tx: mpsc::Sender<GroupEvent>,
    state: watch::Sender<LinkState>,
    stop: CancellationToken,
) -> Result<std::thread::JoinHandle<()>, KafkaError> {
    let consumer: rdkafka::consumer::BaseConsumer<GroupContext> = cfg
        .base(true)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // the same partition numbers of the readings and tickets topics carry the same sites:
        // they must go to the same instance
        .set("partition.assignment.strategy", "range")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Warning)
        .create_with_context(GroupContext { tx: tx.clone() })?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    let handle = std::thread::Builder::new()
        .name("kafka-group".into())
        .spawn(move || {
            let mut names = TopicNames::default();
            let mut owned = |m: &rdkafka::message::BorrowedMessage<'_>| names.owned(m);
            let mut up = false;
            while !stop.is_cancelled() {
                match consumer.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Ok(m)) => {
                        if !up {
                            up = true;
                            let _ = state.send(LinkState::Up);
                        }
                        let mut batch = vec![owned(&m)];
                        drop(m);
                        while batch.len() < BATCH {
                            match consumer.poll(Duration::ZERO) {
                                Some(Ok(m)) => batch.push(owned(&m)),
                                _ => break,
                            }
                        }
                        if tx.blocking_send(GroupEvent::Messages(batch)).is_err() {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        if up {
                            up = false;
                            let _ = state.send(LinkState::Down);
                        }
                        tracing::warn!(error = %e, "kafka: receive failed; retrying");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
            // leave the group now (the others take the partitions at once); upstream saved
            // the state when it stopped
            drop(tx);
            consumer.unsubscribe();
        })
        .map_err(|e| KafkaError::Delivery(format!("cannot start the consumer thread: {e}")))?;
    Ok(handle)
}
