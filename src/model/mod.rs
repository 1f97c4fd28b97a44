//! Models usable in rules (`models/*.toml`, loaded by [`crate::config::models`]): each turns
//! readings into a derived metric that rules use like any other; the engine runs them.
//!
//! - [`anomaly`]: a streaming anomaly score in `[0, 1]` per device (pattern novelty,
//!   likelihood, new extremes); causal, O(1) per reading.
//! - [`forecast`]: hours until a series reaches a level at its current trend (Holt).
//! - [`risk`]: a site risk score from its warnings, tickets, devices and enterprises.
//!
//! Fitting parameters to labelled history (`yujing fit`) is [`crate::backtest::fit`].

pub mod anomaly;
pub mod forecast;
pub mod risk;
