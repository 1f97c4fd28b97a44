//! yujing's connectors: they move bytes in and out and know nothing of readings or rules.
//! Decoding bytes into events happens upstream of the engine in the `yujing` crate (`decode`).
//!
//! # Layout
//! - [`file`]: recorded input read line by line, with progress by bytes (replay, backtest).
//! - [`mqtt`]: MQTT subscriptions (QoS 1, persistent session, manual acks) and publishing.
//! - [`broker`]: the embedded MQTT broker of `yujing demo` (rumqttd).
//! - [`http`]: HTTP POST out (webhooks, WeCom and DingTalk group robots).
//! - [`hj212`]: HJ 212-2017 environmental monitors over TCP: packets, CRC, the listener.
//! - [`rtsp`]: RTSP cameras (retina): stream health and the ONVIF metadata track.
//!
//! - [`admit`]: caps on a listener's open connections, in all and per address.
//! - [`kafka`]: Kafka consumer (offsets stored once processed) and idempotent producer.

pub mod admit;
pub mod broker;
pub mod file;
pub mod hj212;
pub mod http;
pub mod kafka;
pub mod mqtt;
pub mod partition;
pub mod rtsp;

/// Backoff between reconnection attempts: 100 ms doubling to 30 s, with jitter.
pub(crate) struct Backoff(pub(crate) u32);

impl Backoff {
    pub(crate) fn next(&mut self) -> std::time::Duration {
        let base = 100u64 << self.0.min(9);
        self.0 += 1;
        let capped = base.min(30_000);
        std::time::Duration::from_millis(capped / 2 + fastrand::u64(0..=capped / 2))
    }
}
