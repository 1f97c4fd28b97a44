//! yujing's connectors: they move bytes in and out and know nothing of readings or rules.
//! Decoding bytes into events happens upstream of the engine in the `yujing` crate (`decode`).
//!
//! # Layout
//! - [`file`]: recorded input read line by line, with progress by bytes (replay, backtest).
//!
//! The live connectors (MQTT, Kafka, HJ 212 over TCP, RTSP, webhooks) join here as protocol
//! nouns, one module each.

pub mod file;
