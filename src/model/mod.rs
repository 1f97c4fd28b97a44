//! Models usable in rules (`models/*.toml`, loaded by [`crate::config::models`]): each turns
//! readings into a derived metric that rules use like any other; the engine runs them.
//!
//! - [`anomaly`]: a streaming anomaly score in `[0, 1]` per device (pattern novelty,
//!   likelihood, new extremes); causal, O(1) per reading.
//! - [`forecast`]: hours until a series reaches a level at its current trend (Holt).
//! - [`risk`]: a site risk score from its warnings, tickets, devices and enterprises.
//! - [`fit`]: `yujing fit`: anomaly parameters from history.

pub mod anomaly;
pub mod fit;
pub mod forecast;
pub mod risk;
