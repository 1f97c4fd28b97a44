//! MQTT in: the subscription to `[mqtt] topics` (QoS 1, acknowledged once the pipeline has
//! stored what a message caused). In a cluster the instances share it (`$share/<group>/...`).

use super::{forward, watch_link, Context, Input, Running, Source, Starting};
use crate::config::service::MqttSettings;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use yujing_connectors::mqtt::{self, LinkState, MqttConfig};

/// The client settings of `[mqtt]`; `suffix` tells this instance's clients apart.
pub fn client_config(m: &MqttSettings, suffix: &str) -> MqttConfig {
    MqttConfig {
        host: m.host.clone(),
        port: m.port,
        client_id: format!("{}{suffix}", m.client_id),
        username: m.username.clone(),
        password: m.password.clone(),
        ca_file: m.ca_file.clone(),
        persistent: m.persistent,
        keep_alive: Duration::from_millis(m.keep_alive.max(5_000) as u64),
        inflight: 100,
        max_packet: MqttConfig::packet_limit(m.max_payload),
    }
}

/// In a cluster every instance has the same yujing.toml: its name tells the clients apart.
pub fn instance_suffix(config: &crate::config::Config) -> String {
    config
        .service
        .cluster
        .as_ref()
        .map(|c| format!("-{}", c.instance))
        .unwrap_or_default()
}

pub struct MqttSource {
    settings: MqttSettings,
}

impl MqttSource {
    pub fn new(settings: MqttSettings) -> MqttSource {
        MqttSource { settings }
    }
}

impl Source for MqttSource {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn start<'a>(self: Box<Self>, cx: &'a Context, out: mpsc::Sender<Input>) -> Starting<'a> {
        Box::pin(async move {
            let m = &self.settings;
            let svc = &cx.config.service;
            let (state_tx, state_rx) = watch::channel(LinkState::Connecting);
            watch_link(cx.metrics.clone(), "mqtt", state_rx.clone());
            let link = state_rx.clone();
            let ready: crate::handle::Readiness = Arc::new(move || match *link.borrow() {
                LinkState::Up => Ok(()),
                s => Err(format!("MQTT is {s:?}")),
            });
            // several instances share the subscription: each message goes to one of them,
            // which passes its readings on to the Kafka partition of their site
            let topics = match (&svc.cluster, &svc.kafka) {
                (Some(_), Some(k)) => m
                    .topics
                    .iter()
                    .map(|t| format!("$share/{}/{t}", k.group_id))
                    .collect(),
                _ => m.topics.clone(),
            };
            let mut config = client_config(m, &instance_suffix(&cx.config));
            if svc.cluster.is_some() {
                // a persistent session of a dead instance would keep receiving its share of
                // the shared subscription until it came back; a clean one leaves it to the others
                config.persistent = false;
            }
            let (tx, rx) = mpsc::channel(64);
            let (acker, handle) = mqtt::subscribe(
                &config,
                topics,
                tx,
                state_tx,
                cx.stop.clone(),
                cx.done.clone(),
            )
            .context("MQTT subscription")?;
            Ok(Running {
                tasks: vec![forward(rx, out, move |m| Input::Mqtt(m, acker.clone()))],
                after_drain: vec![handle],
                ready: vec![ready],
            })
        })
    }
}
