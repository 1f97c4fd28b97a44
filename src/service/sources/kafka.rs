//! Kafka in: the readings and tickets topics, read by a consumer group. Alone, offsets are
//! stored once the pipeline has stored what a batch caused; in a cluster (`[cluster]`) the
//! group splits the partitions among the instances and state moves with them.

use super::{forward, watch_link, Context, Input, Running, Source, Starting};
use crate::config::service::KafkaSettings;
use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use yujing_connectors::kafka::{self, KafkaConfig};
use yujing_connectors::mqtt::LinkState;

/// The client settings of `[kafka]`.
pub fn client_config(k: &KafkaSettings) -> KafkaConfig {
    KafkaConfig {
        brokers: k.brokers.clone(),
        group_id: k.group_id.clone(),
        client: k.client.clone().into_iter().collect(),
    }
}

/// Whether the consumer runs in a group shared with other instances: a cluster with a
/// readings topic (no site is this instance's until the group gives it partitions).
pub fn shares_partitions(config: &crate::config::Config) -> bool {
    let svc = &config.service;
    svc.cluster.is_some()
        && svc
            .kafka
            .as_ref()
            .is_some_and(|k| k.readings_topic.is_some())
}

pub struct KafkaSource {
    settings: KafkaSettings,
    topics: Vec<String>,
}

impl KafkaSource {
    /// A consumer of the readings and tickets topics; none if neither is set.
    pub fn new(settings: KafkaSettings) -> Option<KafkaSource> {
        let topics: Vec<String> = [&settings.readings_topic, &settings.tickets_topic]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        (!topics.is_empty()).then_some(KafkaSource { settings, topics })
    }
}

impl Source for KafkaSource {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn start<'a>(self: Box<Self>, cx: &'a Context, out: mpsc::Sender<Input>) -> Starting<'a> {
        Box::pin(async move {
            let k = &self.settings;
            let kc = client_config(k);
            let (state_tx, state_rx) = watch::channel(LinkState::Connecting);
            watch_link(cx.metrics.clone(), "kafka", state_rx);
            let topics = &self.topics;
            if shares_partitions(&cx.config) {
                let (tx, rx) = mpsc::channel(64);
                let handle = kafka::subscribe_group(&kc, topics, tx, state_tx, cx.stop.clone())
                    .context("Kafka consumer")?;
                let instance = cx
                    .config
                    .service
                    .cluster
                    .as_ref()
                    .map(|c| c.instance.clone());
                tracing::info!(brokers = %k.brokers, group = %k.group_id, ?instance, ?topics, "Kafka consumer up, in a cluster");
                let thread = tokio::task::spawn_blocking(move || {
                    let _ = handle.join();
                });
                Ok(Running {
                    tasks: vec![forward(rx, out, Input::Group), thread],
                    ..Running::default()
                })
            } else {
                let (tx, rx) = mpsc::channel(64);
                let (acker, handle) = kafka::subscribe(&kc, topics, tx, state_tx, cx.stop.clone())
                    .context("Kafka consumer")?;
                tracing::info!(brokers = %k.brokers, group = %k.group_id, ?topics, "Kafka consumer up");
                let forwarding = forward(rx, out, move |b| Input::Kafka(b, acker.clone()));
                Ok(Running {
                    tasks: vec![handle, forwarding],
                    ..Running::default()
                })
            }
        })
    }
}
