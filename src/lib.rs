//! yujing (预警): a stream-processing engine for risk warning and IoT monitoring.
//!
//! # Layout
//! Data flows one way: connectors (bytes in) -> [`decode`] (bytes -> readings) -> [`engine`]
//! (windows, rules) -> [`warnings`] (warning documents) -> dispatch (later) -> connectors (out).
//!
//! - [`time`]: event time, durations and timestamps as files write them.
//! - [`event`]: the event model: readings, camera events, hotline tickets, rejection reasons,
//!   warning levels. Leaf types shared by every stage.
//! - [`config`]: files an administrator edits: `yujing.toml` (engine settings), `sites.yaml`
//!   (sites, departments, devices), `rules/*.yaml`; loaded with every error as `file:line:col`.
//!   - [`config::yaml`]: YAML with positions, error collection. [`config::expr`]: threshold
//!     expressions over site parameters. [`config::template`]: message templates.
//! - [`decode`]: narrow CSV, JSON (MQTT payloads, JSON lines), wide CSV through a column mapping.
//! - [`engine`]: watermarks ([`engine::watermark`]), window panes and sessions
//!   ([`engine::window`]), accumulators ([`engine::acc`]), the warning state machine
//!   ([`engine::alert`]), far jumps in event time ([`engine::jump`]); the [`engine::Engine`] ties
//!   them together with a rule index.
//! - [`warnings`]: renders transitions into the warning documents of the contract, stable ids.
//! - [`intern`]: compact name tables (device, site, metric ids) for the hot path.
//! - [`replay`]: runs recorded readings through the engine (`yujing replay`).
//! - [`ruletest`]: rule unit tests from `rules/tests/*.yaml` (`yujing test`).
//! - [`sim`]: the simulated sample day of the sample county (`yujing demo`).
//! - `main.rs`: the `yujing` command line.
//!
//! The I/O crate `yujing-connectors` (folder `connectors/`) moves bytes and knows nothing of
//! rules.

pub mod config;
pub mod decode;
pub mod engine;
pub mod event;
pub mod intern;
pub mod replay;
pub mod ruletest;
pub mod sim;
pub mod time;
pub mod warnings;
