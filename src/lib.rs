//! yujing (预警): a stream-processing engine for risk warning and IoT monitoring.
//!
//! # Layout
//! Data flows one way: connectors (bytes in) -> [`decode`] (bytes -> readings) -> [`engine`]
//! (windows, rules) -> [`warnings`] (warning documents) -> [`store`] -> [`dispatch`] (departments,
//! channels) -> connectors (out). The [`api`] reads the store and the engine's state.
//!
//! - [`time`]: event time, durations and timestamps as files write them.
//! - [`event`]: the event model: readings, hotline tickets, rejection reasons,
//!   warning levels. Leaf types shared by every stage.
//! - [`config`]: files an administrator edits: `yujing.toml` (engine settings; the service's
//!   tables in [`config::service`]), `sites.yaml` (sites, departments, devices), `rules/*.yaml`,
//!   `routes.yaml` ([`config::routes`]); loaded with every error as `file:line:col`.
//!   - [`config::yaml`]: YAML with positions, error collection. [`config::expr`]: threshold
//!     expressions over site parameters. [`config::template`]: message templates.
//!     [`config::sample`]: the sample county built into the binary (`yujing demo` anywhere).
//! - [`decode`]: narrow CSV, JSON (MQTT payloads, JSON lines), wide CSV through a column mapping,
//!   HJ 212-2017 uploads ([`decode::hj212`]), ONVIF metadata and edge-box camera events
//!   ([`decode::onvif`]).
//! - [`engine`]: watermarks ([`engine::watermark`]), window panes and sessions
//!   ([`engine::window`]), accumulators ([`engine::acc`]), the warning state machine
//!   ([`engine::alert`]), far jumps in event time ([`engine::jump`]); the [`engine::Engine`] ties
//!   them together with a rule index.
//! - [`warnings`]: renders transitions into the warning documents of the contract, stable ids.
//! - [`store`]: SQLite store of warnings, their timeline and the delivery outbox; versioned
//!   migrations.
//! - [`dispatch`]: the outbox worker (webhook with HMAC signature, WeCom, DingTalk, MQTT; retries
//!   with backoff, dead letters) and the deadline watcher (reminders, supervising unit);
//!   [`dispatch::channel`] builds and signs what each channel sends.
//! - [`handle`]: the running service as the API sees it: requests to the pipeline, the views it
//!   answers with, live events, readiness, where a ticket goes. The API's only way in.
//! - [`api`]: the HTTP API (axum): warnings and their lifecycle, sites, rules, server-sent events,
//!   `/metrics`, health; bearer tokens with roles.
//! - [`metrics`]: every Prometheus metric, defined in one place.
//! - [`service`]: `yujing run` and `yujing demo`: wires the sources (MQTT, Kafka, the HJ 212
//!   listener, RTSP cameras: one [`service::sources::Source`] each, feeding one channel), the
//!   engine, store, dispatch and API together ([`service::pipeline`]), hot reload,
//!   shutdown in drain order; the live simulator ([`service::simulate`]).
//! - [`hotline`]: 12345 tickets: validation, category -> concern, matching to sites.
//! - [`intern`]: compact name tables (device, site, metric ids) for the hot path.
//! - [`archive`]: history as Parquet files by day (readings, tickets, warnings, transitions,
//!   sites), retention, and read-only SQL over them with DataFusion ([`archive::query`]).
//! - [`model`]: models usable in rules (`models/*.toml`): the streaming anomaly score, the trend
//!   forecast (time to a level), the site risk score; `yujing fit`.
//! - [`backtest`]: labelled history through models and rules: NAB scoring and result files,
//!   incident lists (precision, recall, lead times), the report page.
//! - [`report`]: how departments respond to warnings (`yujing report`, `GET /api/v1/report`).
//! - [`replay`]: runs recorded readings through the engine (`yujing replay`).
//! - [`ruletest`]: rule unit tests from `rules/tests/*.yaml` (`yujing test`).
//! - [`sim`]: the simulated sample day of the sample county (`yujing demo --offline`).
//! - `main.rs`: the `yujing` command line.
//!
//! The I/O crate `yujing-connectors` (folder `connectors/`) moves bytes and knows nothing of
//! rules.

pub mod api;
pub mod archive;
pub mod backtest;
pub mod config;
pub mod decode;
pub mod dispatch;
pub mod engine;
pub mod event;
pub mod handle;
pub mod hotline;
pub mod intern;
pub mod metrics;
pub mod model;
pub mod replay;
pub mod report;
pub mod ruletest;
pub mod service;
pub mod sim;
pub mod store;
pub mod time;
pub mod warnings;
