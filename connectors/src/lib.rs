//! yujing's connectors: they move bytes in and out and know nothing of readings or rules.
//! Decoding bytes into events happens upstream of the engine in the `yujing` crate (`decode`).
//!
//! # Layout
//! - [`file`]: recorded input read line by line, with progress by bytes (replay, backtest).
//! - [`mqtt`]: MQTT subscriptions (QoS 1, persistent session, manual acks) and publishing.
//! - [`broker`]: the embedded MQTT broker of `yujing demo` (rumqttd).
//! - [`http`]: HTTP POST out (webhooks, WeCom and DingTalk group robots).
//!
//! Kafka, HJ 212 over TCP and RTSP join here as protocol nouns, one module each.

pub mod broker;
pub mod file;
pub mod http;
pub mod mqtt;
