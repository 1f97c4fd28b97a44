//! Models usable in rules (`models/*.toml`): each turns the readings of one metric into a
//! derived metric that rules use like any other.
//!
//! - [`anomaly`]: a streaming anomaly score in `[0, 1]` (pattern novelty, likelihood, new
//!   extremes); causal, O(1) per reading.

pub mod anomaly;
pub mod fit;
